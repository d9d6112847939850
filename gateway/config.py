"""``gateway.yaml``: one file for the gateway id, uplink, store, pipeline and devices.

Validated by pydantic v2 with ``extra="forbid"``. :func:`load_config` returns a
:class:`LoadedConfig` whose devices have their profiles resolved, or raises
:class:`~gateway.errors.ConfigError` listing *every* problem as ``file: path: message``.
"""

from __future__ import annotations

import math
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

from pydantic import ConfigDict, Field, field_validator, model_validator

from drivers.connection import Connection
from drivers.opcua.config import Opcua
from drivers.registry import protocol_of
from gateway.common import (
    Backoff,
    MqttConfig,
    nearest_existing,
    read_password,
    state_directory,
)
from gateway.common import (
    Strict as _Strict,
)
from gateway.durations import Duration
from gateway.errors import ConfigError
from gateway.identifiers.codes import CodeError, normalise
from gateway.influx.sinkconfig import InfluxV1, InfluxV2
from gateway.production.spec import ProductionConfig
from gateway.profiles import (
    Profile,
    Workarounds,
    default_profile_dirs,
    find_profile,
    load_profile_file,
)
from gateway.yamlfile import beside, load_yaml, validation_problems

_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
ID_RULE = "1-64 characters: letters, digits, '_', '-', '.'; starting with a letter or digit"


def _code_or_none(v: str | None) -> str | None:
    if v is None:
        return v
    try:
        return normalise(v)
    except CodeError as exc:
        raise ValueError(str(exc)) from None


def _check_id(v: str) -> str:
    if not _ID.match(v):
        raise ValueError(f"ids use {ID_RULE}; got {v!r}")
    return v


class PackConfig(_Strict):
    """How the compact encoding packs batches into messages."""

    max_delay: Duration = Field(
        default=1.0, description="latency budget: a batch waits at most this long for others to "
        "share its message (backlog after an outage goes out at once)")
    max_bytes: int = Field(
        default=65536, ge=1024, le=16 << 20, description="records per message, before compression")
    compression: int = Field(default=6, ge=0, le=9, description="zlib level; 0 = none")


class BudgetConfig(_Strict):
    """Bandwidth budget for the uplink (all MQTT bytes, approximately)."""

    bytes_per_s: int = Field(
        ge=100, description="e.g. 8000 for 64 kbit/s; set it below what the link carries, so "
        "alarms never queue behind our own data")
    burst: int | None = Field(
        default=None, ge=100, description="bytes that may go at once after a quiet time (default: "
        "one second's worth)")


class SparkplugConfig(_Strict):
    group_id: str = Field(default="edgegw", pattern=r"^[^/#+]+$",
        description="Sparkplug group id")
    node_id: str | None = Field(default=None, pattern=r"^[^/#+]+$",
                                description="edge node id (default: the gateway id)")


class RadioPolicy(_Strict):
    """How sending adapts to the modem's radio (a ``modem-at`` device must be configured)."""

    poor_rsrp_dbm: float = Field(default=-110.0, description="at or below: a poor signal")
    poor_sinr_db: float = Field(default=0.0, description="at or below: a poor signal")
    factor: float = Field(
        default=4.0, ge=1, le=16, description="pack delay multiplier on a poor signal (bigger "
        "packs, fewer messages)")
    compression: int = Field(default=9, ge=0, le=9, description="zlib level on a poor signal")
    falling_db: float = Field(
        default=10.0, ge=0, description="a signal (RSRP) that fell this much within falling_window "
        "counts as poor too, before it reaches the threshold; 0: only the level counts")
    falling_window: Duration = Field(default=60.0, gt=0)
    defer_bulk: bool = Field(
        default=True, description="on a poor signal, batches of bulk-priority points only wait in "
        "the store; they follow once the signal is good again")


class GatewayMqtt(MqttConfig):
    encoding: Literal["json", "compact", "sparkplug"] = Field(
        default="json", description="json: one JSON message per batch on "
        "<prefix>/<gw>/<device>/data; compact: binary records packed into compressed messages on "
        "<prefix>/<gw>/pack (docs/wire-format.md); sparkplug: Sparkplug B (spBv1.0/<group>/...) "
        "for a SCADA that expects it")
    sparkplug: SparkplugConfig = SparkplugConfig()
    pack: PackConfig = PackConfig()
    budget: BudgetConfig | None = Field(
        default=None, description="bytes/s for ordinary data; alarm and state batches go first and "
        "are never held back; what waits stays in the store")
    radio: RadioPolicy = RadioPolicy()
    slow_publish: Duration = Field(
        default=2.0, description="a PUBACK slower than this means a bad link: the pack delay "
        "doubles (up to 8x) until publishes are fast again")


