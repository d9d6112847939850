"""The connection model of an OPC UA device (``opcua``): endpoint, session, security."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator

from gateway.common import Strict, read_password
from gateway.durations import Duration


class OpcuaSecurity(Strict):
    """Secure channel: policy + mode, the client's application certificate, the trust list.

    The client certificate and key are created on first run when missing (RSA 2048,
    self-signed, application URI ``urn:edgegw:<gateway id>``). A server certificate is
    accepted only when it is in ``trust`` (files or directories of DER/PEM certificates);
    a rejected one is saved under ``<pki>/rejected/`` so that an integrator can inspect
    it and move it into the trust list.
    """

    policy: Literal[
        "None", "Basic256Sha256", "Aes128_Sha256_RsaOaep", "Aes256_Sha256_RsaPss"
    ] = Field(default="None", description="security policy; None for an unsecured channel")
    mode: Literal["None", "Sign", "SignAndEncrypt"] = Field(
        default="None", description="message security mode; goes with the policy")
    certificate: Path | None = Field(
        default=None, description="client certificate (DER); default <state dir>/pki/own/cert.der")
    private_key: Path | None = Field(
        default=None, description="client key (PEM); default <state dir>/pki/own/key.pem")
    trust: list[Path] = Field(
        default_factory=list, description="trusted server certificates or directories; default "
        "<state dir>/pki/trusted")

    @model_validator(mode="after")
    def _pair(self) -> OpcuaSecurity:
        if (self.policy == "None") != (self.mode == "None"):
            raise ValueError("policy None goes with mode None; Basic256Sha256 and the Aes "
                             "policies need mode Sign or SignAndEncrypt")
        return self


class Opcua(Strict):
    kind: Literal["opcua"] = Field(description="an OPC UA client session")
    endpoint: str = Field(description="opc.tcp://host:port[/path]")
    mode: Literal["poll", "subscribe"] = Field(
        default="poll", description="poll: bulk reads each poll period; subscribe: monitored "
        "items, one subscription per poll group (publishing interval = period)")
    security: OpcuaSecurity = Field(
        default=OpcuaSecurity(), description="secure channel: policy, mode, certificates, trust "
        "list")
    username: str | None = Field(default=None, description="user name identity")
    password_file: Path | None = Field(default=None, description="file holding the user's password")
    password_env: str | None = Field(
        default=None, description="environment variable holding the user's password")
    user_certificate: Path | None = Field(
        default=None, description="certificate identity (DER/PEM)")
    user_key: Path | None = Field(
        default=None, description="private key of the certificate identity (PEM)")
    timeout: Duration = Field(default=4.0, description="per request")
    session_timeout: Duration = Field(default=60.0, description="requested session timeout")
    max_nodes_per_read: int | None = Field(
        default=None, ge=1, description="default: the server's MaxNodesPerRead, else 1000")
    queue_size: int = Field(default=1, ge=1, le=10000, description="per monitored item")
    gather: Duration | None = Field(
        default=None, gt=0, description="subscribe mode: read the servers' notifications "
        "together every <gather> (one clock for every device with the same value) instead of "
        "as each arrives; less CPU per notification, each waits up to <gather> longer")
    timestamps: Literal["auto", "source", "gateway"] = Field(
        default="auto", description="time of a sample: 'source' keeps each value's "
        "SourceTimestamp, 'gateway' uses the read time; 'auto' is source for subscriptions (a "
        "change's own time) and gateway for polling (an unchanged value's SourceTimestamp is when "
        "it last changed, not when it was read)")

    @field_validator("endpoint")
    @classmethod
    def _url(cls, v: str) -> str:
        if not re.match(r"^opc\.tcp://[^/:]+(:\d{1,5})?(/.*)?$", v):
            raise ValueError("an endpoint looks like opc.tcp://host:4840[/path]")
        return v

    @model_validator(mode="after")
    def _identity(self) -> Opcua:
        if (self.user_certificate is None) != (self.user_key is None):
            raise ValueError("give both user_certificate and user_key for a certificate identity")
        if self.user_certificate is not None and self.username is not None:
            raise ValueError("use either username/password or a user certificate, not both")
        if (self.password_file or self.password_env) and self.username is None:
            raise ValueError("a password needs a username")
        return self

    @model_validator(mode="after")
    def _gather(self) -> Opcua:
        if self.gather is not None and self.mode != "subscribe":
            raise ValueError("gather applies to mode subscribe (polls are read together by "
                             "the scheduler's poll slots)")
        if self.gather is not None and self.gather > self.timeout / 2:
            raise ValueError(f"gather ({self.gather:g} s) must be at most half the timeout "
                             f"({self.timeout:g} s): a watchdog probe is answered at a tick")
        return self

    def password(self) -> str | None:
        return read_password(self)
