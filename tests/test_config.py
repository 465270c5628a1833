"""Configuration resolution (featureline.config): feature_store.yaml first, FEATURELINE_*
variables and flags only when set, every value with its origin. Pure logic: no services."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from featureline.cli import main
from featureline.config import (
    MASK,
    KafkaConfig,
    kafka_config,
    mask_url,
    parse_connection_string,
    resolve,
    stream_bootstrap,
)
from featureline.errors import BadInputError
from featureline.settings import Settings


def _repo(tmp_path: Path, body: str) -> Path:
    repo = tmp_path / "repo"
    repo.mkdir(exist_ok=True)
    (repo / "feature_store.yaml").write_text("project: p\nprovider: local\n" + body)
    return repo


def _settings(repo: Path, env: dict[str, str] | None = None) -> Settings:
    return Settings.from_env(env or {}).with_repo(repo)


@pytest.fixture(autouse=True)
def _no_featureline_env(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for key in [k for k in os.environ if k.startswith("FEATURELINE_")]:
        monkeypatch.delenv(key)


# --- connection_string, as Feast parses it --------------------------------------------


def test_feast_connection_string_examples() -> None:
    # The two formats in Feast's _parse_connection_string docstring.
    nodes, opts = parse_connection_string("redis_master:6379,db=0,ssl=true,password=secret")
    assert nodes == [("redis_master", 6379)]
    assert opts == {"db": 0, "ssl": True, "password": "secret"}
    nodes, opts = parse_connection_string("redis1:6379,redis2:6380,skip_full_coverage_check=true,ssl=true")
    assert nodes == [("redis1", 6379), ("redis2", 6380)]
    assert opts == {"skip_full_coverage_check": True, "ssl": True}


def test_connection_string_values_are_json_decoded_like_feast() -> None:
    _, opts = parse_connection_string("h:1,password=123,username=alice,ssl_ca_certs=/c/ca.pem,db=3")
    assert opts == {"password": 123, "username": "alice", "ssl_ca_certs": "/c/ca.pem", "db": 3}
    # '=' inside a value is kept (split once), as in Feast.
    _, opts = parse_connection_string("h:1,password=a=b")
    assert opts == {"password": "a=b"}


@pytest.mark.parametrize(
    ("text", "needle"),
    [("localhost", "is not host:port"), ("h:1,tls=yes", "tls are not supported"), ("db=1", "names no host")],
)
def test_bad_connection_strings_are_named(text: str, needle: str) -> None:
    with pytest.raises(BadInputError, match=needle):
        parse_connection_string(text)


# --- yaml, env, flags and origins -----------------------------------------------------


def test_yaml_only(tmp_path: Path) -> None:
    repo = _repo(
        tmp_path,
        "online_store:\n  type: redis\n  connection_string: 'redis.prod:6380,password=s3cret,db=3,ssl=true,"
        "ssl_ca_certs=/etc/ca.pem,username=alice'\n  key_ttl_seconds: 600\n"
        "registry: data/registry.db\noffline_store:\n  type: file\n",
    )
    cfg = resolve(_settings(repo))
    r = cfg.online()
    assert (r.host, r.port, r.db, r.password, r.username) == ("redis.prod", 6380, 3, "s3cret", "alice")
    assert r.ssl and r.ssl_ca_certs == "/etc/ca.pem" and r.key_ttl_seconds == 600
    assert cfg.registry.registry_type == "file"
    assert cfg.registry.path == str((repo / "data" / "registry.db").resolve())
    origins = {name: origin for name, _, origin in cfg.rows()}
    assert origins["online_store.host"] == "feature_store.yaml (online_store.connection_string)"
    assert origins["online_store.key_ttl_seconds"] == "feature_store.yaml (online_store.key_ttl_seconds)"
    assert origins["online_store.username"] == "feature_store.yaml (online_store.connection_string)"
    assert origins["registry.path"] == "feature_store.yaml (registry)"
    assert origins["kafka.security_protocol"] == "default"


def test_env_overrides_only_what_is_set(tmp_path: Path) -> None:
    conn = "'redis.prod:6380,password=p,db=3'"
    repo = _repo(tmp_path, f"online_store:\n  type: redis\n  connection_string: {conn}\n")
    cfg = resolve(_settings(repo, {"FEATURELINE_REDIS_PORT": "7000", "FEATURELINE_REDIS_DB": "0"}))
    r = cfg.online()
    assert (r.host, r.port, r.password, r.db) == ("redis.prod", 7000, "p", 0)
    origins = {name: origin for name, _, origin in cfg.rows()}
    assert origins["online_store.host"] == "feature_store.yaml (online_store.connection_string)"
    assert origins["online_store.port"] == "env FEATURELINE_REDIS_PORT"
    assert origins["online_store.db"] == "env FEATURELINE_REDIS_DB"
    # An unset variable never replaces the yaml (the old defaults 127.0.0.1:6379 would).
    assert resolve(_settings(repo, {"FEATURELINE_REDIS_HOST": ""})).redis.host == "redis.prod"


def test_every_redis_variable(tmp_path: Path) -> None:
    repo = _repo(tmp_path, "online_store:\n  type: redis\n  connection_string: 'a:1'\n")
    env = {
        "FEATURELINE_REDIS_HOST": "b", "FEATURELINE_REDIS_PASSWORD": "pw",
        "FEATURELINE_REDIS_USERNAME": "u", "FEATURELINE_REDIS_SSL": "true",
        "FEATURELINE_REDIS_SSL_CA_CERTS": "/ca.pem", "FEATURELINE_REDIS_DB": "5",
    }  # fmt: skip
    r = resolve(_settings(repo, env)).online()
    assert (r.host, r.port, r.password, r.username, r.ssl, r.ssl_ca_certs, r.db) == (
        "b", 1, "pw", "u", True, "/ca.pem", 5,
    )  # fmt: skip


def test_flags_override_env(tmp_path: Path) -> None:
    repo = _repo(tmp_path, "online_store:\n  type: redis\n  connection_string: 'a:1'\n")
    settings = _settings(repo, {"FEATURELINE_HTTP_PORT": "9000"}).with_flags(http_port=(9100, "--http-port"))
    cfg = resolve(settings)
    origins = {name: (value, origin) for name, value, origin in cfg.rows()}
    assert origins["serve.http_port"] == ("9100", "flag --http-port")
    assert origins["serve.grpc_port"] == ("6566", "default")
    assert origins["repo"][1] == "flag --repo"


def test_passwords_are_masked(tmp_path: Path) -> None:
    repo = _repo(
        tmp_path,
        "online_store:\n  type: redis\n  connection_string: 'a:1,password=s3cret'\n"
        "registry:\n  registry_type: sql\n  path: postgresql://reg:dbsecret@pg:5432/registry\n",
    )
    env = {
        "FEATURELINE_KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "FEATURELINE_KAFKA_USERNAME": "k",
        "FEATURELINE_KAFKA_PASSWORD": "kafkasecret",
    }  # fmt: skip
    cfg = resolve(_settings(repo, env))
    text = cfg.to_json()
    for secret in ("s3cret", "dbsecret", "kafkasecret"):
        assert secret not in text
    values = {k: v["value"] for k, v in json.loads(text).items()}
    assert values["online_store.password"] == MASK and values["kafka.password"] == MASK
    assert values["registry.path"] == f"postgresql://reg:{MASK}@pg:5432/registry"
    assert "s3cret" not in repr(cfg) and "kafkasecret" not in repr(_settings(repo, env))
    assert mask_url("sqlite:////tmp/r.db") == "sqlite:////tmp/r.db"


def test_featureline_config_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    repo = _repo(tmp_path, "online_store:\n  type: redis\n  connection_string: 'h:1,password=s3cret,db=3'\n")
    assert main(["config", "--repo", str(repo), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    origin = "feature_store.yaml (online_store.connection_string)"
    assert out["online_store.db"] == {"value": "3", "origin": origin}
    assert out["online_store.password"]["value"] == MASK
    assert main(["config", "--repo", str(repo)]) == 0
    text = capsys.readouterr().out
    assert "online_store.host" in text and "s3cret" not in text


# --- unsupported stores, cluster and sentinel -----------------------------------------


@pytest.mark.parametrize("kind", ["sqlite", "postgres", "dynamodb"])
def test_unsupported_online_store_is_named_when_needed(tmp_path: Path, kind: str) -> None:
    repo = _repo(tmp_path, f"online_store:\n  type: {kind}\n")
    cfg = resolve(_settings(repo))  # resolving (apply, historical, specs, config) is fine
    assert cfg.online_store_type == kind
    with pytest.raises(BadInputError, match=f"online_store type '{kind}'.*supports: redis"):
        cfg.online()


def test_feast_template_default_is_sqlite(tmp_path: Path) -> None:
    # No online_store at all: Feast's default is sqlite, refused only where it is needed.
    cfg = resolve(_settings(_repo(tmp_path, "")))
    assert cfg.online_store_type == "sqlite"
    assert cfg.registry.path == str((tmp_path / "repo" / "data" / "registry.db").resolve())
    with pytest.raises(BadInputError, match="'sqlite'"):
        cfg.online()


@pytest.mark.parametrize(
    ("redis_type", "extra"), [("redis_cluster", ""), ("redis_sentinel", "  sentinel_master: mymaster2\n")]
)
def test_cluster_and_sentinel_are_read(tmp_path: Path, redis_type: str, extra: str) -> None:
    repo = _repo(
        tmp_path,
        f"online_store:\n  type: redis\n  redis_type: {redis_type}\n{extra}"
        "  connection_string: 'r1:7000,r2:7001'\n",
    )
    cfg = resolve(_settings(repo))
    assert cfg.online().redis_type == redis_type and cfg.redis.nodes == (("r1", 7000), ("r2", 7001))
    if redis_type == "redis_sentinel":
        assert cfg.redis.sentinel_master == "mymaster2"
    rows = {name: (value, origin) for name, value, origin in cfg.rows()}
    assert rows["online_store.nodes"] == (
        "r1:7000,r2:7001",
        "feature_store.yaml (online_store.connection_string)",
    )


def test_a_cluster_has_only_db_0(tmp_path: Path) -> None:
    conn = "'r1:7000,db=2'"
    repo = _repo(
        tmp_path, f"online_store:\n  type: redis\n  redis_type: redis_cluster\n  connection_string: {conn}\n"
    )
    with pytest.raises(BadInputError, match="db 2 is not possible on Redis Cluster"):
        resolve(_settings(repo)).online()


def test_redis_nodes_from_the_environment(tmp_path: Path) -> None:
    """What compose and deploy/k8s set: the redis_type and every node, over the demo
    yaml's one-node connection_string (whose options stay)."""
    repo = _repo(tmp_path, "online_store:\n  type: redis\n  connection_string: 'a:1,password=pw'\n")
    env = {"FEATURELINE_REDIS_TYPE": "redis_cluster", "FEATURELINE_REDIS_NODES": "n1:6379, n2:6380,n3:6381"}
    cfg = resolve(_settings(repo, env))
    r = cfg.online()
    assert (r.redis_type, r.host, r.port, r.password) == ("redis_cluster", "n1", 6379, "pw")
    assert r.nodes == (("n1", 6379), ("n2", 6380), ("n3", 6381))
    rows = {name: (value, origin) for name, value, origin in cfg.rows()}
    assert rows["online_store.nodes"] == ("n1:6379,n2:6380,n3:6381", "env FEATURELINE_REDIS_NODES")
    assert rows["online_store.host"] == ("n1", "env FEATURELINE_REDIS_NODES")
    assert rows["online_store.password"][1] == "feature_store.yaml (online_store.connection_string)"
    # A yaml that expands ${FEATURELINE_REDIS_ADDR} (the demo's) gets every node, so
    # Feast's SDK reading the same yaml starts from the same seeds.
    assert Settings.from_env(env).env_vars()["FEATURELINE_REDIS_ADDR"] == "n1:6379, n2:6380,n3:6381"
    assert Settings.from_env({}).env_vars()["FEATURELINE_REDIS_ADDR"] == "127.0.0.1:6379"


