"""Config models and helpers shared by the edge agent (``gateway.yaml``) and the backend
ingest (``ingest.yaml``): the strict base model, backoff, TLS, an MQTT connection, the
state directory; plus the TLS context both build from a :class:`TlsConfig`. Below both,
so neither imports the other for them."""

from __future__ import annotations

import os
import ssl
from pathlib import Path
from typing import Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from gateway.durations import Duration


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _PasswordSource(Protocol):
    @property
    def password_file(self) -> Path | None: ...
    @property
    def password_env(self) -> str | None: ...


def read_password(src: _PasswordSource) -> str | None:
    """The password from ``password_env`` or ``password_file`` (never from the config)."""
    if src.password_env:
        return os.environ.get(src.password_env)
    if src.password_file:
        return src.password_file.read_text(encoding="utf-8").strip()
    return None


class Backoff(Strict):
    initial: Duration = Field(default=0.5, description="first wait after a failure")
    max: Duration = Field(default=30.0, description="the wait doubles up to this")
    jitter: float = Field(
        default=0.2, ge=0, le=1, description="each wait varies by up to this fraction, so many "
        "clients do not retry in step")


class TlsConfig(Strict):
    ca_file: Path | None = Field(
        default=None, description="CA certificate(s) that signed the broker's certificate "
        "(default: the system's)")
    cert_file: Path | None = Field(
        default=None, description="client certificate (PEM) for mutual TLS")
    key_file: Path | None = Field(default=None, description="its private key (PEM, mode 0600)")
    insecure_skip_verify: bool = Field(
        default=False, description="accept any broker certificate and host name (tests only)")

    @model_validator(mode="after")
    def _pair(self) -> TlsConfig:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("give both cert_file and key_file for a client certificate")
        return self


class MqttConfig(Strict):
    host: str = Field(default="127.0.0.1", description="broker host")
    port: int = Field(default=1883, ge=1, le=65535, description="broker port")
    hosts: list[str] = Field(
        default_factory=list, description="instead of host/port: the nodes of a clustered "
        "broker, 'host' or 'host:port' ('[v6addr]:port'; the port defaults to 'port'); the "
        "client connects to one and fails over to the next when it dies")
    client_id: str | None = Field(
        default=None, description="MQTT client id (default edgegw-<gateway id>)")
    username: str | None = Field(default=None, description="user name at the broker")
    password_file: Path | None = Field(
        default=None, description="file holding the broker password (the password is never in this "
        "file)")
    password_env: str | None = Field(
        default=None, description="environment variable holding the broker password")
    tls: TlsConfig | None = Field(
        default=None, description="TLS, with mutual authentication when a client certificate is "
        "given")
    topic_prefix: str = Field(default="edgegw", description="first topic level")
    qos: Literal[0, 1] = Field(default=1, description="0 or 1")
    keepalive: int = Field(default=30, ge=5, le=3600, description="seconds")
    max_inflight: int = Field(
        default=32, ge=1, le=1000, description="publishes awaiting PUBACK at once")
    reconnect: Backoff = Field(default=Backoff(), description="backoff for the broker connection")
    status_interval: Duration = Field(
        default=30.0, description="how often the retained status message is refreshed")

    @field_validator("topic_prefix")
    @classmethod
    def _prefix(cls, v: str) -> str:
        if not v or any(c in v for c in "#+\0") or v.startswith("/") or v.endswith("/"):
            raise ValueError("a topic prefix has no '#', '+', and no leading/trailing '/'")
        return v

    @field_validator("hosts")
    @classmethod
    def _hosts(cls, v: list[str]) -> list[str]:
        for h in v:
            endpoint(h, 1883)  # raises ValueError with the entry
        return v

    @model_validator(mode="after")
    def _host_or_hosts(self) -> MqttConfig:
        if self.hosts and "host" in self.model_fields_set:
            raise ValueError("give 'host' (one broker) or 'hosts' (the nodes of a cluster), "
                             "not both")
        return self

    def endpoints(self) -> list[tuple[str, int]]:
        """The brokers to connect to, in order: ``hosts``, or ``host``/``port``."""
        return [endpoint(h, self.port) for h in self.hosts] or [(self.host, self.port)]

    def password(self) -> str | None:
        return read_password(self)


def endpoint(text: str, default_port: int) -> tuple[str, int]:
    """``host``, ``host:port`` or ``[v6]:port`` -> (host, port)."""
    t = text.strip()
    host, port = t, default_port
    if t.startswith("["):
        end = t.find("]")
        if end < 0:
            raise ValueError(f"hosts: {text!r}: an IPv6 address goes in brackets: [::1]:1883")
        host, rest = t[1:end], t[end + 1:]
        if rest:
            if not rest.startswith(":") or not rest[1:].isdigit():
                raise ValueError(f"hosts: {text!r}: expected [address]:port")
            port = int(rest[1:])
    elif t.count(":") == 1:
        host, _, p = t.partition(":")
        if not p.isdigit():
            raise ValueError(f"hosts: {text!r}: expected host:port with a number")
        port = int(p)
    if not host or any(c.isspace() for c in host) or not 1 <= port <= 65535:
        raise ValueError(f"hosts: {text!r}: expected host or host:port (port 1-65535)")
    return host, port


def state_directory(fallback: Path) -> Path:
    """$STATE_DIRECTORY (the first, when systemd gives several), else ``fallback``."""
    state = os.environ.get("STATE_DIRECTORY")
    return Path(state.split(":")[0]) if state else fallback


def nearest_existing(path: Path) -> Path:
    """``path``, or its nearest ancestor that exists (what decides whether a file that is
    created at start can be written)."""
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def tls_context(tls: TlsConfig) -> ssl.SSLContext:
    """The TLS context of an MQTT connection (the gateway's uplink, the ingest)."""
    ctx = ssl.create_default_context(cafile=str(tls.ca_file) if tls.ca_file else None)
    if tls.cert_file and tls.key_file:
        ctx.load_cert_chain(str(tls.cert_file), str(tls.key_file))
    if tls.insecure_skip_verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx
