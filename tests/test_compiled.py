"""The mypyc build of the serving hot path (featureline.cli.compile): the build is what
Python imports when fresh, and a build older than a source is detected and removed."""

from __future__ import annotations

import os
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


def _touch(path: Path, mtime: float) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")
    os.utime(path, (mtime, mtime))


def test_stale_build_is_detected_and_removed_whole(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    modules = ("pkg/a.py", "pkg/sub/b.py")
    monkeypatch.setattr(_compiled, "ROOT", tmp_path)
    monkeypatch.setattr(_compiled, "MODULES", modules)
    for module in modules:
        _touch(tmp_path / module, 1_000)
    assert _compiled.state() == "absent"
    for module in modules:
        _touch(_compiled.extension_path(module), 2_000)
    assert _compiled.state() == "fresh"
    _touch(tmp_path / "pkg/sub/b.py", 3_000)  # a source edited after the build
    assert _compiled.state() == "stale"
    with pytest.warns(RuntimeWarning, match="older than their sources"):
        _compiled.drop_stale()
    assert not any(_compiled.extension_path(m).exists() for m in modules)  # all of it, not only b
    assert _compiled.state() == "absent"
    _touch(_compiled.extension_path("pkg/a.py"), 4_000)  # a partial build is stale too
    assert _compiled.state() == "stale"
