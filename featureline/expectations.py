"""Data-quality expectations, declared as Feast tags beside the definitions, checked on
Arrow tables by the stream job (per batch) and by materialize (per run): one rule per
kind, the same code for both.

On a field (Feast's `Field(..., tags={...})`):

    dq.min / dq.max          numeric bounds, inclusive ("0", "10000")
    dq.allowed               comma-separated allowed values ("FR,DE,US")
    dq.not_null              "true": a null is a violation
    dq.max_null_rate         "0.01": at most 1% nulls in a checked table (materialize
                             only: a stream batch of 20 events is too small a sample)

On a view (`FeatureView(..., tags={...})`):

    dq.monotonic_timestamps  "true": an entity's event times never go back in read order
    dq.policy                what the stream job does with an event that breaks a row
                             rule: "count" (default: counted, still applied) or
                             "dead_letter" (sent to <topic>.dlq with the reason, applied
                             nowhere: the record is one message, fixed and replayed whole)

A tag that cannot be read stops the command that loads it, naming the view and field.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from featureline.errors import BadInputError
from featureline.specs import ViewSpec

PREFIX = "dq."
POLICIES = ("count", "dead_letter")
_FIELD_RULES = ("min", "max", "allowed", "not_null", "max_null_rate")
_VIEW_RULES = ("monotonic_timestamps", "policy")


@dataclass(frozen=True)
class Rule:
    """One expectation: `kind` on `field` of `view` (field "" for a view-level rule)."""

    view: str
    field: str
    kind: str  # one of _FIELD_RULES, or "monotonic_timestamps"
    number: float = 0.0  # min, max, max_null_rate
    allowed: tuple[str, ...] = ()

    @property
    def per_row(self) -> bool:
        return self.kind != "max_null_rate"

    def describe(self) -> str:
        if self.kind in ("min", "max"):
            return f"{self.kind} {self.number:g}"
        if self.kind == "allowed":
            return f"allowed {','.join(self.allowed)}"
        if self.kind == "max_null_rate":
            return f"max_null_rate {self.number:g}"
        return self.kind


@dataclass(frozen=True)
class Violation:
    rule: Rule
    rows: np.ndarray  # indices into the checked table ([] for a table-level rule)
    message: str  # for a table-level rule; per-row reasons come from reason()

    def reason(self, table: pa.Table, row: int) -> str:
        value = table[self.rule.field][row].as_py() if self.rule.field else None
        where = f"view {self.rule.view!r}"
        if self.rule.field:
            where += f", field {self.rule.field!r} = {value!r:.60}"
        return f"expectation failed: {where} breaks {self.rule.describe()}"


@dataclass(frozen=True)
class ViewExpectations:
    view: str
    policy: str
    rules: tuple[Rule, ...]
    keys: tuple[str, ...]  # join keys (entity identity for monotonic timestamps)
    timestamp_field: str


def _true(text: str, where: str) -> bool:
    if text.strip().lower() not in ("true", "false"):
        raise BadInputError(f"{where}: expected true or false, not {text!r}")
    return text.strip().lower() == "true"


def _number(text: str, where: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise BadInputError(f"{where}: expected a number, not {text!r}") from None


# Allowed values of a numeric field must read as its type: they are cast to the
# column's Arrow type at every check, where "FR" on an int64 field would fail each batch.
_PARSE = {"int32": int, "int64": int, "float32": float, "float64": float}


def _allowed(text: str, dtype: str, where: str) -> tuple[str, ...]:
    values = tuple(v.strip() for v in text.split(","))
    parse = _PARSE.get(dtype)
    if parse is not None:
        for v in values:
            try:
                parse(v)
            except ValueError:
                raise BadInputError(f"{where}: {v!r} is not a value of this {dtype} field") from None
    return values


def _field_rules(view: str, name: str, dtype: str, tags: dict[str, str]) -> list[Rule]:
    rules = []
    for key, text in sorted(tags.items()):
        if not key.startswith(PREFIX):
            continue
        kind, where = key[len(PREFIX) :], f"feature view {view!r}, field {name!r}, tag {key}"
        if kind not in _FIELD_RULES:
            raise BadInputError(f"{where}: unknown expectation (known: {', '.join(_FIELD_RULES)})")
        if kind == "allowed":
            rules.append(Rule(view, name, kind, allowed=_allowed(text, dtype, where)))
        elif kind == "not_null":
            if _true(text, where):
                rules.append(Rule(view, name, kind))
        else:
            number = _number(text, where)
            if kind == "max_null_rate" and not 0 <= number <= 1:
                raise BadInputError(f"{where}: a rate between 0 and 1, not {text!r}")
            rules.append(Rule(view, name, kind, number))
    return rules


def expectations_of(view: ViewSpec) -> ViewExpectations:
    """The view's expectations (no rules: nothing to check)."""
    rules: list[Rule] = []
    dtypes = {f.name: f.dtype for f in (*view.join_keys, *view.features, *view.input_fields)}
    for name, tags in sorted(view.field_tags.items()):
        rules += _field_rules(view.name, name, dtypes.get(name, ""), tags)
    policy = "count"
    for key, text in sorted(view.tags.items()):
        if not key.startswith(PREFIX):
            continue
        kind, where = key[len(PREFIX) :], f"feature view {view.name!r}, tag {key}"
        if kind not in _VIEW_RULES:
            raise BadInputError(f"{where}: unknown expectation (known on a view: {', '.join(_VIEW_RULES)})")
        if kind == "policy":
            if text not in POLICIES:
                raise BadInputError(f"{where}: one of {', '.join(POLICIES)}, not {text!r}")
            policy = text
        elif _true(text, where):
            rules.append(Rule(view.name, "", "monotonic_timestamps"))
    return ViewExpectations(view.name, policy, tuple(rules), view.join_key_names, view.timestamp_field)


