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
from deploy_helpers import featureline_argv_error, token_problems, unknown_env_vars

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
    error = featureline_argv_error(argv)
    assert error is None, f"service {name}: {error}"


def test_every_environment_variable_is_one_the_code_reads() -> None:
    services = _config()["services"]
    names = {
        n
        for svc in services.values()
        if svc.get("image", "").startswith("featureline")
        for n in svc["environment"]
    }
    assert "FEATURELINE_AUTH_TOKENS_FILE" in names and "FEATURELINE_OFFLINE_DIR" in names
    assert unknown_env_vars(names) == []


def test_the_serving_tokens_grant_the_demo() -> None:
    secret = _config()["secrets"]["serving_tokens"]["file"]
    assert token_problems(Path(secret).read_text()) == []


def test_long_running_services_are_checked_on_their_real_endpoints() -> None:
    services = _config()["services"]
    serving, streaming = services["serving"], services["streaming"]
    assert "http://127.0.0.1:8080/health" in " ".join(serving["healthcheck"]["test"])
    port = streaming["command"][streaming["command"].index("--metrics-port") + 1]
    assert f"http://127.0.0.1:{port}/metrics" in " ".join(streaming["healthcheck"]["test"])
    for svc in (serving, streaming):
        assert svc["read_only"] is True
        assert any(t.startswith("/tmp") for t in svc["tmpfs"])
        assert any(t.startswith(svc["environment"]["FEATURELINE_HOME"]) for t in svc["tmpfs"])
