"""Featureline shared core: settings, specs, semantics and storage layouts.

Streaming (`streaming/`), batch (`batch/`) and serving (`serving_api/`) meet only here:
in the typed specs read from a Feast repo, the value rules of `semantics`, and the
Redis (`online`) and Parquet (`offline`) layouts. Nothing in this package imports
feast, pyspark or apache_beam at module level.
"""

__version__ = "0.1.0"

from featureline._compiled import drop_stale as _drop_stale

_drop_stale()  # before any compiled module can be imported
