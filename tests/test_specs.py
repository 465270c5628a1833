"""Reading Feast repos into specs: the demo repo, the cache, and bad repos."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from featureline.aggregations import AggState
from featureline.errors import BadInputError, NotFoundError
from featureline.online.tiles import decode_tile, encode_tile, tile_parts, window_value
from featureline.repo import load_repo
from featureline.semantics import US
from featureline.settings import Settings
from featureline.specs import RepoSpec, resolve_features

REPO = Path(__file__).resolve().parents[1] / "feature_repo"


@pytest.fixture(scope="module")
def demo_spec(tmp_path_factory: pytest.TempPathFactory) -> RepoSpec:
    settings = Settings(repo=REPO, home=tmp_path_factory.mktemp("home"))
    return load_repo(settings, use_cache=False)


def test_demo_repo_specs(demo_spec: RepoSpec) -> None:
    assert demo_spec.project == "featureline_demo"
    user_stats = demo_spec.view("user_txn_stats")
    assert user_stats.kind == "stream"
    assert user_stats.join_key_names == ("user_id",)
    assert [f.name for f in user_stats.input_fields] == ["amount", "merchant_id"]
    by_name = {a.name: a for a in user_stats.aggregations}
    assert by_name["sum_amount_10m"].tile_s == 300
    assert by_name["mean_amount_24h"].tile_s == 3600
    assert by_name["distinct_merchants_24h"].function == "count_distinct"
    assert user_stats.feature("count_amount_1h").dtype == "int64"
    assert demo_spec.view("merchant_txn_stats").aggregations[0].tile_s == 60
    profile = demo_spec.view("user_profile")
    assert profile.kind == "batch" and profile.join_key_names == ("user_id",)
    assert profile.batch_source is not None
    assert profile.batch_source.created_timestamp_column == "created"
    stream = user_stats.stream_source
    assert stream is not None and stream.topic == "transactions"
    assert stream.batch_source is not None and stream.batch_source.path.endswith("raw/transactions")
    odfv = demo_spec.on_demand_views["transaction_context"]
    assert dict(odfv.sources)["user_txn_stats"] == user_stats.feature_names
    assert [f.name for f in odfv.request_fields] == ["amount", "country"]


def test_json_round_trip(demo_spec: RepoSpec) -> None:
    assert RepoSpec.from_json(demo_spec.to_json()) == demo_spec


def test_cache_hits_and_invalidates(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    for f in REPO.glob("*.py"):
        (repo / f.name).write_text(f.read_text())
    (repo / "feature_store.yaml").write_text((REPO / "feature_store.yaml").read_text())
    settings = Settings(repo=repo, home=tmp_path / "home")
    first = load_repo(settings)
    assert list((tmp_path / "home" / "specs").glob("*.json"))
    assert load_repo(settings) == first
    text = (repo / "features.py").read_text().replace("ttl=timedelta(days=7)", "ttl=timedelta(days=3)")
    (repo / "features.py").write_text(text)
    assert load_repo(settings).view("user_last_txn").ttl_s == 3 * 86400


def test_bad_repos(tmp_path: Path) -> None:
    with pytest.raises(BadInputError, match="not a directory"):
        load_repo(Settings(repo=tmp_path / "missing", home=tmp_path))
    with pytest.raises(BadInputError, match="no feature_store.yaml"):
        load_repo(Settings(repo=tmp_path, home=tmp_path))
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "feature_store.yaml").write_text("project: p\nprovider: local\n")
    (broken / "defs.py").write_text("raise RuntimeError('boom in definitions')\n")
    with pytest.raises(BadInputError, match="boom in definitions"):
        load_repo(Settings(repo=broken, home=tmp_path / "h"))


def test_resolve_features(demo_spec: RepoSpec) -> None:
    feats = resolve_features(demo_spec, service="fraud_model_v1")
    assert feats[0].ref == "user_txn_stats:count_amount_10m"
    assert any(f.on_demand and f.feature == "amount_to_mean_24h" for f in feats)
    refs = ["user_profile:home_country", "user_txn_stats:sum_amount_1h"]
    names = [f.output_name(True) for f in resolve_features(demo_spec, refs, full_feature_names=True)]
    assert names == ["user_profile__home_country", "user_txn_stats__sum_amount_1h"]
    with pytest.raises(NotFoundError, match="no feature 'nope'"):
        resolve_features(demo_spec, ["user_profile:nope"])
    with pytest.raises(NotFoundError, match="unknown feature view 'ghost'"):
        resolve_features(demo_spec, ["ghost:x"])
    with pytest.raises(NotFoundError, match="unknown feature service"):
        resolve_features(demo_spec, service="fraud_model_v9")
    with pytest.raises(BadInputError, match="view:feature"):
        resolve_features(demo_spec, ["no_colon"])
    # user_last_txn:amount and ... no collision here, but the same ref twice collides
    with pytest.raises(BadInputError, match="collide"):
        resolve_features(demo_spec, ["user_last_txn:amount", "user_last_txn:amount"])


def test_tile_codec_and_window(demo_spec: RepoSpec) -> None:
    view = demo_spec.view("user_txn_stats")
    assert tile_parts(view, 3600) == {"amount": {"count", "sum", "max"}, "merchant_id": {"count", "distinct"}}
    a, b = AggState(), AggState()
    for v in (1.5, 2.25):
        a.add(v)
    b.add(0.1)
    tiles = [(0, {"amount": a}), (300, {"amount": b})]
    decoded = [(s, decode_tile(encode_tile(st))) for s, st in tiles]
    agg = next(x for x in view.aggregations if x.name == "sum_amount_10m")
    assert window_value(agg, decoded, 600 * US) == 1.5 + 2.25 + 0.1
    # at t = 901 s the window starts at floor((901-600)/300)*300 = 300: tile 0 drops out
    assert window_value(agg, decoded, 901 * US) == 0.1
    count = dataclasses.replace(agg, function="count")
    assert window_value(count, decoded, 10_000 * US) == 0


def test_specs_file_loads_without_feast(demo_spec: RepoSpec, tmp_path: Path) -> None:
    """FEATURELINE_SPECS_FILE (serving / GPU-worker images without Feast): the specs
    come from the file, equal to the parsed repo's, and `feast` is never imported."""
    import subprocess
    import sys

    specs = tmp_path / "specs.json"
    specs.write_text(demo_spec.to_json())
    probe = (
        "import sys; from featureline.repo import load_repo; from featureline.settings import Settings; "
        "s = load_repo(Settings.from_env()); "
        "assert not any(m == 'feast' or m.startswith('feast.') for m in sys.modules), 'feast imported'; "
        "print(s.to_json())"
    )
    env = {"FEATURELINE_SPECS_FILE": str(specs), "FEATURELINE_REPO": str(tmp_path / "no-repo-here"),
           "FEATURELINE_HOME": str(tmp_path / "home"), "PATH": "/usr/bin:/bin"}  # fmt: skip
    out = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True)
    assert RepoSpec.from_json(out.stdout) == demo_spec


