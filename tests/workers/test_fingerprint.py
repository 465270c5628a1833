"""The model's layout and definitions fingerprint come from the feature definitions."""

from __future__ import annotations

import dataclasses
import re
import shutil
from pathlib import Path

import pytest

from featureline.cli import main
from featureline.serving_api.workers.fingerprint import service_fingerprint
from featureline.serving_api.workers.layout import feature_layout
from featureline.serving_api.workers.train import TrainResult
from featureline.settings import Settings
from featureline.specs import RepoSpec, resolve_features

SERVICE = "fraud_training_v1"


def _replace_view(repo: RepoSpec, name: str, **changes: object) -> RepoSpec:
    views = {**repo.views, name: dataclasses.replace(repo.views[name], **changes)}  # type: ignore[arg-type]
    return dataclasses.replace(repo, views=views)


def test_the_layout_is_the_services_numeric_features_in_definition_order(workers_repo: RepoSpec) -> None:
    for service in workers_repo.services:
        resolved = resolve_features(workers_repo, service=service, full_feature_names=True)
        layout = feature_layout(workers_repo, service)
        numeric = [f.output_name(True) for f in resolved if f.dtype != "string"]
        assert list(layout.names) == numeric
        assert list(layout.omitted) == [f.output_name(True) for f in resolved if f.dtype == "string"]
    model_layout = feature_layout(workers_repo, "fraud_model_v1")
    assert dict(model_layout.request_fields) == {"amount": "float64", "country": "string"}
    assert dict(model_layout.join_keys) == {"user_id": "int64", "merchant_id": "string"}


def test_missing_values_default_to_what_the_definitions_declare(workers_repo: RepoSpec) -> None:
    defaults = {c.name: c.default for c in feature_layout(workers_repo, SERVICE).columns}
    # semantics.md 2: an empty window counts 0 and sums 0; its mean and max are null.
    assert defaults["user_txn_stats__count_amount_10m"] == 0.0
    assert defaults["user_txn_stats__sum_amount_1h"] == 0.0
    assert defaults["user_txn_stats__distinct_merchants_24h"] == 0.0
    assert defaults["user_txn_stats__mean_amount_24h"] is None
    assert defaults["user_txn_stats__max_amount_10m"] is None
    assert defaults["user_profile__credit_limit"] is None  # a latest value: no default


def test_the_fingerprint_ignores_where_the_data_lives(workers_repo: RepoSpec) -> None:
    view = workers_repo.views["user_txn_stats"]
    assert view.stream_source is not None and view.stream_source.batch_source is not None
    moved = _replace_view(
        workers_repo,
        "user_txn_stats",
        stream_source=dataclasses.replace(
            view.stream_source,
            bootstrap_servers="kafka.prod:9092",
            batch_source=dataclasses.replace(view.stream_source.batch_source, path="s3://bucket/raw"),
        ),
        tags={"owner": "someone else"},
    )
    assert service_fingerprint(moved, SERVICE) == service_fingerprint(workers_repo, SERVICE)


def test_the_fingerprint_changes_with_every_part_of_the_definition(workers_repo: RepoSpec) -> None:
    base = service_fingerprint(workers_repo, SERVICE)
    stats = workers_repo.views["user_txn_stats"]
    agg = stats.aggregations[0]
    variants = {
        "ttl": _replace_view(workers_repo, "merchant_risk", ttl_s=3 * 86_400),
        "window": _replace_view(
            workers_repo,
            "user_txn_stats",
            aggregations=(dataclasses.replace(agg, window_s=agg.window_s * 2), *stats.aggregations[1:]),
        ),
        "function": _replace_view(
            workers_repo,
            "user_txn_stats",
            aggregations=(dataclasses.replace(agg, function="min"), *stats.aggregations[1:]),
        ),
        "timestamp": _replace_view(workers_repo, "user_profile", created_timestamp_column=""),
        "dtype": _replace_view(
            workers_repo,
            "merchant_risk",
            features=tuple(
                dataclasses.replace(f, dtype="float32") for f in workers_repo.views["merchant_risk"].features
            ),
        ),
    }
    service = workers_repo.services[SERVICE]
    variants["order"] = dataclasses.replace(
        workers_repo,
        services={
            **workers_repo.services,
            SERVICE: dataclasses.replace(service, projections=service.projections[::-1]),
        },
    )
    prints = {name: service_fingerprint(repo, SERVICE) for name, repo in variants.items()}
    assert base not in prints.values(), prints
    assert len(set(prints.values())) == len(prints)
    # A view the service does not read is not part of its definition.
    other = _replace_view(workers_repo, "user_last_txn", ttl_s=1)
    assert service_fingerprint(other, SERVICE) == base
    assert service_fingerprint(other, "fraud_model_v1") != service_fingerprint(workers_repo, "fraud_model_v1")


def test_a_changed_definition_makes_the_worker_refuse_the_old_model(
    trained: TrainResult,
    workers_settings: Settings,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    copy = tmp_path / "repo"
    shutil.copytree(workers_settings.repo, copy, ignore=shutil.ignore_patterns("data", "__pycache__"))
    features = copy / "features.py"
    text = features.read_text()
    # merchant_risk's ttl: 2 days -> 3 days (one number in one view of the service).
    edited, count = re.subn(
        r'(name="merchant_risk",\s*entities=\[merchant\],\s*ttl=timedelta\(days=)2\)', r"\g<1>3)", text
    )
    assert count == 1, "the demo repo's merchant_risk definition changed; update this test"
    features.write_text(edited)
    for key, value in dataclasses.replace(workers_settings, repo=copy).env_vars().items():
        monkeypatch.setenv(key, value)
    code = main(["worker", "--repo", str(copy), "--model", str(trained.path), "--device", "cpu"])
    err = capsys.readouterr().err
    assert code == 2, err
    assert f"definitions fingerprint {trained.meta.fingerprint}" in err
    assert "retrain it: featureline train --feature-service fraud_training_v1" in err
