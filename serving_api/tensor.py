"""A FeatureFrame as a dense float32 matrix plus a presence mask (the tensor call).

Columns keep the request's order (a feature service's order); non-numeric features
(string, bytes) cannot be a float and are left out, by name. Columns read from Redis
are decoded whole with numpy from the stored ValueProto bytes (~20x faster than one
Python decode per value, which matters at 1,000 entities x 20 features): float64 is
a tag byte + 8 bytes, float32 a tag byte + 4, integers and bools a tag byte + a varint.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from featureline.online.feast_format import decode_value
from serving_api.frame import PRESENT, FeatureFrame, FrameColumn

NUMERIC_DTYPES = frozenset({"float64", "float32", "int64", "int32", "bool", "unix_timestamp"})
# dtype -> (bytes per value, tag byte: field number << 3 | wire type, numpy format)
_FIXED = {"float64": (9, 0x29, "<f8"), "float32": (5, 0x35, "<f4")}


@dataclass(frozen=True)
class TensorParts:
    values: np.ndarray  # float32 (rows, cols), C order
    present: np.ndarray  # uint8 (rows, cols)
    column_names: list[str]
    omitted: list[str]


def _fixed_width(raws: list[bytes], width: int, tag: int, fmt: str) -> np.ndarray | None:
    """None when any value is not of the expected type (then decode one by one)."""
    buf = b"".join(raws)
    if len(buf) != width * len(raws):
        return None
    rows = np.frombuffer(buf, dtype=np.uint8).reshape(-1, width)
    if not (rows[:, 0] == tag).all():
        return None
    return np.ascontiguousarray(rows[:, 1:]).view(fmt).ravel().astype(np.float64)


def _varints(raws: list[bytes]) -> np.ndarray | None:
    """Tag byte + varint per item -> int64 values (two's complement, as protobuf);
    None when a value is not a varint field."""
    out = np.empty(len(raws), dtype=np.int64)
    lengths = np.fromiter((len(r) for r in raws), dtype=np.int64, count=len(raws))
    for length in np.unique(lengths).tolist():
        idx = np.flatnonzero(lengths == length)
        block = np.frombuffer(b"".join([raws[i] for i in idx.tolist()]), dtype=np.uint8)
        block = block.reshape(-1, length)
        if length < 2 or (block[:, 0] & 7).any():
            return None
        digits = block[:, 1:].astype(np.uint64)
        acc = np.zeros(len(idx), dtype=np.uint64)
        for j in range(digits.shape[1]):
            acc |= (digits[:, j] & np.uint64(0x7F)) << np.uint64(7 * j)
        out[idx] = acc.view(np.int64)
    return out


def _decode_present(raws: list[bytes], dtype: str) -> np.ndarray:
    decoded: np.ndarray | None
    if dtype in _FIXED:
        decoded = _fixed_width(raws, *_FIXED[dtype])
    else:
        ints = _varints(raws)
        if ints is not None and dtype == "int32":  # sign-extended to 10 bytes on the wire
            ints = ints.astype(np.int32)
        decoded = None if ints is None else ints.astype(np.float64)
    if decoded is None:
        decoded = np.array([float(decode_value(r)) for r in raws], dtype=np.float64)
    return decoded


def column_as_float(col: FrameColumn, fill: float) -> tuple[np.ndarray, np.ndarray]:
    """(float64 values with `fill` where not PRESENT, bool mask of PRESENT)."""
    n = len(col.statuses)
    mask = np.frombuffer(bytes(col.statuses), dtype=np.uint8) == PRESENT
    out = np.full(n, fill, dtype=np.float64)
    if col.raw is not None:
        idx = np.flatnonzero(mask)
        if len(idx):
            raws = col.raw
            present = [raws[i] for i in idx.tolist()]
            out[idx] = _decode_present(present, col.dtype)  # type: ignore[arg-type]
        return out, mask
    for i, v in enumerate(col.values):
        if v is not None and mask[i]:
            out[i] = float(v)
    return out, mask


def frame_to_tensor(frame: FeatureFrame, fill: float = 0.0) -> TensorParts:
    numeric = [c for c in frame.columns if c.dtype in NUMERIC_DTYPES]
    omitted = [c.name for c in frame.columns if c.dtype not in NUMERIC_DTYPES]
    values = np.empty((frame.n_rows, len(numeric)), dtype=np.float32)
    present = np.empty((frame.n_rows, len(numeric)), dtype=np.uint8)
    for j, col in enumerate(numeric):
        col_values, mask = column_as_float(col, fill)
        values[:, j] = col_values
        present[:, j] = mask
    return TensorParts(values, present, [c.name for c in numeric], omitted)
