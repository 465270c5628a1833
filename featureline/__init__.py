"""Featureline shared core: settings, specs, semantics and storage layouts.

Streaming (`streaming/`), batch (`batch/`) and serving (`serving_api/`) meet only here:
in the typed specs read from a Feast repo, the value rules of `semantics`, and the
Redis (`online`) and Parquet (`offline`) layouts. Nothing in this package imports
feast, pyspark or apache_beam at module level, and importing it does nothing else
(the compiled serving build is checked by `featureline.serving_api`, read-only).
"""

__version__ = "0.1.0"
