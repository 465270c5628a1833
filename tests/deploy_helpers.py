"""What the deployment files may use, read from the code: the `featureline` command
lines, the FEATURELINE_* variables, and the names a serving token may grant.
Shared by tests/test_deploy.py (deploy/k8s) and tests/test_compose.py (compose)."""

from __future__ import annotations

import ast
import dataclasses
import re
import tempfile
from collections.abc import Iterable, Mapping
from functools import cache
from pathlib import Path

import yaml

from featureline.cli.main import COMMANDS, build_parser
from featureline.config import RedisConfig, resolve_redis
from featureline.serving_api.auth import ALL, TokenAuth
from featureline.serving_api.limits import ForbiddenError
from featureline.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
_SOURCES = ("featureline", "streaming", "batch", "serving_api")
_ENV_NAME = re.compile(r"FEATURELINE_[A-Z0-9_]*[A-Z0-9]")
# The feature service the demo's model reads (feature_repo/features.py).
MODEL_SERVICE = "fraud_model_v1"


@cache
def known_env_vars() -> frozenset[str]:
    """Every FEATURELINE_* variable the code reads: one per Settings field
    (Settings.from_env), and every string constant that is exactly such a name (the
    os.environ.get("FEATURELINE_...") reads outside Settings: tokens file, Spark master...)."""
    names = {f"FEATURELINE_{f.name.upper()}" for f in dataclasses.fields(Settings)}
    names -= {"FEATURELINE_EXTRA", "FEATURELINE_ORIGINS"}  # not read from the environment
    for folder in _SOURCES:
        for path in (ROOT / folder).rglob("*.py"):
            if "_gen" in path.parts:
                continue
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                value = node.value if isinstance(node, ast.Constant) else None
                if isinstance(value, str) and _ENV_NAME.fullmatch(value):
                    names.add(value)
    return frozenset(names)


def unknown_env_vars(names: Iterable[str]) -> list[str]:
    return sorted(n for n in names if n.startswith("FEATURELINE_") and n not in known_env_vars())


def redis_of_env(env: Mapping[str, object]) -> RedisConfig:
    """The online store a container with environment `env` reaches with the demo repo's
    yaml, whose connection_string is ${FEATURELINE_REDIS_ADDR} (feature_repo/
    feature_store.yaml): what `featureline config` would print there."""
    variables = {k: str(v) for k, v in env.items()}
    settings = Settings.from_env(variables)
    exported = {**variables, **settings.env_vars()}  # what featureline.config.read_yaml expands
    raw = yaml.safe_load((ROOT / "feature_repo" / "feature_store.yaml").read_text())["online_store"]
    online = {
        k: re.sub(r"\$\{(\w+)\}", lambda m: exported[m.group(1)], v) if isinstance(v, str) else v
        for k, v in raw.items()
    }
    return resolve_redis(online, settings, {})


def featureline_argv_error(argv: list[str]) -> str | None:
    """None when `featureline ARGV` parses with the real parser, else why not."""
    if not argv or argv[0] not in COMMANDS:
        return f"{argv[:1]} is not a featureline command"
    try:
        args = build_parser(argv[0]).parse_args(argv)
    except SystemExit as exc:
        return f"`featureline {' '.join(argv)}` is rejected by the CLI (exit {exc.code})"
    if argv[0] == "stream":  # the runner flags are checked together once parsed
        from featureline.errors import BadInputError
        from featureline.streaming.cli import beam_args

        try:
            beam_args(args)
        except BadInputError as exc:
            return f"`featureline {' '.join(argv)}`: {exc}"
    return None


@cache
def repo_names() -> frozenset[str]:
    """Feature service and view names of the demo repo, read from its source (the repo
    itself takes ~20 s to load through Feast): `name=` of every *FeatureService /
    *FeatureView call in feature_repo/, and the functions decorated by *feature_view."""
    names: set[str] = set()
    for path in (ROOT / "feature_repo").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.FunctionDef) and any(
                re.search(r"feature_view$", ast.unparse(d).split("(")[0]) for d in node.decorator_list
            ):
                names.add(node.name)
            if not isinstance(node, ast.Call):
                continue
            func = node.func
            called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if not re.search(r"(FeatureService|FeatureView|feature_view)$", called):
                continue
            for kw in node.keywords:
                if kw.arg == "name" and isinstance(kw.value, ast.Constant):
                    names.add(str(kw.value.value))
    return frozenset(names)


def token_problems(text: str) -> list[str]:
    """Why a tokens file (serving_api/auth.py format) would not serve the demo: an
    unreadable file, an access name that is no service or view of the demo repo
    (every request with it gets 403), or no token that may read the model's service."""
    with tempfile.NamedTemporaryFile("w", suffix=".txt") as tmp:
        tmp.write(text)
        tmp.flush()
        auth = TokenAuth.from_file(tmp.name)
    problems: list[str] = []
    granted = False
    for line in text.splitlines():
        content = line.split("#", 1)[0].split()
        if not content:
            continue
        scope = auth.scope(f"Bearer {content[0]}")
        unknown = sorted(scope - repo_names() - {ALL})
        if unknown:
            problems.append(f"token {content[0]}: {unknown} are no feature service or view of the repo")
        try:
            TokenAuth.check(scope, None, MODEL_SERVICE)  # type: ignore[arg-type]  # a service check reads no plan
            granted = True
        except ForbiddenError:
            pass
    if not granted:
        problems.append(f"no token may read {MODEL_SERVICE}")
    return problems