def test_bad_specs_file(tmp_path: Path) -> None:
    with pytest.raises(BadInputError, match="cannot be read"):
        load_repo(Settings(specs_file=str(tmp_path / "missing.json"), home=tmp_path))
    bad = tmp_path / "bad.json"
    bad.write_text('{"project": 1}')
    with pytest.raises(BadInputError, match="not the output of `featureline specs --json`"):
        load_repo(Settings(specs_file=str(bad), home=tmp_path))


def test_feast_aggregation_functions_convert_through_the_registry() -> None:
    """Feast's names are kept (var/variance/std/stddev all accepted), typed by the
    registry; an unknown function is refused at conversion, naming the known ones."""
    from datetime import timedelta
    from types import SimpleNamespace

    from feast.aggregation import Aggregation

    from featureline._feast_convert import _aggregations

    hour = timedelta(hours=1)
    aggs = [
        Aggregation(column="amount", function=fn, time_window=hour)
        for fn in ("std", "stddev", "var", "variance", "max")
    ]
    specs, outputs = _aggregations(SimpleNamespace(name="v", aggregations=aggs), {"amount": "int64"})
    assert [s.function for s in specs] == ["std", "stddev", "var", "variance", "max"]
    assert [(o.name, o.dtype) for o in outputs] == [
        ("std_amount_3600s", "float64"),
        ("stddev_amount_3600s", "float64"),
        ("var_amount_3600s", "float64"),
        ("variance_amount_3600s", "float64"),
        ("max_amount_3600s", "int64"),
    ]
    median = SimpleNamespace(
        name="v", aggregations=[Aggregation(column="amount", function="median", time_window=hour)]
    )
    with pytest.raises(BadInputError, match="'median' on 'amount' is not supported; supported: count, sum"):
        _aggregations(median, {"amount": "float64"})
