"""The generated gRPC code of featureline.serving.v1, or a clear error if it is missing.

The code is generated into serving_api/_gen/ by the build backend (setup.py: in the
wheel, or beside the sources for an editable install) and by `make install`; it is not
committed. Importing this module without it raises a FeaturelineError that says how to
build it instead of a bare ImportError.
"""

from __future__ import annotations

from types import ModuleType

from featureline.errors import FeaturelineError

SERVICE_NAME = "featureline.serving.v1.FeatureServing"
# Feast's own services: GetOnlineFeatures has the same wire format, so it is served
# under their names too (the ServingService of Feast's protos, and the service of
# `feast serve -t grpc`), and a Feast gRPC client only changes its target.
FEAST_SERVICE_NAME = "feast.serving.ServingService"
FEAST_GRPC_SERVER_NAME = "GrpcFeatureServer"


class GeneratedCodeMissingError(FeaturelineError):
    def __init__(self, detail: str) -> None:
        super().__init__(
            "the generated gRPC code of featureline.serving.v1 is missing or stale "
            f"({detail}); reinstall featureline, or in a checkout run `make install` "
            "or `python -m featureline.cli.protos_build`"
        )


def _load() -> tuple[ModuleType, ModuleType]:
    try:
        from featureline.serving_api._gen import serving_pb2, serving_pb2_grpc
    except ImportError as exc:
        raise GeneratedCodeMissingError(str(exc)) from None
    return serving_pb2, serving_pb2_grpc


pb, pb_grpc = _load()
