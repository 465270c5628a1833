"""A FeatureFrame as a dense float32 matrix plus a presence mask (the tensor call).

Columns keep the request's order (a feature service's order). A non-numeric feature
(string, bytes, arrays, map, json, struct: featureline.dtypes) cannot be a float: a
feature service's are left out, by name (a service may serve a model and a UI at
once); one named in the request's feature refs is a 400 that names it. Columns read
from Redis are decoded whole from the stored ValueProto bytes (serving_api.vector_codec).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from featureline.dtypes import NUMERIC_DTYPES
from featureline.errors import BadInputError
from featureline.serving_api.frame import PRESENT, FeatureFrame, FrameColumn
from featureline.serving_api.vector_codec import decode_numeric


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


def frame_to_tensor(frame: FeatureFrame, fill: float = 0.0, by_refs: bool = False) -> TensorParts:
    """`by_refs`: the request named its features (not a service): each must be numeric."""
    numeric = [c for c in frame.columns if c.dtype in NUMERIC_DTYPES]
    omitted = [c.name for c in frame.columns if c.dtype not in NUMERIC_DTYPES]
    if by_refs and omitted:
        shown = ", ".join(f"{c.name!r} ({c.dtype})" for c in frame.columns if c.dtype not in NUMERIC_DTYPES)
        raise BadInputError(
            f"the tensor call takes numeric features only; not numeric: {shown}. "
            f"Numeric types: {', '.join(sorted(NUMERIC_DTYPES))}"
        )
    values = np.empty((frame.n_rows, len(numeric)), dtype=np.float32)
    present = np.empty((frame.n_rows, len(numeric)), dtype=np.uint8)
    for j, col in enumerate(numeric):
        col_values, mask = column_as_float(col, fill)
        values[:, j] = col_values
        present[:, j] = mask
    return TensorParts(values, present, [c.name for c in numeric], omitted)
