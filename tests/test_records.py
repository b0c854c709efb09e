"""The decision state's records (scangate.state.records, schema 2): typed msgspec
Structs in msgpack.

Every record type round-trips; what a real batch stores reads back (``to_json``,
through scangate.state.reads) as exactly what the old JSON records held, built
here from the decisions and the ledger's semantics (the draw over the campaign
secret, odds and slots, scan numbers, the counters and budgets the decision
read, tiers and plugins, payouts and points); one record type's bytes never
decode as another's, nor a format under a tag it does not have; a truncated or
garbage record is a CorruptionError naming the record kind; the same decisions
write the same bytes. And the draw's HMAC against the standard library, the
compiled campaign against the campaign.
"""
from __future__ import annotations

import dataclasses
import hashlib
import hmac
import random
import shutil
from collections import defaultdict
from collections.abc import Callable
from datetime import date, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import msgspec
import pytest

import scangate
from scangate import audit, clock, ingest, points, rewards
from scangate.campaigns import Campaign, load_campaign
from scangate.decide.campaign import Compiled, Hmac
from scangate.errors import CorruptionError
from scangate.enums import CodeStatus, Reason, Verdict
from scangate.rewards import Award, Decision, NoReward, ScanRequest
from scangate.state import layout, reads
from scangate.state import raw as state_raw
from scangate.state.records import (
    Claim,
    DecisionBatch,
    LedgerEntry,
    LegacyLedgerEntry,
    Payout,
    PointsEntry,
    RedemptionRecord,
    decode_claim,
    decode_decision,
    decode_ledger,
    decode_payout,
    decode_points_entry,
    decode_redemption,
    encode,
    to_json,
)
from scangate.verdict import ScanVerdict
from scangate.verdicts import revoke_line, revoke_range

TZ = ZoneInfo("Asia/Shanghai")
CHENGDU, BEIJING, GUANGZHOU = 510104, 110101, 440106
PPM = 1_000_000
NOW = 1_773_200_000_000          # the process clock while deciding: payout requests and redemptions carry it


def ms(y: int, mo: int, d: int, h: int = 12, mi: int = 0) -> int:
    return int(datetime(y, mo, d, h, mi, tzinfo=TZ).timestamp() * 1000)


CAMPAIGN = """
id = "rec-1"
name = "Records \\"quoted\\" 活动"
timezone = "Asia/Shanghai"
start = 2026-03-01
end = 2026-06-01
actor = "consumer"
odds = "50%"
consolation = "pts"
first_scan_always_wins = true
win_on_nth_scan = [3]
regions_exclude = ["11"]
blacklist = ["farm"]

[products]
skus = ["BEER"]

[[slots]]
start = "22:00"
end = "02:00"
odds = "100%"

[[prizes]]
id = "cash"
kind = "cash"
weight = 2
amount_fen = 150
budget_count = 6

[[prizes]]
id = "cpn"
kind = "coupon"
weight = 1

[prizes.coupon]
type = "gift"
gift_sku = "BEER \\"330\\""
valid_days = 7

[[prizes]]
id = "pts"
kind = "points"
points = 4

[caps]
per_user_daily_count = 3
per_user_total_count = 5

[verdict_policy]
diverted_can_win = true
suspect_clone_can_win = true
"""

# every draw wins, a budget of 4 awards then BUDGET_EXHAUSTED (no consolation);
# store tiers and the member-day plugin scale the points
STORE_CAMPAIGN = """
id = "rec-store"
name = "Stores"
timezone = "Asia/Shanghai"
start = 2026-03-01
end = 2026-06-01
actor = "store"
odds = "100%"
plugins = ["member-day-double-points"]

[products]
levels = ["case"]

[[prizes]]
id = "sp"
kind = "points"
points = 100
budget_count = 4

[[store_tiers]]
name = "bronze"
min_points = 0
multiplier_pct = 100

[[store_tiers]]
name = "silver"
min_points = 200
multiplier_pct = 150
"""
# draws that can lose, no consolation: lost draws, and a fen budget that runs out
LOST_CAMPAIGN = """
id = "rec-lost"
name = "Cider"
timezone = "Asia/Shanghai"
start = 2026-03-01
end = 2026-06-01
actor = "consumer"
odds = "30%"

[products]
skus = ["CIDER"]

[[prizes]]
id = "c5"
kind = "cash"
amount_fen = 500
budget_amount_fen = 1000
"""
SECRET_SEED = b"test_records 1"
MEMBER_DAY = 8                    # scangate.rules_examples.MemberDayDoublePoints: the 8th, tag "member"


