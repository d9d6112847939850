"""The project's small exception tree.

Every exception edgegw defines derives from :class:`EdgegwError` (a test walks the
packages and checks it); drivers, the pipeline and the uplink raise these, never bare
``Exception``, and callers catch the narrowest class that they can handle. The classes
stay beside the code that raises them (``CompactError`` in ``gateway/wire/compact.py``) and
derive from one of the bases here:

- :class:`ConfigError`: a config or profile file is malformed;
- :class:`DeviceError`: a device (or the modem) could not be read or written:
  ``DeviceUnreachable``, ``ProtocolError``, ``WriteRejected``, ``ModemError``
  (``AtError``, ``CarrierError``);
- :class:`DataError` (also a ``ValueError``): bytes or text that do not parse: a device
  frame (``FrameRejected``), an AT reply (``ParseError``), a compact record
  (``CompactError``), a payload (``PayloadError``), an identifier code (``CodeError``),
  an OPC UA address (``AddressError``), an OPC UA message of a shape its fast path
  leaves to asyncua (``Unhandled``);
- :class:`UplinkError`: the uplink's link failed (``TransportError``);
- :class:`SinkError`: the database did not take a write (``Rejected``, ``TooLarge``,
  ``Retry``);
- :class:`StoreError`: the store could not accept or return entries (``StoreFull``,
  ``SealError``, ``SpoolUnavailable``);
- :class:`KeyFileError`; and a few for one caller each (``NodeError``, ``BrokerRefused``,
  ``GatewayFailed``).
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


class DataError(EdgegwError, ValueError):
    """Bytes or text that do not parse or validate. Also a ``ValueError``, which callers
    that parse values (pydantic validators among them) already catch."""


class UplinkError(EdgegwError):
    """The uplink could not deliver (broker unreachable, publish failed)."""


class SinkError(EdgegwError):
    """The database did not take a write."""


class StoreError(EdgegwError):
    """The store could not accept or return entries."""


class SpoolUnavailable(StoreError):
    """The spool file cannot be opened or created (a full or read-only disk): the gateway
    runs on a memory store and says so, rather than not at all."""


class KeyFileError(EdgegwError):
    """A key or certificate file that cannot be used; the message names the file."""
