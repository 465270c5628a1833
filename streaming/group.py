"""Dynamic partition ownership: stream processes share topics through a Kafka consumer group.

Design (DirectRunner): an outer loop per process,

    join the group -> assignment A -> plan (start at A's committed offsets, remove A's
    uncommitted offline files) -> run a pipeline over A until a rebalance is signalled
    -> drain (both sinks flushed, offsets committed) -> the group may move on -> repeat

A `GroupMember` holds a kafka-python KafkaConsumer subscribed to the topics, with
every assigned partition paused (it reads nothing; the pipeline's own readers do),
polled by a thread of its own; heartbeats run on kafka-python's IO thread. Its
ConsumerRebalanceListener is the hand-over point:

- on_partitions_revoked (a member died and its session expired, one joined or left):
  the running pipeline is stopped at a batch boundary (kafka_read.STOP: readers close
  their ranges, the sinks flush everything and commit) and the callback returns only
  once it has finished. kafka-python sends its JoinGroup after the callback returns,
  and the group assigns partitions only after every member rejoined (eager protocol:
  all revocations happen before any assignment), so a partition never has two
  writers: the old owner's last offset is committed before the new owner reads the
  committed offset.
- on_partitions_assigned: the new assignment is handed to the loop, which plans and
  starts a new pipeline (fresh sinks: the online sink's tile cache is rebuilt from
  Redis, as after a restart).

Exactly once across a move: online, a replay is exact through the store's
applied-offset watermark/marks (redis_sink), whoever applies it; offline, a partition
taken over from a dead process has its files past the committed offset removed, as at
a start (parquet_sink.remove_uncommitted), and then rewritten once.

Why a second group: plain offset commits (what static mode uses) are refused by a
group that has members, so membership lives in `<offsets group>.members` and the
offsets stay in the group of static mode (streaming.offsets): both modes resume from
the same offsets. The price: commits are not fenced by the member's generation. A
zombie (a process that stopped heartbeating for a session but still runs, e.g.
suspended, then resumed) is harmless online (the watermark/marks refuse a stale
writer), but may write offline files of a partition that moved; a SIGKILLed or
cleanly stopped process cannot. Keep session_timeout above the longest stall.

Heartbeats stop while the revoke callback waits (kafka-python runs a sync listener
on its IO loop): a drain is one batch plus one flush (~0.1-1 s), so the session
timeout (default 10 s) must stay above that, else the group evicts the member.

Costs (measured on Tansu, dev stack, loopback, session timeout 5 s, 2 busy cores):
see BENCHMARKS.md "Stream job: consumer-group rebalance".
"""

from __future__ import annotations

import gc
import logging
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from kafka import ConsumerRebalanceListener

from featureline.errors import ServiceUnavailableError
from featureline.streaming.offsets import members_group

log = logging.getLogger(__name__)

Assignment = frozenset[tuple[str, int]]  # (topic, partition)s
DEFAULT_SESSION_TIMEOUT_S = 10.0
_POLL_MS = 200  # how long the member's poll waits; a rebalance is seen within this
_WAIT_S = 0.2  # the loop's waits wake this often to see SIGTERM


class Handover:
    """The hand-over between the rebalance callbacks (kafka-python's IO thread) and the
    loop that runs pipelines (main thread). Pure threading logic: `stop` ends the
    running pipeline at a batch boundary, `resume` readies the next one."""

    def __init__(
        self, stop: Callable[[], None], resume: Callable[[], None], exiting: threading.Event
    ) -> None:
        self._stop, self._resume, self.exiting = stop, resume, exiting
        self._cv = threading.Condition()
        self._pending: Assignment | None = None
        self._running = False
        self._revocations = 0
        # Since when this member has had no pipeline running (joined or drained): the
        # time from there to the next assignment is what the group's join costs.
        self.idle_since = time.monotonic()
        self.drain_s = 0.0  # how long the last revocation waited for the pipeline

    # --- called by the rebalance listener --------------------------------------------
    def assigned(self, parts: Iterable[tuple[str, int]]) -> None:
        with self._cv:
            self._pending = frozenset(parts)
            self._cv.notify_all()

    def revoked(self) -> None:
        """Blocks until the pipeline over the old assignment has drained and committed."""
        started = time.monotonic()
        with self._cv:
            self._pending = None
            self._revocations += 1
            if self._running:
                self._stop()
            self._cv.notify_all()
            while self._running:
                self._cv.wait()
            self.idle_since = time.monotonic()
            self.drain_s = self.idle_since - started

    # --- called by the loop ------------------------------------------------------------
    def take(self) -> Assignment | None:
        """Wait for the next assignment and mark it running; None once exiting."""
        with self._cv:
            while self._pending is None and not self.exiting.is_set():
                self._cv.wait(_WAIT_S)
            if self.exiting.is_set():
                return None
            parts, self._pending = self._pending, None
            self._running = True
            self._resume()
            if self.exiting.is_set():  # SIGTERM between the check and resume()
                self._stop()
            return parts

    def idle(self) -> None:
        """A member with no partition: wait until its (empty) assignment is revoked."""
        with self._cv:
            seen = self._revocations
            while self._revocations == seen and not self.exiting.is_set():
                self._cv.wait(_WAIT_S)

    def finished(self) -> None:
        with self._cv:
            self._running = False
            self._cv.notify_all()


