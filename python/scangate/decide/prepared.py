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

A campaign's plugins run when preparing too, outside any write transaction, on
the user's counters as the read transaction holds them (``PluginRun``); the
writer uses that output only if it would hand the plugins the same counts and
odds, and runs them again itself otherwise (``recorded_rules``). The deciding
time of a prepared batch is the preparing process's clock, read once, as
``decide_batch`` reads it once.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import msgspec
import numpy as np

from ..clock import ScanTimePolicy
from ..datadir import DataDir, VerifyResult
from ..decision import Decision, NoReward, ScanRequest
from ..enums import CodeStatus, Verdict
from ..plugins import RuleResult
from ..state.batch import LmdbBatch, Mutations, Snapshot
from ..store import ProductLine
from ..verdict import ScanVerdict, VerdictConfig
from .campaign import Compiled, compile_campaigns
from . import caps as caps_mod
from .eligibility import Eligible, select
from .engine import (
    TRUSTING,
    Rules,
    decide_selected,
    draw_input,
    fresh_scans,
    judge_batch,
    plugin_rules,
    request_keys,
    set_hotline,
)
from .requests import fingerprints

__all__ = ["Chosen", "Passed", "PluginRun", "Prepared", "Revision", "commit_prepared", "prepare", "prepare_many",
           "recorded_rules"]

_GENUINE = int(CodeStatus.GENUINE)
_V_COUNTERFEIT = Verdict.COUNTERFEIT


class Revision(msgspec.Struct, array_like=True, frozen=True):
    """What a prepared batch's read saw of the state that can change under it."""

    rules: int             # the rules generation: campaigns and recalls
    ranges: int            # the ledger generation: the issued ranges verification read
    trace: int | None      # the trace environment's transaction read (None: nothing genuine, none read)


class PluginRun(msgspec.Struct, array_like=True, frozen=True):
    """What a campaign's plugins made of a scan when it was prepared, with the
    inputs that move with the state (the user's eligible scan number, awards
    today and in all, the odds before them): the writer uses it only if it would
    hand the plugins the same, else runs them again itself (``recorded_rules``)."""

    n: int
    awards_today: int
    awards_total: int
    odds: int
    rule: RuleResult
    failures: list[tuple[str, str]]


class Chosen(msgspec.Struct, array_like=True, frozen=True, tag=1):
    """An eligible scan: its campaign and the keys of the state its decision reads
    and writes (``eligibility.Eligible``, with the campaign by id)."""

    campaign: str
    claim: bytes
    day: int                # the scan's local day: days since 1970-01-01
    day_name: str           # and as YYYY-MM-DD
    total: bytes
    points: tuple[bytes, bytes, bytes] | None
    # the draw (engine.draw_input): the HMAC message, its MAC, the roll, the odds
    # before plugins and the time slot that gave them
    message: str
    mac: bytes
    roll: int
    odds: int
    slot: int | None
    plugin: PluginRun | None = None     # the campaign's plugins, run when preparing (None: it has none)


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
    return prepare_many(data, [requests], config, now, time_policy)[0]


