"""Pipelined group commit: decide the next batch of scans while the last one syncs.

``rewards.decide_scans`` decides a batch inside its write transaction and then
waits for the commit, whose two fsyncs (data, then meta: LMDB's durable defaults)
leave the CPU idle for a millisecond or more. ``DecisionPipeline`` fills that
time: the caller's thread decides batch k+1 while a committer thread commits
batch k, and each batch's decisions are handed out only after its own commit
returned, so durability is what ``decide_scans`` gives.

Deciding ahead of the commit is optimistic concurrency control:

- Batch k+1 is decided against a read-only snapshot overlaid with the writes of
  the batches still in flight (decided, not yet committed), through a stand-in
  for the write transaction (``_Speculative``) that the deciding code cannot tell
  from the real one: the same ``rewards._decide_in`` runs in both.
- Every read of a database that deciding writes (scan state, claims, counters,
  budgets, points, ledger, outbox, decisions, request index) is recorded with the
  value seen, and so is the last key of the append-only logs.
- The committer opens the real write transaction and checks that every recorded
  value is still what it is there. If so, it writes the batch's records and
  commits. (It can skip reading them again when LMDB's transaction ids show that
  every commit since the batch's snapshot was one of this pipeline's batches,
  written as decided: those writes are exactly the overlay the batch read. An
  append that would not land past the end of its log fails the batch.) If not (another process redeemed
  points, a batch before it failed and was decided again, anything else that
  wrote those keys), it discards them and decides the batch again inside the
  write transaction, exactly as ``decide_scans`` does. Either way the outcome is
  one that deciding the batches one after the other in write transactions could
  give.
- Databases that deciding only reads (campaigns, trace, recalls, issuance) are
  read from the snapshot without checks: a campaign paused, a shipment recorded
  or a code recalled while a batch is in flight takes effect from the next batch,
  as if it had committed just after this one (that writer reads nothing a
  decision writes, so the order is a serial one).

A crash loses only batches whose futures had not completed: nothing acknowledged.
"""

from __future__ import annotations

import sys
import threading
from collections import deque
from collections.abc import Iterable, Sequence
from concurrent.futures import Future
from typing import Any, Self

from . import clock, rewards
from .clock import Clock, ScanTimePolicy
from .datadir import DataDir
from .errors import CorruptionError, InvalidArgument
from .verdicts import VerdictConfig

__all__ = ["WRITTEN_DATABASES", "DecisionPipeline"]

# What deciding gives per request, as decide_scans: a decision, or the refusal of a
# request id reused for another request (in its place, not raised; nothing written).
_Result = rewards.Decision | rewards.RequestRefused

# The databases a reward decision writes: reads of them are checked at commit.
WRITTEN_DATABASES = ("scans", "claims", "counters", "budgets", "points", "ledger", "outbox", "decisions", "requests")

# While a pipeline runs, the committer thread must get the GIL back quickly when
# its fsync returns; CPython hands it over only every switch interval (5 ms by
# default, longer than a commit), so a pipeline lowers it to this while open.
SWITCH_INTERVAL_S = 0.0002


