"""Which modules `make compile` builds with mypyc, and the guard against stale builds.

The compiled modules are C extensions built beside their sources (featureline.cli.compile);
Python prefers an extension to a .py of the same name. A build older than any of its
sources would run old code, so `featureline.serving_api` calls `install()` before any of
them is imported: when the build is stale, a finder placed first on sys.meta_path makes
Python load every compiled module from its .py source instead, the whole build (its
modules call each other inside one shared library), until `make compile` builds it
again. Nothing is deleted, and a fresh or absent build (an installed wheel has none)
changes nothing. Standard library only: the check runs on every start of the serving API
(one stat per module and extension, ~0.1 ms).
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import sys
import warnings
from collections.abc import Sequence
from importlib.abc import MetaPathFinder
from importlib.machinery import EXTENSION_SUFFIXES, ModuleSpec
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parent.parent
# The serving hot path (BENCHMARKS.md, Serving: batch 1 on 2 cores, ~1.35-1.45x the
# requests/s of the same code as Python). Modules only, no packages' __init__: serving_api's
# and the online store's read client and near cache (online_store, core). The rest of the
# core also runs in Spark executors and Beam workers, which get its sources and not an
# extension built for this interpreter; those never import the read client. The shared
# library is featureline/_native__mypyc.*, inside the package, so it imports from any
# directory, and `featureline.serving_api` and `featureline.online_store` call `install()`.
GROUP = "featureline._native"
MODULES = (
    "featureline/online_store/near_cache.py",
    "featureline/online_store/redis/aio.py",
    "featureline/online_store/redis/aio_connection.py",
    "featureline/serving_api/codec_json.py",
    "featureline/serving_api/codec_proto.py",
    "featureline/serving_api/entities.py",
    "featureline/serving_api/frame.py",
    "featureline/serving_api/grpc_h2.py",
    "featureline/serving_api/grpc_methods.py",
    "featureline/serving_api/h2_headers.py",
    "featureline/serving_api/h2_wire.py",
    "featureline/serving_api/http_server.py",
    "featureline/serving_api/memo.py",
    "featureline/serving_api/metrics.py",
    "featureline/serving_api/online_reader.py",
    "featureline/serving_api/plans.py",
    "featureline/serving_api/rest_app.py",
    "featureline/serving_api/service.py",
    "featureline/serving_api/tile_windows.py",
    "featureline/serving_api/vector_codec.py",
)
STALE_WARNING = (
    "compiled serving modules are older than their sources: running the sources as "
    "Python (slower) until `make compile` builds them again"
)


def extension_path(module: str) -> Path:
    source = ROOT / module
    return source.with_name(source.stem + EXTENSION_SUFFIXES[0])


def module_name(module: str) -> str:
    """featureline/serving_api/memo.py -> featureline.serving_api.memo"""
    return module.removesuffix(".py").replace("/", ".")


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


class SourcesFirst(MetaPathFinder):
    """Finds the compiled modules' .py sources, ahead of Python's own finder (which
    would take the extension beside them); every other name is left to the next finder."""

    def __init__(self, names: Sequence[str]) -> None:
        self.names = frozenset(names)

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> ModuleSpec | None:
        if fullname not in self.names or not path:
            return None
        leaf = fullname.rpartition(".")[2]
        for entry in path:  # the package's __path__, where Python itself would look
            source = Path(entry) / f"{leaf}.py"
            if source.is_file():
                return importlib.util.spec_from_file_location(fullname, source)
        return None


def install() -> bool:
    """Before any compiled module is imported: if the build is stale, make Python run
    the sources instead (with a warning). True when the sources were put first."""
    if state() != "stale":
        return False
    if not any(isinstance(finder, SourcesFirst) for finder in sys.meta_path):
        sys.meta_path.insert(0, SourcesFirst([module_name(m) for m in MODULES]))
        warnings.warn(STALE_WARNING, RuntimeWarning, stacklevel=2)
    return True


def remove_build() -> None:
    """Delete the build, whole (featureline.cli.compile, before building it again)."""
    for module in (*MODULES, GROUP.replace(".", "/") + "__mypyc.py"):
        with contextlib.suppress(OSError):
            os.remove(extension_path(module))
