"""Mutation check: apply deliberate bugs to the production rules, one at a time, run the
tests that should see each, restore the file, and print what was caught.

    make mutation            (or: PYTHONPATH=. .venv/bin/python tests/mutation/run.py [-k NAME])

Not collected by pytest (no test_ prefix); not part of `make test` (~10 min on 2 cores).
Window and time rules are copied per engine (featureline.semantics for serving and the
online writer, vectorized copies for historical DuckDB/Spark, backfill and materialize),
so each such bug is applied to each copy separately; aggregation functions are defined
once (featureline.aggregations), so their bugs are applied there and checked on every
path. Every file is restored after its run, also on
Ctrl-C or SIGTERM (try/finally, and an atexit hook as a second guard).
"""

from __future__ import annotations

import argparse
import atexit
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

ROOT = Path(__file__).resolve().parents[2]
_PENDING: dict[Path, bytes] = {}  # files mutated right now -> their original bytes


@dataclass(frozen=True)
class Mutation:
    name: str
    bug: str
    path: str
    old: str
    new: str
    tests: tuple[str, ...]


HIST_LOCAL_TESTS = (
    "tests/historical/test_oracle.py::test_local_engine_equals_oracle",
    "tests/historical/test_oracle_property.py::test_local_engine_equals_oracle_on_generated_cases",
)
# Oracle tests of var/std on each path: stream tiles, backfill rows and tiles, serving's
# tile merge, historical DuckDB (Spark: tests/historical/test_oracle.py, marked spark).
VAR_PATHS = (
    "tests/streaming/test_units.py",
    "tests/batch/test_batch_windows.py",
    "tests/serving/test_serve_read_path.py",
    *HIST_LOCAL_TESTS,
)
HIST_LOCAL = ("tests/historical/test_oracle.py", "tests/historical/test_oracle_property.py", "-k", "local")
MUTATIONS = (
    Mutation(
        "window-start-semantics",
        "window start one tile late (serving, online tiles)",
        "featureline/semantics.py",
        "return ((t_us - window_s * US) // size) * size",
        "return ((t_us - window_s * US) // size + 1) * size",
        (
            "tests/test_semantics.py",
            "tests/serving/test_serve_read_path.py",
            "tests/serving/test_serve_feast_parity.py",
        ),
    ),
    Mutation(
        "window-start-historical",
        "window start one tile late (historical, both engines' windows)",
        "batch/historical/aggregations.py",
        "return ((t_us - np.int64(window_s * US)) // size) * size",
        "return ((t_us - np.int64(window_s * US)) // size + 1) * size",
        HIST_LOCAL,
    ),
    Mutation(
        "window-start-backfill",
        "window start one tile late (Spark backfill's feature rows)",
        "batch/backfill/windows.py",
        "start = ((ts - agg.window_s * US) // size) * size",
        "start = ((ts - agg.window_s * US) // size + 1) * size",
        ("tests/batch/test_batch_windows.py",),
    ),
    Mutation(
        "ttl-bound-serving",
        "< instead of <= at t - ttl (online: a value exactly ttl old)",
        "serving_api/online_reader.py",
        "OUTSIDE_MAX_AGE if oldest is not None and event_us < oldest else PRESENT",
        "OUTSIDE_MAX_AGE if oldest is not None and event_us <= oldest else PRESENT",
        ("tests/serving/test_serve_read_path.py",),
    ),
    Mutation(
        "ttl-bound-historical",
        "< instead of <= at t - ttl (historical DuckDB engine)",
        "batch/historical/local_engine.py",
        'value = f"CASE WHEN {alias}.{EVENT_TS} >= e.{ROW_TS} - {ttl_us} THEN {value} END"',
        'value = f"CASE WHEN {alias}.{EVENT_TS} > e.{ROW_TS} - {ttl_us} THEN {value} END"',
        HIST_LOCAL,
    ),
    Mutation(
        "ttl-bound-semantics",
        "< instead of <= in semantics.within_ttl",
        "featureline/semantics.py",
        "return event_us <= t_us and (low is None or event_us >= low)",
        "return event_us <= t_us and (low is None or event_us > low)",
        ("tests/test_semantics.py",),
    ),
    Mutation(
        "tie-break-online",
        "created-time tie-break reversed (online LWW Lua script: stream, materialize)",
        "featureline/online/writer.py",
        "return ne < oe or (ne == oe and nc < oc)",
        "return ne < oe or (ne == oe and nc > oc)",
        ("tests/serving/test_serve_feast_parity.py",),
    ),
    Mutation(
        "tie-break-semantics",
        "created-time tie-break reversed (semantics.latest_order_key)",
        "featureline/semantics.py",
        "return (event_us, -1 if created_us is None else created_us)",
        "return (event_us, 1 if created_us is None else -created_us)",
        ("tests/test_semantics.py", "tests/batch/test_batch_encode.py"),
    ),
    Mutation(
        "tie-break-historical",
        "created-time tie-break reversed (historical DuckDB engine)",
        "batch/historical/local_engine.py",
        'created = f"{micros_sql(src.created, created_type)}::HUGEINT + {_CREATED_OFFSET}"',
        'created = f"{_CREATED_OFFSET} - {micros_sql(src.created, created_type)}::HUGEINT"',
        HIST_LOCAL,
    ),
    Mutation(
        "tie-break-materialize",
        "created-time tie-break reversed (materialize's latest row)",
        "batch/materialize/latest.py",
        "for col in (rows[TS_US], rows[CREATED_US], tiebreak):",
        "for col in (rows[TS_US], pc.negate(rows[CREATED_US]), tiebreak):",
        ("tests/batch/test_batch_materialize.py", "tests/batch/test_batch_encode.py", "-k", "oracle"),
    ),
    Mutation(
        "empty-mean",
        "mean of an empty window 0.0 instead of null (the registry: every path)",
        "featureline/aggregations.py",
        "return None if count == 0 else units / (count << UNIT_EXP)",
        "return 0.0 if count == 0 else units / (count << UNIT_EXP)",
        (
            "tests/test_semantics.py",
            "tests/serving/test_serve_read_path.py",
            "tests/batch/test_batch_windows.py",
            *HIST_LOCAL_TESTS,
        ),
    ),
    Mutation(
        "variance-n",
        "population variance (n) instead of the sample variance (n - 1) (the registry: every path)",
        "featureline/aggregations.py",
        "return None if numerator < 0 else numerator / ((n * (n - 1)) << (2 * UNIT_EXP))",
        "return None if numerator < 0 else numerator / ((n * n) << (2 * UNIT_EXP))",
        ("tests/test_aggregations.py", *VAR_PATHS),
    ),
    Mutation(
        "square-rounded",
        "var/std from IEEE-rounded squares x*x instead of exact ones (stream, backfill, serving)",
        "featureline/aggregations.py",
        "return (num * num) << (2 * (UNIT_EXP - (den.bit_length() - 1)))",
        "return exact_units(float(value) * float(value)) << UNIT_EXP",
        VAR_PATHS,
    ),
)
NOT_APPLICABLE: dict[str, str] = {}