def _all(dd: scangate.DataDir) -> dict[str, list[tuple[bytes, bytes]]]:
    return state_raw.dump(dd)


@dataclasses.dataclass
class Spec:
    """A stored campaign as the test knows it: the campaign, its secret, its revision."""

    campaign: Campaign
    secret: bytes
    revision: int


def _world(dd: scangate.DataDir) -> tuple[dict[str, list[str]], dict[str, Spec]]:
    """Items packed in cases on a pallet shipped to Guangdong, a recalled range, a
    recalled line, more beer, cider, the three campaigns; the codes by kind."""
    items = dd.issue_codes("BEER", "item", 60).as_strings()
    cases = dd.issue_codes("BEER", "case", 8).as_strings()
    [pallet] = dd.issue_codes("BEER", "pallet", 1).as_strings()
    rows = [f"{cases[i // 10]},{items[i]}" for i in range(40)] + [f"{pallet},{c}" for c in cases[:4]]
    ingest.link_csv(dd, ("parent,child\n" + "\n".join(rows) + "\n").encode(), "pack.csv")
    ingest.load_dealers_csv(dd, b"dealer_id,name,territory\nGD,Guangdong,44\n")
    ingest.ship_csv(dd, f"unit,dealer_id,shipped_at,shipment_id\n{pallet},GD,2026-02-01T00:00:00Z,SH-1\n".encode())
    serials = [int(s) for s in dd.verify_codes(items).serial]
    revoke_range(dd, serials[50], serials[52], "range \"recalled\" 召回")
    wine = dd.issue_codes("WINE", "item", 3).as_strings()
    revoke_line(dd, int(dd.verify_codes(wine[:1]).line_id[0]), "bad cork")
    specs = {}
    for text, source in ((CAMPAIGN, "rec.toml"), (STORE_CAMPAIGN, "stores.toml"), (LOST_CAMPAIGN, "lost.toml")):
        campaign = load_campaign(text, source)
        # a fixed secret (put_campaign keeps one it finds): the same draws every run,
        # so the scenario reaches every outcome it asserts, every time
        state_raw.put(dd, "campaigns", layout.secret_key(campaign.id),
                      hashlib.sha256(SECRET_SEED + campaign.id.encode()).digest())
        with clock.use(clock.ManualClock(NOW - 86_400_000)):
            record = rewards.put_campaign(dd, text, source)
        secret = reads.campaign_secret(dd, campaign.id)
        assert secret is not None
        assert record["commitment"] == hashlib.sha256(secret).hexdigest()
        specs[campaign.id] = Spec(campaign, secret, record["revision"])
    codes = {"items": items + wine, "cases": cases, "burst": dd.issue_codes("BEER", "item", 8).as_strings(),
             "cider": dd.issue_codes("CIDER", "item", 16).as_strings()}
    return codes, specs


def _requests(codes: dict[str, list[str]]) -> list[ScanRequest]:
    """Decisions of every kind: awards of each prize kind (first, Nth, drawn, in a
    slot, consolation), lost draws, caps, blacklist, excluded regions, recalls,
    clones, travel and diversion, a typo, a scan outside the window, a client's
    request id, store scans with tiers, member day and an exhausted budget."""
    t = ms(2026, 3, 10, 9)
    out = []
    actors = ["u1", "u2", "用户\"三\"", "farm", "u\\back"]
    items, cases = codes["items"], codes["cases"]
    for i, code in enumerate(codes["cider"]):
        out.append(ScanRequest(f"cider-{i}", code, f"c{i % 2}", region=CHENGDU, time_ms=t + i * 600_000))
    # one user's day: the daily cap, then the total cap
    for i, code in enumerate(codes["burst"]):
        out.append(ScanRequest(f"burst-{i}", code, "u6", region=CHENGDU, time_ms=ms(2026, 3, 11, 10) + i * 300_000))
    for i, code in enumerate(items):
        out.append(ScanRequest(f"req-{i}-\u00e9\"", code, actors[i % len(actors)],
                               region=(CHENGDU, GUANGZHOU, BEIJING, None)[i % 4], time_ms=t + i * 3_600_000))
    # repeat scans: other actors far away minutes later (clone and travel evidence)
    for j, (code, region) in enumerate(zip(items[:12], [BEIJING, 650102, 310101] * 4)):
        out.append(ScanRequest(f"again-{j}", code, f"other-{j}", region=region, time_ms=t + j * 60_000 + 30_000))
    out.append(ScanRequest("geo-1", items[45], "u9", lat=23.1291, lon=113.2644, time_ms=t))
    out.append(ScanRequest("typo", items[46][:-3] + "AAA", "u9", region=CHENGDU, time_ms=t))
    out.append(ScanRequest("late", items[47], "u9", region=CHENGDU, time_ms=ms(2026, 7, 1)))
    # the same id twice: the app's own and one sent without a client
    out.append(ScanRequest("shared-id", items[48], "u7", region=CHENGDU, time_ms=t + 5, client="app-1"))
    out.append(ScanRequest("shared-id", items[49], "u8", region=CHENGDU, time_ms=t + 6))
    member_day = ms(2026, 3, MEMBER_DAY, 10)
    for k, case in enumerate(cases):
        out.append(ScanRequest(f"store-{k}", case, "store-α" if k < 6 else "store-β", "store", region=GUANGZHOU,
                               time_ms=(member_day if k < 5 else ms(2026, 3, 9, 10)) + k,
                               actor_tags=("member",) if k % 2 else ()))
    return out


