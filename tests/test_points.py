"""Points: balances from awards, store tiers from cumulative points, the monthly
leaderboard, and redemption that is idempotent and cannot overdraw."""

from __future__ import annotations

import datetime as dt
import os
import struct
import subprocess
import sys
from pathlib import Path

import pytest

import scangate
from scangate import clock, points, rewards
from scangate.errors import CorruptionError, InvalidArgument
from scangate.rewards import ScanRequest
from scangate.state import layout, reads, records
from scangate.state import points as state_points
from scangate.state import raw as state_raw

from fixtures_campaigns import CASES_ONLY, campaign, points_prize

SHANGHAI = dt.timezone(dt.timedelta(hours=8))
APRIL = int(dt.datetime(2026, 4, 10, 12, 0, tzinfo=SHANGHAI).timestamp() * 1000)
MAY = int(dt.datetime(2026, 5, 10, 12, 0, tzinfo=SHANGHAI).timestamp() * 1000)
SCANGATE = str(Path(sys.executable).with_name("scangate"))

STORE_CAMPAIGN = campaign(cid="stores", name="Store case points", actor="store",
                          prizes=points_prize("points-100", 100), tail=CASES_ONLY + """
[[store_tiers]]
name = "bronze"
min_points = 0
multiplier_pct = 100

[[store_tiers]]
name = "silver"
min_points = 300
multiplier_pct = 150
""")


def _stores(dd: scangate.DataDir) -> tuple[scangate.DataDir, list[str]]:
    rewards.put_campaign(dd, STORE_CAMPAIGN, "stores.toml")
    cases = dd.issue_codes("BEER", "case", 40).as_strings()
    return dd, cases


@pytest.fixture()
def stores(on_both_stores: scangate.DataDir) -> tuple[scangate.DataDir, list[str]]:
    """The store campaign and 40 cases, on both stores (LMDB, PostgreSQL)."""
    return _stores(on_both_stores)


@pytest.fixture()
def lmdb_stores(dd: scangate.DataDir) -> tuple[scangate.DataDir, list[str]]:
    """The same for the tests of writes inside a caller's LMDB transaction."""
    return _stores(dd)


def scan(dd, code: str, store: str, rid: str, at: int) -> rewards.Decision:  # type: ignore[no-untyped-def]
    return rewards.decide_scans(dd, [ScanRequest(rid, code, store, "store", region=440106, time_ms=at)])[0]


def test_tier_multiplier_follows_cumulative_points(stores) -> None:  # type: ignore[no-untyped-def]
    dd, cases = stores
    got = [scan(dd, cases[i], "store-a", f"a{i}", APRIL + i).award.points for i in range(5)]  # type: ignore[union-attr]
    assert got == [100, 100, 100, 150, 150]       # silver from 300 points on
    assert points.balance(dd, "store-a") == 600
    # redeeming does not demote: tiers read cumulative points
    assert points.redeem(dd, "store-a", 550, "spend-1").ok
    assert (points.balance(dd, "store-a"), points.earned_of(dd, "store-a")) == (50, 600)
    assert scan(dd, cases[5], "store-a", "a5", APRIL + 5).award.points == 150  # type: ignore[union-attr]
    hist = points.history(dd, "store-a")
    assert [h["delta"] for h in hist] == [100, 100, 100, 150, 150, -550, 150]
    assert hist[-1]["balance"] == 200


def test_an_account_left_in_the_schema_1_form_is_corruption(lmdb_stores) -> None:  # type: ignore[no-untyped-def]
    """Schema 1 could hold b/<actor> as the balance alone (8 bytes) and the points
    earned under e/<actor>. The migration to schema 2 rewrites every such b/ to 16
    bytes, so points no longer reads that form: one left over is a CorruptionError
    naming the actor, and a redemption against it changes nothing."""
    dd, _cases = lmdb_stores
    state_raw.put(dd, "points", layout.account_key(b"store-old"), struct.pack(">q", 20))
    state_raw.put(dd, "points", b"e/store-old", struct.pack(">q", 320))    # schema 1's key: no layout builds it
    expected = "points account 'store-old': 8 bytes, not 16"
    with pytest.raises(CorruptionError, match=expected):
        points.balance(dd, "store-old")
    with pytest.raises(CorruptionError, match=expected):
        points.earned_of(dd, "store-old")
    # points.earned reads in the caller's transaction: the API under test takes an LMDB one
    with dd.store.env.begin() as txn, pytest.raises(CorruptionError, match=expected):
        points.earned(txn, dd.store.db("points"), "store-old")
    with pytest.raises(CorruptionError, match=expected):
        points.redeem(dd, "store-old", 10, "old-1")
    assert state_raw.get(dd, "points", layout.account_key(b"store-old")) == struct.pack(">q", 20)
    assert reads.redemption(dd, "old-1") is None
    assert reads.history_number(dd) is None
    assert reads.points_history(dd, "store-old") == []


