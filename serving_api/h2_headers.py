"""Request header blocks of one HTTP/2 connection (serving_api.grpc_h2): HEADERS and
CONTINUATION fragments gathered within limits, HPACK-decoded with a cache, and read
into the stream (a call) they open.

Limits are checked as each fragment arrives, before anything is decoded: the block's
bytes (grpc_max_header_bytes) and its CONTINUATION frames (grpc_max_continuations);
over either -> GOAWAY(ENHANCE_YOUR_CALM). The decoded list is bounded by hpack itself
(max_header_list_size: it stops at the first field past the limit, so a block of small
references to one large table entry never inflates beyond it) -> COMPRESSION_ERROR.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, Final

import hpack

from featureline.serving_api import h2_wire as w
from featureline.serving_api.grpc_relay import Relay

# Blocks remembered with their decoded fields: a client's blocks for its few methods
# are ~50-300 bytes; larger ones (a long token, custom metadata) are decoded anew.
_CACHED_BLOCKS: Final = 64
_CACHED_BLOCK_BYTES: Final = 2048


class Stream:
    """One request stream: what its headers said, its body, its response."""

    __slots__ = ("sid", "path", "authorization", "deadline", "body", "send_window", "pending",
                 "trailers", "task", "relay", "headers_sent", "rejected", "metadata")  # fmt: skip

    def __init__(self, sid: int, send_window: int) -> None:
        self.sid = sid
        self.path = ""
        self.authorization: str | None = None
        self.deadline: float | None = None
        self.body = bytearray()  # request bytes not yet handled (counted in the window)
        self.send_window = send_window
        self.pending = bytearray()  # DATA payload waiting for window
        self.trailers: bytes | None = None  # sent once `pending` is out
        self.task: asyncio.Future[bytes] | None = None  # the call (a read's future or a task)
        self.relay: Relay[Stream] | None = None
        self.headers_sent = False
        self.rejected = False
        self.metadata: list[tuple[str, str]] = []


def read_call(stream: Stream, fields: list[tuple[bytes, bytes]]) -> int:
    """Takes what the call needs from its headers; 0, or the HTTP status to answer
    (405: not POST, 415: not a gRPC content type)."""
    method = content_type = b""
    for name, value in fields:
        if name == b":path":
            stream.path = value.decode("latin-1")
        elif name == b":method":
            method = value
        elif name == b"content-type":
            content_type = value
        elif name == b"grpc-timeout":
            seconds = w.parse_timeout(value)
            stream.deadline = None if seconds is None else time.monotonic() + seconds
        elif name == b"authorization":
            stream.authorization = value.decode("latin-1")
        elif not name.startswith((b":", b"grpc-")) and name not in (b"te", b"user-agent"):
            stream.metadata.append((name.decode("latin-1"), value.decode("latin-1")))
    if method != b"POST":
        return 405
    return 0 if content_type.startswith(b"application/grpc") else 415


def _same_table(a: tuple[int, Any, int], b: tuple[int, Any, int]) -> bool:
    # `is`: an equal (name, value) inserted again is still a change of the table.
    return a[0] == b[0] and a[1] is b[1] and a[2] == b[2]


class HeaderBlocks:
    """The block being received (`sid` != 0 until its END_HEADERS) and the decoder."""

    def __init__(self, max_bytes: int, max_continuations: int) -> None:
        self.max_bytes = max_bytes
        self.max_continuations = max_continuations
        self.decoder = hpack.Decoder()
        self.decoder.max_header_list_size = max_bytes
        self.table_generation = 0
        self.decoded: dict[tuple[int, bytes], list[tuple[bytes, bytes]]] = {}
        self.sid = 0
        self.end_stream = False
        self.fragments: list[bytes] = []
        self.size = 0

    def start(self, sid: int, end_stream: bool, fragment: bytes) -> None:
        self.sid = sid
        self.end_stream = end_stream
        self.fragments = [fragment]
        self.size = len(fragment)
        if self.size > self.max_bytes:
            self._too_large()

    def add(self, sid: int, fragment: bytes) -> None:
        """A CONTINUATION frame's fragment."""
        if sid != self.sid or not sid:
            raise w.ConnectionFailure(w.PROTOCOL_ERROR, "unexpected CONTINUATION")
        if len(self.fragments) > self.max_continuations:
            raise w.ConnectionFailure(w.ENHANCE_YOUR_CALM, f"more than {self.max_continuations} CONTINUATION "
                                      "frames in a header block (--grpc-max-continuations)")  # fmt: skip
        self.size += len(fragment)
        if self.size > self.max_bytes:
            self._too_large()
        self.fragments.append(fragment)

    def _too_large(self) -> None:
        raise w.ConnectionFailure(
            w.ENHANCE_YOUR_CALM, f"header block over {self.max_bytes} bytes (--grpc-max-header-bytes)"
        )

    def finish(self) -> list[tuple[bytes, bytes]]:
        """The complete block's fields; the next frame may start a new block."""
        fragments = self.fragments
        block = fragments[0] if len(fragments) == 1 else b"".join(fragments)
        self.sid = 0
        self.fragments = []
        return self.decode(block)

    def decode(self, block: bytes) -> list[tuple[bytes, bytes]]:
        """HPACK-decode a header block. A client repeats the same block for every call
        of one method (~5 us to decode in Python), so blocks whose decoding left the
        dynamic table as it was are remembered under (table generation, bytes): the
        same bytes against the same table decode to the same fields."""
        key = (self.table_generation, block)
        fields = self.decoded.get(key)
        if fields is not None:
            return fields
        before = self._table_state()
        try:
            fields = [(bytes(n), bytes(v)) for n, v in self.decoder.decode(block, raw=True)]
        except Exception as exc:  # hpack's errors: the shared table is now unusable
            raise w.ConnectionFailure(w.COMPRESSION_ERROR, f"bad header block: {exc}") from None
        if not _same_table(self._table_state(), before):
            self.table_generation += 1  # the table changed: earlier decodes no longer apply
            self.decoded.clear()
        elif len(self.decoded) < _CACHED_BLOCKS and len(block) <= _CACHED_BLOCK_BYTES:
            self.decoded[key] = fields
        return fields

    def _table_state(self) -> tuple[int, Any, int]:
        """(entries, first entry, max size) from hpack's public table: an insertion puts a
        new entry object first, an eviction without insertion shortens the table, a
        resize changes the max size. The first entry is held (not its id), so a new
        entry cannot reuse its address while the state is compared (`_same_table`)."""
        # Any: compiled code would unbox a typed tuple entry and box a new object.
        entries: Any = self.decoder.header_table.dynamic_entries
        return (len(entries), entries[0] if entries else None, int(self.decoder.header_table_size))