def _decide(dd: scangate.DataDir, requests: list[ScanRequest]) -> list[Decision]:
    decisions: list[Decision] = []
    with clock.use(clock.ManualClock(NOW)):
        for start in range(0, len(requests), 17):
            out = rewards.decide_scans(dd, requests[start:start + 17])
            assert all(isinstance(d, Decision) for d in out), out
            decisions += out
    return decisions


# ------------------------------------------------------------------ the model
@dataclasses.dataclass
class _User:
    scans: int = 0                 # ledger entries: the user's scans that drew
    awards: int = 0                # awards that count towards the caps (not consolation)
    fen: int = 0
    days: dict[date, tuple[int, int]] = dataclasses.field(default_factory=dict)


def _slot(c: Campaign, local: datetime) -> int | None:
    wall = local.time().replace(tzinfo=None)
    return next((i for i, s in enumerate(c.slots) if s.contains(wall)), None)


def _budget_left(c: Campaign, used: dict[tuple[str, str], tuple[int, int]], prize_ids: list[str]
                 ) -> dict[str, list[int | None]]:
    out: dict[str, list[int | None]] = {}
    for p in c.prizes:
        if p.id in prize_ids and (p.budget_count is not None or p.budget_amount_fen is not None):
            count, fen = used.get((c.id, p.id), (0, 0))
            out[p.id] = [None if p.budget_count is None else p.budget_count - count,
                         None if p.budget_amount_fen is None else p.budget_amount_fen - fen]
    return out


def _has_budget(c: Campaign, used: dict[tuple[str, str], tuple[int, int]], prize_id: str) -> bool:
    p = c.prize(prize_id)
    count, fen = used.get((c.id, p.id), (0, 0))
    return (p.budget_count is None or count < p.budget_count) and \
        (p.budget_amount_fen is None or fen + p.amount_fen <= p.budget_amount_fen)


