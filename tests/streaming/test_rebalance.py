"""The stream job as a consumer group: two `featureline stream --group-mode dynamic`
processes share a topic (real Tansu, real Redis, Beam DirectRunner); one is SIGKILLed
while events flow; the other takes its partitions over after the session timeout.
Every aggregate and latest value served equals the naive oracle, and every event is
once offline."""

from __future__ import annotations

import random
import re
import signal
import threading
import time
from typing import Any

import pytest
from serve_process import ServerProcess
from stream_helpers import StreamCase, assert_online_equals_oracle, make_events, now_us, offline_rows, send

from featureline.online.tiles import offsets_key

pytestmark = [pytest.mark.beam, pytest.mark.slow]

PARTITIONS = {0, 1, 2}  # the stream_case topic's
SESSION_S = 4.0  # short, so the takeover comes soon; a drain takes < 1 s here
ARGS = ("--group-mode", "dynamic", "--session-timeout-s", str(SESSION_S), "--max-records", "400",
        "--flush-s", "0.3")  # fmt: skip
_OWNS = re.compile(r"^stream: .* \(\d+ partitions: (?P<parts>[^;]*);")


class Member:
    """A `featureline stream` process and its stderr lines, read as they come."""

    def __init__(self, case: StreamCase, name: str) -> None:
        self.name = name
        self.proc = case.start_job(*ARGS)
        self.lines: list[tuple[float, str]] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for raw in self.proc.stderr:
            self.lines.append((time.monotonic(), raw.decode(errors="replace").rstrip()))

    def owned(self) -> tuple[float, set[int]] | None:
        """When the last pipeline started, and the partitions it owns."""
        for at, line in reversed(self.lines):
            if match := _OWNS.match(line):
                return at, {int(p.rsplit(":", 1)[1]) for p in match["parts"].split(", ") if p}
        return None

    def text(self) -> str:
        return "\n".join(line for _, line in self.lines)[-4000:]

    def check_alive(self) -> None:
        if self.proc.poll() is not None:
            self._reader.join(timeout=5)
            raise AssertionError(f"{self.name} exited ({self.proc.returncode}):\n{self.text()}")

    def stop(self) -> str:
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=60)
        self._reader.join(timeout=5)
        assert self.proc.returncode == 0, self.text()
        return self.text()


def _until(what: str, check: Any, members: list[Member], timeout_s: float) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for m in members:
            m.check_alive()
        if result := check():
            return result
        time.sleep(0.1)
    raise AssertionError(f"not within {timeout_s} s: {what}\n" + "\n".join(m.text() for m in members))


def _marks(client: Any, case: StreamCase) -> dict[int, int]:
    raw = {p: client.get(offsets_key(case.project, case.topic, p)) for p in PARTITIONS}
    return {p: int(v) for p, v in raw.items() if v is not None}


def _split(a: Member, b: Member) -> bool:
    """Both run a pipeline, over disjoint partitions that cover the topic."""
    got_a, got_b = a.owned(), b.owned()
    return bool(got_a and got_b and got_a[1] and got_b[1] and not got_a[1] & got_b[1]
                and got_a[1] | got_b[1] == PARTITIONS)  # fmt: skip


def test_sigkill_one_member_the_other_takes_over_exactly_once(
    stream_case: StreamCase, redis_client: Any, stream_server: ServerProcess
) -> None:
    rng = random.Random(23)
    events = make_events(rng, 3000, users=40, t0_us=now_us())
    last = send(stream_case, events)
    a = Member(stream_case, "a")
    members = [a]
    try:
        _until("a owns every partition", lambda: (got := a.owned()) and got[1] == PARTITIONS, [a], 60)
        # b joins while a runs: a drains (flush, commit) and hands partitions over.
        b = Member(stream_case, "b")
        members.append(b)
        _until("the two members split the partitions", lambda: _split(a, b), [a, b], 60)
        owned_b = b.owned()
        assert owned_b is not None
        victim = owned_b[1]
        # Events keep flowing; b is killed once it applied some of the new ones.
        before = _marks(redis_client, stream_case)
        flowing = threading.Event()
        sent: list[dict[int, int]] = []

        def produce() -> None:
            for _ in range(20):  # ~5 s of events: b is killed ~1 s in
                chunk = make_events(rng, 150, users=40, t0_us=now_us())
                sent.append(send(stream_case, chunk))
                events.extend(chunk)
                flowing.set()
                time.sleep(0.25)

        producer = threading.Thread(target=produce)
        producer.start()
        _until(
            "b applied new events",
            lambda: (
                any(_marks(redis_client, stream_case).get(p, -1) > before.get(p, -1) for p in victim)
                and flowing.is_set()
            ),
            [a, b],
            60,
        )
        b.proc.send_signal(signal.SIGKILL)
        killed_at = time.monotonic()
        b.proc.wait(timeout=10)
        taken = _until(
            "a took b's partitions over",
            lambda: (got := a.owned()) and got[0] > killed_at and got[1] == PARTITIONS and got,
            [a],
            SESSION_S + 60,
        )
        producer.join(timeout=60)
        assert not producer.is_alive()
        for part in sent:
            for p, off in part.items():
                last[p] = max(last.get(p, -1), off)
        _until(
            "every event applied",
            lambda: all(_marks(redis_client, stream_case).get(p, -1) >= off for p, off in last.items()),
            [a],
            90,
        )
        assert assert_online_equals_oracle(stream_server, stream_case, events) > 0
        takeover_s = taken[0] - killed_at
        print(f"takeover {takeover_s:.1f} s after the SIGKILL (session timeout {SESSION_S} s)")
        print("\n".join(f"{m.name}: {line}" for m in members for _, line in m.lines if "assigned" in line))
        assert takeover_s >= SESSION_S * 0.5  # the group waited for b's session to expire
        assert "stopped after" in a.stop()  # SIGTERM: drain, commit, leave the group
    finally:
        for m in members:
            if m.proc.poll() is None:
                m.proc.kill()
                m.proc.wait(timeout=10)
    # Offline: b's files past its last commit were removed by a, then written once.
    table = offline_rows(stream_case)
    ids = list(zip(table["kafka_partition"].to_pylist(), table["kafka_offset"].to_pylist(), strict=True))
    assert len(ids) == len(set(ids)) == len(events)
