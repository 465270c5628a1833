"""The package as others install it (issue 15, "A good package").

A wheel is built, with build isolation, from a clean checkout: the files git tracks or
would track (uncommitted edits included), none of the ignored ones (no serving_api/_gen,
no mypyc build, no build/). It must hold one top-level name, the gRPC code the build
backend generated, the .proto, py.typed, the license and the extras, and no benchmark.
Then `featureline[serve]` alone goes into a fresh venv: `featureline serve --help` and
`--version` run there, the serving modules import, and pyspark, apache-beam, duckdb and
torch are not installed. uv (`make install` puts it in .venv) resolves from PyPI, or
from its cache: ~10 s when warm; without uv, pip does the same, slower.
"""

from __future__ import annotations

import email
import os
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from email.message import Message
from pathlib import Path

import pytest

from featureline.cli.extras import EXTRA_MODULES

pytestmark = pytest.mark.package

ROOT = Path(__file__).resolve().parents[1]
UV = shutil.which("uv", path=str(Path(sys.executable).parent)) or shutil.which("uv")
GEN = "featureline/serving_api/_gen/"
PROTO = "featureline/serving/v1/serving.proto"
NOT_FOR_SERVING = ("pyspark", "apache_beam", "duckdb", "torch")


def _run(*cmd: str | Path, timeout: float = 300, cwd: Path | None = None) -> str:
    proc = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=timeout, cwd=cwd)
    assert proc.returncode == 0, (
        f"{cmd} exited {proc.returncode}:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    )
    return proc.stdout


def _clean_checkout(dest: Path) -> Path:
    listed = _run("git", "ls-files", "-z", "--cached", "--others", "--exclude-standard", cwd=ROOT)
    for name in filter(None, listed.split("\0")):
        src, dst = ROOT / name, dest / name
        if not os.path.lexists(src):  # deleted, not yet committed
            continue
        dst.parent.mkdir(parents=True, exist_ok=True)
        if src.is_symlink():  # featureline/{streaming,batch,serving_api,protos}
            dst.symlink_to(os.readlink(src))
        else:
            shutil.copy2(src, dst)
    assert not (dest / "serving_api" / "_gen").exists()
    return dest


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    src = _clean_checkout(tmp_path_factory.mktemp("checkout"))
    out = tmp_path_factory.mktemp("dist")
    if UV:
        _run(UV, "build", "--wheel", "--python", sys.executable, "--out-dir", out, src)
    else:
        _run(sys.executable, "-m", "pip", "wheel", "--no-deps", "-w", out, src, timeout=600)
    (built,) = out.glob("featureline-*.whl")
    return built


def _names(wheel: Path) -> list[str]:
    with zipfile.ZipFile(wheel) as z:
        return z.namelist()


def _read(wheel: Path, name: str) -> str:
    with zipfile.ZipFile(wheel) as z:
        return z.read(name).decode()


def _metadata(wheel: Path) -> tuple[str, Message]:
    (meta,) = [n for n in _names(wheel) if n.endswith(".dist-info/METADATA")]
    return meta.rsplit("/", 1)[0], email.message_from_string(_read(wheel, meta))


def test_wheel_has_one_top_level_name(wheel: Path) -> None:
    dist_info, _ = _metadata(wheel)
    assert _read(wheel, f"{dist_info}/top_level.txt").split() == ["featureline"]
    assert {n.split("/")[0] for n in _names(wheel)} == {"featureline", dist_info}


def test_wheel_has_generated_code_proto_and_py_typed(wheel: Path) -> None:
    names = set(_names(wheel))
    for module in ("__init__.py", "serving_pb2.py", "serving_pb2.pyi", "serving_pb2_grpc.py"):
        assert GEN + module in names
    # protoc's `from featureline.serving.v1 import` rewritten to our package (protos_build)
    assert "from featureline.serving_api._gen import serving_pb2" in _read(wheel, GEN + "serving_pb2_grpc.py")
    assert _read(wheel, f"featureline/protos/{PROTO}") == (ROOT / "protos" / PROTO).read_text()
    assert "featureline/py.typed" in names


# The `featureline bench` command itself: it runs benchmarks/ from a source checkout and
# says what to do elsewhere (issue 15); it holds no benchmark.
BENCH_FRONT = "featureline/cli/commands/bench.py"


def test_wheel_ships_no_benchmarks(wheel: Path) -> None:
    benches = [
        n
        for n in _names(wheel)
        if n != BENCH_FRONT and any(w in part for part in n.split("/") for w in ("bench", "loadgen"))
    ]
    assert benches == []


def test_wheel_metadata_has_license_entry_point_and_extras(wheel: Path) -> None:
    dist_info, meta = _metadata(wheel)
    assert meta["License-Expression"] == "Apache-2.0"
    assert "Apache License" in _read(wheel, f"{dist_info}/licenses/LICENSE")
    assert "Typing :: Typed" in meta.get_all("Classifier", [])
    provided = set(meta.get_all("Provides-Extra", []))
    assert provided >= {"all", "dev", *EXTRA_MODULES}  # the extras the CLI names exist
    requires = meta.get_all("Requires-Dist", [])
    # pyspark, apache-beam, duckdb and torch come only with their extra.
    for dist, extra in (
        ("pyspark", "batch"),
        ("apache-beam", "stream"),
        ("duckdb", "batch"),
        ("torch", "ml"),
    ):
        lines = [r for r in requires if r.split(";")[0].strip().lower().startswith(dist)]
        assert lines and all(f'extra == "{extra}"' in r for r in lines), (dist, lines)
    assert "featureline = featureline.cli:main" in _read(wheel, f"{dist_info}/entry_points.txt")


@pytest.fixture(scope="module")
def serve_venv(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    venv = tmp_path_factory.mktemp("serve-venv") / "venv"
    if UV:
        _run(UV, "venv", "-q", "--python", sys.executable, venv)
        _run(UV, "pip", "install", "-q", "--python", venv / "bin" / "python", f"{wheel}[serve]", timeout=600)
    else:
        _run(sys.executable, "-m", "venv", venv)
        _run(venv / "bin" / "python", "-m", "pip", "install", "-q", f"{wheel}[serve]", timeout=900)
    yield venv


def test_serve_extra_runs_featureline_serve_without_spark_or_beam(serve_venv: Path) -> None:
    python, featureline = serve_venv / "bin" / "python", serve_venv / "bin" / "featureline"
    missing = _run(
        python, "-c", f"import importlib.util as u; print([u.find_spec(m) for m in {NOT_FOR_SERVING}])"
    )
    assert missing.strip() == str([None] * len(NOT_FOR_SERVING))
    version = _run(python, "-c", "import importlib.metadata as m; print(m.version('featureline'))").strip()
    assert _run(featureline, "--version").strip() == f"featureline {version}"
    help_text = _run(featureline, "serve", "--help", cwd=serve_venv)
    assert "--grpc-port" in help_text and "--http-port" in help_text and "--repo" in help_text
    no_spark = subprocess.run([featureline, "backfill"], capture_output=True, text=True, timeout=60)
    assert (no_spark.returncode, no_spark.stderr) == (
        2,
        "error: `featureline backfill` needs the extra [batch] ('pyspark' is not installed): "
        "pip install 'featureline[batch]'\n",
    )


def test_serve_extra_imports_every_serving_module(serve_venv: Path) -> None:
    """What `featureline serve` imports as it starts (serving_api/server.py imports its
    servers inside functions), and the generated code against the installed protobuf."""
    code = (
        "import pkgutil, importlib, sys, featureline.serving_api as s\n"
        "skip = ('workers', 'bench', 'loadgen')\n"
        "names = [m.name for m in pkgutil.walk_packages(s.__path__, s.__name__ + '.')\n"
        "         if not any(w in m.name for w in skip)]\n"
        "for name in names: importlib.import_module(name)\n"
        "from featureline.serving_api.proto import pb\n"
        "import featureline.odfv, featureline.repo, feast\n"
        "print(len(names), pb.DESCRIPTOR.package)\n"
    )
    out = _run(serve_venv / "bin" / "python", "-c", code, cwd=serve_venv)
    count, package = out.split()[-2:]
    assert int(count) >= 25 and package == "featureline.serving.v1"
