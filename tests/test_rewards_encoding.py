"""The reward engine's hand-made JSON and draw: byte for byte what the standard
library makes.

decide_scans writes its records (request, ledger entry, claim, payout request,
points history) with templates instead of json.dumps, and draws with a
precomputed HMAC; these tests hold every record equal to json.dumps of what it
holds, every request record equal to json.dumps(decision.to_json()), every draw
equal to hmac.new, and ScanVerdict.json_text() equal to json.dumps(to_json()),
over decisions of every kind (awards of each prize kind, every no-reward reason
the scenario reaches, evidence of recalls, clones, travel and diversion, repeat
scans, plugins, names that need escaping).
"""
from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

import scangate
from scangate.decide.campaign import Compiled, Hmac
from scangate import audit, ingest, points, rewards
from scangate.campaigns import load_campaign
from scangate.rewards import NoReward, ScanRequest
from scangate.verdicts import (
    Scan,
    VerdictConfig,
    decide_verdicts,
    revoke_line,
    revoke_range,
)

TZ = ZoneInfo("Asia/Shanghai")
CHENGDU, BEIJING, GUANGZHOU = 510104, 110101, 440106


def ms(y: int, mo: int, d: int, h: int = 12, mi: int = 0) -> int:
    return int(datetime(y, mo, d, h, mi, tzinfo=TZ).timestamp() * 1000)


CAMPAIGN = """
id = "enc-1"
name = "Encoding \\"quoted\\" 活动"
start = 2026-03-01
end = 2026-06-01
actor = "consumer"
odds = "50%"
consolation = "pts"
first_scan_always_wins = true
win_on_nth_scan = [3]
regions_exclude = ["11"]
blacklist = ["farm"]

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

STORE_CAMPAIGN = """
id = "enc-store"
name = "Stores"
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

[[store_tiers]]
name = "bronze"
min_points = 0
multiplier_pct = 100

