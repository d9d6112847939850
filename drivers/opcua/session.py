"""An OPC UA session: the client, its secure channel and identity, and what a refusal
means (a message that says what to fix, raised as DeviceUnreachable).

The gateway owns reconnection: asyncua's own auto-reconnect stays off; ``on_lost`` is
called when asyncua's watchdog sees the connection drop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path

from asyncua import Client, ua
from asyncua.client.ua_client import UaClientState
from asyncua.crypto import security_policies

from drivers.base import DriverContext
from drivers.opcua import fastchannel
from drivers.opcua.config import Opcua
from drivers.opcua.pki import TrustList, UntrustedCertificate, ensure_certificate
from gateway.errors import DeviceUnreachable

log = logging.getLogger("edgegw.opcua")

POLICIES: dict[str, type[security_policies.SecurityPolicy]] = {
    "Basic256Sha256": security_policies.SecurityPolicyBasic256Sha256,
    "Aes128_Sha256_RsaOaep": security_policies.SecurityPolicyAes128Sha256RsaOaep,
    "Aes256_Sha256_RsaPss": security_policies.SecurityPolicyAes256Sha256RsaPss,
}
MODES = {"None": ua.MessageSecurityMode.None_, "Sign": ua.MessageSecurityMode.Sign,
         "SignAndEncrypt": ua.MessageSecurityMode.SignAndEncrypt}
#: service results that mean the session (not one node) is gone
SESSION_LOST = frozenset({
    ua.StatusCodes.BadSessionIdInvalid, ua.StatusCodes.BadSessionClosed,
    ua.StatusCodes.BadSessionNotActivated, ua.StatusCodes.BadSecureChannelIdInvalid,
    ua.StatusCodes.BadSecureChannelClosed, ua.StatusCodes.BadConnectionClosed,
    ua.StatusCodes.BadServerHalted, ua.StatusCodes.BadShutdown, ua.StatusCodes.BadTimeout,
    ua.StatusCodes.BadCommunicationError, ua.StatusCodes.BadNoCommunication,
    ua.StatusCodes.BadNoSubscription, ua.StatusCodes.BadSubscriptionIdInvalid,
})
_LOGIN = {
    ua.StatusCodes.BadUserAccessDenied: "user name or password refused",
    ua.StatusCodes.BadIdentityTokenRejected: "identity refused",
    ua.StatusCodes.BadIdentityTokenInvalid: "identity type not accepted by the server",
    ua.StatusCodes.BadCertificateUntrusted: "the server does not trust our certificate",
    ua.StatusCodes.BadSecurityChecksFailed: "security checks failed (does the server "
    "trust our certificate?)",
    ua.StatusCodes.BadCertificateInvalid: "certificate refused as invalid",
}
NETWORK = (OSError, TimeoutError, ConnectionError, asyncio.TimeoutError)


class Session:
    """How to open a session to one server (its connection settings, our identity)."""

    def __init__(self, conn: Opcua, ctx: DriverContext, device_id: str) -> None:
        self.conn = conn
        self.ctx = ctx
        self.device_id = device_id

    def pki(self) -> Path:
        return self.ctx.state_dir / "pki"

    def own_cert(self) -> Path:
        sec = self.conn.security
        return self.ctx.resolve(sec.certificate) if sec.certificate else \
            self.pki() / "own" / "cert.der"

    def client(self) -> Client:
        conn = self.conn
        client = Client(conn.endpoint, timeout=conn.timeout,
                        watchdog_intervall=max(1.0, conn.timeout))
        client.application_uri = f"urn:edgegw:{self.ctx.gateway_id}"
        client.name = client.description = f"edgegw {self.ctx.gateway_id}"
        client.product_uri = "urn:edgegw"
        client.session_timeout = int(conn.session_timeout * 1000)
        _probe_when_quiet(client)
        return client

    async def open(self, on_lost: Callable[[Exception], Awaitable[None]]) -> Client:
        """A connected, activated client; DeviceUnreachable with the reason if not."""
        client = self.client()
        client.connection_lost_callback = on_lost
        try:
            await self._secure(client)
            await self._identify(client)
            await client.connect()
        except UntrustedCertificate:
            raise
        except ua.UaStatusCodeError as exc:
            with contextlib.suppress(*NETWORK, ua.UaError):
                await client.disconnect()
            raise self._refused(exc) from None
        except (*NETWORK, ua.UaError) as exc:
            raise DeviceUnreachable(f"{self.conn.endpoint}: connect failed: {why(exc)}") from None
        except AssertionError:
            await drop(client)
            raise self._faulted() from None
        except Exception as exc:
            # is unreachable with the reason, the gateway goes on (issue 17)
            await drop(client)
            log.debug("device %s: connect failed", self.device_id, exc_info=True)
            raise DeviceUnreachable(f"{self.conn.endpoint}: connect failed: "
                                    f"{type(exc).__name__}: {exc}") from None
        return client

    def _refused(self, exc: ua.UaStatusCodeError) -> DeviceUnreachable:
        conn = self.conn
        reason = _LOGIN.get(exc.code)
        who = f" (user {conn.username!r})" if conn.username and reason else ""
        return DeviceUnreachable(f"{conn.endpoint}: {reason or 'connect refused'}{who}: "
                                 f"{ua.StatusCode(exc.code).name}")

    def _faulted(self) -> DeviceUnreachable:
        """asyncua 2.1 asserts that the OpenSecureChannel answer is a response: a
        server that refuses our certificate there answers with a ServiceFault instead."""
        if self.conn.security.policy == "None":
            return DeviceUnreachable(f"{self.conn.endpoint}: the server refused the secure "
                                     "channel (a ServiceFault to OpenSecureChannel)")
        return DeviceUnreachable(
            f"{self.conn.endpoint}: the server does not trust our certificate (it refused "
            f"the secure channel with a ServiceFault): add {self.own_cert()} to the "
            "server's trusted certificates")

    async def _identify(self, client: Client) -> None:
        conn = self.conn
        if conn.username is not None:
            client.set_user(conn.username)
            password = conn.password()
            if password is not None:
                client.set_password(password)
        elif conn.user_certificate is not None and conn.user_key is not None:
            await client.load_client_certificate(str(self.ctx.resolve(conn.user_certificate)))
            await client.load_private_key(self.ctx.resolve(conn.user_key))

    async def _secure(self, client: Client) -> None:
        sec = self.conn.security
        if sec.policy == "None":
            return
        pki = self.pki()
        cert = self.own_cert()
        key = self.ctx.resolve(sec.private_key) if sec.private_key else pki / "own" / "key.pem"
        ensure_certificate(cert, key, client.application_uri, f"edgegw {self.ctx.gateway_id}")
        trust = TrustList([self.ctx.resolve(p) for p in sec.trust] or [pki / "trusted"],
                          rejected_dir=pki / "rejected")
        policy = POLICIES[sec.policy]
        endpoints = await client.connect_and_get_server_endpoints()
        mode = MODES[sec.mode]
        match = [e for e in endpoints
                 if e.SecurityPolicyUri == policy.URI and e.SecurityMode == mode]
        if not match:
            offered = sorted({f"{e.SecurityPolicyUri.rsplit('#', 1)[-1]}/{e.SecurityMode.name}"
                              for e in endpoints})
            raise DeviceUnreachable(
                f"{self.conn.endpoint}: no endpoint with {sec.policy}/{sec.mode}; the "
                f"server offers {', '.join(offered)}")
        server_der = first_cert(match[0].ServerCertificate)
        trust.check(server_der, self.conn.endpoint)
        await client.set_security(policy, str(cert), str(key), server_certificate=server_der,
                                  mode=mode)


async def close(client: Client) -> None:
    """Close a session (never raises; at most 2 s for a polite goodbye)."""
    with contextlib.suppress(*NETWORK, ua.UaError, asyncio.CancelledError):
        await asyncio.wait_for(client.disconnect(), timeout=2.0)
    with contextlib.suppress(Exception):
        client.disconnect_socket()


async def drop(client: Client) -> None:
    """Close a half-open client after a failed connect (never raises)."""
    with contextlib.suppress(Exception):
        client.disconnect_socket()


def first_cert(der: bytes) -> bytes:
    """The leaf certificate of a DER chain (a server may send its chain)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    try:
        return x509.load_der_x509_certificate(der).public_bytes(serialization.Encoding.DER)
    except ValueError:
        # a chain: the first certificate's length is in its DER header
        length = int.from_bytes(der[2:4], "big") + 4
        return der[:length]


