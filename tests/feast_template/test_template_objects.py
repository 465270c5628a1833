"""Nothing in the template is dropped without a word: its LabelView is read as Feast
0.67 defines it, and every registered object Featureline does not act on is listed."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from template_env import Repos, featureline


def _ok(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 0, f"exit {done.returncode}\n{done.stdout}\n{done.stderr}"
    return done.stdout


def test_label_view_is_read_with_its_policy(repos: Repos, home: Path) -> None:
    spec = json.loads(_ok(featureline(repos.ours, "specs", "--json", home=home)))
    labels = spec["views"]["driver_quality_labels"]
    assert labels["label_policy"] == "last_write_wins"
    assert labels["labeler_field"] == "labeler"
    names = [f["name"] for f in labels["features"]]
    assert names == ["is_reliable", "quality_score", "reviewer_notes", "labeler"]
    assert labels["batch_source"]["path"].endswith("data/driver_quality_labels.parquet")
    assert labels["ttl_s"] == 0


def test_apply_lists_what_featureline_does_not_use(repos: Repos, home: Path) -> None:
    out = _ok(featureline(repos.ours, "apply", home=home))
    listed = out.split("registered, not used by Featureline:")[1].split("applied in")[0]
    # Its FileLoggingDestination is served (serving_api.feature_log): not listed.
    assert "driver_activity_v1" not in listed
    assert "feature view enable_validation driver_hourly_stats" in listed
    # Sources that views read are not listed; nothing else of the template is unused.
    assert "driver_stats_push_source" not in listed and "driver_hourly_stats_source" not in listed
    assert len(listed.strip().splitlines()) == 1, listed


def test_label_views_are_not_materialized(repos: Repos, home: Path) -> None:
    done = featureline(repos.ours, "materialize", "--start", "2021-01-01T00:00:00", "--end",
                       "2021-01-02T00:00:00", "--views", "driver_quality_labels", home=home)  # fmt: skip
    assert done.returncode == 2, done.stdout + done.stderr
    assert "label view(s) driver_quality_labels cannot be materialized; write labels with push" in done.stderr
    assert "Traceback" not in done.stderr
