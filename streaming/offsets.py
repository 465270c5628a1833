"""Where each partition resumes: Kafka group offsets, committed after both sinks flushed.

Offsets are committed to the group `featureline-stream-<project>` with a plain
OffsetCommit (no member id, no generation; measured on Tansu: ~9 ms per commit). Such
a commit is refused (UNKNOWN_MEMBER_ID, on Tansu as on Apache Kafka) by a group that
has members, so the processes that share partitions dynamically join a second group,
`<that group>.members` (streaming.group), which holds membership only; both modes
(static `--shard`, dynamic membership) then resume from the same committed offsets.
The online store keeps its own applied-offset watermark, moved atomically with the
tiles (redis_sink); committed offsets never pass it, so resuming at the committed
offset is always safe: events between the two are re-read, skipped online and
re-written offline.
"""

from __future__ import annotations

from typing import Any, Literal

from featureline.errors import ServiceUnavailableError

StartFrom = Literal["committed", "earliest", "latest"]
_TIMEOUT_MS = 10_000


def group_id(project: str) -> str:
    return f"featureline-stream-{project}"


def members_group(offsets_group: str) -> str:
    """The group the processes join to share partitions (it never holds offsets)."""
    return f"{offsets_group}.members"


class OffsetStore:
    """Reads partitions and committed offsets of topics; commits offsets."""

    def __init__(self, bootstrap: str, group: str, options: dict[str, Any] | None = None) -> None:
        from kafka import KafkaConsumer
        from kafka.errors import KafkaError

        try:
            self._consumer: Any = KafkaConsumer(
                bootstrap_servers=bootstrap,
                group_id=group,
                enable_auto_commit=False,
                request_timeout_ms=_TIMEOUT_MS + 1000,
                client_id=group,
                **(options or {}),  # security (featureline.config.KafkaConfig)
            )
        except KafkaError as exc:
            raise ServiceUnavailableError(f"Kafka does not answer on {bootstrap}: {exc}") from exc
        self.bootstrap = bootstrap

    def partitions(self, topic: str) -> list[int]:
        found = self._consumer.partitions_for_topic(topic)
        if not found:
            raise ServiceUnavailableError(
                f"Kafka topic {topic!r} does not exist on {self.bootstrap}; create it "
                f"(featureline dev up / featureline generate) or point the source elsewhere"
            )
        return sorted(found)

    def start_offsets(self, topic: str, start_from: StartFrom) -> dict[int, int]:
        """Per partition, the first offset to read: the committed one (else the
        earliest), or the earliest / latest available."""
        from kafka import TopicPartition

        tps = [TopicPartition(topic, p) for p in self.partitions(topic)]
        earliest = self._consumer.beginning_offsets(tps)
        latest = self._consumer.end_offsets(tps)
        out: dict[int, int] = {}
        for tp in tps:
            if start_from == "latest":
                out[tp.partition] = latest[tp]
            elif start_from == "earliest":
                out[tp.partition] = earliest[tp]
            else:
                committed = self._consumer.committed(tp)
                out[tp.partition] = max(committed, earliest[tp]) if committed else earliest[tp]
        return out

    def resume_offsets(self, topic: str, partitions: list[int], fallback: StartFrom) -> dict[int, int]:
        """Per partition taken over in a group: the committed offset, else the `fallback`
        (earliest or latest) one. A "latest" fallback is committed at once: the next
        owner of a partition that got no event meanwhile must start there too, not at
        the earliest offset (nor at a later "latest", which would skip events)."""
        from kafka import TopicPartition

        self.partitions(topic)  # a missing topic: a clear error, not a member waiting forever
        tps = [TopicPartition(topic, p) for p in partitions]
        if not tps:
            return {}
        earliest = self._consumer.beginning_offsets(tps)
        latest = self._consumer.end_offsets(tps)
        out: dict[int, int] = {}
        fresh: dict[int, int] = {}
        for tp in tps:
            committed = self._consumer.committed(tp)
            if committed is not None:
                out[tp.partition] = max(committed, earliest[tp])
            elif fallback == "latest":
                out[tp.partition] = fresh[tp.partition] = latest[tp]
            else:
                out[tp.partition] = earliest[tp]
        self.commit(topic, fresh)
        return out

    def end_offsets(self, topic: str, partitions: list[int]) -> dict[int, int]:
        from kafka import TopicPartition

        ends = self._consumer.end_offsets([TopicPartition(topic, p) for p in partitions])
        return {tp.partition: off for tp, off in ends.items()}

    def commit(self, topic: str, next_offsets: dict[int, int]) -> None:
        from kafka import TopicPartition
        from kafka.structs import OffsetAndMetadata

        if next_offsets:
            self._consumer.commit(
                {TopicPartition(topic, p): OffsetAndMetadata(o, "", -1) for p, o in next_offsets.items()}
            )

    def close(self) -> None:
        self._consumer.close()
