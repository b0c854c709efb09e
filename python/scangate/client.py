"""``scangate.Client`` and ``scangate.AsyncClient``: typed calls to a ``scangate serve``.

    from scangate import Client
    with Client("127.0.0.1:50051", token="sg_...") as c:
        d = c.scan("1A...", actor="openid-1", region=440106)
        print(d.verdict.label, d.award, d.message["zh-CN"])

Scans come back as ``decision.Decision`` (re-exported by ``rewards``; as
``decide_scans`` returns them in-process); other calls return the package's types
where it has one (``results.LinkReport``, ``EpcisReport``, ``Redemption``,
``recalls.RecallReport``) and otherwise the typed ``scangate.v1`` reply message.

The client loads grpc, protobuf, the generated ``scangate.v1`` modules and light
pure-Python modules only: no LMDB, numpy, cryptography or native core, whatever
it calls (tests/test_light_import.py).

Error statuses become the package's exceptions (see ``scangate.errors``);
INVALID_ARGUMENT carries ``violations``, the (field, why) pairs the server named.

``Unavailable`` (UNAVAILABLE, DEADLINE_EXCEEDED, CANCELLED: the server is
restarting or stopping, its storage is full, the deadline passed) may be retried:
nothing was decided, or the decision was committed and a retry returns it. Retry a
scan with the same ``request_id`` (pass one to ``scan``; a fresh one would be a
second scan), with a growing pause.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import grpc
from grpc_status import rpc_status

from .decision import Decision, ScanRequest
from .errors import (CorruptionError, InvalidArgument, NotFound, PermissionDenied, RateLimited, RemoteError,
                     ScangateError, Unavailable)
from .recalls import Recall, RecallReport
from .v1 import campaigns_pb2 as camp_pb
from .v1 import campaigns_pb2_grpc
from .v1 import codes_pb2 as codes_pb
from .v1 import codes_pb2_grpc
from .v1 import common_pb2 as common_pb
from .v1 import points_pb2 as points_pb
from .v1 import points_pb2_grpc
from .v1 import scan_pb2 as scan_pb
from .v1 import scan_pb2_grpc
from .v1 import trace_pb2 as trace_pb
from .v1 import trace_pb2_grpc
from .enums import Level
from .results import Dealer, EpcisReport, LinkReport, Redemption
from .wire import decision_from_proto, enum_to_proto, scan_request_to_proto

__all__ = ["Client", "AsyncClient", "IssuedBatch", "DEFAULT_TARGET", "TARGET_ENV", "TOKEN_ENV"]

DEFAULT_TARGET = "127.0.0.1:50051"
TARGET_ENV, TOKEN_ENV = "SCANGATE_TARGET", "SCANGATE_TOKEN"
T = TypeVar("T")


@dataclass(frozen=True)
class IssuedBatch:
    line_id: int
    key_version: int
    first_serial: int
    codes: list[str]


# ---------------------------------------------------------------------- errors
def _error(exc: grpc.RpcError) -> ScangateError:
    code = exc.code() if hasattr(exc, "code") else grpc.StatusCode.UNKNOWN
    details = (exc.details() if hasattr(exc, "details") else None) or str(code)
    name = code.name if code else "UNKNOWN"
    if code == grpc.StatusCode.INVALID_ARGUMENT:
        err = InvalidArgument(details)
        err.violations = _violations(exc)   # type: ignore[attr-defined]
        return err
    if code == grpc.StatusCode.NOT_FOUND:
        return NotFound(details)
    if code == grpc.StatusCode.DATA_LOSS:
        return CorruptionError(details)
    if code in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED):
        return PermissionDenied(f"{name}: {details}", name)
    if code == grpc.StatusCode.RESOURCE_EXHAUSTED:
        return RateLimited(f"{name}: {details}", name)
    if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.CANCELLED):
        return Unavailable(f"{name}: {details}", name)
    return RemoteError(f"{name}: {details}", name)


def _violations(exc: grpc.RpcError) -> list[tuple[str, str]]:
    from google.rpc import error_details_pb2

    try:
        status = rpc_status.from_call(exc)   # type: ignore[arg-type]
    except Exception:   # noqa: BLE001 - a malformed details blob: no violations
        return []
    out = []
    for detail in status.details if status else ():
        bad = error_details_pb2.BadRequest()
        if detail.Unpack(bad):
            out += [(v.field, v.description) for v in bad.field_violations]
    return out


# ---------------------------------------------------------------------- shared request / reply shapes
def _read(path_or_bytes: bytes | str | Path | None) -> bytes | None:
    if path_or_bytes is None or isinstance(path_or_bytes, bytes):
        return path_or_bytes
    return Path(path_or_bytes).read_bytes()


def _channel_args(token: str | None, root_certificates: bytes | str | Path | None,
                  certificate_chain: bytes | str | Path | None, private_key: bytes | str | Path | None,
                  tls: bool | None, server_name: str | None
                  ) -> tuple[grpc.ChannelCredentials | None, list[tuple[str, Any]], list[tuple[str, str]]]:
    options: list[tuple[str, Any]] = [("grpc.max_receive_message_length", 256 << 20),
                                      ("grpc.max_send_message_length", 256 << 20)]
    if server_name:
        options.append(("grpc.ssl_target_name_override", server_name))
    use_tls = tls if tls is not None else any(x is not None for x in (root_certificates, certificate_chain))
    creds = grpc.ssl_channel_credentials(_read(root_certificates), _read(private_key),
                                         _read(certificate_chain)) if use_tls else None
    token = token if token is not None else os.environ.get(TOKEN_ENV) or None
    metadata = [("authorization", f"Bearer {token}")] if token else []
    return creds, options, metadata


_DATUMS = {"wgs84": scan_pb.DATUM_WGS84, "gcj02": scan_pb.DATUM_GCJ02}


def _scan_req(code: str, actor: str, request_id: str | None, actor_type: str, region: int | None,
              lat: float | None, lon: float | None, time_ms: int | None, actor_tags: Sequence[str],
              datum: str = "wgs84") -> scan_pb.ScanRequest:
    if datum not in _DATUMS:
        raise InvalidArgument(f"datum: {datum!r} is not wgs84 or gcj02")
    msg = scan_request_to_proto(ScanRequest(request_id or uuid.uuid4().hex, code, actor, actor_type, region, lat,
                                            lon, time_ms, tuple(actor_tags)))
    if datum != "wgs84":
        msg.datum = _DATUMS[datum]
    return msg


def _batches(requests: Iterable[ScanRequest], size: int) -> Iterator[scan_pb.ScanBatch]:
    batch: list[scan_pb.ScanRequest] = []
    for r in requests:
        batch.append(scan_request_to_proto(r))
        if len(batch) == size:
            yield scan_pb.ScanBatch(scans=batch)
            batch = []
    if batch:
        yield scan_pb.ScanBatch(scans=batch)


_LINK_ACTIONS = {"ADD": trace_pb.LINK_ACTION_ADD, "DELETE": trace_pb.LINK_ACTION_DELETE}


def _links_req(links: Iterable[tuple[str, str] | tuple[str, str, str]], source: str) -> trace_pb.UploadLinksRequest:
    rows = []
    for link in links:
        action = link[2] if len(link) > 2 else "ADD"
        if action not in _LINK_ACTIONS:
            raise InvalidArgument(f"action: {action!r} is not ADD or DELETE")
        rows.append(trace_pb.Link(parent=link[0], child=link[1], action=_LINK_ACTIONS[action]))
    return trace_pb.UploadLinksRequest(links=rows, source=source)


def _ship_req(shipments: Iterable[tuple[str, str] | tuple[str, str, int] | tuple[str, str, int, str]],
              source: str) -> trace_pb.UploadShipmentsRequest:
    rows = []
    for s in shipments:
        rows.append(trace_pb.ShipmentRow(unit=s[0], dealer_id=s[1], shipped_at_ms=s[2] if len(s) > 2 else 0,
                                         shipment_id=s[3] if len(s) > 3 else ""))
    return trace_pb.UploadShipmentsRequest(shipments=rows, source=source)


def _dealers_req(dealers: Iterable[Dealer]) -> trace_pb.PutDealersRequest:
    return trace_pb.PutDealersRequest(dealers=[trace_pb.Dealer(dealer_id=d.dealer_id, name=d.name,
                                                               territory=list(d.territory)) for d in dealers])


def _issue_req(sku: str, level: Level | str | int, count: int, gtin: str, batch: str, url: bool,
               batch_size: int) -> codes_pb.IssueCodesRequest:
    return codes_pb.IssueCodesRequest(sku=sku, level=enum_to_proto(Level.parse(level)), count=count, gtin=gtin,
                                      batch=batch, form=codes_pb.CODE_FORM_URL if url else codes_pb.CODE_FORM_TEXT,
                                      batch_size=batch_size)


def _issued(m: codes_pb.IssuedCodeBatch) -> IssuedBatch:
    return IssuedBatch(m.line_id, m.key_version, m.first_serial, list(m.codes))


def _link_report(r: trace_pb.UploadLinksReply) -> LinkReport:
    return LinkReport(r.rows, r.added, r.removed, r.parents)


def _epcis_report(r: trace_pb.UploadEpcisReply) -> EpcisReport:
    return EpcisReport(r.events, r.aggregations, r.shipments, r.added, r.removed, r.skipped)


_CAMPAIGN_STATUS = {"active": camp_pb.CAMPAIGN_STATUS_ACTIVE, "paused": camp_pb.CAMPAIGN_STATUS_PAUSED}
_PAYOUT_STATE = {None: points_pb.PAYOUT_STATE_UNSPECIFIED, "pending": points_pb.PAYOUT_STATE_PENDING,
                 "sending": points_pb.PAYOUT_STATE_SENDING, "confirmed": points_pb.PAYOUT_STATE_CONFIRMED,
                 "failed": points_pb.PAYOUT_STATE_FAILED}


def _status_req(campaign_id: str, status: str) -> camp_pb.SetCampaignStatusRequest:
    if status not in _CAMPAIGN_STATUS:
        raise InvalidArgument(f"status: {status!r} is not active or paused")
    return camp_pb.SetCampaignStatusRequest(campaign_id=campaign_id, status=_CAMPAIGN_STATUS[status])


def _redemption(req: points_pb.RedeemPointsRequest, r: points_pb.RedeemPointsReply) -> Redemption:
    return Redemption(req.request_id, req.actor, req.points, r.ok, r.balance, r.reason or None)


def _payouts_req(state: str | None, limit: int) -> points_pb.ListPayoutsRequest:
    if state not in _PAYOUT_STATE:
        raise InvalidArgument(f"state: {state!r} is not pending, sending, confirmed or failed")
    return points_pb.ListPayoutsRequest(state=_PAYOUT_STATE[state], limit=limit)


_RECALL_SOURCES = {common_pb.RECALL_KIND_LINE: "line", common_pb.RECALL_KIND_RANGE: "range",
                   common_pb.RECALL_KIND_CODES: "codes"}


def _recall_req(reason: str, line_id: int | None, serial_range: tuple[int, int] | None,
                codes: Sequence[str] | None) -> trace_pb.RecallCodesRequest:
    if sum(x is not None for x in (line_id, serial_range, codes)) != 1:
        raise InvalidArgument("target: give exactly one of line_id, serial_range or codes")
    if line_id is not None:
        return trace_pb.RecallCodesRequest(line_id=line_id, reason=reason)
    if serial_range is not None:
        first, last = serial_range
        return trace_pb.RecallCodesRequest(range=trace_pb.SerialRange(first=first, last=last), reason=reason)
    return trace_pb.RecallCodesRequest(codes=trace_pb.RecallCodeList(codes=list(codes or ())), reason=reason)


def _recall(m: common_pb.Recall) -> Recall:
    source = _RECALL_SOURCES.get(m.kind, "range")
    if source == "line":
        return Recall("line", m.reason, m.at_ms, line_id=m.line_id, source="line")
    return Recall("range", m.reason, m.at_ms, first=m.first, last=m.last, source=source)


def _recall_report(r: trace_pb.RecallCodesReply) -> RecallReport:
    return RecallReport([_recall(m) for m in r.recalls], r.added)


class _Stubs:
    def __init__(self, channel: grpc.Channel | grpc.aio.Channel):
        self.scan = scan_pb2_grpc.ScanServiceStub(channel)
        self.codes = codes_pb2_grpc.CodeServiceStub(channel)
        self.trace = trace_pb2_grpc.TraceServiceStub(channel)
        self.recalls = trace_pb2_grpc.RecallServiceStub(channel)
        self.campaigns = campaigns_pb2_grpc.CampaignServiceStub(channel)
        self.points = points_pb2_grpc.PointsServiceStub(channel)
        self.payouts = points_pb2_grpc.PayoutServiceStub(channel)


# ---------------------------------------------------------------------- the blocking client
class Client:
    """A blocking client. ``target`` defaults to ``$SCANGATE_TARGET`` or
    127.0.0.1:50051 and ``token`` to ``$SCANGATE_TOKEN``. ``timeout`` (seconds) is
    the deadline of every call; streams and uploads get ``stream_timeout``.

    Errors are ``scangate.errors`` classes. ``Unavailable`` may be retried: a scan
    with the same ``request_id`` (a retry returns the decision if it was committed,
    and decides it if not), an upload as it was (uploads are all or nothing). A
    full disk or LMDB map on the server answers ``Unavailable`` ("storage full:
    ...") until its operator frees space."""

    def __init__(self, target: str | None = None, *, token: str | None = None,
                 root_certificates: bytes | str | Path | None = None,
                 certificate_chain: bytes | str | Path | None = None, private_key: bytes | str | Path | None = None,
                 tls: bool | None = None, server_name: str | None = None, timeout: float = 10.0,
                 stream_timeout: float = 600.0):
        creds, options, self._metadata = _channel_args(token, root_certificates, certificate_chain, private_key,
                                                       tls, server_name)
        target = target or os.environ.get(TARGET_ENV) or DEFAULT_TARGET
        self._channel = (grpc.secure_channel(target, creds, options) if creds
                         else grpc.insecure_channel(target, options))
        self._stub = _Stubs(self._channel)
        self.timeout, self.stream_timeout = timeout, stream_timeout

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call(self, method: Any, request: Any, timeout: float | None = None) -> Any:
        try:
            return method(request, timeout=timeout or self.timeout, metadata=self._metadata)
        except grpc.RpcError as exc:
            raise _error(exc) from None

    def _stream(self, method: Any, request: Any) -> Iterator[Any]:
        try:
            yield from method(request, timeout=self.stream_timeout, metadata=self._metadata)
        except grpc.RpcError as exc:
            raise _error(exc) from None

    # scans
    def scan(self, code: str, actor: str, *, request_id: str | None = None, actor_type: str = "consumer",
             region: int | None = None, lat: float | None = None, lon: float | None = None,
             time_ms: int | None = None, actor_tags: Sequence[str] = (), datum: str = "wgs84") -> Decision:
        """Decide one scan (a fresh request id unless given: pass one to retry
        safely after ``Unavailable``). ``datum``: of ``lat``/``lon``, "wgs84" or
        "gcj02" (what WeChat's wx.getLocation reports; the server converts it)."""
        req = _scan_req(code, actor, request_id, actor_type, region, lat, lon, time_ms, actor_tags, datum)
        return decision_from_proto(self._call(self._stub.scan.Scan, req))

    def scan_request(self, request: ScanRequest) -> Decision:
        return decision_from_proto(self._call(self._stub.scan.Scan, scan_request_to_proto(request)))

    def scan_stream(self, requests: Iterable[ScanRequest], batch_size: int = 100) -> Iterator[Decision]:
        """Decide scans over one stream, ``batch_size`` per group commit; yields
        decisions in request order as their batches commit."""
        for reply in self._stream(self._stub.scan.ScanStream, _batches(requests, batch_size)):
            yield from (decision_from_proto(d) for d in reply.decisions)

    # codes
    def issue_codes(self, sku: str, level: Level | str | int, count: int, *, gtin: str = "", batch: str = "",
                    url: bool = False, batch_size: int = 10_000) -> Iterator[IssuedBatch]:
        req = _issue_req(sku, level, count, gtin, batch, url, batch_size)
        return (_issued(m) for m in self._stream(self._stub.codes.IssueCodes, req))

    def verify_codes(self, codes: Sequence[str]) -> list[codes_pb.CodeCheck]:
        return list(self._call(self._stub.codes.VerifyCodes, codes_pb.VerifyCodesRequest(codes=codes)).results)

    # trace
    def upload_links(self, links: Iterable[tuple[str, str] | tuple[str, str, str]], source: str = "") -> LinkReport:
        """Rows of (parent, child) or (parent, child, "ADD"|"DELETE"); all or nothing."""
        return _link_report(self._call(self._stub.trace.UploadLinks, _links_req(links, source), self.stream_timeout))

    def upload_shipments(self, shipments: Iterable[tuple[str, str] | tuple[str, str, int] | tuple[str, str, int, str]],
                         source: str = "") -> int:
        """Rows of (unit code, dealer id[, shipped_at_ms[, shipment id]])."""
        return int(self._call(self._stub.trace.UploadShipments, _ship_req(shipments, source),
                              self.stream_timeout).shipments)

    def upload_epcis(self, document: bytes | str, *, validate_schema: bool = False, source: str = "") -> EpcisReport:
        doc = document.encode() if isinstance(document, str) else document
        req = trace_pb.UploadEpcisRequest(document=doc, validate_schema=validate_schema, source=source)
        return _epcis_report(self._call(self._stub.trace.UploadEpcis, req, self.stream_timeout))

    def put_dealers(self, dealers: Iterable[Dealer]) -> int:
        return int(self._call(self._stub.trace.PutDealers, _dealers_req(dealers)).dealers)

    def trace(self, codes: Sequence[str]) -> list[trace_pb.TraceResult]:
        return list(self._call(self._stub.trace.Trace, trace_pb.TraceRequest(codes=codes)).results)

    # recalls (admin)
    def recall(self, reason: str, *, line_id: int | None = None, serial_range: tuple[int, int] | None = None,
               codes: Sequence[str] | None = None) -> RecallReport:
        """Recall a product line, serials first..last, or single codes (exactly one);
        all or nothing, and asking again adds nothing (``added`` 0)."""
        req = _recall_req(reason, line_id, serial_range, codes)
        return _recall_report(self._call(self._stub.recalls.RecallCodes, req, self.stream_timeout))

    def list_recalls(self) -> list[Recall]:
        return [_recall(m) for m in self._call(self._stub.recalls.ListRecalls, trace_pb.ListRecallsRequest()).recalls]

    # campaigns
    def put_campaign(self, definition: str, source: str = "") -> camp_pb.Campaign:
        return self._call(self._stub.campaigns.PutCampaign,  # type: ignore[no-any-return]
                          camp_pb.PutCampaignRequest(definition=definition, source=source))

    def get_campaign(self, campaign_id: str) -> camp_pb.Campaign:
        return self._call(self._stub.campaigns.GetCampaign,  # type: ignore[no-any-return]
                          camp_pb.GetCampaignRequest(campaign_id=campaign_id))

    def list_campaigns(self) -> list[camp_pb.Campaign]:
        return list(self._call(self._stub.campaigns.ListCampaigns, camp_pb.ListCampaignsRequest()).campaigns)

    def set_campaign_status(self, campaign_id: str, status: str) -> camp_pb.Campaign:
        """status: "active" or "paused"."""
        return self._call(self._stub.campaigns.SetCampaignStatus,  # type: ignore[no-any-return]
                          _status_req(campaign_id, status))

    # points, payouts
    def points(self, actor: str, history_limit: int = 20) -> points_pb.PointsReply:
        return self._call(self._stub.points.GetPoints,  # type: ignore[no-any-return]
                          points_pb.GetPointsRequest(actor=actor, history_limit=history_limit))

    def redeem_points(self, actor: str, points: int, request_id: str, note: str = "") -> Redemption:
        req = points_pb.RedeemPointsRequest(request_id=request_id, actor=actor, points=points, note=note)
        return _redemption(req, self._call(self._stub.points.RedeemPoints, req))

    def leaderboard(self, period: str, top: int = 10, actor: str = "") -> points_pb.LeaderboardReply:
        return self._call(self._stub.points.Leaderboard,  # type: ignore[no-any-return]
                          points_pb.LeaderboardRequest(period=period, top=top, actor=actor))

    def list_payouts(self, state: str | None = None, limit: int = 100) -> points_pb.ListPayoutsReply:
        return self._call(self._stub.payouts.ListPayouts, _payouts_req(state, limit))  # type: ignore[no-any-return]


# ---------------------------------------------------------------------- the asyncio client
class AsyncClient:
    """The same calls for asyncio (``grpc.aio``): ``await c.scan(...)``; the same
    errors (``Unavailable`` may be retried, as for ``Client``)."""

    def __init__(self, target: str | None = None, *, token: str | None = None,
                 root_certificates: bytes | str | Path | None = None,
                 certificate_chain: bytes | str | Path | None = None, private_key: bytes | str | Path | None = None,
                 tls: bool | None = None, server_name: str | None = None, timeout: float = 10.0,
                 stream_timeout: float = 600.0):
        creds, options, self._metadata = _channel_args(token, root_certificates, certificate_chain, private_key,
                                                       tls, server_name)
        target = target or os.environ.get(TARGET_ENV) or DEFAULT_TARGET
        self._channel = (grpc.aio.secure_channel(target, creds, options) if creds
                         else grpc.aio.insecure_channel(target, options))
        self._stub = _Stubs(self._channel)
        self.timeout, self.stream_timeout = timeout, stream_timeout

    async def close(self) -> None:
        await self._channel.close()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _call(self, method: Any, request: Any, timeout: float | None = None) -> Any:
        try:
            return await method(request, timeout=timeout or self.timeout, metadata=self._metadata)
        except grpc.RpcError as exc:
            raise _error(exc) from None

    async def _stream(self, call: Any) -> AsyncIterator[Any]:
        try:
            async for reply in call:
                yield reply
        except grpc.RpcError as exc:
            raise _error(exc) from None

    async def scan(self, code: str, actor: str, *, request_id: str | None = None, actor_type: str = "consumer",
                   region: int | None = None, lat: float | None = None, lon: float | None = None,
                   time_ms: int | None = None, actor_tags: Sequence[str] = (), datum: str = "wgs84") -> Decision:
        req = _scan_req(code, actor, request_id, actor_type, region, lat, lon, time_ms, actor_tags, datum)
        return decision_from_proto(await self._call(self._stub.scan.Scan, req))

    async def scan_request(self, request: ScanRequest) -> Decision:
        return decision_from_proto(await self._call(self._stub.scan.Scan, scan_request_to_proto(request)))

    async def scan_stream(self, requests: Iterable[ScanRequest], batch_size: int = 100) -> AsyncIterator[Decision]:
        call = self._stub.scan.ScanStream(_batches(requests, batch_size), timeout=self.stream_timeout,
                                          metadata=self._metadata)
        async for reply in self._stream(call):
            for d in reply.decisions:
                yield decision_from_proto(d)

    async def issue_codes(self, sku: str, level: Level | str | int, count: int, *, gtin: str = "",
                          batch: str = "", url: bool = False, batch_size: int = 10_000) -> AsyncIterator[IssuedBatch]:
        call = self._stub.codes.IssueCodes(_issue_req(sku, level, count, gtin, batch, url, batch_size),
                                           timeout=self.stream_timeout, metadata=self._metadata)
        async for m in self._stream(call):
            yield _issued(m)

    async def verify_codes(self, codes: Sequence[str]) -> list[codes_pb.CodeCheck]:
        return list((await self._call(self._stub.codes.VerifyCodes, codes_pb.VerifyCodesRequest(codes=codes))).results)

    async def upload_links(self, links: Iterable[tuple[str, str] | tuple[str, str, str]],
                           source: str = "") -> LinkReport:
        return _link_report(await self._call(self._stub.trace.UploadLinks, _links_req(links, source),
                                             self.stream_timeout))

    async def upload_shipments(self, shipments: Iterable[tuple[str, str] | tuple[str, str, int]
                                                         | tuple[str, str, int, str]], source: str = "") -> int:
        return int((await self._call(self._stub.trace.UploadShipments, _ship_req(shipments, source),
                                     self.stream_timeout)).shipments)

    async def upload_epcis(self, document: bytes | str, *, validate_schema: bool = False,
                           source: str = "") -> EpcisReport:
        doc = document.encode() if isinstance(document, str) else document
        req = trace_pb.UploadEpcisRequest(document=doc, validate_schema=validate_schema, source=source)
        return _epcis_report(await self._call(self._stub.trace.UploadEpcis, req, self.stream_timeout))

    async def put_dealers(self, dealers: Iterable[Dealer]) -> int:
        return int((await self._call(self._stub.trace.PutDealers, _dealers_req(dealers))).dealers)

    async def trace(self, codes: Sequence[str]) -> list[trace_pb.TraceResult]:
        return list((await self._call(self._stub.trace.Trace, trace_pb.TraceRequest(codes=codes))).results)

    async def recall(self, reason: str, *, line_id: int | None = None,
                     serial_range: tuple[int, int] | None = None,
                     codes: Sequence[str] | None = None) -> RecallReport:
        req = _recall_req(reason, line_id, serial_range, codes)
        return _recall_report(await self._call(self._stub.recalls.RecallCodes, req, self.stream_timeout))

    async def list_recalls(self) -> list[Recall]:
        reply = await self._call(self._stub.recalls.ListRecalls, trace_pb.ListRecallsRequest())
        return [_recall(m) for m in reply.recalls]

    async def put_campaign(self, definition: str, source: str = "") -> camp_pb.Campaign:
        return await self._call(self._stub.campaigns.PutCampaign,  # type: ignore[no-any-return]
                                camp_pb.PutCampaignRequest(definition=definition, source=source))

    async def get_campaign(self, campaign_id: str) -> camp_pb.Campaign:
        return await self._call(self._stub.campaigns.GetCampaign,  # type: ignore[no-any-return]
                                camp_pb.GetCampaignRequest(campaign_id=campaign_id))

    async def list_campaigns(self) -> list[camp_pb.Campaign]:
        return list((await self._call(self._stub.campaigns.ListCampaigns, camp_pb.ListCampaignsRequest())).campaigns)

    async def set_campaign_status(self, campaign_id: str, status: str) -> camp_pb.Campaign:
        return await self._call(self._stub.campaigns.SetCampaignStatus,  # type: ignore[no-any-return]
                                _status_req(campaign_id, status))

    async def points(self, actor: str, history_limit: int = 20) -> points_pb.PointsReply:
        return await self._call(self._stub.points.GetPoints,  # type: ignore[no-any-return]
                                points_pb.GetPointsRequest(actor=actor, history_limit=history_limit))

    async def redeem_points(self, actor: str, points: int, request_id: str, note: str = "") -> Redemption:
        req = points_pb.RedeemPointsRequest(request_id=request_id, actor=actor, points=points, note=note)
        return _redemption(req, await self._call(self._stub.points.RedeemPoints, req))

    async def leaderboard(self, period: str, top: int = 10, actor: str = "") -> points_pb.LeaderboardReply:
        return await self._call(self._stub.points.Leaderboard,  # type: ignore[no-any-return]
                                points_pb.LeaderboardRequest(period=period, top=top, actor=actor))

    async def list_payouts(self, state: str | None = None, limit: int = 100) -> points_pb.ListPayoutsReply:
        return await self._call(self._stub.payouts.ListPayouts,  # type: ignore[no-any-return]
                                _payouts_req(state, limit))
