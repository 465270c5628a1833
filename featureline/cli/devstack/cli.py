"""`featureline dev up | down | status`: the embedded Kafka (Tansu), Redis and registry."""

from __future__ import annotations

import argparse
import json
import sys

from featureline.cli.devstack.redis_cluster import DEFAULT_PRIMARIES, DEFAULT_REPLICAS, ClusterLayout
from featureline.cli.devstack.stack import (
    DEFAULT_GRACE_S,
    DEFAULT_TIMEOUT_S,
    ServiceStatus,
    StackState,
    load_state,
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
    up.add_argument(
        "--redis-cluster",
        action="store_true",
        help="start a local Redis Cluster instead of the single Redis: --primaries primaries with "
        "--replicas replicas each, on FEATURELINE_REDIS_PORT and the ports after it (each node also "
        "uses port+10000 for the cluster bus); commands reach it with FEATURELINE_REDIS_TYPE=redis_cluster",
    )
    up.add_argument(
        "--primaries",
        type=int,
        default=DEFAULT_PRIMARIES,
        help=f"cluster primaries, at least 3 (default {DEFAULT_PRIMARIES})",
    )
    up.add_argument(
        "--replicas",
        type=int,
        default=DEFAULT_REPLICAS,
        help=f"replicas per cluster primary (default {DEFAULT_REPLICAS})",
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
    layout = ClusterLayout(args.primaries, args.replicas).check() if args.redis_cluster else None
    state = start_stack(settings, timeout_s=args.timeout, report=print, redis_cluster=layout)
    print(f"{'registry':<9} {_registry_line(settings)}")
    if layout is not None:
        nodes = ",".join(n.address for n in state.cluster_nodes())
        print(
            "Redis Cluster: every featureline command finds it (its first node as the seed) with\n"
            "  export FEATURELINE_REDIS_TYPE=redis_cluster\n"
            f'a feature_store.yaml names it as: redis_type: redis_cluster, connection_string: "{nodes}"'
        )
    print(f"state: {state_path(settings)}  logs: {state.home / 'logs'}")
    print("Redis keeps no snapshot or AOF, Tansu stores in memory: `down` discards all data.")
    return 0


def _down(args: argparse.Namespace, settings: Settings) -> int:
    stopped = stop_stack(settings, grace_s=args.grace, report=print)
    if not stopped:
        print("dev stack is not running")
    return 0


def _cluster_nodes(state: StackState | None, rows: list[ServiceStatus]) -> list[dict[str, object]]:
    """Each recorded cluster node: role and slot ranges as a live node's CLUSTER SLOTS
    says (any node that answers), and whether it is up."""
    if state is None or state.redis_cluster is None:
        return []
    from featureline.config import RedisConfig
    from featureline.errors import FeaturelineError
    from featureline.online_store.redis.cluster import SlotMap, fetch_slot_map

    up = {r.address: r.up for r in rows}
    slot_map: SlotMap | None = None
    for node in state.cluster_nodes():
        if not up.get(node.address):
            continue
        try:
            slot_map = fetch_slot_map(RedisConfig(host=node.host, port=node.port), node.host, node.port, 1.0)
            break
        except FeaturelineError:
            continue
    out: list[dict[str, object]] = []
    for node in state.cluster_nodes():
        role = (slot_map.role_of(node.address) if slot_map else "") or "unknown (no node answers)"
        if slot_map and up.get(node.address) is False and not slot_map.role_of(node.address):
            role = "failed (not in the slot map)"
        slots = ",".join(slot_map.routes().get(node.address, ())) if slot_map else ""
        out.append({"address": node.address, "role": role, "slots": slots or "-", "up": up.get(node.address)})
    return out


def _status(args: argparse.Namespace, settings: Settings) -> int:
    rows = stack_status(settings)
    nodes = _cluster_nodes(load_state(settings), rows)
    if args.json:
        payload = [
            {"service": r.name, "pid": r.pid, "address": r.address, "running": r.running,
             "answers": r.answers, "up": r.up}
            for r in rows
        ]  # fmt: skip
        out: dict[str, object] = {"services": payload, "registry": settings.resolved_registry_url}
        if nodes:
            out["redis_cluster"] = nodes
        print(json.dumps(out))
    else:
        print(f"{'SERVICE':<12} {'PID':<7} {'ADDRESS':<21} STATE")
        for r in rows:
            print(f"{r.name:<12} {r.pid or '-'!s:<7} {r.address:<21} {_describe(r)}")
        print(f"{'registry':<12} {'-':<7} {_registry_line(settings)}")
        if nodes:
            print(f"\n{'CLUSTER NODE':<21} {'ROLE':<32} {'SLOTS':<24} STATE")
            for n in nodes:
                print(f"{n['address']:<21} {n['role']:<32} {n['slots']:<24} {'up' if n['up'] else 'down'}")
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
