"""wrk (a C HTTP/1.1 load generator, Debian's `wrk`) as a second generator of the
closed-loop batch-1 REST phase, beside the Python one.

Why: on the 2-core machine the generator shares the cores with the servers it
measures. The Python generator spends ~35 us of CPU a call, about a third of a core at
our batch-1 rate and a twentieth at Feast's, so it caps the faster server more; wrk
spends a few microseconds a call. Both generators keep `concurrency` connections with
one request in flight each and cycle through the same bodies, and both servers are
driven by the same one in the same run. One wrk thread: a second would take CPU the
servers need. `make install` installs wrk (Debian); without it the phase is skipped.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from benchmarks.loadgen.generator import LoadResult

# Requests are formatted once, in wrk's init; `done` prints one parseable line.
_SCRIPT = """
local requests = {}
local i = 0
function init(args)
  for line in io.lines(args[1]) do
    requests[#requests + 1] = wrk.format("POST", args[2], {["Content-Type"] = "application/json"}, line)
  end
end
function request()
  i = i % #requests + 1
  return requests[i]
end
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("FEATURELINE %d %d %d %d %.3f %.3f %.3f %.3f\\n",
    summary.requests, e.connect + e.read + e.write + e.timeout, e.status, summary.duration,
    latency:percentile(50) / 1000, latency:percentile(90) / 1000,
    latency:percentile(99) / 1000, latency.max / 1000))
end
"""


def available() -> bool:
    return shutil.which("wrk") is not None


def _run(port: int, path: str, bodies: list[bytes], concurrency: int, seconds: float) -> LoadResult:
    with tempfile.TemporaryDirectory(prefix="featureline-wrk-") as tmp:
        script, lines = Path(tmp) / "bodies.lua", Path(tmp) / "bodies.txt"
        script.write_text(_SCRIPT)
        lines.write_bytes(b"\n".join(bodies) + b"\n")  # JSON bodies hold no newline
        argv = ["wrk", "-t1", f"-c{concurrency}", f"-d{seconds:g}s", "--timeout", "5s",
                "-s", str(script), f"http://127.0.0.1:{port}", "--", str(lines), path]  # fmt: skip
        done = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60, check=False)
    line = next((x for x in done.stdout.splitlines() if x.startswith("FEATURELINE ")), None)
    if done.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stderr.strip() or done.stdout.strip()}")
    requests, socket_errors, bad_status, duration_us = (int(x) for x in line.split()[1:5])
    p50, p90, p99, top = (float(x) for x in line.split()[5:9])
    return LoadResult(
        requests,
        socket_errors + bad_status,
        duration_us / 1e6,
        np.array([]),
        fixed_percentiles=(p50, p90, p99, top),
    )


async def run_wrk(port: int, path: str, bodies: list[bytes], concurrency: int, seconds: float) -> LoadResult:
    """A closed loop of `concurrency` connections for `seconds`, bodies in turn."""
    return await asyncio.to_thread(_run, port, path, bodies, concurrency, seconds)
