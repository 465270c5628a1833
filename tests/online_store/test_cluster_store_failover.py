"""ClusterStore through a primary's death, on a cluster of its own: the writes fail as
unavailable (never half-applied silently) until the replica is promoted, then the same
store object routes to the new primary by itself, and the replay is exact."""

from __future__ import annotations

import time
from pathlib import Path

from redis_cluster_helpers import running_cluster

from featureline.online_store import NO_MARK, StoreUnavailableError, TileWrite, mark_field, open_store


def test_writes_resume_on_the_promoted_replica(tmp_path: Path) -> None:
    with running_cluster(tmp_path / "cluster") as cluster:
        store = open_store(cluster.config(), socket_timeout=2.0)
        mark = mark_field("tx", 0)
        keys = [b"fl:tile:fo:%d" % i for i in range(200)]
        assert store.apply_tiles([TileWrite(k, NO_MARK, [(b"1:0", b"a")]) for k in keys], mark, 1, 0) == []
        assert store.raise_watermark("fl:wm:fo", 1)
        cluster.wait_replicated()
        victim = cluster.owner_port(b"fl:wm:fo")
        cluster.kill(victim)

        errors = 0
        deadline = time.monotonic() + 30
        while True:
            try:
                # The replay of one batch: every key either still at mark 1 or already 2.
                _, marks = store.read_tiles([], keys, mark)
                left = [k for k, m in zip(keys, marks, strict=True) if m == 1]
                writes = [TileWrite(k, 1, [(b"1:0", b"b")]) for k in left]
                assert store.apply_tiles(writes, mark, 2, 0) == []
                store.raise_watermark("fl:wm:fo", 2)
                break
            except StoreUnavailableError:
                errors += 1
                assert time.monotonic() < deadline, "the store never routed to the promoted replica"
                time.sleep(0.2)
        assert errors > 0  # the dead primary was hit: its slots were unavailable for a while
        live = next(n.port for n in cluster.nodes if n.port != victim)
        assert cluster.owner_port(b"fl:wm:fo", seen_from=live) != victim
        values, marks = store.read_tiles([(k, b"1:0") for k in keys], keys, mark)
        assert values == [b"b"] * len(keys) and marks == [2] * len(keys)
        assert store.get_watermark("fl:wm:fo") == 2
        store.close()
