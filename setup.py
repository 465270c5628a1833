"""Build hook: the generated gRPC code is made by the build backend, not only by `make`.

Metadata, packages and package data are all in pyproject.toml; setuptools still runs
this file for its one addition, a `build_py` that runs protoc (grpcio-tools, a build
requirement) on protos/ and writes featureline.serving_api._gen:
- into the build directory for a wheel (`pip wheel .`, `python -m build`, `pip install .`);
- beside the sources (serving_api/_gen/, git-ignored) for an editable install, which
  imports featureline.serving_api from the source folder.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

from setuptools import setup
from setuptools.command.build_py import build_py as _build_py

HERE = Path(__file__).resolve().parent


def _protos_build() -> ModuleType:
    # By path: importing the `featureline` package needs its dependencies, which a build
    # environment does not have; protos_build uses the standard library only.
    path = HERE / "featureline" / "cli" / "protos_build.py"
    spec = importlib.util.spec_from_file_location("_featureline_protos_build", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class build_py(_build_py):
    def run(self) -> None:
        super().run()
        protos = _protos_build()
        if self.editable_mode:
            out_dir = protos.OUT_DIR
        else:
            out_dir = Path(self.build_lib) / "featureline" / "serving_api" / "_gen"
        files = protos.build(out_dir, HERE / "protos")
        print(f"generated {len(files)} gRPC files in {out_dir}")


setup(cmdclass={"build_py": build_py})
