"""Rewards: the decision of a batch of scans, exactly once, in one transaction.

``decide_scans`` is the library's door to the decision engine
(scangate.decide: requests, verdicts, eligibility, caps, budgets, draw, points,
ledger; ``decide_batch`` there says what happens in which order) over the LMDB
store (scangate.state: the only place that knows it). It opens one write
transaction (group commit), lets the engine decide the batch against the state
read for it, applies the batch's mutations and commits before it returns, so a
decision that reached a caller is durable, and budgets and caps hold whatever
the concurrency: LMDB has one writer at a time.

Campaign storage is scangate.state.campaigns (re-exported here), the payout
worker scangate.payouts, rule plugins scangate.plugins, points redemption and the
leaderboard scangate.points, audit scangate.audit.
"""

from __future__ import annotations

import random
import time
from collections.abc import Sequence
from typing import Any

from .clock import Clock, ScanTimePolicy
from .clock import current as current_clock
from .datadir import DataDir
from .decide.draw import PPM, draw, win_how
from .decide.engine import TRUSTING, decide_batch
from .decide.prepared import Prepared, commit_prepared
from .decide.requests import (
    MAX_ACTOR_BYTES,
    MAX_CODE_CHARS,
    MAX_ID_BYTES,
    MAX_ID_CHARS,
    MAX_TAG_CHARS,
    MAX_TAGS,
    MAX_TIME_MS,
    MIN_TIME_MS,
    RequestIdReused,
    RequestRefused,
    ScanTimeRefused,
    check_requests,
    scan_problem,
)
from .decision import NO_REWARD_MESSAGES, Award, Decision, NoReward, ScanRequest
from .state.batch import write_batch
from .state.pg import PgStore
from .state.pg import retryable as pg_retryable
from .state.campaigns import (
    budgets_used,
    campaign_revisions,
    get_campaign,
    list_campaigns,
    put_campaign,
    reveal_secret,
    set_campaign_status,
)
from .verdicts import VerdictConfig

__all__ = [
    "MAX_ACTOR_BYTES",
    "MAX_CODE_CHARS",
    "MAX_ID_BYTES",
    "MAX_ID_CHARS",
    "MAX_TAGS",
    "MAX_TAG_CHARS",
    "MAX_TIME_MS",
    "MIN_TIME_MS",
    "NO_REWARD_MESSAGES",
    "PPM",
    "Award",
    "Decision",
    "NoReward",
    "RequestIdReused",
    "RequestRefused",
    "ScanRequest",
    "ScanTimeRefused",
    "audit_entry",
    "budgets_used",
    "campaign_revisions",
    "decide_checked",
    "decide_prepared",
    "decide_scans",
    "decide_scans_on",
    "draw",
    "get_campaign",
    "list_campaigns",
    "put_campaign",
    "reveal_secret",
    "scan_problem",
    "set_campaign_status",
    "win_how",
]


def decide_scans(data: DataDir, requests: Sequence[ScanRequest],
                 verdict_config: VerdictConfig | None = None, *,
                 time_policy: ScanTimePolicy = TRUSTING, now_ms: Clock | None = None
                 ) -> list[Decision | RequestRefused]:
    """Decide a batch of scans in one write transaction. One result per request,
    in order: its decision, or a ``RequestRefused`` (not raised) in its place:
    ``RequestIdReused`` where its request id (within its ``client``) was used
    before, stored or earlier in the batch, for a request with other content;
    ``ScanTimeRefused`` where its ``time_ms`` is outside ``time_policy``'s window
    around ``now_ms()`` (the process's clock, ``scangate.clock``). A refused
    request writes nothing and leaves the rest of the batch as it would be without
    it. A retry of a decided request gets its stored decision whatever its time:
    the window applies to new scans only.

    Every scan is decided at one time: now, or its own ``time_ms`` (a late scan,
    within the window; a time ahead of now counts as now). A field out of bounds
    raises InvalidArgument naming it (``requests[i].field``) before anything is
    read or written."""
    check_requests(requests)
    return decide_checked(data, requests, verdict_config, time_policy=time_policy, now_ms=now_ms)


def decide_checked(data: DataDir, requests: Sequence[ScanRequest],
                   verdict_config: VerdictConfig | None = None, *,
                   time_policy: ScanTimePolicy = TRUSTING, now_ms: Clock | None = None
                   ) -> list[Decision | RequestRefused]:
    """``decide_scans`` for requests the caller has already held to its bounds,
    so that a request is validated once: the server's writer, whose requests come
    from workers that ran ``check_scan`` on them (tests/test_fuzz_requests.py holds
    every request ``check_scan`` lets by to ``scan_problem``). A request out of
    bounds may raise anywhere in deciding, so a caller that has not checked its
    requests calls ``decide_scans``."""
    if data.decisions is not None:
        return _decide_on(data.decisions, data, requests, verdict_config, time_policy, now_ms)
    checks = data.verify_codes([r.code for r in requests])
    now = (now_ms or current_clock())()
    with write_batch(data.store) as batch:
        out, mutations = decide_batch(batch, requests, checks, verdict_config or VerdictConfig(), now, time_policy)
        batch.apply(mutations)
    return out


