"""The single writer path of ``scangate serve``: one writer process decides and
commits the scans of every worker. This module holds both ends of the link: the
writer process's entry point (``writer_main``) and a worker's connection to it
(``WriterLink``).

Workers parse each call (gRPC, once), validate it (``check_scan``, once),
rate-limit it, make its scans the library's requests (GCJ-02 points converted
to WGS-84) and, where ``server.prepare`` has them, prepare their decision's
read-only half (``scangate.decide.prepared``), then hand that over a Unix socket
to the writer process (or, for a batch they do not prepare, the requests as compact intents:
msgpack arrays of a ScanRequest's fields; no protobuf is parsed again). There,
one ``GroupCommitWriter`` (server/writer.py, ``checked=True``) gathers whatever
every worker sent while the previous commit was syncing, commits it with
``rewards.decide_prepared`` (the prepared items' serialised half after their
revision check, the others decided whole, no second validation) in one durable
LMDB write transaction, and answers each item with its decisions as msgpack (the
``Decision`` records themselves); the worker makes each a ``scangate.v1.ScanDecision``
(the reply's encoding is worker work: it runs in parallel, the writer's does not).
The CPU of deciding runs beside the workers' event loops instead of competing with
them for one interpreter lock, and batches from all workers share a commit.

Frames (big-endian) on the socket, each preceded by its length (u32):

    worker -> writer   item id (u64), deadline in ms from now (u32, 0xFFFFFFFF: none),
                       the length of the calling client's name (u16), the kind of
                       item (u8), the client's name (UTF-8; empty: none; its
                       request ids are scoped to it, ScanRequest.client), then
                       kind 0: the scans, a msgpack array of intents, each an
                       array of request_id, code, actor, actor_type, region, lat,
                       lon, time_ms, actor_tags (``encode_intents``);
                       kind 1: the scans prepared by the worker, a
                       scangate.decide.prepared.Prepared as msgpack (its
                       requests carry their client)
    writer -> worker   item id (u64), ok (u8); ok: the decisions, a msgpack array of
                       scangate.decision.Decision records (``encode_decisions``);
                       not ok: a serialised google.rpc.Status

The socket lives in a private (0700) directory made by the supervisor.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import signal
import socket
import struct
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import msgspec
from google.rpc import status_pb2

from scangate import geo
from scangate.config import Config
from scangate.datadir import open_data_dir
from scangate.decide.prepared import Prepared
from scangate.rewards import Decision, ScanRequest

from . import metrics
from .errors import to_request_error
from .failures import LinkDown, RemoteStatus
from .process import SERVER_GC_THRESHOLDS, settle_heap, setup_logging
from .writer import GroupCommitWriter

log = logging.getLogger("scangate.server.writer")

# SERVER_GC_THRESHOLDS: bench/rewards.py sets a benchmark's collector as the writer's
__all__ = ["writer_main", "WriterLink", "SERVER_GC_THRESHOLDS"]

_ENCODER = msgspec.msgpack.Encoder()
# a ScanRequest's fields but its client (the frame's), as encode_intents writes them
_INTENTS = msgspec.msgpack.Decoder(
    list[tuple[str, str, str, str, int | None, float | None, float | None, int | None, tuple[str, ...]]])
_DECISIONS = msgspec.msgpack.Decoder(list[Decision])
_PREPARED = msgspec.msgpack.Decoder(Prepared)
_LEN = struct.Struct(">I")
_REQ = struct.Struct(">QIHB")    # item id, deadline, length of the client's name (which follows), kind
PLAIN, PREPARED = 0, 1           # the kinds of item
_REP = struct.Struct(">QB")
NO_DEADLINE = 0xFFFFFFFF


# ---------------------------------------------------------------------- writer process
def encode_decisions(decisions: list[Decision]) -> bytes:
    """An item's decisions as the writer answers them (see the module docstring)."""
    return _ENCODER.encode(decisions)


