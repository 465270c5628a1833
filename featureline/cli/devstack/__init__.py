"""The embedded dev stack: Tansu (Kafka protocol), Redis, and the SQLite registry.

`featureline dev up|down|status` is the CLI (`cli.py`); tests and `featureline demo`
use the functions below. Importing this package costs only the standard library:
redis-py and kafka-python are imported when a probe or a topic call runs.
"""

from featureline.cli.devstack.binaries import MissingBinaryError, redis_binary, tansu_binary
from featureline.cli.devstack.processes import free_port, free_ports
from featureline.cli.devstack.stack import (
    PortInUseError,
    ServiceState,
    ServiceStatus,
    StackState,
    load_state,
    require_stack,
    stack_status,
    start_stack,
    state_path,
    stop_stack,
)
from featureline.kafka_admin import ensure_topic

__all__ = [
    "MissingBinaryError",
    "PortInUseError",
    "ServiceState",
    "ServiceStatus",
    "StackState",
    "ensure_topic",
    "free_port",
    "free_ports",
    "load_state",
    "redis_binary",
    "require_stack",
    "stack_status",
    "start_stack",
    "state_path",
    "stop_stack",
    "tansu_binary",
]
