"""Which modules `make install` compiles with mypyc, and the guard against stale builds.

The compiled modules are C extensions built beside their sources (featureline.cli.compile);
Python imports them instead of the .py files. A build older than any of its sources
would run old code, so on import of `featureline` such a build is removed, whole (its
modules call each other inside one shared library), and the sources run as Python
until the next `make install`. Kept light: `featureline` imports it on every start.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from importlib.machinery import EXTENSION_SUFFIXES
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# The serving hot path (BENCHMARKS.md, Serving: batch 1 on 2 cores, ~1.35-1.45x the
# requests/s of the same code as Python). Modules only, no packages' __init__. Only serving_api: the shared
# core (featureline/) also runs in Spark executors and Beam workers, which get its
# sources and not an extension built for this interpreter. Their shared library is
# serving_api/_native__mypyc.*, inside the package, so it imports from any directory.
GROUP = "featureline.serving_api._native"
MODULES = (
    "featureline/serving_api/codec_json.py",
    "featureline/serving_api/codec_proto.py",
    "featureline/serving_api/entities.py",
    "featureline/serving_api/frame.py",
    "featureline/serving_api/grpc_h2.py",
    "featureline/serving_api/grpc_methods.py",
    "featureline/serving_api/h2_wire.py",
    "featureline/serving_api/http_server.py",
    "featureline/serving_api/memo.py",
    "featureline/serving_api/metrics.py",
    "featureline/serving_api/near_cache.py",
    "featureline/serving_api/online_reader.py",
    "featureline/serving_api/plans.py",
    "featureline/serving_api/redis_client.py",
    "featureline/serving_api/rest_app.py",
    "featureline/serving_api/service.py",
    "featureline/serving_api/vector_codec.py",
)


def extension_path(module: str) -> Path:
    source = ROOT / module
    return source.with_name(source.stem + EXTENSION_SUFFIXES[0])


def state() -> str:
    """ "fresh" (every module built after its source), "stale", or "absent"."""
    built = 0
    for module in MODULES:
        ext = extension_path(module)
        try:
            ext_mtime = ext.stat().st_mtime
        except OSError:
            continue
        built += 1
        try:
            if (ROOT / module).stat().st_mtime > ext_mtime:
                return "stale"
        except OSError:
            return "stale"
    if built == 0:
        return "absent"
    return "fresh" if built == len(MODULES) else "stale"


def remove_build() -> None:
    for module in (*MODULES, GROUP.replace(".", "/") + "__mypyc.py"):
        with contextlib.suppress(OSError):
            os.remove(extension_path(module))


def drop_stale() -> None:
    if state() == "stale":
        remove_build()
        warnings.warn(
            "compiled serving modules were older than their sources and were removed; "
            "running them as Python (slower) until `make install` compiles them again",
            RuntimeWarning,
            stacklevel=2,
        )