class _DirectRoute(_Strict):
    """What the direct InfluxDB route adds to the sink settings it shares with the
    ingest."""

    retry: Backoff = Field(
        default=Backoff(), description="backoff while InfluxDB is unavailable (a Retry-After "
        "from the database is honoured)")
    budget: BudgetConfig | None = Field(
        default=None, description="bytes/s of line protocol for ordinary data; alarm and state "
        "batches go first and are never held back; what waits stays in the store")


class GatewayInfluxV1(_DirectRoute, InfluxV1):
    """The direct route to InfluxDB 1.x (``/write``)."""


class GatewayInfluxV2(_DirectRoute, InfluxV2):
    """The direct route to InfluxDB 2.x/3.x or VictoriaMetrics (``/api/v2/write``)."""


GatewayInflux = GatewayInfluxV1 | GatewayInfluxV2


class UplinkConfig(_Strict):
    mqtt: GatewayMqtt = Field(default=GatewayMqtt(), description="the MQTT uplink (default)")
    influx: Annotated[GatewayInflux, Field(discriminator="kind")] | None = Field(
        default=None, description="write directly to InfluxDB instead of MQTT (no broker)")

    @model_validator(mode="after")
    def _one_route(self) -> UplinkConfig:
        if self.influx is None or "mqtt" not in self.model_fields_set:
            return self
        if "reconnect" in self.mqtt.model_fields_set:
            raise ValueError(
                "uplink.mqtt.reconnect is the broker's backoff, and the InfluxDB route has no "
                "broker: set uplink.influx.retry for the database and pipeline.reconnect for "
                "the devices")
        raise ValueError("give either uplink.mqtt or uplink.influx, not both")


class StoreConfig(_Strict):
    kind: Literal["sqlite", "memory"] = Field(
        default="sqlite", description="sqlite: durable spool on disk; memory: lost on restart")
    path: Path | None = Field(
        default=None, description="spool file; default $STATE_DIRECTORY/spool.db (systemd) or "
        "spool.db beside the config file; relative paths are beside the config file")
    max_batches: int = Field(default=1_000_000, ge=10, description="bound of the spool (batches)")
    max_bytes: int = Field(
        default=256 * 1024 * 1024, ge=16 * 1024, description="bound of the spool (payload bytes)")
    max_age: Duration = Field(default=7 * 86400.0, description="0 = no age cap")
    policy: Literal["drop-oldest", "drop-newest", "block-readers"] = Field(
        default="drop-oldest", description="when full: drop-oldest, drop-newest, or block-readers "
        "(device polling waits for room; missed polls are counted); every drop is counted by "
        "reason and logged")
    sync_interval: Duration = Field(
        default=1.0, description="fsync the spool this often (bounds what a power cut can lose); 0 "
        "= fsync every commit")
    encryption_key_file: Path | None = Field(
        default=None, description="encrypt stored batches (AES-256-GCM) with this key: 32 bytes, "
        "raw or base64, mode 0600 (edgegw certs spool-key); keep it off the SD card")

    @model_validator(mode="after")
    def _key_needs_disk(self) -> StoreConfig:
        if self.encryption_key_file is not None and self.kind != "sqlite":
            raise ValueError("encryption_key_file: only the sqlite store keeps data at rest")
        return self


IdKind = Literal["gateway", "device", "product", "batch"]
ID_KINDS: tuple[IdKind, ...] = ("gateway", "device", "product", "batch")


class IdNodeConfig(_Strict):
    """The identifier-resolution secondary node (SNMS REST API)."""

    url: str = Field(description="e.g. http://snms.example:8000")
    username: str = Field(description="user at the node")
    password_file: Path | None = Field(default=None, description="file holding the node password")
    password_env: str | None = Field(
        default=None, description="environment variable holding the node password")
    login: Literal["v1", "plain"] = Field(
        default="v1", description="v1 sends sha256hex(sha256hex(password) + date)")
    timeout: Duration = 10.0

    @model_validator(mode="after")
    def _secret(self) -> IdNodeConfig:
        if (self.password_file is None) == (self.password_env is None):
            raise ValueError("give the node password as password_file or password_env "
                             "(exactly one; never in this file)")
        return self

    def password(self) -> str | None:
        return read_password(self)