class _Speculative:
    """Stands in for the write transaction of one pipelined batch (see the module
    docstring): reads from a snapshot under the in-flight batches' writes,
    recording what it saw in the databases deciding writes; writes are kept.

    Every key a decision reads or writes passes through here, so the work per key
    is kept to what C does in bulk (list, set and dict operations) and to what is
    needed: reads are recorded as they came back, merged only if the commit must
    check them (rarely); writes are kept as the putmulti calls deciding made,
    which the commit replays, and are merged into a dict per database (key ->
    value, for reads of them by this batch or a later one) as they come, except
    appends: the logs are read only when a request is retried, so their writes
    are merged only then."""

    __slots__ = ("behind", "lasts", "merged", "overlays", "puts", "reads", "snapshot", "unmerged", "written")

    def __init__(self, snapshot: Any, behind: list[_Speculative], written: frozenset[Any]):
        self.snapshot = snapshot
        self.behind = behind             # the batches in flight when this one began, oldest first
        self.written = written
        self.overlays: dict[Any, dict[bytes, bytes] | None] = {}   # db -> key -> value written by ``behind``
        # each read: (db, the keys read, the (key, value) pairs of those found); a
        # key absent from the pairs was absent
        self.reads: list[tuple[Any, list[bytes], list[tuple[bytes, bytes]]]] = []
        self.lasts: dict[Any, bytes | None] = {}            # db -> last key seen
        self.puts: list[tuple[Any, list[tuple[bytes, bytes]], bool]] = []   # (db, items, append) in call order
        self.merged: dict[Any, dict[bytes, bytes]] = {}     # db -> key -> value: ``puts`` merged, a later one winning
        self.unmerged: set[Any] = set()                     # dbs with appends not in ``merged`` yet

    def decided(self) -> None:
        """Drops what only deciding needed: the snapshot (it ends), and the batches
        behind (else each batch would keep the one before it alive)."""
        self.snapshot = None
        self.behind, self.overlays = [], {}

    # -- the part of lmdb.Transaction that deciding uses
    def get(self, key: bytes, default: Any = None, db: Any = None) -> Any:
        if db not in self.written:
            return self.snapshot.get(key, default, db=db)
        for _, value in self._read(db, [key]):
            return value
        return default

    def cursor(self, db: Any = None) -> Any:
        if db not in self.written:
            return self.snapshot.cursor(db=db)
        return _SpeculativeCursor(self, db)

    # -- this batch's writes
    def writes(self, db: Any) -> dict[bytes, bytes] | None:
        """This batch's writes to ``db`` (key -> value; None: none), its appends
        merged now if they were not yet."""
        if db in self.unmerged:
            self.unmerged.discard(db)
            merged = self.merged[db] = {}
            for d, items, _ in self.puts:
                if d == db:
                    merged.update(items)
        return self.merged.get(db)

    def top(self, db: Any) -> bytes | None:
        """The greatest key this batch wrote to ``db`` (None: none). An append
        lands only past the end of its database (LMDB refuses it otherwise; the
        commit checks that none was refused), so while the puts to ``db`` are
        appends not merged, that is the last key of the last one: no max over
        them (this runs for each log in every batch)."""
        if db in self.unmerged:
            for d, items, _ in reversed(self.puts):
                if d == db and items:
                    last: bytes = items[-1][0]
                    return last
        writes = self.writes(db)
        return max(writes) if writes else None

    # -- reads of the written databases
    def _overlay(self, db: Any) -> dict[bytes, bytes] | None:
        """The writes to ``db`` of the batches in flight (a newer one winning)."""
        if db not in self.overlays:
            if len(self.behind) == 1:      # the usual case: that batch's writes (never changed once decided)
                self.overlays[db] = self.behind[0].writes(db)
            else:
                overlay = self.overlays[db] = {}
                for b in self.behind:      # oldest first: newer writes win
                    overlay.update(b.writes(db) or {})
        return self.overlays[db]

    def _read(self, db: Any, keys: list[bytes]) -> list[tuple[bytes, bytes]]:
        """The (key, value) pairs of ``keys`` that exist (a new list, as getmulti
        gives), the reads recorded unless this batch wrote the key itself. List,
        set and dict operations, not a loop per key: this runs for every key a
        decision reads. The usual read meets none of the keys written before it
        (by this batch or those in flight): then it is one getmulti on the snapshot."""
        own = self.writes(db)
        mine: list[tuple[bytes, bytes]] = []
        if own and not own.keys().isdisjoint(keys):
            mine = [(k, own[k]) for k in own.keys() & keys]
            keys = [k for k in keys if k not in own]
        overlay = self._overlay(db) if self.behind else None
        found: list[tuple[bytes, bytes]]
        if overlay and not overlay.keys().isdisjoint(keys):
            hits = overlay.keys() & keys
            found = self.snapshot.cursor(db=db).getmulti([k for k in keys if k not in hits])
            found += [(k, overlay[k]) for k in hits]
        else:
            found = self.snapshot.cursor(db=db).getmulti(keys) if keys else []
        self.reads.append((db, keys, found))
        return found + mine      # a new list: the caller's to keep, not the record

    def _last(self, db: Any) -> bytes | None:
        cur = self.snapshot.cursor(db=db)
        last = bytes(cur.key()) if cur.last() else None
        for b in self.behind:
            top = b.top(db)
            if top is not None and (last is None or top > last):
                last = top
        self.lasts[db] = last
        top = self.top(db)
        return top if top is not None and (last is None or top > last) else last

    # -- at commit, in the real write transaction
    def still_valid(self, txn: Any) -> bool:
        """Whether every value this batch read is still the value in ``txn``."""
        seen: dict[Any, dict[bytes, bytes | None]] = {}   # db -> key -> value seen (None: absent)
        for db, keys, found in self.reads:
            values = seen.setdefault(db, {})
            values.update(dict.fromkeys(keys))
            values.update(found)
        for db, values in seen.items():
            if values:
                actual = dict(txn.cursor(db=db).getmulti(sorted(values)))
                if actual != {k: v for k, v in values.items() if v is not None}:
                    return False
        for db, last in self.lasts.items():
            cur = txn.cursor(db=db)
            if (bytes(cur.key()) if cur.last() else None) != last:
                return False
        return True

    def apply(self, txn: Any) -> bool:
        """Writes the batch as its putmulti calls would have in a real write
        transaction. False if LMDB refused an append (a key not past the end):
        then ``top`` was wrong, and the batches that read this one's writes must
        have their reads checked."""
        landed = True
        for db, items, append in self.puts:
            _, added = txn.cursor(db=db).putmulti(items, append=append)
            if append and added != len(items):
                landed = False
        return landed


