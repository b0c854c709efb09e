"""Rewards decision engine (scangate.rewards): the issue's seed scenarios.

Regions, windows, daily caps, Nth-scan and first-scan wins, time-slot odds,
store tiers, exactly-once retries and budgets, blacklist precedence, verdict
policy, pause, payout rows, the auditable draw and bilingual messages.
"""
from __future__ import annotations

import json
import math
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest

import scangate
from scangate import ingest, rewards
from scangate import points as points_mod
from scangate.rewards import Decision, NoReward, ScanRequest
from scangate.state import layout, reads, records
from scangate.state import raw as state_raw

from fixtures_campaigns import ALPHABET, CASH_1, campaign

TZ = ZoneInfo("Asia/Shanghai")
CHENGDU, BEIJING, SHANGHAI, GUANGZHOU = 510104, 110101, 310101, 440106
REWARD_DBS = ("budgets", "counters", "claims", "ledger", "outbox", "points", "requests", "decisions")


@pytest.fixture
def dd(on_both_stores: scangate.DataDir) -> scangate.DataDir:
    """Every scenario here on both stores: the data directory's LMDB, PostgreSQL."""
    return on_both_stores


# ------------------------------------------------------------------ helpers
def ms(y: int, mo: int, d: int, h: int = 12, mi: int = 0) -> int:
    """Epoch ms of a local (Asia/Shanghai) wall-clock time."""
    return int(datetime(y, mo, d, h, mi, tzinfo=TZ).timestamp() * 1000)


NOON = ms(2026, 3, 10, 12)


def codes(dd: scangate.DataDir, n: int, sku: str = "BEER-500", level: str = "item") -> list[str]:
    return dd.issue_codes(sku, level, n).as_strings()


_rid = iter(range(10**9))


def req(code: str, actor: str = "u1", *, t: int = NOON, region: int | None = CHENGDU,
        rid: str | None = None, actor_type: str = "consumer") -> ScanRequest:
    return ScanRequest(rid or f"r{next(_rid)}", code, actor, actor_type=actor_type, region=region, time_ms=t)


def scan1(dd: scangate.DataDir, *a: Any, **k: Any) -> Decision:
    out = rewards.decide_scans(dd, [req(*a, **k)])
    assert len(out) == 1
    check_message(out[0])
    return out[0]


def check_message(d: Decision) -> None:
    msg = d.message
    assert set(msg) >= {"zh-CN", "en"}, msg
    assert msg["zh-CN"].strip() and msg["en"].strip()
    assert any("\u4e00" <= ch <= "\u9fff" for ch in msg["zh-CN"]), msg    # Chinese text
    assert msg["en"].isascii()
    assert d.to_json()["message"] == msg


def budgets(dd: scangate.DataDir) -> dict[str, tuple[int, int]]:
    return reads.budgets(dd)


def ledger(dd: scangate.DataDir) -> list[dict[str, Any]]:
    return list(reads.ledger(dd))


def outbox(dd: scangate.DataDir) -> dict[str, dict[str, Any]]:
    return reads.outbox(dd)


def points(dd: scangate.DataDir, actor: str) -> int:
    return points_mod.balance(dd, actor)


def snapshot(dd: scangate.DataDir) -> dict[str, list[tuple[bytes, bytes]]]:
    return state_raw.dump(dd, REWARD_DBS)


def won(d: Decision) -> bool:
    return d.award is not None and d.no_reward is None


def typo(code: str, pos: int = 12) -> str:
    return code[:pos] + ALPHABET[(ALPHABET.index(code[pos]) + 1) % 32] + code[pos + 1:]


# ------------------------------------------------------------------ regions
def test_regions_excluded(dd: scangate.DataDir) -> None:
    rewards.put_campaign(dd, campaign(extra='regions_exclude = ["11", "31", "4401"]'), "x.toml")
    cs = codes(dd, 4)
    for code, region in zip(cs, (BEIJING, SHANGHAI, GUANGZHOU)):
        d = scan1(dd, code, f"a{region}", region=region)
        assert d.no_reward is NoReward.REGION_EXCLUDED and d.award is None, d
        assert d.campaign_id == "c1"
        assert d.to_json()["no_reward"] == "RW-N4"
    d = scan1(dd, cs[3], "chengdu", region=CHENGDU)
    assert won(d) and d.award.prize_id == "p10" and d.award.how == "draw"
    assert len(ledger(dd)) == 1            # excluded scans draw nothing


