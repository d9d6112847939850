"""The gateway's local health endpoint (server) and status page (page)."""

from gateway.health.server import HealthServer, Source

__all__ = ["HealthServer", "Source"]
