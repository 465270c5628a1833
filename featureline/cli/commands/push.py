"""`featureline push --source NAME --file rows.parquet|csv|json [--to ...] [--url URL]`.

Feast's push from the command line: the file's rows go to every view the PushSource
feeds, online (event-time last-write-wins: an older row changes nothing), offline
(appended to the batch source, atomically) or both. With --url they are sent to a
running `featureline serve` (POST /push; https with --serving-ca, --serving-cert and
--serving-key, as `featureline worker`); without, written here, straight to the
repo's Redis and offline store. A bad file is refused whole: nothing is written.
"""

from __future__ import annotations

import argparse
import os
import sys

from featureline.serving_api.client_tls_flags import add_client_tls_flags, client_tls
from featureline.settings import Settings

PUSH_TO = ("online", "offline", "online_and_offline")


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--source", required=True, metavar="NAME", help="the PushSource's name")
    parser.add_argument("--file", required=True, help="rows to push: .parquet, .csv or .json")
    parser.add_argument("--to", choices=PUSH_TO, default="online", help="where to (default online)")
    parser.add_argument(
        "--url", default="", help="push through featureline serve at this REST URL (default: write here)"
    )
    parser.add_argument(
        "--token", default=os.environ.get("FEATURELINE_TOKEN", ""), help="bearer token for --url"
    )
    add_client_tls_flags(parser)  # for an https --url: the CA, and a client certificate


def run(args: argparse.Namespace, settings: Settings) -> int:
    from featureline.serving_api.push_client import push_rows, read_frame_file

    columns = read_frame_file(args.file)
    rows = len(next(iter(columns.values()), []))
    if args.url:
        push_rows(args.url, args.source, columns, to=args.to, token=args.token or None, tls=client_tls(args))
        print(f"pushed {rows} row(s) to {args.source} ({args.to}) through {args.url}", file=sys.stderr)
        return 0
    from featureline.config import online_store
    from featureline.online_store import open_store
    from featureline.push import push
    from featureline.repo import load_repo

    repo = load_repo(settings)
    cfg = online_store(settings) if args.to != "offline" else None
    client = open_store(cfg) if cfg is not None else None
    try:
        result = push(repo, client, args.source, columns, args.to, key_ttl_s=cfg.key_ttl_s if cfg else 0)
    finally:
        if client is not None:
            client.close()
    print(
        f"pushed {rows} row(s) to {args.source} ({args.to}): views {', '.join(result.views)}, "
        f"{result.online_written} entities written online, "
        f"{len(result.offline_files)} offline file(s) written",
        file=sys.stderr,
    )
    return 0
