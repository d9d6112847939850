"""``ingest.yaml``: the backend ingest service's config (pydantic, ``extra="forbid"``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from gateway.common import Backoff, MqttConfig, read_password, state_directory
from gateway.crypto.signing import Verifier, verifier_from_files
from gateway.dashboard.config import DashboardConfig
from gateway.durations import Duration
from gateway.errors import ConfigError
from gateway.influx.sinkconfig import SinkConfig
from gateway.wire.compact import Schemas
from gateway.yamlfile import beside, load_yaml, validation_problems


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


#: MqttConfig settings the ingest does not use, and why
INGEST_UNUSED = {
    "qos": "not used by the ingest: it always subscribes with QoS 1 (acknowledged after "
           "the database has the data)",
    "max_inflight": "not used by the ingest (it publishes nothing); receive_maximum bounds "
                    "what the broker sends",
    "status_interval": "not used by the ingest (the gateway's retained status message)",
}


class IngestMqtt(MqttConfig):
    UNUSED_FIELDS: ClassVar[dict[str, str]] = INGEST_UNUSED
    share_group: str | None = Field(
        default=None,
        description="MQTT v5 shared subscription group, to split the load over several "
        "ingest processes. Caveat (measured with mosquitto 2.0.11): the broker does not "
        "restore shared subscriptions after its own restart, so messages published before "
        "the ingest resubscribes are lost. Unset (default): a plain subscription on a "
        "persistent session, which the broker keeps across restarts")
    gateways: list[str] = Field(
        default_factory=lambda: ["+"],
        description="gateway ids to take (default all); give each ingest process its own "
        "list to split the load without shared subscriptions")
    receive_maximum: int = Field(
        default=10000, ge=10, le=65535,
        description="unacknowledged messages the broker may send, and the most the ingest "
        "holds in memory (it stops reading the socket beyond it, whatever the broker does: "
        "about 8 KB each with MQTT v5, so 10000 is ~80 MB); must hold a full batch "
        "(batch.max_lines) or batches only ever fill by time")
    session_expiry: Duration = Field(
        default=86400.0, description="MQTT v5: how long the broker keeps our queue while the "
        "ingest is away (3.1.1 brokers keep a persistent session until it is cleaned)")
    protocol: Literal["auto", "5", "3.1.1"] = Field(
        default="auto", description="MQTT version: auto tries v5 and falls back to 3.1.1 when "
        "the broker does not speak v5 (both with a persistent session and acknowledgements "
        "only after the database has the data); 5 or 3.1.1 insist")

    @model_validator(mode="after")
    def _only_honoured(self) -> IngestMqtt:
        # the gateway's publishing settings: refused here rather than silently ignored
        unused = sorted(self.model_fields_set & INGEST_UNUSED.keys())
        if unused:
            raise ValueError("; ".join(f"{k}: {INGEST_UNUSED[k]}" for k in unused))
        return self

    @model_validator(mode="after")
    def _shared_needs_v5(self) -> IngestMqtt:
        if self.share_group and self.protocol == "3.1.1":
            raise ValueError("share_group is an MQTT v5 shared subscription: it needs "
                             "protocol 5 or auto")
        return self


class AmqpSource(_Strict):
    """Consume from a replicated queue of a clustered broker (RabbitMQ: a quorum queue
    bound to ``amq.topic``, where its MQTT plugin routes what the gateways publish) as
    one of N competing workers, instead of subscribing over MQTT. Each message is
    acknowledged after InfluxDB accepted its lines; one a worker did not acknowledge
    (it died) goes to another, and is written again to the same points: exactly once in
    the database."""

    urls: list[str] = Field(
        min_length=1, description="the cluster's nodes, amqp://user@host:port/vhost, tried "
        "in turn (the next when one dies)")
    password_file: Path | None = Field(
        default=None, description="file holding the AMQP password (not in the URL)")
    password_env: str | None = Field(
        default=None, description="environment variable holding the AMQP password")
    queue: str = Field(default="edgegw-ingest", description="the shared (quorum) queue")
    prefetch: int = Field(
        default=1000, ge=1, le=65535, description="messages in flight to this worker")

    @field_validator("urls")
    @classmethod
    def _urls(cls, v: list[str]) -> list[str]:
        for u in v:
            parts = urlsplit(u)
            if parts.scheme not in ("amqp", "amqps") or parts.password is not None:
                raise ValueError(f"{u!r}: an amqp:// or amqps:// URL without a password "
                                 "(give it in password_file or password_env)")
        return v

    def password(self) -> str | None:
        return read_password(self)


class BatchConfig(_Strict):
    max_lines: int = Field(default=5000, ge=1, le=1_000_000)
    max_interval: Duration = 1.0
    retry: Backoff = Backoff(initial=0.5, max=30.0)


class TrustedKeyConfig(_Strict):
    public_key: Path = Field(description="PEM public key (the gateway's <key>.pub.pem)")
    gateways: list[str] | Literal["any"] = Field(
        description="gateway ids that may sign with this key (required: a batch from "
        "another gateway signed with it is dead-lettered), or `any` to let it sign for "
        "every gateway (a fleet key)")

    def allowed(self) -> list[str] | None:
        return None if self.gateways == "any" else self.gateways


class SignaturesConfig(_Strict):
    """Check payload signatures (docs/wire-format.md, "Signed payloads")."""

    require: bool = Field(default=False, description="dead-letter unsigned batches too")
    keys: dict[str, TrustedKeyConfig] = Field(
        default_factory=dict, description="key id -> public key; a signature by a key id "
        "not listed here is dead-lettered")

    @model_validator(mode="after")
    def _keys(self) -> SignaturesConfig:
        if self.require and not self.keys:
            raise ValueError("require: true needs at least one key in keys")
        return self


class IngestHealthConfig(_Strict):
    enabled: bool = Field(default=True, description="serve /healthz and /metrics")
    host: str = Field(default="127.0.0.1", description="loopback unless a firewall guards it")
    port: int = Field(default=9106, ge=0, le=65535, description="0 = any free port")


class IngestConfig(_Strict):
    version: Literal[1] = 1
    mqtt: IngestMqtt = IngestMqtt()
    amqp: AmqpSource | None = Field(
        default=None, description="consume from a clustered broker's replicated queue as a "
        "competing worker (AMQP) instead of an MQTT subscription; mqtt.topic_prefix and "
        "mqtt.gateways still say which messages (docs/architecture.md, Scaling out)")
    sink: SinkConfig
    batch: BatchConfig = BatchConfig()
    signatures: SignaturesConfig | None = None
    profiles_dir: list[Path] = Field(
        default_factory=list, description="profile folders for compact records (beside "
        "the config file unless absolute), searched before the shipped profiles: the "
        "gateway's own profiles must be here too")
    dead_letter: Path | None = Field(
        default=None, description="payloads that cannot be decoded or are refused, with "
        "the reason (JSON lines); default $STATE_DIRECTORY/dead-letter.jsonl under systemd "
        "(the shipped unit's state directory), else beside this file")
    max_payload: int = Field(default=1_048_576, ge=1024, description="bytes; larger -> dead letter")
    dedupe_window: int = Field(default=100_000, ge=0,
                               description="recent (gateway, seq) remembered per process")
    health: IngestHealthConfig = Field(
        default=IngestHealthConfig(), description="the monitoring endpoint: /healthz (503 "
        "while not subscribed) and /metrics (received, written, duplicates, dead letters "
        "by reason, refused signatures); a taken port is logged and the ingest runs on")
    dashboard: DashboardConfig = Field(
        default=DashboardConfig(), description="the production dashboard (`edgegw dashboard "
        "-c ingest.yaml`, a process of its own) reading the sink's database")
    id_tags: list[str] = Field(
        default_factory=lambda: ["device"],
        description="identifier kinds written as InfluxDB tags (id_<kind>); every other "
        "kind is a string field. Only bounded sets belong here: one code per device, or an "
        "order number if orders are few; a product's or a batch's code is unbounded and "
        "would reach InfluxDB's max-values-per-tag limit (writes refused)")

    @model_validator(mode="after")
    def _batch_fits(self) -> IngestConfig:
        if self.mqtt.receive_maximum < self.batch.max_lines:
            raise ValueError(
                f"mqtt.receive_maximum ({self.mqtt.receive_maximum}) must be at least "
                f"batch.max_lines ({self.batch.max_lines}): the broker sends no more "
                "unacknowledged messages than that, so a batch could never fill")
        return self


@dataclass(frozen=True, slots=True)
class LoadedIngest:
    path: Path
    config: IngestConfig

    def resolve(self, p: Path) -> Path:
        return p if p.is_absolute() else self.path.parent / p

    @property
    def dead_letter(self) -> Path:
        if self.config.dead_letter is not None:
            return self.resolve(self.config.dead_letter)
        return state_directory(self.path.parent) / "dead-letter.jsonl"

    def schemas(self) -> Schemas:
        """Where compact records find their profiles (index -> point name)."""
        from gateway.profiles import default_profile_dirs

        s = Schemas()
        s.search = [self.resolve(p) for p in self.config.profiles_dir] + default_profile_dirs()
        return s

    def verifier(self) -> Verifier | None:
        """The signature checker, or None when ``signatures`` is not configured.
        Raises KeyFileError naming an unusable public key file."""
        sc = self.config.signatures
        if sc is None:
            return None
        return verifier_from_files(
            ((kid, self.resolve(k.public_key), k.allowed()) for kid, k in sc.keys.items()),
            sc.require)


def load_ingest_config(path: str | Path) -> LoadedIngest:
    path = Path(path)
    try:
        cfg = IngestConfig.model_validate(load_yaml(path))
        return LoadedIngest(path, beside(cfg, path.absolute().parent))
    except ConfigError:
        raise
    except ValueError as exc:
        raise ConfigError(validation_problems(str(path), exc)) from None
