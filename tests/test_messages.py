"""Consumer messages fit the verdict, in zh-CN and en (issue 12, item 9).

Before: a counterfeit said "not eligible for a reward"; a typo (SG-C2) said "may
be counterfeit" instead of "please scan again"; a repeat scan showed the first
scan's message with no first-scan time or place. Now: a counterfeit warns and
gives the brand's hotline when a campaign names one; a typo asks to scan again;
a repeat scan says when (Beijing time) and where (the district) the code was
first scanned; a clone and a diverted code say so. Through ``decide_scans``
(the stored text and ``Decision.message`` agree) and a real server.
"""
from __future__ import annotations

from pathlib import Path

import pytest

import scangate
from scangate import ingest, rewards
from scangate.rewards import Decision, NoReward, ScanRequest
from scangate.state import reads

from fixtures_campaigns import CHENGDU, GUANGZHOU, NOON, POINTS_10, URUMQI, campaign, typo
from forgery import random_code_texts
from serverproc import running

FAKE = random_code_texts(1, seed=12)[0]   # well formed, right check character, not authentic
CAMPAIGN = campaign(name="messages", start="2026-05-01", extra='hotline = "400-800-1234"\n', prizes=POINTS_10)


@pytest.fixture
def dd(dd: scangate.DataDir) -> scangate.DataDir:
    """conftest's data directory, with CAMPAIGN in it."""
    rewards.put_campaign(dd, CAMPAIGN, "c1.toml")
    return dd


def scan(dd: scangate.DataDir, rid: str, code: str, actor: str, t: int = NOON,
         region: int | None = CHENGDU) -> Decision:
    (d,) = rewards.decide_scans(dd, [ScanRequest(rid, code, actor, region=region, time_ms=t)])
    assert isinstance(d, Decision)
    # the stored decision says what the decision says (its message is derived from
    # the rest, as a retry gets it)
    stored = reads.decision_of(dd, rid)
    assert stored is not None
    assert Decision.from_json(stored).message == d.message
    assert Decision.from_json(stored).to_json() == d.to_json()
    assert d.to_json()["message"] == d.message
    assert d.message["en"].isascii() and any("\u4e00" <= ch <= "\u9fff" for ch in d.message["zh-CN"])
    return d


def test_a_counterfeit_warns_and_gives_the_hotline(dd: scangate.DataDir) -> None:
    d = scan(dd, "fake", FAKE, "u1")
    assert d.verdict.label == "counterfeit" and d.no_reward is NoReward.VERDICT_NOT_ELIGIBLE
    assert "假冒" in d.message["zh-CN"] and "400-800-1234" in d.message["zh-CN"]
    assert "counterfeit" in d.message["en"] and "400-800-1234" in d.message["en"]
    assert "reward" not in d.message["en"]          # not "not eligible for a reward"


def test_without_a_hotline_the_counterfeit_warning_stands_alone(tmp_path: Path) -> None:
    with scangate.init_data_dir(tmp_path / "d") as dd:
        rewards.put_campaign(dd, campaign(name="messages", start="2026-05-01", prizes=POINTS_10), "c1.toml")
        d = scan(dd, "fake", FAKE, "u1")
        assert d.message["en"] == "This code could not be verified; the product may be counterfeit."


def test_a_typo_asks_to_scan_again(dd: scangate.DataDir) -> None:
    (code,) = dd.issue_codes("BEER", "item", 1).as_strings()
    d = scan(dd, "typo", typo(code), "u1")
    assert d.verdict.label == "counterfeit" and "SG-C2" in [r.value for r in d.verdict.reasons]
    assert "重新扫码" in d.message["zh-CN"] and "scan again" in d.message["en"]
    assert "counterfeit" not in d.message["en"] and "假冒" not in d.message["zh-CN"]


def test_a_repeat_scan_says_when_and_where_it_was_first_scanned(dd: scangate.DataDir) -> None:
    (code,) = dd.issue_codes("BEER", "item", 1).as_strings()
    first = scan(dd, "first", code, "u1")
    assert first.award is not None and first.message["en"] == "You earned 10 points!"
    again = scan(dd, "again", code, "u2", t=NOON + 86_400_000, region=GUANGZHOU)
    assert again.no_reward is NoReward.ALREADY_CLAIMED
    zh, en = again.message["zh-CN"], again.message["en"]
    assert "2026-06-01 12:00" in zh and "成都市" in zh and "第 2 次" in zh and "已参与过抽奖" in zh
    assert "first scanned on 2026-06-01 12:00 (Beijing time) in the district with adcode 510104" in en
    assert "scan 2" in en and en.endswith("This code has already been used in the draw.")


def test_a_repeat_scan_without_a_place_leaves_the_place_out(dd: scangate.DataDir) -> None:
    (code,) = dd.issue_codes("BEER", "item", 1).as_strings()
    scan(dd, "first", code, "u1", region=None)
    again = scan(dd, "again", code, "u2", t=NOON + 60_000, region=None)
    assert "2026-06-01 12:00首次扫码" in again.message["zh-CN"]
    assert "first scanned on 2026-06-01 12:00 (Beijing time);" in again.message["en"]


def test_a_clone_and_a_diverted_code_say_so(dd: scangate.DataDir) -> None:
    items = dd.issue_codes("BEER", "item", 3).as_strings()
    (case,) = dd.issue_codes("BEER", "case", 1).as_strings()
    rows = "".join(f"{case},{i}\n" for i in items)
    ingest.link_csv(dd, ("parent,child\n" + rows).encode(), "pack.csv")
    ingest.load_dealers_csv(dd, b"dealer_id,name,territory\nGD,Guangdong,44\n")
    ingest.ship_csv(dd, f"unit,dealer_id,shipped_at,shipment_id\n{case},GD,2026-05-01T00:00:00Z,SH1\n".encode())
    diverted = scan(dd, "div", items[0], "u1", region=CHENGDU)
    assert diverted.verdict.label == "diverted"
    assert "授权销售区域" in diverted.message["zh-CN"] and "outside its authorised sales region" in diverted.message["en"]
    # one code scanned minutes apart in Guangzhou, Chengdu and Urumqi by three people: a clone
    scan(dd, "c0", items[1], "a", region=GUANGZHOU)
    scan(dd, "c1", items[1], "b", t=NOON + 60_000, region=CHENGDU)
    clone = scan(dd, "c2", items[1], "c", t=NOON + 120_000, region=URUMQI)
    assert clone.verdict.label == "suspect_clone", clone.verdict
    assert "可能被复制" in clone.message["zh-CN"] and "may have been copied" in clone.message["en"]


def test_the_server_sends_the_same_messages(tmp_path: Path) -> None:
    with running(tmp_path / "data", "--workers", "1") as srv, scangate.Client(srv.target) as c:
        c.put_campaign(CAMPAIGN, "c1.toml")
        (code,) = [x for b in c.issue_codes("BEER", "item", 1) for x in b.codes]
        fake = c.scan(FAKE, "u1", region=CHENGDU)
        assert "400-800-1234" in fake.message["zh-CN"] and "reward" not in fake.message["en"]
        assert "scan again" in c.scan(typo(code), "u1", region=CHENGDU).message["en"]
        c.scan(code, "u1", region=CHENGDU)
        again = c.scan(code, "u2", region=CHENGDU)
        assert "first scanned on" in again.message["en"] and "成都市" in again.message["zh-CN"]
        assert again.verdict.message["en"].startswith("Genuine. This code was first scanned on")
