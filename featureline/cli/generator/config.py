"""What to generate: how many events, over which stretch of simulated time, for whom.

Standard library only (the CLI imports it to parse arguments).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from featureline.errors import BadInputError

# With no size given: 10,000 events over one day, enough for the demo's 24 h windows
# and quick to produce (~0.3 s to Tansu).
DEFAULT_EVENTS = 10_000
DEFAULT_HOURS = 24.0
# `--hours` alone: one event per simulated second (86,400 a day).
DEFAULT_RATE_PER_S = 1.0

_RATE_UNITS = {"s": 1.0, "sec": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0, "d": 86400.0}


@dataclass(frozen=True)
class GeneratorConfig:
    """Fully resolved: same config (and seed) -> byte-identical output."""

    seed: int = 42
    events: int = DEFAULT_EVENTS
    start: datetime = datetime(2026, 1, 1, tzinfo=UTC)
    duration_s: float = DEFAULT_HOURS * 3600
    users: int = 1_000
    merchants: int = 200
    # Shares of the Kafka output, per the brief: ~1% late, ~0.1% malformed.
    late_fraction: float = 0.01
    malformed_fraction: float = 0.001

    def __post_init__(self) -> None:
        if self.start.tzinfo is None:
            raise BadInputError("start must be timezone-aware (UTC)")
        checks = [
            (self.events >= 1, f"events must be >= 1, got {self.events}"),
            (self.duration_s > 0, f"duration must be > 0 s, got {self.duration_s}"),
            (self.users >= 1, f"users must be >= 1, got {self.users}"),
            (self.merchants >= 2, f"merchants must be >= 2, got {self.merchants}"),
            (0 <= self.late_fraction < 0.5, "late_fraction must be in [0, 0.5)"),
            (0 <= self.malformed_fraction < 0.5, "malformed_fraction must be in [0, 0.5)"),
        ]
        for ok, message in checks:
            if not ok:
                raise BadInputError(message)

    @property
    def end(self) -> datetime:
        return self.start + timedelta(seconds=self.duration_s)

    @property
    def rate_per_s(self) -> float:
        return self.events / self.duration_s

    @property
    def start_us(self) -> int:
        return _epoch_us(self.start)


def _epoch_us(moment: datetime) -> int:
    delta = moment.astimezone(UTC) - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def parse_rate(text: str) -> float:
    """Events per simulated second from "50", "50/s", "3000/min", "200/h", "100000/d"."""
    value, _, unit = text.strip().partition("/")
    try:
        number = float(value)
    except ValueError:
        raise BadInputError(f"--rate {text!r}: expected a number, e.g. 50 or 100000/d") from None
    per = _RATE_UNITS.get(unit.strip().lower() or "s")
    if per is None:
        raise BadInputError(f"--rate {text!r}: unit must be one of /s, /min, /h, /d")
    if not math.isfinite(number) or number <= 0:
        raise BadInputError(f"--rate {text!r}: must be > 0")
    return number / per


def parse_start(text: str) -> datetime:
    """ISO-8601; a naive time is taken as UTC."""
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise BadInputError(f"--start {text!r}: expected ISO-8601, e.g. 2026-11-22T00:00:00Z") from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def make_config(
    *,
    seed: int = 42,
    events: int | None = None,
    hours: float | None = None,
    rate_per_s: float | None = None,
    start: datetime | None = None,
    users: int = 1_000,
    merchants: int = 200,
    realtime: bool = False,
    now: datetime | None = None,
) -> GeneratorConfig:
    """Resolve the size from at most two of events, hours and rate.

    One given: events alone spread over 24 h; hours alone at 1 event/s; rate alone
    for 24 h. Start defaults to now minus the duration (the events end now), or to now
    with `realtime` (events are emitted as their time comes).
    """
    given = sum(x is not None for x in (events, hours, rate_per_s))
    if given == 3:
        raise BadInputError("give at most two of --events, --hours and --rate")
    if events is None and hours is None and rate_per_s is None:
        events, hours = DEFAULT_EVENTS, DEFAULT_HOURS
    if hours is not None and hours <= 0:
        raise BadInputError(f"--hours must be > 0, got {hours}")
    if events is not None:
        duration_s = (
            hours * 3600 if hours is not None
            else events / rate_per_s if rate_per_s is not None
            else DEFAULT_HOURS * 3600
        )  # fmt: skip
        count = events
    else:
        duration_s = (hours if hours is not None else DEFAULT_HOURS) * 3600
        count = max(1, round(duration_s * (rate_per_s or DEFAULT_RATE_PER_S)))
    current = (now or datetime.now(UTC)).astimezone(UTC)
    if start is None:
        start = current if realtime else current - timedelta(seconds=duration_s)
    return GeneratorConfig(
        seed=seed,
        events=count,
        start=start,
        duration_s=duration_s,
        users=users,
        merchants=merchants,
    )
