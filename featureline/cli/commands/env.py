"""`featureline env`: export lines so the plain `feast` CLI sees the same settings."""

from __future__ import annotations

import argparse
import shlex

from featureline.settings import Settings


def configure(parser: argparse.ArgumentParser) -> None:
    parser.epilog = 'Use: eval "$(featureline env)"; then `feast -c feature_repo plan` works.'


def run(args: argparse.Namespace, settings: Settings) -> int:
    for key, value in settings.env_vars().items():
        print(f"export {key}={shlex.quote(value)}")
    return 0
