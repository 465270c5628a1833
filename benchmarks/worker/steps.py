"""The worker benchmark's steps: set up, ours per device and batch size, Feast, Kafka."""

from __future__ import annotations

import asyncio
import random
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmarks.worker.env import dev_stack, serving
from benchmarks.worker.measure import (
    Point,
    Workload,
    machine,
    measure_ours,
    print_table,
)
from benchmarks.worker.options import GOAL_VECTORS_PER_S, BenchOptions
from benchmarks.worker.synthetic import entity_domain, load_online_features, request_rows
from featureline.repo import load_repo
from featureline.serving_api.client import FeatureTensor
from featureline.serving_api.typed_client import AsyncTensorClient, TensorClient
from featureline.serving_api.workers.fingerprint import service_fingerprint
from featureline.serving_api.workers.layout import FeatureLayout, feature_layout
from featureline.serving_api.workers.model import FraudMLP, ModelMeta, Scorer, fit_normalization, save_model
from featureline.settings import Settings
from featureline.specs import RepoSpec

# Distinct requests cycled through by the closed loop: enough that Redis reads spread
# over many keys, few enough to build in ~1 s.
WORKLOAD_ROWS = 200_000


def _say(message: str) -> None:
    print(f"bench worker: {message}", file=sys.stderr, flush=True)


def build_workload(repo: RepoSpec, layout: FeatureLayout, options: BenchOptions, redis_url: str) -> Workload:
    from featureline.online_store.redis.connect import plain_client

    domain = entity_domain(layout, {"user_id": options.users, "merchant_id": options.merchants})
    started = time.perf_counter()
    client = plain_client(redis_url)
    written = load_online_features(client, repo, layout, domain, int(time.time() * 1e6))
    client.close()
    _say(f"wrote online features of {written:,} entities in {time.perf_counter() - started:.1f} s")
    rows = request_rows(layout, domain, min(WORKLOAD_ROWS, max(options.batch_sizes) * 50))
    txn_ids = [f"txn-{i}" for i in range(len(rows))]
    return Workload(layout, rows, txn_ids, service_fingerprint(repo, layout.service))


def bench_model(settings: Settings, options: BenchOptions, work: Workload, target: str) -> Path:
    """The model file to score with: --model (checked like the worker checks it), or an
    untrained MLP normalized on served features (speed does not depend on weights)."""
    if options.model is not None:
        from featureline.serving_api.workers.worker import load_checked_model

        load_checked_model(settings, options.model, "cpu")
        return options.model
    layout = work.layout
    with TensorClient(target, layout.service, timeout_s=10.0) as client:
        sample = work.rows[:4096]
        tensor = client.fetch({n: [r[i] for r in sample] for i, (n, _) in enumerate(layout.entity_fields)})
    norm = fit_normalization(tensor.values, tensor.mask, [c.default for c in layout.columns])
    torch.manual_seed(0)
    model = FraudMLP(norm)
    meta = ModelMeta(layout.service, work.fingerprint, layout.names, norm, (64, 32), {"untrained": True})
    path = settings.home / "models" / "bench.pt"
    save_model(path, model, meta)
    return path


def ours(options: BenchOptions, work: Workload, model_path: Path, target: str) -> list[dict[str, Any]]:
    from featureline.serving_api.workers.model import load_model, single_threaded_cpu

    single_threaded_cpu()  # as the worker runs
    out: list[dict[str, Any]] = []
    for device in options.devices:
        model, _ = load_model(model_path, device)
        scorer = Scorer(model, device)
        for batch in options.batch_sizes:
            # One call at a time (latency, as Feast's SDK calls), then --inflight at once
            # (the worker's throughput, fetches overlapping the model).
            for inflight in dict.fromkeys((1, options.inflight)):
                point = asyncio.run(_ours_point(target, scorer, work, batch, inflight, options))
                out.append(point.summary())
                _say(f"ours {device} batch {batch} x{inflight}: {out[-1]['vectors_per_s']:,.0f} vectors/s")
    return out


def bench_connections(serve_workers: int, inflight: int) -> int:
    """Connections to the serving API: one call at a time needs one; otherwise two per
    serve process, so that the kernel's hash spreads them over most processes and the
    client's least-outstanding pick keeps busy ones from queueing (AsyncTensorClient)."""
    return 1 if inflight <= 1 else max(2, 2 * serve_workers)


