"""The decision of a batch of scans, exactly once: the engine's one entry point.

``decide_batch`` takes validated scan requests, their codes' checks, the store's
batch (scangate.state.batch: it reads state by keys and knows the store; nothing
here does), the verdict thresholds, the deciding clock's reading and the scan
time window. In order:

1. request identity (scangate.decide.requests): a retry gets its stored
   decision; a request id reused for other content, or a scan time outside the
   window, is refused in its place and writes nothing;
2. verdicts (scangate.decide.verdicts) over the histories, trace chains and
   recalls read for the batch's genuine codes;
3. eligibility (scangate.decide.eligibility): campaign, window, regions,
   blacklist, verdict policy; then one read of the claims, counters, budgets and
   points of every scan that may win;
4. scan after scan against those values: claim, caps (scangate.decide.caps),
   the draw (scangate.decide.draw), the prize within budgets
   (scangate.decide.budgets), points (scangate.decide.points), and the records
   (scangate.decide.ledger).

It returns each request's decision (or refusal) and the batch's ``Mutations``;
the caller applies them in the same transaction and answers after the commit.
Deciding scan after scan against the batch's values gives exactly what reading
and writing the store scan after scan would.
"""

from __future__ import annotations

import datetime as dt
import operator
from collections.abc import Callable, Sequence
from typing import Any

from ..clock import ScanTimePolicy
from ..datadir import VerifyResult
from ..decision import Award, Decision, NoReward, ScanRequest
from ..enums import CodeStatus, Verdict
from ..plugins import RuleContext, RuleResult, run_plugins
from ..state import layout
from ..state.batch import BatchState, Mutations, Snapshot
from ..state.records import Claim
from ..store import ProductLine
from ..verdict import Scan, ScanVerdict, VerdictConfig
from . import caps as caps_mod
from . import ledger
from .budgets import budgets_left, settle, spend
from .campaign import Compiled, compile_campaigns
from .draw import PPM, draw_message, roll_of, slot_odds
from .eligibility import Eligible, select
from .points import award_points
from .requests import MAX_TIME_MS, RequestIdReused, RequestRefused, ScanTimeRefused, fingerprints, same_request
from .verdicts import judge

__all__ = ["TRUSTING", "BatchValues", "Drawn", "Rules", "decide_batch", "decide_scan", "decide_selected", "draw_input",
           "fresh_scans",
           "judge_batch", "plugin_rules", "request_keys", "set_hotline"]

TRUSTING = ScanTimePolicy()    # the library's default: a caller's scan times stand (scangate.clock)
_GENUINE = int(CodeStatus.GENUINE)
_NO_RULE = RuleResult()
_ALREADY_CLAIMED = NoReward.ALREADY_CLAIMED
_PLUGIN_FAILED = NoReward.PLUGIN_FAILED
_PLUGIN_VETO = NoReward.PLUGIN_VETO
_V_COUNTERFEIT = Verdict.COUNTERFEIT
_verdict_of = operator.attrgetter("verdict")


def decide_batch(batch: BatchState, requests: Sequence[ScanRequest], checks: VerifyResult,
                 config: VerdictConfig, now: int, time_policy: ScanTimePolicy = TRUSTING
                 ) -> tuple[list[Decision | RequestRefused], Mutations]:
    """See the module docstring. ``requests`` passed ``check_requests``."""
    m = Mutations()
    ids = request_keys(requests)
    prints = fingerprints(requests)
    stored = batch.stored_decisions(ids) if ids else {}
    firsts: dict[bytes, int] = {}     # request key -> the first fresh request with it in the batch
    fresh: list[int] = []
    out: list[Decision | RequestRefused | None] = []
    timed = time_policy is not TRUSTING and any(r.time_ms is not None for r in requests)
    if not stored and not timed and len(set(ids)) == len(ids):   # the usual batch: every request new, once
        fresh = list(range(len(requests)))
        out = [None] * len(requests)
    else:
        for i, r in enumerate(requests):
            key = ids[i]
            found = stored.get(key)
            if found is not None:       # a retry gets the stored decision; another request, a refusal
                record, fingerprint = found
                out.append(record if same_request(fingerprint, r, prints[i]) else RequestIdReused(r.request_id))
            elif r.time_ms is not None and (why := time_policy.problem(r.time_ms, now)) is not None:
                out.append(ScanTimeRefused("time_ms", why))
            else:
                out.append(None)
                if key not in firsts:   # else the id's second use in the batch: settled below
                    fresh.append(i)
                    firsts[key] = i
    if fresh:
        all_fresh = len(fresh) == len(requests)
        fresh_requests = list(requests) if all_fresh else [requests[i] for i in fresh]
        scans = fresh_scans(fresh_requests, now, time_policy)
        fresh_checks = checks if all_fresh else VerifyResult(
            checks.status[fresh], checks.key_version[fresh], checks.serial[fresh], checks.level[fresh],
            checks.line_id[fresh], checks.lines)
        verdicts, keys = judge_batch(batch, scans, fresh_checks, config, now, m)
        decided = _decide(batch, compile_campaigns(batch.campaigns()), fresh_requests,
                          [s.time_ms for s in scans], verdicts, fresh_checks, keys, m, now)  # type: ignore[misc]
        if all_fresh:   # the usual batch: every request decided, in order
            m.decisions.extend(zip(ids, prints, decided))
            return decided, m  # type: ignore[return-value]
        for i, decision in zip(fresh, decided):
            m.decisions.append((ids[i], prints[i], decision))
            out[i] = decision
    for i, d in enumerate(out):
        if d is None:   # the same id twice in one batch: the first one's decision if the same request
            first = firsts[ids[i]]
            out[i] = out[first] if prints[i] == prints[first] else RequestIdReused(requests[i].request_id)
    return out, m  # type: ignore[return-value]


