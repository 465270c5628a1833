"""The worker benchmark's measurements (the package docstring says what is
measured and why)."""

from __future__ import annotations

import asyncio
import platform
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import torch

from featureline.serving_api.client import FeatureTensor
from featureline.serving_api.workers.layout import FeatureLayout
from featureline.serving_api.workers.messages import new_request, score_records
from featureline.serving_api.workers.model import Scorer
from featureline.serving_api.workers.pipeline import PipelineConfig, ScoredBatch, ScoringPipeline

WARMUP_S = 0.5
# A batch that is not full leaves after 2 ms; the closed loop below always sends full
# batches, so this only matters for the last one.
MAX_WAIT_S = 0.002


@dataclass
class Point:
    """One (side, device, batch size, calls in flight) measurement."""

    side: str
    device: str
    batch: int
    inflight: int = 1
    vectors: int = 0
    seconds: float = 0.0
    latencies_ms: list[np.ndarray] = field(default_factory=list)
    fetch_ms: list[float] = field(default_factory=list)
    score_ms: list[float] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        lat = np.concatenate(self.latencies_ms) if self.latencies_ms else np.zeros(0)

        def pct(values: np.ndarray | list[float], q: float) -> float | None:
            return round(float(np.percentile(values, q)), 3) if len(values) else None

        return {
            "side": self.side,
            "device": self.device,
            "batch": self.batch,
            "inflight": self.inflight,
            "vectors_per_s": round(self.vectors / self.seconds, 1) if self.seconds else 0.0,
            "p50_ms": pct(lat, 50),
            "p99_ms": pct(lat, 99),
            "fetch_p50_ms": pct(self.fetch_ms, 50),
            "model_p50_ms": pct(self.score_ms, 50),
            "vectors": self.vectors,
        }


@dataclass(frozen=True)
class Workload:
    layout: FeatureLayout
    rows: list[tuple[Any, ...]]  # request fields, in layout.entity_fields order
    txn_ids: list[str]
    fingerprint: str


class TensorSource(Protocol):
    """What the pipeline fetches features from: the serving API, or a replay."""

    async def fetch(self, entities: dict[str, list[Any]]) -> FeatureTensor: ...


async def measure_ours(
    client: TensorSource, scorer: Scorer, work: Workload, batch: int, inflight: int, seconds: float
) -> Point:
    """Closed loop: `inflight` batches of `batch` requests always out. A request's clock
    starts when its batch is built, after a slot is free, so latency is the service
    time under that load, not time queued in the driver."""
    point = Point("ours", str(scorer.device), batch, inflight)
    slots = asyncio.Semaphore(inflight)
    window = {"open": False}

    def on_scored(scored: ScoredBatch) -> None:
        score_records(scored.requests, scored.scores, work.fingerprint, scored.done_ns)
        if window["open"]:
            point.vectors += len(scored.requests)
            received = np.fromiter((r.received_ns for r in scored.requests), np.int64, len(scored.requests))
            point.latencies_ms.append((scored.done_ns - received) / 1e6)
            point.fetch_ms.append(scored.fetch_s * 1e3)
            point.score_ms.append(scored.score_s * 1e3)
        slots.release()

    config = PipelineConfig(batch, MAX_WAIT_S, inflight)
    pipeline = ScoringPipeline(client.fetch, scorer.score, work.layout.entity_fields, on_scored, config)
    n = len(work.rows)
    started = time.perf_counter()
    opened_at, end, i = started + WARMUP_S, started + WARMUP_S + seconds, 0
    while True:
        await slots.acquire()
        now = time.perf_counter()
        if now >= end:
            window["open"] = False
            break
        window["open"] = now >= opened_at
        lo = i % n
        idx = range(lo, lo + batch)
        now_ns = time.monotonic_ns()
        await pipeline.submit(
            [new_request((work.txn_ids[j % n], work.rows[j % n], now_ns, 0, j)) for j in idx]
        )
        i += batch
    point.seconds = end - opened_at
    await pipeline.drain()
    return point


def print_table(title: str, points: list[dict[str, Any]]) -> None:
    print(f"\n{title}")
    head = ("device", "batch", "inflight", "vectors/s", "p50 ms", "p99 ms", "fetch p50", "model p50")
    print("".join(f"{h:<7}" if i == 0 else f"{h:>{_WIDTHS[i]}}" for i, h in enumerate(head)))
    for p in points:
        print(
            f"{p['device']:<7}{p['batch']:>7}{p['inflight']:>9}{p['vectors_per_s']:>13,.0f}{_ms(p['p50_ms'])}"
            f"{_ms(p['p99_ms'])}{_ms(p['fetch_p50_ms'], 11)}{_ms(p['model_p50_ms'], 11)}"
        )


_WIDTHS = (7, 7, 9, 13, 10, 10, 11, 11)


def _ms(value: float | None, width: int = 10) -> str:
    return f"{'-':>{width}}" if value is None else f"{value:>{width}.2f}"


def machine() -> dict[str, Any]:
    info: dict[str, Any] = {
        "cpu": platform.processor() or platform.machine(),
        "cores": __import__("os").cpu_count(),
        "torch": torch.__version__,
        "python": sys.version.split()[0],
    }
    if torch.cuda.is_available():
        info["cuda_device"] = torch.cuda.get_device_name(0)
    return info
