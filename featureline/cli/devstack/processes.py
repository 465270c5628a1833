"""Background server processes: spawn detached, check liveness, stop, read logs, ports.

Standard library only, so the CLI module can import it at the top.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

# Popen objects of servers started by *this* Python process, by pid. Keeping them
# referenced stops Popen.__del__ from warning that a child is still running, and lets
# stop/liveness checks reap our own children (a dead but unreaped child is a zombie,
# which `kill(pid, 0)` still reports as alive).
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}

# /proc/<pid>/exe is how we tell "our server" from an unrelated process that reused
# its pid; where /proc is missing (macOS) we can only trust the pid.
_PROC = Path("/proc")


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free right now (the OS picks it)."""
    return free_ports(1, host)[0]


def free_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """`count` distinct free ports: all sockets stay bound until every port is chosen,
    so two calls cannot return the same port (separate free_port() calls can)."""
    sockets: list[socket.socket] = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind((host, 0))
            sockets.append(sock)
        return [int(s.getsockname()[1]) for s in sockets]
    finally:
        for sock in sockets:
            sock.close()


def port_in_use(host: str, port: int) -> bool:
    """True when something already listens on host:port (we could not bind it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # SO_REUSEADDR: a port left in TIME_WAIT by a server we just stopped is free
        # for a new listener; only a live listener makes bind() fail.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return True
    return False


def tcp_connects(host: str, port: int, timeout_s: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False


def spawn(argv: Sequence[str], log_path: Path, cwd: Path) -> int:
    """Start a server that outlives this process: own session (no SIGINT/SIGHUP from
    our terminal), stdin closed, stdout and stderr appended to log_path."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        log.write(f"--- {time.strftime('%Y-%m-%dT%H:%M:%S%z')} {' '.join(argv)}\n".encode())
        log.flush()
        proc = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            start_new_session=True,
        )
    _CHILDREN[proc.pid] = proc
    return proc.pid


def exit_code(pid: int) -> int | None:
    """The exit status of a server this process started and that has exited."""
    proc = _CHILDREN.get(pid)
    return None if proc is None else proc.poll()


def is_running(pid: int, binary: str | Path | None = None) -> bool:
    """True when pid is alive and (where /proc can tell) runs `binary`."""
    proc = _CHILDREN.get(pid)
    if proc is not None and proc.poll() is not None:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return False  # alive, but another user's process: not ours
    if binary is None or not _PROC.is_dir():
        return True
    try:
        exe = os.readlink(_PROC / str(pid) / "exe")
    except OSError:
        return False  # a zombie or a vanished process has no exe link
    return os.path.realpath(exe) == os.path.realpath(binary)


def terminate(pid: int, binary: str | Path | None, grace_s: float = 5.0) -> bool:
    """SIGTERM, then SIGKILL after grace_s. Returns False if it was not running."""
    if not is_running(pid, binary):
        return False
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    if _wait_gone(pid, binary, grace_s):
        return True
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    _wait_gone(pid, binary, 2.0)
    return True


def _wait_gone(pid: int, binary: str | Path | None, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not is_running(pid, binary):
            _CHILDREN.pop(pid, None)
            return True
        time.sleep(0.05)
    return False


def log_tail(path: Path, lines: int = 15) -> str:
    """The last lines of a log file, indented, for error messages."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "    (no log file)"
    tail = [line for line in text.splitlines() if line.strip()][-lines:]
    return "\n".join(f"    {line}" for line in tail) or "    (log is empty)"