class IdValueConfig(_Strict):
    index: int = Field(ge=2000, description="user data starts at index 2000")
    type: str = Field(min_length=1, max_length=128)
    value: str = Field(
        description="text, or a format string over {code} {kind} {device} {gateway} {profile} "
        "{site}, and for the gateway's code {imei} {iccid}; a value whose fields are unknown is "
        "not registered")


class IdentifiersConfig(_Strict):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    prefix: str | None = Field(
        default=None, description="the enterprise prefix, e.g. 88.118.8, for codes made by `edgegw "
        "id new`")
    node: IdNodeConfig | None = Field(default=None, description="register and resolve here")
    template_version: str = Field(
        default="1.0", min_length=1, max_length=128, description="the node's template version for "
        "registered values")
    register_: list[IdKind] = Field(
        default_factory=lambda: list(ID_KINDS), alias="register", description="which codes are "
        "registered when first seen")
    values: dict[IdKind, list[IdValueConfig]] = Field(
        default_factory=dict, description="values registered with each kind of code")
    enrich: dict[Literal["product", "batch"], dict[int, str]] = Field(
        default_factory=dict, description="resolve these codes and tag samples: {product: {2001: "
        "product_model}} adds ids.product_model from value 2001")
    retry: Backoff = Field(
        default=Backoff(initial=5.0, max=300.0), description="backoff for registrations the node "
        "did not take")
    batch_size: int = Field(
        default=500, ge=1, le=2000, description="codes per batchCreate call (the node takes at "
        "most 2000)")
    cache_min_ttl: Duration = Field(
        default=60.0, description="resolved values are cached at least this long")
    cache_max_ttl: Duration = Field(
        default=86400.0, description="and at most this long (else the value's own ttl)")

    @field_validator("prefix")
    @classmethod
    def _prefix(cls, v: str | None) -> str | None:
        if v is None:
            return v
        try:
            return normalise(f"{v}/x").split("/")[0]
        except CodeError as exc:
            raise ValueError(str(exc).replace("/x'", "'")) from None


class PipelineConfig(_Strict):
    heartbeat: Duration = Field(default=60.0, description="report every point at least this often")
    reconnect: Backoff = Field(
        default=Backoff(), description="backoff for reconnecting to a device that failed")
    report: Literal["change", "always"] = Field(
        default="change", description="change: report by exception (deadbands, heartbeat); always: "
        "every value every poll")
    poll_slots: Annotated[int, Field(ge=1, le=1000)] | Literal["auto"] = Field(
        default="auto", description="devices are assigned round-robin to this many evenly "
        "spaced instants per period, aligned to wall-clock multiples of the period: 1 polls every "
        "device at once (least CPU: one wake-up serves them all), more slots spread the load "
        "(less added latency); auto: one slot per 32 devices (bench/README.md has the measured "
        "trade-off)")

    def slots_for(self, devices: int) -> int:
        """The number of poll slots for this many devices."""
        if self.poll_slots == "auto":
            return max(1, math.ceil(devices / DEVICES_PER_SLOT))
        return self.poll_slots


#: devices per poll slot with ``poll_slots: auto``
DEVICES_PER_SLOT = 32


class DeviceConfig(_Strict):
    id: str = Field(description="device id (unique; letters, digits, _ - .)")
    profile: str = Field(description="profile name, vendor/model (edgegw profiles lists them)")
    connection: Connection = Field(description="how to reach it; the kind must match the profile")
    enabled: bool = Field(default=True, description="false: configured but not polled")
    poll: dict[str, Duration] = Field(
        default_factory=dict, description="override poll group periods of the profile")
    workarounds: dict[str, object] = Field(
        default_factory=dict, description="override the profile's workarounds")
    identifier: str | None = Field(
        default=None, description="the device's identifier code, e.g. 88.118.8/CNC-01")
    context_for: list[str] = Field(
        default_factory=list, description="devices whose samples carry this device's product/batch "
        "code (a point with 'context' in its profile) until the next read")

    _check = field_validator("id")(classmethod(lambda cls, v: _check_id(v)))

    _code = field_validator("identifier")(classmethod(lambda cls, v: _code_or_none(v)))


