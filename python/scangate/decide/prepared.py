"""A batch's decision in two halves: the read-only half anywhere, the serialised half in one writer.

``decide_batch`` decides a batch inside one write transaction. Most of that work
only reads: verifying the codes, the trace chains, the verdicts and their
evidence, the campaign each scan falls under. ``prepare`` does that half in a
read transaction (in ``scangate serve``, in each gRPC worker, in parallel), and
returns a ``Prepared``: the requests, their verdicts, what ``select`` made of
each (a ``Chosen`` campaign and state keys, or a ``Passed`` reason for no
reward), the scan history records to write, and what the read saw of anything
that may change under it (a ``Revision``, and each history record read).

``commit_prepared`` is the other half, in the writer's write transaction: the
claims, caps and Nth-scan counters, budgets, points, ledger numbers, payouts,
the decision records and the request index (``engine.decide_selected``, the same
function ``decide_batch`` ends with). Before it decides anything it checks the
reads: the rules generation (campaigns, recalls), the ledger generation (issued
ranges: what verification read), the trace environment's last transaction, each
scanned code's history record byte for byte, and that no request id is already
in the index or in two prepared batches at once. If any of it moved, it returns
None and the caller decides the requests again from the start with
``decide_batch`` in the same transaction: **a scan whose read went stale is
decided again, after the change**, never on what it read. So a prepared batch
commits exactly what ``decide_batch`` would have decided in its place
(tests/test_prepared.py holds the two paths to the same records).

``prepare`` returns None for anything but the usual batch (a request id seen
before or twice, a scan time the window refuses): the caller sends those
requests to be decided whole by the writer, as before.

The plugins of a campaign still run in the writer (``decide_scan``), since their
context holds the user's counters; and the deciding time of a prepared batch is
the preparing process's clock, read once, as ``decide_batch`` reads it once.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import msgspec

from ..clock import ScanTimePolicy
from ..datadir import DataDir
from ..decision import Decision, NoReward, ScanRequest
from ..enums import CodeStatus, Verdict
from ..state.batch import LmdbBatch, Mutations
from ..store import ProductLine
from ..verdict import ScanVerdict, VerdictConfig
from .campaign import Compiled, compile_campaigns
from .eligibility import select
from .engine import TRUSTING, decide_selected, fresh_scans, judge_batch, request_keys, set_hotline
from .requests import fingerprints

__all__ = ["Chosen", "Passed", "Prepared", "Revision", "commit_prepared", "prepare"]

_GENUINE = int(CodeStatus.GENUINE)
_V_COUNTERFEIT = Verdict.COUNTERFEIT


class Revision(msgspec.Struct, array_like=True, frozen=True):
    """What a prepared batch's read saw of the state that can change under it."""

    rules: int             # the rules generation: campaigns and recalls
    ranges: int            # the ledger generation: the issued ranges verification read
    trace: int | None      # the trace environment's transaction read (None: nothing genuine, none read)


class Chosen(msgspec.Struct, array_like=True, frozen=True, tag=1):
    """An eligible scan: its campaign and the keys of the state its decision reads
    and writes (``eligibility.Eligible``, with the campaign by id)."""

    campaign: str
    claim: bytes
    day: int                # the scan's local day: days since 1970-01-01
    day_name: str           # and as YYYY-MM-DD
    total: bytes
    points: tuple[bytes, bytes, bytes] | None


class Passed(msgspec.Struct, array_like=True, frozen=True, tag=2):
    """A scan that wins nothing whatever the state: why, and the campaign to name."""

    reason: NoReward
    campaign: str | None


class Prepared(msgspec.Struct, array_like=True):
    """The read-only half of one batch's decisions (see the module docstring)."""

    revision: Revision
    now: int                                   # the deciding clock's reading
    requests: list[ScanRequest]
    keys: list[bytes]                          # each request's key in the request index
    prints: list[bytes]                        # and its fingerprint
    times: list[int]                           # each scan's time as judged
    verdicts: list[ScanVerdict]
    serials: list[int]
    line_ids: list[int]
    choices: list[Chosen | Passed]
    histories: list[tuple[bytes, bytes | None, bytes]]   # (serial key, record read or None, record to write)