def why(exc: BaseException) -> str:
    if isinstance(exc, ua.UaStatusCodeError):
        return str(ua.StatusCode(exc.code).name)
    return str(exc) or type(exc).__name__


def _probe_when_quiet(client: Client) -> None:
    """asyncua's connection watchdog reads ServerState at every tick to find a connection
    that died without closing; here it reads only when the connection has not answered
    one of the driver's requests since the tick before (measured: about 0.5 ms of CPU per
    probe, asyncua's generic codec; polls and Publish keep-alives prove the connection
    alive anyway). The same wait and probe as asyncua 2.1's ``_wait_for_health_signal``,
    one condition added; a client without that hook keeps its own."""
    own = getattr(client, "_wait_for_health_signal", None)
    interval = getattr(client, "_watchdog_intervall", None)
    if own is None or not isinstance(interval, int | float):
        return

    async def wait_for_health_signal() -> None:
        async with client.uaclient.subscribe_state() as sub:
            with contextlib.suppress(asyncio.TimeoutError):
                await sub.next_change(interval)
        if client.uaclient.state is UaClientState.CONNECTED and \
                not fastchannel.heard_within(client, interval):
            await asyncio.wait_for(client.nodes.server_state.read_value(),
                                   timeout=min(client.session_timeout / 1000 / 2, interval))

    client._wait_for_health_signal = wait_for_health_signal
