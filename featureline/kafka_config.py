"""Kafka settings: each KafkaSource names its bootstrap servers (Feast keeps Kafka
settings on the source, not in feature_store.yaml); FEATURELINE_KAFKA_HOST/_PORT replace
them only when set, and FEATURELINE_KAFKA_* security applies to every client."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from featureline.errors import BadInputError
from featureline.settings import Settings

KAFKA_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
KAFKA_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")


@dataclass(frozen=True)
class KafkaConfig:
    """Kafka overrides and security, applied to every kafka-python client we create."""

    bootstrap_override: str = ""
    security_protocol: str = "PLAINTEXT"
    sasl_mechanism: str = ""
    username: str = ""
    password: str = field(default="", repr=False)
    ssl_cafile: str = ""

    def bootstrap(self, source_servers: str) -> str:
        """The servers to use for a KafkaSource naming `source_servers`."""
        return self.bootstrap_override or source_servers

    def client_options(self) -> dict[str, Any]:
        """kafka-python keyword arguments (KafkaConsumer, KafkaProducer, KafkaAdminClient)."""
        if self.security_protocol == "PLAINTEXT":
            return {}
        out: dict[str, Any] = {"security_protocol": self.security_protocol}
        if self.security_protocol.startswith("SASL"):
            out["sasl_mechanism"] = self.sasl_mechanism
            out["sasl_plain_username"] = self.username
            out["sasl_plain_password"] = self.password
        if self.ssl_cafile and self.security_protocol.endswith("SSL"):
            out["ssl_cafile"] = self.ssl_cafile
        return out

    def java_options(self) -> dict[str, str]:
        """The same settings as Java Kafka client properties (Beam's ReadFromKafka on a
        portable runner such as Flink)."""
        if self.security_protocol == "PLAINTEXT":
            return {}
        out = {"security.protocol": self.security_protocol}
        if self.security_protocol.startswith("SASL"):
            module = "plain.PlainLoginModule" if self.sasl_mechanism == "PLAIN" else "scram.ScramLoginModule"
            out["sasl.mechanism"] = self.sasl_mechanism
            out["sasl.jaas.config"] = (
                f"org.apache.kafka.common.security.{module} required "
                f"username={json.dumps(self.username)} password={json.dumps(self.password)};"
            )
        if self.ssl_cafile and self.security_protocol.endswith("SSL"):
            out.update({"ssl.truststore.type": "PEM", "ssl.truststore.location": self.ssl_cafile})
        return out


def resolve_kafka(settings: Settings, origins: dict[str, str]) -> KafkaConfig:
    """Each KafkaSource names its servers; FEATURELINE_KAFKA_HOST/_PORT replace them
    only when set (the unset half keeps the default)."""
    override = ""
    if settings.is_set("kafka_host") or settings.is_set("kafka_port"):
        override = settings.kafka_bootstrap
        which = [settings.origin(n) for n in ("kafka_host", "kafka_port") if settings.is_set(n)]
        origins["kafka.bootstrap_override"] = ", ".join(which)
    values: dict[str, str] = {}
    for key in ("security_protocol", "sasl_mechanism", "username", "password", "ssl_cafile"):
        name = f"kafka_{key}"
        if settings.is_set(name):
            values[key] = str(getattr(settings, name))
            origins[f"kafka.{key}"] = settings.origin(name)
    protocol = values.get("security_protocol", "PLAINTEXT").upper()
    if protocol not in KAFKA_PROTOCOLS:
        raise BadInputError(
            f"FEATURELINE_KAFKA_SECURITY_PROTOCOL {protocol!r}: expected one of {', '.join(KAFKA_PROTOCOLS)}"
        )
    mechanism = values.get("sasl_mechanism", "PLAIN" if protocol.startswith("SASL") else "").upper()
    if protocol.startswith("SASL"):
        if mechanism not in KAFKA_MECHANISMS:
            raise BadInputError(
                f"FEATURELINE_KAFKA_SASL_MECHANISM {mechanism!r}: "
                f"expected one of {', '.join(KAFKA_MECHANISMS)}"
            )
        if not values.get("username"):
            raise BadInputError(f"Kafka {protocol} needs FEATURELINE_KAFKA_USERNAME and _PASSWORD")
    return KafkaConfig(
        bootstrap_override=override,
        security_protocol=protocol,
        sasl_mechanism=mechanism,
        username=values.get("username", ""),
        password=values.get("password", ""),
        ssl_cafile=values.get("ssl_cafile", ""),
    )


def kafka_config(settings: Settings) -> KafkaConfig:
    """Kafka overrides and security (no feature_store.yaml needed: Feast keeps Kafka
    settings on each KafkaSource, not in the yaml)."""
    return resolve_kafka(settings, {})


def stream_bootstrap(kafka: KafkaConfig, servers_by_topic: Mapping[str, str]) -> str:
    """The one cluster a stream job reads: each topic's KafkaSource servers (or the
    FEATURELINE_KAFKA_HOST/_PORT override). Sources on different clusters need one job
    each (their offsets are committed to one cluster)."""
    chosen = {topic: kafka.bootstrap(servers) for topic, servers in servers_by_topic.items()}
    distinct = sorted(set(chosen.values()))
    if len(distinct) > 1:
        listing = "; ".join(f"{t}: {s}" for t, s in sorted(chosen.items()))
        raise BadInputError(
            f"the stream's KafkaSources name different bootstrap servers ({listing}); "
            "run one `featureline stream --views ...` per cluster"
        )
    if not distinct or not distinct[0]:
        raise BadInputError("no KafkaSource names kafka_bootstrap_servers")
    return distinct[0]
