"""Pushing rows from Python or the CLI: a frame (pandas, Arrow, a file, or columns)
as Feast's push body, sent to `featureline serve`'s POST /push.

    push_rows("http://127.0.0.1:8080", "driver_stats_push_source", df, to="online")

The body is Feast's PushFeaturesRequest: `df` is column -> list of values, timestamps
as ISO-8601 strings (a naive one is UTC), bytes as base64 (JSON has no bytes), NaN as
null. Errors come back as FeaturelineErrors with the server's message: BadInputError
(400/413, and 401/403), NotFoundError (404: an unknown push source), and
ServiceUnavailableError (the server or its Redis does not answer).
"""

from __future__ import annotations

import base64
import math
from collections.abc import Mapping
from datetime import date, datetime
from pathlib import Path
from typing import Any

from featureline.errors import BadInputError, NotFoundError, ServiceUnavailableError
from featureline.serving_api.tls import ClientTls

PUSH_TO = ("online", "offline", "online_and_offline")


def _json_value(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    if hasattr(value, "isoformat"):  # pandas Timestamp
        return value.isoformat()
    if hasattr(value, "item"):  # numpy scalars
        return _json_value(value.item())
    return value


def frame_columns(df: Any) -> dict[str, list[Any]]:
    """A pandas DataFrame, a pyarrow Table or a mapping of columns -> Feast's `df`."""
    if hasattr(df, "to_pylist") and hasattr(df, "column_names"):  # pyarrow.Table
        columns = {name: df[name].to_pylist() for name in df.column_names}
    elif hasattr(df, "to_dict") and hasattr(df, "columns"):  # pandas.DataFrame
        columns = {str(name): df[name].tolist() for name in df.columns}
    elif isinstance(df, Mapping):
        columns = {str(k): list(v) for k, v in df.items()}
    else:
        raise BadInputError("push a pandas DataFrame, a pyarrow Table, or a mapping of column -> values")
    return {name: [_json_value(v) for v in values] for name, values in columns.items()}


def read_frame_file(path: str | Path) -> dict[str, list[Any]]:
    """Rows from a .parquet, .csv or .json file (JSON: an object of columns, a list of
    row objects, or one row object per line) -> Feast's `df`."""
    path = Path(path)
    suffix = path.suffix.lower()
    if not path.is_file():
        raise BadInputError(f"no file {str(path)!r}")
    try:
        if suffix == ".parquet":
            import pyarrow.parquet as pq

            return frame_columns(pq.read_table(path))
        if suffix == ".csv":
            import pyarrow.csv as pacsv

            return frame_columns(pacsv.read_csv(path))
        if suffix in (".json", ".jsonl", ".ndjson"):
            return frame_columns(_read_json(path))
    except (OSError, ValueError) as exc:  # pyarrow's errors derive from these
        raise BadInputError(f"cannot read {str(path)!r}: {exc}") from None
    raise BadInputError(f"{str(path)!r}: give a .parquet, .csv or .json file")


def _read_json(path: Path) -> Mapping[str, list[Any]]:
    import orjson

    text = path.read_bytes()
    try:
        data = orjson.loads(text)
    except orjson.JSONDecodeError:
        data = [orjson.loads(line) for line in text.splitlines() if line.strip()]
    if isinstance(data, dict):
        return data
    if isinstance(data, list) and all(isinstance(r, dict) for r in data):
        names = list(dict.fromkeys(k for r in data for k in r))
        return {n: [r.get(n) for r in data] for n in names}
    raise ValueError("expected an object of columns or a list of row objects")


def push_rows(
    url: str,
    push_source: str,
    df: Any,
    *,
    to: str = "online",
    token: str | None = None,
    timeout_s: float = 30.0,
    tls: ClientTls | None = None,
) -> None:
    """POST the rows to `url`/push (Feast's body); raises a FeaturelineError on failure.
    `tls`: the CA (and client certificate) for an https `url` (default: system roots)."""
    import httpx

    if to not in PUSH_TO:
        raise BadInputError(f"to must be one of {', '.join(PUSH_TO)}, not {to!r}")
    body = {"push_source_name": push_source, "df": frame_columns(df), "to": to}
    headers = {"authorization": f"Bearer {token}"} if token else {}
    try:
        verify = tls.ssl_context() if tls is not None else True
        response = httpx.post(
            f"{url.rstrip('/')}/push", json=body, headers=headers, timeout=timeout_s, verify=verify
        )
    except httpx.HTTPError as exc:
        raise ServiceUnavailableError(f"featureline serve at {url} does not answer: {exc}") from None
    if response.status_code == 200:
        return
    try:
        detail = str(response.json().get("detail", response.text))
    except ValueError:
        detail = response.text
    if response.status_code == 404:
        raise NotFoundError(detail)
    if response.status_code in (400, 401, 403, 413):
        raise BadInputError(detail)
    raise ServiceUnavailableError(f"push to {url} failed ({response.status_code}): {detail}")
