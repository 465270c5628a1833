"""`featureline bench NAME`: run a benchmark from the source checkout's `benchmarks/`.

The benchmarks are not in the installed package (pyproject packages only
`featureline*`): this module finds the checkout root (the folder above the `featureline`
package, or the current directory), imports `benchmarks.NAME` from it and calls its
`configure(parser)` (argparse only: `--help` stays fast) and `run(args, settings)`.
Installed from a wheel there is no checkout: a one-line error says how to get one.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import featureline
from featureline.errors import BadInputError
from featureline.settings import Settings

# name -> one-line help; the code is the checkout's `benchmarks.<name>`.
BENCHMARKS: dict[str, str] = {
    "cluster_routing": "Redis Cluster reader: slot routing cost, fetch vs one Redis",
    "historical": "point-in-time retrieval vs Feast get_historical_features",
    "materialize": "offline -> Redis vs feast materialize",
    "serve": "REST/gRPC serving vs feast serve",
    "serve_path": "the serving read path's CPU per batch-1 request, in process",
    "stream": "end-to-end stream throughput and freshness vs Feast push",
    "worker": "scored vectors/s of the inference worker",
}

NO_CHECKOUT = (
    "the benchmarks ship with the source checkout, not the installed package: "
    "git clone the Featureline repository, run `make install` in it, then "
    "`featureline bench NAME` there"
)


def checkout_root() -> Path | None:
    """The source checkout holding `benchmarks/`, or None (an installed wheel). A root
    must also hold pyproject.toml: site-packages may have some other `benchmarks`."""
    package_parent = Path(featureline.__file__).resolve().parent.parent
    for root in (package_parent, Path.cwd()):
        if (root / "benchmarks" / "__init__.py").is_file() and (root / "pyproject.toml").is_file():
            return root
    return None


def load(name: str, root: Path) -> ModuleType:
    """`benchmarks.<name>` from `root`, ahead of any other `benchmarks` on sys.path."""
    if sys.path[:1] != [str(root)]:
        sys.path.insert(0, str(root))
    module = importlib.import_module(f"benchmarks.{name}")
    where = Path(module.__file__ or "").resolve()
    if not where.is_relative_to(root.resolve()):
        raise BadInputError(f"`benchmarks` is imported from {where}, not from the checkout {root}")
    return module


def configure(parser: argparse.ArgumentParser) -> None:
    root = checkout_root()
    sub = parser.add_subparsers(dest="bench", metavar="BENCHMARK")
    for name, help_text in BENCHMARKS.items():
        if root is not None:
            load(name, root).configure(sub.add_parser(name, help=help_text, description=help_text))
            continue
        # No checkout: whatever follows the name (its options, --help) is taken as plain
        # words (no prefix character can start an argument), so `run` answers every
        # form with the one-line NO_CHECKOUT instead of argparse's "unrecognized".
        child = sub.add_parser(name, help=help_text, add_help=False, prefix_chars="\0")
        child.add_argument("ignored", nargs="*", help=argparse.SUPPRESS)


def run(args: Any, settings: Settings) -> int:
    if getattr(args, "bench", None) is None:
        raise BadInputError(f"name a benchmark: {', '.join(BENCHMARKS)}")
    root = checkout_root()
    if root is None:
        raise BadInputError(NO_CHECKOUT)
    return int(load(args.bench, root).run(args, settings) or 0)