def test_excluded_scan_does_not_consume_the_code(dd: scangate.DataDir) -> None:
    rewards.put_campaign(dd, campaign(extra='regions_exclude = ["11"]'), "x.toml")
    [code] = codes(dd, 1)
    assert scan1(dd, code, "u1", region=BEIJING).no_reward is NoReward.REGION_EXCLUDED
    assert won(scan1(dd, code, "u1", region=CHENGDU, t=NOON + 60_000))


# ------------------------------------------------------------------ window
def test_march_to_june_window(dd: scangate.DataDir) -> None:
    rewards.put_campaign(dd, campaign(), "x.toml")
    cs = codes(dd, 4)
    outside = [ms(2026, 2, 28, 23, 59), ms(2026, 7, 1, 0, 0)]
    inside = [ms(2026, 3, 1, 0, 0), ms(2026, 6, 30, 23, 59)]
    for code, t in zip(cs, outside):
        d = scan1(dd, code, f"u{t}", t=t)
        assert d.no_reward is NoReward.OUTSIDE_WINDOW, (t, d)
    for code, t in zip(cs[2:], inside):
        d = scan1(dd, code, f"u{t}", t=t)
        assert won(d), (t, d)
    assert len(ledger(dd)) == 2


# ------------------------------------------------------------------ daily cap
def test_ten_per_day_then_scan_limit_reached(dd: scangate.DataDir) -> None:
    rewards.put_campaign(dd, campaign(prizes=CASH_1, tail="[caps]\nper_user_daily_count = 10\n"), "x.toml")
    cs = codes(dd, 13)
    day1 = [scan1(dd, cs[i], "u1", t=ms(2026, 3, 10, 9, i)) for i in range(10)]
    assert all(won(d) and d.award.kind == "cash" and d.award.amount_fen == 100 for d in day1)
    eleventh = scan1(dd, cs[10], "u1", t=ms(2026, 3, 10, 23, 59))
    assert eleventh.no_reward is NoReward.DAILY_CAP_REACHED and eleventh.award is None
    assert eleventh.message["en"] == "Scan limit reached for today."
    assert scan1(dd, cs[11], "u1", t=ms(2026, 3, 10, 23, 59)).no_reward is NoReward.DAILY_CAP_REACHED
    assert len(ledger(dd)) == 10
    # another user is not affected
    assert won(scan1(dd, cs[12], "u2", t=ms(2026, 3, 10, 23, 59)))
    # the next local day (midnight Beijing time, 16:00 UTC) wins again, with the very code refused yesterday
    d = scan1(dd, cs[10], "u1", t=ms(2026, 3, 11, 0, 0))
    assert won(d), d
    assert budgets(dd)["c1/cny-1"] == (12, 1200)


def test_daily_caps_hold_for_scans_of_any_day_in_any_order(dd: scangate.DataDir) -> None:
    """A scan's time is the client's: a late upload can be dated before scans already
    decided. Each local day keeps its own count and amount (the t/ record holds one
    day, a d/ record any other), whichever order its scans arrive in."""
    tail = "[caps]\nper_user_daily_count = 2\nper_user_daily_amount_fen = 250\n"
    rewards.put_campaign(dd, campaign(prizes=CASH_1, tail=tail), "x.toml")
    cs = iter(codes(dd, 12))
    day = {d: ms(2026, 3, d, 10) for d in (10, 11, 12)}
    assert won(scan1(dd, next(cs), "u1", t=day[11]))            # 11th: 1
    assert won(scan1(dd, next(cs), "u1", t=day[10]))            # 10th: 1 (uploaded late)
    assert won(scan1(dd, next(cs), "u1", t=day[10] + 1))        # 10th: 2
    assert scan1(dd, next(cs), "u1", t=day[10] + 2).no_reward is NoReward.DAILY_CAP_REACHED
    assert won(scan1(dd, next(cs), "u1", t=day[11] + 1))        # 11th: 2, its first still counted
    assert scan1(dd, next(cs), "u1", t=day[11] + 2).no_reward is NoReward.DAILY_CAP_REACHED
    assert scan1(dd, next(cs), "u1", t=day[10] + 3).no_reward is NoReward.DAILY_CAP_REACHED
    # within one batch, days interleaved: the 12th has room for two, the others none
    batch = [req(next(cs), "u1", t=t) for t in (day[12], day[10] + 4, day[12] + 1, day[11] + 3, day[12] + 2)]
    assert [d.no_reward for d in rewards.decide_scans(dd, batch)] == [
        None, NoReward.DAILY_CAP_REACHED, None, NoReward.DAILY_CAP_REACHED, NoReward.DAILY_CAP_REACHED]
    assert budgets(dd)["c1/cny-1"] == (6, 600)


