"""Certificate expiry watching, without importing cryptography unless a certificate is
configured (it costs about 7 MB of RSS on a small box)."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import TYPE_CHECKING

from drivers.opcua.config import Opcua
from gateway.config import LoadedConfig
from gateway.httpserve import Family

if TYPE_CHECKING:
    from gateway.crypto.certs import CertInfo

log = logging.getLogger("edgegw")


def configured_certs(loaded: LoadedConfig) -> list[tuple[str, Path]]:
    """Every certificate the config uses, ``(config field, path)``; OPC UA client
    certificates only once they exist (the driver creates them on first connect)."""
    cfg = loaded.config
    out: list[tuple[str, Path]] = []
    tls = cfg.uplink.mqtt.tls
    if tls is not None:
        if tls.cert_file is not None:
            out.append(("uplink.mqtt.tls.cert_file", loaded.resolve(tls.cert_file)))
        if tls.ca_file is not None:
            out.append(("uplink.mqtt.tls.ca_file", loaded.resolve(tls.ca_file)))
    for i, d in enumerate(cfg.devices):
        c = d.connection
        if isinstance(c, Opcua) and c.security.policy != "None":
            p = (loaded.resolve(c.security.certificate) if c.security.certificate
                 else loaded.state_dir / "pki" / "own" / "cert.der")
            if c.security.certificate or p.exists():
                out.append((f"devices[{i}].connection.security.certificate", p))
    unique: dict[Path, str] = {}
    for where, p in out:
        unique.setdefault(p, where)
    return [(where, p) for p, where in unique.items()]



class CertWatch:
    """Reads the configured certificates at start and every ``interval``; warns in the
    log (and through :attr:`warnings`, in the status topic and on the status page)
    from ``WARN_DAYS`` before one expires."""

    def __init__(self, loaded: LoadedConfig, interval: float = 12 * 3600) -> None:
        self.loaded = loaded
        self.interval = interval
        self.infos: list[CertInfo] = []
        self.warnings: list[str] = []

    def check(self) -> list[str]:
        certs = configured_certs(self.loaded)
        if not certs:  # no need to load cryptography (about 7 MB of RSS)
            self.infos, self.warnings = [], []
            return []
        from gateway.crypto.certs import read_cert

        self.infos = [read_cert(w, p) for w, p in certs]
        self.warnings = [w for i in self.infos if (w := i.warning()) is not None]
        for w in self.warnings:
            (log.error if "EXPIRED" in w else log.warning)("certificate: %s", w)
        return self.warnings

    # -- Service (gateway/services.py) ---------------------------------------------------
    name = "cert-watch"

    async def run(self) -> None:
        while True:
            self.check()
            await asyncio.sleep(self.interval)

    def stop(self) -> None:
        pass

    def status(self) -> dict[str, object]:
        return {"certs": self.warnings} if self.warnings else {}

    def metrics(self) -> list[Family]:
        certs = [(i, i.not_after) for i in self.infos if i.not_after is not None]
        if not certs:
            return []
        return [Family("cert_expiry_timestamp_seconds", "gauge", "when a configured "
                       "certificate expires",
                       [({"config": i.where, "file": str(i.path)}, t.timestamp())
                        for i, t in certs])]
