"""Data-quality expectations (featureline.expectations) in the batch jobs: materialize
checks the rows it reads (Arrow, in process), backfill the events Spark reads (the same
`tally` per partition in Python workers, summed). Both report one line per broken rule,
and with `--fail-on-violation` write nothing of a breaking view."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import pyarrow as pa

from featureline.errors import BadInputError
from featureline.expectations import ViewExpectations, expectations_of, findings, tally
from featureline.specs import ViewSpec

if TYPE_CHECKING:
    from pyspark.sql import DataFrame


def _on_columns(view: ViewSpec, names: set[str], *, ordered: bool) -> ViewExpectations:
    """The view's rules on the columns read (and, unordered, no read-order rule)."""
    exp = expectations_of(view)
    rules = tuple(
        r for r in exp.rules
        if (not r.field or r.field in names) and (ordered or r.kind != "monotonic_timestamps")
    )  # fmt: skip
    return dataclasses.replace(exp, rules=rules)


@dataclass
class Quality:
    """One view's findings in one run; with `fail`, a finding stops the view."""

    fail: bool
    found: tuple[str, ...] = ()

    @staticmethod
    def applies(view: ViewSpec) -> bool:
        return bool(expectations_of(view).rules)

    def check(self, view: ViewSpec, rows: pa.Table) -> None:
        exp = _on_columns(view, set(rows.column_names), ordered=True)
        if exp.rules:
            self._conclude(findings(exp, tally(rows, exp)))

    def check_spark(self, view: ViewSpec, events: DataFrame) -> None:
        """`events` deduplicated (a redelivered event counted once). Spark's rows have
        no read order after the shuffle: monotonic_timestamps is checked by the stream
        job and materialize only."""
        exp = _on_columns(view, set(events.columns), ordered=False)
        if not exp.rules:
            return
        counted = events.mapInArrow(TallyTask(exp), "key string, n long").groupBy("key").sum("n")
        self._conclude(findings(exp, {row[0]: int(row[1]) for row in counted.collect()}))

    def _conclude(self, lines: list[str]) -> None:
        self.found = tuple(lines)
        if self.found and self.fail:
            raise BadInputError(
                f"data-quality expectations broken (--fail-on-violation), nothing written: "
                f"{'; '.join(self.found)}"
            )


@dataclass(frozen=True)
class TallyTask:
    """mapInArrow: one partition's tally as (key, n) rows."""

    exp: ViewExpectations

    def __call__(self, batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        parts = list(batches)
        if not parts:
            return
        counts = tally(pa.Table.from_batches(parts), self.exp)
        yield pa.RecordBatch.from_pydict(
            {"key": list(counts), "n": list(counts.values())},
            schema=pa.schema([("key", pa.string()), ("n", pa.int64())]),
        )


def report_lines(view: str, found: tuple[str, ...]) -> Iterator[str]:
    for line in found:
        yield f"data quality: {view}: {line}"
