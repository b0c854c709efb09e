"""Points: balances from awards, store tiers from cumulative points, the monthly
leaderboard, and redemption that is idempotent and cannot overdraw."""

from __future__ import annotations

import datetime as dt
import struct
import subprocess
import sys
from pathlib import Path

import pytest

import scangate
from scangate import points, rewards
from scangate.errors import InvalidArgument
from scangate.rewards import ScanRequest

SHANGHAI = dt.timezone(dt.timedelta(hours=8))
APRIL = int(dt.datetime(2026, 4, 10, 12, 0, tzinfo=SHANGHAI).timestamp() * 1000)
MAY = int(dt.datetime(2026, 5, 10, 12, 0, tzinfo=SHANGHAI).timestamp() * 1000)
SCANGATE = str(Path(sys.executable).with_name("scangate"))

STORE_CAMPAIGN = """
id = "stores"
name = "Store case points"
start = 2026-03-01
end = 2026-07-01
actor = "store"
odds = "100%"

[products]
levels = ["case"]

[[prizes]]
id = "points-100"
kind = "points"
points = 100

[[store_tiers]]
name = "bronze"
min_points = 0
multiplier_pct = 100

[[store_tiers]]
name = "silver"
min_points = 300
multiplier_pct = 150
"""


@pytest.fixture()
def stores(tmp_path: Path):  # type: ignore[no-untyped-def]
    dd = scangate.init_data_dir(tmp_path / "d")
    rewards.put_campaign(dd, STORE_CAMPAIGN, "stores.toml")
    cases = dd.issue_codes("BEER", "case", 40).as_strings()
    yield dd, cases
    dd.close()


def scan(dd, code: str, store: str, rid: str, at: int) -> rewards.Decision:  # type: ignore[no-untyped-def]
    return rewards.decide_scans(dd, [ScanRequest(rid, code, store, "store", region=440106, time_ms=at)])[0]


def test_tier_multiplier_follows_cumulative_points(stores) -> None:  # type: ignore[no-untyped-def]
    dd, cases = stores
    got = [scan(dd, cases[i], "store-a", f"a{i}", APRIL + i).award.points for i in range(5)]  # type: ignore[union-attr]
    assert got == [100, 100, 100, 150, 150]       # silver from 300 points on
    assert points.balance(dd, "store-a") == 600
    # redeeming does not demote: tiers read cumulative points
    assert points.redeem(dd, "store-a", 550, "spend-1").ok
    assert scan(dd, cases[5], "store-a", "a5", APRIL + 5).award.points == 150  # type: ignore[union-attr]
    hist = points.history(dd, "store-a")
    assert [h["delta"] for h in hist] == [100, 100, 100, 150, 150, -550, 150]
    assert hist[-1]["balance"] == 200


def test_accounts_written_before_balance_and_earned_shared_a_record(stores) -> None:  # type: ignore[no-untyped-def]
    """Older data: b/<actor> holds the balance alone (8 bytes), e/<actor> the points
    earned. They are read as they are, and the next change writes both to b/."""
    dd, cases = stores
    db = dd.store.db("points")
    with dd.store.env.begin(write=True) as txn:     # 320 earned (silver), 20 left after redeeming
        txn.put(b"b/store-old", struct.pack(">q", 20), db=db)
        txn.put(b"e/store-old", struct.pack(">q", 320), db=db)
    assert points.balance(dd, "store-old") == 20
    with dd.store.env.begin() as txn:
        assert points.earned(txn, db, "store-old") == 320
    # the tier follows the 320 earned before: silver, x1.5
    assert scan(dd, cases[0], "store-old", "o0", APRIL).award.points == 150  # type: ignore[union-attr]
    with dd.store.env.begin() as txn:
        assert struct.unpack(">qq", txn.get(b"b/store-old", db=db)) == (170, 470)
        assert points.earned(txn, db, "store-old") == 470
    assert points.redeem(dd, "store-old", 170, "old-1").balance == 0
    with dd.store.env.begin(write=True) as txn:     # redeeming an old-format account keeps what it earned
        txn.put(b"b/store-older", struct.pack(">q", 50), db=db)
        txn.put(b"e/store-older", struct.pack(">q", 80), db=db)
    assert points.redeem(dd, "store-older", 30, "older-1").balance == 20
    with dd.store.env.begin() as txn:
        assert struct.unpack(">qq", txn.get(b"b/store-older", db=db)) == (20, 80)


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
    dd.close()
    show = subprocess.run([SCANGATE, "points", "show", "--data", root, "store-c"], capture_output=True, text=True)
    assert show.returncode == 0 and "store-c: 100 points" in show.stdout
    ok = subprocess.run([SCANGATE, "points", "redeem", "--data", root, "store-c", "30", "--request-id", "x"],
                        capture_output=True, text=True)
    assert ok.returncode == 0 and "balance 70" in ok.stdout
    refused = subprocess.run([SCANGATE, "points", "redeem", "--data", root, "store-c", "71", "--request-id", "y"],
                             capture_output=True, text=True)
    assert refused.returncode == 1 and "insufficient_points" in refused.stdout
    board = subprocess.run([SCANGATE, "points", "leaderboard", "--data", root, "--period", "2026-04",
                            "--actor", "store-c"], capture_output=True, text=True)
    assert board.returncode == 0 and "1. store-c  100" in board.stdout