class Model:
    """What the old JSON records held for each decision that drew, from the
    requests, their decisions and the ledger's rules (docs/campaigns.md, "Audit")."""

    def __init__(self, dd: scangate.DataDir, specs: dict[str, Spec]):
        self.dd, self.specs = dd, specs
        self.users: dict[tuple[str, str], _User] = {}
        self.used: dict[tuple[str, str], tuple[int, int]] = {}
        self.balance: dict[str, int] = defaultdict(int)       # no redemption before the end: also points earned
        self.ledger: list[dict[str, Any]] = []
        self.claims: dict[int, dict[str, Any]] = {}
        self.outbox: dict[str, dict[str, Any]] = {}
        self.history: dict[str, list[dict[str, Any]]] = defaultdict(list)

    def add(self, r: ScanRequest, d: Decision) -> None:
        if d.award is None and d.no_reward not in (NoReward.LOST_DRAW, NoReward.BUDGET_EXHAUSTED):
            return                                              # refused before the draw: no ledger entry
        assert d.campaign_id is not None
        spec = self.specs[d.campaign_id]
        c, seq = spec.campaign, len(self.ledger) + 1
        serial = int(self.dd.verify_code(r.code).serial)
        assert r.time_ms is not None
        draw_input = f"{c.id}|{serial}|{r.actor}|{r.time_ms}"
        mac = hmac.new(spec.secret, draw_input.encode(), hashlib.sha256).digest()
        roll = int.from_bytes(mac[:8], "big") % PPM
        local = datetime.fromtimestamp(r.time_ms / 1000, c.zone)
        slot = _slot(c, local)
        odds = c.slots[slot].odds_ppm if slot is not None else c.odds_ppm
        plugin = None
        multiplier = None
        if c.plugins:      # member-day-double-points: its output is recorded, whatever it is
            multiplier = 200 if local.day == MEMBER_DAY and "member" in r.actor_tags else None
            plugin = {"odds_ppm": None, "prize_id": None, "veto": False, "points_multiplier_pct": multiplier}
        user = self.users.setdefault((c.id, r.actor), _User())
        n = user.scans + 1
        d_count, d_fen = user.days.get(local.date(), (0, 0))
        how = "first_scan" if n == 1 and c.first_scan_always_wins else "nth_scan" if n in c.win_on_nth_scan \
            else "draw" if roll < odds else "lost"
        # the budgets the decision read: every prize's for a pick, the consolation
        # prize's for a lost draw that may get it, none else
        read = [p.id for p in c.prizes] if how != "lost" else [c.consolation] if c.consolation is not None else None
        budgets = None if read is None else _budget_left(c, self.used, read)
        won, reason = None, None
        if how != "lost":   # by weight among the winning prizes with budget left: bytes 8 to 16 of the HMAC
            left = [p for p in c.winning_prizes if _has_budget(c, self.used, p.id)]
            if left:
                point = int.from_bytes(mac[8:16], "big") % sum(p.weight for p in left)
                for p in left:
                    if point < p.weight:
                        won = p
                        break
                    point -= p.weight
            else:
                reason = NoReward.BUDGET_EXHAUSTED
        if won is None and c.consolation is not None and _has_budget(c, self.used, c.consolation):
            won, how, reason = c.prize(c.consolation), "consolation", None
        if won is None and reason is None:
            reason = NoReward.LOST_DRAW
        pts, tier_pct = 0, None
        if won is not None and won.kind == "points":
            pts = won.points
            tier = c.tier_for(self.balance[r.actor]) if c.store_tiers else None
            if tier is not None:
                pts, tier_pct = pts * tier.multiplier_pct // 100, tier.multiplier_pct
            if multiplier is not None:
                pts = pts * multiplier // 100
        payout_key = f"{c.id}:{serial}" if won is not None and won.kind in ("cash", "coupon") else None
        amount = won.amount_fen if won is not None else 0
        entry = {"seq": seq, "request_id": r.request_id, "client": r.client, "campaign_id": c.id,
                 "revision": spec.revision, "serial": serial, "actor": r.actor, "time_ms": r.time_ms,
                 "draw_input": draw_input, "hmac": mac.hex(), "roll": roll, "slot": slot,
                 "odds_from": "slot" if slot is not None else "base", "odds_ppm": odds, "plugin": plugin,
                 "scan_number": n, "counters": [d_count, d_fen, user.awards, user.fen], "how": how,
                 "budgets": budgets, "prize_id": won.id if won is not None else None, "amount_fen": amount,
                 "tier_pct": tier_pct, "points": pts, "payout_key": payout_key,
                 "no_reward": reason.value if reason is not None else None}
        # the decision is the ledger's: its award (or none) is this entry's
        award = None if won is None else {"campaign_id": c.id, "prize_id": won.id, "kind": won.kind,
                                          "amount_fen": amount, "points": pts, "how": how, "ledger_seq": seq,
                                          "payout_key": payout_key}
        got = d.to_json()
        assert (got["award"], got["no_reward"]) == (award, entry["no_reward"]), (r, got, entry)
        self.ledger.append(entry)
        self.claims[serial] = {"campaign_id": c.id, "ledger_seq": seq}
        user.scans = n
        if won is None:
            return
        if how != "consolation":
            user.awards, user.fen = user.awards + 1, user.fen + amount
            user.days[local.date()] = (d_count + 1, d_fen + amount)
        count, fen = self.used.get((c.id, won.id), (0, 0))
        self.used[(c.id, won.id)] = (count + 1, fen + amount)
        if payout_key is not None:
            self.outbox[payout_key] = {
                "key": payout_key, "state": "pending", "attempts": 0, "ledger_seq": seq, "actor": r.actor,
                "prize_id": won.id, "kind": won.kind, "amount_fen": amount,
                "coupon": dataclasses.asdict(won.coupon) if won.coupon is not None else None, "created_ms": NOW}
        if won.kind == "points":
            self.balance[r.actor] += pts
            self.history[r.actor].append({"delta": pts, "balance": self.balance[r.actor], "reason": "award",
                                          "ref": f"ledger:{seq}", "at_ms": r.time_ms})


