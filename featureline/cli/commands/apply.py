"""`featureline apply`: register the repo's definitions in the registry its
feature_store.yaml names (a file registry, Feast's default, or a SQL registry).

This is `feast apply` on the same repo (same registry, same objects), run with the
FEATURELINE_* environment exported so feature_store.yaml resolves.
FEATURELINE_REGISTRY_URL, when set, replaces the yaml's registry (a SQLAlchemy URL: a
SQL registry; a path: a registry file). It also refreshes the spec cache that servers
and jobs start from.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import time
from pathlib import Path
from typing import Any

from featureline.config import RegistryConfig, resolve
from featureline.errors import BadInputError
from featureline.settings import Settings


def configure(parser: argparse.ArgumentParser) -> None:
    # Sources are not validated: the demo applies before any event has been stored.
    parser.description = "Register the repo's definitions in its registry (feast apply)."


def apply_repo(settings: Settings) -> list[str]:
    """Apply the repo with Feast; returns a line per registered object."""
    from featureline.repo import check_repo, in_repo_dir, load_repo

    check_repo(settings.repo)
    settings.home.mkdir(parents=True, exist_ok=True)
    settings.export_env()
    registry = resolve(settings).registry
    spec = load_repo(settings, use_cache=False)
    from feast.repo_config import load_repo_config
    from feast.repo_operations import apply_total

    repo = settings.repo.resolve()
    try:
        config = load_repo_config(repo, repo / "feature_store.yaml")
        if settings.is_set("registry_url"):
            config = _with_registry(config, registry)
        if registry.registry_type == "file" and "://" not in registry.path:
            Path(registry.path).parent.mkdir(parents=True, exist_ok=True)
        out = io.StringIO()
        with contextlib.redirect_stdout(out), in_repo_dir(repo):
            apply_total(config, repo, skip_source_validation=True)
    except Exception as exc:  # Feast raises many types for bad definitions
        raise BadInputError(f"feast apply failed for {repo}: {exc}") from exc
    lines = [f"project {spec.project}: {registry.registry_type} registry {registry.display}"]
    lines += [f"  entity {e}" for e in spec.entities]
    lines += [f"  {v.kind} view {v.name} ({len(v.features)} features)" for v in spec.views.values()]
    lines += [f"  on-demand view {o}" for o in spec.on_demand_views]
    lines += [f"  feature service {s}" for s in spec.services]
    if spec.ignored:
        lines.append("registered, not used by Featureline:")
        lines += [f"  {i.kind} {i.name}: {i.why}" for i in spec.ignored]
    return lines


def _with_registry(config: Any, registry: RegistryConfig) -> Any:
    """Feast's RepoConfig with its `registry` field replaced (FEATURELINE_REGISTRY_URL);
    the yaml's other registry options (cache_ttl_seconds, ...) are kept."""
    old = config.registry_config
    keep = dict(old) if isinstance(old, dict) else {}
    keep.pop("registry_type", None)
    keep.pop("path", None)
    if registry.registry_type != "sql":
        keep.pop("sqlalchemy_config_kwargs", None)
    config.registry_config = {**keep, "registry_type": registry.registry_type, "path": registry.path}
    return config


def run(args: argparse.Namespace, settings: Settings) -> int:
    start = time.perf_counter()
    for line in apply_repo(settings):
        print(line)
    print(f"applied in {time.perf_counter() - start:.1f}s")
    return 0
