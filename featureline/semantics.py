"""The value rules of shared/semantics.md, as pure functions. One place for each rule.

Streaming, batch backfill, historical retrieval and serving all call these; nothing
here does I/O. Instants are integers of microseconds since the Unix epoch (UTC), so
window and tile arithmetic is exact (no float rounding of times).

The aggregation functions, their mergeable state (`AggState`) and exact sums are
defined once in `featureline.aggregations`; the names are re-exported here for callers
that read every value rule from this module.
"""

from __future__ import annotations

__all__ = [
    "US",
    "in_window",
    "latest_order_key",
    "tile_retention_s",
    "tile_size_s",
    "tile_start_us",
    "ttl_lower_bound_us",
    "window_start_us",
    "within_ttl",
]

US = 1_000_000
_MINUTE_S = 60
_HOUR_S = 3600
_DAY_S = 86_400

# --- tiles and windows (semantics.md 2) -------------------------------------------------


def tile_size_s(window_s: int, slide_s: int | None) -> int:
    """Tile size: the slide interval when set and smaller than the window; else
    5 min for windows under 12 h, 1 h under 12 days, else 1 day."""
    if window_s <= 0:
        raise ValueError(f"aggregation window must be positive, got {window_s}s")
    if slide_s and 0 < slide_s < window_s:
        return slide_s
    if window_s < 12 * _HOUR_S:
        return 5 * _MINUTE_S
    if window_s < 12 * _DAY_S:
        return _HOUR_S
    return _DAY_S


def tile_start_us(ts_us: int, tile_s: int) -> int:
    """Start of the epoch-aligned tile holding instant ts_us."""
    size = tile_s * US
    return (ts_us // size) * size


def window_start_us(t_us: int, window_s: int, tile_s: int) -> int:
    """start(t) = floor((t - w) / s) * s: the window's tail is tile-aligned."""
    size = tile_s * US
    return ((t_us - window_s * US) // size) * size


def in_window(event_us: int, t_us: int, window_s: int, tile_s: int) -> bool:
    return window_start_us(t_us, window_s, tile_s) <= event_us <= t_us


def tile_retention_s(window_s: int, tile_s: int) -> int:
    """The online store keeps at least w + s of tiles (semantics.md 2)."""
    return window_s + tile_s


# --- latest value (semantics.md 1) -------------------------------------------------------


def latest_order_key(event_us: int, created_us: int | None) -> tuple[int, int]:
    """Rows compare by event time, then created time; the largest wins. A missing
    created time loses to any present one."""
    return (event_us, -1 if created_us is None else created_us)


def ttl_lower_bound_us(t_us: int, ttl_s: int) -> int | None:
    """Earliest event time a row may have to be valid at t; None when ttl == 0."""
    return None if ttl_s <= 0 else t_us - ttl_s * US


def within_ttl(event_us: int, t_us: int, ttl_s: int) -> bool:
    """t - ttl <= event_ts <= t (ttl == 0: no lower bound)."""
    low = ttl_lower_bound_us(t_us, ttl_s)
    return event_us <= t_us and (low is None or event_us >= low)
