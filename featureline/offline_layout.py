"""The offline layout of computed features, shared by the stream job and the batch
backfill (parts meet only through the core): the rows each writes for a view, and the
names and schemas of event and tile tables.

    <offline>/<view>/date=YYYY-MM-DD/         a plain view's feature rows (`feature_schema`)
    <offline>/_tiles/<view>/date=YYYY-MM-DD/  an aggregating view's tiles (`tile_schema`):
                                             join keys, tile size and start (s), Kafka
                                             partition, the encoded tile state

Tile states are computed by featureline.offline_tiles; their encoding is
featureline.online.tiles' (so a tile rebuilt offline is byte-for-byte the one the
stream job wrote online).
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa

from featureline.errors import BadInputError
from featureline.offline import ARROW_TYPES, KAFKA_OFFSET, KAFKA_PARTITION
from featureline.specs import ViewSpec

TILES_DIR = "_tiles"

# Columns every batch computation adds to an event table (int64 microseconds, UTC).
TS_US = "_ts_us"
CREATED_US = "_created_us"

# Columns of a tile table.
TILE_START_S = "tile_start_s"
TILE_SIZE_S = "tile_s"
STATE = "state"
PARTITION = "kafka_partition"


@dataclass(frozen=True)
class EventColumns:
    """Where a view's events keep their keys, times and Kafka identity."""

    join_keys: tuple[str, ...]
    timestamp: str
    created: str  # "" when the source has no created column
    values: tuple[str, ...]  # the fields the view reads (features or aggregation inputs)
    # Feast's field_mapping, file column -> our name, for the join keys and values.
    renames: tuple[tuple[str, str], ...] = ()

    def file_column(self, name: str) -> str:
        """The source file's column holding our column `name`."""
        for file_name, ours in self.renames:
            if ours == name:
                return file_name
        return name

    @classmethod
    def of(cls, view: ViewSpec) -> EventColumns:
        source = view.batch_source
        if source is None:
            raise BadInputError(f"view {view.name!r} has no batch (file) source to read")
        inputs = view.input_fields if view.is_aggregating else view.features
        return cls(
            join_keys=view.join_key_names,
            timestamp=view.timestamp_field or source.timestamp_field,
            created=source.created_timestamp_column or view.created_timestamp_column,
            values=tuple(f.name for f in inputs),
            renames=tuple(sorted(source.field_mapping.items())),
        )


def arrow_type(dtype: str) -> pa.DataType:
    """A feature dtype's Arrow type in the offline files."""
    try:
        return ARROW_TYPES[dtype]
    except KeyError:
        raise BadInputError(f"feature type {dtype!r} is not supported by batch jobs") from None


def feature_schema(view: ViewSpec, events_schema: pa.Schema) -> pa.Schema:
    """Offline feature rows: join keys, event time, created, Kafka identity, features."""
    cols = EventColumns.of(view)
    fields = [pa.field(k.name, arrow_type(k.dtype)) for k in view.join_keys]
    fields.append(pa.field(cols.timestamp, events_schema.field(cols.timestamp).type))
    for name in (cols.created, KAFKA_PARTITION, KAFKA_OFFSET):
        if name and name in events_schema.names:
            fields.append(pa.field(name, events_schema.field(name).type))
    fields += [pa.field(f.name, arrow_type(f.dtype)) for f in view.features]
    return pa.schema(fields)


def tile_schema(view: ViewSpec) -> pa.Schema:
    """Join keys, tile size and start (s), Kafka partition, encoded state (JSON bytes)."""
    fields = [pa.field(k.name, arrow_type(k.dtype)) for k in view.join_keys]
    fields += [
        pa.field(TILE_SIZE_S, pa.int64()),
        pa.field(TILE_START_S, pa.int64()),
        pa.field(PARTITION, pa.int64()),
        pa.field(STATE, pa.binary()),
    ]
    return pa.schema(fields)
