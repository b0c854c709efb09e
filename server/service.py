"""One worker: the ``scangate.v1`` servicers on a ``grpc.aio`` server.

The servicers translate messages to the package's calls and back; they know
nothing of how codes are encrypted or stored. Blocking work runs off the event
loop: scans go to the worker's ``GroupCommitWriter``; uploads, issuance and reads
run in the default thread pool.
"""

from __future__ import annotations

import asyncio
import contextvars
import json
import logging
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import grpc
import numpy as np
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1.health import aio as health_aio
from grpc_reflection.v1alpha import reflection

from scangate import geo, ingest, payouts, points, rewards, verdicts
from scangate.config import Config
from scangate.datadir import DataDir
from scangate.enums import CodeStatus, Level
from scangate.errors import BatchRejected, InvalidArgument, Problem
from scangate.trace import TraceStore, text_problem
from scangate.v1 import campaigns_pb2 as camp_pb
from scangate.v1 import campaigns_pb2_grpc
from scangate.v1 import codes_pb2 as codes_pb
from scangate.v1 import codes_pb2_grpc
from scangate.v1 import common_pb2 as common
from scangate.v1 import points_pb2 as points_pb
from scangate.v1 import points_pb2_grpc
from scangate.v1 import scan_pb2 as scan_pb
from scangate.v1 import trace_pb2 as trace_pb
from scangate.v1 import trace_pb2_grpc
from scangate.wire import enum_to_proto

from . import metrics
from .auth import PUBLIC_PREFIXES, Principal, TokenTable, allowed
from .errors import Malformed, RequestError, bad, to_request_error, tolerant
from .limits import EXEMPT_ROLES, LimitTable, Refusal, client_of_peer
from .scanlink import WriterLink
from .writer import DeadlineExpired

log = logging.getLogger("scangate.server")

SERVICE_NAMES = tuple(
    f"scangate.v1.{name}" for name in
    ("ScanService", "CodeService", "TraceService", "CampaignService", "PointsService", "PayoutService",
     "RecallService"))
MAX_SCAN_BATCH = 1000
MAX_ISSUE = 100_000_000


# ---------------------------------------------------------------------- interceptor
@dataclass
class Guard:
    """Auth, per-client rate limit and metrics around every call."""

    tokens: TokenTable | None
    limits: LimitTable

    def check(self, method: str, metadata: Iterable[tuple[str, Any]], peer: str) -> Principal | None:
        if method.startswith(PUBLIC_PREFIXES):
            return None
        who = None
        if self.tokens is not None:
            token = next((v for k, v in metadata if k == "authorization"), None)
            if not isinstance(token, str) or not token.startswith("Bearer "):
                raise RequestError(grpc.StatusCode.UNAUTHENTICATED, "missing authorization: Bearer <token>")
            who = self.tokens.identify(token[len("Bearer "):].strip())
            if who is None:
                raise RequestError(grpc.StatusCode.UNAUTHENTICATED, "unknown token")
            if not allowed(who.role, method):
                raise RequestError(grpc.StatusCode.PERMISSION_DENIED,
                                   f"role {who.role!r} may not call {method.rsplit('/', 1)[-1]}")
        _PRINCIPAL.set(who)             # the servicers' code limits: exempt roles, the client's name
        if self.limits.requests_enabled:
            refuse_if(self.limits.allow_request(who.name if who else client_of_peer(peer)))
        return who


# The calling token's name, set by the guard for the call's task: request ids are
# scoped to it (two apps may both send "req-1"); "" with auth off.
_CLIENT: contextvars.ContextVar[str] = contextvars.ContextVar("scangate_client", default="")
# Who the guard found (None: auth off, or the guard had nothing to check).
_PRINCIPAL: contextvars.ContextVar[Principal | None] = contextvars.ContextVar("scangate_principal", default=None)


def refuse_if(refusal: Refusal | None) -> None:
    if refusal is not None:
        metrics.refused(refusal.limit)
        raise RequestError(grpc.StatusCode.RESOURCE_EXHAUSTED, refusal.message)


def code_client(limits: LimitTable, context: grpc.aio.ServicerContext) -> str | None:
    """The client a call's codes count against (server/limits.py): its token's
    name, or without tokens its peer address; None where the code limits are off
    or its role is exempt."""
    if not limits.client_checks:
        return None
    who = _PRINCIPAL.get()
    if who is not None:
        return None if who.role in EXEMPT_ROLES else who.name
    return client_of_peer(context.peer() or "")


_GENUINE = enum_to_proto(CodeStatus.GENUINE)
_Answer = TypeVar("_Answer", codes_pb.VerifyCodesReply, trace_pb.TraceReply)


def answer_counting(answer: Callable[[list[str]], _Answer], codes: list[str],
                    client: str | None) -> tuple[_Answer, int]:
    """``answer(codes)`` (VerifyCodes, Trace) and, for a client the code limits
    count, how many of its results are not genuine: guesses, charged to it.
    Runs in the thread pool with the answer."""
    reply = answer(codes)
    return reply, 0 if client is None else sum(1 for r in reply.results if r.status != _GENUINE)