async def _ours_point(
    target: str, scorer: Scorer, work: Workload, batch: int, inflight: int, options: BenchOptions
) -> Point:
    connections = bench_connections(options.serve_workers, inflight)
    async with AsyncTensorClient(
        target, work.layout.service, timeout_s=30.0, connections=connections
    ) as client:
        await client.expect(work.layout.names)
        return await measure_ours(client, scorer, work, batch, inflight, options.seconds)


def worker_alone(
    options: BenchOptions, work: Workload, model_path: Path, target: str
) -> list[dict[str, Any]]:
    """The worker's own ceiling: the same pipeline, model and score records, with the
    features of each batch replayed from memory (one real tensor fetched up front)."""
    from featureline.serving_api.workers.model import load_model

    out: list[dict[str, Any]] = []
    for device in options.devices:
        model, _ = load_model(model_path, device)
        scorer = Scorer(model, device)
        for batch in options.batch_sizes:
            replay = _Replay(target, work, batch)
            point = asyncio.run(measure_ours(replay, scorer, work, batch, options.inflight, options.seconds))
            point.side = "worker_alone"
            out.append(point.summary())
    return out


class _Replay:
    """A fetch that answers every batch with one tensor the server sent earlier."""

    def __init__(self, target: str, work: Workload, batch: int) -> None:
        names = [n for n, _ in work.layout.entity_fields]
        rows = work.rows[:batch]
        with TensorClient(target, work.layout.service, timeout_s=30.0) as client:
            self.tensor = client.fetch({n: [r[i] for r in rows] for i, n in enumerate(names)})

    async def fetch(self, entities: dict[str, list[Any]]) -> FeatureTensor:
        return self.tensor


def feast_side(
    settings: Settings, options: BenchOptions, work: Workload, model_path: Path
) -> list[dict[str, Any]]:
    """The same model fed by Feast's get_online_features on the same Redis (cpu)."""
    from featureline.cli.commands.apply import apply_repo
    from featureline.serving_api.workers.model import load_model

    started = time.perf_counter()
    apply_repo(settings)
    from feast import FeatureStore

    store = FeatureStore(repo_path=str(settings.repo.resolve()))
    service = store.get_feature_service(work.layout.service)
    _say(f"feast apply + store in {time.perf_counter() - started:.1f} s")
    model, _ = load_model(model_path, "cpu")
    scorer = Scorer(model, "cpu")
    keys = [name for name, _ in work.layout.entity_fields]
    out = []
    for batch in options.batch_sizes:
        point = Point("feast", "cpu", batch)
        deadline = time.perf_counter() + options.seconds
        i = 0
        while time.perf_counter() < deadline or i == 0:
            rows = [work.rows[(i + j) % len(work.rows)] for j in range(batch)]
            began = time.perf_counter()
            entity_rows = [dict(zip(keys, row, strict=True)) for row in rows]
            result = store.get_online_features(
                features=service, entity_rows=entity_rows, full_feature_names=True
            ).to_dict()
            values = np.array([result[n] for n in work.layout.names], dtype=np.float64).T
            scorer.score(np.nan_to_num(values).astype(np.float32), ~np.isnan(values))
            elapsed = time.perf_counter() - began
            point.vectors += batch
            point.seconds += elapsed
            point.latencies_ms.append(np.full(batch, elapsed * 1e3))
            i += batch
        out.append(point.summary())
        _say(f"feast batch {batch}: {out[-1]['vectors_per_s']:,.0f} vectors/s")
    return out


