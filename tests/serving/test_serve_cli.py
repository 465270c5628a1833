"""`featureline serve` and `featureline bench serve` as a user runs them: fast help,
clear errors with exit codes, never a stack trace."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

from featureline.settings import Settings
from featureline.specs import RepoSpec


def _run(*args: str, env: dict[str, str] | None = None) -> tuple[subprocess.CompletedProcess[str], float]:
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "featureline.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
    )
    return done, time.monotonic() - started


def test_help_is_fast_and_documents_the_options() -> None:
    for args, flags in [
        (("serve", "--help"), ("--http-port", "--grpc-port", "--workers", "--auth-tokens")),
        (("bench", "serve", "--help"), ("--quick", "--concurrency", "--soak-s")),
    ]:
        done, elapsed = _run(*args)
        assert done.returncode == 0, done.stderr
        assert all(flag in done.stdout for flag in flags), done.stdout
        assert elapsed < 5  # the CLI itself answers in < 1 s; the margin is the busy CI box


def test_port_in_use_and_bad_inputs_exit_with_a_message(
    serving_settings: Settings, serving_spec: RepoSpec
) -> None:
    env = {**serving_settings.env_vars(), "FEATURELINE_HOME": str(serving_settings.home)}
    repo = str(serving_settings.repo)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        done, _ = _run("serve", "--repo", repo, "--host", "127.0.0.1", "--http-port", port, env=env)
    assert done.returncode == 3
    assert f"the HTTP port 127.0.0.1:{port} is in use" in done.stderr
    assert "Traceback" not in done.stderr
    done, _ = _run("serve", "--repo", "/nonexistent/repo", env=env)
    assert done.returncode == 2 and "is not a directory" in done.stderr
    assert "Traceback" not in done.stderr
    tokens = serving_settings.home / "bad-tokens.txt"
    tokens.write_text("only-a-token\n")
    done, _ = _run("serve", "--repo", repo, "--auth-tokens", str(tokens), "--http-port", "0",
                   "--grpc-port", "0", env=env)  # fmt: skip
    assert done.returncode == 2 and "expected `TOKEN ACCESS`" in done.stderr
    assert "Traceback" not in done.stderr