class _SpeculativeCursor:
    """The cursor operations deciding uses on a written database; anything else is
    an AttributeError, so a new use cannot slip past the checks."""

    __slots__ = ("_db", "_key", "_txn")

    def __init__(self, txn: _Speculative, db: Any):
        self._txn, self._db, self._key = txn, db, b""

    def getmulti(self, keys: Iterable[bytes]) -> list[tuple[bytes, bytes]]:
        return self._txn._read(self._db, list(keys))    # a copy: the caller may reuse its list

    def putmulti(self, items: Iterable[tuple[bytes, bytes]], append: bool = False) -> tuple[int, int]:
        """(consumed, added): appending adds them all, as LMDB does for keys past
        the end (deciding appends only those); otherwise the keys new to this
        batch's writes count as added."""
        txn, db = self._txn, self._db
        items = list(items)       # a copy, kept until the commit
        if append and db not in txn.merged:      # a log: merged only if read (see _Speculative)
            txn.puts.append((db, items, append))
            txn.unmerged.add(db)
            return len(items), len(items)
        merged = txn.writes(db)
        if merged is None:
            merged = txn.merged[db] = {}
        before = len(merged)
        merged.update(items)
        txn.puts.append((db, items, append))
        return len(items), len(merged) - before

    def last(self) -> bool:
        last = self._txn._last(self._db)
        self._key = last if last is not None else b""
        return last is not None

    def key(self) -> bytes:
        return self._key


class _Batch:
    __slots__ = ("decisions", "future", "now", "number", "over", "requests", "snapshot_id", "spec")

    def __init__(self, number: int, requests: Sequence[rewards.ScanRequest], spec: _Speculative,
                 decisions: list[_Result], snapshot_id: int, over: list[int], now: int):
        self.number, self.now = number, now     # now: the clock it was decided at, again if decided again
        self.requests, self.spec, self.decisions = requests, spec, decisions
        self.snapshot_id = snapshot_id      # the last transaction committed when it was decided
        self.over = over                    # the numbers of the batches whose writes it read as overlay
        self.future: Future[list[_Result]] = Future()