def _history(dd: scangate.DataDir) -> dict[str, list[dict[str, Any]]]:
    """Every points history entry (h/<actor> NUL <n>), by actor, in order."""
    out = {actor: [to_json(e) for e in entries] for actor, entries in reads.points_histories(dd).items()}
    for actor, entries in out.items():             # each actor's entries are under its own history prefix
        assert [to_json(e) for e in reads.points_history(dd, actor)] == entries
    return out


def test_stored_records_read_back_as_the_json_records_held(dd: scangate.DataDir) -> None:
    codes, specs = _world(dd)
    requests = _requests(codes)
    decisions = _decide(dd, requests)

    # the scenario reaches every kind of decision, record and ledger field
    seen = {d.award.kind if d.award else d.no_reward for d in decisions}
    assert {"cash", "coupon", "points", NoReward.BLACKLISTED, NoReward.REGION_EXCLUDED, NoReward.LOST_DRAW,
            NoReward.VERDICT_NOT_ELIGIBLE, NoReward.ALREADY_CLAIMED, NoReward.OUTSIDE_WINDOW,
            NoReward.DAILY_CAP_REACHED, NoReward.TOTAL_CAP_REACHED, NoReward.BUDGET_EXHAUSTED} <= seen, seen
    assert {d.award.how for d in decisions if d.award} == {"first_scan", "nth_scan", "draw", "consolation"}
    verdicts = [d.verdict for d in decisions]
    assert all(type(v) is ScanVerdict for v in verdicts)
    assert any(v.first_scan for v in verdicts) and any(v.evidence.get("trace") for v in verdicts)
    assert {v.label for v in verdicts} >= {"genuine", "counterfeit", "revoked", "suspect_clone", "diverted"}

    model = Model(dd, specs)
    for r, d in zip(requests, decisions):
        model.add(r, d)
    entries = list(reads.ledger(dd))
    assert entries == model.ledger
    for e in entries:
        assert tuple(e) == audit.LEDGER_FIELDS, e
        assert e["plugin"] is None or tuple(e["plugin"]) == audit.PLUGIN_FIELDS, e
        assert rewards.audit_entry(dd, e["seq"])["verified"] is True, e
    # the ledger's every branch: slot or base odds, a plugin's output or none, budgets
    # read (left or spent) or not, a tier or none, a client or none
    assert {e["odds_from"] for e in entries} == {"base", "slot"}
    assert any(e["plugin"] is None for e in entries) and any(e["plugin"] is not None for e in entries)
    assert any(e["plugin"] and e["plugin"]["points_multiplier_pct"] == 200 for e in entries)
    assert any(e["budgets"] is None for e in entries) and any(e["budgets"] == {} for e in entries)
    assert any(e["budgets"] and e["budgets"].get("cash") == [0, None] for e in entries)
    assert any(e["budgets"] and e["budgets"].get("sp") == [0, None] for e in entries)
    assert any(e["budgets"] and e["budgets"].get("c5") == [None, 0] for e in entries)
    assert {e["tier_pct"] for e in entries} == {None, 100, 150}
    assert {e["client"] for e in entries} == {"", "app-1"}
    assert any(e["counters"] != [0, 0, 0, 0] for e in entries)

    # the decision of every request, as Decision.to_json() without its message (a
    # retry derives it again), within its client
    for r, d in zip(requests, decisions):
        want = d.to_json()
        del want["message"]
        assert reads.decision_of(dd, r.request_id, r.client) == want, r
    assert reads.decision_of(dd, "shared-id", "app-1") != reads.decision_of(dd, "shared-id")
    assert reads.decision_of(dd, "never-sent") is None

    assert reads.claims(dd) == model.claims
    assert model.outbox and any(o["coupon"] for o in model.outbox.values())
    assert reads.outbox(dd) == model.outbox
    history = _history(dd)
    assert history == model.history
    assert set(history) >= {"用户\"三\"", "store-α"}

    # a redemption's result, and its history entry
    with clock.use(clock.ManualClock(NOW + 1)):
        spent = points.redeem(dd, "store-α", 10, "redeem-1", "a gift")
        short = points.redeem(dd, "u2", 10_000, "redeem-2")
    assert spent.ok and not short.ok
    for result in (spent, short):
        record = reads.redemption(dd, result.request_id)
        assert record is not None
        assert to_json(record) == result.to_json() == {
            "request_id": result.request_id, "actor": result.actor, "points": 10 if result.ok else 10_000,
            "ok": result.ok, "balance": model.balance[result.actor] - (10 if result.ok else 0),
            "reason": None if result.ok else "insufficient_points"}
    assert _history(dd)["store-α"][-1] == {"delta": -10, "balance": model.balance["store-α"] - 10,
                                           "reason": "redeem", "ref": "a gift", "at_ms": NOW + 1}
    assert _history(dd)["u2"] == model.history.get("u2", [])          # a refused redemption changes nothing

    # a retry gets the stored decision, message and all, and writes nothing
    before = _all(dd)
    again = _decide(dd, requests)
    assert [a.to_json() for a in again] == [d.to_json() for d in decisions]
    assert _all(dd) == before


