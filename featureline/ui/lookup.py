"""The feature page's entity lookup: one entity's value of one feature, asked of the
running serving API (POST /get-online-features, as any client asks it), with the
status and event time serve returns.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from featureline.errors import BadInputError
from featureline.specs import FieldSpec, RepoSpec

_INTS = ("int32", "int64", "unix_timestamp")
_FLOATS = ("float32", "float64")
# Serve answers one entity in ~1 ms; 2 s covers a cold worker without leaving a
# page hanging on a serving API that does not answer.
TIMEOUT_S = 2.0


@dataclass(frozen=True)
class LookupField:
    name: str
    dtype: str
    kind: str  # "join key" or "request field"


def lookup_fields(repo: RepoSpec, view: str) -> list[LookupField]:
    """What the lookup form asks for: the view's join keys; for an on-demand view, the
    join keys of the views it reads and its request fields."""
    if view in repo.views:
        return [LookupField(k.name, k.dtype, "join key") for k in repo.views[view].join_keys]
    odfv = repo.on_demand_views[view]
    keys: dict[str, FieldSpec] = {}
    pending = [src for src, _ in odfv.sources]
    request = list(odfv.request_fields)
    while pending:
        src = pending.pop(0)
        if src in repo.on_demand_views:
            pending += [s for s, _ in repo.on_demand_views[src].sources]
            request += repo.on_demand_views[src].request_fields
        elif src in repo.views:
            keys.update({k.name: k for k in repo.views[src].join_keys})
    fields = [LookupField(k.name, k.dtype, "join key") for k in keys.values()]
    seen = set(keys)
    for f in request:
        if f.name not in seen:
            seen.add(f.name)
            fields.append(LookupField(f.name, f.dtype, "request field"))
    return fields


def parse_value(text: str, field: LookupField) -> Any:
    """A form's text as the JSON value of the field's type (BadInputError otherwise)."""
    raw = text.strip()
    try:
        if field.dtype in _INTS:
            return int(raw)
        if field.dtype in _FLOATS:
            return float(raw)
        if field.dtype == "bool":
            if raw.lower() not in ("true", "false"):
                raise ValueError("true or false")
            return raw.lower() == "true"
        if field.dtype in ("string", "bytes"):  # bytes: as REST writes them, base64
            return raw
        return json.loads(raw)
    except ValueError as exc:
        raise BadInputError(f"{field.name}: {text!r} is not a {field.dtype} ({exc})") from None


@dataclass(frozen=True)
class LookupResult:
    value: Any = None
    status: str = ""
    event_timestamp: str = ""
    error: str = ""  # why there is no value (serve unreachable, or its 4xx message)
    request: str = ""  # the body sent, shown on the page


def entities_of(fields: list[LookupField], form: Mapping[str, str]) -> dict[str, list[Any]] | None:
    """The request's entities from the form; None when the form is not filled in."""
    if not fields or any(not form.get(f.name, "").strip() for f in fields):
        return None
    return {f.name: [parse_value(form[f.name], f)] for f in fields}


async def lookup(
    client: httpx.AsyncClient, serving_url: str, view: str, feature: str, entities: dict[str, list[Any]]
) -> LookupResult:
    body = {"features": [f"{view}:{feature}"], "entities": entities, "full_feature_names": True}
    shown = json.dumps(body)
    url = serving_url.rstrip("/") + "/get-online-features"
    try:
        reply = await client.post(url, json=body, timeout=TIMEOUT_S)
    except httpx.HTTPError as exc:
        return LookupResult(
            error=f"the serving API at {serving_url} did not answer ({type(exc).__name__})", request=shown
        )
    try:
        data = reply.json()
    except ValueError:
        data = {}
    if reply.status_code != 200:
        detail = data.get("detail", reply.text[:300]) if isinstance(data, dict) else reply.text[:300]
        return LookupResult(error=f"serve answered {reply.status_code}: {detail}", request=shown)
    try:
        names = data["metadata"]["feature_names"]
        result = data["results"][names.index(f"{view}__{feature}")]
        return LookupResult(
            result["values"][0], result["statuses"][0], result["event_timestamps"][0], request=shown
        )
    except (KeyError, IndexError, ValueError, TypeError):
        return LookupResult(error="serve's answer does not have the feature's column", request=shown)
