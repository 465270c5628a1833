"""The mypyc build of the serving hot path (featureline.cli.compile): the build is what
Python imports when fresh, and a build older than a source is never run: its sources
are imported instead, and no file is deleted."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
from collections.abc import Iterator
from importlib.machinery import EXTENSION_SUFFIXES
from pathlib import Path

import pytest

from featureline import _compiled


def test_imported_modules_follow_the_build_state() -> None:
    import featureline.serving_api.online_reader as reader

    suffix = EXTENSION_SUFFIXES[0]
    if _compiled.state() == "fresh":
        assert reader.__file__ is not None and reader.__file__.endswith(suffix)
    else:
        assert reader.__file__ is not None and reader.__file__.endswith(".py")


def test_importing_featureline_changes_nothing() -> None:
    code = "import sys, featureline; print(len(sys.meta_path), sorted(vars(featureline)))"
    proc = _python(code)
    bare = _python("import sys; print(len(sys.meta_path), 0)")
    assert proc.split()[0] == bare.split()[0]  # no finder added
    assert "_compiled" not in proc  # nothing but the version is set up


def _python(code: str) -> str:
    root = Path(__file__).resolve().parents[1]
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=root, timeout=60, check=True
    )
    return proc.stdout


def _touch(path: Path, mtime: float, text: str = "") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    os.utime(path, (mtime, mtime))


@pytest.fixture
def build(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, ...]]:
    """A package `flpkg` of two modules, each with an extension beside it. The
    extensions are not valid shared objects: importing one fails, so an import that
    succeeds shows the source was loaded."""
    modules = ("flpkg/a.py", "flpkg/sub/b.py")
    monkeypatch.setattr(_compiled, "ROOT", tmp_path)
    monkeypatch.setattr(_compiled, "MODULES", modules)
    monkeypatch.syspath_prepend(str(tmp_path))
    # Without a finder a stale build of this checkout may have put first (serving_api imported).
    finders = [f for f in sys.meta_path if not isinstance(f, _compiled.SourcesFirst)]
    monkeypatch.setattr(sys, "meta_path", finders)
    for package in ("flpkg", "flpkg/sub"):
        _touch(tmp_path / package / "__init__.py", 1_000)
    for module in modules:
        _touch(tmp_path / module, 1_000, "ORIGIN = 'source'\n")
    yield modules
    for name in [n for n in sys.modules if n == "flpkg" or n.startswith("flpkg.")]:
        del sys.modules[name]
    importlib.invalidate_caches()


def test_stale_build_is_detected_and_its_sources_run_whole(build: tuple[str, ...], tmp_path: Path) -> None:
    modules = build
    assert _compiled.state() == "absent"
    assert _compiled.install() is False
    for module in modules:
        _touch(_compiled.extension_path(module), 2_000, "not a shared object")
    assert _compiled.state() == "fresh"
    assert _compiled.install() is False  # a fresh build is imported as built
    with pytest.raises(ImportError):
        importlib.import_module("flpkg.a")  # Python takes the extension over the source
    _touch(tmp_path / "flpkg/sub/b.py", 3_000, "ORIGIN = 'source'\n")  # edited after the build
    assert _compiled.state() == "stale"
    with pytest.warns(RuntimeWarning, match="older than their sources"):
        assert _compiled.install() is True
    importlib.invalidate_caches()
    for module in modules:  # all of it, not only b: the modules share one library
        imported = importlib.import_module(_compiled.module_name(module))
        assert imported.ORIGIN == "source" and imported.__file__ == str(tmp_path / module)
    assert all(_compiled.extension_path(m).exists() for m in modules)  # nothing deleted
    assert sum(isinstance(f, _compiled.SourcesFirst) for f in sys.meta_path) == 1
    assert _compiled.install() is True  # idempotent: still one finder
    assert sum(isinstance(f, _compiled.SourcesFirst) for f in sys.meta_path) == 1


def test_partial_build_is_stale(build: tuple[str, ...]) -> None:
    _touch(_compiled.extension_path("flpkg/a.py"), 4_000)
    assert _compiled.state() == "stale"


def test_the_build_skips_only_packages_the_compiled_modules_do_not_import(tmp_path: Path) -> None:
    """mypyc would analyse torch, feast, sqlalchemy... (3,200 files, 149 s): the build's
    mypy configuration skips those, and keeps the types of what the modules import."""
    from featureline.cli.compile import mypy_config, third_party_imports

    imported = third_party_imports(_compiled.MODULES)
    assert {"numpy", "orjson", "hiredis", "httptools"} <= imported
    assert "featureline" not in imported and "asyncio" not in imported
    text = mypy_config(tmp_path / "mypyc.ini").read_text()
    for name in ("torch", "feast", "sqlalchemy", "pyspark", "apache_beam"):
        assert f"[mypy-{name}.*]\nfollow_imports = skip" in text
    for name in imported:
        assert f"[mypy-{name}]" not in text
