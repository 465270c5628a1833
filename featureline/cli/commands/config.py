"""`featureline config`: the resolved configuration and where each value came from.

feature_store.yaml is the source; a FEATURELINE_* variable or a flag replaces a value
only when it is set (featureline.config). Passwords are masked. Reads the yaml only:
no feast import, no connection.
"""

from __future__ import annotations

import argparse

from featureline.settings import Settings


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print {name: {value, origin}} as JSON")


def run(args: argparse.Namespace, settings: Settings) -> int:
    from featureline.config import SUPPORTED_ONLINE_STORES, resolve
    from featureline.errors import FeaturelineError

    cfg = resolve(settings)
    if args.json:
        print(cfg.to_json())
        return 0
    rows = cfg.rows()
    width = max(len(name) for name, _, _ in rows)
    value_width = min(60, max(len(value) for _, value, _ in rows))
    for name, value, origin in rows:
        print(f"{name:<{width}}  {value or '-':<{value_width}}  {origin}")
    if cfg.online_store_type not in SUPPORTED_ONLINE_STORES:
        print(
            f"note: online_store type {cfg.online_store_type!r} is not supported "
            f"(supported: {', '.join(SUPPORTED_ONLINE_STORES)}); apply, historical and specs work, "
            "serve, stream, materialize and consistency do not"
        )
    else:
        try:
            cfg.online()
        except FeaturelineError as exc:  # the refusal (cluster/sentinel) is the note
            print(f"note: {exc}")
    return 0
