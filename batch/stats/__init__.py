"""Feature statistics and drift on the batch side: measure the offline store, training
sets and logged vectors (sources), store the results under <offline>/_stats (store),
and the steps of `featureline stats` / `featureline drift` (run). The statistics
themselves are the core's (featureline.stats)."""