def test_daily_counters_written_before_the_day_moved_into_the_total(dd: scangate.DataDir) -> None:
    """Older data: t/ holds awards, fen and scans only (3 x u64), every day its own d/
    record. Those are still what the caps read."""
    rewards.put_campaign(dd, campaign(prizes=CASH_1, tail="[caps]\nper_user_daily_count = 2\n"), "x.toml")
    cs = codes(dd, 3)
    total = layout.total_key("c1", "u1")
    state_raw.put(dd, "counters", total, records.pack_counts((5, 500, 7)))
    state_raw.put(dd, "counters", layout.day_key(total, "2026-03-10"), records.pack_counts((2, 200)))
    assert scan1(dd, cs[0], "u1", t=ms(2026, 3, 10, 18)).no_reward is NoReward.DAILY_CAP_REACHED
    d = scan1(dd, cs[1], "u1", t=ms(2026, 3, 11, 9))
    assert won(d) and d.award.amount_fen == 100      # type: ignore[union-attr]
    # awards, fen, eligible scans (the refused one is not counted), then the day held:
    # the 11th (20523 days after 1970-01-01) with 1 award of 100 fen
    assert reads.counters(dd, "c1", "u1") == (6, 600, 8, 20523, 1, 100)
    assert scan1(dd, cs[2], "u1", t=ms(2026, 3, 10, 19)).no_reward is NoReward.DAILY_CAP_REACHED


# ------------------------------------------------------------------ guaranteed wins
def test_third_purchase_wins(dd: scangate.DataDir) -> None:
    rewards.put_campaign(dd, campaign(odds="0%", extra="win_on_nth_scan = [3]"), "x.toml")
    cs = codes(dd, 5)
    ds = [scan1(dd, cs[i], "u1", t=NOON + i * 60_000) for i in range(4)]
    assert [d.no_reward for d in ds] == [NoReward.LOST_DRAW, NoReward.LOST_DRAW, None, NoReward.LOST_DRAW]
    assert ds[2].award is not None and ds[2].award.how == "nth_scan"
    assert [e["scan_number"] for e in ledger(dd)] == [1, 2, 3, 4]
    # counted per user: another user's 1st scan loses
    assert scan1(dd, cs[4], "u2").no_reward is NoReward.LOST_DRAW


def test_first_scan_always_wins_with_zero_odds(dd: scangate.DataDir) -> None:
    rewards.put_campaign(dd, campaign(odds="0%", extra="first_scan_always_wins = true"), "x.toml")
    cs = codes(dd, 4)
    first = scan1(dd, cs[0], "u1")
    assert won(first) and first.award.how == "first_scan"
    assert scan1(dd, cs[1], "u1", t=NOON + 1).no_reward is NoReward.LOST_DRAW
    other = scan1(dd, cs[2], "u2")
    assert won(other) and other.award.how == "first_scan"
    for e in ledger(dd):
        assert rewards.audit_entry(dd, e["seq"])["verified"] is True


def test_guaranteed_win_with_spent_budget_is_a_loss(dd: scangate.DataDir) -> None:
    prizes = '[[prizes]]\nid = "one"\nkind = "points"\npoints = 5\nbudget_count = 1\n'
    rewards.put_campaign(dd, campaign(odds="0%", prizes=prizes, extra="first_scan_always_wins = true"), "x.toml")
    cs = codes(dd, 2)
    assert won(scan1(dd, cs[0], "u1"))
    d = scan1(dd, cs[1], "u2")
    assert d.no_reward is NoReward.BUDGET_EXHAUSTED and d.award is None


