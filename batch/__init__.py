"""Batch jobs: Spark backfill and materialize, point-in-time historical retrieval.

Submodules are imported on demand (pyspark and duckdb are heavy); `batch.spark`
holds the one shared Spark session helper.
"""
