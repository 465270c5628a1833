"""`featureline bench`: the benchmarks live in the checkout's `benchmarks/`, outside the
package; from a checkout every one answers `--help` fast, and without one (an installed
wheel) every form of the command is one clean error with exit code 2."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from featureline.cli.commands import bench
from featureline.cli.main import main

ROOT = Path(__file__).resolve().parents[1]


def test_the_checkout_is_found_and_a_stray_benchmarks_folder_is_not(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert bench.checkout_root() == ROOT
    # A `benchmarks` package beside an installed `featureline` (site-packages has no
    # pyproject.toml) is someone else's: never imported as ours.
    (tmp_path / "benchmarks").mkdir()
    (tmp_path / "benchmarks" / "__init__.py").write_text("")
    (tmp_path / "featureline").mkdir()
    fake = tmp_path / "featureline" / "__init__.py"
    fake.write_text("")
    monkeypatch.setattr(bench.featureline, "__file__", str(fake))
    monkeypatch.chdir(tmp_path)
    assert bench.checkout_root() is None
    (tmp_path / "pyproject.toml").write_text("")
    assert bench.checkout_root() == tmp_path


def test_every_benchmark_answers_help_fast_and_light() -> None:
    """Each `bench NAME --help` lists its own options and imports no heavy library."""
    for name, flag in [("historical", "--big-keys"), ("materialize", "--entities"), ("serve", "--soak-s"),
                       ("serve_path", "--rounds"), ("stream", "--feast-events"),
                       ("worker", "--kafka-requests")]:  # fmt: skip
        code = (
            "import sys, time; t = time.perf_counter()\n"
            "from featureline.cli.main import main\n"
            f"try:\n    main(['bench', {name!r}, '--help'])\nexcept SystemExit as e:\n    rc = e.code\n"
            "heavy = [m for m in ('feast', 'pyspark', 'apache_beam', 'torch', 'pandas', 'numpy', 'grpc')"
            " if m in sys.modules]\n"
            "print('HEAVY', heavy, 'RC', rc, 'T', time.perf_counter() - t)\n"
        )
        started = time.monotonic()
        done = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60
        )
        last = done.stdout.strip().splitlines()[-1]
        assert flag in done.stdout, done.stdout + done.stderr
        assert last.startswith("HEAVY [] RC 0"), last + done.stderr
        assert float(last.split()[-1]) < 1.0 and time.monotonic() - started < 5, last


@pytest.mark.parametrize(
    "argv",
    [
        ["bench", "serve"],
        ["bench", "historical", "--quick", "--skip", "spark"],
        ["bench", "worker", "--help"],
    ],
)
def test_without_a_checkout_every_form_is_one_clean_error(
    argv: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(bench, "checkout_root", lambda: None)
    assert main(argv) == 2
    out, err = capsys.readouterr()
    assert err.count("\n") == 1 and err.startswith("error: the benchmarks ship with the source checkout")
    assert "make install" in err and "featureline bench NAME" in err and not out


def test_without_a_checkout_the_list_still_shows(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(bench, "checkout_root", lambda: None)
    with pytest.raises(SystemExit) as done:
        main(["bench", "--help"])
    assert done.value.code == 0
    out = capsys.readouterr().out
    assert all(name in out for name in bench.BENCHMARKS), out


def test_benchmarks_are_not_packaged() -> None:
    """pyproject packages `featureline*` only: a top-level `benchmarks/` stays out of the
    wheel (the packaging test builds the wheel and checks its contents)."""
    import tomllib

    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    include = config["tool"]["setuptools"]["packages"]["find"]["include"]
    assert include == ["featureline*"]
    assert not any(str(path).startswith("benchmarks") for path in config["tool"]["setuptools"]["package-dir"])
