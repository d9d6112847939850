"""The dashboard's section of ``ingest.yaml``: where it listens, who may look, HTTPS."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, model_validator

from gateway.durations import Duration, TimeZone


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DashboardTls(_Strict):
    cert_file: Path = Field(description="PEM certificate (chain) the dashboard serves")
    key_file: Path = Field(description="its PEM private key (mode 0600)")


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class DashboardConfig(_Strict):
    host: str = Field(default="127.0.0.1", description="address to listen on; anything "
                      "beyond loopback needs a user (password_file) or a token_file")
    port: Annotated[int, Field(ge=0, le=65535)] = Field(default=8090, description="TCP port")
    username: str | None = Field(default=None, description="HTTP Basic user")
    password_file: Path | None = Field(
        default=None, description="file holding the user's password (beside ingest.yaml "
        "unless absolute; mode 0600)")
    token_file: Path | None = Field(
        default=None, description="file holding a bearer token; a screen can also pass it "
        "once as ?token=... and keeps a cookie")
    tls: DashboardTls | None = Field(default=None, description="serve HTTPS with this "
                                     "certificate")
    timezone: TimeZone = Field(default="UTC", description="the plant's time zone (the day on the "
                          "machine pages starts at local midnight)")
    refresh: Duration = Field(default=15.0, description="pages reload themselves this often")
    title: str = Field(default="Production", description="shown on every page")
    targets: dict[str, int] = Field(
        default_factory=dict, description="device -> parts planned per shift, for the tiles' "
        "count vs target when no order with a quantity runs")

    @model_validator(mode="after")
    def _auth(self) -> DashboardConfig:
        if (self.username is None) != (self.password_file is None):
            raise ValueError("dashboard: username and password_file go together")
        if not _loopback(self.host) and self.password_file is None and self.token_file is None:
            raise ValueError(f"dashboard: listening on {self.host} (beyond loopback) needs "
                             "authentication: username + password_file, or token_file")
        return self
