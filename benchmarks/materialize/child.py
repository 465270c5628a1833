"""One side of `featureline bench materialize`, in a fresh process (imports and
set-up are not timed): `python -m benchmarks.materialize.child
specs|specs-cluster|feast|ours|ours-cluster REPO HOME PORT ENTITIES [WORKERS]` (ours-cluster: PORT is
a node of a Redis Cluster, written with redis_type redis_cluster). Prints one JSON line:
the materialize call's seconds, the keys written and a sample of the hashes (for the
byte-for-byte check)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.materialize.data import VIEW
from featureline.errors import FeaturelineError
from featureline.settings import Settings

START, END = "2026-01-01T00:00:00+00:00", "2026-02-01T00:00:00+00:00"
SAMPLE_KEYS = 2000


def _sample(client: Any, project: str, entities: int) -> dict[str, dict[str, str]]:
    from featureline.online.feast_format import single_key_encoder

    encode = single_key_encoder(project, "user_id", "int64")
    step = max(1, entities // SAMPLE_KEYS)
    out = {}
    for user in range(0, entities, step):
        raw = client.hgetall(encode(user))
        out[str(user)] = {k.hex(): v.hex() for k, v in raw.items()}
    return out


def _feast_side(repo: Path, port: int, entities: int) -> dict[str, Any]:
    from datetime import datetime

    from feast import FeatureStore

    from featureline.online_store.redis.connect import plain_client

    store = FeatureStore(repo_path=str(repo))
    client = plain_client(port=port)
    client.flushall()
    began = time.perf_counter()
    store.materialize(datetime.fromisoformat(START), datetime.fromisoformat(END), feature_views=[VIEW])
    seconds = time.perf_counter() - began
    return {"seconds": seconds, "keys": client.dbsize(), "sample": _sample(client, store.project, entities)}


def _settings(repo: Path, home: Path, port: int, cluster: bool) -> Settings:
    return Settings(repo=repo, home=home, redis_port=port, redis_type="redis_cluster" if cluster else "")


def _our_side(
    repo: Path, home: Path, port: int, entities: int, workers: int | None, cluster: bool
) -> dict[str, Any]:
    from datetime import datetime

    from benchmarks.materialize.cluster import Primaries
    from featureline.batch.materialize import mark_key, materialize
    from featureline.online_store.redis.connect import plain_client

    settings = _settings(repo, home, port, cluster)
    from featureline.repo import load_repo

    project = load_repo(settings).project  # cached specs: ~5 ms
    client = Primaries(port) if cluster else plain_client(port=port)
    client.flushall()
    began = time.perf_counter()
    report = materialize(
        settings, datetime.fromisoformat(START), datetime.fromisoformat(END), views=[VIEW], workers=workers
    )
    seconds = time.perf_counter() - began
    if not report.ok:
        raise FeaturelineError(str(report.results))
    (result,) = report.results
    return {
        "seconds": seconds,
        "rows": result.rows_read,
        "entities": result.entities,
        # Feature hashes only: not materialize's own incremental mark.
        "keys": int(client.dbsize()) - int(client.exists(mark_key(project, VIEW))),
        "sample": _sample(client, project, entities),
    }


def _child_main(argv: list[str]) -> None:
    side, repo, home, port, entities = argv[0], Path(argv[1]), Path(argv[2]), int(argv[3]), int(argv[4])
    workers = int(argv[5]) if len(argv) > 5 else None
    if side == "specs-cluster":  # the specs cache is per resolved online store
        from featureline.repo import load_repo

        load_repo(_settings(repo, home, port, cluster=True))
        result: dict[str, Any] = {}
    elif side == "specs":  # untimed set-up: our cached specs, and `feast apply`
        from featureline.repo import load_repo

        load_repo(_settings(repo, home, port, cluster=False))
        feast_cli = str(Path(sys.executable).parent / "feast")  # the venv's, PATH or not
        subprocess.run([feast_cli, "-c", str(repo), "apply"], check=True, capture_output=True)
        result = {}
    elif side == "feast":
        result = _feast_side(repo, port, entities)
    else:
        result = _our_side(repo, home, port, entities, workers, cluster=side == "ours-cluster")
    print(json.dumps(result))


if __name__ == "__main__":
    _child_main(sys.argv[1:])
