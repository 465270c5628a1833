"""Kafka topics, through kafka-python's admin client: the stream job creates its dead
letter topics with it, the dev stack, generator and demo their input topics.

kafka-python 3.0 against Tansu 0.6 (checked by hand, Nov 2026):
- ApiVersions negotiation works without pinning `api_version`: the client infers
  broker version (3, 9).
- `create_topics([NewTopic(...)])` still works but is deprecated; the dict form
  `{name: {"num_partitions": n, "replication_factor": 1}}` is the 3.0 spelling.
  With `raise_errors=False` an existing topic comes back as error_code 36
  (TopicAlreadyExists) instead of an exception.
- `describe_topics([unknown])` returns error_code 3 (UnknownTopicOrPartition) and no
  partitions rather than raising.
"""

from __future__ import annotations

from featureline.config import kafka_config
from featureline.errors import BadInputError, ServiceUnavailableError
from featureline.settings import Settings

_TOPIC_ALREADY_EXISTS = 36
# Enough for a loaded machine; a healthy Tansu answers CreateTopics in ~5 ms.
_TIMEOUT_MS = 10_000


def ensure_topic(settings: Settings, name: str, partitions: int = 3, *, bootstrap: str = "") -> int:
    """Create topic `name` with `partitions` partitions unless it exists; return the
    topic's actual partition count (an existing topic keeps its own count). On
    `bootstrap` (default: the settings'), with the settings' Kafka security."""
    servers = bootstrap or settings.kafka_bootstrap
    if partitions < 1:
        raise BadInputError(f"topic {name!r}: partitions must be >= 1, got {partitions}")
    # kafka-python costs ~0.75 s to import; the dev stack package imports this module.
    from kafka import KafkaAdminClient
    from kafka.errors import KafkaError

    try:
        admin = KafkaAdminClient(
            bootstrap_servers=servers,
            bootstrap_timeout_ms=_TIMEOUT_MS,
            request_timeout_ms=_TIMEOUT_MS,
            client_id="featureline-ensure-topic",
            **kafka_config(settings).client_options(),
        )
    except KafkaError as exc:
        raise ServiceUnavailableError(
            f"Kafka does not answer on {servers} ({exc}); start the dev stack with `featureline dev up`"
        ) from exc
    try:
        response = admin.create_topics(
            {name: {"num_partitions": partitions, "replication_factor": 1}},
            timeout_ms=_TIMEOUT_MS,
            raise_errors=False,
        )
        for topic in response["topics"]:
            if topic["error_code"] not in (0, _TOPIC_ALREADY_EXISTS):
                raise ServiceUnavailableError(
                    f"Kafka on {servers} refused to create topic {name!r}: "
                    f"{topic['error_message'] or 'error code ' + str(topic['error_code'])}"
                )
        described = admin.describe_topics([name])
        return len(described[0]["partitions"]) if described else partitions
    except KafkaError as exc:
        raise ServiceUnavailableError(
            f"Kafka on {servers} failed while creating topic {name!r}: {exc}"
        ) from exc
    finally:
        admin.close()