def prepare_many(data: DataDir, batches: Sequence[Sequence[ScanRequest]], config: VerdictConfig, now: int,
                 time_policy: ScanTimePolicy = TRUSTING) -> list[Prepared | None]:
    """``prepare`` of several batches at once, each still its own ``Prepared`` (a
    server's worker prepares the calls of one event loop turn together: one
    verification, one read transaction, one campaign selection set-up). None for a
    batch that is not the usual one, or that shares a request id or a code with
    another of them: the writer decides those whole, in turn."""
    out: list[Prepared | None] = [None] * len(batches)
    ids = [request_keys(b) for b in batches]
    timed = time_policy is not TRUSTING
    ok = [bool(b) and len(set(k)) == len(k)
          and not (timed and any(r.time_ms is not None and time_policy.problem(r.time_ms, now) is not None
                                 for r in b))
          for b, k in zip(batches, ids)]
    _apart(ok, ids)
    if not any(ok):
        return out
    store = data.store
    ranges = store.range_table().generation      # before verifying: a later one can only make it stale
    codes = [r.code for j, b in enumerate(batches) if ok[j] for r in b]
    checks = data.verify_codes(codes)
    serials = checks.serial.tolist()
    status = checks.status.tolist()
    at = 0
    serial_keys: list[list[int]] = []
    for j, b in enumerate(batches):     # the genuine serials of each batch, for _apart
        if ok[j]:
            serial_keys.append([s for s, st in zip(serials[at : at + len(b)], status[at : at + len(b)])
                                if st == _GENUINE])
            at += len(b)
        else:
            serial_keys.append([])
    with store.env.begin() as txn:
        view = LmdbBatch(store, txn)
        known = view.known_requests([key for j, k in enumerate(ids) if ok[j] for key in k])
        taken = list(ok)
        for j, k in enumerate(ids):
            if ok[j] and known and not known.isdisjoint(k):
                ok[j] = False
        _apart(ok, serial_keys)
        if not any(ok):
            return out
        if ok != taken:     # some batches left to the writer: verified, but not judged here
            keep = np.array([i for j, b in enumerate(batches) if taken[j] for i in [ok[j]] * len(b)], bool)
            checks = VerifyResult(checks.status[keep], checks.key_version[keep], checks.serial[keep],
                                  checks.level[keep], checks.line_id[keep], checks.lines)
            serials, status = checks.serial.tolist(), checks.status.tolist()
        requests = [r for j, b in enumerate(batches) if ok[j] for r in b]
        rules = store.generations(txn)[0]
        m = Mutations()
        scans = fresh_scans(requests, now, time_policy)
        verdicts, keys = judge_batch(view, scans, checks, config, now, m)
        campaigns = compile_campaigns(view.campaigns())
        line_ids = checks.line_id.tolist()
        lines = checks.lines
        candidates: dict[tuple[str, int], list[Compiled]] = {}
        choices: list[Chosen | Passed] = []
        plugged: dict[int, Eligible] = {}     # eligible scans whose campaign has plugins
        for i, (r, s, v) in enumerate(zip(requests, scans, verdicts)):
            e = select(campaigns, candidates, r, s.time_ms, v,  # type: ignore[arg-type]  # judged: a time
                       lines[line_ids[i]] if status[i] == _GENUINE else None, line_ids[i], keys.get(serials[i]))
            if len(e) == 5:
                c, claim, (day, day_name), total, points = e
                choices.append(Chosen(c.id, claim, day, day_name, total, points,
                                      *draw_input(c, serials[i], r.actor, s.time_ms)))  # type: ignore[arg-type]
                if c.plugins:
                    plugged[i] = e
            else:
                reason, named = e
                choices.append(Passed(reason, named.id if named is not None else None))
        if plugged:
            _run_plugins(view, plugged, requests, scans, verdicts, serials, line_ids, lines, choices)
    if any(v.verdict is _V_COUNTERFEIT for v in verdicts):
        set_hotline(campaigns, verdicts)
    _keys_read, found = view.histories_read
    written = dict(m.histories)
    revision = Revision(rules, ranges, view.trace_read)
    times = [s.time_ms for s in scans]
    prints = fingerprints(requests)
    a = 0
    for j, b in enumerate(batches):
        if not ok[j]:
            continue
        z = a + len(b)
        # its genuine codes' history keys, each once
        mine = {keys[s]: None for s, st in zip(serials[a:z], status[a:z]) if st == _GENUINE}
        out[j] = Prepared(revision, now, list(b), ids[j], prints[a:z], times[a:z], verdicts[a:z],  # type: ignore[arg-type]
                          serials[a:z], line_ids[a:z], choices[a:z],
                          [(key, found.get(key), written[key]) for key in mine])
        a = z
    return out


def _run_plugins(view: LmdbBatch, plugged: dict[int, Eligible], requests: Sequence[ScanRequest],
                 scans: Sequence[Any], verdicts: Sequence[ScanVerdict], serials: Sequence[int],
                 line_ids: Sequence[int], lines: dict[int, ProductLine], choices: list[Chosen | Passed]) -> None:
    """Run the plugins of the eligible scans in ``plugged`` on the counters the read
    transaction holds (the counts decide_scan would hand them if nothing moved),
    and record each run in its choice."""
    snap = Snapshot()
    view.read(snap, counters=[e[3] for e in plugged.values()])
    view.read(snap, counters=caps_mod.day_keys(snap, [(e[3], e[2]) for e in plugged.values()]))
    for i, e in plugged.items():
        c, _claim, today, total_key, _points = e
        k, _had = caps_mod.counts(snap, total_key, today)
        chosen = choices[i]
        assert isinstance(chosen, Chosen)
        n, odds = k[2] + 1, chosen.odds
        rule, failures = plugin_rules(c, requests[i], serials[i], lines[line_ids[i]], verdicts[i], n, k[3], k[0],
                                      scans[i].time_ms, odds)
        choices[i] = msgspec.structs.replace(chosen, plugin=PluginRun(n, k[3], k[0], odds, rule, failures))


def recorded_rules(run: PluginRun) -> Rules:
    """``engine.Rules`` that give back ``run``'s output when handed the inputs it
    ran on, and run the plugins again otherwise (the state moved since)."""
    def rules(c: Compiled, r: ScanRequest, serial: int, line: ProductLine | None, v: ScanVerdict, n: int,
              awards_today: int, awards_total: int, time_ms: int, odds: int
              ) -> tuple[RuleResult, list[tuple[str, str]]]:
        if (n, awards_today, awards_total, odds) == (run.n, run.awards_today, run.awards_total, run.odds):
            return run.rule, list(run.failures)
        return plugin_rules(c, r, serial, line, v, n, awards_today, awards_total, time_ms, odds)

    return rules


def _apart(ok: list[bool], keys: Sequence[Sequence[object]]) -> None:
    """Mark not ok every ok batch that shares a key with another ok batch."""
    owner: dict[object, int] = {}
    for j, batch_keys in enumerate(keys):
        if ok[j]:
            for key in batch_keys:
                first = owner.setdefault(key, j)
                if first != j:
                    ok[j] = ok[first] = False


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
    draws = [(x.message, x.mac, x.roll, x.odds, x.slot) if isinstance(x, Chosen) else None for x in one.choices]
    ruled = [recorded_rules(x.plugin) if isinstance(x, Chosen) and x.plugin is not None else None
             for x in one.choices]
    decided = decide_selected(batch, one.requests, one.times, one.verdicts, selected,
                              line_of, one.line_ids, one.serials, m, now, draws, ruled)
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