def decode_decisions(raw: bytes | memoryview) -> list[Decision]:
    """The decisions of ``encode_decisions``, as the writer decided them."""
    return _DECISIONS.decode(raw)


def _encode_ok(item_id: int, decisions: list[Decision]) -> bytes:
    body = _REP.pack(item_id, 1) + encode_decisions(decisions)
    return _LEN.pack(len(body)) + body


def _encode_error(item_id: int, status: status_pb2.Status) -> bytes:
    serialized: bytes = status.SerializeToString()
    body = _REP.pack(item_id, 0) + serialized
    return _LEN.pack(len(body)) + body


class _Tally:
    """Verdict and reward counts, added up in memory and written to the shared
    metric files once per commit (a multiprocess counter increment costs a lock
    and an mmap write)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[tuple[Callable[..., None], str], int] = {}

    def add(self, decisions: list[Decision]) -> None:
        with self._lock:
            c = self._counts
            for d in decisions:
                v = d.verdict
                key: tuple[Callable[..., None], str] = (metrics.verdict, v.label)
                c[key] = c.get(key, 0) + 1
                for r in v.reasons:
                    c[(metrics.reason, r.value)] = c.get((metrics.reason, r.value), 0) + 1
                if d.no_reward is not None:
                    key = (metrics.no_reward, d.no_reward.value)
                    c[key] = c.get(key, 0) + 1
                if d.award is not None:
                    c[(metrics.award, d.award.kind)] = c.get((metrics.award, d.award.kind), 0) + 1

    def flush(self) -> None:
        with self._lock:
            counts, self._counts = self._counts, {}
        for (record, label), n in counts.items():
            record(label, n)


class _Outbox:
    """Replies to one worker, gathered while a batch's futures resolve and sent
    with one write when the batch is done (``flush``)."""

    def __init__(self, sock: socket.socket):
        self.sock = sock
        self.frames: list[bytes] = []
        self.lock = threading.Lock()

    def add(self, frame: bytes) -> None:
        with self.lock:
            self.frames.append(frame)

    def flush(self) -> None:
        with self.lock:
            frames, self.frames = self.frames, []
        if frames:
            try:
                self.sock.sendall(b"".join(frames))
            except OSError:
                pass             # the worker went away; its callers see LinkDown


def _serve_connection(sock: socket.socket, writer: Any, inflight: Callable[[int], None], tally: _Tally,
                      outboxes: set[_Outbox]) -> None:
    """One worker's connection: read items, submit them, answer each after commit."""
    outbox = _Outbox(sock)
    outboxes.add(outbox)
    send = outbox.add

    buf = bytearray()
    while True:
        try:
            chunk = sock.recv(1 << 18)       # whatever has arrived: often many frames
        except OSError:
            break
        if not chunk:
            break
        buf += chunk
        pos = 0
        while len(buf) - pos >= _LEN.size:
            (n,) = _LEN.unpack_from(buf, pos)
            if len(buf) - pos - _LEN.size < n:
                break
            body = bytes(buf[pos + _LEN.size : pos + _LEN.size + n])
            pos += _LEN.size + n
            _submit(body, writer, inflight, tally, send, to_request_error)
        del buf[:pos]
    outboxes.discard(outbox)
    sock.close()


def _request_frame(item_id: int, deadline_ms: int, client: str, kind: int, body: bytes) -> bytes:
    """A worker -> writer frame (see the module docstring), its length first."""
    name = client.encode()[:0xFFFF]
    return (_LEN.pack(_REQ.size + len(name) + len(body)) + _REQ.pack(item_id, deadline_ms, len(name), kind) + name
            + body)