def kafka_side(
    settings: Settings, options: BenchOptions, work: Workload, model_path: Path, target: str
) -> dict[str, Any]:
    """`featureline worker`'s loop on Kafka: requests produced first, then consumed,
    scored and written; vectors/s from the first request received to the last score."""
    import json

    from kafka import KafkaProducer

    from featureline.cli.devstack import ensure_topic
    from featureline.serving_api.workers.pipeline import PipelineConfig
    from featureline.serving_api.workers.worker import WorkerConfig, run_worker

    config = WorkerConfig(
        model=model_path, device=options.devices[-1], in_topic="bench.scoring", out_topic="bench.scores",
        serving=target, group_id=f"bench-{random.getrandbits(32)}",
        pipeline=PipelineConfig(1024, 0.005, options.inflight), max_requests=options.kafka_requests,
        connections=bench_connections(options.serve_workers, options.inflight),
    )  # fmt: skip
    for topic in (config.in_topic, config.out_topic, config.dlq_topic):
        ensure_topic(settings, topic, 3)
    producer = KafkaProducer(bootstrap_servers=settings.kafka_bootstrap, linger_ms=5, batch_size=256 * 1024)
    names = [n for n, _ in work.layout.entity_fields]
    for k in range(options.kafka_requests):
        row = work.rows[k % len(work.rows)]
        event = {"txn_id": f"k-{k}", **dict(zip(names, row, strict=True))}
        producer.send(config.in_topic, json.dumps(event).encode(), partition=k % 3)
    producer.flush()
    producer.close()
    stats = run_worker(settings, config)
    summary = {"device": config.device, "batch": 1024, **stats.summary()}
    _say(f"kafka end to end: {summary['scored_per_s']} scored/s")
    return summary


def _ratios(ours_points: list[dict[str, Any]], feast_points: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per batch size: our best vectors/s over Feast's, and Feast's p50 over ours with
    one call at a time on both sides (Feast's SDK is synchronous)."""
    out = []
    for f in feast_points:
        same = [p for p in ours_points if p["batch"] == f["batch"]]
        best = max(same, key=lambda p: p["vectors_per_s"])
        single = min((p for p in same if p["inflight"] == 1), key=lambda p: p["p50_ms"] or 0.0)
        speed = best["vectors_per_s"] / f["vectors_per_s"] if f["vectors_per_s"] else None
        latency = f["p50_ms"] / single["p50_ms"] if single["p50_ms"] else None
        out.append({
            "batch": f["batch"],
            "throughput_x": None if speed is None else round(speed, 1),
            "p50_x_one_call_at_a_time": None if latency is None else round(latency, 1),
        })  # fmt: skip
    return out


def run_all(options: BenchOptions, base: Settings) -> dict[str, Any]:
    summary: dict[str, Any] = {"bench": "worker", "machine": machine(), "options": {
        "devices": options.devices, "batch_sizes": options.batch_sizes, "seconds": options.seconds,
        "users": options.users, "merchants": options.merchants, "serve_workers": options.serve_workers,
        "inflight": options.inflight, "service": options.service,
    }}  # fmt: skip
    with dev_stack(base) as settings:
        repo = load_repo(settings)
        work = build_workload(repo, feature_layout(repo, options.service), options, settings.redis_url)
        with serving(settings, options.service, options.serve_workers) as serve:
            model_path = bench_model(settings, options, work, serve.grpc_target)
            summary["ours"] = ours(options, work, model_path, serve.grpc_target)
            print_table("ours: scoring pipeline, features from GetOnlineTensor", summary["ours"])
            summary["worker_alone"] = worker_alone(options, work, model_path, serve.grpc_target)
            print_table(
                "the worker alone: same pipeline, features replayed from memory", summary["worker_alone"]
            )
            if options.kafka_requests:
                summary["kafka"] = kafka_side(settings, options, work, model_path, serve.grpc_target)
        if options.feast:
            summary["feast"] = feast_side(settings, options, work, model_path)
            print_table("Feast: get_online_features + the same model", summary["feast"])
            summary["ratios"] = _ratios(summary["ours"], summary["feast"])
            print("\nours / Feast (same run, same Redis, same model)")
            for r in summary["ratios"]:
                print(
                    f"batch {r['batch']:>5}: {r['throughput_x']}x the vectors/s, "
                    f"{r['p50_x_one_call_at_a_time']}x lower p50 one call at a time"
                )
    best = max(summary["ours"], key=lambda p: p["vectors_per_s"])
    summary["best"] = best
    summary["goal_vectors_per_s"] = GOAL_VECTORS_PER_S
    summary["goal_met"] = best["vectors_per_s"] >= GOAL_VECTORS_PER_S
    verdict = "met" if summary["goal_met"] else "NOT met"
    print(
        f"\nbest: {best['vectors_per_s']:,.0f} scored vectors/s ({best['device']}, batch {best['batch']}, "
        f"{best['inflight']} in flight); goal {GOAL_VECTORS_PER_S:,}: {verdict}"
    )
    if "kafka" in summary:
        k = summary["kafka"]
        print(f"kafka in -> kafka out: {k['scored_per_s']} scored/s over {k['scored']:,} requests")
    return summary
