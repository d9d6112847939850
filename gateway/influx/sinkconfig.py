"""Where line protocol goes: InfluxDB 1.x or 2.x/3.x. Shared by the ingest service and
the gateway's direct route (``uplink.influx``); no dependency on either's config."""

from __future__ import annotations

import base64
import os
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from gateway.durations import Duration


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class InfluxV1(_Strict):
    kind: Literal["influxdb-v1"]
    url: str = "http://127.0.0.1:8086"
    database: str
    retention_policy: str | None = None
    username: str | None = None
    password_file: Path | None = None
    create_database: bool = True
    timeout: Duration = 10.0

    def auth_headers(self) -> dict[str, str]:
        """HTTP Basic for ``username`` (the password from ``password_file``), or none."""
        if not self.username:
            return {}
        pw = self.password_file.read_text().strip() if self.password_file else ""
        cred = base64.b64encode(f"{self.username}:{pw}".encode()).decode()
        return {"Authorization": f"Basic {cred}"}


class InfluxV2(_Strict):
    kind: Literal["influxdb-v2"]
    url: str = "http://127.0.0.1:8086"
    org: str
    bucket: str
    token_file: Path | None = None
    token_env: str | None = None
    timeout: Duration = 10.0

    def token(self) -> str:
        """The API token: ``token_env``'s variable, else ``token_file``'s text, else ''."""
        if self.token_env:
            return os.environ.get(self.token_env, "")
        if self.token_file:
            return self.token_file.read_text().strip()
        return ""


SinkConfig = Annotated[InfluxV1 | InfluxV2, Field(discriminator="kind")]
