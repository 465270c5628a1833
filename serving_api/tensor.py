"""A FeatureFrame as a dense float32 matrix plus a presence mask (the tensor call).

Columns keep the request's order (a feature service's order); non-numeric features
(string, bytes) cannot be a float and are left out, by name. Columns read from Redis
are decoded whole from the stored ValueProto bytes (serving_api.vector_codec).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from serving_api.frame import PRESENT, FeatureFrame, FrameColumn
from serving_api.vector_codec import decode_numeric

NUMERIC_DTYPES = frozenset({"float64", "float32", "int64", "int32", "bool", "unix_timestamp"})


@dataclass(frozen=True)
class TensorParts:
    values: np.ndarray  # float32 (rows, cols), C order
    present: np.ndarray  # uint8 (rows, cols)
    column_names: list[str]
    omitted: list[str]


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
            out[idx] = decode_numeric(present, col.dtype)  # type: ignore[arg-type]
        return out, mask
    # Columns computed here (aggregations, on-demand, keys) are PRESENT iff not None.
    out = np.array([fill if v is None else v for v in col.values], dtype=np.float64)
    out[~mask] = fill
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