@pytest.mark.parametrize(
    ("env", "needle"),
    [
        ({"FEATURELINE_REDIS_NODES": "n1:1,n2:2", "FEATURELINE_REDIS_HOST": "h"}, "both set"),
        ({"FEATURELINE_REDIS_NODES": "n1:1", "FEATURELINE_REDIS_PORT": "2"}, "both set"),
        ({"FEATURELINE_REDIS_NODES": "n1:1,password=x"}, "only host:port items; set password"),
        ({"FEATURELINE_REDIS_NODES": "n1"}, "FEATURELINE_REDIS_NODES='n1': .*is not host:port"),
    ],
)
def test_bad_redis_nodes_are_named(tmp_path: Path, env: dict[str, str], needle: str) -> None:
    repo = _repo(tmp_path, "online_store:\n  type: redis\n  connection_string: 'a:1'\n")
    with pytest.raises(BadInputError, match=needle):
        resolve(_settings(repo, env))


def test_unknown_redis_type(tmp_path: Path) -> None:
    repo = _repo(tmp_path, "online_store:\n  type: redis\n  redis_type: ring\n  connection_string: a:1\n")
    with pytest.raises(BadInputError, match="'ring' is unknown"):
        resolve(_settings(repo))


# --- registry -------------------------------------------------------------------------


