"""The CLI front: every subcommand explains itself, fast, and errors are clean."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from featureline.cli.main import COMMANDS, main

ROOT = Path(__file__).resolve().parents[1]


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "featureline.cli", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )


def test_top_level_help_is_fast_and_lists_every_command() -> None:
    start = time.perf_counter()
    proc = _cli("--help")
    elapsed = time.perf_counter() - start
    assert proc.returncode == 0
    for name in COMMANDS:
        assert name in proc.stdout
    # Includes interpreter start-up (~50 ms); heavy libraries would cost seconds.
    assert elapsed < 1.0, f"featureline --help took {elapsed:.2f}s"


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_subcommand_help_is_fast_and_imports_nothing_heavy(command: str) -> None:
    code = (
        "import sys, time; t=time.perf_counter()\n"
        "from featureline.cli import main\n"
        f"try:\n    main([{command!r}, '--help'])\nexcept SystemExit as e:\n    rc = e.code\n"
        "heavy = [m for m in ('feast', 'pyspark', 'apache_beam', 'torch', 'pandas', 'duckdb')"
        " if m in sys.modules]\n"
        "print('HEAVY', heavy, 'RC', rc, 'T', time.perf_counter()-t)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60)
    last = proc.stdout.strip().splitlines()[-1]
    assert "--repo" in proc.stdout, proc.stdout + proc.stderr
    assert last.startswith("HEAVY [] RC 0"), last + proc.stderr
    assert float(last.split()[-1]) < 1.0, last


def test_unknown_repo_is_a_clean_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["specs", "--repo", "/definitely/not/here"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: feature repo") and "Traceback" not in err


def test_env_prints_exports(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["env"]) == 0
    out = capsys.readouterr().out
    assert "export FEATURELINE_REDIS_ADDR=" in out and "export FEATURELINE_REGISTRY_URL=" in out


def test_version_is_the_package_metadata() -> None:
    from importlib.metadata import version

    proc = _cli("--version")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"featureline {version('featureline')}"


def test_a_command_without_its_extra_stops_with_one_line_naming_it(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # As if `featureline[serve]` were not installed: serve's workers import hpack in a
    # child process, so the check comes before the command runs.
    monkeypatch.setitem(sys.modules, "hpack", None)
    assert main(["serve", "--http-port", "0"]) == 2
    assert capsys.readouterr().err == (
        "error: `featureline serve` needs the extra [serve] ('hpack' is not installed): "
        "pip install 'featureline[serve]'\n"
    )
    with pytest.raises(SystemExit) as exited:  # its help still answers
        main(["serve", "--help"])
    assert exited.value.code == 0 and "--grpc-port" in capsys.readouterr().out


def test_an_extra_missing_at_import_is_one_line_naming_it(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from featureline.cli import extras

    monkeypatch.setitem(extras.NEEDS, "backfill", ())  # past the check, to the import itself
    # As if `featureline[batch]` were not installed, also where an earlier test imported it.
    for name in [n for n in sys.modules if n.startswith("pyspark.")]:
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setitem(sys.modules, "pyspark", None)
    assert main(["backfill", "--start", "2024-01-01", "--end", "2024-01-02"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == (
        "error: `featureline backfill` needs the extra [batch] ('pyspark' is not installed): "
        "pip install 'featureline[batch]'"
    )
    assert not any("Traceback" in line for line in err)


def test_every_command_needs_only_extras_that_exist() -> None:
    from featureline.cli import extras

    assert set(extras.NEEDS) <= set(COMMANDS)
    assert {e for needed in extras.NEEDS.values() for e in needed} <= set(extras.EXTRA_MODULES)


def test_a_missing_module_of_ours_is_not_blamed_on_an_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(COMMANDS, "env", ("featureline.cli.commands.no_such_module", "help"))
    with pytest.raises(ModuleNotFoundError):
        main(["env"])
