"""Validate and coerce a request's entity columns (join keys and request fields).

Values arrive as JSON or protobuf scalars. Like Feast, an int64 key also accepts a
string of digits ("42"); everything else must already have the column's type. Each
error names the column and the first bad row, and is a BadInputError (HTTP 400 /
INVALID_ARGUMENT), never a crash.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final

from featureline.errors import BadInputError

_INT_TYPES: Final = ("int64", "int32", "unix_timestamp")
_INT_RANGE: Final = {"int64": (-(2**63), 2**63 - 1), "int32": (-(2**31), 2**31 - 1)}
_INT_RANGE["unix_timestamp"] = _INT_RANGE["int64"]


def _bad(column: str, row: int, value: Any, expected: str) -> BadInputError:
    shown = repr(value)
    if len(shown) > 40:
        shown = shown[:37] + "..."
    return BadInputError(f"entity column {column!r}, row {row}: expected {expected}, got {shown}")


def _coerce_int(column: str, dtype: str, values: Sequence[Any]) -> list[int]:
    low, high = _INT_RANGE[dtype]
    out: list[int] = []
    for row, v in enumerate(values):
        if type(v) is int:
            iv = v
        elif isinstance(v, str) and v.lstrip("-").isdigit() and v.isascii():
            iv = int(v)
        else:
            raise _bad(column, row, v, f"an integer ({dtype})")
        if not low <= iv <= high:
            raise _bad(column, row, v, f"an integer in {dtype} range")
        out.append(iv)
    return out


def coerce_column(column: str, dtype: str, values: Sequence[Any], nullable: bool) -> list[Any]:
    """Values of one column as `dtype`; None allowed only for request fields (nullable)."""
    if dtype in _INT_TYPES and not nullable:
        return _coerce_int(column, dtype, values)
    out: list[Any] = []
    for row, v in enumerate(values):
        if v is None:
            if not nullable:
                raise _bad(column, row, None, f"a {dtype} value (join keys cannot be null)")
            out.append(None)
        elif dtype == "string":
            if not isinstance(v, str):
                raise _bad(column, row, v, "a string")
            out.append(v)
        elif dtype in ("float64", "float32"):
            if type(v) not in (int, float):
                raise _bad(column, row, v, "a number")
            out.append(float(v))
        elif dtype in _INT_TYPES:
            out.append(_coerce_int(column, dtype, [v])[0])
        elif dtype == "bool":
            if type(v) is not bool:
                raise _bad(column, row, v, "true or false")
            out.append(v)
        elif dtype == "bytes":
            if not isinstance(v, bytes | str):
                raise _bad(column, row, v, "bytes")
            out.append(v.encode() if isinstance(v, str) else v)
        else:
            raise BadInputError(f"entity column {column!r} has unsupported type {dtype}")
    return out


def row_count(entities: Mapping[str, Sequence[Any]]) -> int:
    """Common length of every column; BadInputError when they differ or none is given."""
    if not entities:
        raise BadInputError("no entity columns given: pass at least one join key column")
    n = -1
    for values in entities.values():
        if n < 0:
            n = len(values)
        elif len(values) != n:
            shown = ", ".join(f"{k}={len(v)}" for k, v in entities.items())
            raise BadInputError(f"entity columns have different lengths: {shown}")
    return n
