"""Featureline's serving API: gRPC + REST servers (`featureline serve`) and a client SDK.

    from featureline.serving_api import FeatureClient
    with FeatureClient("127.0.0.1:6566") as client:
        tensor = client.get_tensor("fraud_model_v1", {"user_id": ids, ...})

The client names below are imported on first use: `featureline serve --help` and the
bench table import submodules of this package for their argparse options only, and
must not pay for grpc and numpy.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from featureline import _compiled

# Before any of this package's compiled modules (featureline._compiled.MODULES) can be
# imported: a build older than its sources is skipped, and the sources run instead.
_compiled.install()

if TYPE_CHECKING:
    from featureline.serving_api.client import (
        AsyncFeatureClient,
        FeatureClient,
        FeatureTensor,
        OnlineFeatures,
        ServingTimeoutError,
        TlsHandshakeError,
    )
    from featureline.serving_api.tls import ClientTls

__all__ = [
    "AsyncFeatureClient",
    "ClientTls",
    "FeatureClient",
    "FeatureTensor",
    "OnlineFeatures",
    "ServingTimeoutError",
    "TlsHandshakeError",
]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from featureline.serving_api import client

        return getattr(client, name)  # ClientTls too: client imports it
    raise AttributeError(f"module 'serving_api' has no attribute {name!r}")
