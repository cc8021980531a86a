"""The simulator's OPC UA server: one variable per machine signal, written from the simulation.

Address space: ``Objects/<site>/<area>/<line>/<machine>/<signal>`` (browse names are the asset
segments and signal names, in namespace :data:`NAMESPACE_URI`); NodeIds are strings
``ns=<idx>;s=<site>/<area>/<line>/<machine>/<signal>``. Floats are Double, counters Int64, text
String; analog variables carry an ``EngineeringUnits`` (EUInformation, UNECE codes) property.
Values are written straight into the server's address space (no client round trip) with
SourceTimestamp = the simulated time the machine reports and StatusCode Good, or
BadSensorFailure while a sensor drops out (the value is then null, as OPC UA requires). Until
the first write a variable holds its initial value, or with ``wait_for_first_write`` (what the
runtime uses) StatusCode BadWaitingForInitialData and no value, so an early subscriber gets no
fake sample.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Sequence
from datetime import UTC, datetime
from types import TracebackType
from typing import Any

from asyncua.crypto.truststore import TrustStore
from asyncua.crypto.validator import CertificateValidator, CertificateValidatorOptions
from asyncua.server.server import Server

from simulator.opcua.security import SERVER_APP_URI, OpcUaSecurity, ensure_certificate
from zhizao.errors import ConnectionLost, SecurityError
from zhizao.model import AssetPath, Quality, Value

ua: Any = importlib.import_module("asyncua.ua")  # loosely typed upstream: keep it Any behind this seam
NAMESPACE_URI = "urn:zhizao:simulator"
UNECE_NS = "http://www.opcfoundation.org/UA/units/un/cefact"
UNECE = {
    "degC": "CEL", "bar": "BAR", "rpm": "RPM", "mm/s": "C16", "A": "AMP", "m3/min": "G53", "%": "P1",
    "kN": "B47", "N.m": "NU", "m/min": "2X", "mm/min": "H81", "kW": "KWT", "kWh": "KWH",
}  # fmt: skip
_STATUS = {
    Quality.GOOD: ua.StatusCode(ua.StatusCodes.Good),
    Quality.UNCERTAIN: ua.StatusCode(ua.StatusCodes.Uncertain),
    Quality.BAD: ua.StatusCode(ua.StatusCodes.BadSensorFailure),
}
log = logging.getLogger(__name__)


class _SharedDataValue(ua.DataValue):  # type: ignore[misc]
    """A DataValue the server may share instead of deep-copying it for every monitored item.

    asyncua deep-copies each written DataValue per monitored item "to prevent referencing the
    inner value"; ours are built fresh for each write and never mutated, so sharing is safe and
    saves about half the server's CPU per value change."""

    def __deepcopy__(self, memo: dict[int, Any]) -> _SharedDataValue:
        return self


def _unit_id(code: str) -> int:
    value = 0
    for ch in code:
        value = (value << 8) | ord(ch)
    return value


def eu_information(unit: str) -> Any:
    code = UNECE.get(unit, "")
    return ua.EUInformation(
        NamespaceUri=UNECE_NS,
        UnitId=_unit_id(code) if code else -1,
        DisplayName=ua.LocalizedText(unit),
        Description=ua.LocalizedText(unit),
    )


def _variant_type(value: Value) -> Any:
    if isinstance(value, bool):
        return ua.VariantType.Boolean
    if isinstance(value, int):
        return ua.VariantType.Int64
    if isinstance(value, float):
        return ua.VariantType.Double
    return ua.VariantType.String


