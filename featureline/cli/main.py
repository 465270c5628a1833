"""`featureline`: one command-line tool in front of every part.

The CLI is a thin layer: parse, call one function, print. `--help` must answer in
well under a second, so this module imports only the standard library; each
subcommand's module is imported only when that subcommand runs (feast alone costs
~5 s to import, pyspark and apache_beam more).

A command module provides `configure(parser)` (argparse only, cheap) and
`run(args, settings) -> int`; heavy imports go inside `run`. A command whose libraries
are an extra that is not installed (pyproject.toml) stops with one line that names it.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from types import ModuleType
from typing import Any

from featureline.cli.extras import missing_for_command, missing_from_error
from featureline.command import add_repo_option, run_command

# name -> (module, one-line help). Order is the order shown by --help.
COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("featureline.cli.demo", "run the whole platform once on the embedded dev stack"),
    "dev": ("featureline.cli.devstack.cli", "start, stop or inspect the embedded Kafka/Redis/registry"),
    "apply": ("featureline.cli.commands.apply", "register the Feast repo's definitions (feast apply)"),
    "specs": ("featureline.cli.commands.specs", "print the typed specs Featureline reads from a repo"),
    "config": (
        "featureline.cli.commands.config",
        "print the resolved configuration, with each value's origin",
    ),
    "env": ("featureline.cli.commands.env", "print FEATURELINE_* exports for the plain `feast` CLI"),
    "generate": ("featureline.cli.generator.cli", "generate realistic card transactions"),
    "stream": ("featureline.streaming.cli", "run the Beam streaming job: Kafka -> Redis + Parquet"),
    "backfill": ("featureline.batch.backfill_cli", "recompute features from offline raw events with Spark"),
    "materialize": ("featureline.batch.materialize_cli", "load offline features into the online store"),
    "push": (
        "featureline.cli.commands.push",
        "push rows from a file to a PushSource's views (as Feast's push)",
    ),
    "historical": ("featureline.batch.historical_cli", "build a point-in-time-correct training set"),
    "consistency": ("featureline.cli.commands.consistency", "measure online/offline agreement per feature"),
    "compact": (
        "featureline.batch.compact_cli",
        "merge each closed date partition of the offline store into one file",
    ),
    "stats": (
        "featureline.batch.stats_cli",
        "per-feature, per-day statistics of the offline store, a training set or logged vectors",
    ),
    "drift": ("featureline.batch.drift_cli", "compare recent feature values with a model's training set"),
    "serve": ("featureline.serving_api.cli", "serve features over gRPC and REST"),
    "train": ("featureline.cli.commands.train", "train the fraud model from a feature service"),
    "worker": ("featureline.serving_api.workers.worker_cli", "score a Kafka stream of transactions"),
    "bench": ("featureline.cli.commands.bench", "benchmarks, each run side by side with Feast"),
    "ui": ("featureline.cli.commands.ui", "a read-only web UI of the repo, its operations and models"),
}


def _load(name: str) -> ModuleType:
    module_name, _ = COMMANDS[name]
    return importlib.import_module(module_name)


class _Version(argparse.Action):
    """--version, read only when asked: importlib.metadata scans every installed package."""

    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, help="print the version and exit")

    def __call__(self, parser: argparse.ArgumentParser, *args: Any) -> None:
        print(f"featureline {version()}")
        parser.exit()


def version() -> str:
    """The installed distribution's version; the package's own in a bare checkout."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as dist_version

    try:
        return dist_version("featureline")
    except PackageNotFoundError:
        from featureline import __version__

        return __version__


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="featureline",
        description=(
            "Featureline: Feast feature definitions computed by a Beam stream, Spark batch "
            "jobs and a gRPC/REST serving API. Every command takes --repo DIR."
        ),
        epilog="Run `featureline COMMAND --help` for a command's options.",
    )
    parser.add_argument("--version", action=_Version)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_, help_text) in COMMANDS.items():
        child = sub.add_parser(name, help=help_text, description=help_text)
        if name == command:
            add_repo_option(child)
            _load(name).configure(child)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    command = next((a for a in args_list if not a.startswith("-")), None)
    if command not in COMMANDS:
        command = None
    message = None
    if command is not None and not {"-h", "--help"} & set(args_list):
        message = missing_for_command(command)
    if message is None:
        try:
            return _main(command, args_list)
        except ModuleNotFoundError as exc:
            message = missing_from_error(command, exc)
            if message is None:
                raise
    print(message, file=sys.stderr)
    return 2


def _main(command: str | None, args_list: list[str]) -> int:
    parser = build_parser(command)
    args = parser.parse_args(args_list)
    if args.command is None:
        parser.print_help()
        return 0
    return run_command(_load(args.command), args)


if __name__ == "__main__":
    sys.exit(main())
