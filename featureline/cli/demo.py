"""`featureline demo`: the main job on the embedded defaults, stage by stage.

Stack up -> apply -> generate a day of events into Kafka -> stream -> backfill ->
materialize -> serve -> fetch a vector over gRPC and REST -> training set -> train ->
score -> consistency report. Each stage runs the same code as its own command
(`featureline.cli.main([...])`), so the demo shows exactly what a user would run.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from featureline.errors import FeaturelineError
from featureline.settings import Settings

# A day of traffic at ~0.35 events/s per user: big enough for every window to fill,
# small enough that the whole demo runs in a few minutes on 2 cores.
DEMO_EVENTS = 60_000
DEMO_USERS = 2_000
DEMO_MERCHANTS = 300


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--keep", action="store_true", help="leave the stack and the servers running")
    parser.add_argument("--events", type=int, default=DEMO_EVENTS, help=f"events to generate ({DEMO_EVENTS})")
    parser.add_argument("--seed", type=int, default=7, help="generator seed (7)")


@dataclass
class DemoContext:
    settings: Settings
    args: argparse.Namespace
    cleanups: list[Callable[[], object]] = field(default_factory=list)
    notes: dict[str, object] = field(default_factory=dict)


def _cli(*argv: str) -> None:
    from featureline.cli import main

    rc = main(list(argv))
    if rc != 0:
        raise FeaturelineError(f"`featureline {' '.join(argv)}` failed with exit code {rc}")


def stage_stack(ctx: DemoContext) -> None:
    from featureline.cli.devstack import start_stack

    state = start_stack(ctx.settings, report=print)
    for svc in state.services.values():
        print(f"  {svc.name}: {svc.host}:{svc.port} (pid {svc.pid})")
    if not ctx.args.keep:
        from featureline.cli.devstack import stop_stack

        ctx.cleanups.append(lambda: stop_stack(ctx.settings))


def stage_apply(ctx: DemoContext) -> None:
    _cli("apply", "--repo", str(ctx.settings.repo))


def stage_generate(ctx: DemoContext) -> None:
    _cli(
        "generate",
        "--repo",
        str(ctx.settings.repo),
        "--to",
        "kafka",
        "--quiet",
        "--events",
        str(ctx.args.events),
        "--hours",
        "24",
        "--seed",
        str(ctx.args.seed),
        "--users",
        str(DEMO_USERS),
        "--merchants",
        str(DEMO_MERCHANTS),
    )


def stage_stream(ctx: DemoContext) -> None:
    """The Beam job reads the topic from the start and stops once it has been idle
    (caught up) for a few seconds: SIGTERM-style drain, flush and offset commit."""
    _cli(
        "stream",
        "--repo",
        str(ctx.settings.repo),
        "--start-from",
        "earliest",
        "--idle-exit-s",
        "8",
        "--flush-s",
        "1",
        "--progress",
        "off",
    )


def stage_backfill(ctx: DemoContext) -> None:
    day = dt.datetime.now(dt.UTC).date()
    _cli(
        "backfill",
        "--repo",
        str(ctx.settings.repo),
        "--start",
        (day - dt.timedelta(days=2)).isoformat(),
        "--end",
        (day + dt.timedelta(days=1)).isoformat(),
    )


def stage_materialize(ctx: DemoContext) -> None:
    _cli("materialize", "--repo", str(ctx.settings.repo), "--views", "user_profile", "merchant_risk",
         "--incremental")  # fmt: skip


def stage_serve(ctx: DemoContext) -> None:
    from featureline.cli.devstack import free_ports

    http_port, grpc_port = free_ports(2)
    log = ctx.settings.home / "logs" / "serve.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "featureline.cli", "serve", "--repo", str(ctx.settings.repo),
           "--host", "127.0.0.1", "--http-port", str(http_port), "--grpc-port", str(grpc_port)]  # fmt: skip
    with open(log, "ab") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    if not ctx.args.keep:
        ctx.cleanups.append(lambda: _stop(proc))
    _wait_http(f"http://127.0.0.1:{http_port}/health", proc, log)
    ctx.notes["http"] = f"http://127.0.0.1:{http_port}"
    ctx.notes["grpc"] = f"127.0.0.1:{grpc_port}"
    print(f"  REST  {ctx.notes['http']}  (OpenAPI docs at /docs, metrics at /metrics)")
    print(f"  gRPC  {ctx.notes['grpc']}  (featureline.serving.v1, health, reflection)")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()


def _wait_http(
    url: str, proc: subprocess.Popen[bytes], log: Path, timeout_s: float = 60, what: str = "the serving API"
) -> None:
    import httpx

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise FeaturelineError(f"{what} exited ({proc.returncode}); see {log}")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise FeaturelineError(f"{what} did not become healthy in {timeout_s:.0f}s; see {log}")


def _demo_rows(ctx: DemoContext, n: int) -> list[dict[str, Any]]:
    """The day's last labelled transactions: real users and merchants to ask about."""
    import pyarrow.parquet as pq

    labels = pq.read_table(ctx.settings.resolved_offline_dir / "labels" / "fraud_labels.parquet")
    return labels.slice(max(0, labels.num_rows - n)).to_pylist()


