"""ScanService on a worker: ``Scan`` and ``ScanStream``.

A call is parsed once (by gRPC) and every field of every scan checked once, here
(``check_scan``); the actors' and the client's limits are taken, and the scans
are made the library's requests (GCJ-02 points converted to WGS-84). Where
``server.prepare`` has the workers do it, the worker then decides their
read-only half itself, in a read transaction
(``scangate.decide.prepared.prepare``: verification, trace, verdicts, the
campaign of each), in parallel with the other workers, and sends that to the
writer process (server/scanlink.py), which checks that nothing it read moved and
commits the serialised half (claims, caps, budgets, points, ledger, payouts,
decision records) without checking the scans again; a batch that is not the
usual one (a retry, an id twice, a time outside the window) goes as plain
requests, decided whole there, as every call does where the writer decides
everything. The writer answers with the decisions, which the
worker encodes as ``ScanDecision`` messages (``wire.decision_to_proto``).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import math
from collections.abc import AsyncIterator, Callable, Sequence

import grpc

from scangate import geo, rewards
from scangate.decide.prepared import Prepared
from scangate.rewards import ScanRequest
from scangate.trace import text_problem
from scangate.v1 import common_pb2 as common
from scangate.v1 import scan_pb2 as scan_pb
from scangate.enums import CodeStatus
from scangate.wire import decision_to_proto, scan_request_from_proto

from .errors import RequestError, bad, tolerant
from .failures import DeadlineExpired
from .guard import client_name, code_client, refuse_if
from .limits import LimitTable
from .scanlink import WriterLink

__all__ = ["ScanServicer", "check_scan", "requests_of", "MAX_SCAN_BATCH"]

log = logging.getLogger("scangate.server.scan")

MAX_SCAN_BATCH = 1000
_MAX_ID = rewards.MAX_ID_CHARS
_GENUINE = CodeStatus.GENUINE
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
    if len(m.actor) > rewards.MAX_ACTOR_BYTES // 4 and len(m.actor.encode()) > rewards.MAX_ACTOR_BYTES:
        problems.append((f"{where}actor", f"at most {rewards.MAX_ACTOR_BYTES} bytes of UTF-8"))
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


def requests_of(scans: Sequence[scan_pb.ScanRequest], client: str = "") -> list[ScanRequest]:
    """Scans that passed ``check_scan`` as the library's requests from ``client``
    (the token's name; "": none): GCJ-02 coordinates converted to WGS-84
    before anything reads them, since districts are matched, distances measured
    and request fingerprints taken on WGS-84 (a retry with the same GCJ-02 point
    converts to the same WGS-84 one)."""
    requests = [scan_request_from_proto(m, client) for m in scans]
    gcj02 = [i for i, m in enumerate(scans)
             if m.datum == scan_pb.DATUM_GCJ02 and m.HasField("lat") and m.HasField("lon")]  # else not a point
    if gcj02:
        lat, lon = geo.gcj02_to_wgs84([scans[i].lat for i in gcj02], [scans[i].lon for i in gcj02])
        for i, la, lo in zip(gcj02, lat.tolist(), lon.tolist()):
            requests[i] = dataclasses.replace(requests[i], lat=la, lon=lo)
    return requests


class TurnBatcher:
    """The calls that ask within one turn of the event loop are prepared together,
    at the end of it (``prepare``: scangate.decide.prepared.prepare_many), so that
    unary calls may share one verification and one read transaction as the
    writer's group commit lets them share one write transaction (under grpc.aio
    most turns hold one call: docs/server.md). Each call still gets its own
    ``Prepared`` (or None: the writer decides it whole)."""

    def __init__(self, prepare: Callable[[list[list[ScanRequest]]], list[Prepared | None]]):
        self._prepare = prepare
        self._calls: list[tuple[list[ScanRequest], asyncio.Future[Prepared | None]]] = []

    def __call__(self, requests: list[ScanRequest]) -> asyncio.Future[Prepared | None]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Prepared | None] = loop.create_future()
        if not self._calls:
            loop.call_soon(self._run)
        self._calls.append((requests, future))
        return future

    def _run(self) -> None:
        calls, self._calls = self._calls, []
        try:
            prepared = self._prepare([requests for requests, _future in calls])
        except Exception:   # noqa: BLE001 - the writer decides them whole, and says what is wrong
            log.debug("preparing %d calls raised; the writer decides them whole", len(calls), exc_info=True)
            prepared = [None] * len(calls)
        for (_requests, future), p in zip(calls, prepared):
            if not future.done():       # a cancelled call
                future.set_result(p)


class ScanServicer:
    """Scan and ScanStream: validate and rate-limit here, prepare the decision's
    read-only half here (``prepare``: scangate.decide.prepared; None, or a batch
    it does not prepare, leaves it all to the writer), commit it in the writer
    process, encode its decisions here."""

    def __init__(self, link: WriterLink, limits: LimitTable,
                 prepare: Callable[[list[list[ScanRequest]]], list[Prepared | None]] | None = None):
        self.link = link
        self.limits = limits
        self.prepare = None if prepare is None else TurnBatcher(prepare)

    def _admit(self, scans: Sequence[scan_pb.ScanRequest], client: str | None) -> None:
        """The actors' and the client's limits, for the whole call at once."""
        refuse_if(self.limits.admit(client, [m.actor for m in scans], len(scans)))

    async def _decide(self, scans: Sequence[scan_pb.ScanRequest], context: grpc.aio.ServicerContext) -> list[bytes]:
        """Decide scans that passed ``check_scan``."""
        client = code_client(self.limits, context)
        self._admit(scans, client)
        remaining = context.time_remaining()
        if remaining is not None and remaining <= 0:
            raise DeadlineExpired("deadline passed before the scan was decided")
        name = client_name()
        requests = requests_of(scans, name)
        prepared = None if self.prepare is None else await self.prepare(requests)
        decisions = await self.link.decide(requests, remaining, name, prepared)
        failed = [m.actor for m, d in zip(scans, decisions) if d.verdict.code_status is not _GENUINE]
        if failed:              # honest traffic: none, and no second trip to the table
            self.limits.charge_failures(client, failed, len(failed))
        return [decision_to_proto(d).SerializeToString() for d in decisions]

    async def Scan(self, m: scan_pb.ScanRequest, context: grpc.aio.ServicerContext) -> bytes:
        problems = check_scan(m, "", client_name())
        if problems:
            raise RequestError(grpc.StatusCode.INVALID_ARGUMENT, "; ".join(f"{f}: {d}" for f, d in problems),
                               problems)
        (blob,) = await self._decide((m,), context)
        return blob

    async def ScanStream(self, request_iterator: AsyncIterator[scan_pb.ScanBatch],
                         context: grpc.aio.ServicerContext) -> AsyncIterator[bytes]:
        async for batch in request_iterator:
            if not 1 <= len(batch.scans) <= MAX_SCAN_BATCH:
                raise bad("scans", f"1 to {MAX_SCAN_BATCH} scans per batch, not {len(batch.scans)}")
            client = client_name()
            problems = [p for i, m in enumerate(batch.scans) for p in check_scan(m, f"scans[{i}].", client)]
            if problems:
                raise RequestError(grpc.StatusCode.INVALID_ARGUMENT,
                                   f"{len(problems)} problem(s), first: {problems[0][0]}: {problems[0][1]}",
                                   problems)
            blobs = await self._decide(batch.scans, context)
            # a ScanDecisionBatch is field 1 (length-delimited) repeated: tag 0x0a, length, bytes
            yield b"".join(b"\x0a" + _varint(len(b)) + b for b in blobs)

    def handler(self) -> grpc.GenericRpcHandler:
        """Requests are parsed here, once (bytes that do not parse are answered by
        the guard); replies leave as ``_decide`` serialised them."""
        return grpc.method_handlers_generic_handler("scangate.v1.ScanService", {
            "Scan": grpc.unary_unary_rpc_method_handler(
                self.Scan, request_deserializer=tolerant(scan_pb.ScanRequest.FromString), response_serializer=bytes),
            "ScanStream": grpc.stream_stream_rpc_method_handler(
                self.ScanStream, request_deserializer=tolerant(scan_pb.ScanBatch.FromString),
                response_serializer=bytes),
        })
