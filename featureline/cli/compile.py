"""Compile the serving hot path with mypyc: `python -m featureline.cli.compile` (run by
`make compile`; a no-op when the build is fresh, rebuilt whole when it is stale).

mypyc turns the type-annotated modules of `featureline._compiled.MODULES` into C
extensions beside their sources, with the same behaviour (plus runtime checks of the
annotations). Measured here on 2 cores (a profiling script on the bench's data, batch
1, near cache on): REST ~1.35x and gRPC ~1.45x the requests/s of the same code as
Python (BENCHMARKS.md, Serving).
Without mypy or a C compiler, or if the build fails, the modules simply run as Python.
"""

from __future__ import annotations

import ast
import contextlib
import importlib.metadata
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from featureline._compiled import GROUP, MODULES, ROOT, extension_path, remove_build, state

# mypyc through setuptools (its CLI cannot name the group): one shared library for the
# modules, named inside the featureline package, built in place.
_SETUP = f"""
import sys
from setuptools import setup
from mypyc.build import mypycify
setup(name="featureline-native", ext_modules=mypycify(sys.argv[1:], group_name="{GROUP}"),
      script_args=["build_ext", "--inplace"])
"""


def third_party_imports(modules: tuple[str, ...]) -> set[str]:
    """The top-level names of the installed packages that `modules` import themselves."""
    names: set[str] = set()
    for module in modules:
        for node in ast.walk(ast.parse((ROOT / module).read_text())):
            if isinstance(node, ast.Import):
                names.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names.add(node.module.split(".")[0])
    return {name for name in names if name not in sys.stdlib_module_names and name != "featureline"}


def mypy_config(path: Path) -> Path:
    """A mypy configuration for the build that skips every installed package the compiled
    modules do not import themselves. mypyc type-checks all that the modules reach,
    through the rest of featureline, with full ASTs kept: 3,203 files (torch's 1,384,
    mypy's, feast's, sqlalchemy's...), 149 s of the build on 2 cores; with them skipped,
    15 s. A skipped package's objects are `Any` to the compiled code, which only ever
    calls them through Python anyway; the ones it imports keep their types."""
    keep = third_party_imports(MODULES)
    installed = {name for name in importlib.metadata.packages_distributions() if name.isidentifier()}
    lines = ["[mypy]", "python_version = 3.11", "ignore_missing_imports = True", ""]
    for name in sorted(installed - keep):
        lines += [f"[mypy-{name}]", "follow_imports = skip", f"[mypy-{name}.*]", "follow_imports = skip"]
    path.write_text("\n".join(lines) + "\n")
    return path


def main() -> int:
    if state() == "fresh":
        print("compiled serving modules are up to date")
        return 0
    if shutil.which("cc") is None and shutil.which("gcc") is None:
        print("warning: no C compiler: the serving modules run as Python (slower)", file=sys.stderr)
        return 0
    try:
        import mypyc  # noqa: F401
    except ImportError:
        print("warning: mypy (mypyc) is not installed: the serving modules run as Python", file=sys.stderr)
        return 0
    remove_build()
    log = ROOT / "build" / "mypyc.log"
    log.parent.mkdir(exist_ok=True)
    print(f"compiling {len(MODULES)} serving modules with mypyc (~1-2 min on 2 cores; log: {log}) ...",
          flush=True)  # fmt: skip
    started = time.monotonic()
    config = mypy_config(log.parent / "mypyc.ini")
    with log.open("wb") as out:
        code = subprocess.call([sys.executable, "-c", _SETUP, "--config-file", str(config), *MODULES],
                               cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)  # fmt: skip
    if code == 0:
        # setuptools copies unchanged shims with their old times; the build as a whole
        # (one shared library) is as new as this run.
        for module in MODULES:
            with contextlib.suppress(OSError):
                os.utime(extension_path(module))
    if code != 0 or state() != "fresh":
        remove_build()
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-15:])
        print(f"warning: mypyc failed (exit {code}); the serving modules run as Python:\n{tail}",
              file=sys.stderr)  # fmt: skip
        return 0
    print(f"compiled in {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