def prepare(data: DataDir, requests: Sequence[ScanRequest], config: VerdictConfig, now: int,
            time_policy: ScanTimePolicy = TRUSTING) -> Prepared | None:
    """The read-only half of deciding ``requests`` (which passed
    ``check_requests``), or None when they are not the usual batch (see the module
    docstring)."""
    if not requests:
        return None
    if time_policy is not TRUSTING and any(
            r.time_ms is not None and time_policy.problem(r.time_ms, now) is not None for r in requests):
        return None
    ids = request_keys(requests)
    if len(set(ids)) != len(ids):
        return None
    store = data.store
    ranges = store.range_table().generation      # before verifying: a later one can only make it stale
    checks = data.verify_codes([r.code for r in requests])
    with store.env.begin() as txn:
        view = LmdbBatch(store, txn)
        if view.known_requests(ids):
            return None
        rules = store.generations(txn)[0]
        m = Mutations()
        scans = fresh_scans(requests, now, time_policy)
        verdicts, keys = judge_batch(view, scans, checks, config, now, m)
        campaigns = compile_campaigns(view.campaigns())
    status, serials, line_ids = checks.status.tolist(), checks.serial.tolist(), checks.line_id.tolist()
    lines = checks.lines
    candidates: dict[tuple[str, int], list[Compiled]] = {}
    choices: list[Chosen | Passed] = []
    for i, (r, s, v) in enumerate(zip(requests, scans, verdicts)):
        e = select(campaigns, candidates, r, s.time_ms, v,  # type: ignore[arg-type]  # judged: a time
                   lines[line_ids[i]] if status[i] == _GENUINE else None, line_ids[i], keys.get(serials[i]))
        if len(e) == 5:
            c, claim, (day, day_name), total, points = e
            choices.append(Chosen(c.id, claim, day, day_name, total, points))
        else:
            reason, named = e
            choices.append(Passed(reason, named.id if named is not None else None))
    if any(v.verdict is _V_COUNTERFEIT for v in verdicts):
        set_hotline(campaigns, verdicts)
    keys_read, found = view.histories_read
    histories = [(key, found.get(key), record) for key, record in m.histories]
    assert len(histories) == len(keys_read)     # one record written per code read, and no other
    return Prepared(Revision(rules, ranges, view.trace_read), now, list(requests), ids, fingerprints(requests),
                    [s.time_ms for s in scans], verdicts, serials, line_ids, choices, histories)  # type: ignore[misc]


def commit_prepared(batch: LmdbBatch, prepared: Sequence[Prepared], now: int
                    ) -> tuple[list[list[Decision]], Mutations] | None:
    """The serialised half of prepared batches, in ``batch``'s write transaction:
    each batch's decisions and the mutations of them all (the caller applies
    them), or None when a read of any of them went stale (see the module
    docstring; nothing was changed, and the caller decides them all again).
    ``now``: the writer's clock, for the payout requests' time."""
    rules, ranges, trace = batch.revision()
    keys = [key for p in prepared for key in p.keys]
    read = {key: old for p in prepared for key, old, _new in p.histories}
    if (any(p.revision.rules != rules or p.revision.ranges != ranges
            or (p.revision.trace is not None and p.revision.trace != trace) for p in prepared)
            or len(set(keys)) != len(keys) or batch.known_requests(keys)
            or len(read) != sum(len(p.histories) for p in prepared)):
        return None
    stored = batch.history_records(list(read))
    if any(stored.get(key) != old for key, old in read.items()):
        return None
    campaigns = {c.id: c for c in compile_campaigns(batch.campaigns())}
    # The batches as one: no two share a code (checked above), so none's verdicts
    # or history depend on another's, and deciding them in this order against one
    # snapshot is deciding them one after the other.
    one = prepared[0] if len(prepared) == 1 else Prepared(
        prepared[0].revision, now, *([x for p in prepared for x in getattr(p, name)] for name in _LISTS))
    selected = [(campaigns[x.campaign], x.claim, (x.day, x.day_name), x.total, x.points) if isinstance(x, Chosen)
                else (x.reason, campaigns.get(x.campaign) if x.campaign is not None else None)
                for x in one.choices]
    line_of: Callable[[int], ProductLine | None] = _no_line
    if any(len(e) == 5 and e[0].plugins for e in selected):    # their only reader: decide_scan, for the plugins
        line_of = batch.store.get_lines([i for i in one.line_ids if i >= 0]).get
    m = Mutations()
    decided = decide_selected(batch, one.requests, one.times, one.verdicts, selected,
                              line_of, one.line_ids, one.serials, m, now)
    m.decisions.extend(zip(one.keys, one.prints, decided))
    m.histories.extend((key, new) for key, _old, new in one.histories)
    out, at = [], 0
    for p in prepared:
        out.append(decided[at : at + len(p.requests)])
        at += len(p.requests)
    return out, m


_LISTS = ("requests", "keys", "prints", "times", "verdicts", "serials", "line_ids", "choices", "histories")


def _no_line(_line_id: int) -> None:
    return None
