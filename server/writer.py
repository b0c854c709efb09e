"""Group commit of scan decisions, in the writer process.

``scangate serve`` decides every scan in one process, the writer (its socket
protocol and entry point are in server/scanlink.py). There, one
``GroupCommitWriter`` thread takes everything queued (up to ``max_batch`` scans,
from every worker's connection), decides it (``rewards.decide_prepared``: an item
its worker prepared has only its serialised half done here, after a check that
nothing it read has moved; any other item, and every item of a group in which a
read went stale, is decided whole) in one durable LMDB write transaction, and
calls each item's ``reply`` only after that transaction committed. While one
batch commits, the next one gathers, so batches grow with load and every reply
still follows its own commit.

A scan whose deadline passed while it waited is not decided (its reply gets
``DeadlineExpired``). Scans are range-checked once, before they get here: the
server's writer is made with ``checked=True`` and checks nothing again, because
its workers ran ``check_scan`` on every scan (tests/test_fuzz_requests.py holds
what ``check_scan`` lets by to ``scan_problem``); any other writer
(``checked=False``, the default) checks its plain items' requests
(``check_requests``) before deciding them. Should deciding a batch still
raise, nothing of it was committed (its write transaction aborted), and the batch
is decided again in two halves, recursively, so the item whose scan raises gets
the error alone (INVALID_ARGUMENT for an ``InvalidArgument``, INTERNAL for
anything else) and every other item is decided and committed as usual: one poison
scan costs about 2*log2(items) extra transactions, a batch that raises nothing
none. Errors of the store itself (disk, map full, corruption) are not tied to a
scan: every waiter of the batch hears them at once (a full disk, quota or map as
UNAVAILABLE "storage full", see server/failures.py: nothing was written, and the
same requests succeed once space is freed).

A request whose id was used for another request comes back from ``decide_prepared``
as ``RequestIdReused`` in its place, nothing of it written: its item is answered
with that error (naming ``scans[i].request_id`` in an item of several scans, whose
other scans were decided and committed: a retry with their ids returns their
decisions), and every other item as usual.
"""

from __future__ import annotations

import concurrent.futures
import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from scangate.datadir import DataDir
from scangate.errors import CorruptionError, InvalidArgument
from scangate.state.failures import STORE_FAILURES
from scangate.clock import ScanTimePolicy
from scangate.decide.prepared import Prepared
from scangate.decide.requests import check_requests
from scangate.rewards import Decision, RequestRefused, ScanRequest, decide_prepared
from scangate.verdicts import VerdictConfig

from .failures import DeadlineExpired, WriterClosed, storage_full, store_unreachable

log = logging.getLogger("scangate.server.writer")

# DeadlineExpired, WriterClosed and storage_full: what a commit here raises or
# reports, kept importable from here
__all__ = ["GroupCommitWriter", "DeadlineExpired", "WriterClosed", "storage_full"]


Reply = Callable[[list[Decision] | None, BaseException | None], None]


@dataclass
class _Item:
    requests: Sequence[ScanRequest]
    deadline: float | None            # time.monotonic() seconds
    reply: Reply                      # (decisions, None) after commit, or (None, error)
    live: Callable[[], bool] = lambda: True   # False: the caller gave up (a cancelled future)
    prepared: Prepared | None = None  # the requests' read-only half, done by the caller (scangate.decide.prepared)


