"""On-demand feature views, executed from the udf source in the specs: at request time by
serving, per entity row by historical retrieval (one implementation, so both agree).

Neither imports feast or the repo's modules (~5 s, and definitions may have
side effects): the udf's source text is parsed, its decorators and annotations are
stripped with `ast` (they name Feast objects and typing names that do not exist here),
and the function is executed in a small namespace (builtins, math, datetime, numpy;
pandas for pandas-mode views). A name the udf needs beyond that is reported when the
runner is built (server start), not on the first request.
"""

from __future__ import annotations

import ast
import builtins
import datetime
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from featureline.errors import BadInputError, FeaturelineError
from featureline.specs import OnDemandViewSpec


class OnDemandError(FeaturelineError):
    """A udf failed on a request's inputs (a problem of the definitions, not the caller)."""


def _namespace(mode: str) -> dict[str, Any]:
    import numpy

    namespace: dict[str, Any] = {
        "__builtins__": builtins,
        "math": math,
        "datetime": datetime,
        "np": numpy,
        "numpy": numpy,
    }
    if mode == "pandas":
        import pandas

        namespace["pd"] = pandas
        namespace["pandas"] = pandas
    return namespace


def _strip(func: ast.FunctionDef) -> bool:
    """Remove decorators and annotations in place; returns the decorator's singleton flag."""
    singleton = False
    for deco in func.decorator_list:
        if isinstance(deco, ast.Call):
            for kw in deco.keywords:
                if kw.arg == "singleton" and isinstance(kw.value, ast.Constant):
                    singleton = bool(kw.value.value)
    func.decorator_list = []
    func.returns = None
    all_args = func.args.posonlyargs + func.args.args + func.args.kwonlyargs
    for arg in [*all_args, func.args.vararg, func.args.kwarg]:
        if arg is not None:
            arg.annotation = None
    return singleton


def _free_names(func: ast.FunctionDef, namespace: dict[str, Any]) -> list[str]:
    assigned = {a.arg for a in ast.walk(func.args) if isinstance(a, ast.arg)}
    loaded: set[str] = set()
    for node in ast.walk(func):
        if isinstance(node, ast.Name):
            (loaded if isinstance(node.ctx, ast.Load) else assigned).add(node.id)
        elif isinstance(node, ast.FunctionDef | ast.Lambda | ast.ClassDef) and node is not func:
            if not isinstance(node, ast.Lambda):
                assigned.add(node.name)
        elif isinstance(node, ast.alias):
            assigned.add((node.asname or node.name).split(".")[0])
        elif isinstance(node, ast.ExceptHandler) and node.name:
            assigned.add(node.name)
    known = set(namespace) | set(dir(builtins)) | assigned
    return sorted(loaded - known)


def compile_udf(spec: OnDemandViewSpec) -> tuple[Callable[..., Any], bool]:
    """The udf as a callable, and whether Feast calls it once per row (singleton)."""
    return compile_source(f"on-demand view {spec.name!r}", spec.udf_source, spec.udf_name, spec.mode)


def compile_source(where: str, source: str, name: str, mode: str) -> tuple[Callable[..., Any], bool]:
    """Function `name` (else the first one) of a udf's source text, decorators and
    annotations stripped, run in the small namespace of `mode`; and its singleton flag.
    Shared with the stream job's StreamFeatureView udfs, so both read udfs alike."""
    if not source.strip():
        raise BadInputError(f"{where} has no udf source in the specs; it cannot be computed")
    try:
        tree = ast.parse(source)
    except SyntaxError as exc:
        raise BadInputError(f"{where}: its udf source does not parse: {exc}") from None
    funcs = [n for n in tree.body if isinstance(n, ast.FunctionDef)]
    chosen = [f for f in funcs if f.name == name] or funcs[:1]
    if not chosen:
        raise BadInputError(f"{where}: no function definition found in its udf source")
    func = chosen[0]
    singleton = _strip(func)
    namespace = _namespace(mode)
    missing = _free_names(func, namespace)
    if missing:
        raise BadInputError(
            f"{where}: its udf uses {', '.join(missing)}, which Featureline does not provide "
            "(available: builtins, math, datetime, np/numpy, pd/pandas in pandas mode)"
        )
    module = ast.Module(body=[func], type_ignores=[])
    exec(compile(module, f"<udf {where}>", "exec"), namespace)  # noqa: S102
    return namespace[func.name], singleton


@dataclass(frozen=True)
class OnDemandRunner:
    """Runs one on-demand view over a batch of rows."""

    spec: OnDemandViewSpec
    udf: Callable[..., Any]
    singleton: bool

    @classmethod
    def build(cls, spec: OnDemandViewSpec) -> OnDemandRunner:
        if spec.mode not in ("python", "pandas"):
            raise BadInputError(
                f"on-demand view {spec.name!r} has mode {spec.mode!r}; "
                "Featureline runs python and pandas modes"
            )
        udf, singleton = compile_udf(spec)
        return cls(spec, udf, singleton)

    def run(self, inputs: dict[str, list[Any]], n_rows: int) -> dict[str, list[Any]]:
        """inputs: column -> values (n_rows each); returns feature -> values."""
        try:
            if self.spec.mode == "pandas":
                out = self._run_pandas(inputs)
            elif self.singleton:
                out = self._run_singleton(inputs, n_rows)
            else:
                out = self.udf(inputs)
        except Exception as exc:  # a user's udf can raise anything
            raise OnDemandError(
                f"on-demand view {self.spec.name!r} failed: {type(exc).__name__}: {exc}"
            ) from None
        return self._check(out, n_rows)

    def _run_singleton(self, inputs: dict[str, list[Any]], n_rows: int) -> dict[str, list[Any]]:
        rows = [self.udf({k: v[i] for k, v in inputs.items()}) for i in range(n_rows)]
        return {f: [row.get(f) for row in rows] for f in self.spec.feature_names}

    def _run_pandas(self, inputs: dict[str, list[Any]]) -> dict[str, list[Any]]:
        import pandas

        frame = self.udf(pandas.DataFrame(inputs))
        return {c: frame[c].astype(object).where(frame[c].notna(), None).tolist() for c in frame}

    def _check(self, out: Any, n_rows: int) -> dict[str, list[Any]]:
        if not isinstance(out, dict):
            raise OnDemandError(
                f"on-demand view {self.spec.name!r} returned {type(out).__name__}, not a dict"
            )
        result: dict[str, list[Any]] = {}
        for feature in self.spec.features:
            values = out.get(feature.name)
            if values is None or len(values) != n_rows:
                got = "nothing" if values is None else f"{len(values)} values"
                raise OnDemandError(
                    f"on-demand view {self.spec.name!r} returned {got} for feature "
                    f"{feature.name!r}; expected {n_rows}"
                )
            result[feature.name] = [_coerce(v, feature.dtype) for v in values]
        return result


def _coerce(value: Any, dtype: str) -> Any:
    """A udf's output value as the feature's declared type (numpy scalars included)."""
    if value is None:
        return None
    if isinstance(value, float) and math.isnan(value) and dtype not in ("float32", "float64"):
        return None
    if dtype in ("float32", "float64"):
        return float(value)
    if dtype in ("int32", "int64", "unix_timestamp"):
        return int(value)
    if dtype == "bool":
        return bool(value)
    if dtype == "string":
        return str(value)
    if hasattr(value, "tolist"):  # a numpy array (an Array feature): plain Python
        return value.tolist()
    return value