# ------------------------------------------------------------------ samples
AWARD = Award("rec-1", "cash", "cash", 150, 0, "draw", 7, "rec-1:123")
# a verdict with every field set (its message as told: a record upgraded from version 1)
VERDICT = ScanVerdict(Verdict.SUSPECT_CLONE, [Reason.GENUINE_FIRST_SCAN, Reason.CLONE_IMPOSSIBLE_TRAVEL],
                      CodeStatus.GENUINE, 110101, "geo:cn-districts@2024.1", 0.75,
                      {"time_ms": 1_773_115_200_000, "region": 510104, "actor": "用户\"1\""}, 2,
                      {"trace": {"dealer_id": "GD", "territory": "44"}, "distance_km": 1234.5}, "400-800-8820",
                      ("此码可能被复制", "This code may have been copied."))
# VERDICT.to_json(), written out
VERDICT_JSON = {"verdict": "suspect_clone", "message": {"zh-CN": "此码可能被复制", "en": "This code may have been copied."},
                "reasons": ["SG-G1", "SG-K2"], "code_status": "genuine", "region": 110101,
                "region_source": "geo:cn-districts@2024.1", "clone_score": 0.75,
                "first_scan": {"time_ms": 1_773_115_200_000, "region": 510104, "actor": "用户\"1\""},
                "scan_count": 2, "evidence": {"trace": {"dealer_id": "GD", "territory": "44"}, "distance_km": 1234.5}}
LEDGER = LedgerEntry(
    3, "req-\u00e9\"", "app-1", "rec-1", 2, 2**56 - 1, "用户\"三\"", 1_773_115_200_000, "rec-1|72057594037927935|x|1",
    "ab" * 32, 999_999, 0, "slot", 1_000_000, None, 3, [1, 150, 2, 300], "nth_scan",
    {"cash": [5, None], "big": [None, 10_000]}, "cash", 150, None, 0, "rec-1:72057594037927935", None)
SAMPLES: dict[str, list[msgspec.Struct]] = {
    "decision": [Decision("r-1", VERDICT, AWARD, None, "rec-1"),
                 Decision("用户\"1\"", ScanVerdict(Verdict.COUNTERFEIT, [], CodeStatus.MALFORMED, None, "none"), None,
                          NoReward.VERDICT_NOT_ELIGIBLE, None)],
    "ledger": [LEDGER,
               msgspec.structs.replace(LEDGER, seq=4, client="", slot=None, odds_from="plugin", odds_ppm=2.5,
                                       plugin={"odds_ppm": 2.5, "prize_id": "sp", "veto": False,
                                               "points_multiplier_pct": 200},
                                       how="lost", budgets=None, prize_id=None, amount_fen=0, tier_pct=150,
                                       payout_key=None, no_reward="lost_draw"),
               LegacyLedgerEntry(1, "old", "rec-1", 42, "u1", 1_700_000_000_000, "rec-1|42|u1|1700000000000",
                                 "00" * 32, 12, 500_000, 1, "draw", "pts", 0, 4, None, None)],
    "claim": [Claim("rec-1", 1), Claim("活动", 2**63 - 1)],
    "points history": [PointsEntry(10, 10, "award", "ledger:1", 1_773_115_200_000),
                       PointsEntry(-5, 5, "redeem", "礼品 \"note\"", 1.5)],
    "redemption": [RedemptionRecord("x", "u1", 5, True, 5, None),
                   RedemptionRecord("y", "u1", 50, False, 5, "insufficient_points")],
    "payout": [Payout("rec-1:1", "pending", 0, 1, "u1", "cash", "cash", 150, None, NOW),
               Payout("rec-1:2", "confirmed", 3, 2, "u\\2", "cpn", "coupon", 0,
                      {"type": "gift", "valid_days": 7, "threshold_fen": 0, "value_fen": None, "percent_off": None,
                       "gift_sku": "BEER \"330\""}, NOW, lease_owner="runner-1", lease_expires_ms=NOW + 30_000,
                      next_attempt_ms=NOW + 60_000, error="timeout 超时", confirmation="WX-1", confirmed_ms=NOW + 1)],
}
DECODERS: dict[str, Callable[[bytes | memoryview], Any]] = {
    "decision": decode_decision, "ledger": decode_ledger, "claim": decode_claim,
    "points history": decode_points_entry, "redemption": decode_redemption, "payout": decode_payout}


