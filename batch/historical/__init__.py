"""Point-in-time-correct historical retrieval (issue 3): a local DuckDB engine and a
Spark engine, both following shared/semantics.md exactly.

Public API: `get_historical_features(...) -> pyarrow.Table` (`.to_pandas()` for pandas),
`LocalOptions` (DuckDB memory limit, threads, spill directory).
"""

from featureline.batch.historical.api import ENGINES, get_historical_features
from featureline.batch.historical.local_engine import LocalOptions

__all__ = ["ENGINES", "LocalOptions", "get_historical_features"]
