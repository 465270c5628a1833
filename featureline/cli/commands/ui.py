"""`featureline ui`: the read-only web UI (featureline.ui)."""

from __future__ import annotations

import argparse

from featureline.errors import BadInputError
from featureline.serving_api.serve_flags import http_limit_flags, http_limits
from featureline.settings import Settings

# Feast's `feast ui` listens on 8888 too: one port to remember for a repo's UI.
DEFAULT_PORT = 8888


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"HTTP port (default {DEFAULT_PORT})")
    # Loopback by default: the pages show definitions, paths and served values.
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument(
        "--serving-url",
        default=None,
        help="the serving API the lookups and serving metrics come from "
        "(default http://127.0.0.1:<FEATURELINE_HTTP_PORT>)",
    )
    parser.add_argument(
        "--stream-metrics-url",
        nargs="+",
        default=[],
        metavar="URL",
        help="the stream job's Prometheus URL(s), e.g. http://127.0.0.1:9108/metrics "
        "(featureline stream --metrics-port); several for several stream processes",
    )
    # The same HTTP/1.1 server and limits as `featureline serve`'s REST port.
    http_limit_flags(parser)


def _check_url(url: str, flag: str) -> None:
    if not url.startswith(("http://", "https://")):
        raise BadInputError(f"{flag} {url!r}: give an http:// or https:// URL")


def run(args: argparse.Namespace, settings: Settings) -> int:
    if not 0 < args.port < 65536:
        raise BadInputError(f"--port must be 1..65535, got {args.port}")
    if args.serving_url:
        _check_url(args.serving_url, "--serving-url")
    for url in args.stream_metrics_url:
        _check_url(url, "--stream-metrics-url")
    limits = http_limits(args)
    # FastAPI, Jinja2 and the repo's specs: not for `--help`.
    from featureline.serving_api.limits import Limits
    from featureline.ui.server import serve
    from featureline.ui.state import default_config

    config = default_config(settings, args.serving_url, args.stream_metrics_url)
    serve(settings, config, args.host, args.port, limits=Limits(**limits))
    return 0