def test_history_and_redemptions_are_typed_records(stores) -> None:  # type: ignore[no-untyped-def]
    """h/ entries are records.PointsEntry and r/ records.RedemptionRecord (msgpack);
    history() and a retried redeem() give them back as before."""
    dd, cases = stores
    award = scan(dd, cases[0], "store-r", "r0", APRIL).award
    assert award is not None and award.points == 100
    with clock.use(clock.ManualClock(MAY)):
        first = points.redeem(dd, "store-r", 30, "spend-r", note="mug")
    assert first == points.Redemption("spend-r", "store-r", 30, True, 70, None)
    refused = points.redeem(dd, "store-r", 71, "spend-too-much")
    # the stored bytes of the records no read of scangate.state.points gives back
    raw_done = state_raw.get(dd, "points", layout.redemption_key("spend-r"))
    raw_refused = state_raw.get(dd, "points", layout.redemption_key("spend-too-much"))
    assert raw_done is not None and raw_refused is not None
    assert reads.history_number(dd) == 2
    assert state_points.account(dd, "store-r") == (70, 100)
    assert state_points.history(dd, "store-r", 10) == [
        records.PointsEntry(100, 100, "award", f"ledger:{award.ledger_seq}", APRIL),
        records.PointsEntry(-30, 70, "redeem", "mug", MAY)]
    assert records.decode_redemption(raw_done) == records.RedemptionRecord("spend-r", "store-r", 30, True, 70, None)
    assert records.decode_redemption(raw_refused) == records.RedemptionRecord(
        "spend-too-much", "store-r", 71, False, 70, "insufficient_points")
    assert points.history(dd, "store-r") == [
        {"delta": 100, "balance": 100, "reason": "award", "ref": f"ledger:{award.ledger_seq}", "at_ms": APRIL},
        {"delta": -30, "balance": 70, "reason": "redeem", "ref": "mug", "at_ms": MAY}]
    assert points.redeem(dd, "store-r", 30, "spend-r") == first         # read back from the record
    assert points.redeem(dd, "store-r", 71, "spend-too-much") == refused
    assert points.balance(dd, "store-r") == 70


def test_redeem_never_overdraws_and_is_idempotent(stores) -> None:  # type: ignore[no-untyped-def]
    dd, cases = stores
    scan(dd, cases[0], "store-b", "b0", APRIL)
    first = points.redeem(dd, "store-b", 60, "r-1")
    assert first.ok and first.balance == 40
    assert points.redeem(dd, "store-b", 60, "r-1") == first          # a retry spends nothing more
    assert points.balance(dd, "store-b") == 40
    refused = points.redeem(dd, "store-b", 41, "r-2")
    assert not refused.ok and refused.reason == "insufficient_points" and refused.balance == 40
    assert points.balance(dd, "store-b") == 40
    assert points.redeem(dd, "store-b", 40, "r-3").balance == 0
    assert not points.redeem(dd, "nobody", 1, "r-4").ok
    with pytest.raises(InvalidArgument):
        points.redeem(dd, "store-b", 0, "r-5")


def test_leaderboard_by_month_with_own_rank(stores) -> None:  # type: ignore[no-untyped-def]
    dd, cases = stores
    plan = {"store-x": 3, "store-y": 1, "store-z": 2}
    i = 0
    for store, n in plan.items():
        for _ in range(n):
            scan(dd, cases[i], store, f"l{i}", APRIL + i)
            i += 1
    scan(dd, cases[i], "store-y", f"l{i}", MAY)          # May does not count for April
    board = points.leaderboard(dd, "2026-04", top=2, actor="store-y")
    assert [(r["rank"], r["actor"], r["points"]) for r in board["top"]] == [(1, "store-x", 300), (2, "store-z", 200)]
    assert board["actor"] == {"actor": "store-y", "rank": 3, "points": 100, "of": 3}
    may = points.leaderboard(dd, "2026-05", actor="store-x")
    assert may["top"] == [{"rank": 1, "actor": "store-y", "points": 100}]
    assert may["actor"]["rank"] is None
    with pytest.raises(InvalidArgument):
        points.leaderboard(dd, "April")


