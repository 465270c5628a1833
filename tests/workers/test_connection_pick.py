"""AsyncTensorClient spreads calls over its connections by least outstanding requests."""

from __future__ import annotations

import asyncio

from featureline.serving_api.typed_client import AsyncTensorClient


def _picks(in_flight: list[int], n: int) -> list[int]:
    async def run() -> list[int]:
        # Channels connect on their first call: nothing listens on this port.
        client = AsyncTensorClient("127.0.0.1:9", "svc", connections=len(in_flight))
        try:
            client._in_flight = list(in_flight)
            out = []
            for _ in range(n):
                i = client._pick()
                client._in_flight[i] += 1  # as fetch does while the call is in flight
                out.append(i)
            return out
        finally:
            await client.close()

    return asyncio.run(run())


def test_idle_connections_take_calls_in_turn() -> None:
    assert _picks([0, 0, 0, 0], 4) == [1, 2, 3, 0]


def test_a_busy_connection_gets_no_new_calls_until_the_others_catch_up() -> None:
    # Connection 0 sits on a slow server process with 3 calls still in flight.
    picks = _picks([3, 0, 0], 6)
    assert picks.count(0) == 0
    assert sorted(picks) == [1, 1, 1, 2, 2, 2]
    assert _picks([3, 0, 0], 8).count(0) == 1  # level with the others by then