def item_frame(item_id: int, requests: Sequence[ScanRequest], *, prepared: Prepared | None = None,
               deadline_ms: int = NO_DEADLINE, client: str = "") -> bytes:
    """The frame of one item a worker sends the writer: ``requests`` (checked with
    ``check_scan``) from ``client`` (the token's name; "": none), as ``prepared``
    when the worker prepared them (a PREPARED frame), else as plain intents; the
    writer drops it unanswered once ``deadline_ms`` (milliseconds from its
    arrival; NO_DEADLINE: none) has passed."""
    if prepared is not None:
        return _request_frame(item_id, deadline_ms, client, PREPARED, _ENCODER.encode(prepared))
    return _request_frame(item_id, deadline_ms, client, PLAIN, encode_intents(requests))


def take_replies(buf: bytearray) -> list[tuple[int, bool, memoryview]]:
    """The writer's whole reply frames at the start of ``buf``, removed from it
    (a frame cut short stays for the next read): (item id, ok, payload) each,
    the payload being ``encode_decisions`` when ok, else a serialized
    google.rpc.Status."""
    out = []
    pos = 0
    while len(buf) - pos >= _LEN.size:
        (n,) = _LEN.unpack_from(buf, pos)
        if len(buf) - pos - _LEN.size < n:
            break
        body = memoryview(bytes(buf[pos + _LEN.size : pos + _LEN.size + n]))
        pos += _LEN.size + n
        item_id, ok = _REP.unpack_from(body)
        out.append((item_id, bool(ok), body[_REP.size:]))
    del buf[:pos]
    return out


def encode_intents(requests: Sequence[ScanRequest]) -> bytes:
    """A worker's checked requests as the writer takes them (see the module
    docstring); their client goes in the frame."""
    return _ENCODER.encode([(r.request_id, r.code, r.actor, r.actor_type, r.region, r.lat, r.lon, r.time_ms,
                             r.actor_tags) for r in requests])


def decode_intents(raw: bytes | memoryview, client: str) -> list[ScanRequest]:
    """The requests of ``encode_intents``, from ``client``."""
    return [ScanRequest(*fields, client) for fields in _INTENTS.decode(raw)]


def _submit(body: bytes, writer: Any, inflight: Callable[[int], None], tally: _Tally,
            send: Callable[[bytes], None], to_request_error: Callable[[BaseException], Any]) -> None:
    item_id, deadline_ms, name_len, kind = _REQ.unpack_from(body)
    client = body[_REQ.size : _REQ.size + name_len].decode("utf-8", "replace")   # a cut name stays one name
    rest = memoryview(body)[_REQ.size + name_len:]
    prepared = _PREPARED.decode(rest) if kind == PREPARED else None
    requests = prepared.requests if prepared is not None else decode_intents(rest, client)
    deadline = None if deadline_ms == NO_DEADLINE else time.monotonic() + deadline_ms / 1000
    inflight(1)

    def reply(decisions: list[Decision] | None, error: BaseException | None) -> None:
        try:
            if error is None:
                assert decisions is not None
                send(_encode_ok(item_id, decisions))
                tally.add(decisions)
            else:
                send(_encode_error(item_id, to_request_error(error).status_proto()))
        finally:
            inflight(-1)

    try:
        writer.submit_callback(requests, deadline, reply, prepared=prepared)
    except BaseException as exc:      # WriterClosed: answer at once
        reply(None, exc)


def _settle() -> None:
    """Load what every decision uses (the offline district index), then move
    everything alive so far out of the garbage collector's sight."""
    geo.default_index()
    settle_heap()