def decide_scans_on(store: PgStore, data: DataDir, requests: Sequence[ScanRequest],
                    verdict_config: VerdictConfig | None = None, *, time_policy: ScanTimePolicy = TRUSTING,
                    now_ms: Clock | None = None, attempts: int = 30) -> list[Decision | RequestRefused]:
    """``decide_scans`` with the decision state on PostgreSQL (scangate.state.pg):
    one transaction for the batch, which any number of processes may run at once
    against the same database. A batch that meets another's locks in a deadlock,
    or whose row another decider inserted first, is rolled back whole and decided
    again from its requests (up to ``attempts`` times, after a short random wait),
    so it sees the other batch's decisions. ``data`` gives the codes' keys and
    ranges, the campaigns, the recalls and the trace. (``decide_scans`` on a data
    directory opened with a store URL comes here.)"""
    check_requests(requests)
    return _decide_on(store, data, requests, verdict_config, time_policy, now_ms, attempts)


def _decide_on(store: PgStore, data: DataDir, requests: Sequence[ScanRequest], verdict_config: VerdictConfig | None,
               time_policy: ScanTimePolicy, now_ms: Clock | None, attempts: int = 30
               ) -> list[Decision | RequestRefused]:
    checks = data.verify_codes([r.code for r in requests])
    config = verdict_config or VerdictConfig()
    lost = 0
    for attempt in range(attempts):
        now = (now_ms or current_clock())()
        try:
            with store.batch(data) as batch:
                out, mutations = decide_batch(batch, requests, checks, config, now, time_policy)
                batch.apply(mutations)
            return out
        except Exception as exc:
            if store.lost(exc) and lost < _RECONNECTS:
                # the server restarted or failed over: wait, reconnect (store.batch), decide
                # again; a batch whose commit went through replays its stored decisions
                time.sleep(min(0.1 * 2 ** lost, 2.0))
                lost += 1
                continue
            if not pg_retryable(exc) or attempt + 1 == attempts:
                raise
            time.sleep(random.uniform(0, 0.002 * (attempt + 1)))
    raise AssertionError("unreachable")


_RECONNECTS = 8      # a lost PostgreSQL connection: tries over about 10 s before the error is the caller's


def decide_prepared(data: DataDir, batches: Sequence[Prepared | Sequence[ScanRequest]],
                    verdict_config: VerdictConfig | None = None, *,
                    time_policy: ScanTimePolicy = TRUSTING, now_ms: Clock | None = None
                    ) -> list[list[Decision | RequestRefused]]:
    """Decide several batches in one write transaction, each either prepared
    (``scangate.decide.prepared.prepare``, elsewhere: the serialised half only) or
    plain requests (checked as for ``decide_checked``, decided whole). One result
    list per batch, in order. The prepared batches are committed first; if what
    any of them read moved, every batch is decided again from its requests, as
    ``decide_checked`` would (scangate.decide.prepared)."""
    if data.decisions is not None:
        # A PostgreSQL batch locks what it reads as it reads it: nothing read
        # beforehand could be checked for moves, so every batch is decided whole.
        flat = [r for b in batches for r in (b.requests if isinstance(b, Prepared) else b)]
        results = _decide_on(data.decisions, data, flat, verdict_config, time_policy, now_ms)
        sizes = [len(b.requests) if isinstance(b, Prepared) else len(b) for b in batches]
        starts = [sum(sizes[:i]) for i in range(len(sizes))]
        return [results[s : s + n] for s, n in zip(starts, sizes)]
    prepared = [b for b in batches if isinstance(b, Prepared)]
    plain = [r for b in batches if not isinstance(b, Prepared) for r in b]
    config = verdict_config or VerdictConfig()
    now = (now_ms or current_clock())()
    checks = data.verify_codes([r.code for r in plain]) if plain else None
    with write_batch(data.store) as batch:
        committed = commit_prepared(batch, prepared, now) if prepared else None
        if committed is not None:
            batch.apply(committed[1])
            done = iter(committed[0])
        elif prepared:      # stale: all of them decided whole, as the plain ones
            plain = [r for b in batches for r in (b.requests if isinstance(b, Prepared) else b)]
            checks = data.verify_codes([r.code for r in plain])
        decided: list[Decision | RequestRefused] = []
        if plain:
            decided, mutations = decide_batch(batch, plain, checks, config, now, time_policy)  # type: ignore[arg-type]
            batch.apply(mutations)
    out: list[list[Decision | RequestRefused]] = []
    at = 0
    for b in batches:
        if committed is not None and isinstance(b, Prepared):
            out.append(next(done))  # type: ignore[arg-type]
        else:
            n = len(b.requests) if isinstance(b, Prepared) else len(b)
            out.append(decided[at : at + n])
            at += n
    return out


def audit_entry(data: DataDir, seq: int) -> dict[str, Any]:
    """Recompute ledger entry ``seq``'s whole decision from what it records, the
    campaign revision it names and the campaign secret: ``scangate.audit``
    (``audit_ledger`` for many). Returns the entry with ``checks`` (by field),
    ``failed`` (the fields that disagree), ``expected`` and ``verified``."""
    from .audit import audit_entry as audit_one    # here: audit imports this module

    return audit_one(data, seq)