def test_points_cli(stores, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    dd, cases = stores
    scan(dd, cases[0], "store-c", "c0", APRIL)
    root = str(dd.root)
    # the CLI finds the store through SCANGATE_STORE (none: the data directory's own)
    env = {**os.environ, "SCANGATE_STORE": dd.decisions.url if dd.decisions is not None else ""}
    dd.close()
    show = subprocess.run([SCANGATE, "points", "show", "--data", root, "store-c"], capture_output=True, text=True,
                          env=env)
    assert show.returncode == 0 and "store-c: 100 points" in show.stdout
    ok = subprocess.run([SCANGATE, "points", "redeem", "--data", root, "store-c", "30", "--request-id", "x"],
                        capture_output=True, text=True, env=env)
    assert ok.returncode == 0 and "balance 70" in ok.stdout
    refused = subprocess.run([SCANGATE, "points", "redeem", "--data", root, "store-c", "71", "--request-id", "y"],
                             capture_output=True, text=True, env=env)
    assert refused.returncode == 1 and "insufficient_points" in refused.stdout
    board = subprocess.run([SCANGATE, "points", "leaderboard", "--data", root, "--period", "2026-04",
                            "--actor", "store-c"], capture_output=True, text=True, env=env)
    assert board.returncode == 0 and "1. store-c  100" in board.stdout


def test_add_points_counts_inside_the_callers_transaction(lmdb_stores) -> None:  # type: ignore[no-untyped-def]
    """add_points changes balance, points earned, the month and the history in the
    transaction it is given: an aborted one leaves none of it. Spending counts
    in no month."""
    dd, _cases = lmdb_stores
    # add_points writes in the caller's transaction: the API under test takes an LMDB one
    db = dd.store.db("points")
    with dd.store.env.begin(write=True) as txn:
        assert points.add_points(txn, db, "store-p", 40, "bonus", "b-1", APRIL) == 40
        assert points.add_points(txn, db, "store-p", -15, "fix", "b-2", MAY) == 25
        assert points.earned(txn, db, "store-p") == 40
    with pytest.raises(RuntimeError, match="abort"), dd.store.env.begin(write=True) as txn:
        assert points.add_points(txn, db, "store-p", 500, "lost", "b-3", MAY) == 525
        raise RuntimeError("abort")
    assert (points.balance(dd, "store-p"), points.earned_of(dd, "store-p")) == (25, 40)
    assert points.history(dd, "store-p") == [
        {"delta": 40, "balance": 40, "reason": "bonus", "ref": "b-1", "at_ms": APRIL},
        {"delta": -15, "balance": 25, "reason": "fix", "ref": "b-2", "at_ms": MAY}]
    assert points.leaderboard(dd, "2026-04", actor="store-p")["actor"] == {
        "actor": "store-p", "rank": 1, "points": 40, "of": 1}
    assert points.leaderboard(dd, "2026-05") == {"period": "2026-05", "top": []}


def test_a_writer_counts_earnings_in_the_month_given_or_the_month_of_their_time(  # type: ignore[no-untyped-def]
        lmdb_stores) -> None:
    """scangate.points.PointsWriter counts an earning in period(at_ms) unless told
    the month; the state layer's writer has no calendar and refuses an earning
    without one."""
    dd, _cases = lmdb_stores
    # a PointsWriter writes in the caller's transaction: the API under test takes an LMDB one
    db = dd.store.db("points")
    with dd.store.env.begin(write=True) as txn:
        writer = points.PointsWriter(txn, db)
        assert writer.add("store-w", 10, "bonus", "w-1", APRIL) == 10
        assert writer.add("store-w", 20, "bonus", "w-2", APRIL, "2026-05") == 30
        assert (writer.balance("store-w"), writer.earned("store-w")) == (30, 30)
        with pytest.raises(ValueError, match="month: required"):
            state_points.PointsWriter(txn, db).add("store-w", 5, "bonus", "w-3", APRIL)
        writer.flush()
    assert points.leaderboard(dd, "2026-04")["top"] == [{"rank": 1, "actor": "store-w", "points": 10}]
    assert points.leaderboard(dd, "2026-05")["top"] == [{"rank": 1, "actor": "store-w", "points": 20}]
    assert [h["ref"] for h in points.history(dd, "store-w")] == ["w-1", "w-2"]
    assert (points.balance(dd, "store-w"), points.earned_of(dd, "store-w")) == (30, 30)


def test_a_redemption_that_fails_midway_writes_nothing(stores) -> None:  # type: ignore[no-untyped-def]
    """The state layer's redeem decides and writes in one transaction: an exception
    after points were taken leaves the balance, the history and the request id as
    they were."""
    dd, cases = stores
    scan(dd, cases[0], "store-f", "f0", APRIL)

    def spend(writer: state_points.PointsWriter) -> records.RedemptionRecord:
        writer.add("store-f", -40, "redeem", "f-1", MAY)
        raise RuntimeError("the gift shop is closed")

    with pytest.raises(RuntimeError, match="gift shop"):
        state_points.redeem(dd, "f-1", spend)
    assert points.balance(dd, "store-f") == 100
    assert [h["delta"] for h in points.history(dd, "store-f")] == [100]
    with clock.use(clock.ManualClock(MAY)):
        assert points.redeem(dd, "store-f", 40, "f-1") == points.Redemption("f-1", "store-f", 40, True, 60, None)
    assert points.history(dd, "store-f")[-1] == {"delta": -40, "balance": 60, "reason": "redeem", "ref": "f-1",
                                                  "at_ms": MAY}


def test_the_points_month_is_shanghais_and_the_cap_day_the_campaigns(dd: scangate.DataDir) -> None:
    """A campaign in London: its daily caps count London days, while points months
    are Asia/Shanghai's (scangate.points), whatever the campaign's zone; the
    decision keeps both by the second (decide.campaign.Compiled.days_at), so scans
    one second apart across either midnight land on their own days and months."""
    rewards.put_campaign(dd, f'''id = "ldn"
name = "London points"
timezone = "Europe/London"
start = 2026-05-01
end = 2026-08-01
actor = "consumer"
odds = "100%"
{points_prize("p5", 5)}
[caps]
per_user_daily_count = 1
''', "ldn.toml")
    codes = dd.issue_codes("BEER", "item", 4).as_strings()
    london = dt.timezone(dt.timedelta(hours=1))       # BST in June and July
    # 16:59:59 and 17:00:00 London on 30 June: 23:59:59 and 00:00:00 (1 July) in Shanghai
    before = int(dt.datetime(2026, 6, 30, 16, 59, 59, tzinfo=london).timestamp() * 1000)
    # 23:59:59 London on 30 June, then 00:00:00 on 1 July: a new London day
    late = int(dt.datetime(2026, 6, 30, 23, 59, 59, tzinfo=london).timestamp() * 1000)
    out = rewards.decide_scans(dd, [ScanRequest("a", codes[0], "u1", time_ms=before),
                                    ScanRequest("b", codes[1], "u1", time_ms=before + 1000),
                                    ScanRequest("c", codes[2], "u1", time_ms=late),
                                    ScanRequest("d", codes[3], "u1", time_ms=late + 1000)])
    # one award a London day: the first scan of 30 June, then the first of 1 July
    assert [d.award.points if d.award else d.no_reward for d in out] == [  # type: ignore[union-attr]
        5, rewards.NoReward.DAILY_CAP_REACHED, rewards.NoReward.DAILY_CAP_REACHED, 5]
    # the points' months are Shanghai's: the first award (23:59:59 there on 30 June)
    # is June's, the second (07:00 there on 1 July) July's; "b", at Shanghai's
    # midnight, was still London's 30 June, so capped
    assert reads.month_points(dd, "2026-06") == {"u1": 5}
    assert reads.month_points(dd, "2026-07") == {"u1": 5}


def test_a_statement_is_one_moment_while_redemptions_commit(lmdb_stores) -> None:  # type: ignore[no-untyped-def]
    """points.statement (GetPoints) reads the balance, the points earned and the
    history in one transaction: whatever redemptions commit meanwhile, the balance
    is the one its last history entry leads to."""
    import threading

    dd, _cases = lmdb_stores
    db = dd.store.db("points")
    with dd.store.env.begin(write=True) as txn:
        points.add_points(txn, db, "store-s", 400, "bonus", "s-0", APRIL)
    stop = threading.Event()

    def spend() -> None:
        for i in range(300):
            if stop.is_set():
                return
            points.redeem(dd, "store-s", 1, f"spend-{i}")

    spender = threading.Thread(target=spend)
    spender.start()
    seen = set()
    try:
        while spender.is_alive() or not seen:       # read for as long as it spends
            balance, earned, rows = points.statement(dd, "store-s", 10_000)
            assert earned == 400
            assert rows and rows[-1]["balance"] == balance, (balance, rows[-1])
            assert balance == 400 - (len(rows) - 1)
            seen.add(balance)
    finally:
        stop.set()
        spender.join()
    assert len(seen) > 1        # the reads did overlap the redemptions
