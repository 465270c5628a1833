"""Read a Feast repo into `RepoSpec`, once; cache the result as JSON.

Any Feast repo is valid input: the definitions are parsed with Feast's own
`parse_repo` (so they mean what they mean to Feast) and converted to plain specs.
The cache key hashes every definition file, feature_store.yaml and the FEATURELINE_*
environment the definitions may read, so an edited repo is re-read; a cached load
takes ~5 ms instead of ~5 s (`import feast`).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from featureline.errors import BadInputError
from featureline.settings import Settings
from featureline.specs import RepoSpec

_SKIP_DIRS = {"data", "__pycache__", ".ipynb_checkpoints"}
# Part of the cache key: the code that makes specs, so that a spec cached by another
# Featureline (a field added, a rule changed) is never read back (~0.1 ms to hash).
_SPEC_CODE = ("specs.py", "_feast_convert.py", "_feast_unused.py", "_feast_permissions.py", "dtypes.py")


def _spec_code_digest() -> bytes:
    here = Path(__file__).parent
    digest = hashlib.sha256()
    for name in _SPEC_CODE:
        digest.update((here / name).read_bytes())
    return digest.digest()


def repo_files(repo: Path) -> list[Path]:
    files = [repo / "feature_store.yaml"]
    for path in sorted(repo.rglob("*.py")):
        rel = path.relative_to(repo)
        if any(part in _SKIP_DIRS or part.startswith(".") for part in rel.parts[:-1]):
            continue
        files.append(path)
    return files


def source_fingerprint(settings: Settings) -> str:
    repo = settings.repo
    digest = hashlib.sha256(_spec_code_digest())
    for path in repo_files(repo):
        digest.update(str(path.relative_to(repo)).encode())
        digest.update(path.read_bytes())
    for key, value in sorted(settings.env_vars().items()):
        digest.update(f"{key}={value}".encode())
    return digest.hexdigest()[:20]


def check_repo(repo: Path) -> None:
    if not repo.is_dir():
        raise BadInputError(f"feature repo {str(repo)!r} is not a directory (use --repo DIR)")
    if not (repo / "feature_store.yaml").is_file():
        raise BadInputError(
            f"{str(repo)!r} is not a Feast repo: it has no feature_store.yaml (use --repo DIR)"
        )


def load_repo(settings: Settings, *, use_cache: bool = True) -> RepoSpec:
    """The repo's specs: from `settings.specs_file` when set, else from the cache when
    the definitions have not changed, else parsed with Feast."""
    if settings.specs_file:
        settings.export_env()
        return load_specs_file(Path(settings.specs_file))
    check_repo(settings.repo)
    settings.export_env()
    fingerprint = source_fingerprint(settings)
    cache = settings.home / "specs" / f"{fingerprint}.json"
    if use_cache and cache.is_file():
        return RepoSpec.from_json(cache.read_text())
    spec = parse_feast_repo(settings.repo, fingerprint)
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_suffix(f".tmp{os.getpid()}")
    tmp.write_text(spec.to_json())
    tmp.replace(cache)
    return spec


def load_specs_file(path: Path) -> RepoSpec:
    """A RepoSpec written by `featureline specs --json`; bad files give a clear error."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise BadInputError(f"FEATURELINE_SPECS_FILE {str(path)!r} cannot be read: {exc.strerror}") from None
    try:
        return RepoSpec.from_json(text)
    except (ValueError, KeyError, TypeError) as exc:
        raise BadInputError(
            f"FEATURELINE_SPECS_FILE {str(path)!r} is not the output of `featureline specs --json`: {exc}"
        ) from None


def read_store_yaml(repo: Path) -> dict[str, Any]:
    import yaml

    with open(repo / "feature_store.yaml") as fh:
        data = yaml.safe_load(os.path.expandvars(fh.read())) or {}
    if not isinstance(data, dict) or "project" not in data:
        raise BadInputError(f"{repo / 'feature_store.yaml'}: no `project:` set")
    return data


@contextlib.contextmanager
def in_repo_dir(repo: Path) -> Iterator[None]:
    """Run Feast code as its CLI does: from inside the repo, with the repo first on
    sys.path (Feast names definition modules by their path relative to the working
    directory, and definitions may import each other). Modules of an earlier load
    (this repo or another with the same file names) are dropped so edits are seen, and
    no bytecode is written for them: a .pyc is checked against its source's mtime in
    whole seconds and its size, so an edit of the same length within the second of a
    load (ttl=timedelta(days=7) -> days=3) would be read back stale."""
    for path in repo_files(repo)[1:]:
        name = ".".join(path.relative_to(repo).with_suffix("").parts)
        sys.modules.pop(name, None)
    sys.path.insert(0, str(repo))
    previous, wrote_bytecode = os.getcwd(), sys.dont_write_bytecode
    sys.dont_write_bytecode = True
    os.chdir(repo)
    try:
        yield
    finally:
        sys.dont_write_bytecode = wrote_bytecode
        os.chdir(previous)
        with contextlib.suppress(ValueError):
            sys.path.remove(str(repo))


def parse_feast_repo(repo: Path, fingerprint: str = "") -> RepoSpec:
    """Parse with Feast (imports feast) and convert; errors become BadInputError."""
    from featureline._feast_convert import convert_repo_contents

    repo = repo.resolve()
    config = read_store_yaml(repo)
    from feast.repo_operations import parse_repo

    try:
        with in_repo_dir(repo):
            contents = parse_repo(repo)
    except Exception as exc:  # a user's definitions can raise anything
        raise BadInputError(f"could not load Feast definitions in {repo}: {exc}") from exc
    return convert_repo_contents(
        contents,
        project=str(config["project"]),
        repo=repo,
        entity_key_serialization_version=int(config.get("entity_key_serialization_version", 3)),
        fingerprint=fingerprint,
    )