# ------------------------------------------------------------------ time-slot odds
def test_time_slot_odds_within_statistical_bounds(dd: scangate.DataDir) -> None:
    slot = '[[slots]]\nstart = "08:00"\nend = "22:00"\nodds = "30%"\n'
    rewards.put_campaign(dd, campaign(odds="5%", extra=slot), "x.toml")
    n = 4000
    cs = codes(dd, 2 * n)
    day = [req(cs[i], f"d{i}", t=ms(2026, 4, 1 + i % 28, 8 + i % 14, i % 60)) for i in range(n)]
    night = [req(cs[n + i], f"n{i}", t=ms(2026, 4, 1 + i % 28, (22 + i % 10) % 24, i % 60)) for i in range(n)]
    for batch, p in ((day, 0.30), (night, 0.05)):
        ds = rewards.decide_scans(dd, batch)
        assert all(d.no_reward in (None, NoReward.LOST_DRAW) for d in ds)
        wins = sum(won(d) for d in ds)
        sd = math.sqrt(n * p * (1 - p))
        assert abs(wins - n * p) <= 4 * sd, (p, wins)
    entries = ledger(dd)
    assert len(entries) == 2 * n
    assert {e["odds_ppm"] for e in entries[:n]} == {300_000}
    assert {e["odds_ppm"] for e in entries[n:]} == {50_000}
    # the recorded outcome follows the recorded roll
    for e in entries:
        assert (e["how"] == "draw") == (e["roll"] < e["odds_ppm"]), e


# ------------------------------------------------------------------ store tiers
def test_store_tier_multipliers(dd: scangate.DataDir) -> None:
    prizes = '[[prizes]]\nid = "pts"\nkind = "points"\npoints = 100\n'
    tiers = ('[[store_tiers]]\nname = "bronze"\nmin_points = 0\nmultiplier_pct = 100\n'
             '[[store_tiers]]\nname = "silver"\nmin_points = 300\nmultiplier_pct = 150\n')
    rewards.put_campaign(dd, campaign(actor="store", prizes=prizes, extra="",
                                      tail='[products]\nlevels = ["case"]\n' + tiers), "s.toml")
    cases = codes(dd, 5, level="case")
    got = []
    for i, c in enumerate(cases):
        d = scan1(dd, c, "store-1", actor_type="store", t=NOON + i * 60_000)
        assert won(d)
        got.append(d.award.points)
    assert got == [100, 100, 100, 150, 150]
    assert points(dd, "store-1") == 600
    # an item code is not a case: no campaign; a consumer scanning a case: no campaign either
    [item] = codes(dd, 1)
    assert scan1(dd, item, "store-1", actor_type="store").no_reward is NoReward.NO_CAMPAIGN
    [case] = codes(dd, 1, level="case")
    assert scan1(dd, case, "u1", actor_type="consumer").no_reward is NoReward.NO_CAMPAIGN


# ------------------------------------------------------------------ exactly once
def test_retry_returns_identical_decision_and_changes_nothing(dd: scangate.DataDir) -> None:
    rewards.put_campaign(dd, campaign(prizes=CASH_1), "x.toml")
    cs = codes(dd, 2)
    first = scan1(dd, cs[0], "u1", rid="req-1")
    assert won(first)
    before = snapshot(dd)
    # the same request again, even with a different time: the stored answer
    for t in (NOON, NOON + 3_600_000):
        again = rewards.decide_scans(dd, [req(cs[0], "u1", rid="req-1", t=t)])[0]
        assert again.to_json() == first.to_json()
        assert json.dumps(again.to_json(), sort_keys=True) == json.dumps(first.to_json(), sort_keys=True)
    # twice in one batch, and next to a fresh request
    batch = rewards.decide_scans(dd, [req(cs[0], "u1", rid="req-1"), req(cs[0], "u1", rid="req-1")])
    assert [d.to_json() for d in batch] == [first.to_json()] * 2
    assert snapshot(dd) == before
    # the same code, another actor: already claimed
    other = scan1(dd, cs[0], "u2", rid="req-2", t=NOON + 60_000)
    assert other.no_reward is NoReward.ALREADY_CLAIMED and other.award is None
    assert len(ledger(dd)) == 1 and len(outbox(dd)) == 1
    # the same code by the winner again, new request id: claimed too
    assert scan1(dd, cs[0], "u1", t=NOON + 120_000).no_reward is NoReward.ALREADY_CLAIMED


def test_fresh_request_twice_in_one_batch_decides_once(dd: scangate.DataDir) -> None:
    rewards.put_campaign(dd, campaign(prizes=CASH_1), "x.toml")
    [code] = codes(dd, 1)
    a, b = rewards.decide_scans(dd, [req(code, "u1", rid="dup"), req(code, "u1", rid="dup")])
    assert won(a) and a.to_json() == b.to_json()
    assert len(ledger(dd)) == 1
    assert budgets(dd) == {"c1/cny-1": (1, 100)}


