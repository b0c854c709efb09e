"""CodeService on a worker: ``IssueCodes``, ``VerifyCodes``; and what the trace
calls share with them (``answer_counting``, ``recall_of``)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import TypeVar

import grpc

from scangate import verdicts
from scangate.datadir import DataDir
from scangate.enums import CodeStatus, Level
from scangate.v1 import codes_pb2 as codes_pb
from scangate.v1 import codes_pb2_grpc
from scangate.v1 import common_pb2 as common
from scangate.v1 import trace_pb2 as trace_pb
from scangate.wire import enum_to_proto

from .errors import bad, check_count
from .guard import code_client, refuse_if
from .limits import LimitTable

__all__ = ["CodeServicer", "answer_counting", "recall_of", "MAX_ISSUE"]

MAX_ISSUE = 100_000_000

_GENUINE = enum_to_proto(CodeStatus.GENUINE)
_Answer = TypeVar("_Answer", codes_pb.VerifyCodesReply, trace_pb.TraceReply)


def answer_counting(answer: Callable[[list[str]], _Answer], codes: list[str],
                    client: str | None) -> tuple[_Answer, int]:
    """``answer(codes)`` (VerifyCodes, Trace) and, for a client the code limits
    count, how many of its results are not genuine: guesses, charged to it.
    Runs in the thread pool with the answer."""
    reply = answer(codes)
    return reply, 0 if client is None else sum(1 for r in reply.results if r.status != _GENUINE)


def _level(value: int, field: str) -> Level:
    if value == common.LEVEL_UNSPECIFIED:
        return Level.ITEM
    try:
        return Level(value)
    except ValueError:
        raise bad(field, f"{value} is not a known Level") from None


class CodeServicer(codes_pb2_grpc.CodeServiceServicer):
    def __init__(self, data: DataDir, limits: LimitTable):
        self.data = data
        self.limits = limits

    async def IssueCodes(self, request: codes_pb.IssueCodesRequest,
                         context: grpc.aio.ServicerContext) -> AsyncIterator[codes_pb.IssuedCodeBatch]:
        check_count(request.count, "count", MAX_ISSUE)
        size = request.batch_size or 10_000
        check_count(size, "batch_size", 100_000)
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
        check_count(len(request.codes), "codes", 100_000)
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


def recall_of(recalls: verdicts.RecallIndex, serial: int, line_id: int) -> common.Recall:
    """The recall that revokes a genuine code, as a scan's evidence names it: its
    line's recall first, else the first range holding its serial."""
    _reasons, ev = recalls.evidence(serial, line_id)
    if "recall_line" in ev:
        return common.Recall(kind=common.RECALL_KIND_LINE, line_id=line_id, reason=ev["recall_line"]["reason"])
    rng = ev["recall_range"]
    return common.Recall(kind=common.RECALL_KIND_RANGE, first=rng["first"], last=rng["last"], reason=rng["reason"])