def stage_fetch(ctx: DemoContext) -> None:
    import httpx

    from featureline.serving_api.client import FeatureClient

    row = _demo_rows(ctx, 1)[0]
    entities = {"user_id": [row["user_id"]], "merchant_id": [row["merchant_id"]],
                "amount": [row["amount"]], "country": [row["country"]]}  # fmt: skip
    body = {"feature_service": "fraud_model_v1", "entities": entities}
    rest = httpx.post(f"{ctx.notes['http']}/get-online-features", json=body, timeout=10).json()
    print(f"  REST POST /get-online-features for user {row['user_id']}, merchant {row['merchant_id']}:")
    names = rest["metadata"]["feature_names"]
    for name, result in zip(names, rest["results"], strict=True):
        print(f"    {name:<26} {result['values'][0]!s:<22} {result['statuses'][0]}")
    with FeatureClient(str(ctx.notes["grpc"])) as client:
        online = client.get_online_features(entities, feature_service="fraud_model_v1")
        tensor = client.get_tensor("fraud_model_v1", entities)
    same = all(
        online.values[n][0] == result["values"][0] for n, result in zip(names, rest["results"], strict=True)
    )
    print(f"  gRPC GetOnlineFeatures: {len(online.feature_names)} columns, equal to REST: {same}")
    print(f"  gRPC GetOnlineTensor: float32 {tensor.values.shape}, {int(tensor.mask.sum())} present values")


def stage_historical(ctx: DemoContext) -> None:
    out = ctx.settings.home / "demo-training-set.parquet"
    labels = ctx.settings.resolved_offline_dir / "labels" / "fraud_labels.parquet"
    _cli("historical", "--repo", str(ctx.settings.repo), "--entity-df", str(labels),
         "--feature-service", "fraud_training_v1", "--out", str(out))  # fmt: skip
    import pyarrow.parquet as pq

    table = pq.read_table(out)
    print(f"  training set: {table.num_rows:,} rows x {table.num_columns} columns -> {out}")


def stage_train(ctx: DemoContext) -> None:
    model = ctx.settings.home / "models" / "fraud_training_v1.pt"
    _cli("train", "--repo", str(ctx.settings.repo), "--feature-service", "fraud_training_v1",
         "--epochs", "5", "--out", str(model))  # fmt: skip
    ctx.notes["model"] = model


def stage_score(ctx: DemoContext) -> None:
    import json

    from kafka import KafkaProducer

    from featureline.cli.devstack import ensure_topic

    rows = _demo_rows(ctx, 500)
    ensure_topic(ctx.settings, "transactions.scoring", 1)
    producer = KafkaProducer(bootstrap_servers=ctx.settings.kafka_bootstrap)
    for row in rows:
        row = {**row, "event_timestamp": row["event_timestamp"].isoformat()}
        producer.send("transactions.scoring", json.dumps(row, default=str).encode())
    producer.flush()
    producer.close()
    print(f"  {len(rows)} scoring requests -> transactions.scoring")
    _cli("worker", "--repo", str(ctx.settings.repo), "--model", str(ctx.notes["model"]),
         "--serving", str(ctx.notes["grpc"]), "--max-requests", str(len(rows)),
         "--idle-exit-s", "20")  # fmt: skip
    _show_scores(ctx, rows)


def _show_scores(ctx: DemoContext, rows: list[dict[str, Any]]) -> None:
    """Read the scores back from Kafka and set them beside the generator's fraud labels."""
    import json

    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=ctx.settings.kafka_bootstrap, enable_auto_commit=False)
    parts = [
        TopicPartition("transactions.scores", p)
        for p in consumer.partitions_for_topic("transactions.scores") or []
    ]
    consumer.assign(parts)
    consumer.seek_to_beginning(*parts)
    scores: dict[str, float] = {}
    deadline = time.monotonic() + 20
    while len(scores) < len(rows) and time.monotonic() < deadline:
        for records in consumer.poll(timeout_ms=500).values():
            for record in records:
                msg = json.loads(record.value)
                scores[msg["txn_id"]] = float(msg["score"])
    consumer.close()
    labelled = sorted(((scores[r["txn_id"]], r) for r in rows if r["txn_id"] in scores), key=lambda x: -x[0])
    frauds = sum(r["is_fraud"] for r in rows)
    top = labelled[: max(frauds, 1)]
    caught = sum(r["is_fraud"] for _, r in top)
    print(f"  read back {len(scores)} scores from transactions.scores; highest five:")
    for score, row in labelled[:5]:
        print(f"    txn {row['txn_id']}  user {row['user_id']:>5}  amount {row['amount']:>9.2f}  "
              f"score {score:.3f}  labelled fraud: {bool(row['is_fraud'])}")  # fmt: skip
    print(f"  {caught} of the {frauds} labelled frauds are among the {len(top)} highest scores")