def test_budget_count_never_overspent(dd: scangate.DataDir) -> None:
    prizes = '[[prizes]]\nid = "p"\nkind = "points"\npoints = 7\nbudget_count = 3\n'
    rewards.put_campaign(dd, campaign(prizes=prizes), "x.toml")
    cs = codes(dd, 6)
    ds = rewards.decide_scans(dd, [req(c, f"u{i}") for i, c in enumerate(cs)])
    assert [won(d) for d in ds] == [True] * 3 + [False] * 3
    assert all(d.no_reward is NoReward.BUDGET_EXHAUSTED for d in ds[3:])
    assert budgets(dd) == {"c1/p": (3, 0)}
    for d in ds:
        check_message(d)


def test_budget_count_then_consolation(dd: scangate.DataDir) -> None:
    prizes = ('[[prizes]]\nid = "p"\nkind = "cash"\namount_fen = 100\nbudget_count = 3\n'
              '[[prizes]]\nid = "pts"\nkind = "points"\npoints = 1\n')
    rewards.put_campaign(dd, campaign(prizes=prizes, extra='consolation = "pts"'), "x.toml")
    cs = codes(dd, 6)
    ds = rewards.decide_scans(dd, [req(c, f"u{i}") for i, c in enumerate(cs)])
    assert [d.award.prize_id for d in ds] == ["p"] * 3 + ["pts"] * 3
    assert [d.award.how for d in ds[3:]] == ["consolation"] * 3
    assert budgets(dd)["c1/p"] == (3, 300)


def test_budget_amount_fen_respected_exactly(dd: scangate.DataDir) -> None:
    prizes = ('[[prizes]]\nid = "big"\nkind = "cash"\namount_fen = 300\nbudget_amount_fen = 1000\n')
    rewards.put_campaign(dd, campaign(prizes=prizes, extra='[products]\nskus = ["BEER-500"]'), "x.toml")
    cs = codes(dd, 5)
    ds = rewards.decide_scans(dd, [req(c, f"u{i}") for i, c in enumerate(cs)])
    assert sum(won(d) for d in ds) == 3
    assert all(d.no_reward is NoReward.BUDGET_EXHAUSTED for d in ds[3:])
    assert budgets(dd) == {"c1/big": (3, 900)}
    # exactly at the limit: 2 x 500 = 1000 pays both
    prizes2 = '[[prizes]]\nid = "half"\nkind = "cash"\namount_fen = 500\nbudget_amount_fen = 1000\n'
    rewards.put_campaign(dd, campaign(cid="c2", prizes=prizes2, extra='[products]\nskus = ["W"]'), "y.toml")
    ws = codes(dd, 3, sku="W")
    ds = rewards.decide_scans(dd, [req(c, f"w{i}") for i, c in enumerate(ws)])
    assert [won(d) for d in ds] == [True, True, False]
    assert budgets(dd)["c2/half"] == (2, 1000)
    assert sum(e["amount_fen"] for e in ledger(dd)) == 1900


# ------------------------------------------------------------------ blacklist
def test_blacklist_beats_must_win(dd: scangate.DataDir) -> None:
    rewards.put_campaign(dd, campaign(odds="0%", extra='first_scan_always_wins = true\nblacklist = ["farm-1"]'),
                         "x.toml")
    cs = codes(dd, 2)
    d = scan1(dd, cs[0], "farm-1")
    assert d.no_reward is NoReward.BLACKLISTED and d.award is None
    assert ledger(dd) == []
    ok = scan1(dd, cs[1], "honest")
    assert won(ok) and ok.award.how == "first_scan"


# ------------------------------------------------------------------ verdict policy
def _diverted_world(dd: scangate.DataDir) -> list[str]:
    """Ten items in one case on one pallet, shipped to dealer GD (territory 44)."""
    items = codes(dd, 10)
    [case] = codes(dd, 1, level="case")
    [pallet] = codes(dd, 1, level="pallet")
    rows = [f"{case},{i}" for i in items] + [f"{pallet},{case}"]
    ingest.link_csv(dd, ("parent,child\n" + "\n".join(rows) + "\n").encode(), "pack.csv")
    ingest.load_dealers_csv(dd, b"dealer_id,name,territory\nGD,Guangdong,44\n")
    ingest.ship_csv(dd, f"unit,dealer_id,shipped_at,shipment_id\n{pallet},GD,2026-02-01T00:00:00Z,SH1\n".encode())
    return items


