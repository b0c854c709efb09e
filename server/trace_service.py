"""TraceService and RecallService on a worker: uploads of links, shipments,
EPCIS documents and dealers; ``Trace``; recalls (admin only)."""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
import numpy as np

from scangate import ingest, verdicts
from scangate.datadir import DataDir
from scangate.enums import CodeStatus
from scangate.errors import BatchRejected, InvalidArgument, Problem
from scangate.trace import TraceStore
from scangate.v1 import common_pb2 as common
from scangate.v1 import trace_pb2 as trace_pb
from scangate.v1 import trace_pb2_grpc
from scangate.wire import enum_to_proto

from .code_service import answer_counting, recall_of
from .errors import RequestError, bad, check_count
from .guard import code_client, refuse_if
from .limits import LimitTable

__all__ = ["TraceServicer", "RecallServicer", "recall_to_proto", "MAX_RECALL_CODES"]

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
        check_count(len(request.links), "links", 1_000_000)
        actions = [_ACTIONS.get(link.action, f"<{link.action}>") for link in request.links]
        report = await asyncio.to_thread(ingest.link_rows, self.data, [link.parent for link in request.links],
                                         [link.child for link in request.links], actions,
                                         request.source or "links")
        return trace_pb.UploadLinksReply(rows=report.rows, added=report.added, removed=report.removed,
                                         parents=report.parents)

    async def UploadShipments(self, request: trace_pb.UploadShipmentsRequest,
                              context: grpc.aio.ServicerContext) -> trace_pb.UploadShipmentsReply:
        rows = request.shipments
        check_count(len(rows), "shipments", 1_000_000)
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
        check_count(len(request.codes), "codes", 10_000)
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
            check_count(len(codes), "codes.codes", MAX_RECALL_CODES)
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
