"""Simulated OPC UA machines: an asyncua server per device, fed by the machine model.

The address space follows the profile: each browse path ``Machine/Spindle/Speed``
becomes objects ``Machine`` and ``Spindle`` (in the profile's first namespace) holding
the variable ``Speed``; a point addressed by NodeId (``nsu=<uri>;s=Identification.
SerialNumber``) gets exactly that NodeId, under objects made from the dotted parts.
Variables carry their DataType, ``EngineeringUnits`` and an ``EURange`` (from the
simulation's min/max); ``rw`` points are writable. Values are written after every model
step with the step's SourceTimestamp, and only when they change, like a real
controller's OPC UA server.

Secured servers offer None plus Basic256Sha256, Aes128_Sha256_RsaOaep and
Aes256_Sha256_RsaPss (Sign and SignAndEncrypt) with a generated certificate, accept
only client certificates found in their ``trusted`` directory, and with ``users`` set
accept only those user names and passwords. An untrusted client certificate is refused
where the server's vendor refuses it: ``refuse_at="session"`` (asyncua's way:
CreateSession fails with BadCertificateUntrusted) or ``"channel"`` (open62541's, and
many PLCs' way: the OpenSecureChannel request is answered with a ServiceFault,
BadSecurityChecksFailed, which asyncua clients cannot parse).

Faults (``SimDevice.fault``): ``drop`` stops the server until the fault is cleared (a
server restart), ``kill`` closes every client connection once, ``slow`` delays every
Read, ``silence`` never answers Reads, ``bad:<point>,<point>`` gives those variables the
StatusCode BadSensorFailure.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from pathlib import Path
from typing import Any

from asyncua import Server, ua
from asyncua.common.callback import CallbackType
from asyncua.common.structures104 import new_enum
from asyncua.common.utils import ServiceError
from asyncua.crypto.permission_rules import User, UserRole
from asyncua.server.uaprocessor import UaProcessor
from asyncua.ua.ua_binary import struct_from_binary
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from firmware_sim.machine import SimDevice

from drivers.opcua.address import parse_node
from drivers.opcua.pki import TrustList, ensure_certificate, fingerprint
from gateway.profiles import OpcuaPoint, OpcuaSettings

log = logging.getLogger("edgegw.sim.opcua")
logging.getLogger("asyncua").setLevel(logging.ERROR)

VARIANT = {
    "bool": ua.VariantType.Boolean, "int16": ua.VariantType.Int16,
    "uint16": ua.VariantType.UInt16, "int32": ua.VariantType.Int32,
    "uint32": ua.VariantType.UInt32, "int64": ua.VariantType.Int64,
    "uint64": ua.VariantType.UInt64, "float32": ua.VariantType.Float,
    "float64": ua.VariantType.Double, "string": ua.VariantType.String, None: ua.VariantType.Double,
}
SECURE_POLICIES = [
    ua.SecurityPolicyType.NoSecurity,
    ua.SecurityPolicyType.Basic256Sha256_Sign, ua.SecurityPolicyType.Basic256Sha256_SignAndEncrypt,
    ua.SecurityPolicyType.Aes128Sha256RsaOaep_Sign,
    ua.SecurityPolicyType.Aes128Sha256RsaOaep_SignAndEncrypt,
    ua.SecurityPolicyType.Aes256Sha256RsaPss_Sign,
    ua.SecurityPolicyType.Aes256Sha256RsaPss_SignAndEncrypt,
]
BAD_SENSOR = ua.StatusCode(ua.StatusCodes.BadSensorFailure)


class _Users:
    """Accepts exactly the configured user names and passwords (and anonymous when no
    users are configured)."""

    def __init__(self, users: dict[str, str]) -> None:
        self.users = users

    def get_user(self, iserver: Any, username: str | None = None, password: str | None = None,
                 certificate: Any = None) -> User | None:
        if not self.users:
            return User(role=UserRole.User)
        if username is not None and self.users.get(username) == password:
            return User(role=UserRole.User, name=username)
        return None


_open_secure_channel = UaProcessor.open_secure_channel


def _open_or_refuse(self: UaProcessor, algohdr: Any, seqhdr: Any, body: Any) -> None:
    """OpenSecureChannel, refused with a ServiceFault for an untrusted client certificate
    on servers that check it there (``iserver.edgegw_channel_trust``)."""
    trusted = getattr(self.iserver, "edgegw_channel_trust", None)
    cert = algohdr.SenderCertificate
    if trusted is None or not cert or self._connection.is_open() or trusted(cert):
        _open_secure_channel(self, algohdr, seqhdr, body)
        return
    request = struct_from_binary(ua.OpenSecureChannelRequest, body)
    self._connection.select_policy(algohdr.SecurityPolicyURI, cert,
                                   request.Parameters.SecurityMode)
    fault = ua.ServiceFault()
    fault.ResponseHeader.ServiceResult = ua.StatusCode(ua.StatusCodes.BadSecurityChecksFailed)
    log.warning("refused an untrusted client certificate at OpenSecureChannel")
    self.send_response(request.RequestHeader.RequestHandle, seqhdr, fault,
                       ua.MessageType.SecureOpen)


UaProcessor.open_secure_channel = _open_or_refuse


class OpcuaSimServer:
    def __init__(self, dev: SimDevice, host: str, port: int, *, secure: bool = False,
                 pki: Path | None = None, users: dict[str, str] | None = None,
                 extra_namespaces: int = 0, refuse_at: str = "session") -> None:
        self.dev = dev
        self.refuse_at = refuse_at
        self.host = host
        self.port = port
        self.secure = secure
        self.pki = pki
        self.users = users or {}
        self.extra_namespaces = extra_namespaces
        self.server: Server | None = None
        self.vars: dict[str, tuple[ua.NodeId, ua.VariantType]] = {}
        self._last: dict[str, object] = {}
        self._killed = False
        self.restarts = 0
        self._lock = asyncio.Lock()  # start/stop/publish never interleave

    @property
    def url(self) -> str:
        return f"opc.tcp://{self.host}:{self.port}/edgegw-sim/{self.dev.id}"

    @property
    def cert_path(self) -> Path:
        assert self.pki is not None
        return self.pki / f"{self.dev.id}-cert.der"

    @property
    def trusted_dir(self) -> Path:
        assert self.pki is not None
        return self.pki / "trusted"

    async def start(self) -> None:
        async with self._lock:
            if self.server is None:
                await self._start()

    async def restart(self) -> None:
        """Stop and start again on the same port (sessions and subscriptions are lost)."""
        async with self._lock:
            await self._stop()
            await self._start()
            self.restarts += 1

    async def _start(self) -> None:
        profile = self.dev.profile
        settings = profile.opcua or OpcuaSettings()
        server = Server(user_manager=_Users(self.users))
        await server.init()
        server.set_endpoint(self.url)
        server.set_server_name(f"edgegw-sim {self.dev.id} ({profile.vendor} {profile.model})")
        if self.secure:
            assert self.pki is not None
            key = self.pki / f"{self.dev.id}-key.pem"
            ensure_certificate(self.cert_path, key, f"urn:edgegw-sim:{self.dev.id}",
                               f"edgegw-sim {self.dev.id}", server=True)
            await server.load_certificate(str(self.cert_path))
            await server.load_private_key(str(key))
            await server.set_application_uri(f"urn:edgegw-sim:{self.dev.id}")
            server.set_security_policy(SECURE_POLICIES)
            self.trusted_dir.mkdir(parents=True, exist_ok=True)
            server.set_certificate_validator(self._validate_client)
            if self.refuse_at == "channel":
                server.iserver.edgegw_channel_trust = self._trusts
        else:
            server.set_security_policy([ua.SecurityPolicyType.NoSecurity])
        if self.users:
            server.set_identity_tokens([ua.UserNameIdentityToken])
        for i in range(self.extra_namespaces):  # shifts the indexes a profile must not rely on
            await server.register_namespace(f"urn:edgegw-sim:padding:{i}")
        for uri in settings.namespaces.values():
            await server.register_namespace(uri)
        await self._build(server, settings)
        server.subscribe_server_callback(CallbackType.PreRead, self._pre_read)
        await server.start()
        self.server = server
        self._last.clear()
        await self._publish()

    async def _build(self, server: Server, settings: OpcuaSettings) -> None:
        ns_array = await server.get_namespace_array()
        default_ns = ns_array.index(next(iter(settings.namespaces.values()))) \
            if settings.namespaces else 1
        objects = server.nodes.objects
        folders: dict[tuple[int, str], Any] = {}

        async def parent_of(ns: int, parts: list[str]) -> Any:
            node = objects
            for k in range(len(parts)):
                key = (ns, "/".join(parts[: k + 1]))
                if key not in folders:
                    folders[key] = await node.add_object(
                        ua.NodeId(".".join(parts[: k + 1]), ns), ua.QualifiedName(parts[k], ns))
                node = folders[key]
            return node

        aliases = {a: ns_array.index(u) for a, u in settings.namespaces.items()}
        built: set[ua.NodeId] = set()
        for p in self.dev.profile.expanded_points():
            assert isinstance(p, OpcuaPoint)
            vtype = VARIANT[p.type]
            if p.path is not None:
                segs = p.path.strip("/").split("/")
                names = [s.partition(":")[2] if ":" in s else s for s in segs]
                ns = aliases.get(segs[-1].partition(":")[0], default_ns) if ":" in segs[-1] \
                    else default_ns
                parent = await parent_of(ns, names[:-1])
                nodeid = ua.NodeId(".".join(names), ns)
                bname = ua.QualifiedName(names[-1], ns)
            else:
                assert p.node is not None
                nodeid = parse_node(p.node, ns_array)
                ident = str(nodeid.Identifier)
                parts = ident.split(".")
                parent = await parent_of(nodeid.NamespaceIndex, parts[:-1]) if len(parts) > 1 \
                    else objects
                bname = ua.QualifiedName(parts[-1], nodeid.NamespaceIndex)
            if nodeid in built:
                continue  # a second point on the same node (another type, say)
            built.add(nodeid)
            init = self.dev.values.get(p.name, "" if vtype is ua.VariantType.String else 0)
            datatype = None
            if p.enumerated:
                vtype = ua.VariantType.Int32
                datatype = (await self._enum_type(server, nodeid.NamespaceIndex, p)).nodeid
            if p.array and not isinstance(init, tuple):
                init = (init,) * (p.sim.size if p.sim else 16)
            var = await parent.add_variable(nodeid, bname, ua.Variant(_cast(init, vtype), vtype),
                                            varianttype=vtype, datatype=datatype)
            if p.array:
                await var.write_value_rank(1)
                await var.write_array_dimensions([len(init)])  # type: ignore[arg-type]
            if p.access == "rw":
                await var.set_writable()
            if p.unit:
                eu = ua.EUInformation()
                eu.DisplayName = ua.LocalizedText(p.unit)
                eu.Description = ua.LocalizedText(p.unit)
                eu.NamespaceUri = "http://www.opcfoundation.org/UA/units/un/cefact"
                await var.add_property(nodeid.NamespaceIndex, "EngineeringUnits", eu)
            if p.sim is not None and (p.sim.min is not None or p.sim.max is not None):
                rng = ua.Range()
                rng.Low = float(p.sim.min if p.sim.min is not None else 0.0)
                rng.High = float(p.sim.max if p.sim.max is not None else 100.0)
                await var.add_property(nodeid.NamespaceIndex, "EURange", rng)
            self.vars[p.name] = (nodeid, vtype)

    async def _enum_type(self, server: Server, ns: int, p: OpcuaPoint) -> Any:
        """An enumeration DataType with the point's names, published as the profile's
        ``sim.enum_via`` says (EnumStrings, EnumValues, or only the definition)."""
        names = list(p.sim.names) if p.sim and p.sim.names else \
            (list(p.enum.values()) if isinstance(p.enum, dict) else ["Zero", "One"])
        via = p.sim.enum_via if p.sim else "EnumStrings"
        dtype = await new_enum(server, ns, f"{p.name}_enum", names)
        if via == "EnumStrings":
            await dtype.add_property(0, "EnumStrings", ua.Variant(
                [ua.LocalizedText(n) for n in names], ua.VariantType.LocalizedText))
        elif via == "EnumValues":
            evs = []
            for i, n in enumerate(names):
                ev = ua.EnumValueType()
                ev.Value = i
                ev.DisplayName = ua.LocalizedText(n)
                ev.Description = ua.LocalizedText(n)
                evs.append(ev)
            await dtype.add_property(0, "EnumValues", ua.Variant(
                evs, ua.VariantType.ExtensionObject))
        return dtype

    def _trusts(self, der: bytes) -> bool:
        return fingerprint(der) in TrustList([self.trusted_dir]).fingerprints()

    async def _validate_client(self, cert: x509.Certificate,
                               app: ua.ApplicationDescription) -> None:
        """Only client certificates in ``trusted/`` (read at every session)."""
        if fingerprint(cert.public_bytes(Encoding.DER)) not in \
                TrustList([self.trusted_dir]).fingerprints():
            log.warning("device %s: refused untrusted client certificate %s", self.dev.id,
                        cert.subject.rfc4514_string())
            raise ServiceError(ua.StatusCodes.BadCertificateUntrusted)

    async def _pre_read(self, event: Any, dispatcher: Any) -> None:
        fault = self.dev.fault
        if fault.kind == "slow":
            await asyncio.sleep(fault.delay)
        elif fault.kind == "silence":
            await asyncio.sleep(3600)

    async def publish(self) -> None:
        """Write changed values (and fault StatusCodes) into the address space; act on
        server-level faults."""
        async with self._lock:
            fault = self.dev.fault
            if fault.kind == "drop":
                await self._stop()
            elif self.server is None:
                await self._start()
                self.restarts += 1
            else:
                await self._publish()

    async def _publish(self) -> None:
        fault = self.dev.fault
        assert self.server is not None
        if fault.kind == "kill":
            if not self._killed:
                self._killed = True
                for proto in list(self.server.bserver.clients):
                    proto.transport.close()
        else:
            self._killed = False
        server = self.server
        now = dt.datetime.now(dt.UTC)
        bad = set(fault.points) if fault.kind == "bad" else set()
        values = self.dev.values
        for name, (nodeid, vtype) in self.vars.items():
            if name in bad:
                if self._last.get(name) is not BAD_SENSOR:
                    self._last[name] = BAD_SENSOR
                    await server.write_attribute_value(
                        nodeid, ua.DataValue(ua.Variant(None), StatusCode=BAD_SENSOR,
                                             SourceTimestamp=now, ServerTimestamp=now))
                continue
            v = values.get(name)
            if v is None or self._last.get(name) == v:
                continue
            self._last[name] = v
            await server.write_attribute_value(
                nodeid, ua.DataValue(ua.Variant(_cast(v, vtype), vtype),
                                     SourceTimestamp=now, ServerTimestamp=now))

    async def stop(self) -> None:
        async with self._lock:
            await self._stop()

    async def _stop(self) -> None:
        server, self.server = self.server, None
        if server is not None:
            try:
                await server.stop()
            except Exception:
                log.exception("stop")


def _cast(v: object, vtype: ua.VariantType) -> object:
    if isinstance(v, tuple | list):
        return [_cast(x, vtype) for x in v]
    if vtype is ua.VariantType.Boolean:
        return bool(v)
    if vtype in (ua.VariantType.Float, ua.VariantType.Double):
        return float(v)  # type: ignore[arg-type]
    if vtype is ua.VariantType.String:
        return str(v)
    return int(v)  # type: ignore[call-overload]
