"""Streaming: the Beam job Kafka -> Redis (tiles, latest values) + Parquet (raw events)."""