class GatewayInfo(_Strict):
    id: str = Field(description="the gateway's id (letters, digits, _ - .): in topics and payloads")
    site: str | None = Field(
        default=None, description="free text (the site or hall), registered with identifier codes")
    identifier: str | None = Field(
        default=None, description="the gateway's own identifier code, registered with the module's "
        "IMEI and ICCID; an identifier carrier in the SIM (modem-at carrier) takes precedence")

    _check = field_validator("id")(classmethod(lambda cls, v: _check_id(v)))
    _code = field_validator("identifier")(classmethod(lambda cls, v: _code_or_none(v)))


class HealthConfig(_Strict):
    """The local HTTP endpoint: /healthz, /metrics (Prometheus), / (status page)."""

    enabled: bool = Field(
        default=True, description="serve /healthz, /metrics, /status.json and the status page")
    host: str = Field(
        default="127.0.0.1", description="loopback by default; 0.0.0.0 exposes it to the network "
        "(no authentication: use a firewall)")
    port: int = Field(default=9105, ge=0, le=65535, description="0 = any free port")


class LoggingConfig(_Strict):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        default="INFO", description="log level (applies at once on a reload)")
    format: Literal["text", "json"] = Field(
        default="text", description="json: one object per line, with 'device' on every line logged "
        "for a device")
    fault_summary_interval: Duration = Field(
        default=60.0, description="a repeating fault is logged once, then summarised at this "
        "interval")


class WritesConfig(_Strict):
    """Device writes (setpoints, commands): off unless enabled here, and only to points
    marked access: rw in their profile; every write is logged with who and what."""

    enabled: bool = False


class SigningConfig(_Strict):
    """Sign every batch (docs/wire-format.md, "Signed payloads"); create the key with
    ``edgegw certs signing-key``."""

    key_file: Path = Field(description="PEM private key, Ed25519 or EC P-256, mode 0600")
    key_id: str = Field(
        pattern=r"^[A-Za-z0-9._-]{1,64}$", description="names the key to the ingest "
        "(signatures.keys); change it when the key changes")
    algorithm: Literal["ed25519", "ecdsa-p256"] = Field(
        default="ed25519", description="the key file's type must match")


class GatewayConfig(_Strict):
    version: Literal[1] = Field(default=1, description="config schema version")
    gateway: GatewayInfo = Field(description="who this gateway is")
    profiles_dir: list[Path] = Field(
        default_factory=list, description="extra profile folders (relative to this file); searched "
        "before ./profiles beside it and the shipped profiles ($EDGEGW_PROFILES first of all)")
    uplink: UplinkConfig = Field(
        default=UplinkConfig(), description="where batches go: MQTT (default) or InfluxDB directly")
    store: StoreConfig = Field(
        default=StoreConfig(), description="the durable queue between devices and the uplink")
    pipeline: PipelineConfig = Field(
        default=PipelineConfig(), description="report by exception, heartbeat, poll scheduling")
    logging: LoggingConfig = Field(default=LoggingConfig(), description="log level and format")
    health: HealthConfig = Field(default=HealthConfig(), description="the local HTTP endpoint")
    writes: WritesConfig = Field(
        default=WritesConfig(), description="device writes (setpoints, commands)")
    identifiers: IdentifiersConfig = Field(
        default=IdentifiersConfig(), description="identifier codes: the secondary node, what is "
        "registered")
    production: ProductionConfig = Field(
        default=ProductionConfig(), description="shift calendar and KPI interval for the "
        "machines whose profiles have a production section (docs/production.md)")
    signing: SigningConfig | None = Field(
        default=None, description="sign every batch (docs/wire-format.md, Signed payloads)")
    devices: list[DeviceConfig] = Field(default_factory=list, description="the devices")

    @model_validator(mode="after")
    def _unique(self) -> GatewayConfig:
        if self.signing is not None and self.uplink.mqtt.encoding == "sparkplug":
            raise ValueError("signing: JSON batches and compact packs are signed; Sparkplug "
                             "B payloads cannot carry a signature (use encoding json or "
                             "compact)")
        seen: set[str] = set()
        for i, d in enumerate(self.devices):
            if d.id in seen:
                raise ValueError(f"devices[{i}].id: duplicate device id '{d.id}'")
            seen.add(d.id)
        for i, d in enumerate(self.devices):
            unknown = [t for t in d.context_for if t not in seen or t == d.id]
            if unknown:
                raise ValueError(f"devices[{i}].context_for: {unknown} are not other "
                                 f"devices of this gateway")
        return self