def test_registry_forms(tmp_path: Path) -> None:
    repo = _repo(tmp_path, "registry:\n  registry_type: file\n  path: regs/r.db\n")
    assert resolve(_settings(repo)).registry.path == str((repo / "regs" / "r.db").resolve())
    repo = _repo(tmp_path, "registry:\n  registry_type: sql\n  path: sqlite:///abs.db\n")
    assert (resolve(_settings(repo)).registry.registry_type, resolve(_settings(repo)).registry.path) == (
        "sql", "sqlite:///abs.db",
    )  # fmt: skip
    env = {"FEATURELINE_REGISTRY_URL": "postgresql://u:p@h/db"}
    cfg = resolve(_settings(repo, env))
    assert cfg.registry.registry_type == "sql"
    assert cfg.origins["registry.path"] == "env FEATURELINE_REGISTRY_URL"
    with pytest.raises(BadInputError, match="snowflake"):
        resolve(_settings(_repo(tmp_path, "registry:\n  registry_type: snowflake.registry\n")))


def test_exported_registry_default_is_not_an_override(tmp_path: Path) -> None:
    """A child process sees FEATURELINE_REGISTRY_URL exported with its default (for
    yamls that expand it); it must not replace a yaml's own registry."""
    import os

    repo = _repo(tmp_path, "registry: data/registry.db\n")
    parent = _settings(repo)
    parent.export_env()
    child = Settings.from_env(dict(os.environ))
    assert not child.is_set("registry_url")
    assert resolve(child).registry.path == str((repo / "data" / "registry.db").resolve())
    assert "FEATURELINE_REDIS_HOST" not in os.environ  # a default is never exported as set


