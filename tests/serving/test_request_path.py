"""The request path without tasks (ServingCore.serve): a read is the Redis connection's
future with one callback, and every way a read ends (its replies, an error reply, its
timeout, a caller that went away) releases its in-flight slot. Real Redis, no server."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from serving_data import now_us, write_latest

from featureline.online_store.base import StoreTimeoutError
from featureline.online_store.redis.aio import RedisClient
from featureline.semantics import US
from featureline.serving_api.frame import FeatureFrame
from featureline.serving_api.limits import Limits, OverloadedError
from featureline.serving_api.service import FeatureQuery, ServingCore
from featureline.settings import Settings
from featureline.specs import RepoSpec


def _query(user: int) -> FeatureQuery:
    return FeatureQuery(["profile:age"], None, {"user_id": [user]})


def _core(settings: Settings, spec: RepoSpec, **limits: Any) -> ServingCore:
    redis = RedisClient(settings.redis_host, settings.redis_port)
    return ServingCore(spec, redis, Limits(**limits))


def _write_age(redis_client: Any, spec: RepoSpec, user: int, age: int) -> None:
    write_latest(redis_client, spec, "profile", [{"user_id": user, "event_us": now_us() - US, "age": age}])


def _age(frame: FeatureFrame) -> Any:
    return frame.columns[0].values[0]


def test_a_read_is_one_future_and_no_task(
    redis_client: Any, serving_settings: Settings, serving_spec: RepoSpec
) -> None:
    write_latest(
        redis_client, serving_spec, "profile", [{"user_id": 911, "event_us": now_us() - US, "age": 44}]
    )

    async def run() -> None:
        core = _core(serving_settings, serving_spec)
        await core.get_online(_query(911))  # connects (the one read that needs a task)
        tasks = asyncio.all_tasks()
        result = core.serve(_query(911), _age, None)
        assert isinstance(result, asyncio.Future)
        assert asyncio.all_tasks() == tasks  # nothing scheduled but the read itself
        assert core.in_flight.count == 1
        assert await result == 44
        assert core.in_flight.count == 0
        core.redis.close()

    asyncio.run(run())


def test_every_end_of_a_read_releases_its_slot(
    redis_client: Any, serving_settings: Settings, serving_spec: RepoSpec
) -> None:
    """Two slots: two reads wait on a paused Redis, a third is refused before any I/O;
    a timeout, a caller that went away and a failure inside `then` (the future's, not
    `failed`'s) each give the slot back, and the next reads are served."""
    write_latest(
        redis_client, serving_spec, "profile", [{"user_id": 912, "event_us": now_us() - US, "age": 45}]
    )

    def broken(_: FeatureFrame) -> Any:
        raise ValueError("an encoder that fails")

    async def run() -> None:
        core = _core(serving_settings, serving_spec, max_in_flight=2, redis_timeout_s=0.2)
        await core.get_online(_query(912))
        redis_client.execute_command("CLIENT", "PAUSE", 400, "ALL")
        timed_out = core.serve(_query(912), _age, None)
        gone = core.serve(_query(912), _age, None)
        with pytest.raises(OverloadedError, match="2 requests in flight"):
            core.serve(_query(912), _age, None)
        assert isinstance(gone, asyncio.Future)
        gone.cancel()  # e.g. its gRPC stream was reset
        with pytest.raises(StoreTimeoutError, match="did not answer within 200 ms"):
            await timed_out
        assert core.in_flight.count == 0  # both: the timer fails each read alike
        await asyncio.sleep(0.3)  # the pause ends
        failed = core.serve(_query(912), broken, lambda exc: f"failed: {exc}")
        with pytest.raises(ValueError, match="an encoder that fails"):  # `then`'s own error
            await failed
        assert await core.serve(_query(912), _age, None) == 45
        assert core.in_flight.count == 0
        core.redis.close()

    asyncio.run(run())
