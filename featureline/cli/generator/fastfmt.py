"""Column-at-once string formatting for millions of ids and timestamps.

Per million values (measured on the 2-core CI box): an f-string per hex id 0.35 s,
Arrow's strftime 1.1 s, numpy's datetime_as_string 0.7 s. Writing the characters into
a (rows x width) byte matrix with integer arithmetic: 0.03 s for ids, 0.3 s for
timestamps.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

_HEX = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)
_ISO_TEMPLATE = b"0000-00-00T00:00:00.000000+00:00"
# Two digits at a time through a 100-row table: 10 lookups per timestamp instead of
# 26 divisions. (first column, field index, divisor) for each digit pair.
_PAIRS = np.array([[ord(str(i // 10)), ord(str(i % 10))] for i in range(100)], dtype=np.uint8)
_ISO_PAIRS = (
    (0, 0, 100), (2, 0, 1), (5, 1, 1), (8, 2, 1), (11, 3, 1), (14, 4, 1), (17, 5, 1),
    (20, 6, 10_000), (22, 6, 100), (24, 6, 1),
)  # fmt: skip


def _strings(matrix: np.ndarray) -> pa.Array:
    """One string per row of a (n, width) uint8 matrix, without copying per row."""
    n, width = matrix.shape
    offsets = np.arange(0, (n + 1) * width, width, dtype=np.int64)
    return pa.LargeStringArray.from_buffers(
        n, pa.py_buffer(offsets), pa.py_buffer(np.ascontiguousarray(matrix).tobytes())
    ).cast(pa.string())


def hex_ids(prefix: str, values: np.ndarray) -> pa.Array:
    """prefix + 16 lowercase hex digits per uint64."""
    n, head = len(values), prefix.encode()
    nibbles = values.astype(">u8").view(np.uint8).reshape(n, 8)
    out = np.empty((n, len(head) + 16), dtype=np.uint8)
    out[:, : len(head)] = np.frombuffer(head, dtype=np.uint8)
    out[:, len(head) :: 2] = _HEX[nibbles >> 4]
    out[:, len(head) + 1 :: 2] = _HEX[nibbles & 0x0F]
    return _strings(out)


def _civil_from_days(days: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(year, month, day) from days since 1970-01-01 (H. Hinnant's algorithm)."""
    z = days + 719_468
    era = np.floor_divide(z, 146_097)
    doe = z - era * 146_097
    yoe = (doe - doe // 1460 + doe // 36_524 - doe // 146_096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    day = doy - (153 * mp + 2) // 5 + 1
    month = np.where(mp < 10, mp + 3, mp - 9)
    year = yoe + era * 400 + (month <= 2)
    return year, month, day


def iso_utc(epoch_us: np.ndarray) -> pa.Array:
    """ "YYYY-MM-DDTHH:MM:SS.ffffff+00:00" for each epoch-microsecond value (years 0-9999)."""
    us = np.asarray(epoch_us, dtype=np.int64)
    days, in_day = np.divmod(us, 86_400_000_000)
    year, month, day = _civil_from_days(days)
    if len(us) and (year.min() < 0 or year.max() > 9999):
        raise ValueError("iso_utc handles years 0000-9999 only")
    seconds, micros = np.divmod(in_day, 1_000_000)
    fields = (year, month, day, seconds // 3600, seconds // 60 % 60, seconds % 60, micros)
    out = np.tile(np.frombuffer(_ISO_TEMPLATE, dtype=np.uint8), (len(us), 1))
    for first, which, divisor in _ISO_PAIRS:
        out[:, first : first + 2] = _PAIRS[(fields[which] // divisor) % 100]
    return _strings(out)
