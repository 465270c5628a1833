"""Pydantic models of the REST API: for the OpenAPI document only.

Requests are parsed by hand (orjson + the checks in rest_app) rather than by these
models: pydantic validation of a 1,000-row entity dict costs more than the Redis read,
and hand-written checks answer 400 with a message naming the bad field. The shapes
are Feast 0.67's (feast.feature_server.GetOnlineFeaturesRequest / OnlineFeaturesResponse).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class GetOnlineFeaturesRequest(BaseModel):
    entities: dict[str, list[Any]] = Field(
        description="Join key columns (and request-source fields), one list per column.",
        examples=[{"user_id": [1001, 1002]}],
    )
    feature_service: str | None = Field(None, description="A feature service name.")
    features: list[str] = Field(
        default_factory=list, description='Feature refs "view:feature" (without a service).'
    )
    full_feature_names: bool = Field(False, description='Name columns "view__feature".')
    include_feature_view_version_metadata: bool = Field(
        False, description="Accepted for Feast compatibility; no effect."
    )


class GetOnlineTensorRequest(BaseModel):
    entities: dict[str, list[Any]]
    feature_service: str | None = None
    features: list[str] = Field(default_factory=list)
    full_feature_names: bool = False
    fill_value: float = Field(0.0, description="Written where a value is not PRESENT.")


class FeatureVector(BaseModel):
    values: list[Any]
    statuses: list[str] = Field(description="PRESENT, NULL_VALUE, NOT_FOUND or OUTSIDE_MAX_AGE, per value.")
    event_timestamps: list[str]


class ResponseMetadata(BaseModel):
    feature_names: list[str]


class OnlineFeaturesResponse(BaseModel):
    results: list[FeatureVector]
    metadata: ResponseMetadata


class ErrorResponse(BaseModel):
    detail: str


class HealthResponse(BaseModel):
    status: str = Field(description="SERVING or NOT_SERVING")
    redis: str
    detail: str = ""


class LayoutColumnModel(BaseModel):
    name: str
    view: str
    feature: str
    dtype: str
    in_tensor: bool
    on_demand: bool


class LayoutResponse(BaseModel):
    join_keys: list[str]
    request_fields: list[str]
    columns: list[LayoutColumnModel]


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorResponse, "description": "Bad request (the message names the field)."},
    401: {"model": ErrorResponse, "description": "Missing or invalid bearer token."},
    403: {"model": ErrorResponse, "description": "The token may not read these features."},
    404: {"model": ErrorResponse, "description": "Unknown feature view, feature or service."},
    413: {"model": ErrorResponse, "description": "Body larger than the server's limit."},
    429: {"model": ErrorResponse, "description": "Too many requests in flight; retry."},
    503: {"model": ErrorResponse, "description": "Redis is unavailable."},
    504: {"model": ErrorResponse, "description": "Redis did not answer in time."},
}


def request_body(model: type[BaseModel]) -> dict[str, Any]:
    """openapi_extra documenting a JSON body that the route parses itself."""
    return {
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": model.model_json_schema()}},
        }
    }