def _samples() -> list[tuple[str, msgspec.Struct]]:
    return [(kind, s) for kind, samples in SAMPLES.items() for s in samples]


@pytest.mark.parametrize("kind,record", _samples(), ids=lambda x: x if isinstance(x, str) else type(x).__name__)
def test_every_record_type_round_trips(kind: str, record: msgspec.Struct) -> None:
    raw = encode(record)
    back = DECODERS[kind](raw)
    assert type(back) is type(record) and back == record
    assert DECODERS[kind](memoryview(raw)) == record          # LMDB hands out buffers
    assert to_json(back) == to_json(record)
    assert "type" not in to_json(record)                       # the version tag is no field


def test_to_json_gives_the_fields_by_name() -> None:
    assert to_json(SAMPLES["decision"][0]) == {
        "request_id": "r-1", "verdict": VERDICT_JSON, "no_reward": None, "campaign_id": "rec-1",
        "award": {"campaign_id": "rec-1", "prize_id": "cash", "kind": "cash", "amount_fen": 150, "points": 0,
                  "how": "draw", "ledger_seq": 7, "payout_key": "rec-1:123"}}
    assert tuple(to_json(LEDGER)) == audit.LEDGER_FIELDS
    assert to_json(Claim("rec-1", 1)) == {"campaign_id": "rec-1", "ledger_seq": 1}
    # a payout's lease fields appear once they are set, not before
    pending, confirmed = SAMPLES["payout"]
    assert list(to_json(pending)) == ["key", "state", "attempts", "ledger_seq", "actor", "prize_id", "kind",
                                      "amount_fen", "coupon", "created_ms"]
    assert to_json(confirmed)["lease_owner"] == "runner-1" and to_json(confirmed)["confirmed_ms"] == NOW + 1


@pytest.mark.parametrize("kind", list(DECODERS))
def test_another_records_bytes_do_not_decode(kind: str) -> None:
    """Tagged versions: a record decodes only as its own type (a Claim's bytes are
    not a LedgerEntry), whatever the lengths and types happen to be."""
    decode = DECODERS[kind]
    for other, record in _samples():
        if other == kind:
            continue
        with pytest.raises(CorruptionError) as exc:
            decode(encode(record))
        assert str(exc.value).startswith(f"{kind} record: "), (other, record, exc.value)


@pytest.mark.parametrize("kind,record", [(k, s) for k, s in _samples() if k != "payout"],
                         ids=lambda x: x if isinstance(x, str) else type(x).__name__)
def test_a_format_under_a_tag_it_does_not_have_is_refused(kind: str, record: msgspec.Struct) -> None:
    """An array record's first element is its version: the same fields under any
    other tag (an unknown later version, or the other ledger format's) are refused."""
    items = msgspec.msgpack.decode(encode(record))
    tag = items[0]
    assert tag == record.__struct_config__.tag
    # the ledger's and the decision's other version: 2 for 1, 1 for 2
    for other in (0, 3, 99, "1", None, tag + 1 if kind not in ("ledger", "decision") else 3 - tag):
        with pytest.raises(CorruptionError) as exc:
            DECODERS[kind](msgspec.msgpack.encode([other, *items[1:]]))
        assert str(exc.value).startswith(f"{kind} record: ")


def test_a_payout_under_another_tag_is_refused() -> None:
    """The payout request, a map, names its version too."""
    fields = msgspec.to_builtins(SAMPLES["payout"][0])
    assert fields["type"] == 1
    for other in (0, 2, "1", None):
        with pytest.raises(CorruptionError) as exc:
            decode_payout(msgspec.msgpack.encode({**fields, "type": other}))
        assert str(exc.value).startswith("payout record: ")


@pytest.mark.parametrize("kind,record", _samples(), ids=lambda x: x if isinstance(x, str) else type(x).__name__)
def test_a_truncated_record_is_corruption_naming_its_kind(kind: str, record: msgspec.Struct) -> None:
    raw = encode(record)
    for cut in range(len(raw)):
        with pytest.raises(CorruptionError) as exc:
            DECODERS[kind](raw[:cut])
        assert str(exc.value).startswith(f"{kind} record: "), cut
    with pytest.raises(CorruptionError) as exc:
        DECODERS[kind](raw + b"\x00")                          # a record and something after it
    assert str(exc.value).startswith(f"{kind} record: ")