def request_keys(requests: Sequence[ScanRequest]) -> list[bytes]:
    """Each request's key in the request index (its id, scoped to its client)."""
    request_key = layout.request_key
    return [r.request_id.encode() if not r.client else request_key(r.client, r.request_id) for r in requests]


def fresh_scans(requests: Sequence[ScanRequest], now: int, time_policy: ScanTimePolicy) -> list[ScanRequest | Scan]:
    """The scans to judge: the requests themselves (they have a Scan's fields) when
    their time stands, else a Scan stamped with the decided time
    (ScanTimePolicy.decided, written out: this runs for every scan)."""
    latest = now if time_policy.ahead_ms is not None else MAX_TIME_MS
    return [r if r.time_ms is not None and r.time_ms <= latest
            else Scan(r.code, r.actor, r.actor_type, r.region, r.lat, r.lon, now)
            for r in requests]


def judge_batch(batch: BatchState, scans: Sequence[Any], checks: VerifyResult, config: VerdictConfig, now: int,
                m: Mutations) -> tuple[list[ScanVerdict], dict[int, bytes]]:
    """The verdicts of ``scans`` over the state ``batch`` reads for them, and the
    key of each genuine serial (its scan history's, and its claim's); their
    history records join ``m``."""
    status = checks.status.tolist()
    serials = checks.serial.tolist()
    genuine = [i for i, c in enumerate(status) if c == _GENUINE]
    chains = dict(zip(genuine, batch.chains([serials[i] for i in genuine])))
    keys, histories = batch.histories(serials[i] for i in genuine)
    verdicts, records = judge(scans, checks, histories, chains, batch.recalls(), config, keys, now)
    m.histories.extend(records)
    return verdicts, keys


def _decide(batch: BatchState, campaigns: list[Compiled], requests: list[ScanRequest], times: list[int],
            verdicts: list[ScanVerdict], checks: VerifyResult, keys: dict[int, bytes], m: Mutations, now: int
            ) -> list[Decision]:
    """The fresh scans' decisions, in order:
    first the stateless checks of every scan, then one read of all the state they
    need, then scan after scan against the batch's values. ``keys``: each genuine
    serial's key (judge_batch's)."""
    status, serials, line_ids = checks.status.tolist(), checks.serial.tolist(), checks.line_id.tolist()
    lines = checks.lines
    candidates: dict[tuple[str, int], list[Compiled]] = {}
    selected = [select(campaigns, candidates, r, t, v, lines[line_ids[i]] if status[i] == _GENUINE else None,
                       line_ids[i], keys.get(serials[i]))
                for i, (r, t, v) in enumerate(zip(requests, times, verdicts))]
    if _V_COUNTERFEIT in map(_verdict_of, verdicts):
        set_hotline(campaigns, verdicts)
    return decide_selected(batch, requests, times, verdicts, selected, lines.get, line_ids, serials, m, now)


def set_hotline(campaigns: list[Compiled], verdicts: list[ScanVerdict]) -> None:
    """Name the brand's hotline in each counterfeit verdict, for the consumer's
    warning: the first active campaign that names one."""
    hotline = next((c.campaign.hotline for c in campaigns if c.campaign.hotline and c.active), None)
    for v in verdicts:
        if v.verdict is _V_COUNTERFEIT:
            v.hotline = hotline