class OpcUaServer:
    """An asyncua server serving machines' signals. Use as ``async with``.

    ``machines`` lists ``(asset, {signal: (initial value, unit or None)})`` (the initial value
    fixes the data type). After entering,
    :attr:`endpoint` is the URL and :meth:`node_id` gives the NodeId string of a signal.
    :meth:`write` may be called from the event loop that entered the context only.
    """

    def __init__(
        self,
        machines: Sequence[tuple[AssetPath, dict[str, tuple[Value, str | None]]]],
        *,
        host: str = "127.0.0.1",
        port: int = 4840,
        security: OpcUaSecurity | None = None,
        wait_for_first_write: bool = False,
    ) -> None:
        self.machines = list(machines)
        self.wait_for_first_write = wait_for_first_write
        self.host = host
        self.port = port
        self.security = security
        self.endpoint = f"opc.tcp://{host}:{port}/zhizao/sim"
        self.namespace_index = 0
        self._server: Server | None = None
        self._nodes: list[dict[str, tuple[Any, Any]]] = []
        self._aspace: Any = None
        self.writes = 0

    def node_id(self, asset: AssetPath, signal: str) -> str:
        """``ns=<idx>;s=<asset>/<signal>``."""
        return f"ns={self.namespace_index};s={asset}/{signal}"

    async def __aenter__(self) -> OpcUaServer:
        server = Server()
        await server.init()
        server.set_endpoint(self.endpoint)
        server.set_server_name("zhizao simulated line")
        await server.set_application_uri(SERVER_APP_URI)
        if self.security is not None:
            await self._secure(server)
        else:
            server.set_security_policy([ua.SecurityPolicyType.NoSecurity])
        self.namespace_index = await server.register_namespace(NAMESPACE_URI)
        await self._build(server)
        try:
            await server.start()
        except OSError as exc:
            raise ConnectionLost(f"cannot listen on {self.endpoint}: {exc}") from exc
        self._server = server
        self._aspace = server.iserver.aspace
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._server is not None:
            await self._server.stop()
            self._server = None

    async def _secure(self, server: Server) -> None:
        sec = self.security
        assert sec is not None
        await ensure_certificate(sec.key_path, sec.cert_path, app_uri=SERVER_APP_URI, client=False)
        await server.load_certificate(str(sec.cert_path))
        await server.load_private_key(str(sec.key_path))
        server.set_security_policy([ua.SecurityPolicyType.Basic256Sha256_SignAndEncrypt])
        if not sec.trust_dir.is_dir():
            raise SecurityError(f"trust folder {sec.trust_dir} does not exist")
        store = TrustStore([sec.trust_dir], [])
        try:
            await store.load()
        except ValueError as exc:  # asyncua: "can't create an empty store", unreadable certificates
            raise SecurityError(
                f"trust folder {sec.trust_dir}: {exc} — put the certificates (DER or PEM) of the clients "
                "allowed to connect there; without any, no client could connect"
            ) from exc
        validator = CertificateValidator(
            CertificateValidatorOptions.TRUSTED_VALIDATION | CertificateValidatorOptions.PEER_CLIENT, store
        )
        server.set_certificate_validator(validator)

    async def _build(self, server: Server) -> None:
        idx = self.namespace_index
        folders: dict[str, Any] = {}
        objects = server.nodes.objects
        for asset, signals in self.machines:
            parent = objects
            path = ""
            for segment in (asset.site, asset.area, asset.line, asset.machine):
                path = f"{path}/{segment}" if path else segment
                if path not in folders:
                    folders[path] = await parent.add_folder(
                        ua.NodeId(path, idx), ua.QualifiedName(segment, idx)
                    )
                parent = folders[path]
            nodes: dict[str, tuple[Any, Any]] = {}
            for signal, (initial, unit) in signals.items():
                vtype = _variant_type(initial)
                nid = ua.NodeId(f"{asset}/{signal}", idx)
                var = await parent.add_variable(
                    nid, ua.QualifiedName(signal, idx), ua.Variant(initial, vtype)
                )
                if unit:
                    await var.add_property(
                        ua.NodeId(f"{asset}/{signal}.EngineeringUnits", idx),
                        ua.QualifiedName("EngineeringUnits", 0),
                        eu_information(unit),
                        datatype=ua.NodeId(ua.ObjectIds.EUInformation),
                    )
                nodes[signal] = (nid, vtype)
                if self.wait_for_first_write:  # no fake initial sample for a client subscribing early
                    await server.write_attribute_value(
                        nid, ua.DataValue(StatusCode=ua.StatusCode(ua.StatusCodes.BadWaitingForInitialData))
                    )
            self._nodes.append(nodes)

    async def write(self, machine: int, ts: datetime, values: Sequence[tuple[str, Value, Quality]]) -> None:
        """Write one machine's values of one tick (``ts``: the time the machine reports)."""
        aspace = self._aspace
        if aspace is None:
            raise ConnectionLost("the OPC UA server is not running")
        nodes = self._nodes[machine]
        now = datetime.now(UTC)
        value_attr = ua.AttributeIds.Value
        for signal, value, quality in values:
            nid, vtype = nodes[signal]
            dv = _SharedDataValue(
                Value=ua.Variant(value, vtype),
                StatusCode=_STATUS[quality],
                SourceTimestamp=ts,
                ServerTimestamp=now,
            )
            result = await aspace.write_attribute_value(nid, value_attr, dv)
            if result is not None and not result.is_good():
                log.error("write of %s/%s refused: %s", self.machines[machine][0], signal, result)
            self.writes += 1