def _row_mask(rule: Rule, column: pa.ChunkedArray | pa.Array) -> pa.Array:
    """True where a row breaks a per-row field rule (nulls break only not_null)."""
    if rule.kind == "not_null":
        return pc.is_null(column)
    if rule.kind == "allowed":
        allowed = pa.array(rule.allowed).cast(column.type) if column.type != pa.string() else rule.allowed
        # is_in says False for a null: a null breaks not_null only, so mask it out.
        broken = pc.and_(pc.invert(pc.is_in(column, value_set=pa.array(allowed))), pc.is_valid(column))
    elif rule.kind == "min":
        broken = pc.less(column, rule.number)
    else:
        broken = pc.greater(column, rule.number)
    return pc.fill_null(broken, False)


def _entity_ids(table: pa.Table, keys: tuple[str, ...]) -> np.ndarray:
    ids = np.zeros(table.num_rows, dtype=np.int64)
    for key in keys:
        encoded = pc.dictionary_encode(table[key]).combine_chunks()
        codes = pc.fill_null(encoded.indices, -1).to_numpy(zero_copy_only=False).astype(np.int64)
        ids = ids * (len(encoded.dictionary) + 1) + codes + 1
    return ids


def _backwards(table: pa.Table, exp: ViewExpectations) -> np.ndarray:
    """Rows whose event time is earlier than an earlier row's of the same entity."""
    ts = table[exp.timestamp_field].cast(pa.int64()).to_numpy(zero_copy_only=False)
    ids = _entity_ids(table, exp.keys)
    n = len(ids)
    order = np.lexsort((np.arange(n), ids))  # by entity, then read order
    ids_sorted = ids[order]
    starts = np.r_[True, ids_sorted[1:] != ids_sorted[:-1]]
    # A running max per entity in one pass: times as ranks (< n), offset by n per entity,
    # so a later entity's values are above every earlier one's (int64 up to ~3e9 rows).
    ranks = np.unique(ts[order], return_inverse=True)[1].astype(np.int64)
    shifted = ranks + (np.cumsum(starts) - 1) * n
    running = np.maximum.accumulate(shifted)
    broken = np.r_[False, shifted[1:] < running[:-1]] & ~starts
    return np.sort(order[broken])


def check(table: pa.Table, exp: ViewExpectations, *, table_rules: bool = True) -> list[Violation]:
    """What `table` breaks of `exp`; `table_rules=False` skips max_null_rate (streaming)."""
    found: list[Violation] = []
    if table.num_rows == 0:
        return found
    for rule in exp.rules:
        if rule.kind == "monotonic_timestamps":
            rows = _backwards(table, exp)
        elif rule.kind == "max_null_rate":
            if not table_rules:
                continue
            rate = table[rule.field].null_count / table.num_rows
            if rate > rule.number:
                message = (f"view {rule.view!r}, field {rule.field!r}: {rate:.2%} nulls, "
                           f"more than max_null_rate {rule.number:g}")  # fmt: skip
                found.append(Violation(rule, np.empty(0, dtype=np.int64), message))
            continue
        else:
            mask = _row_mask(rule, table[rule.field])
            rows = np.flatnonzero(mask.to_numpy(zero_copy_only=False))
        if len(rows):
            found.append(Violation(rule, rows, f"{len(rows)} row(s) break {rule.describe()}"))
    return found


ROWS = "rows"


def tally(table: pa.Table, exp: ViewExpectations) -> dict[str, int]:
    """Additive counts of `table` against `exp` (sum them over partitions, then
    `findings`): rows, nulls per field with a max_null_rate, breaking rows per rule."""
    out = {ROWS: table.num_rows}
    for rule in exp.rules:
        if rule.kind == "max_null_rate":
            out[f"null:{rule.field}"] = table[rule.field].null_count
    for found in check(table, exp, table_rules=False):
        out[f"{found.rule.field}|{found.rule.kind}"] = len(found.rows)
    return out


def findings(exp: ViewExpectations, counts: dict[str, int]) -> list[str]:
    """One line per broken rule from summed `tally` counts (the batch jobs' report)."""
    lines = []
    rows = counts.get(ROWS, 0)
    for rule in exp.rules:
        where = rule.field or "event time"
        if rule.kind == "max_null_rate":
            nulls = counts.get(f"null:{rule.field}", 0)
            if rows and nulls / rows > rule.number:
                lines.append(f"{where}: {nulls / rows:.2%} nulls, more than max_null_rate {rule.number:g}")
        elif n := counts.get(f"{rule.field}|{rule.kind}", 0):
            lines.append(f"{where}: {n} row(s) break {rule.describe()}")
    return lines