class GroupCommitWriter:
    def __init__(self, data: DataDir, verdict_config: VerdictConfig | None = None, *, max_batch: int = 512,
                 on_commit: Callable[[int, float], None] | None = None,
                 after_batch: Callable[[], None] | None = None, time_policy: ScanTimePolicy | None = None,
                 checked: bool = False):
        self._data = data
        self._checked = checked     # see the module docstring
        self._config = verdict_config
        self._policy = time_policy or ScanTimePolicy()      # the server passes its window (config [server])
        self._max_batch = max_batch
        self._on_commit = on_commit or (lambda size, seconds: None)
        self._after_batch = after_batch or (lambda: None)   # once a batch's futures are all resolved
        self._queue: queue.SimpleQueue[_Item | None] = queue.SimpleQueue()
        self._closed = False
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="scangate-writer", daemon=True)
        self._thread.start()

    def submit(self, requests: Sequence[ScanRequest], deadline: float | None = None
               ) -> concurrent.futures.Future[list[Decision]]:
        """Queue scans for the next group commit; the future gives their decisions."""
        future: concurrent.futures.Future[list[Decision]] = concurrent.futures.Future()

        def reply(decisions: list[Decision] | None, error: BaseException | None) -> None:
            if error is not None:
                future.set_exception(error)
            else:
                future.set_result(decisions)  # type: ignore[arg-type]

        self.submit_callback(requests, deadline, reply, future.set_running_or_notify_cancel)
        return future

    def submit_callback(self, requests: Sequence[ScanRequest], deadline: float | None, reply: Reply,
                        live: Callable[[], bool] | None = None, prepared: Prepared | None = None) -> None:
        """Queue scans; ``reply`` is called from the writer thread, after the commit.
        ``prepared``: their decision's read-only half, already done (its requests
        are ``requests``); the writer checks it and commits the rest."""
        item = _Item(requests, deadline, reply, live or (lambda: True), prepared)
        with self._lock:
            if self._closed:
                raise WriterClosed("the server is shutting down")
            self._queue.put(item)

    def close(self, timeout: float | None = None) -> None:
        """Stop taking work, decide and commit everything already queued, stop."""
        with self._lock:
            if not self._closed:
                self._closed = True
                self._queue.put(None)
        self._thread.join(timeout)

    # ------------------------------------------------------------------ thread
    def _run(self) -> None:
        stop = False
        while not stop:
            first = self._queue.get()
            if first is None:
                break
            items, size = [first], len(first.requests)
            while size < self._max_batch:
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    stop = True     # finish this batch, then stop
                    break
                items.append(nxt)
                size += len(nxt.requests)
            try:
                self._decide(items)
            finally:
                self._after_batch()

    def _decide(self, items: list[_Item]) -> None:
        now = time.monotonic()
        live = []
        for item in items:
            if not item.live():
                continue
            if item.deadline is not None and item.deadline <= now:
                item.reply(None, DeadlineExpired("deadline passed before the scan was decided"))
            else:
                live.append(item)
        if not live:
            return
        self._commit(live)

    def _commit(self, items: list[_Item]) -> None:
        """Decide ``items`` in one transaction and answer them; if that raises for a
        reason that may be one scan's, decide each half again (see the module
        docstring). The first try is the whole batch: no cost unless it fails."""
        requests = [r for item in items for r in item.requests]
        started = time.perf_counter()
        try:
            if not self._checked:
                check_requests([r for item in items if item.prepared is None for r in item.requests])
            decided = decide_prepared(self._data, [item.prepared or item.requests for item in items], self._config,
                                      time_policy=self._policy)
        except BaseException as exc:
            if len(items) > 1 and not _is_systemic(exc):
                # the transaction was aborted: nothing of this try is written or answered
                log.warning("group commit of %d scans in %d items raised %s; deciding it again in halves",
                            len(requests), len(items), type(exc).__name__)
                half = len(items) // 2
                self._commit(items[:half])
                self._commit(items[half:])
                return
            # its traceback (or, for a full store, one line a minute): where the caller maps it (server/errors.py)
            if not isinstance(exc, InvalidArgument) and storage_full(exc) is None and store_unreachable(exc) is None:
                log.error("deciding %d scans in %d items failed: %s", len(requests), len(items), type(exc).__name__)
            for item in items:      # one item alone, or the store's own error: every waiter hears it
                item.reply(None, exc)
            return
        self._on_commit(len(requests), time.perf_counter() - started)
        for item, decisions in zip(items, decided):
            try:
                _answer(item, decisions)
            except Exception as exc:   # noqa: BLE001 - one reply that cannot be sent
                # Its decisions are committed (a retry gets them back); the other
                # items still hear theirs, and the writer goes on deciding: a reply
                # that raised out of this thread would leave every later scan waiting.
                log.exception("answering %d scans of a committed group failed", len(item.requests))
                try:
                    item.reply(None, exc)
                except Exception:   # noqa: BLE001 - nothing more to tell this waiter
                    log.exception("telling the waiter its reply failed failed too")


# Errors of the store or the process, not of any scan: deciding the batch again in
# parts would fail every part the same way, one transaction after another.
_SYSTEMIC: tuple[type[BaseException], ...] = (OSError, MemoryError, CorruptionError, *STORE_FAILURES)


def _is_systemic(exc: BaseException) -> bool:
    return not isinstance(exc, Exception) or isinstance(exc, _SYSTEMIC) or storage_full(exc) is not None \
        or store_unreachable(exc) is not None


def _answer(item: _Item, results: Sequence[Decision | RequestRefused]) -> None:
    """Reply to one item: its decisions, or the refusal of a request in it (a
    reused request id, a scan time outside the window)."""
    for j, d in enumerate(results):
        if isinstance(d, RequestRefused):
            item.reply(None, d.at(f"scans[{j}].") if len(item.requests) > 1 else d)
            return
    item.reply(results, None)  # type: ignore[arg-type]  # no refusal: all decisions

