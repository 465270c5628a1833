"""How one command runs: the `--repo` option, settings from the environment, and a
FeaturelineError as one `error:` line with its exit code instead of a traceback.

The `featureline` CLI (featureline.cli.main) runs every command through `run_command`;
the spark-submit entry points (batch/backfill/spark_main.py, batch/historical/submit.py)
run their part's own command module with `main_of`, without the CLI package above the
parts. A command module provides `configure(parser)` (argparse only) and
`run(args, settings) -> int`.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any, Protocol

from featureline.errors import FeaturelineError
from featureline.settings import Settings


class CommandModule(Protocol):
    def configure(self, parser: argparse.ArgumentParser) -> None: ...

    def run(self, args: Any, settings: Settings) -> int: ...


def add_repo_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--repo",
        default=None,
        help="Feast repo directory (default: $FEATURELINE_REPO or feature_repo/)",
    )


def run_command(command: CommandModule, args: argparse.Namespace) -> int:
    """`command.run` with the settings of the environment and `--repo`; the exit code."""
    try:
        settings = Settings.from_env().with_repo(args.repo)
        return int(command.run(args, settings) or 0)
    except FeaturelineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def main_of(command: CommandModule, prog: str, argv: Sequence[str]) -> int:
    """Parse `argv` with the command's own options (and `--repo`) and run it: the same
    options, messages and exit codes as `featureline <command>`, whose name `prog` is."""
    parser = argparse.ArgumentParser(prog=prog)
    add_repo_option(parser)
    command.configure(parser)
    return run_command(command, parser.parse_args(list(argv)))
