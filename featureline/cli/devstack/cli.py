"""`featureline dev up | down | status`: the embedded Kafka (Tansu), Redis and registry."""

from __future__ import annotations

import argparse
import json
import sys

from featureline.cli.devstack.stack import (
    DEFAULT_GRACE_S,
    DEFAULT_TIMEOUT_S,
    ServiceStatus,
    stack_status,
    start_stack,
    state_path,
    stop_stack,
)
from featureline.settings import Settings


def configure(parser: argparse.ArgumentParser) -> None:
    parser.epilog = (
        "Ports and paths come from FEATURELINE_KAFKA_PORT, FEATURELINE_REDIS_PORT, "
        "FEATURELINE_HOME (defaults 9092, 6379, .featureline). Data is in memory only."
    )
    actions = parser.add_subparsers(dest="dev_action", metavar="ACTION", required=True)
    up = actions.add_parser("up", help="start Tansu and Redis (idempotent); wait until they answer")
    up.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_TIMEOUT_S,
        help=f"seconds to wait for each service to answer (default {DEFAULT_TIMEOUT_S:.0f})",
    )
    down = actions.add_parser("down", help="stop the servers `up` started (idempotent)")
    down.add_argument(
        "--grace",
        type=float,
        default=DEFAULT_GRACE_S,
        help=f"seconds between SIGTERM and SIGKILL (default {DEFAULT_GRACE_S:.0f})",
    )
    status = actions.add_parser("status", help="show each service; exit 0 only if all answer")
    status.add_argument("--json", action="store_true", help="print JSON instead of a table")


def _up(args: argparse.Namespace, settings: Settings) -> int:
    state = start_stack(settings, timeout_s=args.timeout, report=print)
    print(f"{'registry':<9} {_registry_line(settings)}")
    print(f"state: {state_path(settings)}  logs: {state.home / 'logs'}")
    print("Redis keeps no snapshot or AOF, Tansu stores in memory: `down` discards all data.")
    return 0


def _down(args: argparse.Namespace, settings: Settings) -> int:
    stopped = stop_stack(settings, grace_s=args.grace, report=print)
    if not stopped:
        print("dev stack is not running")
    return 0


def _status(args: argparse.Namespace, settings: Settings) -> int:
    rows = stack_status(settings)
    if args.json:
        payload = [
            {"service": r.name, "pid": r.pid, "address": r.address, "running": r.running,
             "answers": r.answers, "up": r.up}
            for r in rows
        ]  # fmt: skip
        print(json.dumps({"services": payload, "registry": settings.resolved_registry_url}))
    else:
        print(f"{'SERVICE':<9} {'PID':<7} {'ADDRESS':<21} STATE")
        for r in rows:
            print(f"{r.name:<9} {r.pid or '-'!s:<7} {r.address:<21} {_describe(r)}")
        print(f"{'registry':<9} {'-':<7} {_registry_line(settings)}")
    return 0 if all(r.up for r in rows) else 1


def _describe(row: ServiceStatus) -> str:
    if row.up:
        return "up (answers)"
    if row.running:
        return "running but not answering (see the log under FEATURELINE_HOME/logs)"
    if row.answers:
        return "down (something else answers on this address; not started by `dev up`)"
    return "down" if row.pid is None else "down (recorded process is gone)"


def _registry_line(settings: Settings) -> str:
    url = settings.resolved_registry_url
    if settings.registry_url:
        return f"{url} (external)"
    return f"{url} (SQLite file, no process)"


def run(args: argparse.Namespace, settings: Settings) -> int:
    settings.home.mkdir(parents=True, exist_ok=True)
    handlers = {"up": _up, "down": _down, "status": _status}
    code = handlers[args.dev_action](args, settings)
    sys.stdout.flush()
    return code
