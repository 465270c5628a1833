"""A FeatureFrame as the JSON body of Feast's `POST /get-online-features`.

Byte-for-byte the shape Feast 0.67's feature server answers with
(feast.feature_server_utils.convert_response_to_dict): one entry of `results` per
column of `metadata.feature_names` (join keys first), each with `values`, `statuses`
(names) and `event_timestamps` (RFC 3339, "Z", 0/3/6 fraction digits as protobuf's
JSON mapping prints them; 1970-01-01T00:00:00Z where there is none). Non-finite floats
are the strings "NaN" / "Infinity" / "-Infinity" and bytes are base64, as in Feast.
"""

from __future__ import annotations

import base64
import math
import time
from typing import Any, Final

import orjson

from featureline.dtypes import DTYPES
from featureline.online.feast_format import decode_value
from featureline.online.value_proto import to_json_native
from featureline.serving_api.frame import STATUS_NAMES, FeatureFrame, FrameColumn
from featureline.serving_api.memo import memoized

_EPOCH: Final = "1970-01-01T00:00:00Z"
_JSON_FORMS: Final = {name: d.json_form for name, d in DTYPES.items()}
# Seconds -> "YYYY-MM-DDTHH:MM:SS": strftime costs ~2 us and a batch-100 response
# formats ~2,000 stamps, mostly of a few distinct seconds per view.
_SECONDS_CACHE: Final[dict[int, str]] = {}
_SECONDS_CACHE_MAX: Final = 100_000
# Formatted event times by instant: an entity's event times recur across requests
# (~0.1 us a hit against ~1 us to format), as codec_proto keeps their protobuf form.
_STAMP_TEXT: Final[dict[int, str]] = {}
_STAMP_TEXT_CAP: Final = 200_000
# The JSON form of a stored float or bytes value by its stored bytes (immutable: a
# float, or base64 text): a hot entity's values recur across requests.
_JSON_SCALARS: Final[dict[bytes, Any]] = {}
_JSON_SCALARS_CAP: Final = 200_000
# A one-row column read from Redis, as JSON text, by what decides it: its dtype, stored
# bytes, status and event time. A hot entity's features recur across batch-1 requests;
# a hit is one lookup (~0.2 us) against ~1 us to build the column's dict and encode it.
# The text is orjson's for that dict, which does not depend on where it sits, so the
# response is byte for byte the one frame_to_feast_dict would give.
_ONE_ROW: Final[dict[tuple[str, bytes | None, int, int], bytes]] = {}
_ONE_ROW_CAP: Final = 100_000
_NAMES: Final[dict[tuple[str, ...], bytes]] = {}  # feature_names metadata, by names
_NAMES_CAP: Final = 1024


def format_timestamp(event_us: int) -> str:
    """protobuf JSON Timestamp text of a microsecond instant (0 -> the epoch)."""
    if event_us == 0:
        return _EPOCH
    seconds, micros = divmod(event_us, 1_000_000)
    base = _SECONDS_CACHE.get(seconds)
    if base is None:
        if len(_SECONDS_CACHE) >= _SECONDS_CACHE_MAX:
            _SECONDS_CACHE.clear()
        tm = time.gmtime(seconds)
        base = _SECONDS_CACHE[seconds] = (
            f"{tm[0]:04d}-{tm[1]:02d}-{tm[2]:02d}T{tm[3]:02d}:{tm[4]:02d}:{tm[5]:02d}"
        )
    if micros == 0:
        return base + "Z"
    if micros % 1000 == 0:
        return f"{base}.{micros // 1000:03d}Z"
    return f"{base}.{micros:06d}Z"


def _json_value(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        if math.isnan(value):
            return "NaN"
        return "Infinity" if value > 0 else "-Infinity"
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    return value


def _json_scalar(raw: bytes) -> Any:
    return _json_value(decode_value(raw))


def _column_json(col: FrameColumn, stamp_cache: dict[int, list[str]]) -> dict[str, Any]:
    form = _JSON_FORMS.get(col.dtype, "plain")
    raws = col.undecoded()
    if raws is not None and (form == "float" or form == "bytes"):
        # Straight from the stored bytes to the JSON form, one lookup a value. (The
        # tables' .get is called directly: compiled, that is one C call; a bound method
        # kept in a local is a Python call each time.)
        values = [
            (v if (v := _JSON_SCALARS.get(r)) is not None
             else memoized(_JSON_SCALARS, _JSON_SCALARS_CAP, r, _json_scalar))
            if r else None
            for r in raws
        ]  # fmt: skip
    elif form == "float" or form == "bytes":
        values = [_json_value(v) for v in col.values]
    elif form != "plain":  # arrays, maps, json: Feast's _value_to_native, recursively
        values = [to_json_native(v) for v in col.values]
    else:
        values = col.values
    # Columns of one view share one event-time list: format it once.
    stamps = stamp_cache.get(id(col.event_us))
    if stamps is None:
        stamps = stamp_cache[id(col.event_us)] = [
            (text if (text := _STAMP_TEXT.get(t)) is not None
             else memoized(_STAMP_TEXT, _STAMP_TEXT_CAP, t, format_timestamp))
            for t in col.event_us
        ]  # fmt: skip
    return {
        "values": values,
        "statuses": [STATUS_NAMES[s] for s in col.statuses],
        "event_timestamps": stamps,
    }


def frame_to_feast_dict(frame: FeatureFrame) -> dict[str, Any]:
    stamp_cache: dict[int, list[str]] = {}
    columns = frame.all_columns
    return {
        "results": [_column_json(c, stamp_cache) for c in columns],
        "metadata": {"feature_names": [c.name for c in columns]},
    }


def frame_to_feast_json(frame: FeatureFrame) -> bytes:
    if frame.n_rows != 1:
        return orjson.dumps(frame_to_feast_dict(frame))
    stamp_cache: dict[int, list[str]] = {}
    columns = frame.all_columns
    parts = [_one_row_json(c, stamp_cache) for c in columns]
    names = tuple([c.name for c in columns])
    metadata = _NAMES.get(names)
    if metadata is None:
        metadata = memoized(_NAMES, _NAMES_CAP, names, _names_json)
    return b'{"results":[' + b",".join(parts) + b'],"metadata":' + metadata + b"}"


def _one_row_json(col: FrameColumn, stamp_cache: dict[int, list[str]]) -> bytes:
    """One column of a one-row frame as JSON text; memoized for a scalar column read
    from Redis (its text follows from dtype, stored bytes, status and event time)."""
    raws = col.undecoded()
    if raws is None:
        return orjson.dumps(_column_json(col, stamp_cache))
    key = (col.dtype, raws[0], col.statuses[0], col.event_us[0])
    text = _ONE_ROW.get(key)
    if text is None:
        text = memoized(_ONE_ROW, _ONE_ROW_CAP, key, lambda _: _kept(_column_json(col, stamp_cache)))
    return text


def _names_json(names: tuple[str, ...]) -> bytes:
    return _kept({"feature_names": list(names)})


def _kept(value: Any) -> bytes:
    """orjson's text as an exact-size copy, for a memo table: orjson's result keeps its
    ~4 KiB buffer (25,000 kept results held ~100 MiB, measured; the copies ~4 MiB)."""
    return bytes(memoryview(orjson.dumps(value)))