def stage_consistency(ctx: DemoContext) -> None:
    from featureline.cli import main

    rc = main(["consistency", "--repo", str(ctx.settings.repo), "--sample", "200",
               "--feature-service", "fraud_training_v1"])  # fmt: skip
    print("  online and offline agree on every feature" if rc == 0 else "  MISMATCHES found (see report)")
    ctx.notes["consistency_rc"] = rc


def stage_ui(ctx: DemoContext) -> None:
    from featureline.cli.devstack import free_ports

    (port,) = free_ports(1)
    log = ctx.settings.home / "logs" / "ui.log"
    cmd = [sys.executable, "-m", "featureline.cli", "ui", "--repo", str(ctx.settings.repo),
           "--port", str(port), "--serving-url", str(ctx.notes["http"])]  # fmt: skip
    with open(log, "ab") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    if not ctx.args.keep:
        ctx.cleanups.append(lambda: _stop(proc))
    _wait_http(f"http://127.0.0.1:{port}/health", proc, log, what="the web UI")
    ctx.notes["ui"] = f"http://127.0.0.1:{port}/"


STAGES: list[tuple[str, Callable[[DemoContext], None]]] = [
    ("start the embedded stack (Tansu Kafka, Redis, SQLite registry)", stage_stack),
    ("register the Feast definitions", stage_apply),
    ("generate a day of card transactions into Kafka", stage_generate),
    ("stream: Beam job Kafka -> Redis tiles/latest values + Parquet raw events", stage_stream),
    ("backfill: Spark recomputes the views (merchant_risk included) from raw events", stage_backfill),
    ("materialize: offline batch views -> Redis", stage_materialize),
    ("serve: gRPC + REST serving API", stage_serve),
    ("fetch a feature vector over REST and gRPC", stage_fetch),
    ("historical: point-in-time-correct training set", stage_historical),
    ("train the fraud model from fraud_training_v1", stage_train),
    ("score a stream of transactions with the worker", stage_score),
    ("consistency: online vs offline, per feature", stage_consistency),
    ("ui: the web UI of the repo, its operations and models", stage_ui),
]


def demo_settings(settings: Settings) -> Settings:
    """The demo keeps its offline store under its home (unless FEATURELINE_OFFLINE_DIR is
    set), starting empty, so events of an earlier run never mix into this one.

    Repo and home absolute: the web UI reads the repo by its absolute paths
    (ui.state.absolute), and the specs cache is keyed by the paths as given
    (featureline.repo), so relative ones made the UI stage parse the repo with Feast
    again (~6 s of its ~7 s)."""
    settings = dataclasses.replace(settings, repo=settings.repo.resolve(), home=settings.home.resolve())
    if settings.offline_dir:
        return settings
    offline = settings.home.resolve() / "demo-offline"
    shutil.rmtree(offline, ignore_errors=True)
    return dataclasses.replace(settings, offline_dir=str(offline))


def run(args: argparse.Namespace, settings: Settings) -> int:
    from featureline.batch.spark import JAVA_OPTIONS_VAR, SHORT_RUN_JAVA_OPTIONS

    # A small day: Spark's short-run JVM settings (featureline.batch.spark) take the
    # backfill stage of a 4,000-event demo from 48.8 s to 20.2 s on 2 cores (one run each).
    os.environ.setdefault(JAVA_OPTIONS_VAR, SHORT_RUN_JAVA_OPTIONS)
    settings = demo_settings(settings)
    settings.export_env()
    print(f"offline store: {settings.resolved_offline_dir}")
    ctx = DemoContext(settings=settings, args=args)
    began = time.monotonic()
    try:
        for number, (title, stage) in enumerate(STAGES, start=1):
            print(f"\n[{number}/{len(STAGES)}] {title}", flush=True)
            t0 = time.monotonic()
            stage(ctx)
            print(f"  done in {time.monotonic() - t0:.1f}s", flush=True)
    finally:
        for cleanup in reversed(ctx.cleanups):
            cleanup()
    print(f"\ndemo finished in {time.monotonic() - began:.0f}s")
    if args.keep:
        print("stack left running (--keep): `featureline dev status`, `featureline dev down`")
        print(f"web UI: {ctx.notes['ui']} (left running)")
    else:
        print(f"web UI was at {ctx.notes['ui']} (stopped; run the demo with --keep to leave it up)")
    return 0
