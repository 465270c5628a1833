"""`featureline demo`: the main job on the embedded defaults, stage by stage.

Stack up -> apply -> generate a day of events into Kafka -> stream -> backfill ->
materialize -> serve -> fetch a vector over gRPC and REST -> training set -> train ->
score -> consistency report. Each stage runs the same code as its own command
(`featureline.cli.main([...])`), so the demo shows exactly what a user would run.
"""

from __future__ import annotations

import argparse
import dataclasses
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field

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
    cleanups: list[Callable[[], None]] = field(default_factory=list)
    notes: dict[str, object] = field(default_factory=dict)


def _cli(*argv: str) -> None:
    from featureline.cli import main

    rc = main(list(argv))
    if rc != 0:
        raise FeaturelineError(f"`featureline {' '.join(argv)}` failed with exit code {rc}")


def stage_stack(ctx: DemoContext) -> None:
    from featureline.devstack import start_stack

    state = start_stack(ctx.settings, report=print)
    for svc in state.services.values():
        print(f"  {svc.name}: {svc.host}:{svc.port} (pid {svc.pid})")
    if not ctx.args.keep:
        from featureline.devstack import stop_stack

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


STAGES: list[tuple[str, Callable[[DemoContext], None]]] = [
    ("start the embedded stack (Tansu Kafka, Redis, SQLite registry)", stage_stack),
    ("register the Feast definitions", stage_apply),
    ("generate a day of card transactions into Kafka", stage_generate),
]


def demo_settings(settings: Settings) -> Settings:
    """The demo keeps its offline store under its home (unless FEATURELINE_OFFLINE_DIR is
    set), starting empty, so events of an earlier run never mix into this one."""
    if settings.offline_dir:
        return settings
    offline = settings.home.resolve() / "demo-offline"
    shutil.rmtree(offline, ignore_errors=True)
    return dataclasses.replace(settings, offline_dir=str(offline))


def run(args: argparse.Namespace, settings: Settings) -> int:
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
    return 0