@dataclass(frozen=True, slots=True)
class Device:
    """A configured device with its profile resolved and overrides applied."""

    config: DeviceConfig
    profile_name: str
    profile: Profile
    workarounds: Workarounds
    poll_periods: dict[str, float]

    @property
    def id(self) -> str:
        return self.config.id

    @property
    def connection(self) -> Connection:
        return self.config.connection

    @property
    def profile_tag(self) -> str:
        """``vendor/model@version``: the ``prof`` of its payloads, the compact schema key."""
        return f"{self.profile_name}@{self.profile.version}"


@dataclass(frozen=True, slots=True)
class LoadedConfig:
    path: Path
    config: GatewayConfig
    devices: list[Device]

    @property
    def state_dir(self) -> Path:
        """$STATE_DIRECTORY (systemd) or the config file's directory."""
        return state_directory(self.path.parent)

    @property
    def store_path(self) -> Path:
        """Where the durable spool lives (see StoreConfig.path)."""
        p = self.config.store.path
        if p is None:
            return self.state_dir / "spool.db"
        return p if p.is_absolute() else self.path.parent / p

    def resolve(self, p: Path) -> Path:
        """A path from the config: relative paths are beside the config file."""
        return p if p.is_absolute() else self.path.parent / p


@dataclass(frozen=True, slots=True)
class ConfigFile:
    """A file the config names: where (``uplink.mqtt.password_file``), which file, whether
    it holds a secret (it must not be readable by every user), and whether the gateway
    creates it when it is missing (the OPC UA client certificate and key)."""

    where: str
    path: Path
    secret: bool = False
    created: bool = False


def config_files(loaded: LoadedConfig) -> list[ConfigFile]:
    """Every file the config names (absolute: load_config put them beside the config)."""
    cfg = loaded.config
    out: list[ConfigFile] = []

    def add(where: str, p: Path | None, secret: bool = False, created: bool = False) -> None:
        if p is not None:
            out.append(ConfigFile(where, loaded.resolve(p), secret, created))

    mq = cfg.uplink.mqtt
    add("uplink.mqtt.password_file", mq.password_file, secret=True)
    if mq.tls is not None:
        add("uplink.mqtt.tls.ca_file", mq.tls.ca_file)
        add("uplink.mqtt.tls.cert_file", mq.tls.cert_file)
        add("uplink.mqtt.tls.key_file", mq.tls.key_file, secret=True)
    sink = cfg.uplink.influx
    if sink is not None:
        if isinstance(sink, InfluxV1):
            add("uplink.influx.password_file", sink.password_file, secret=True)
        else:
            add("uplink.influx.token_file", sink.token_file, secret=True)
    if cfg.signing is not None:
        add("signing.key_file", cfg.signing.key_file, secret=True)
    add("store.encryption_key_file", cfg.store.encryption_key_file, secret=True)
    node = cfg.identifiers.node
    if node is not None:
        add("identifiers.node.password_file", node.password_file, secret=True)
    for i, d in enumerate(cfg.devices):
        c = d.connection
        if isinstance(c, Opcua):
            at = f"devices[{i}].connection"
            add(f"{at}.password_file", c.password_file, secret=True)
            add(f"{at}.user_certificate", c.user_certificate)
            add(f"{at}.user_key", c.user_key, secret=True)
            add(f"{at}.security.certificate", c.security.certificate, created=True)
            add(f"{at}.security.private_key", c.security.private_key, secret=True,
                created=True)
            for k, t in enumerate(c.security.trust):
                add(f"{at}.security.trust[{k}]", t)
    return out