class GroupMember:
    """One member of `<offsets group>.members`, subscribed to `topics`; feeds a Handover."""

    def __init__(
        self,
        bootstrap: str,
        offsets_group: str,
        topics: list[str],
        handover: Handover,
        *,
        session_timeout_s: float = DEFAULT_SESSION_TIMEOUT_S,
        instance_id: str = "",
        options: dict[str, Any] | None = None,
    ) -> None:
        from kafka import KafkaConsumer
        from kafka.coordinator.assignors.range import RangePartitionAssignor
        from kafka.coordinator.assignors.roundrobin import RoundRobinPartitionAssignor
        from kafka.errors import KafkaError

        self.group = members_group(offsets_group)
        self.handover = handover
        self.error: BaseException | None = None
        session_ms = int(session_timeout_s * 1000)
        try:
            self._consumer: Any = KafkaConsumer(
                bootstrap_servers=bootstrap,
                group_id=self.group,
                group_instance_id=instance_id or None,
                client_id=instance_id or self.group,
                enable_auto_commit=False,
                session_timeout_ms=session_ms,
                # Kafka's advice: heartbeats at most a third of the session apart.
                heartbeat_interval_ms=max(session_ms // 5, 100),
                # Round robin first: views of several topics spread over all members
                # (range would give member 0 partition 0 of every topic).
                partition_assignment_strategy=(RoundRobinPartitionAssignor, RangePartitionAssignor),
                **(options or {}),
            )
        except KafkaError as exc:
            raise ServiceUnavailableError(f"Kafka does not answer on {bootstrap}: {exc}") from exc
        self._consumer.subscribe(topics, listener=_Listener(self))
        self._closing = threading.Event()
        self._thread = threading.Thread(target=self._poll_loop, name="group-member", daemon=True)
        self._thread.start()

    def _poll_loop(self) -> None:
        try:
            while not self._closing.is_set():
                started = time.monotonic()
                self._consumer.poll(timeout_ms=_POLL_MS)
                # poll returns at once when every partition is paused; don't spin.
                left = _POLL_MS / 1000 - (time.monotonic() - started)
                if left > 0:
                    self._closing.wait(left)
        except Exception as exc:  # noqa: BLE001 (any failure ends the job, named by close())
            self.error = exc
            self.handover.exiting.set()
            self.handover.revoked()

    def pause(self, partitions: Any) -> None:
        self._consumer.pause(*partitions)

    def close(self) -> None:
        """Leave the group (a dynamic member: the others rebalance at once; a static one
        keeps its partitions until its session expires); raises what ended the poll."""
        self._closing.set()
        self._thread.join()
        self._consumer.close()
        if self.error is not None:
            raise ServiceUnavailableError(f"consumer group {self.group}: {self.error}") from self.error


class _Listener(ConsumerRebalanceListener):
    def __init__(self, member: GroupMember) -> None:
        self.member = member

    def on_partitions_revoked(self, revoked: Any) -> None:
        self.member.handover.revoked()
        log.info("revoked %s (drained in %.2f s)", sorted(revoked), self.member.handover.drain_s)

    def on_partitions_assigned(self, assigned: Any) -> None:
        self.member.pause(assigned)
        log.info("assigned %s", sorted(assigned))
        self.member.handover.assigned((tp.topic, tp.partition) for tp in assigned)


def run_member(handover: Handover, run_assignment: Callable[[Assignment], None]) -> int:
    """The outer loop: run a pipeline per assignment until exiting; returns how many
    assignments were run."""
    runs = 0
    while (parts := handover.take()) is not None:
        try:
            if parts:
                runs += 1
                run_assignment(parts)
            else:
                handover.idle()
        finally:
            handover.finished()
            # ApplyBatches gc.freeze()s its tile cache; a finished pipeline's objects
            # must become collectable again, or every rebalance leaks its cycles.
            gc.unfreeze()
            gc.collect()
    return runs