class DecisionPipeline:
    """``rewards.decide_scans`` for a stream of batches, each decided while the one
    before it commits (see the module docstring). ``submit`` decides a batch in
    the calling thread and returns a future that completes after the batch's own
    durable commit; at most ``depth`` batches are in flight (``submit`` waits).
    One pipeline per data directory and process, used from one thread; use it as
    a context manager, or call ``close``.

        with DecisionPipeline(data) as pipeline:
            futures = [pipeline.submit(batch) for batch in batches]
            decisions = [f.result() for f in futures]
    """

    def __init__(self, data: DataDir, verdict_config: VerdictConfig | None = None, depth: int = 2, *,
                 time_policy: ScanTimePolicy = rewards._TRUSTING, now_ms: Clock | None = None):
        if depth < 1:
            raise InvalidArgument(f"depth: must be at least 1, got {depth}")
        self._data, self._config = data, verdict_config
        self._policy, self._now_ms = time_policy, now_ms or clock.current()
        self._written = frozenset(data.store.db(name) for name in WRITTEN_DATABASES)
        self._in_flight: deque[_Batch] = deque()      # decided, not yet committed, oldest first
        self._lock = threading.Lock()
        self._slots = threading.BoundedSemaphore(depth)
        self._queue: deque[_Batch | None] = deque()
        self._ready = threading.Condition(self._lock)
        self.batches = 0          # batches committed
        self.checked = 0          # batches whose reads were read again at commit
        self.redecided = 0        # batches whose reads had changed: decided again at commit
        self._as_decided: set[int] = set()   # ids of the transactions that wrote a batch as decided
        self._lost: set[int] = set()         # numbers of the batches that did not commit
        self._depth = depth
        self._submitted = 0
        self._closed = False
        self._interval = sys.getswitchinterval()
        sys.setswitchinterval(min(self._interval, SWITCH_INTERVAL_S))
        self._thread = threading.Thread(target=self._commit_loop, name="scangate-commit", daemon=True)
        self._thread.start()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def submit(self, requests: Sequence[rewards.ScanRequest]) -> Future[list[_Result]]:
        """Decide ``requests`` (as decide_scans) against the state the batches before
        it leave; the future's result is the decisions, once committed (a request
        id reused for another request: ``rewards.RequestIdReused`` in its place).
        A bad request raises here, and nothing of the batch is queued."""
        if self._closed:
            raise InvalidArgument("pipeline: closed")
        rewards._check_requests(requests)
        checks = self._data.verify_codes([r.code for r in requests])
        self._slots.acquire()
        try:
            # the batches in flight are read BEFORE the snapshot begins: one that
            # commits in between is then in both, with the same values
            with self._lock:
                in_flight = list(self._in_flight)
            with self._data.store.env.begin() as snapshot:
                snapshot_id = snapshot.id()
                spec = _Speculative(snapshot, [b.spec for b in in_flight], self._written)
                now = self._now_ms()
                decisions = rewards._decide_in(self._data, requests, checks, self._config, spec, now, self._policy)
                spec.decided()
        except BaseException:
            self._slots.release()
            raise
        self._submitted += 1
        batch = _Batch(self._submitted, requests, spec, decisions, snapshot_id,
                       [b.number for b in in_flight], now)
        with self._lock:
            self._in_flight.append(batch)
            self._queue.append(batch)
            self._ready.notify()
        return batch.future

    def decide(self, requests: Sequence[rewards.ScanRequest]) -> list[_Result]:
        """Submit one batch and wait for its commit."""
        return self.submit(requests).result()

    def close(self) -> None:
        """Commit what is in flight, stop the committer, restore the switch interval."""
        if self._closed:
            return
        self._closed = True
        with self._lock:
            self._queue.append(None)
            self._ready.notify()
        self._thread.join()
        sys.setswitchinterval(self._interval)

    # ------------------------------------------------------------- committer
    def _commit_loop(self) -> None:
        env = self._data.store.env
        while True:
            with self._lock:
                while not self._queue:
                    self._ready.wait()
                batch = self._queue.popleft()
            if batch is None:
                return
            try:
                with env.begin(write=True) as txn:
                    tid = txn.id()
                    # committed write transactions have consecutive ids: if every one
                    # since the snapshot wrote a batch of ours as decided, and every
                    # batch in the overlay did commit, the batch read exactly what is
                    # here now
                    self._as_decided = {i for i in self._as_decided if i > batch.snapshot_id}
                    self._lost = {n for n in self._lost if n >= batch.number - self._depth}
                    unchanged = all(i in self._as_decided for i in range(batch.snapshot_id + 1, tid)) \
                        and not self._lost.intersection(batch.over)
                    if not unchanged:
                        self.checked += 1
                    if unchanged or batch.spec.still_valid(txn):
                        if not batch.spec.apply(txn):
                            # cannot happen while the checks above hold (the logs end where
                            # the batch read they end); if it does, the batch is not
                            # committed (its caller gets this error) and the batches that
                            # read its writes are checked, as after any failed commit
                            raise CorruptionError(f"pipeline: batch {batch.number}: an append did not land "
                                                  "past the end of its log; not committed")
                        decisions = batch.decisions
                    else:
                        self.redecided += 1
                        decisions = rewards._decide_in(self._data, batch.requests,
                                                       self._data.verify_codes([r.code for r in batch.requests]),
                                                       self._config, txn, batch.now, self._policy)
                        tid = -1
                if tid >= 0:
                    self._as_decided.add(tid)
                self.batches += 1
                result: BaseException | list[_Result] = decisions
            except BaseException as e:  # noqa: BLE001  (the batch is not committed: its caller gets the error)
                result = e
                self._lost.add(batch.number)
            with self._lock:
                self._in_flight.popleft()      # only after the commit returned (see submit)
            self._slots.release()
            if isinstance(result, BaseException):
                batch.future.set_exception(result)
            else:
                batch.future.set_result(result)