def file_problems(loaded: LoadedConfig) -> tuple[list[tuple[str, str]], list[str]]:
    """(errors, warnings) about the files the config names: a file that is missing or
    cannot be read is an error ``(location, message)`` (the gateway would fail on it
    later, with less to say); a secret readable by every user is a warning."""
    errors: list[tuple[str, str]] = []
    warnings: list[str] = []
    for f in config_files(loaded):
        at = f"{loaded.path}: {f.where}"
        try:
            mode = f.path.stat().st_mode
            if f.path.is_dir():
                if "trust[" not in f.where:  # only a trust entry may be a directory
                    errors.append((at, f"{f.path} is a directory, not a file"))
                continue
            with f.path.open("rb"):
                pass
        except FileNotFoundError:
            if not f.created:
                errors.append((at, f"{f.path} does not exist"))
            continue
        except OSError as exc:
            errors.append((at, f"cannot read {f.path}: {exc.strerror or exc}"))
            continue
        if f.secret and mode & 0o004:
            warnings.append(f"{at}: {f.path} is readable by every user (mode "
                            f"{mode & 0o777:o}); run: chmod 600 {f.path}")
    if loaded.config.store.kind == "sqlite":
        warnings += _spool_space(loaded)
    return errors, warnings


def _spool_space(loaded: LoadedConfig) -> list[str]:
    """A warning when the spool's filesystem is (nearly) full or not writable: the
    gateway would start on a memory store (data lost on restart)."""
    at = f"{loaded.path}: store.path"
    where = nearest_existing(loaded.store_path.parent)
    try:
        free = shutil.disk_usage(where).free
    except OSError as exc:
        return [f"{at}: cannot check the space for {loaded.store_path}: {exc.strerror}"]
    if not os.access(where, os.W_OK):
        return [f"{at}: {where} is not writable: the gateway would run on a memory store"]
    if free < 16 * 1024 * 1024:
        return [f"{at}: only {free // 1024} KiB free for {loaded.store_path}: a full disk "
                "drops batches (and the gateway may start on a memory store)"]
    return []


def check_files(loaded: LoadedConfig) -> list[str]:
    """Raise ConfigError for files that are missing or cannot be read; return the
    warnings (world-readable secrets)."""
    errors, warnings = file_problems(loaded)
    if errors:
        raise ConfigError(errors)
    return warnings


def load_config(path: str | Path) -> LoadedConfig:
    """Load and validate ``gateway.yaml`` with all its profiles; raise ConfigError."""
    path = Path(path)
    data = load_yaml(path)
    try:
        cfg = GatewayConfig.model_validate(data)
    except ValueError as exc:
        raise ConfigError(validation_problems(str(path), exc)) from None
    cfg = beside(cfg, path.absolute().parent)  # every reader: the same files, from any cwd
    search = [(path.parent / d).resolve() for d in cfg.profiles_dir]
    search += [path.parent / "profiles", *default_profile_dirs()]
    if env := os.environ.get("EDGEGW_PROFILES"):
        search.insert(0, Path(env))
    problems: list[tuple[str, str]] = []
    devices: list[Device] = []
    profiles: dict[Path, Profile] = {}  # many devices share one profile: parse it once
    for i, dc in enumerate(cfg.devices):
        where = f"{path}: devices[{i}]"
        try:
            ppath = find_profile(dc.profile, search)
            profile = profiles.get(ppath) or profiles.setdefault(ppath, load_profile_file(ppath))
        except ConfigError as exc:
            problems += [(f"{where}.profile", f"{loc}: {msg}") for loc, msg in exc.problems]
            continue
        want = protocol_of(dc.connection.kind)
        if profile.protocol != want:
            problems.append((f"{where}.connection.kind", f"'{dc.connection.kind}' cannot "
                             f"talk to profile {dc.profile} (protocol: {profile.protocol})"))
            continue
        unknown = set(dc.poll) - set(profile.poll_groups)
        if unknown:
            problems.append(
                (f"{where}.poll", f"unknown poll group(s) {sorted(unknown)}; the profile has "
                 f"{sorted(profile.poll_groups)}")
            )
        try:
            wa = Workarounds.model_validate(
                {**profile.workarounds.model_dump(), **dc.workarounds}
            )
        except ValueError as exc:
            problems += validation_problems(str(path), exc, f"devices[{i}].workarounds")
            continue
        if dc.context_for and not any(p.context for p in profile.points):
            problems.append((f"{where}.context_for", f"profile {dc.profile} has no point "
                             "with 'context: product' or 'context: batch'"))
        periods = {**profile.poll_groups, **dc.poll}
        bad = [g for g, p in periods.items() if p < 0.01]
        if bad:
            problems.append((f"{where}.poll", f"periods must be at least 10ms: {bad}"))
        devices.append(Device(dc, dc.profile, profile, wa, periods))
    if problems:
        raise ConfigError(problems)
    return LoadedConfig(path, cfg, devices)