@pytest.mark.parametrize("can_win", [False, True])
def test_diverted_scan_policy(dd: scangate.DataDir, can_win: bool) -> None:
    items = _diverted_world(dd)
    policy = f"[verdict_policy]\ndiverted_can_win = {str(can_win).lower()}\n"
    rewards.put_campaign(dd, campaign(tail=policy), "x.toml")
    d = scan1(dd, items[0], "u1", region=CHENGDU)
    assert d.verdict.label == "diverted"
    if can_win:
        assert won(d)
    else:
        assert d.no_reward is NoReward.VERDICT_NOT_ELIGIBLE and d.award is None
        assert ledger(dd) == []
    # in the dealer's territory the same kind of item is genuine and wins
    g = scan1(dd, items[1], "u2", region=GUANGZHOU)
    assert g.verdict.label == "genuine" and won(g)


def test_counterfeit_code_not_eligible(dd: scangate.DataDir) -> None:
    rewards.put_campaign(dd, campaign(odds="0%", extra="first_scan_always_wins = true"), "x.toml")
    [code] = codes(dd, 1)
    for fake in (typo(code), "NOT-A-CODE"):
        d = scan1(dd, fake, "u1")
        assert d.verdict.label == "counterfeit"
        assert d.no_reward is NoReward.VERDICT_NOT_ELIGIBLE and d.award is None
    assert ledger(dd) == [] and budgets(dd) == {} and outbox(dd) == {}
    # the user's first genuine scan is still their first
    d = scan1(dd, code, "u1")
    assert won(d) and d.award.how == "first_scan"


# ------------------------------------------------------------------ pause, payouts, points
def test_paused_campaign(dd: scangate.DataDir) -> None:
    rewards.put_campaign(dd, campaign(), "x.toml")
    cs = codes(dd, 2)
    rewards.set_campaign_status(dd, "c1", "paused")
    d = scan1(dd, cs[0], "u1")
    assert d.no_reward is NoReward.CAMPAIGN_PAUSED and d.campaign_id == "c1"
    assert ledger(dd) == []
    rewards.set_campaign_status(dd, "c1", "active")
    assert won(scan1(dd, cs[0], "u1", t=NOON + 1))
    # a paused campaign in the file itself
    rewards.put_campaign(dd, campaign(extra='status = "paused"'), "x.toml")
    assert scan1(dd, cs[1], "u2").no_reward is NoReward.CAMPAIGN_PAUSED


def test_payout_rows_and_points(dd: scangate.DataDir) -> None:
    prizes = ('[[prizes]]\nid = "cash"\nkind = "cash"\namount_fen = 200\nweight = 2\n'
              '[[prizes]]\nid = "pts"\nkind = "points"\npoints = 30\nweight = 2\n'
              '[[prizes]]\nid = "cpn"\nkind = "coupon"\nweight = 1\n'
              '[prizes.coupon]\ntype = "discount"\npercent_off = 10\nvalid_days = 30\n')
    rewards.put_campaign(dd, campaign(prizes=prizes), "x.toml")
    cs = codes(dd, 60)
    actors = [f"u{i % 7}" for i in range(60)]
    ds = rewards.decide_scans(dd, [req(c, a, t=NOON + i) for i, (c, a) in enumerate(zip(cs, actors))])
    awards = [d.award for d in ds if d.award is not None]
    assert len(awards) == 60
    assert {a.kind for a in awards} == {"cash", "points", "coupon"}
    rows = outbox(dd)
    paid = [a for a in awards if a.kind in ("cash", "coupon")]
    assert len(rows) == len(paid) == len({a.payout_key for a in paid})
    for a in paid:
        row = rows[a.payout_key]
        assert row["state"] == "pending" and row["prize_id"] == a.prize_id and row["ledger_seq"] == a.ledger_seq
        assert row["amount_fen"] == a.amount_fen
    for a in awards:
        if a.kind == "points":
            assert a.payout_key is None and a.points == 30
    for actor in set(actors):
        expect = sum(d.award.points for d, a in zip(ds, actors) if a == actor and d.award.kind == "points")
        assert points(dd, actor) == expect
    cash_total = sum(a.amount_fen for a in awards if a.kind == "cash")
    assert sum(e["amount_fen"] for e in ledger(dd)) == cash_total
    assert sum(v[1] for v in budgets(dd).values()) == cash_total


