"""Fixtures for historical retrieval tests: one Spark session for the whole run."""

from __future__ import annotations

from typing import Any

import pytest


@pytest.fixture(scope="session")
def spark() -> Any:
    from batch.spark import get_spark

    return get_spark()
