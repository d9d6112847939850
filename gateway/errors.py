"""The project's small exception tree.

Drivers, the pipeline and the uplink raise these, never bare ``Exception``; callers
catch the narrowest class that they can handle.
"""

from __future__ import annotations


class EdgegwError(Exception):
    """Base of every error edgegw raises on purpose."""


class ConfigError(EdgegwError):
    """A config or profile file is malformed.

    ``problems`` holds one ``(location, message)`` per fault so that a CLI can print
    all of them at once; ``location`` is ``file: path.to[3].field``.
    """

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        self.problems = problems
        super().__init__("; ".join(self.lines()))

    def lines(self) -> list[str]:
        """One ``location: message`` line per problem, for a CLI to print."""
        return [f"{loc}: {msg}" for loc, msg in self.problems]


class DeviceError(EdgegwError):
    """A device could not be read or written."""


class DeviceUnreachable(DeviceError):
    """No connection, or no answer within the configured timeout and retries."""


class ProtocolError(DeviceError):
    """The device answered, but with an exception code or a malformed reply."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


class WriteRejected(DeviceError):
    """A write was refused before it reached the device (read-only point, bad value)."""


class UplinkError(EdgegwError):
    """The uplink could not deliver (broker unreachable, publish failed)."""


class StoreError(EdgegwError):
    """The store could not accept or return entries."""


class SpoolUnavailable(StoreError):
    """The spool file cannot be opened or created (a full or read-only disk): the gateway
    runs on a memory store and says so, rather than not at all."""


class KeyFileError(EdgegwError):
    """A key or certificate file that cannot be used; the message names the file."""
