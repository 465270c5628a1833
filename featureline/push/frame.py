"""A pushed frame, checked and converted for one view, before anything is written.

A frame is Feast's `df` of a push or write request: column name -> list of values
(what `pd.DataFrame(request.df)` reads in Feast's feature server). Columns are named
as in the view's batch source: Feast applies the source's `field_mapping` (source
column -> feature name) to a pushed frame, and reads the event time from the source's
`timestamp_field` and the created time from its `created_timestamp_column`.

Every value goes through one conversion per declared type (`VALUE_CONVERTERS`): a
value that does not match raises BadInputError naming the column and row, so a bad
frame is refused whole and nothing of it is written. New types plug in there.
"""

from __future__ import annotations

import base64
import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from featureline.errors import BadInputError
from featureline.online.value_proto import encode_compound
from featureline.specs import ViewSpec

_INT_RANGE = {"int32": (-(2**31), 2**31 - 1), "int64": (-(2**63), 2**63 - 1)}
# Event times a datetime can hold (years 1..9999), in microseconds since the epoch.
_MIN_US, _MAX_US = -62_135_596_800_000_000, 253_402_300_799_999_999


class _Mismatch(ValueError):
    """A value that does not match its declared type (the caller names the field)."""


def _is_null(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _int(dtype: str) -> Callable[[Any], int]:
    lo, hi = _INT_RANGE[dtype]

    def convert(value: Any) -> int:
        # pandas turns an int column with a null into float64: 3.0 is the int 3.
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise _Mismatch
        if isinstance(value, float) and not value.is_integer():
            raise _Mismatch
        out = int(value)
        if not lo <= out <= hi:
            raise _Mismatch
        return out

    return convert


def _float(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _Mismatch
    return float(value)


def _string(value: Any) -> str:
    if not isinstance(value, str):
        raise _Mismatch
    return value


def _bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise _Mismatch
    return value


def _bytes(value: Any) -> bytes:
    """bytes as such, or base64 text (JSON has no bytes)."""
    if isinstance(value, bytes):
        return value
    if not isinstance(value, str):
        raise _Mismatch
    try:
        return base64.b64decode(value, validate=True)
    except ValueError:
        raise _Mismatch from None


def _unix_timestamp(value: Any) -> int:
    """Feast's UnixTimestamp value: whole seconds since the epoch (an int, or a
    timestamp string / datetime, truncated to its second)."""
    if isinstance(value, str | datetime):
        return event_time_us(value) // 1_000_000
    return _int("int64")(value)


# dtype -> conversion of one non-null value to what featureline.online.feast_format
# encodes for that dtype (and what the offline Arrow column holds).
VALUE_CONVERTERS: dict[str, Callable[[Any], Any]] = {
    "int32": _int("int32"),
    "int64": _int("int64"),
    "float32": _float,
    "float64": _float,
    "string": _string,
    "bool": _bool,
    "bytes": _bytes,
    "unix_timestamp": _unix_timestamp,
}


def _array(element: str) -> Callable[[Any], list[Any]]:
    """A Feast array: a list (a JSON array, or a numpy array from a DataFrame) of
    non-null values of its element type (Feast's arrays hold no nulls)."""
    convert = VALUE_CONVERTERS[element]

    def run(value: Any) -> list[Any]:
        if hasattr(value, "tolist") and not isinstance(value, str | bytes):
            value = value.tolist()
        if not isinstance(value, list | tuple):
            raise _Mismatch
        if any(_is_null(item) for item in value):
            raise _Mismatch
        return [convert(item) for item in value]

    return run


def _mapping(dtype: str) -> Callable[[Any], dict[str, Any]]:
    """A Map or Struct: an object of string keys whose values Feast can store (checked
    by encoding it, so a value that could not be written is refused before any write),
    or its JSON text (Feast's remote online store sends Maps and Structs as text)."""

    def run(value: Any) -> dict[str, Any]:
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except ValueError:
                raise _Mismatch from None
        if not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
            raise _Mismatch
        out = dict(value)
        try:
            encode_compound(dtype, out)
        except BadInputError:
            raise _Mismatch from None
        return out

    return run


def _json(value: Any) -> str:
    """Feast's Json: JSON text as given, or any JSON value, written as its text."""
    if isinstance(value, str):
        try:
            json.loads(value)
        except ValueError:
            raise _Mismatch from None
        return value
    try:
        return json.dumps(value)
    except (TypeError, ValueError):
        raise _Mismatch from None


VALUE_CONVERTERS |= {f"{element}_list": _array(element) for element in list(VALUE_CONVERTERS)}
VALUE_CONVERTERS |= {"map": _mapping("map"), "struct": _mapping("struct"), "json": _json}


def text_value(name: str, dtype: str, text: str) -> Any:
    """A value given as text (Feast's gRPC `features` map) read as `dtype`; other types
    and unparsable text stay text, for convert_column to accept or name."""
    try:
        if dtype in _INT_RANGE:
            return int(text)
        if dtype in ("float32", "float64"):
            return float(text)
    except ValueError:
        return text
    if dtype == "bool" and text.lower() in ("true", "false", "1", "0"):
        return text.lower() in ("true", "1")
    if dtype in ("map", "struct") or dtype.endswith("_list"):
        try:
            return json.loads(text)  # an object or array written as JSON text
        except ValueError:
            return text
    return text


def convert_column(name: str, dtype: str, values: Sequence[Any]) -> list[Any]:
    """The values of one column as `dtype`; nulls (None, NaN) stay None."""
    convert = VALUE_CONVERTERS.get(dtype)
    if convert is None:
        raise BadInputError(f"column {name!r}: values of type {dtype} cannot be pushed")
    out: list[Any] = []
    for row, value in enumerate(values):
        if type(value).__module__ == "numpy" and getattr(value, "ndim", None) == 0:
            value = value.item()  # a numpy scalar from a caller's DataFrame (not an array)
        if _is_null(value):
            out.append(None)
            continue
        try:
            out.append(convert(value))
        except (_Mismatch, TypeError, OverflowError):
            raise BadInputError(
                f"column {name!r}, row {row}: {value!r} is not a valid {dtype} value"
            ) from None
    return out


def event_time_us(value: Any) -> int:
    """A timestamp as Feast's pd.to_datetime reads it -> microseconds since the epoch:
    an ISO-8601 string or a datetime (naive means UTC), or a number of nanoseconds."""
    if isinstance(value, bool):
        raise _Mismatch
    if isinstance(value, int | float):
        if isinstance(value, float) and not math.isfinite(value):
            raise _Mismatch
        if not _MIN_US <= int(value) // 1000 <= _MAX_US:
            raise _Mismatch
        return int(value) // 1000
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.strip())
        except ValueError:
            raise _Mismatch from None
    if not isinstance(value, datetime):
        raise _Mismatch
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    delta = value - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def _times(name: str, values: Sequence[Any], *, required: bool) -> list[int | None]:
    out: list[int | None] = []
    for row, value in enumerate(values):
        if _is_null(value):
            if required:
                raise BadInputError(f"column {name!r}, row {row}: the event time is missing")
            out.append(None)
            continue
        try:
            out.append(event_time_us(value))
        except (_Mismatch, OverflowError):
            raise BadInputError(f"column {name!r}, row {row}: {value!r} is not a timestamp") from None
    return out


def check_frame(df: Any, field: str = "df") -> dict[str, list[Any]]:
    """Feast's `df` (an object of column -> list, all of one length), checked."""
    if not isinstance(df, Mapping) or not df:
        raise BadInputError(f"field {field!r} must be an object of column name -> list of values")
    lengths = set()
    for name, values in df.items():
        if not isinstance(values, list):
            raise BadInputError(f"field {field!r}: column {name!r} must be a list of values")
        lengths.add(len(values))
    if len(lengths) > 1:
        raise BadInputError(f"field {field!r}: columns have different lengths ({sorted(lengths)})")
    return {str(k): v for k, v in df.items()}


@dataclass(frozen=True)
class ViewRows:
    """A frame's rows for one view, converted: join key values, times, features."""

    view: ViewSpec
    keys: dict[str, list[Any]]  # join key -> values
    event_us: list[int]
    created_us: list[int | None]
    features: dict[str, list[Any]]  # feature -> values (None: null)
    columns: dict[str, list[Any]]  # source column -> converted values (offline write)

    def __len__(self) -> int:
        return len(self.event_us)


def source_columns(view: ViewSpec) -> tuple[str, str]:
    """(event time column, created time column or "") of the view's batch source."""
    source = view.batch_source
    if source is not None:
        return source.timestamp_field, source.created_timestamp_column
    return view.timestamp_field, view.created_timestamp_column


def view_rows(view: ViewSpec, frame: Mapping[str, list[Any]]) -> ViewRows:
    """Convert `frame` for `view`; BadInputError naming the first missing or bad column."""
    mapping = dict(view.batch_source.field_mapping) if view.batch_source else {}
    column_of = {feature: column for column, feature in mapping.items()}
    ts_col, created_col = source_columns(view)

    def column(name: str, what: str) -> tuple[str, list[Any]]:
        col = column_of.get(name, name)
        if col not in frame:
            raise BadInputError(f"the frame has no column {col!r} ({what} of view {view.name!r})")
        return col, frame[col]

    converted: dict[str, list[Any]] = {}
    keys: dict[str, list[Any]] = {}
    for key in view.join_keys:
        col, values = column(key.name, "a join key")
        keys[key.name] = converted[col] = convert_column(col, key.dtype, values)
        if any(v is None for v in keys[key.name]):
            raise BadInputError(f"column {col!r}: a join key value is missing (null)")
    features: dict[str, list[Any]] = {}
    for feat in view.features:
        col, values = column(feat.name, "a feature")
        features[feat.name] = converted[col] = convert_column(col, feat.dtype, values)
    _, raw_ts = column(ts_col, "the event timestamp column")
    event = _times(ts_col, raw_ts, required=True)
    created = _times(created_col, frame[created_col], required=False) if created_col in frame else None
    converted[ts_col] = event
    if created is not None:
        converted[created_col] = created
    n = len(event)
    return ViewRows(
        view, keys, [e for e in event if e is not None], created or [None] * n, features, converted
    )