[[store_tiers]]
name = "silver"
min_points = 200
multiplier_pct = 150
"""


@pytest.fixture
def dd(tmp_path: Path) -> Iterator[scangate.DataDir]:
    d = scangate.init_data_dir(tmp_path / "d")
    try:
        yield d
    finally:
        d.close()


def _records(dd: scangate.DataDir, name: str) -> list[tuple[bytes, bytes]]:
    with dd.store.env.begin() as txn:
        return [(bytes(k), bytes(v)) for k, v in txn.cursor(db=dd.store.db(name))]


def _world(dd: scangate.DataDir) -> tuple[list[str], list[str]]:
    """Items packed in cases on a pallet shipped to Guangdong, a recalled range, a
    recalled line, both campaigns."""
    items = dd.issue_codes("BEER", "item", 60).as_strings()
    cases = dd.issue_codes("BEER", "case", 6).as_strings()
    [pallet] = dd.issue_codes("BEER", "pallet", 1).as_strings()
    rows = [f"{cases[i // 10]},{items[i]}" for i in range(40)] + [f"{pallet},{c}" for c in cases[:4]]
    ingest.link_csv(dd, ("parent,child\n" + "\n".join(rows) + "\n").encode(), "pack.csv")
    ingest.load_dealers_csv(dd, b"dealer_id,name,territory\nGD,Guangdong,44\n")
    ingest.ship_csv(dd, f"unit,dealer_id,shipped_at,shipment_id\n{pallet},GD,2026-02-01T00:00:00Z,SH-1\n".encode())
    serials = [int(s) for s in dd.verify_codes(items).serial]
    revoke_range(dd, serials[50], serials[52], "range \"recalled\" 召回")
    wine = dd.issue_codes("WINE", "item", 3).as_strings()
    revoke_line(dd, int(dd.verify_codes(wine[:1]).line_id[0]), "bad cork")
    rewards.put_campaign(dd, CAMPAIGN, "enc.toml")
    rewards.put_campaign(dd, STORE_CAMPAIGN, "stores.toml")
    return items + wine, cases


def test_records_are_json_dumps_byte_for_byte(dd: scangate.DataDir) -> None:
    items, cases = _world(dd)
    t = ms(2026, 3, 10, 9)
    requests: list[ScanRequest] = []
    actors = ["u1", "u2", "用户\"三\"", "farm", "u\\back"]
    for i, code in enumerate(items):
        requests.append(ScanRequest(f"req-{i}-\u00e9\"", code, actors[i % len(actors)],
                                    region=(CHENGDU, GUANGZHOU, BEIJING, None)[i % 4], time_ms=t + i * 3_600_000))
    # repeat scans: other actors far away minutes later (clone and travel evidence)
    for j, (code, region) in enumerate(zip(items[:12], [BEIJING, 650102, 310101] * 4)):
        requests.append(ScanRequest(f"again-{j}", code, f"other-{j}", region=region, time_ms=t + j * 60_000 + 30_000))
    requests.append(ScanRequest("geo-1", items[45], "u9", lat=23.1291, lon=113.2644, time_ms=t))
    requests.append(ScanRequest("typo", items[46][:-3] + "AAA", "u9", region=CHENGDU, time_ms=t))
    requests.append(ScanRequest("late", items[47], "u9", region=CHENGDU, time_ms=ms(2026, 7, 1)))
    for k, case in enumerate(cases):
        requests.append(ScanRequest(f"store-{k}", case, "store-α", "store", region=GUANGZHOU,
                                    time_ms=t + k, actor_tags=("member",) if k % 2 else ()))
    decisions = []
    for start in range(0, len(requests), 17):
        decisions += rewards.decide_scans(dd, requests[start:start + 17])
    seen = {d.award.kind if d.award else d.no_reward for d in decisions}
    assert {"cash", "coupon", "points", NoReward.BLACKLISTED, NoReward.REGION_EXCLUDED,
            NoReward.VERDICT_NOT_ELIGIBLE, NoReward.ALREADY_CLAIMED, NoReward.OUTSIDE_WINDOW} <= seen, seen
    verdicts = [d.verdict for d in decisions]
    assert any(v["first_scan"] for v in verdicts) and any(v["evidence"].get("trace") for v in verdicts)
    assert {v["verdict"] for v in verdicts} >= {"genuine", "counterfeit", "revoked", "suspect_clone", "diverted"}
    log = dict(_records(dd, "decisions"))
    # a request record: the decision's number in the log, then the request's fingerprint
    stored = {request_id: log[pointer[:8]] for request_id, pointer in _records(dd, "requests")}
    for r, d in zip(requests, decisions):
        assert stored[r.request_id.encode()] == json.dumps(d.to_json()).encode()
        again = rewards.decide_scans(dd, [r])[0]            # a retry: the stored decision
        assert json.dumps(again.to_json()) == json.dumps(d.to_json())
    for name in ("ledger", "claims", "outbox"):
        rows = _records(dd, name)
        assert rows, name
        for _, value in rows:
            assert value == json.dumps(json.loads(value)).encode(), (name, value)
    entries = [json.loads(value) for _, value in _records(dd, "ledger")]
    for entry in entries:   # every decision recomputes, actors that need escaping included
        assert tuple(entry) == audit.LEDGER_FIELDS, entry
        assert entry["plugin"] is None or tuple(entry["plugin"]) == audit.PLUGIN_FIELDS, entry
        assert rewards.audit_entry(dd, entry["seq"])["verified"] is True, entry
    # the templates' every branch: slot or base odds, a plugin's output or none, budgets
    # read or not, a tier or none
    assert {e["odds_from"] for e in entries} >= {"base", "slot"} and {type(e["slot"]) for e in entries} == {int,
                                                                                                       type(None)}
    assert any(e["plugin"] is None for e in entries) and any(e["plugin"] is not None for e in entries)
    assert any(isinstance(e["budgets"], dict) for e in entries)
    assert any(e["tier_pct"] is not None for e in entries) and any(e["tier_pct"] is None for e in entries)
    assert any(e["client"] == "" for e in entries)
    history = [v for k, v in _records(dd, "points") if k.startswith(b"h/")]
    assert history
    for value in history:
        assert value == json.dumps(json.loads(value)).encode()
    for actor in actors + ["store-α"]:
        for h in points.history(dd, actor):
            assert h["reason"] == "award" and h["ref"].startswith("ledger:")


def test_verdict_json_text_is_json_dumps(dd: scangate.DataDir) -> None:
    items, _cases = _world(dd)
    t = ms(2026, 3, 10, 9)
    scans = [Scan(c, f"a{i % 3}", region=(CHENGDU, GUANGZHOU, None)[i % 3], time_ms=t + i) for i, c in enumerate(items)]
    scans += [Scan(items[0], f"far-{i}", lat=lat, lon=lon, time_ms=t + 60_000 * (i + 1))
              for i, (lat, lon) in enumerate([(39.9042, 116.4074), (43.8256, 87.6168), (31.2304, 121.4737)])]
    scans += [Scan("NOT-A-CODE", "x", time_ms=t), Scan(items[1], "x", time_ms=t)]
    for config in (VerdictConfig(), VerdictConfig(max_distinct_actors=1, clone_score_threshold=0.9)):
        for v in decide_verdicts(dd, scans, config):
            assert v.json_text() == json.dumps(v.to_json())


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
