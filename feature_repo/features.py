"""Feature views and services for the card-payment fraud model."""

from datetime import timedelta
from typing import Any

from entities import merchant, user
from feast import FeatureService, FeatureView, Field
from feast.aggregation import Aggregation
from feast.on_demand_feature_view import on_demand_feature_view
from feast.stream_feature_view import StreamFeatureView
from feast.types import Float64, Int64, String
from sources import (
    merchant_risk_source,
    transaction_request,
    transactions_stream,
    user_profile_source,
)

_WINDOWS = {"10m": timedelta(minutes=10), "1h": timedelta(hours=1), "24h": timedelta(hours=24)}
_USER_AGGS = [
    Aggregation(column="amount", function=fn, time_window=w, name=f"{fn}_amount_{label}")
    for label, w in _WINDOWS.items()
    for fn in ("count", "sum", "mean", "max")
] + [
    Aggregation(
        column="merchant_id",
        function="count_distinct",
        time_window=timedelta(hours=24),
        name="distinct_merchants_24h",
    )
]
_INT_OUTPUT = {"count", "count_distinct"}


def _outputs(aggregations: list[Aggregation]) -> list[Field]:
    """Aggregation outputs declared in the schema too, so Feast itself (feast apply's
    on-demand view validation, feature services) sees the same features we compute."""
    return [Field(name=a.name, dtype=Int64 if a.function in _INT_OUTPUT else Float64) for a in aggregations]


_MERCHANT_AGGS = [
    Aggregation(
        column="amount",
        function="count",
        time_window=timedelta(hours=1),
        slide_interval=timedelta(minutes=1),
        name="txn_count_1h",
    ),
]

user_txn_stats = StreamFeatureView(
    name="user_txn_stats",
    entities=[user],
    source=transactions_stream,
    timestamp_field="event_timestamp",
    ttl=timedelta(days=1),
    schema=[
        Field(name="user_id", dtype=Int64),
        Field(name="amount", dtype=Float64),
        Field(name="merchant_id", dtype=String),
        *_outputs(_USER_AGGS),
    ],
    aggregations=_USER_AGGS,
    description="Per-user spend over sliding 10 min, 1 h and 24 h windows.",
    tags={"freshness_slo": "1m"},
)

merchant_txn_stats = StreamFeatureView(
    name="merchant_txn_stats",
    entities=[merchant],
    source=transactions_stream,
    timestamp_field="event_timestamp",
    ttl=timedelta(days=1),
    schema=[
        Field(name="merchant_id", dtype=String),
        Field(name="amount", dtype=Float64),
        *_outputs(_MERCHANT_AGGS),
    ],
    aggregations=_MERCHANT_AGGS,
    description="Per-merchant transactions in the last hour, 1-minute tiles.",
    tags={"freshness_slo": "1m"},
)

user_last_txn = StreamFeatureView(
    name="user_last_txn",
    entities=[user],
    source=transactions_stream,
    timestamp_field="event_timestamp",
    ttl=timedelta(days=7),
    schema=[
        Field(name="user_id", dtype=Int64),
        Field(name="amount", dtype=Float64),
        Field(name="merchant_id", dtype=String),
        Field(name="country", dtype=String),
    ],
    description="The user's most recent transaction (latest value, no aggregation).",
    tags={"freshness_slo": "1m"},
)

user_profile = FeatureView(
    name="user_profile",
    entities=[user],
    ttl=timedelta(days=3650),
    schema=[
        Field(name="account_age_days", dtype=Int64),
        Field(name="home_country", dtype=String),
        Field(name="credit_limit", dtype=Float64),
    ],
    source=user_profile_source,
    description="Slowly changing account facts.",
    tags={"freshness_slo": "2d"},
)

merchant_risk = FeatureView(
    name="merchant_risk",
    entities=[merchant],
    ttl=timedelta(days=2),
    schema=[
        Field(name="chargeback_rate_30d", dtype=Float64),
        Field(name="txn_count_30d", dtype=Int64),
    ],
    source=merchant_risk_source,
    description="Merchant chargeback rate over 30 days, computed daily by Spark.",
    tags={"freshness_slo": "2d"},
)


@on_demand_feature_view(
    sources=[user_txn_stats, user_profile, transaction_request],
    schema=[
        Field(name="amount_to_mean_24h", dtype=Float64),
        Field(name="is_foreign", dtype=Int64),
    ],
    mode="python",
)
def transaction_context(inputs: dict[str, Any]) -> dict[str, Any]:
    """Amount against the user's 24 h mean, and whether the card is used abroad."""
    ratios = []
    for amount, mean in zip(inputs["amount"], inputs["mean_amount_24h"], strict=True):
        ratios.append(amount / mean if amount is not None and mean else None)
    foreign = [
        int(c is not None and h is not None and c != h)
        for c, h in zip(inputs["country"], inputs["home_country"], strict=True)
    ]
    return {"amount_to_mean_24h": ratios, "is_foreign": foreign}


fraud_model_v1 = FeatureService(
    name="fraud_model_v1",
    features=[
        user_txn_stats,
        merchant_txn_stats,
        user_last_txn[["amount", "country"]],
        user_profile,
        merchant_risk,
        transaction_context,
    ],
    description="Online features for the fraud scoring model.",
)

fraud_training_v1 = FeatureService(
    name="fraud_training_v1",
    features=[
        user_txn_stats,
        merchant_txn_stats,
        user_profile,
        merchant_risk,
    ],
    description="Point-in-time-correct training features for the fraud model.",
)