# ------------------------------------------------------------------ audit
@pytest.mark.parametrize("field", ["roll", "hmac", "draw_input", "odds_ppm"])
def test_audit_verifies_and_detects_tampering(dd: scangate.DataDir, field: str) -> None:
    rewards.put_campaign(dd, campaign(odds="40%"), "x.toml")
    cs = codes(dd, 30)
    rewards.decide_scans(dd, [req(c, f"u{i}", t=NOON + i) for i, c in enumerate(cs)])
    entries = ledger(dd)
    assert len(entries) == 30
    for e in entries:
        a = rewards.audit_entry(dd, e["seq"])
        assert a["verified"] is True and all(a["checks"].values()), a
    # tamper one entry whose outcome was a draw win (so odds matter), in a raw LMDB transaction
    target = next(e for e in entries if e["how"] == "draw")
    bad = dict(target)
    if field == "roll":
        bad["roll"] = (target["roll"] + 1) % 1_000_000
    elif field == "hmac":
        bad["hmac"] = ("0" if target["hmac"][0] != "0" else "1") + target["hmac"][1:]
    elif field == "draw_input":
        bad["draw_input"] = target["draw_input"] + "x"
    else:
        bad["odds_ppm"] = target["roll"]           # a win that the odds would not allow
    state_raw.put(dd, "ledger", layout.seq_key(target["seq"]), records.encode(records.LedgerEntry(**bad)))
    assert next(reads.ledger(dd, target["seq"])) == bad         # a well-formed entry, one field changed
    assert rewards.audit_entry(dd, target["seq"])["verified"] is False
    others = [e for e in entries if e["seq"] != target["seq"]]
    assert all(rewards.audit_entry(dd, e["seq"])["verified"] for e in others)


def test_audit_survives_campaign_reload_and_commitment_is_stable(dd: scangate.DataDir) -> None:
    rec1 = rewards.put_campaign(dd, campaign(odds="50%"), "x.toml")
    cs = codes(dd, 10)
    rewards.decide_scans(dd, [req(c, f"u{i}") for i, c in enumerate(cs[:5])])
    rec2 = rewards.put_campaign(dd, campaign(odds="10%"), "x.toml")
    assert rec2["commitment"] == rec1["commitment"] and rec2["revision"] == rec1["revision"] + 1
    rewards.decide_scans(dd, [req(c, f"v{i}") for i, c in enumerate(cs[5:])])
    entries = ledger(dd)
    assert [e["odds_ppm"] for e in entries] == [500_000] * 5 + [100_000] * 5
    assert all(rewards.audit_entry(dd, e["seq"])["verified"] for e in entries)


