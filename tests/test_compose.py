"""docker-compose.yml is valid and every Featureline service runs a real subcommand.

No Docker engine runs here: `docker-compose config` (Debian's docker-compose, installed
by `make install`) validates the file without one.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from featureline.cli.main import COMMANDS, build_parser

ROOT = Path(__file__).resolve().parents[1]


def _config() -> dict:
    exe = shutil.which("docker-compose")
    assert exe, "docker-compose is not installed: run `make install` (it installs Debian's docker-compose)"
    proc = subprocess.run(
        [exe, "-f", str(ROOT / "docker-compose.yml"), "config"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    return yaml.safe_load(proc.stdout)


def test_compose_file_is_valid_and_complete() -> None:
    services = _config()["services"]
    for name in ("kafka", "redis", "postgres", "serving", "streaming", "batch"):
        assert name in services, f"compose has no {name} service"
    assert services["kafka"]["image"].startswith("apache/kafka")
    assert "KAFKA_PROCESS_ROLES" in services["kafka"]["environment"]  # KRaft, no ZooKeeper
    assert services["apply"]["build"]["dockerfile"] == "deploy/Dockerfile"
    assert (ROOT / "deploy" / "Dockerfile").is_file()


def _featureline_services() -> list[tuple[str, list[str]]]:
    services = _config()["services"]
    return [
        (name, list(svc["command"]))
        for name, svc in services.items()
        if svc.get("image", "").startswith("featureline")
    ]


@pytest.mark.parametrize("index", range(6))
def test_every_service_command_is_a_real_subcommand(index: int) -> None:
    found = _featureline_services()
    assert len(found) == 6, [n for n, _ in found]
    name, argv = found[index]
    assert argv[0] in COMMANDS, f"service {name}: {argv[0]!r} is not a featureline command"
    parser = build_parser(argv[0])
    try:
        parser.parse_args(argv)
    except SystemExit as exc:
        pytest.fail(f"service {name}: `featureline {' '.join(argv)}` is rejected (exit {exc.code})")
