"""`featureline demo`, the README's main job, end to end on real services (small day)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from featureline.cli.devstack import free_ports

ROOT = Path(__file__).resolve().parents[1]


def test_demo_runs_every_stage_and_online_equals_offline(tmp_path: Path) -> None:
    redis_port, kafka_port = free_ports(2)
    # Only the settings given here: nothing another test or the caller exported.
    env = {k: v for k, v in os.environ.items() if not k.startswith("FEATURELINE_")}
    env |= {
        "FEATURELINE_HOME": str(tmp_path / "home"),
        "FEATURELINE_REDIS_PORT": str(redis_port),
        "FEATURELINE_KAFKA_PORT": str(kafka_port),
    }
    proc = subprocess.run(
        [sys.executable, "-m", "featureline.cli", "demo", "--events", "4000"],
        capture_output=True, text=True, cwd=ROOT, env=env, timeout=900,
    )  # fmt: skip
    out = proc.stdout
    assert proc.returncode == 0, out[-4000:] + proc.stderr[-4000:]
    for number in range(1, 14):
        assert f"[{number}/13]" in out
    assert "Traceback" not in out + proc.stderr
    # Real values came back from Redis through REST and gRPC, and both agree.
    assert "count_amount_24h" in out and "PRESENT" in out
    assert "equal to REST: True" in out
    assert "scores from transactions.scores" in out
    # The headline of issue 6: streaming + backfill agree with retrieval exactly.
    assert "online and offline agree exactly" in out
    # The last lines: the web UI's address (stopped without --keep).
    assert "web UI was at http://127.0.0.1:" in out
    # The demo stopped what it started.
    status = subprocess.run(
        [sys.executable, "-m", "featureline.cli", "dev", "status"],
        capture_output=True, text=True, cwd=ROOT, env=env, timeout=60,
    )  # fmt: skip
    assert status.returncode == 1