# ------------------------------------------------------------------ messages
def test_messages_for_every_outcome(dd: scangate.DataDir) -> None:
    prizes = ('[[prizes]]\nid = "cash"\nkind = "cash"\namount_fen = 150\nbudget_count = 1\n'
              '[[prizes]]\nid = "cpn"\nkind = "coupon"\nweight = 1\nbudget_count = 1\n'
              '[prizes.coupon]\ntype = "gift"\ngift_sku = "BEER-330"\nvalid_days = 7\n')
    rewards.put_campaign(dd, campaign(prizes=prizes, extra='regions_exclude = ["11"]\nblacklist = ["bad"]',
                                      tail="[caps]\nper_user_daily_count = 1\nper_user_total_count = 2\n"),
                         "x.toml")
    cs = codes(dd, 12)
    seen: dict[Any, Decision] = {}
    for d in (scan1(dd, cs[0], "a"), scan1(dd, cs[1], "b"),                     # cash and coupon, some order
              scan1(dd, cs[2], "c"),                                            # budget exhausted
              scan1(dd, cs[0], "d"),                                            # already claimed
              scan1(dd, cs[3], "a", t=NOON + 1),                                # daily cap
              scan1(dd, cs[4], "e", region=BEIJING),                            # region
              scan1(dd, cs[5], "bad"),                                          # blacklisted
              scan1(dd, typo(cs[6]), "f"),                                      # counterfeit
              scan1(dd, cs[7], "g", t=ms(2027, 1, 1)),                          # outside window
              scan1(dd, codes(dd, 1, sku="OTHER", level="case")[0], "h")):      # no campaign
        seen[d.award.kind if d.award else d.no_reward] = d
    assert set(seen) == {"cash", "coupon", NoReward.BUDGET_EXHAUSTED, NoReward.ALREADY_CLAIMED,
                         NoReward.DAILY_CAP_REACHED, NoReward.REGION_EXCLUDED, NoReward.BLACKLISTED,
                         NoReward.VERDICT_NOT_ELIGIBLE, NoReward.OUTSIDE_WINDOW, NoReward.NO_CAMPAIGN}
    assert "1.50" in seen["cash"].message["zh-CN"] and "1.50" in seen["cash"].message["en"]
    # total cap: "a" won on day 1; a day-2 scan with budgets spent exhausts; make a points campaign for caps
    rewards.set_campaign_status(dd, "c1", "paused")
    d = scan1(dd, cs[8], "z")
    assert d.no_reward is NoReward.CAMPAIGN_PAUSED
    # LOST_DRAW and TOTAL_CAP_REACHED on a second campaign
    rewards.put_campaign(dd, campaign(cid="c2", odds="0%", extra='win_on_nth_scan = [1, 2, 3]\n[products]\n'
                                      'skus = ["T"]', tail="[caps]\nper_user_total_count = 2\n"), "y.toml")
    ts = codes(dd, 4, sku="T")
    got = [scan1(dd, ts[i], "t", t=ms(2026, 3, 10 + i)) for i in range(4)]
    assert [g.no_reward for g in got] == [None, None, NoReward.TOTAL_CAP_REACHED, NoReward.TOTAL_CAP_REACHED]
    assert "10" in got[0].message["zh-CN"] and "10" in got[0].message["en"]
    # the 3rd code was refused by the cap and never drawn: still free for someone else (their 1st scan wins)
    assert won(scan1(dd, ts[2], "t2", t=ms(2026, 3, 20)))
    rewards.put_campaign(dd, campaign(cid="c3", odds="0%", extra='[products]\nskus = ["L"]'), "z.toml")
    lost = scan1(dd, codes(dd, 1, sku="L")[0], "l")
    assert lost.no_reward is NoReward.LOST_DRAW
    assert len({json.dumps(d.message) for d in seen.values()}) == len(seen)   # each outcome its own text


# ------------------------------------------------------------------ amount caps, included regions
def test_daily_amount_cap_refuses_without_consuming_the_code(dd: scangate.DataDir) -> None:
    prizes = '[[prizes]]\nid = "c3"\nkind = "cash"\namount_fen = 300\n'
    rewards.put_campaign(dd, campaign(prizes=prizes, tail="[caps]\nper_user_daily_amount_fen = 700\n"), "x.toml")
    cs = codes(dd, 3)
    ds = [scan1(dd, c, "u1", t=NOON + i * 60_000) for i, c in enumerate(cs)]
    assert [won(d) for d in ds] == [True, True, False]
    assert ds[2].no_reward is NoReward.DAILY_CAP_REACHED
    assert sum(e["amount_fen"] for e in ledger(dd)) == 600
    assert won(scan1(dd, cs[2], "u1", t=ms(2026, 3, 11, 9)))


def test_regions_include_needs_a_known_region(dd: scangate.DataDir) -> None:
    rewards.put_campaign(dd, campaign(extra='regions_include = ["51"]'), "x.toml")
    cs = codes(dd, 3)
    assert scan1(dd, cs[0], "u1", region=None).no_reward is NoReward.REGION_EXCLUDED
    assert scan1(dd, cs[1], "u2", region=GUANGZHOU).no_reward is NoReward.REGION_EXCLUDED
    assert won(scan1(dd, cs[2], "u3", region=CHENGDU))


def test_an_unknown_region_cannot_dodge_an_excluded_region(dd: scangate.DataDir) -> None:
    # issue 12: a user who denies location must not win where the campaign excludes regions
    rewards.put_campaign(dd, campaign(extra='regions_exclude = ["11", "31", "4401"]'), "x.toml")
    cs = codes(dd, 3)
    assert scan1(dd, cs[0], "u1", region=None).no_reward is NoReward.REGION_EXCLUDED
    assert won(scan1(dd, cs[1], "u2", region=CHENGDU))
    rewards.put_campaign(dd, campaign(extra='regions_exclude = ["11", "31", "4401"]\n'
                                            'unknown_region_can_win = true'), "x.toml")
    assert won(scan1(dd, cs[2], "u3", region=None))