# --- kafka ----------------------------------------------------------------------------


def test_kafka_security_options() -> None:
    env = {
        "FEATURELINE_KAFKA_SECURITY_PROTOCOL": "sasl_ssl",
        "FEATURELINE_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
        "FEATURELINE_KAFKA_USERNAME": "u", "FEATURELINE_KAFKA_PASSWORD": "p",
        "FEATURELINE_KAFKA_SSL_CAFILE": "/ca.pem",
    }  # fmt: skip
    assert kafka_config(Settings.from_env(env)).client_options() == {
        "security_protocol": "SASL_SSL", "sasl_mechanism": "SCRAM-SHA-512", "sasl_plain_username": "u",
        "sasl_plain_password": "p", "ssl_cafile": "/ca.pem",
    }  # fmt: skip
    assert kafka_config(Settings.from_env({})).client_options() == {}
    with pytest.raises(BadInputError, match="GSSAPI"):
        kafka_config(Settings.from_env({**env, "FEATURELINE_KAFKA_SASL_MECHANISM": "GSSAPI"}))
    with pytest.raises(BadInputError, match="USERNAME"):
        kafka_config(Settings.from_env({"FEATURELINE_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT"}))


def test_kafka_bootstrap_comes_from_the_source() -> None:
    plain = KafkaConfig()
    assert stream_bootstrap(plain, {"a": "k1:9092,k2:9092", "b": "k1:9092,k2:9092"}) == "k1:9092,k2:9092"
    with pytest.raises(BadInputError, match="different bootstrap servers"):
        stream_bootstrap(plain, {"a": "k1:9092", "b": "other:9092"})
    override = kafka_config(Settings.from_env({"FEATURELINE_KAFKA_PORT": "19092"}))
    assert stream_bootstrap(override, {"a": "k1:9092", "b": "other:9092"}) == "127.0.0.1:19092"


