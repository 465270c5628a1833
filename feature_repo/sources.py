"""Data sources: the `transactions` Kafka topic and the Parquet offline store.

The offline store lives under FEATURELINE_OFFLINE_DIR (default: data/offline next to
this file). Streaming appends raw events to `raw/transactions/`, partitioned by date;
batch jobs write `merchant_risk/`; the generator writes `user_profile/`.
"""

import os
from datetime import timedelta
from pathlib import Path

from feast import FileSource, KafkaSource, RequestSource
from feast.data_format import JsonFormat, ParquetFormat
from feast.field import Field
from feast.types import Float64, String

OFFLINE_DIR = Path(os.environ.get("FEATURELINE_OFFLINE_DIR", str(Path(__file__).parent / "data" / "offline")))
KAFKA_BOOTSTRAP = os.environ.get("FEATURELINE_KAFKA_BOOTSTRAP", "localhost:9092")

transactions_batch = FileSource(
    name="transactions_raw",
    path=str(OFFLINE_DIR / "raw" / "transactions"),
    file_format=ParquetFormat(),
    timestamp_field="event_timestamp",
    created_timestamp_column="created",
    description="Raw transaction events as streaming stored them (one row per Kafka message).",
)

transactions_stream = KafkaSource(
    name="transactions",
    kafka_bootstrap_servers=KAFKA_BOOTSTRAP,
    topic="transactions",
    timestamp_field="event_timestamp",
    message_format=JsonFormat(
        schema_json=(
            "txn_id string, user_id long, merchant_id string, amount double, "
            "currency string, country string, event_timestamp timestamp"
        )
    ),
    batch_source=transactions_batch,
    watermark_delay_threshold=timedelta(minutes=5),
    description="Card transactions, JSON, one message per transaction.",
)

user_profile_source = FileSource(
    name="user_profile_source",
    path=str(OFFLINE_DIR / "user_profile"),
    file_format=ParquetFormat(),
    timestamp_field="event_timestamp",
    created_timestamp_column="created",
)

merchant_risk_source = FileSource(
    name="merchant_risk_source",
    path=str(OFFLINE_DIR / "merchant_risk"),
    file_format=ParquetFormat(),
    timestamp_field="event_timestamp",
    created_timestamp_column="created",
    description="Daily merchant risk, computed by the Spark job from raw transactions.",
)

transaction_request = RequestSource(
    name="transaction_request",
    schema=[Field(name="amount", dtype=Float64), Field(name="country", dtype=String)],
)
