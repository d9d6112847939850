"""The uplink's transport contract: what a route (MQTT, InfluxDB) must do so that the one
delivery engine (:mod:`gateway.uplink.engine`) can carry the store's entries over it.

A transport turns entries into parts (``group`` then ``encode``) and opens sessions; a
session sends one part and returns once the destination has it (a PUBACK, an HTTP 204),
or raises :class:`TransportError`. Everything else belongs to the engine, once, for
every route: reconnect with backoff, in-flight limits, acknowledging the store only after
delivery, the urgent lane, live and backlog cursors, bulk deferral, the byte budget, the
pack delay and draining on stop (Benthos's ``Output{Connect, Write, Close}`` with
Telegraf's running output, in asyncio).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, TypeVar

from gateway.errors import UplinkError
from gateway.store import Entry

P = TypeVar("P")
P_contra = TypeVar("P_contra", contravariant=True)
#: the end of a send started with :meth:`Session.start`: None when the destination has
#: the part, else the error that ended the session first
Done = Callable[[BaseException | None], None]


class TransportError(UplinkError):
    """The link failed (connect, send, or the session's background work): every send in
    flight is abandoned and the engine reconnects with backoff, resending from the oldest
    unacknowledged entry. The message says why, for the log; ``retry_after`` is how long
    the destination asked us to wait (HTTP Retry-After), if it did."""

    def __init__(self, why: str, retry_after: float | None = None) -> None:
        super().__init__(why)
        self.retry_after = retry_after


class Session(Protocol[P_contra]):
    async def send(self, part: P_contra) -> int:
        """Deliver one part; return once the destination has it. The result is how many
        of the part's entries the destination refused for good (they were kept aside,
        e.g. in the dead-letter file, and leave the store like delivered ones)."""
        ...

    def start(self, part: P_contra, done: Done) -> bool:
        """Begin sending one part without a task of its own (a publish whose PUBACK calls
        ``done``); False when this session sends only by awaiting :meth:`send`. A part
        sent this way is never refused; when it fails, :meth:`background` raises."""
        ...

    async def background(self, wake: Callable[[], None]) -> None:
        """Work for the whole session beside the sends (a status refresh, commands from
        the backend); ``wake`` asks the engine to look at :meth:`Transport.extras` now.
        Cancelled when the session ends; raises TransportError when the link fails."""
        ...

    async def close(self, clean: bool) -> None:
        """End the session: ``clean`` after a drain on stop (say goodbye), else after a
        failure (just let go of the connection). Never raises."""
        ...


class Transport(Protocol[P]):
    #: for logs: ``mqtt``, ``influx``
    name: str
    #: parts sent and not yet confirmed, at most
    max_inflight: int
    #: entries read from the store per round
    round_size: int
    #: seconds live data may wait after its read time for others to share its message
    #: (0: none)
    linger: float
    #: True when encoding has a side effect (a Sparkplug sequence number): the engine then
    #: waits for the budget on an estimate first and encodes afterwards
    encode_spends: bool
    #: bytes a message costs beyond its parts' sizes (headers), for the budget
    overhead: int

    async def open(self) -> Session[P]:
        """Connect; raise TransportError when it fails."""
        ...

    def group(self, entries: list[Entry]) -> list[list[Entry]]:
        """Entries -> messages, in order (one each, or packs)."""
        ...

    def encode(self, msg: list[Entry], backlog: bool, poor: bool) -> list[P]:
        """The parts of one message, in order (empty: nothing to send, the entries are
        acknowledged). ``backlog``: the entries were stored before this session;
        ``poor``: the radio is poor (compress harder)."""
        ...

    def size(self, part: P) -> int:
        """Bytes on the wire, for the budget and the counters."""
        ...

    def extras(self) -> list[P]:
        """Parts to send now that carry no entries (a Sparkplug rebirth), usually none."""
        ...