def writer_main(data_dir: str, cfg: Config, path: str, ready: Any, log_level: str) -> None:
    """The writer process: accept worker connections on ``path`` until SIGTERM,
    then commit everything accepted and exit."""
    setup_logging(log_level)
    data = open_data_dir(data_dir, store=cfg.store.url or None)
    _settle()
    tally = _Tally()

    def on_commit(size: int, seconds: float) -> None:
        metrics.observe_commit(size, seconds)
        tally.flush()        # the previous commit's decisions

    outboxes: set[_Outbox] = set()

    def after_batch() -> None:
        for box in list(outboxes):
            box.flush()

    # checked: every scan passed its worker's check_scan (see the module docstring)
    writer = GroupCommitWriter(data, cfg.verdicts, max_batch=cfg.server.max_batch, on_commit=on_commit,
                               after_batch=after_batch, time_policy=cfg.server.scan_time_policy, checked=True)
    pending = [0]
    lock = threading.Lock()

    def inflight(delta: int) -> None:
        with lock:
            pending[0] += delta

    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    if os.path.exists(path):
        os.unlink(path)
    server.bind(path)
    server.listen(256)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, signal.SIG_IGN)         # the supervisor decides when we stop

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                return
            threading.Thread(target=_serve_connection, args=(conn, writer, inflight, tally, outboxes),
                             daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    ready.send(os.getpid())
    ready.close()
    log.info("writer serving", extra={"socket": path})
    stop.wait()
    # workers have stopped first (the supervisor's order); commit what was accepted
    server.close()
    deadline = time.monotonic() + cfg.server.grace_s + 10
    while pending[0] and time.monotonic() < deadline:
        time.sleep(0.01)
    writer.close()
    tally.flush()
    data.close()
    log.info("writer stopped")


# ---------------------------------------------------------------------- worker side
class WriterLink(asyncio.Protocol):
    """A worker's connection to the writer process (asyncio)."""

    def __init__(self, path: str):
        self.path = path
        self._transport: asyncio.Transport | None = None
        self._buf = bytearray()
        self._waiting: dict[int, asyncio.Future[Any]] = {}
        self._ids = itertools.count(1)
        self._connecting: asyncio.Lock | None = None
        self._pending: list[bytes] = []      # frames written together at the end of this loop turn

    async def _ensure(self) -> asyncio.Transport:
        if self._transport is not None and not self._transport.is_closing():
            return self._transport
        if self._connecting is None:
            self._connecting = asyncio.Lock()
        async with self._connecting:
            if self._transport is None or self._transport.is_closing():
                loop = asyncio.get_running_loop()
                for attempt in range(50):             # the writer may be restarting
                    try:
                        await loop.create_unix_connection(lambda: self, self.path)
                        break
                    except OSError:
                        if attempt == 49:
                            raise LinkDown("the writer process is not reachable") from None
                        await asyncio.sleep(0.1)
        assert self._transport is not None
        return self._transport

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]
        self._buf.clear()

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        waiting, self._waiting = self._waiting, {}
        for fut in waiting.values():
            if not fut.done():
                fut.set_exception(LinkDown("the writer process went away; the scan may or may not be "
                                           "committed: retry with the same request_id"))

    def data_received(self, data: bytes) -> None:
        self._buf += data
        for item_id, ok, payload in take_replies(self._buf):
            fut = self._waiting.pop(item_id, None)
            if fut is None or fut.done():
                continue
            if ok:
                fut.set_result(decode_decisions(payload))
            else:
                fut.set_exception(RemoteStatus(status_pb2.Status.FromString(payload)))

    async def decide(self, requests: Sequence[ScanRequest], timeout_s: float | None, client: str = "",
                     prepared: Prepared | None = None) -> list[Decision]:
        """Send one item (requests the worker has checked with ``check_scan``)
        from ``client`` (the token's name: its request ids are its own; "": none),
        as ``prepared`` when the worker prepared it (those same requests, with
        their client); its decisions, in order."""
        transport = await self._ensure()
        item_id = next(self._ids)
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._waiting[item_id] = fut
        ms = NO_DEADLINE if timeout_s is None else max(0, min(int(timeout_s * 1000), NO_DEADLINE - 1))
        if not self._pending:
            asyncio.get_running_loop().call_soon(self._flush, transport)
        self._pending.append(item_frame(item_id, requests, prepared=prepared, deadline_ms=ms, client=client))
        return await fut  # type: ignore[no-any-return]

    def _flush(self, transport: asyncio.Transport) -> None:
        frames, self._pending = self._pending, []
        if not transport.is_closing():
            transport.write(b"".join(frames))
