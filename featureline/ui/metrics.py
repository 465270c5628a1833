"""Prometheus metrics read the way Prometheus would: scrape the text format (parsed with
prometheus_client.parser), keep recent scrapes in memory, and compute rates and
histogram quantiles over the window between two scrapes.

Rates need two scrapes: each URL keeps the scrapes of the last `KEEP_S` seconds, and a
rate is taken against the newest one at least `MIN_WINDOW_S` older than the current
one (a background task scrapes every `featureline ui --scrape-interval-s`, so the first
page after start already has a window). Quantiles follow PromQL's histogram_quantile:
linear interpolation inside the bucket that holds the rank.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import httpx
from prometheus_client.parser import text_string_to_metric_families

# A sample: (sample name, its labels sorted) -> value.
Key = tuple[str, tuple[tuple[str, str], ...]]
Samples = dict[Key, float]
# A window shorter than 1 s gives rates from a handful of requests: noise.
MIN_WINDOW_S = 1.0
# Scrapes older than 5 minutes are dropped: a rate over a longer window says little
# about "now", and 5 min of scrapes every 10 s is 30 small dicts per URL.
KEEP_S = 300.0


@dataclass(frozen=True)
class Scrape:
    url: str
    at: float  # time.monotonic() when it was answered
    samples: Samples = field(default_factory=dict)
    error: str = ""  # why there are no samples ("" when it answered)

    @property
    def ok(self) -> bool:
        return not self.error


def parse(text: str) -> Samples:
    out: Samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            key = (s.name, tuple(sorted(s.labels.items())))
            out[key] = out.get(key, 0.0) + float(s.value)
    return out


def merge(parts: Iterable[Samples]) -> Samples:
    """Samples of several processes added up (counters, histograms, lag gauges)."""
    out: Samples = {}
    for part in parts:
        for key, value in part.items():
            out[key] = out.get(key, 0.0) + value
    return out


def delta(now: Samples, base: Samples) -> Samples:
    """now - base per sample; a sample that went down (a restarted process) counts
    from zero, as PromQL's rate() does with a counter reset."""
    out: Samples = {}
    for key, value in now.items():
        before = base.get(key, 0.0)
        out[key] = value - before if value >= before else value
    return out


def select(samples: Samples, name: str, **match: str) -> list[tuple[dict[str, str], float]]:
    """(labels, value) of every sample named `name` whose labels include `match`."""
    out = []
    for (sample, labels), value in samples.items():
        if sample != name:
            continue
        as_dict = dict(labels)
        if all(as_dict.get(k) == v for k, v in match.items()):
            out.append((as_dict, value))
    return out


def total(samples: Samples, name: str, by: str = "", **match: str) -> dict[str, float]:
    """Sum of the samples named `name`, grouped by label `by` ("" = one group "")."""
    out: dict[str, float] = {}
    for labels, value in select(samples, name, **match):
        group = labels.get(by, "") if by else ""
        out[group] = out.get(group, 0.0) + value
    return out


def buckets(samples: Samples, name: str, by: str = "", **match: str) -> dict[str, list[tuple[float, float]]]:
    """A histogram's cumulative buckets (upper bound, count), sorted, per group of `by`."""
    grouped: dict[str, dict[float, float]] = {}
    for labels, value in select(samples, f"{name}_bucket", **match):
        group = labels.get(by, "") if by else ""
        le = float(labels["le"])
        into = grouped.setdefault(group, {})
        into[le] = into.get(le, 0.0) + value
    return {g: sorted(b.items()) for g, b in grouped.items()}


def quantile(q: float, cumulative: list[tuple[float, float]]) -> float | None:
    """PromQL's histogram_quantile over sorted cumulative buckets; None when empty. A
    rank in the +Inf bucket answers the highest finite bound, as PromQL does."""
    if not cumulative or cumulative[-1][1] <= 0:
        return None
    rank = q * cumulative[-1][1]
    lower_bound, lower_count = 0.0, 0.0
    for bound, count in cumulative:
        if count >= rank:
            if math.isinf(bound):
                return lower_bound
            if count == lower_count:
                return bound
            return lower_bound + (bound - lower_bound) * (rank - lower_count) / (count - lower_count)
        lower_bound, lower_count = bound, count
    return lower_bound


@dataclass(frozen=True)
class Window:
    """The newest scrape of some URLs and, when every one has an older scrape at least
    MIN_WINDOW_S before, what changed since then."""

    now: Samples
    change: Samples | None
    seconds: float  # the window's length (0 without one)
    errors: tuple[str, ...]  # one line per URL that did not answer
    urls: tuple[str, ...]

    @property
    def answered(self) -> bool:
        return len(self.errors) < len(self.urls)


class Scraper:
    """Scrapes URLs and keeps their recent scrapes (one instance per UI process)."""

    def __init__(self, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        self._history: dict[str, list[Scrape]] = {}
        self._lock = asyncio.Lock()

    async def _fetch(self, client: httpx.AsyncClient, url: str) -> Scrape:
        try:
            reply = await client.get(url, timeout=self.timeout_s)
            reply.raise_for_status()
            return Scrape(url, time.monotonic(), parse(reply.text))
        except httpx.HTTPError as exc:
            return Scrape(url, time.monotonic(), error=f"{url}: {type(exc).__name__} {exc}".strip())
        except ValueError as exc:  # not the Prometheus text format
            return Scrape(url, time.monotonic(), error=f"{url}: not Prometheus metrics ({exc})")

    async def scrape(self, client: httpx.AsyncClient, urls: Iterable[str]) -> list[Scrape]:
        scrapes = await asyncio.gather(*(self._fetch(client, u) for u in urls))
        async with self._lock:
            for s in scrapes:
                if s.ok:
                    kept = [old for old in self._history.get(s.url, []) if s.at - old.at <= KEEP_S]
                    self._history[s.url] = [*kept, s]
        return list(scrapes)

    def base(self, scrape: Scrape) -> Scrape | None:
        """The newest earlier scrape of the same URL at least MIN_WINDOW_S older."""
        older = [s for s in self._history.get(scrape.url, []) if scrape.at - s.at >= MIN_WINDOW_S]
        return older[-1] if older else None

    async def window(self, client: httpx.AsyncClient, urls: Iterable[str]) -> Window:
        urls = tuple(urls)
        scrapes = await self.scrape(client, urls) if urls else []
        good = [s for s in scrapes if s.ok]
        bases = [self.base(s) for s in good]
        change = None
        seconds = 0.0
        if good and all(b is not None for b in bases):
            pairs = [(s, b) for s, b in zip(good, bases, strict=True) if b is not None]
            change = merge(delta(s.samples, b.samples) for s, b in pairs)
            seconds = min(s.at - b.at for s, b in pairs)
        errors = tuple(s.error for s in scrapes if not s.ok)
        return Window(merge(s.samples for s in good), change, seconds, errors, urls)


def per_second(change: Mapping[str, float], seconds: float) -> dict[str, float]:
    return {k: v / seconds for k, v in change.items()} if seconds > 0 else {}