def decide_selected(batch: BatchState, requests: Sequence[ScanRequest], times: Sequence[int],
                    verdicts: Sequence[ScanVerdict], selected: Sequence[Eligible | tuple[NoReward, Compiled | None]],
                    line_of: Callable[[int], ProductLine | None], line_ids: Sequence[int], serials: Sequence[int],
                    m: Mutations, now: int, draws: Sequence[Drawn | None] | None = None,
                    ruled: Sequence[Rules | None] | None = None) -> list[Decision]:
    """The serialised half of the fresh scans' decisions, given their verdicts and
    what ``select`` made of each: one read of the claims, counters, budgets and
    points the eligible ones need, then scan after scan against those values.
    ``line_of``: a line id's product line (for the plugins); ``draws``: each
    scan's draw_input when worked out before (None where not); ``ruled``: the
    plugins' rules of each scan where they ran before (None: run them here). The server's
    writer runs this alone, on selections its workers made
    (scangate.decide.prepared)."""
    eligible = [e for e in selected if len(e) == 5]
    snap = Snapshot()
    if eligible:
        batch.read(snap, claims=[e[1] for e in eligible], counters=[e[3] for e in eligible],
                   accounts=[pk[0] for e in eligible if (pk := e[4])],
                   months=[pk[1] for e in eligible if (pk := e[4])],
                   # every budget of the batch's campaigns, with its limits (awards, fen) and the
                   # fen of one award: a store that splits budgets (PostgreSQL's slots) needs them
                   budgets={entry[1]: entry[2:5] for c in {e[0] for e in eligible} for entry in c.entry.values()})
        batch.read(snap, counters=caps_mod.day_keys(snap, [(e[3], e[2]) for e in eligible]))
    out = []
    state = BatchValues(snap, m, batch.next_ledger_seq() if eligible else 0, now)
    for i, (r, t, v, e, line_id, serial) in enumerate(zip(requests, times, verdicts, selected, line_ids, serials)):
        if len(e) == 5:
            out.append(decide_scan(state, e, r, t, v, line_of(line_id), serial,
                                   (ruled[i] if ruled is not None else None) or plugin_rules,
                                   draws[i] if draws is not None else None))
        else:
            out.append(ledger.no_reward(r, v, e[0], e[1]))
    return out


class BatchValues:
    """What the scans of one batch decide against and write to: the values read
    (``snap``), the mutations (``m``), the next ledger number, the deciding time."""

    __slots__ = ("m", "next_seq", "now", "snap")

    def __init__(self, snap: Snapshot, m: Mutations, next_seq: int, now: int):
        self.snap, self.m, self.next_seq, self.now = snap, m, next_seq, now


# The rules a campaign's plugins add to one scan's draw: (their merged output, the
# plugins that failed and why). plugin_rules runs them; the audit, which cannot run
# them again, gives back the output the ledger entry recorded.
Rules = Callable[[Compiled, ScanRequest, int, "ProductLine | None", ScanVerdict, int, int, int, int, int],
                 tuple[RuleResult, list[tuple[str, str]]]]


def plugin_rules(c: Compiled, r: ScanRequest, serial: int, line: ProductLine | None, v: ScanVerdict, n: int,
                 awards_today: int, awards_total: int, time_ms: int, odds: int) -> tuple[RuleResult, list[tuple[str, str]]]:
    """Run the campaign's plugins on the scan (``n``: the user's eligible scan
    number; ``odds``: the odds in force before them)."""
    assert line is not None     # the engine decides genuine codes only: each has its line
    when = dt.datetime.fromtimestamp(time_ms / 1000, dt.UTC)
    ctx = RuleContext(c.id, r.code, serial, line.sku, line.batch, line.level.label, v.to_json(),
                      r.actor, r.actor_type, tuple(r.actor_tags),
                      {"scan_number": n, "awards_today": awards_today, "awards_total": awards_total}, time_ms,
                      when.astimezone(c.campaign.zone), v.region, None, odds)
    rule, failures = run_plugins(c.campaign.plugins, ctx)
    if rule.odds_ppm is not None and not 0 <= rule.odds_ppm <= PPM:
        failures.append(("odds", f"odds_ppm {rule.odds_ppm} outside 0..{PPM}"))
    return rule, failures


# A scan's draw input and what it gives, which depend on nothing the batch
# changes: (the HMAC message, its MAC, the roll, the odds before plugins, the
# time slot that gave them or None). decide_scan works them out unless given
# (scangate.decide.prepared works them out in the worker).
Drawn = tuple[str, bytes, int, int, "int | None"]


def draw_input(c: Compiled, serial: int, actor: str, time_ms: int) -> Drawn:
    """The draw of ``actor``'s scan of ``serial`` at ``time_ms`` under ``c``."""
    message = draw_message(c.id, serial, actor, time_ms)     # audit replays it (scangate.audit)
    mac = c.hmac.digest(message.encode())  # type: ignore[union-attr]
    odds, slot = slot_odds(c, time_ms) if c.slots else (c.odds, None)
    return message, mac, roll_of(mac), odds, slot


