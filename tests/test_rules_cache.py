"""A batch reads the rules every decision needs (the campaigns and the recalls)
only when they changed (issue 14, item 3: no per-batch read of whole databases):
``Store.rules_cached`` keeps them until the rules generation in ``meta`` moves,
and every write to them moves it in its own transaction, from this process or
another one (scangate.state.campaigns, recalls, raw). Here each change is made
the way a user or a repair makes it, and the next decision must see it."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import scangate
from scangate import rewards, verdicts
from scangate.errors import CorruptionError
from scangate.rewards import Decision, NoReward, ScanRequest
from scangate.state import batch as batch_mod
from scangate.state import raw as state_raw

from fixtures_campaigns import CASH_1, CHENGDU, NOON, campaign


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """How many times a batch read every recall and every campaign."""
    counts = {"recalls": 0, "campaigns": 0}
    read_recalls, read_campaigns = batch_mod.read_recalls, batch_mod.LmdbBatch._read_campaigns

    def recalls(*args: Any) -> Any:
        counts["recalls"] += 1
        return read_recalls(*args)

    def campaigns(self: Any) -> Any:
        counts["campaigns"] += 1
        return read_campaigns(self)

    monkeypatch.setattr(batch_mod, "read_recalls", recalls)
    monkeypatch.setattr(batch_mod.LmdbBatch, "_read_campaigns", campaigns)
    return counts


def _scan(dd: scangate.DataDir, rid: str, code: str) -> Decision:
    (d,) = rewards.decide_scans(dd, [ScanRequest(rid, code, f"u-{rid}", region=CHENGDU, time_ms=NOON)])
    assert isinstance(d, Decision), d
    return d


def test_unchanged_rules_are_read_once_and_each_change_is_seen(dd: scangate.DataDir, reads: dict[str, int]) -> None:
    rewards.put_campaign(dd, campaign(prizes=CASH_1), "c1.toml")
    codes = dd.issue_codes("BEER", "item", 8).as_strings()
    for i in range(3):
        assert _scan(dd, f"r{i}", codes[i]).award is not None
    assert reads == {"recalls": 1, "campaigns": 1}            # three batches, one read each

    serial = int(dd.verify_code(codes[3]).serial)              # a recall: seen by the next batch
    verdicts.revoke_range(dd, serial, serial, "broken seal")
    assert _scan(dd, "r3", codes[3]).verdict.label == "revoked"
    assert reads == {"recalls": 2, "campaigns": 2}

    rewards.set_campaign_status(dd, "c1", "paused")            # a campaign's status
    assert _scan(dd, "r4", codes[4]).no_reward is NoReward.CAMPAIGN_PAUSED
    rewards.set_campaign_status(dd, "c1", "active")
    rewards.put_campaign(dd, campaign(prizes=CASH_1, odds="0%"), "c1.toml")   # a reload: new rules
    assert _scan(dd, "r5", codes[5]).no_reward is NoReward.LOST_DRAW
    assert reads["campaigns"] == 4 and reads["recalls"] == 4
    assert _scan(dd, "r6", codes[6]).no_reward is NoReward.LOST_DRAW
    assert reads["campaigns"] == 4 and reads["recalls"] == 4

    # a repair's raw write to the recalls is a change too: a damaged one is found
    (key, _value), = state_raw.items(dd, "revoked")
    state_raw.put(dd, "revoked", key, b"\x00not a recall")
    with pytest.raises(CorruptionError, match="recall"):
        _scan(dd, "r7", codes[7])


def test_a_change_made_by_another_process_is_seen(dd: scangate.DataDir, reads: dict[str, int]) -> None:
    rewards.put_campaign(dd, campaign(prizes=CASH_1), "c1.toml")
    codes = dd.issue_codes("BEER", "item", 3).as_strings()
    assert _scan(dd, "r0", codes[0]).award is not None
    serial = int(dd.verify_code(codes[1]).serial)
    done = subprocess.run(
        [sys.executable, "-c", "import sys, scangate\nfrom scangate import verdicts\n"
         "with scangate.open_data_dir(sys.argv[1]) as d:\n"
         "    verdicts.revoke_range(d, int(sys.argv[2]), int(sys.argv[2]), 'recalled elsewhere')\n"
         "    scangate.rewards.set_campaign_status(d, 'c1', 'paused')\n",
         str(dd.root), str(serial)], capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert _scan(dd, "r1", codes[1]).verdict.label == "revoked"
    assert _scan(dd, "r2", codes[2]).no_reward is NoReward.CAMPAIGN_PAUSED
    assert reads == {"recalls": 2, "campaigns": 2}


def test_the_generation_moves_only_with_the_rules(dd: scangate.DataDir) -> None:
    """Scans, issuance and links leave it alone (the rules cache is not thrown away
    by the traffic it serves); every write to the rules moves it."""
    def gen() -> bytes | None:
        return state_raw.get(dd, "meta", b"rules_gen")

    assert gen() is None                                        # a new directory: 0, unwritten
    rewards.put_campaign(dd, campaign(prizes=CASH_1), "c1.toml")
    after_put = gen()
    assert after_put is not None
    codes = dd.issue_codes("BEER", "item", 2).as_strings()
    _scan(dd, "r0", codes[0])
    assert gen() == after_put
    rewards.set_campaign_status(dd, "c1", "paused")
    assert gen() != after_put


def test_bench_rewards_decides_beside_stored_recalls(tmp_path: Path) -> None:
    """``python -m bench rewards --recalls R``: R recalls of another line stored in
    one transaction, none merged with a neighbour, and every scan still decided."""
    from bench import rewards as bench_rewards

    with scangate.init_data_dir(tmp_path / "d") as dd:
        bench_rewards._recall_others(dd, 30)
        assert len(verdicts.list_recalls(dd)) == 30
    timing, cpu = bench_rewards.measure_scangate(tmp_path / "b", 200, 100, recalls=30)
    assert timing.count == 200 and cpu > 0
