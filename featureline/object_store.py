"""Where a FileSource's Parquet lives: a local path, or an object-store URI (s3://,
gs://, hdfs://, file://) read through pyarrow's filesystems, as Feast's file offline
store reads it.

S3 takes the endpoint from the source's `s3_endpoint_override` (Feast's FileSource
option), else from AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL, and credentials and region
from the usual AWS variables and files (pyarrow's default chain). An unreachable
store or a denied read is a ServiceUnavailableError naming the URI, never a traceback.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import pyarrow.dataset as ds
import pyarrow.fs as pafs

from featureline.errors import ServiceUnavailableError
from featureline.specs import FileSourceSpec

_S3_SCHEMES = ("s3", "s3a")


def is_uri(path: str) -> bool:
    return "://" in path


def _s3(endpoint_override: str) -> pafs.S3FileSystem:
    endpoint = (
        endpoint_override or os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL", "")
    )
    kwargs: dict[str, str] = {}
    if endpoint:
        parts = urlsplit(endpoint if "://" in endpoint else f"https://{endpoint}")
        kwargs["endpoint_override"] = parts.netloc
        kwargs["scheme"] = parts.scheme
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    if region:
        kwargs["region"] = region
    return pafs.S3FileSystem(**kwargs)


@dataclass(frozen=True)
class Location:
    """A source's path as the repo names it (absolute, or a URI) and its S3 endpoint."""

    path: str
    endpoint_override: str = ""

    @classmethod
    def of(cls, source: FileSourceSpec) -> Location:
        return cls(source.path, source.s3_endpoint_override)

    @property
    def is_uri(self) -> bool:
        return is_uri(self.path)

    def __str__(self) -> str:
        return self.path

    def filesystem(self) -> tuple[pafs.FileSystem, str]:
        """The pyarrow filesystem and the path inside it."""
        if not self.is_uri:
            return pafs.LocalFileSystem(), self.path
        scheme, _, rest = self.path.partition("://")
        try:
            if scheme.lower() in _S3_SCHEMES:
                return _s3(self.endpoint_override), rest
            fs, inner = pafs.FileSystem.from_uri(self.path)
            return fs, inner
        except (OSError, ValueError) as exc:
            raise ServiceUnavailableError(f"cannot open {self.path}: {exc}") from None

    def _info(self) -> pafs.FileInfo:
        fs, inner = self.filesystem()
        try:
            return fs.get_file_info(inner)
        except OSError as exc:
            raise ServiceUnavailableError(f"cannot read {self.path}: {exc}") from None

    def exists(self) -> bool:
        if not self.is_uri:
            return Path(self.path).exists()
        return self._info().type != pafs.FileType.NotFound

    def is_dir(self) -> bool:
        if not self.is_uri:
            return Path(self.path).is_dir()
        return self._info().type == pafs.FileType.Directory

    def dataset(self) -> ds.Dataset:
        """The Hive-partitioned Parquet dataset here (a `date` column is derived)."""
        if not self.is_uri:
            return ds.dataset(self.path, format="parquet", partitioning="hive", exclude_invalid_files=True)
        fs, inner = self.filesystem()
        try:
            return ds.dataset(
                inner, filesystem=fs, format="parquet", partitioning="hive", exclude_invalid_files=True
            )
        except OSError as exc:
            raise ServiceUnavailableError(f"cannot read {self.path}: {exc}") from None
