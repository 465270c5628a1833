"""Does a service really answer? Redis: PING. Kafka: a metadata request.

Redis (online_store.redis.connect) and kafka-python are imported inside the functions:
`featureline dev --help` must not pay for them.
"""

from __future__ import annotations

from featureline.cli.devstack.processes import tcp_connects


def redis_answers(host: str, port: int, timeout_s: float = 1.0) -> bool:
    """PING, tried once. redis-py 7 retries a failed connect 3 times with exponential
    backoff by default (~2 s per probe of a closed port), hence `retries=0`, and a
    plain TCP connect first."""
    if not tcp_connects(host, port, timeout_s):
        return False
    from featureline.online_store.redis.connect import answers

    return answers(host, port, timeout_s)


def kafka_answers(host: str, port: int, timeout_s: float = 2.0) -> bool:
    """A Metadata round trip through kafka-python's admin client.

    A plain TCP connect comes first: kafka-python 3.0 retries an unreachable bootstrap
    server for `bootstrap_timeout_ms` (default 30 s) and then raises KafkaTimeoutError
    ("Unable to bootstrap"; 2.x raised NoBrokersAvailable), so polling a port that is
    still closed through it would be slow.
    """
    if not tcp_connects(host, port, timeout_s):
        return False
    from kafka import KafkaAdminClient
    from kafka.errors import KafkaError

    timeout_ms = int(timeout_s * 1000)
    try:
        admin = KafkaAdminClient(
            bootstrap_servers=f"{host}:{port}",
            # 3.0 renamed the knob: `api_version_auto_timeout_ms` is rejected with
            # KafkaConfigurationError; `bootstrap_timeout_ms` bounds connect + ApiVersions.
            bootstrap_timeout_ms=timeout_ms,
            request_timeout_ms=timeout_ms,
            client_id="featureline-devstack-probe",
        )
    except (KafkaError, OSError, ValueError):
        return False
    try:
        admin.list_topics()
        return True
    except (KafkaError, OSError, ValueError):
        return False
    finally:
        admin.close()