def test_specs_file_without_a_repo_uses_redis_settings(tmp_path: Path) -> None:
    """A serving image with only `featureline specs --json` output and no repo."""
    specs = tmp_path / "specs.json"
    specs.write_text("{}")
    env = {
        "FEATURELINE_SPECS_FILE": str(specs),
        "FEATURELINE_REDIS_HOST": "redis.svc",
        "FEATURELINE_REDIS_DB": "2",
    }
    cfg = resolve(_settings(tmp_path / "absent", env))
    r = cfg.online()
    assert (r.host, r.port, r.db) == ("redis.svc", 6379, 2)
    with pytest.raises(BadInputError, match="no feature_store.yaml"):
        resolve(_settings(tmp_path / "absent"))


def test_key_ttl_is_read(tmp_path: Path) -> None:
    repo = _repo(tmp_path, "online_store:\n  type: redis\n  connection_string: a:1\n  key_ttl_seconds: 60\n")
    r = resolve(_settings(repo)).online()
    assert r.key_ttl_seconds == 60 and r.key_ttl_s == 60
    (tmp_path / "plain").mkdir()
    plain = _repo(tmp_path / "plain", "online_store:\n  type: redis\n  connection_string: a:1\n")
    assert resolve(_settings(plain)).online().key_ttl_s == 0


def test_kafka_security_as_java_properties() -> None:
    """For Beam's ReadFromKafka (Java) on a portable runner."""
    env = {
        "FEATURELINE_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "FEATURELINE_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
        "FEATURELINE_KAFKA_USERNAME": "u",
        "FEATURELINE_KAFKA_PASSWORD": 'p"q',
        "FEATURELINE_KAFKA_SSL_CAFILE": "/ca.pem",
    }
    assert kafka_config(Settings.from_env(env)).java_options() == {
        "security.protocol": "SASL_SSL",
        "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.jaas.config": 'org.apache.kafka.common.security.scram.ScramLoginModule required username="u" '
        'password="p\\"q";',
        "ssl.truststore.type": "PEM",
        "ssl.truststore.location": "/ca.pem",
    }
    assert kafka_config(Settings.from_env({})).java_options() == {}


def test_config_of_a_redis_py_client_round_trips() -> None:
    from featureline.config import RedisConfig
    from featureline.online_store.redis.connect import config_of, redis_client

    cfg = RedisConfig(host="h", port=7, password="p", username="u", db=3, ssl=True, ssl_ca_certs="/ca.pem")
    assert config_of(redis_client(cfg)) == cfg
    plain = RedisConfig(host="h", port=7, db=2)
    assert config_of(redis_client(plain)) == plain


def test_check_redis_never_hangs_on_a_silent_server() -> None:
    """A port that accepts and never answers (a hung Redis, or TLS spoken to a plain
    port that waits for a newline): an error within the timeout, not a hang."""
    import socket
    import time

    from featureline.config import RedisConfig
    from featureline.errors import FeaturelineError
    from featureline.online_store.redis.connect import check_redis

    with socket.create_server(("127.0.0.1", 0)) as silent:
        port = silent.getsockname()[1]
        for cfg in (RedisConfig(port=port), RedisConfig(port=port, ssl=True)):
            started = time.monotonic()
            with pytest.raises(FeaturelineError, match=f"Redis at 127.0.0.1:{port}"):
                check_redis(cfg, timeout_s=0.5)
            assert time.monotonic() - started < 3
