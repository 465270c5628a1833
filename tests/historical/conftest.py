"""Fixtures for historical retrieval tests: one Spark session for the whole run (the
spark-submit test uses the session's standalone cluster, tests/conftest.py)."""

from __future__ import annotations

from typing import Any

import pytest


@pytest.fixture(scope="session")
def spark() -> Any:
    from featureline.batch.spark import get_spark

    return get_spark()