class GuardInterceptor(grpc.aio.ServerInterceptor):
    """Wraps each method's handler once (cached by method name) with the guard
    and the request metrics."""

    def __init__(self, guard: Guard):
        self.guard = guard
        self._wrapped: dict[str, Any] = {}

    async def intercept_service(self, continuation: Callable[[Any], Awaitable[Any]], details: Any) -> Any:
        wrapped = self._wrapped.get(details.method)
        if wrapped is None:
            handler = await continuation(details)
            if handler is None:
                return None
            wrapped = self._wrapped[details.method] = self._wrap(details.method, handler)
        return wrapped

    def _wrap(self, method: str, handler: Any) -> Any:
        short = method.rsplit("/", 1)[-1]
        guard = self.guard

        # nothing to check: auth off and no client limit, or a public method
        active = not method.startswith(PUBLIC_PREFIXES) and (guard.tokens is not None or guard.limits.requests_enabled)

        def enter(context: grpc.aio.ServicerContext) -> None:
            if active:
                who = guard.check(method, context.invocation_metadata() or (), context.peer() or "")
                if who is not None:
                    _CLIENT.set(who.name)

        async def fail(exc: BaseException, context: grpc.aio.ServicerContext) -> None:
            err = to_request_error(exc)
            metrics.request(short, err.code.name)
            st = err.status()
            await context.abort(st.code, st.details, st.trailing_metadata)

        def done(started: float) -> None:
            metrics.request(short, "OK", time.perf_counter() - started)

        if handler.unary_unary:
            inner = handler.unary_unary

            async def unary_unary(request: Any, context: grpc.aio.ServicerContext) -> Any:
                started = time.perf_counter()
                try:
                    enter(context)
                    if isinstance(request, Malformed):
                        raise request.error(method, context.peer() or "")
                    reply = await inner(request, context)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:   # noqa: BLE001 - every error becomes a status
                    await fail(exc, context)
                done(started)
                return reply

            return grpc.unary_unary_rpc_method_handler(unary_unary, tolerant(handler.request_deserializer),
                                                       handler.response_serializer)

        async def streaming(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            started = time.perf_counter()
            try:
                enter(context)
                if handler.stream_stream:
                    request = _well_formed(request, method, context)
                elif isinstance(request, Malformed):
                    raise request.error(method, context.peer() or "")
                behavior = handler.unary_stream or handler.stream_stream
                async for reply in behavior(request, context):
                    yield reply
            except asyncio.CancelledError:
                raise
            except Exception as exc:   # noqa: BLE001
                await fail(exc, context)
            done(started)

        if handler.unary_stream:
            return grpc.unary_stream_rpc_method_handler(streaming, tolerant(handler.request_deserializer),
                                                        handler.response_serializer)
        if handler.stream_stream:
            return grpc.stream_stream_rpc_method_handler(streaming, tolerant(handler.request_deserializer),
                                                         handler.response_serializer)
        return handler   # stream-unary: none in scangate.v1


async def _well_formed(requests: AsyncIterator[Any], method: str,
                       context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
    """A request stream that ends with INVALID_ARGUMENT at its first malformed
    message (the deserializer marked it ``Malformed``)."""
    async for request in requests:
        if isinstance(request, Malformed):
            raise request.error(method, context.peer() or "")
        yield request


# ---------------------------------------------------------------------- scans
_MAX_ID = rewards.MAX_ID_CHARS
# the writer converts GCJ-02 to WGS-84 (scanlink._to_wgs84)
_DATUMS = frozenset((scan_pb.DATUM_UNSPECIFIED, scan_pb.DATUM_WGS84, scan_pb.DATUM_GCJ02))


def _text(value: str, most: int, field: str, problems: list[tuple[str, str]], least: int = 1,
          empty: str = "") -> None:
    """A string field: its length, then the library's one text check (no NUL or
    control characters), so that the writer never refuses what a worker let by."""
    if not least <= len(value) <= most:
        problems.append((field, empty if empty and not value else f"{least} to {most} characters"))
    elif (why := text_problem(value, most)) is not None:
        problems.append((field, why))


def check_scan(m: scan_pb.ScanRequest, where: str, client: str = "") -> list[tuple[str, str]]:
    """Every field of one scan within the bounds ``rewards.scan_problem`` keeps
    (same constants): a scan refused here never reaches the writer, so it cannot
    take a group commit, and the scans beside it, down with it."""
    problems: list[tuple[str, str]] = []
    _text(m.request_id, _MAX_ID, f"{where}request_id", problems)
    # without a client (auth off) the id's UTF-8 is an LMDB key; a client's ids are hashed when too long
    if not client and len(m.request_id) > rewards.MAX_ID_BYTES // 4 and \
            len(m.request_id.encode()) > rewards.MAX_ID_BYTES:
        problems.append((f"{where}request_id", f"at most {rewards.MAX_ID_BYTES} bytes of UTF-8"))
    _text(m.code, rewards.MAX_CODE_CHARS, f"{where}code", problems, empty="missing")
    _text(m.actor, _MAX_ID, f"{where}actor", problems)
    if m.actor_type not in (common.ACTOR_TYPE_UNSPECIFIED, common.ACTOR_TYPE_CONSUMER, common.ACTOR_TYPE_STORE):
        problems.append((f"{where}actor_type", f"{m.actor_type} is not a known ActorType"))
    if m.region and not 100000 <= m.region <= 999999:
        problems.append((f"{where}region", f"{m.region} is not a 6-digit adcode"))
    elif m.region and not geo.default_index().is_district_code(m.region):
        # never evidence of diversion: a code no district has is bad input
        problems.append((f"{where}region", f"{m.region} is not a district adcode"))
    if m.HasField("lat") != m.HasField("lon"):
        problems.append((f"{where}lat", "lat and lon go together"))
    elif m.HasField("lat"):
        for name, v, most in (("lat", m.lat, 90), ("lon", m.lon, 180)):
            if not math.isfinite(v):
                problems.append((f"{where}{name}", f"{v} is not a finite number"))
            elif not -most <= v <= most:
                problems.append((f"{where}{name}", f"{v:.6g} is outside -{most}..{most}"))
    if m.datum not in _DATUMS:
        problems.append((f"{where}datum", f"{m.datum} is not a known Datum"))
    # 0: the server's clock; else a time that can be one at all (the window a
    # client's clock may be off by is a policy apart)
    if m.time_ms and not rewards.MIN_TIME_MS <= m.time_ms <= rewards.MAX_TIME_MS:
        problems.append((f"{where}time_ms", f"{m.time_ms} is not epoch milliseconds from {rewards.MIN_TIME_MS} "
                                            f"to {rewards.MAX_TIME_MS} (9999-12-30), or 0 for now"))
    if len(m.actor_tags) > rewards.MAX_TAGS:
        problems.append((f"{where}actor_tags", f"at most {rewards.MAX_TAGS} tags"))
    else:
        for j, tag in enumerate(m.actor_tags):
            _text(tag, rewards.MAX_TAG_CHARS, f"{where}actor_tags[{j}]", problems, least=0)
    return problems


def _varint(n: int) -> bytes:
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


class ScanServicer:
    """Scan and ScanStream: validate and rate-limit here, decide in the writer
    process, send its serialised decisions on unchanged."""

    def __init__(self, link: WriterLink, limits: LimitTable):
        self.link = link
        self.limits = limits

    def _admit(self, scans: Sequence[scan_pb.ScanRequest], client: str | None) -> None:
        """The actors' and the client's limits, for the whole call at once."""
        refuse_if(self.limits.admit(client, [m.actor for m in scans], len(scans)))

    async def _decide(self, scans: Sequence[scan_pb.ScanRequest], batch_bytes: bytes,
                      context: grpc.aio.ServicerContext) -> list[bytes]:
        client = code_client(self.limits, context)
        self._admit(scans, client)
        remaining = context.time_remaining()
        if remaining is not None and remaining <= 0:
            raise DeadlineExpired("deadline passed before the scan was decided")
        results = await self.link.decide(batch_bytes, remaining, _CLIENT.get())
        failed = [m.actor for m, (genuine, _) in zip(scans, results) if not genuine]
        if failed:              # honest traffic: none, and no second trip to the table
            self.limits.charge_failures(client, failed, len(failed))
        return [blob for _, blob in results]

    async def Scan(self, request: tuple[bytes, scan_pb.ScanRequest], context: grpc.aio.ServicerContext) -> bytes:
        raw, m = request
        problems = check_scan(m, "", _CLIENT.get())
        if problems:
            raise RequestError(grpc.StatusCode.INVALID_ARGUMENT, "; ".join(f"{f}: {d}" for f, d in problems),
                               problems)
        # the request's own bytes as a one-scan ScanBatch: field 1, length-delimited
        (blob,) = await self._decide((m,), b"\x0a" + _varint(len(raw)) + raw, context)
        return blob

    async def ScanStream(self, request_iterator: AsyncIterator[tuple[bytes, scan_pb.ScanBatch]],
                         context: grpc.aio.ServicerContext) -> AsyncIterator[bytes]:
        async for raw, batch in request_iterator:
            if not 1 <= len(batch.scans) <= MAX_SCAN_BATCH:
                raise bad("scans", f"1 to {MAX_SCAN_BATCH} scans per batch, not {len(batch.scans)}")
            client = _CLIENT.get()
            problems = [p for i, m in enumerate(batch.scans) for p in check_scan(m, f"scans[{i}].", client)]
            if problems:
                raise RequestError(grpc.StatusCode.INVALID_ARGUMENT,
                                   f"{len(problems)} problem(s), first: {problems[0][0]}: {problems[0][1]}",
                                   problems)
            blobs = await self._decide(batch.scans, raw, context)
            # a ScanDecisionBatch is field 1 (length-delimited) repeated: tag 0x0a, length, bytes
            yield b"".join(b"\x0a" + _varint(len(b)) + b for b in blobs)

    def handler(self) -> grpc.GenericRpcHandler:
        """Requests arrive as (their bytes, parsed): the bytes go to the writer
        unchanged. Replies leave as the writer serialised them."""
        def keep(parse: Callable[[bytes], Any]) -> Callable[[bytes], tuple[bytes, Any] | Malformed]:
            checked = tolerant(parse)    # bytes that do not parse: Malformed, answered by the guard
            assert checked is not None

            def parse_kept(raw: bytes) -> tuple[bytes, Any] | Malformed:
                m = checked(raw)
                return m if isinstance(m, Malformed) else (raw, m)

            parse_kept.tolerant = True  # type: ignore[attr-defined]  # the guard need not wrap it again
            return parse_kept

        return grpc.method_handlers_generic_handler("scangate.v1.ScanService", {
            "Scan": grpc.unary_unary_rpc_method_handler(
                self.Scan, request_deserializer=keep(scan_pb.ScanRequest.FromString), response_serializer=bytes),
            "ScanStream": grpc.stream_stream_rpc_method_handler(
                self.ScanStream, request_deserializer=keep(scan_pb.ScanBatch.FromString),
                response_serializer=bytes),
        })


# ---------------------------------------------------------------------- codes
def _level(value: int, field: str) -> Level:
    if value == common.LEVEL_UNSPECIFIED:
        return Level.ITEM
    try:
        return Level(value)
    except ValueError:
        raise bad(field, f"{value} is not a known Level") from None


def _check_count(n: int, field: str, most: int) -> None:
    if not 1 <= n <= most:
        raise bad(field, f"1 to {most:,}, not {n}")


class CodeServicer(codes_pb2_grpc.CodeServiceServicer):
    def __init__(self, data: DataDir, limits: LimitTable):
        self.data = data
        self.limits = limits

    async def IssueCodes(self, request: codes_pb.IssueCodesRequest,
                         context: grpc.aio.ServicerContext) -> AsyncIterator[codes_pb.IssuedCodeBatch]:
        _check_count(request.count, "count", MAX_ISSUE)
        size = request.batch_size or 10_000
        _check_count(size, "batch_size", 100_000)
        if request.form not in (codes_pb.CODE_FORM_UNSPECIFIED, codes_pb.CODE_FORM_TEXT, codes_pb.CODE_FORM_URL):
            raise bad("form", f"{request.form} is not a known CodeForm")
        if not request.sku:
            raise bad("sku", "missing")
        level = _level(request.level, "level")
        line, rng, key = await asyncio.to_thread(self.data.reserve, request.sku, level, request.count,
                                                 batch=request.batch, gtin=request.gtin)
        prefix = self.data.url_prefix if request.form == codes_pb.CODE_FORM_URL else ""
        first = rng.first
        chunks = self.data.iter_issue(line, rng, key, prefix=prefix, chunk=size)
        while True:
            chunk = await asyncio.to_thread(next, chunks, None)
            if chunk is None:
                break
            texts = chunk.tobytes().decode("ascii").split("\n")[:-1]
            yield codes_pb.IssuedCodeBatch(line_id=line.line_id, key_version=key.version, first_serial=first,
                                           codes=texts)
            first += len(texts)
        await asyncio.to_thread(self.data.store.complete_range, rng)

    async def VerifyCodes(self, request: codes_pb.VerifyCodesRequest,
                          context: grpc.aio.ServicerContext) -> codes_pb.VerifyCodesReply:
        _check_count(len(request.codes), "codes", 100_000)
        client = code_client(self.limits, context)
        refuse_if(self.limits.admit(client, (), len(request.codes)))
        reply, failed = await asyncio.to_thread(answer_counting, self._verify, list(request.codes), client)
        if failed:
            self.limits.charge_failures(client, (), failed)
        return reply

    def _verify(self, codes: list[str]) -> codes_pb.VerifyCodesReply:
        result = self.data.verify_codes(codes)
        recalls = verdicts.RecallIndex(self.data)
        revoked = recalls.revoked(result.status == CodeStatus.GENUINE, result.serial, result.line_id).tolist()
        out = []
        for i in range(len(result)):
            c = result[i]
            check = codes_pb.CodeCheck(
                status=enum_to_proto(c.status), key_version=c.key_version, serial=c.serial or 0,
                level=enum_to_proto(c.level) if c.level else common.LEVEL_UNSPECIFIED,
                line_id=c.line.line_id if c.line else 0,
                sku=c.line.sku if c.line else "")
            if revoked[i]:
                # only a genuine code is revoked, and a genuine code has a serial and a line
                assert c.serial is not None and c.line is not None
                check.recall.CopyFrom(recall_of(recalls, c.serial, c.line.line_id))
            out.append(check)
        return codes_pb.VerifyCodesReply(results=out)


# ---------------------------------------------------------------------- trace
_SHIPMENT_FIELDS = {"code": "unit", "shipped_at": "shipped_at_ms"}
_ACTIONS = {trace_pb.LINK_ACTION_UNSPECIFIED: "ADD", trace_pb.LINK_ACTION_ADD: "ADD",
            trace_pb.LINK_ACTION_DELETE: "DELETE"}


class TraceServicer(trace_pb2_grpc.TraceServiceServicer):
    def __init__(self, data: DataDir, epcis_schema: str = "", *, limits: LimitTable):
        """``epcis_schema``: the GS1 EPCIS 2.0 JSON schema file (``server.epcis_schema``,
        checked when the configuration loads), read once here."""
        self.data = data
        self.limits = limits
        self.trace = TraceStore(data.store)
        self.epcis_schema: dict[str, Any] | None = None
        if epcis_schema:
            from scangate import epcis

            try:
                self.epcis_schema = epcis.load_schema(epcis_schema)
            except Exception as exc:  # noqa: BLE001 - OSError, ValueError, jsonschema.SchemaError
                why = getattr(exc, "message", None) or str(exc)     # SchemaError's str is a page long
                raise InvalidArgument(f"config: server.epcis_schema: {epcis_schema}: {why}") from None

    async def UploadLinks(self, request: trace_pb.UploadLinksRequest,
                          context: grpc.aio.ServicerContext) -> trace_pb.UploadLinksReply:
        _check_count(len(request.links), "links", 1_000_000)
        actions = [_ACTIONS.get(link.action, f"<{link.action}>") for link in request.links]
        report = await asyncio.to_thread(ingest.link_rows, self.data, [link.parent for link in request.links],
                                         [link.child for link in request.links], actions,
                                         request.source or "links")
        return trace_pb.UploadLinksReply(rows=report.rows, added=report.added, removed=report.removed,
                                         parents=report.parents)

    async def UploadShipments(self, request: trace_pb.UploadShipmentsRequest,
                              context: grpc.aio.ServicerContext) -> trace_pb.UploadShipmentsReply:
        rows = request.shipments
        _check_count(len(rows), "shipments", 1_000_000)
        try:
            n = await asyncio.to_thread(
                ingest.record_shipment_rows, self.data, [r.unit for r in rows], [r.dealer_id for r in rows],
                [r.shipped_at_ms for r in rows], [r.shipment_id for r in rows],
                [f"shipments[{i}]" for i in range(len(rows))], request.source or "shipments")
        except BatchRejected as exc:     # the library names CSV columns; a gRPC client sees ShipmentRow's fields
            raise BatchRejected(exc.source, [Problem(p.where, _SHIPMENT_FIELDS.get(p.field, p.field), p.message)
                                             for p in exc.problems]) from None
        return trace_pb.UploadShipmentsReply(shipments=n)

    async def UploadEpcis(self, request: trace_pb.UploadEpcisRequest,
                          context: grpc.aio.ServicerContext) -> trace_pb.UploadEpcisReply:
        if not request.document:
            raise bad("document", "empty")
        schema = None
        if request.validate_schema:
            # the package ships no copy of the GS1 schema: the operator names theirs
            if self.epcis_schema is None:
                raise RequestError(grpc.StatusCode.FAILED_PRECONDITION,
                                   "validate_schema: this server has no EPCIS schema; its operator sets "
                                   "server.epcis_schema (SCANGATE_SERVER_EPCIS_SCHEMA) to the GS1 EPCIS 2.0 "
                                   "JSON schema file")
            schema = self.epcis_schema
        report = await asyncio.to_thread(ingest.apply_epcis, self.data, request.document,
                                         request.source or "document", schema)
        return trace_pb.UploadEpcisReply(**report.to_json())

    async def PutDealers(self, request: trace_pb.PutDealersRequest,
                         context: grpc.aio.ServicerContext) -> trace_pb.PutDealersReply:
        rows = [(f"dealers[{i}]", d.dealer_id, d.name, list(d.territory)) for i, d in enumerate(request.dealers)]
        n = await asyncio.to_thread(ingest.load_dealers, self.data, rows, "dealers")
        return trace_pb.PutDealersReply(dealers=n)

    async def Trace(self, request: trace_pb.TraceRequest, context: grpc.aio.ServicerContext) -> trace_pb.TraceReply:
        _check_count(len(request.codes), "codes", 10_000)
        client = code_client(self.limits, context)
        refuse_if(self.limits.admit(client, (), len(request.codes)))
        reply, failed = await asyncio.to_thread(answer_counting, self._trace, list(request.codes), client)
        if failed:
            self.limits.charge_failures(client, (), failed)
        return reply

    def _trace(self, codes: list[str]) -> trace_pb.TraceReply:
        checks = self.data.verify_codes(codes)
        recalls = verdicts.RecallIndex(self.data)
        revoked = recalls.revoked(checks.status == CodeStatus.GENUINE, checks.serial, checks.line_id).tolist()
        genuine = np.flatnonzero(checks.status == CodeStatus.GENUINE)
        chains = dict(zip(genuine.tolist(), self.trace.trace(checks.serial[genuine]))) if len(genuine) else {}
        out = []
        for i, code in enumerate(codes):
            r = trace_pb.TraceResult(code=code, found=i in chains, status=enum_to_proto(CodeStatus(int(checks.status[i]))))
            chain = chains.get(i)
            if chain is not None:
                r.serial = chain.serial
                r.ancestors.extend(chain.ancestors)
                if chain.shipment is not None:
                    s = chain.shipment
                    r.shipment.CopyFrom(trace_pb.Shipment(unit_serial=s.unit, dealer_id=s.dealer_id,
                                                          shipped_at_ms=s.shipped_at_ms, shipment_id=s.shipment_id))
                if chain.dealer is not None:
                    r.dealer.CopyFrom(trace_pb.Dealer(dealer_id=chain.dealer.dealer_id, name=chain.dealer.name,
                                                      territory=list(chain.dealer.territory)))
                if revoked[i]:
                    r.recall.CopyFrom(recall_of(recalls, int(checks.serial[i]), int(checks.line_id[i])))
            out.append(r)
        return trace_pb.TraceReply(results=out)


# ---------------------------------------------------------------------- recalls
_RECALL_KINDS = {"line": common.RECALL_KIND_LINE, "range": common.RECALL_KIND_RANGE,
                 "codes": common.RECALL_KIND_CODES}
MAX_RECALL_CODES = 100_000


def recall_to_proto(r: verdicts.Recall) -> common.Recall:
    return common.Recall(kind=_RECALL_KINDS[r.source if r.kind == "range" else "line"], line_id=r.line_id or 0,
                         first=r.first or 0, last=r.last or 0, reason=r.reason, at_ms=r.at_ms)


def recall_of(recalls: verdicts.RecallIndex, serial: int, line_id: int) -> common.Recall:
    """The recall that revokes a genuine code, as a scan's evidence names it: its
    line's recall first, else the first range holding its serial."""
    _reasons, ev = recalls.evidence(serial, line_id)
    if "recall_line" in ev:
        return common.Recall(kind=common.RECALL_KIND_LINE, line_id=line_id, reason=ev["recall_line"]["reason"])
    rng = ev["recall_range"]
    return common.Recall(kind=common.RECALL_KIND_RANGE, first=rng["first"], last=rng["last"], reason=rng["reason"])


class RecallServicer(trace_pb2_grpc.RecallServiceServicer):
    """Admin only (server/auth.py grants RecallService to no other role)."""

    def __init__(self, data: DataDir):
        self.data = data

    async def RecallCodes(self, request: trace_pb.RecallCodesRequest,
                          context: grpc.aio.ServicerContext) -> trace_pb.RecallCodesReply:
        target = request.WhichOneof("target")
        if target is None:
            raise bad("target", "give one of line_id, range or codes")
        if not request.reason.strip():
            raise bad("reason", "missing: it is kept with the recall and shown as scan evidence")
        if target == "line_id":
            report = await asyncio.to_thread(verdicts.recall_line, self.data, request.line_id, request.reason)
        elif target == "range":
            rng = request.range
            if rng.first < 1:
                raise bad("range.first", f"serials start at 1, not {rng.first}")
            if rng.first > rng.last:
                raise bad("range", f"first {rng.first} is after last {rng.last}")
            report = await asyncio.to_thread(verdicts.recall_range, self.data, rng.first, rng.last,
                                             request.reason)
        else:
            codes = list(request.codes.codes)
            _check_count(len(codes), "codes.codes", MAX_RECALL_CODES)
            try:
                report = await asyncio.to_thread(verdicts.recall_codes, self.data, codes, request.reason,
                                                 "codes", list(range(len(codes))))
            except BatchRejected as exc:   # name each code by its field, as other uploads do
                raise RequestError(grpc.StatusCode.INVALID_ARGUMENT,
                                   f"codes: {len(exc.problems)} not genuine, nothing recalled",
                                   [(f"codes.codes[{p.where.removeprefix('line ')}]", p.message)
                                    for p in exc.problems]) from None
        return trace_pb.RecallCodesReply(recalls=[recall_to_proto(r) for r in report.recalls],
                                         added=report.added, codes=report.codes)

    async def ListRecalls(self, request: trace_pb.ListRecallsRequest,
                          context: grpc.aio.ServicerContext) -> trace_pb.ListRecallsReply:
        entries = await asyncio.to_thread(verdicts.list_recalls, self.data)
        return trace_pb.ListRecallsReply(recalls=[recall_to_proto(r) for r in entries])


# ---------------------------------------------------------------------- campaigns
_STATUS = {"active": camp_pb.CAMPAIGN_STATUS_ACTIVE, "paused": camp_pb.CAMPAIGN_STATUS_PAUSED}


def campaign_to_proto(data: DataDir, record: dict[str, Any]) -> camp_pb.Campaign:
    c = record["campaign"]
    used = rewards.budgets_used(data, c["id"])
    return camp_pb.Campaign(
        campaign_id=c["id"], name=c.get("name", ""), status=_STATUS.get(c.get("status", "active"), camp_pb.CAMPAIGN_STATUS_UNSPECIFIED),
        revision=record["revision"], commitment=record["commitment"], loaded_at_ms=record["loaded_at_ms"],
        definition_json=json.dumps(c, ensure_ascii=False, sort_keys=True),
        budgets=[camp_pb.BudgetUse(prize_id=p, count=u["count"], amount_fen=u["amount_fen"])
                 for p, u in sorted(used.items())])


class CampaignServicer(campaigns_pb2_grpc.CampaignServiceServicer):
    def __init__(self, data: DataDir):
        self.data = data

    async def PutCampaign(self, request: camp_pb.PutCampaignRequest,
                          context: grpc.aio.ServicerContext) -> camp_pb.Campaign:
        if not request.definition.strip():
            raise bad("definition", "empty")
        record = await asyncio.to_thread(rewards.put_campaign, self.data, request.definition,
                                         request.source or "definition")
        return await asyncio.to_thread(campaign_to_proto, self.data, record)

    async def GetCampaign(self, request: camp_pb.GetCampaignRequest,
                          context: grpc.aio.ServicerContext) -> camp_pb.Campaign:
        if not request.campaign_id:
            raise bad("campaign_id", "missing")
        record = await asyncio.to_thread(rewards.get_campaign, self.data, request.campaign_id)
        return await asyncio.to_thread(campaign_to_proto, self.data, record)

    async def ListCampaigns(self, request: camp_pb.ListCampaignsRequest,
                            context: grpc.aio.ServicerContext) -> camp_pb.ListCampaignsReply:
        def read() -> camp_pb.ListCampaignsReply:    # LMDB reads stay off the event loop
            return camp_pb.ListCampaignsReply(campaigns=[campaign_to_proto(self.data, r)
                                                         for r in rewards.list_campaigns(self.data)])

        return await asyncio.to_thread(read)

    async def SetCampaignStatus(self, request: camp_pb.SetCampaignStatusRequest,
                                context: grpc.aio.ServicerContext) -> camp_pb.Campaign:
        names = {v: k for k, v in _STATUS.items()}
        if request.status not in names:
            raise bad("status", "must be CAMPAIGN_STATUS_ACTIVE or CAMPAIGN_STATUS_PAUSED")
        if not request.campaign_id:
            raise bad("campaign_id", "missing")
        await asyncio.to_thread(rewards.set_campaign_status, self.data, request.campaign_id, names[request.status])
        return await self.GetCampaign(camp_pb.GetCampaignRequest(campaign_id=request.campaign_id), context)


# ---------------------------------------------------------------------- points, payouts
def _check_actor(actor: str, field: str = "actor") -> None:
    if not 1 <= len(actor) <= _MAX_ID:
        raise bad(field, "1 to 128 characters")


class PointsServicer(points_pb2_grpc.PointsServiceServicer):
    def __init__(self, data: DataDir):
        self.data = data

    async def GetPoints(self, request: points_pb.GetPointsRequest,
                        context: grpc.aio.ServicerContext) -> points_pb.PointsReply:
        _check_actor(request.actor)
        limit = request.history_limit or 20
        _check_count(limit, "history_limit", 1000)
        return await asyncio.to_thread(self._points, request.actor, limit)

    def _points(self, actor: str, limit: int) -> points_pb.PointsReply:
        with self.data.store.env.begin() as txn:
            earned = points.earned(txn, self.data.store.db("points"), actor)
        rows = points.history(self.data, actor, limit)
        return points_pb.PointsReply(
            actor=actor, balance=points.balance(self.data, actor), earned=earned,
            history=[points_pb.PointsEntry(delta=h["delta"], balance=h["balance"], reason=h["reason"],
                                           ref=h["ref"], at_ms=h["at_ms"]) for h in rows])

    async def RedeemPoints(self, request: points_pb.RedeemPointsRequest,
                           context: grpc.aio.ServicerContext) -> points_pb.RedeemPointsReply:
        _check_actor(request.actor)
        r = await asyncio.to_thread(points.redeem, self.data, request.actor, request.points, request.request_id,
                                    request.note)
        return points_pb.RedeemPointsReply(ok=r.ok, balance=r.balance, reason=r.reason or "")

    async def Leaderboard(self, request: points_pb.LeaderboardRequest,
                          context: grpc.aio.ServicerContext) -> points_pb.LeaderboardReply:
        top = request.top or 10
        _check_count(top, "top", 1000)
        board = await asyncio.to_thread(points.leaderboard, self.data, request.period, top, request.actor or None)
        reply = points_pb.LeaderboardReply(period=board["period"], top=[
            points_pb.LeaderboardEntry(rank=e["rank"], actor=e["actor"], points=e["points"]) for e in board["top"]])
        if "actor" in board:
            a = board["actor"]
            reply.actor.CopyFrom(points_pb.LeaderboardEntry(rank=a["rank"] or 0, actor=a["actor"], points=a["points"]))
            reply.ranked = a["of"]
        return reply


_PAYOUT_STATES = {"pending": points_pb.PAYOUT_STATE_PENDING, "sending": points_pb.PAYOUT_STATE_SENDING,
                  "confirmed": points_pb.PAYOUT_STATE_CONFIRMED, "failed": points_pb.PAYOUT_STATE_FAILED}


class PayoutServicer(points_pb2_grpc.PayoutServiceServicer):
    def __init__(self, data: DataDir):
        self.data = data

    async def ListPayouts(self, request: points_pb.ListPayoutsRequest,
                          context: grpc.aio.ServicerContext) -> points_pb.ListPayoutsReply:
        names = {v: k for k, v in _PAYOUT_STATES.items()}
        if request.state and request.state not in names:
            raise bad("state", f"{request.state} is not a known PayoutState")
        limit = request.limit or 100
        _check_count(limit, "limit", 10_000)
        rows = await asyncio.to_thread(payouts.list_payouts, self.data)
        counts: dict[str, int] = {}
        for row in rows:
            counts[row["state"]] = counts.get(row["state"], 0) + 1
        want = names.get(request.state)
        chosen = [r for r in rows if want is None or r["state"] == want][:limit]
        return points_pb.ListPayoutsReply(counts=counts, payouts=[points_pb.Payout(
            key=r["key"], state=_PAYOUT_STATES.get(r["state"], points_pb.PAYOUT_STATE_UNSPECIFIED), actor=r.get("actor", ""),
            campaign_id=r["key"].split(":", 1)[0], prize_id=r.get("prize_id", ""), kind=r.get("kind", ""),
            amount_fen=r.get("amount_fen", 0), attempts=r.get("attempts", 0),
            confirmation=str(r.get("confirmation") or ""), error=r.get("error", "")) for r in chosen])


# ---------------------------------------------------------------------- the server
@dataclass
class Worker:
    server: grpc.aio.Server
    port: int
    health: health_aio.HealthServicer

    async def stop(self, grace: float) -> None:
        """Refuse new calls and finish those in flight (their scans are committed
        by the writer process before they are answered)."""
        await self.health.enter_graceful_shutdown()
        await self.server.stop(grace)


def _credentials(cfg: Config) -> grpc.ServerCredentials | None:
    s = cfg.server
    if not s.tls_cert:
        return None
    with open(s.tls_key, "rb") as f:
        key = f.read()
    with open(s.tls_cert, "rb") as f:
        cert = f.read()
    ca = None
    if s.tls_client_ca:
        with open(s.tls_client_ca, "rb") as f:
            ca = f.read()
    return grpc.ssl_server_credentials([(key, cert)], root_certificates=ca, require_client_auth=ca is not None)


async def start_worker(data: DataDir, cfg: Config, tokens: TokenTable | None, *, writer_socket: str,
                       port: int | None = None, limits_file: str | None = None) -> Worker:
    """Build and start one worker's server on ``cfg.server.host``:``port``; its
    scans go to the writer process listening on ``writer_socket``; its rate limits
    are the buckets in ``limits_file``, shared with the server's other workers
    (None: buckets of this process alone)."""
    s = cfg.server
    limits = LimitTable.open(limits_file, cfg.limits) if limits_file else LimitTable.private(cfg.limits)
    guard = Guard(tokens, limits)
    server = grpc.aio.server(interceptors=[GuardInterceptor(guard)], options=[
        ("grpc.so_reuseport", 1),
        ("grpc.max_receive_message_length", 256 << 20),
        ("grpc.max_send_message_length", 256 << 20),
    ])
    scans = ScanServicer(WriterLink(writer_socket), limits)
    server.add_generic_rpc_handlers((scans.handler(),))
    codes_pb2_grpc.add_CodeServiceServicer_to_server(CodeServicer(data, limits), server)
    trace_pb2_grpc.add_TraceServiceServicer_to_server(TraceServicer(data, s.epcis_schema, limits=limits), server)
    trace_pb2_grpc.add_RecallServiceServicer_to_server(RecallServicer(data), server)
    campaigns_pb2_grpc.add_CampaignServiceServicer_to_server(CampaignServicer(data), server)
    points_pb2_grpc.add_PointsServiceServicer_to_server(PointsServicer(data), server)
    points_pb2_grpc.add_PayoutServiceServicer_to_server(PayoutServicer(data), server)
    health = health_aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health, server)
    reflection.enable_server_reflection(SERVICE_NAMES + (health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
                                                         reflection.SERVICE_NAME), server)
    address = f"{s.host}:{s.port if port is None else port}"
    creds = _credentials(cfg)
    bound = server.add_secure_port(address, creds) if creds else server.add_insecure_port(address)
    await server.start()
    for name in ("",) + SERVICE_NAMES:
        await health.set(name, health_pb2.HealthCheckResponse.SERVING)
    return Worker(server, bound, health)
