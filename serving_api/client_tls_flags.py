"""The client-side TLS flags of the commands that call a running `featureline serve`
(`featureline worker`, `featureline push --url`): the same names and environment
variables everywhere. argparse only at import time."""

from __future__ import annotations

import argparse
import os

from featureline.serving_api.tls import ClientTls

# The PEM files: flag, environment variable, what it is.
_FILE_FLAGS = (
    ("--serving-ca", "FEATURELINE_SERVING_TLS_CA", "PEM CA that signed the serving API's certificate"),
    (
        "--serving-cert",
        "FEATURELINE_SERVING_TLS_CERT",
        "PEM client certificate, for a server with --tls-client-ca",
    ),
    ("--serving-key", "FEATURELINE_SERVING_TLS_KEY", "PEM key of --serving-cert"),
)


def add_client_tls_flags(parser: argparse.ArgumentParser) -> None:
    """How a client command reaches a TLS `featureline serve` (serving_api.tls.ClientTls)."""
    env = os.environ.get
    parser.add_argument(
        "--serving-tls",
        action="store_true",
        default=env("FEATURELINE_SERVING_TLS", "").lower() in ("1", "true", "yes"),
        help="reach the serving API over TLS, trusting the system's roots (default "
        "$FEATURELINE_SERVING_TLS; implied by --serving-ca/--serving-cert)",
    )
    for flag, variable, text in _FILE_FLAGS:
        parser.add_argument(
            flag, default=env(variable, ""), metavar="FILE", help=f"{text} (default ${variable})"
        )


def client_tls(args: argparse.Namespace) -> ClientTls | None:
    """The command's TLS options; None: plaintext."""
    if not (args.serving_tls or args.serving_ca or args.serving_cert or args.serving_key):
        return None
    tls = ClientTls(ca=args.serving_ca, cert=args.serving_cert, key=args.serving_key)
    if tls.ca or tls.cert:
        tls.ssl_context()  # a missing file or a key that is not the certificate's: one line now
    return tls
