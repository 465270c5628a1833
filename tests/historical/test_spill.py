"""The local engine spills to disk under a memory limit smaller than its data, with the
same result; far too little memory is a clear error, not a crash."""

from __future__ import annotations

import contextlib
import threading
import time
from pathlib import Path

import pytest

from benchmarks.historical.data import FEATURES, generate
from featureline.batch.historical import LocalOptions, get_historical_features
from featureline.errors import FeaturelineError
from featureline.specs import EntitySpec, FieldSpec, FileSourceSpec, RepoSpec, ViewSpec


def _repo(offline: Path) -> RepoSpec:
    view = ViewSpec(
        name="user_stats",
        kind="batch",
        entities=("user",),
        join_keys=(FieldSpec("user_id", "int64"),),
        features=tuple(FieldSpec(f"f{i}", "float64" if i < 3 else "int64") for i in range(5)),
        ttl_s=7 * 86400,
        timestamp_field="event_timestamp",
        created_timestamp_column="created",
        batch_source=FileSourceSpec("src", str(offline / "user_stats"), "event_timestamp", "created"),
    )
    return RepoSpec("spill", {"user": EntitySpec("user", "user_id", "int64")}, {"user_stats": view}, {}, {})


class _SpillWatcher:
    """Polls the size of DuckDB's spill directory while a query runs."""

    def __init__(self, path: Path) -> None:
        self.path, self.peak_bytes, self._stop = path, 0, threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def _poll(self) -> None:
        while not self._stop.is_set():
            size = 0
            for file in self.path.rglob("*") if self.path.exists() else []:
                with contextlib.suppress(OSError):
                    size += file.stat().st_size
            self.peak_bytes = max(self.peak_bytes, size)
            time.sleep(0.005)

    def __enter__(self) -> _SpillWatcher:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def test_spills_under_a_small_memory_limit(tmp_path: Path) -> None:
    # 800k source rows x 8 columns: ~50 MB in memory, more than the 80 MB limit once read, joined and sorted.
    data = generate(tmp_path, entity_rows=800_000, feature_rows=800_000, keys=50_000)
    repo = _repo(tmp_path / "offline")
    roomy = get_historical_features(data.entity, list(FEATURES), repo=repo)
    spill_dir = tmp_path / "spill"
    watcher = _SpillWatcher(spill_dir)
    with watcher:
        tight = get_historical_features(
            data.entity,
            list(FEATURES),
            repo=repo,
            local_options=LocalOptions(memory_limit="80MB", temp_directory=str(spill_dir)),
        )
    assert tight.equals(roomy)
    assert watcher.peak_bytes > 10 * 2**20  # it did spill (~100 MB here)
    assert roomy.column("f0").null_count < roomy.num_rows // 2
    with pytest.raises(FeaturelineError, match="memory-limit"):
        get_historical_features(
            data.entity, list(FEATURES), repo=repo, local_options=LocalOptions(memory_limit="4MB")
        )