@pytest.mark.parametrize("kind", list(DECODERS))
def test_garbage_is_corruption_naming_the_kind(kind: str) -> None:
    rng = random.Random(20260610)
    garbage = [b"", b"\xc1", b"not msgpack", b"\x93\x01", b"\xff" * 40,
               # the schema 1 form of the records: JSON text is not a record (migrate first)
               b'{"campaign_id": "rec-1", "ledger_seq": 1}', b'{"delta": 10, "balance": 10}',
               msgspec.msgpack.encode({"seq": 1}), msgspec.msgpack.encode([]), msgspec.msgpack.encode(7)]
    garbage += [rng.randbytes(rng.randrange(1, 64)) for _ in range(200)]
    for raw in garbage:
        try:
            DECODERS[kind](raw)
        except CorruptionError as exc:
            assert str(exc).startswith(f"{kind} record: "), raw
        else:
            raise AssertionError(f"{kind}: {raw!r} decoded")


def _decision_batch(raw: bytes) -> DecisionBatch:
    items = msgspec.msgpack.decode(raw)
    assert items[0] == 3, items          # a batch's record
    return DecisionBatch([decode_decision(encode(d)) for d in items[1]])


def test_the_msgpack_bytes_are_deterministic(tmp_path: Path) -> None:
    """The same record encodes to the same bytes, a stored record re-encodes to
    the bytes stored, and the same decisions on two copies of a data directory
    leave byte-identical databases."""
    for _kind, record in _samples():
        assert encode(record) == encode(msgspec.structs.replace(record))
    first, second = tmp_path / "a", tmp_path / "b"
    with scangate.init_data_dir(first) as dd:
        codes, _specs = _world(dd)
    shutil.copytree(first, second)
    requests = _requests(codes)
    with scangate.open_data_dir(first) as dd:
        one = [d.to_json() for d in _decide(dd, requests)]
        stored = _all(dd)
    with scangate.open_data_dir(second) as dd:
        two = [d.to_json() for d in _decide(dd, requests)]
        assert _all(dd) == stored
    assert one == two
    readers: dict[str, Callable[[bytes], Any]] = {
        "decisions": _decision_batch, "ledger": decode_ledger, "claims": decode_claim, "outbox": decode_payout}
    for name, decode in readers.items():
        assert stored[name], name
        for _key, raw in stored[name]:
            assert encode(decode(raw)) == raw, (name, raw)
    history = [raw for key, raw in stored["points"] if key.startswith(layout.HISTORY_PREFIX)]
    assert history and all(encode(decode_points_entry(raw)) == raw for raw in history)


# ------------------------------------------------------------------ the draw and the compiled campaign
def test_draw_hmac_matches_the_standard_library() -> None:
    message = "campaign|123456789|用户|1780000000000".encode()
    for size in (0, 1, 32, 63, 64, 65, 200):
        key = bytes(range(size % 256)) * (size // 256 + 1)
        key = key[:size]
        assert Hmac(key).digest(message) == hmac.new(key, message, hashlib.sha256).digest()


def _live(text: str) -> Any:
    campaign = load_campaign(text, "x.toml")
    return Compiled(campaign, b"k" * 32)


@pytest.mark.parametrize("zone", ["Asia/Shanghai", "America/New_York", "Australia/Lord_Howe", "Europe/London"])
def test_compiled_campaign_agrees_with_the_campaign(zone: str) -> None:
    text = (f'id = "z"\nname = "z"\ntimezone = "{zone}"\nstart = 2026-03-01T07:30:00\nend = 2026-11-02\n'
            f'actor = "consumer"\nodds = "10%"\n'
            '[[slots]]\nstart = "23:30"\nend = "01:15"\nodds = "70%"\n'
            '[[slots]]\nstart = "01:30"\nend = "02:30"\nodds = "40%"\n'
            '[[prizes]]\nid = "p"\nkind = "points"\npoints = 1\n')
    live = _live(text)
    campaign = live.campaign
    tz = ZoneInfo(zone)
    start = int(datetime(2026, 2, 27, tzinfo=tz).timestamp() * 1000)
    end = int(datetime(2026, 11, 5, tzinfo=tz).timestamp() * 1000)
    step = 7 * 60_000 + 13_001          # crosses every minute boundary and DST change over the range
    for t in range(start, end, step):
        when = datetime.fromtimestamp(t / 1000, ZoneInfo("UTC"))
        assert live.odds_at(t) == campaign.odds_at(when), when
        assert live.clock.day(t) == campaign.local_day(when), when
        assert (live.start_us <= t * 1000 < live.end_us) == campaign.window_contains(when), when
        assert points.period(t) == points.period_of(t)