def _restore_all() -> None:
    for path, original in list(_PENDING.items()):
        path.write_bytes(original)
        _PENDING.pop(path, None)


def _on_signal(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def _compiled(path: Path) -> bool:
    """A mypyc build beside the source would run instead of the mutant (and featureline's
    stale-build guard would delete it): such a module is not mutated."""
    return any(path.with_name(path.stem + s).exists() for s in (".so", ".pyd")) or any(
        path.parent.glob(f"{path.stem}.cpython-*.so")
    )


def run_one(m: Mutation, timeout_s: int) -> tuple[str, list[str], float]:
    """(verdict, failing tests, seconds) of one mutation."""
    path = ROOT / m.path
    original = path.read_bytes()
    text = original.decode()
    if text.count(m.old) != 1:
        return "NOT APPLIED: the rule's code changed (update tests/mutation/run.py)", [], 0.0
    if _compiled(path):
        return "NOT APPLIED: a compiled build of this module is present (remove it first)", [], 0.0
    began = time.monotonic()
    _PENDING[path] = original
    try:
        path.write_text(text.replace(m.old, m.new))
        cmd = [sys.executable, "-m", "pytest", "-q", "-rf", "-p", "no:cacheprovider", "--no-header",
               "-W", "ignore", *m.tests]  # fmt: skip
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        try:
            proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout_s)
        except subprocess.TimeoutExpired:
            return "TIMED OUT (counted as not caught)", [], time.monotonic() - began
    finally:
        path.write_bytes(original)
        _PENDING.pop(path, None)
    failed = sorted(set(re.findall(r"^FAILED (\S+)", proc.stdout, re.M)))
    errors = sorted(set(re.findall(r"^ERROR (\S+)", proc.stdout, re.M)))
    seconds = time.monotonic() - began
    if failed:
        return "CAUGHT", failed, seconds
    if errors or proc.returncode not in (0, 1):
        return f"ERROR (exit {proc.returncode}): {proc.stdout[-800:]}", errors, seconds
    return "NOT CAUGHT: every test passed with the bug in", [], seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-k", dest="only", help="run the mutations whose name contains this")
    parser.add_argument("--timeout-s", type=int, default=600, help="per mutation (default 600)")
    args = parser.parse_args()
    atexit.register(_restore_all)
    signal.signal(signal.SIGTERM, _on_signal)
    chosen = [m for m in MUTATIONS if not args.only or args.only in m.name]
    results = []
    try:
        for m in chosen:
            print(f"--- {m.name}: {m.bug}\n    {m.path}\n    tests: {' '.join(m.tests)}", flush=True)
            verdict, failing, seconds = run_one(m, args.timeout_s)
            print(f"    {verdict} ({seconds:.0f} s)", flush=True)
            for test in failing:
                print(f"      {test}", flush=True)
            results.append((m, verdict))
    except KeyboardInterrupt:
        _restore_all()
        print("interrupted: every mutated file restored", file=sys.stderr)
        return 130
    for name, why in NOT_APPLICABLE.items():
        print(f"--- {name}: NOT APPLICABLE: {why}")
    caught = sum(v == "CAUGHT" for _, v in results)
    print(f"\n{caught} of {len(results)} mutations caught")
    for m, verdict in results:
        print(f"  {m.name:26} {verdict.split(':')[0]}")
    return 0 if caught == len(results) else 1


if __name__ == "__main__":
    sys.exit(main())
