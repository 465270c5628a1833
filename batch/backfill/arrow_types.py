"""Feast dtypes (as featureline.specs names them) -> Arrow and Spark SQL types."""

from __future__ import annotations

import pyarrow as pa

from featureline.dtypes import DTYPES
from featureline.errors import BadInputError
from featureline.offline import ARROW_TYPES

_SPARK_DDL = {name: d.spark for name, d in DTYPES.items()}


def spark_ddl(schema: pa.Schema) -> str:
    """An Arrow schema of the types above as a Spark DDL string ("a bigint, b string")."""
    reverse = {str(v): _SPARK_DDL[k] for k, v in ARROW_TYPES.items()}
    parts = []
    for f in schema:
        if pa.types.is_timestamp(f.type):
            parts.append(f"`{f.name}` timestamp")
            continue
        ddl = reverse.get(str(f.type))
        if ddl is None:
            raise BadInputError(f"column {f.name!r} of type {f.type} has no Spark type here")
        parts.append(f"`{f.name}` {ddl}")
    return ", ".join(parts)