def decide_scan(s: BatchValues, e: Eligible, r: ScanRequest, time_ms: int, v: ScanVerdict,
                line: ProductLine | None, serial: int, rules: Rules = plugin_rules,
                drawn: Drawn | None = None) -> Decision:
    """The stateful part of one eligible scan's decision: claim, caps, draw, prize,
    records (``drawn``: its draw_input, when worked out before). The keys of ``e``
    were read with the batch, so their values are in the snapshot. The audit
    (scangate.audit) decides every ledger entry again with this function, over the
    state the entries before it left."""
    c, claim_key, today, total_key, point_keys = e
    snap, m = s.snap, s.m
    if snap.claims[claim_key] is not None:
        return ledger.no_reward(r, v, _ALREADY_CLAIMED, c)
    k, had_counts = caps_mod.counts(snap, total_key, today)
    t_count, t_amount, n, d_count, d_amount, _held = k
    if c.count_caps and (capped := caps_mod.count_capped(c.caps, k)) is not None:
        return ledger.no_reward(r, v, capped, c)
    # the user's Nth eligible scan in this campaign (written back with the outcome:
    # a scan refused below by a plugin or a cash cap is not a used scan)
    n += 1
    actor = r.actor
    message, mac, roll, odds, slot = drawn or draw_input(c, serial, actor, time_ms)
    rule = _NO_RULE
    plugin = None    # the plugins' merged output, for the ledger entry (audit cannot run them again)
    campaign = c.campaign
    if c.plugins:
        rule, failures = rules(c, r, serial, line, v, n, d_count, t_count, time_ms, odds)
        if failures or rule.veto:
            for ref, _why in failures:
                key = layout.plugin_failure_key(c.id, ref)
                m.counter_adds[key] = m.counter_adds.get(key, 0) + 1
            return ledger.no_reward(r, v, _PLUGIN_FAILED if failures else _PLUGIN_VETO, c)
        plugin = ledger.plugin_output(rule)
        if rule.odds_ppm is not None:
            odds = rule.odds_ppm
    budgets = snap.budgets      # every budget key of the batch's campaigns
    # budget_rows: what the ledger entry records of the budgets
    budget_rows, won, how, reason, _picked = settle(c, budgets, n, roll, odds, mac, rule.prize_id)
    prize = won[0] if won is not None else None
    if c.cash_caps and prize is not None and prize.kind == "cash" and how != "consolation":
        capped = caps_mod.cash_capped(c.caps, k, prize.amount_fen)
        if capped is not None:
            return ledger.no_reward(r, v, capped, c)
    # ---- commit the outcome: one draw per code, won or lost
    seq = s.next_seq
    s.next_seq = seq + 1
    points = 0
    tier_pct = None
    payout_key = None
    # what the pick saw: read before this award is counted
    left = None if budget_rows is None else budgets_left(budget_rows, budgets)
    if prize is None:
        caps_mod.count_scan(snap, m, total_key, k, n)
        amount = 0
    else:
        amount = prize.amount_fen
        if prize.kind == "points":
            points, tier_pct = award_points(campaign, c.tiers, prize, rule, snap, m, point_keys,  # type: ignore[arg-type]
                                            seq, time_ms)
        budget_key = won[1]  # type: ignore[index]
        m.budgets[budget_key] = spend(budgets, budget_key, amount)
        if how != "consolation":
            held = k[5]
            caps_mod.count_award(snap, m, total_key, k, n, today, amount,
                                 c.clock.iso_day(held[0]) if held else "")
        else:
            caps_mod.count_scan(snap, m, total_key, k, n)
        if prize.kind in ("cash", "coupon"):
            payout_key = layout.payout_key(c.id, serial)
            m.outbox[payout_key.encode()] = ledger.payout_record(
                payout_key, seq, actor, prize.id, prize.kind, amount, c.coupon[prize.id], s.now)
    m.ledger.append(ledger.ledger_entry(
        seq, r.request_id, r.client, c.id, c.revision, serial, actor, time_ms, message, mac.hex(), roll, slot,
        "plugin" if rule.odds_ppm is not None else "base" if slot is None else "slot", odds, plugin, n,
        [d_count, d_amount, t_count, t_amount] if had_counts else [0, 0, 0, 0], how, left,
        None if prize is None else prize.id, amount, tier_pct, points, payout_key,
        None if reason is None else reason.value))
    snap.claims[claim_key] = m.claims[claim_key] = Claim(c.id, seq)     # one draw per code
    if prize is None:
        return ledger.no_reward(r, v, reason, c)  # type: ignore[arg-type]
    return Decision(r.request_id, v, Award(c.id, prize.id, prize.kind, amount, points, how, seq, payout_key), None, c.id)
