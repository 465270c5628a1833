"""Feature statistics and drift: pure logic on Arrow tables, no I/O.

- `column.ColumnStats`: one feature's statistics (count, nulls, mean, std, min, max,
  quantiles, chart histogram, distinct count, top values), mergeable across days;
- `sketch.QuantileSketch` (1% relative error) and `hll.HyperLogLog` (1.6% standard
  error): the mergeable sketches under it;
- `table`: per-feature, per-day statistics of a table and their JSON (`StatsSet`);
- `drift`: PSI and a two-sample test per feature; `report`: the drift report and its
  Prometheus exposition.

The batch part computes them on the offline store, training sets and logged vectors
(featureline.batch.stats); `featureline train` stores a training set's beside the model.
"""
