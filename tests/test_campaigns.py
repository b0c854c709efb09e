"""Campaign model and loader: the documented examples, every validation rule (with
the exact field path it names), odds in ppm, slots, time zones, caps, round trips."""
from __future__ import annotations

import copy
import dataclasses
import json
import re
from datetime import UTC, date, datetime, time, timedelta, timezone
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scangate.campaigns import (
    Campaign,
    Caps,
    Slot,
    campaign_from_json,
    load_campaign,
    parse_percent_ppm,
)
from scangate.errors import InvalidArgument, NotFound

DOC = Path(__file__).resolve().parent.parent / "docs" / "campaigns.md"
SHANGHAI = ZoneInfo("Asia/Shanghai")
BERLIN = ZoneInfo("Europe/Berlin")


def doc_examples() -> list[str]:
    blocks = re.findall(r"^```toml\n(.*?)^```", DOC.read_text(encoding="utf-8"), re.DOTALL | re.MULTILINE)
    assert len(blocks) == 2, "docs/campaigns.md should hold the consumer and the store example"
    return blocks


@pytest.fixture(scope="module")
def caps_campaign() -> Campaign:
    return load_campaign(doc_examples()[0], "docs/campaigns.md")


@pytest.fixture(scope="module")
def store_campaign() -> Campaign:
    return load_campaign(doc_examples()[1], "docs/campaigns.md")


# A small valid consumer campaign (JSON form) that the failure cases mutate.
BASE: dict[str, Any] = {
    "id": "c1",
    "name": "Test campaign",
    "start": "2026-03-01",
    "end": "2026-07-01",
    "actor": "consumer",
    "odds_ppm": 100_000,
    "prizes": [
        {"id": "cash-1", "kind": "cash", "amount_fen": 100},
        {"id": "pts", "kind": "points", "points": 10},
        {"id": "cpn", "kind": "coupon",
         "coupon": {"type": "full_reduction", "threshold_fen": 10_000, "value_fen": 1_000, "valid_days": 7}},
    ],
}
STORE_BASE: dict[str, Any] = {
    "id": "s1",
    "name": "Store test",
    "start": "2026-03-01",
    "end": "2026-07-01",
    "actor": "store",
    "odds": "100%",
    "prizes": [{"id": "pts", "kind": "points", "points": 50}],
    "store_tiers": [
        {"name": "bronze", "min_points": 0, "multiplier_pct": 100},
        {"name": "silver", "min_points": 5_000, "multiplier_pct": 120},
    ],
}
DELETE = object()
_STEP = re.compile(r"([A-Za-z_]+)|\[(\d+)\]")


def mutate(base: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    """A deep copy of ``base`` with each dotted path ("prizes[2].coupon.type") set,
    or removed when the value is DELETE."""
    doc = copy.deepcopy(base)
    for path, value in changes.items():
        steps: list[str | int] = [m.group(1) or int(m.group(2)) for m in _STEP.finditer(path)]
        node: Any = doc
        for step in steps[:-1]:
            if isinstance(step, str) and step not in node:
                node[step] = {}
            node = node[step]
        if value is DELETE:
            del node[steps[-1]]
        else:
            node[steps[-1]] = copy.deepcopy(value)
    return doc


def error_of(doc: Any, source: str = "src") -> str:
    with pytest.raises(InvalidArgument) as info:
        campaign_from_json(doc, source)
    return str(info.value)


# ------------------------------------------------------------ the documented examples
def test_doc_consumer_example(caps_campaign: Campaign) -> None:
    c = caps_campaign
    assert c.actor == "consumer" and c.status == "active" and c.timezone == "Asia/Shanghai"
    assert c.start == datetime(2026, 3, 1, tzinfo=SHANGHAI) and c.end == datetime(2026, 7, 1, tzinfo=SHANGHAI)
    assert c.regions_exclude == ("11", "31", "4401") and c.regions_include == ()
    assert c.odds_ppm == 50_000 and c.slots == (Slot(time(8), time(22), 200_000),)
    assert c.first_scan_always_wins and c.one_reward_per_code
    cash = [p for p in c.prizes if p.kind == "cash"]
    assert {p.amount_fen for p in cash} == {100, 500, 2_000, 20_000}
    assert all(100 <= p.amount_fen <= 20_000 and p.budget_count or p.budget_amount_fen for p in cash)
    assert c.consolation == "points-10" and c.prize("points-10").kind == "points"
    assert "points-10" not in {p.id for p in c.winning_prizes} and len(c.winning_prizes) == 4
    assert c.caps == Caps(5, 50_000, 60, 300_000)
    assert c.products.skus == ("BEER-500", "BEER-330") and c.products.levels == ("item",)
    # by day 20 %, at night 5 % (Beijing time)
    assert c.odds_at(datetime(2026, 3, 2, 12, 0, tzinfo=SHANGHAI)) == 200_000
    assert c.odds_at(datetime(2026, 3, 2, 23, 0, tzinfo=SHANGHAI)) == 50_000
    assert c.odds_at(datetime(2026, 3, 2, 0, 30, tzinfo=UTC)) == 200_000  # 08:30 in Shanghai
    assert not c.region_allowed(110105) and not c.region_allowed(310104) and not c.region_allowed(440106)
    assert c.region_allowed(440305) and c.region_allowed(510104)
    assert not c.region_allowed(None)   # denying location does not dodge the excluded cities (issue 12)
    assert c.matches_product("BEER-500", "item") and not c.matches_product("BEER-500", "case")
    assert not c.matches_product("WINE-750", "item")
    assert c.window_contains(datetime(2026, 6, 30, 23, 59, 59, tzinfo=SHANGHAI))
    assert not c.window_contains(datetime(2026, 7, 1, tzinfo=SHANGHAI))
    assert c.tier_for(100) is None


def test_doc_store_example(store_campaign: Campaign) -> None:
    c = store_campaign
    assert c.actor == "store" and c.odds_ppm == 1_000_000 and c.products.levels == ("case",)
    assert [t.name for t in c.store_tiers] == ["bronze", "silver", "gold"]
    coupon = c.prize("restock-50-off-500").coupon
    assert coupon is not None and (coupon.type, coupon.threshold_fen, coupon.value_fen) == ("full_reduction",
                                                                                            50_000, 5_000)
    assert c.caps == Caps(per_user_daily_count=200)  # no cash: no WeChat defaults
    assert c.tier_for(0).name == "bronze" and c.tier_for(4_999).name == "bronze"  # type: ignore[union-attr]
    assert c.tier_for(5_000).name == "silver" and c.tier_for(10**9).name == "gold"  # type: ignore[union-attr]
    assert c.region_allowed(440106) and not c.region_allowed(110105) and not c.region_allowed(None)
    assert c.matches_product("ANY-SKU", "case") and not c.matches_product("ANY-SKU", "item")
    assert c.blacklist == ("store-4401-0666",)


def test_doc_examples_round_trip(caps_campaign: Campaign, store_campaign: Campaign) -> None:
    for c in (caps_campaign, store_campaign):
        stored = json.dumps(c.to_json(), allow_nan=False)
        assert campaign_from_json(json.loads(stored)) == c
        assert load_campaign(stored, "stored.json") == c


# ------------------------------------------------------------ every validation rule
CASES: list[tuple[dict[str, Any], str, str]] = [
    # (changes to BASE, the path the message names, a fragment of the message)
    ({"colour": "red"}, "colour", "unknown key (known keys: id, name,"),
    ({"id": DELETE}, "id", "required"),
    ({"id": "has space"}, "id", "1 to 64 characters"),
    ({"id": "x" * 65}, "id", "1 to 64 characters"),
    ({"id": 7}, "id", "1 to 64 characters"),
    ({"name": DELETE}, "name", "required"),
    ({"name": "  "}, "name", "must not be empty"),
    ({"name": "bell\x07"}, "name", "control"),
    ({"name": "n" * 201}, "name", "longer than 200"),
    ({"timezone": "Mars/Olympus_Mons"}, "timezone", "IANA time zone"),
    ({"timezone": "../../etc/passwd"}, "timezone", "IANA time zone"),
    ({"timezone": 8}, "timezone", "IANA time zone"),
    ({"start": DELETE}, "start", "required"),
    ({"start": "2026-13-01"}, "start", "ISO date"),
    ({"start": 20260301}, "start", "ISO date"),
    ({"start": "2026-03-01T00:00:00+08:00"}, "start", "must not have a UTC offset"),
    ({"end": "2026-03-01T08:00:00Z"}, "end", "must not have a UTC offset"),
    ({"end": "2026-02-01"}, "end", "must be after start"),
    ({"end": "2026-03-01T00:00:00"}, "end", "must be after start"),
    ({"status": "running"}, "status", "'active', 'paused'"),
    ({"actor": DELETE}, "actor", "required"),
    ({"actor": "dealer"}, "actor", "'consumer', 'store'"),
    ({"products": ["BEER"]}, "products", "must be a table"),
    ({"products.skus": "BEER-500"}, "products.skus", "must be an array"),
    ({"products.skus": ["A", "B", "A"]}, "products.skus[2]", "duplicates products.skus[0]"),
    ({"products.skus": [""]}, "products.skus[0]", "must not be empty"),
    ({"products.skus": [500]}, "products.skus[0]", "must be a string"),
    ({"products.levels": []}, "products.levels", "at least one"),
    ({"products.levels": ["bottle"]}, "products.levels[0]", "'item', 'case', 'pallet'"),
    ({"products.levels": ["item", "item"]}, "products.levels[1]", "duplicates"),
    ({"products.sku": ["A"]}, "products.sku", "unknown key"),
    ({"regions_include": [44]}, "regions_include[0]", "2, 4 or 6 digits"),
    ({"regions_include": ["44", "123"]}, "regions_include[1]", "2, 4 or 6 digits"),
    ({"regions_include": ["0101"]}, "regions_include[0]", "2, 4 or 6 digits"),
    ({"regions_include": ["44", "44"]}, "regions_include[1]", "duplicates regions_include[0]"),
    ({"regions_exclude": ["4401x"]}, "regions_exclude[0]", "2, 4 or 6 digits"),
    ({"regions_exclude": "11"}, "regions_exclude", "must be an array"),
    ({"odds": "10%"}, "odds", "not both"),
    ({"odds_ppm": DELETE}, "odds_ppm", "required"),
    ({"odds_ppm": 1_000_001}, "odds_ppm", "from 0 to 1000000"),
    ({"odds_ppm": -1}, "odds_ppm", "from 0 to 1000000"),
    ({"odds_ppm": True}, "odds_ppm", "from 0 to 1000000"),
    ({"odds_ppm": 0.1}, "odds_ppm", "from 0 to 1000000"),
    ({"odds_ppm": DELETE, "odds": "0.00005%"}, "odds", "not a whole number of ppm"),
    ({"odds_ppm": DELETE, "odds": 0.2}, "odds", "percentage string"),
    ({"odds_ppm": DELETE, "odds": "20"}, "odds", "percentage string"),
    ({"odds_ppm": DELETE, "odds": "100.01%"}, "odds", "at most 100%"),
    ({"slots": {"start": "08:00"}}, "slots", "must be an array"),
    ({"slots": ["08:00-22:00"]}, "slots[0]", "must be a table"),
    ({"slots": [{"start": "24:00", "end": "01:00", "odds_ppm": 1}]}, "slots[0].start", "HH:MM"),
    ({"slots": [{"start": "08:00", "end": "8:00", "odds_ppm": 1}]}, "slots[0].end", "HH:MM"),
    ({"slots": [{"start": "08:00", "end": "09:00:30", "odds_ppm": 1}]}, "slots[0].end", "HH:MM"),
    ({"slots": [{"end": "09:00", "odds_ppm": 1}]}, "slots[0].start", "required"),
    ({"slots": [{"start": "08:00", "end": "08:00", "odds_ppm": 1}]}, "slots[0].end", "must not be empty"),
    ({"slots": [{"start": "08:00", "end": "09:00"}]}, "slots[0].odds_ppm", "required"),
    ({"slots": [{"start": "08:00", "end": "09:00", "odds": "120%"}]}, "slots[0].odds", "at most 100%"),
    ({"slots": [{"start": "08:00", "end": "09:00", "odds_pct": 5}]}, "slots[0].odds_pct", "unknown key"),
    ({"slots": [{"start": "08:00", "end": "22:00", "odds_ppm": 1}, {"start": "21:00", "end": "09:00", "odds_ppm": 2}]},
     "slots[1]", "overlaps slots[0]"),
    ({"slots": [{"start": "22:00", "end": "06:00", "odds_ppm": 1}, {"start": "05:00", "end": "07:00", "odds_ppm": 2}]},
     "slots[1]", "overlaps slots[0]"),
    ({"slots": [{"start": "12:00", "end": "13:00", "odds_ppm": 1}, {"start": "23:00", "end": "12:30", "odds_ppm": 2}]},
     "slots[1]", "overlaps slots[0]"),
    ({"prizes": DELETE}, "prizes", "at least one prize"),
    ({"prizes": []}, "prizes", "at least one prize"),
    ({"prizes[0]": "cash"}, "prizes[0]", "must be a table"),
    ({"prizes[0].colour": "red"}, "prizes[0].colour", "unknown key"),
    ({"prizes[0].id": DELETE}, "prizes[0].id", "required"),
    ({"prizes[0].id": "cash 1"}, "prizes[0].id", "1 to 64 characters"),
    ({"prizes[1].id": "cash-1"}, "prizes[1].id", "duplicates prizes[0].id"),
    ({"prizes[0].kind": "voucher"}, "prizes[0].kind", "'cash', 'points', 'coupon'"),
    ({"prizes[0].kind": DELETE}, "prizes[0].kind", "required"),
    ({"prizes[0].weight": 0}, "prizes[0].weight", "positive integer"),
    ({"prizes[0].weight": 1.5}, "prizes[0].weight", "positive integer"),
    ({"prizes[0].amount_fen": DELETE}, "prizes[0].amount_fen", "required"),
    ({"prizes[0].amount_fen": 99}, "prizes[0].amount_fen", "from 100 to 20000"),
    ({"prizes[0].amount_fen": 20_001}, "prizes[0].amount_fen", "WeChat red packet limits"),
    ({"prizes[0].amount_fen": 150.0}, "prizes[0].amount_fen", "money is integer fen"),
    ({"prizes[0].amount_fen": "100"}, "prizes[0].amount_fen", "from 100 to 20000"),
    ({"prizes[1].amount_fen": 100}, "prizes[1].amount_fen", "only cash prizes have an amount"),
    ({"prizes[1].points": 0}, "prizes[1].points", "positive integer"),
    ({"prizes[1].points": DELETE}, "prizes[1].points", "required"),
    ({"prizes[0].points": 5}, "prizes[0].points", "only points prizes"),
    ({"prizes[2].coupon": DELETE}, "prizes[2].coupon", "required"),
    ({"prizes[2].coupon": "10 off"}, "prizes[2].coupon", "must be a table"),
    ({"prizes[0].coupon": {"type": "gift", "gift_sku": "G", "valid_days": 1}}, "prizes[0].coupon",
     "only coupon prizes"),
    ({"prizes[0].budget_count": -1}, "prizes[0].budget_count", "non-negative integer"),
    ({"prizes[2]": {"id": "c3", "kind": "cash", "amount_fen": 100, "budget_amount_fen": -5}},
     "prizes[2].budget_amount_fen", "must be a non-negative integer (fen)"),
    ({"prizes[0].budget_amount_fen": 10.5}, "prizes[0].budget_amount_fen", "money is integer fen"),
    ({"prizes[1].budget_amount_fen": 1_000}, "prizes[1].budget_amount_fen", "only cash prizes"),
    ({"prizes[2].coupon.type": "bogo"}, "prizes[2].coupon.type", "'full_reduction', 'discount', 'gift'"),
    ({"prizes[2].coupon.colour": 1}, "prizes[2].coupon.colour", "unknown key"),
    ({"prizes[2].coupon.value_fen": DELETE}, "prizes[2].coupon.value_fen", "required"),
    ({"prizes[2].coupon.value_fen": 0}, "prizes[2].coupon.value_fen", "positive integer"),
    ({"prizes[2].coupon.value_fen": 20_000}, "prizes[2].coupon.value_fen", "more than the threshold"),
    ({"prizes[2].coupon.threshold_fen": -1}, "prizes[2].coupon.threshold_fen", "non-negative integer"),
    ({"prizes[2].coupon.valid_days": 0}, "prizes[2].coupon.valid_days", "positive integer"),
    ({"prizes[2].coupon.valid_days": DELETE}, "prizes[2].coupon.valid_days", "required"),
    ({"prizes[2].coupon.percent_off": 10}, "prizes[2].coupon.percent_off", "only discount coupons"),
    ({"prizes[2].coupon.gift_sku": "G"}, "prizes[2].coupon.gift_sku", "only gift coupons"),
    ({"prizes[2].coupon": {"type": "discount", "percent_off": 100, "valid_days": 1}},
     "prizes[2].coupon.percent_off", "from 1 to 99"),
    ({"prizes[2].coupon": {"type": "discount", "percent_off": 0, "valid_days": 1}},
     "prizes[2].coupon.percent_off", "from 1 to 99"),
    ({"prizes[2].coupon": {"type": "discount", "valid_days": 1}}, "prizes[2].coupon.percent_off", "required"),
    ({"prizes[2].coupon": {"type": "discount", "percent_off": 10, "value_fen": 5, "valid_days": 1}},
     "prizes[2].coupon.value_fen", "only full_reduction coupons"),
    ({"prizes[2].coupon": {"type": "gift", "valid_days": 1}}, "prizes[2].coupon.gift_sku", "required"),
    ({"prizes[2].coupon": {"type": "gift", "gift_sku": "G", "percent_off": 5, "valid_days": 1}},
     "prizes[2].coupon.percent_off", "only discount coupons"),
    ({"consolation": "nope"}, "consolation", "no prize has the id 'nope'"),
    ({"consolation": "cash-1"}, "consolation", "is cash"),
    ({"consolation": "a b"}, "consolation", "1 to 64 characters"),
    ({"prizes": [{"id": "pts", "kind": "points", "points": 1}], "consolation": "pts"}, "consolation",
     "only prize"),
    ({"caps": [10]}, "caps", "must be a table"),
    ({"caps.per_user_weekly_count": 3}, "caps.per_user_weekly_count", "unknown key"),
    ({"caps.per_user_daily_count": 11}, "caps.per_user_daily_count", "at most 10 red packets"),
    ({"caps.per_user_daily_count": 0}, "caps.per_user_daily_count", "positive integer"),
    ({"caps.per_user_daily_amount_fen": 100_001}, "caps.per_user_daily_amount_fen", "at most 100000 fen"),
    ({"caps.per_user_total_count": 0}, "caps.per_user_total_count", "positive integer"),
    ({"caps.per_user_total_amount_fen": 1.5}, "caps.per_user_total_amount_fen", "money is integer fen"),
    ({"caps.per_user_total_amount_fen": 2**63}, "caps.per_user_total_amount_fen", "fits 64 bits"),
    ({"prizes": [{"id": "pts", "kind": "points", "points": 1}], "caps": {"per_user_daily_amount_fen": 100}},
     "caps.per_user_daily_amount_fen", "no cash prize"),
    ({"first_scan_always_wins": "yes"}, "first_scan_always_wins", "true or false"),
    ({"first_scan_always_wins": 1}, "first_scan_always_wins", "true or false"),
    ({"win_on_nth_scan": 3}, "win_on_nth_scan", "must be an array"),
    ({"win_on_nth_scan": [0]}, "win_on_nth_scan[0]", "positive integer"),
    ({"win_on_nth_scan": [1, 2, 1]}, "win_on_nth_scan[2]", "duplicates win_on_nth_scan[0]"),
    ({"one_reward_per_code": False}, "one_reward_per_code", "code farms"),
    ({"one_reward_per_code": "no"}, "one_reward_per_code", "true or false"),
    ({"store_tiers": [{"name": "b", "min_points": 0, "multiplier_pct": 100}]}, "store_tiers",
     "only store campaigns"),
    ({"blacklist": [""]}, "blacklist[0]", "non-empty actor id"),
    ({"blacklist": [42]}, "blacklist[0]", "non-empty actor id"),
    ({"blacklist": ["u1", " u2"]}, "blacklist[1]", "leading or trailing whitespace"),
    ({"blacklist": ["u\x00"]}, "blacklist[0]", "control"),
    ({"blacklist": ["u1", "u1"]}, "blacklist[1]", "duplicates blacklist[0]"),
    ({"verdict_policy": {"counterfeit_can_win": True}}, "verdict_policy.counterfeit_can_win",
     "counterfeit and revoked codes never win"),
    ({"verdict_policy": {"diverted_can_win": 1}}, "verdict_policy.diverted_can_win", "true or false"),
    ({"plugins": ["no colon"]}, "plugins[0]", "package.module:attribute"),
    ({"plugins": ["pkg.mod:"]}, "plugins[0]", "package.module:attribute"),
    ({"plugins": ["1pkg:f"]}, "plugins[0]", "package.module:attribute"),
    ({"plugins": ["a.b:c", "a.b:c"]}, "plugins[1]", "duplicates plugins[0]"),
]

STORE_CASES: list[tuple[dict[str, Any], str, str]] = [
    ({"store_tiers[0].min_points": 5}, "store_tiers[0].min_points", "must start at 0"),
    ({"store_tiers[1].min_points": 0}, "store_tiers[1].min_points", "sorted by min_points"),
    ({"store_tiers[1].min_points": -1}, "store_tiers[1].min_points", "non-negative integer"),
    ({"store_tiers[0].multiplier_pct": 99}, "store_tiers[0].multiplier_pct", "from 100 to 1000"),
    ({"store_tiers[1].multiplier_pct": 1_001}, "store_tiers[1].multiplier_pct", "from 100 to 1000"),
    ({"store_tiers[1].name": "bronze"}, "store_tiers[1].name", "duplicates store_tiers[0].name"),
    ({"store_tiers[1].name": ""}, "store_tiers[1].name", "must not be empty"),
    ({"store_tiers[1].min_points": DELETE}, "store_tiers[1].min_points", "required"),
    ({"store_tiers[1].bonus": 1}, "store_tiers[1].bonus", "unknown key"),
    ({"store_tiers[1]": 5000}, "store_tiers[1]", "must be a table"),
]


ALL_CASES = [(BASE, *case) for case in CASES] + [(STORE_BASE, *case) for case in STORE_CASES]


@pytest.mark.parametrize("base,changes,path,fragment", ALL_CASES, ids=[f"{c[2]}-{i}" for i, c in enumerate(ALL_CASES)])
def test_each_rule_names_its_field(base: dict[str, Any], changes: dict[str, Any], path: str, fragment: str) -> None:
    message = error_of(mutate(base, changes), "bad.toml")
    assert message.startswith(f"bad.toml: {path}: "), message
    assert fragment in message, message


def test_bases_are_valid() -> None:
    assert campaign_from_json(BASE).id == "c1"
    assert campaign_from_json(STORE_BASE).store_tiers[1].name == "silver"


def test_spec_message_exactly() -> None:
    doc = mutate(BASE, {"prizes[2]": {"id": "c3", "kind": "cash", "amount_fen": 100, "budget_amount_fen": -5}})
    assert error_of(doc, "caps.toml") == "caps.toml: prizes[2].budget_amount_fen: must be a non-negative integer " \
                                         "(fen), got -5"


def test_document_must_be_a_table() -> None:
    assert error_of([BASE]) == "src: (document): must be a table (object), got an array"


def test_unknown_keys_all_named() -> None:
    message = error_of(mutate(BASE, {"colour": 1, "size": 2}))
    assert message.startswith("src: colour: unknown key") and message.endswith("also unknown: size")


def test_one_reward_per_code_true_is_accepted() -> None:
    assert campaign_from_json(mutate(BASE, {"one_reward_per_code": True})).one_reward_per_code


# ------------------------------------------------------------ loading text
TOML_MIN = """
id = "t1"
name = "TOML types"
start = 2026-03-01
end = 2026-07-01T12:30:00
actor = "consumer"
odds = "12.5%"
[[slots]]
start = 22:00:00
end = "06:00"
odds_ppm = 300000
[[prizes]]
id = "p"
kind = "points"
points = 1
"""


def test_toml_native_dates_and_times() -> None:
    c = load_campaign(TOML_MIN, "x.toml")
    assert c.start == datetime(2026, 3, 1, tzinfo=SHANGHAI)
    assert c.end == datetime(2026, 7, 1, 12, 30, tzinfo=SHANGHAI)
    assert c.odds_ppm == 125_000 and c.slots == (Slot(time(22), time(6), 300_000),)
    assert c.caps == Caps()  # no cash: no WeChat defaults


@pytest.mark.parametrize("old,new,path,fragment", [
    ("start = 2026-03-01", "start = 2026-03-01T00:00:00+08:00", "start", "must not have a UTC offset"),
    ("start = 22:00:00", "start = 22:00:30", "slots[0].start", "HH:MM"),
    ("points = 1", "points = 1.0", "prizes[0].points", "positive integer"),
    ('odds = "12.5%"', "odds = 12.5", "odds", "percentage string"),
])
def test_toml_type_errors(old: str, new: str, path: str, fragment: str) -> None:
    assert old in TOML_MIN
    with pytest.raises(InvalidArgument) as info:
        load_campaign(TOML_MIN.replace(old, new), "x.toml")
    assert str(info.value).startswith(f"x.toml: {path}: ") and fragment in str(info.value), str(info.value)


def test_format_inference() -> None:
    text = json.dumps(BASE)
    assert load_campaign(text, "c.json").id == "c1"
    assert load_campaign("\ufeff  " + text, "stdin").id == "c1"  # by content
    assert load_campaign(TOML_MIN, "stdin").id == "t1"
    assert load_campaign(TOML_MIN, "campaign.TOML").id == "t1"
    assert load_campaign(text, "weird.toml", fmt="json").id == "c1"
    with pytest.raises(InvalidArgument, match=r"^c\.json: invalid JSON"):
        load_campaign(TOML_MIN, "c.json")
    with pytest.raises(InvalidArgument, match=r"^c\.toml: invalid TOML"):
        load_campaign(text, "c.toml")
    with pytest.raises(InvalidArgument, match=r"^x: fmt: "):
        load_campaign(text, "x", fmt="yaml")  # type: ignore[arg-type]


def test_json_rejects_duplicates_and_nan() -> None:
    with pytest.raises(InvalidArgument, match=r"^c\.json: invalid JSON: duplicate key 'id'"):
        load_campaign('{"id": "a", "id": "b"}', "c.json")
    with pytest.raises(InvalidArgument, match=r"^c\.json: invalid JSON: NaN is not a number"):
        load_campaign(json.dumps(BASE).replace("100000", "NaN"), "c.json")


def test_json_null_means_absent() -> None:
    c = campaign_from_json(mutate(BASE, {"consolation": None, "status": None, "slots": None, "caps": None}))
    assert c.consolation is None and c.status == "active" and c.slots == ()
    assert error_of(mutate(BASE, {"id": None})).startswith("src: id: required")


# ------------------------------------------------------------ odds in ppm
@pytest.mark.parametrize("text,ppm", [
    ("12.5%", 125_000), ("0%", 0), ("100%", 1_000_000), ("100.0000%", 1_000_000), ("0.0001%", 1),
    ("20%", 200_000), ("5.000000%", 50_000), ("33.3333%", 333_333), ("0.5%", 5_000), ("007%", 70_000),
])
def test_percent_to_ppm_exact(text: str, ppm: int) -> None:
    assert parse_percent_ppm(text) == ppm
    assert campaign_from_json(mutate(BASE, {"odds_ppm": DELETE, "odds": text})).odds_ppm == ppm


@pytest.mark.parametrize("text", ["0.00005%", "33.33333%", "100.0001%", "101%", "12,5%", "12.5", " 12.5%",
                                  "-1%", "1e1%", "%", ".5%", "5.%", "12.5 %"])
def test_percent_rejected(text: str) -> None:
    with pytest.raises(InvalidArgument, match=r"^odds: "):
        parse_percent_ppm(text)


# ------------------------------------------------------------ slots
def _with_slots(*slots: tuple[str, str, int], tz: str = "Asia/Shanghai", odds: int = 1) -> Campaign:
    return campaign_from_json(mutate(BASE, {
        "timezone": tz, "odds_ppm": odds,
        "slots": [{"start": s, "end": e, "odds_ppm": p} for s, e, p in slots]}))


def test_slot_wrapping_midnight() -> None:
    c = _with_slots(("22:00", "06:00", 500))
    at = {t: c.odds_at(datetime.combine(date(2026, 3, 5), t, SHANGHAI)) for t in
          (time(21, 59, 59), time(22), time(23, 59), time(0), time(5, 59, 59, 999_999), time(6), time(12))}
    assert at == {time(21, 59, 59): 1, time(22): 500, time(23, 59): 500, time(0): 500,
                  time(5, 59, 59, 999_999): 500, time(6): 1, time(12): 1}
    # the instant is converted to local time first: 14:30 UTC is 22:30 in Shanghai
    assert c.odds_at(datetime(2026, 3, 5, 14, 30, tzinfo=UTC)) == 500
    # 14:30-05:00 is 19:30 UTC, 03:30 the next morning in Shanghai: inside the slot
    assert c.odds_at(datetime(2026, 3, 5, 14, 30, tzinfo=timezone(timedelta(hours=-5)))) == 500
    # 04:30 UTC is 12:30 in Shanghai: outside
    assert c.odds_at(datetime(2026, 3, 5, 4, 30, tzinfo=UTC)) == 1


def test_slot_to_midnight_and_adjacent_slots() -> None:
    c = _with_slots(("08:00", "12:00", 10), ("12:00", "18:00", 20), ("18:00", "00:00", 30))
    local = [datetime(2026, 4, 1, h, m, tzinfo=SHANGHAI) for h, m in ((7, 59), (8, 0), (11, 59), (12, 0), (17, 59),
                                                                     (18, 0), (23, 59), (0, 0))]
    assert [c.odds_at(t) for t in local] == [1, 10, 10, 20, 20, 30, 30, 1]


def test_slots_follow_the_wall_clock_in_a_dst_zone() -> None:
    c = _with_slots(("08:00", "20:00", 7), tz="Europe/Berlin")
    assert c.odds_at(datetime(2026, 7, 1, 6, 0, tzinfo=UTC)) == 7    # 08:00 CEST
    assert c.odds_at(datetime(2026, 7, 1, 5, 59, tzinfo=UTC)) == 1   # 07:59 CEST
    assert c.odds_at(datetime(2026, 12, 1, 7, 0, tzinfo=UTC)) == 7   # 08:00 CET
    assert c.odds_at(datetime(2026, 12, 1, 6, 30, tzinfo=UTC)) == 1  # 07:30 CET
    assert c.odds_at(datetime(2026, 12, 1, 19, 0, tzinfo=UTC)) == 1  # 20:00 CET


def test_naive_instants_rejected() -> None:
    c = campaign_from_json(BASE)
    for method in (c.odds_at, c.window_contains, c.local_day):
        with pytest.raises(InvalidArgument, match="timezone-aware"):
            method(datetime(2026, 4, 1, 12))


# ------------------------------------------------------------ windows and days
def test_window_and_day_in_shanghai() -> None:
    c = campaign_from_json(BASE)  # 2026-03-01 to 2026-07-01, Asia/Shanghai (UTC+8, no DST)
    assert c.start.utcoffset() == c.end.utcoffset() == timedelta(hours=8)
    assert not c.window_contains(datetime(2026, 2, 28, 15, 59, 59, tzinfo=UTC))
    assert c.window_contains(datetime(2026, 2, 28, 16, 0, tzinfo=UTC))
    assert c.window_contains(datetime(2026, 6, 30, 15, 59, 59, 999_999, tzinfo=UTC))
    assert not c.window_contains(datetime(2026, 6, 30, 16, 0, tzinfo=UTC))
    assert c.local_day(datetime(2026, 3, 1, 15, 59, 59, tzinfo=UTC)) == "2026-03-01"
    assert c.local_day(datetime(2026, 3, 1, 16, 0, tzinfo=UTC)) == "2026-03-02"
    # no DST: midnight is 16:00 UTC in summer too
    assert c.local_day(datetime(2026, 7, 15, 15, 59, tzinfo=UTC)) == "2026-07-15"
    assert c.local_day(datetime(2026, 7, 15, 16, 0, tzinfo=UTC)) == "2026-07-16"
    # 02:30 on the day Europe skips it exists in Shanghai
    assert campaign_from_json(mutate(BASE, {"start": "2026-03-29T02:30:00"})).start.hour == 2


def test_window_and_day_in_berlin() -> None:
    # DST starts 2026-03-29 02:00 -> 03:00 and ends 2026-10-25 03:00 -> 02:00
    c = campaign_from_json(mutate(BASE, {"timezone": "Europe/Berlin", "start": "2026-03-29",
                                         "end": "2026-10-25T04:00:00"}))
    assert c.start.utcoffset() == timedelta(hours=1) and c.end.utcoffset() == timedelta(hours=1)
    assert not c.window_contains(datetime(2026, 3, 28, 22, 59, 59, tzinfo=UTC))
    assert c.window_contains(datetime(2026, 3, 28, 23, 0, tzinfo=UTC))
    assert c.window_contains(datetime(2026, 10, 25, 2, 59, 59, tzinfo=UTC))   # 03:59:59 CET
    assert not c.window_contains(datetime(2026, 10, 25, 3, 0, tzinfo=UTC))
    # the second 02:30 of 25 October (fold=1, CET) is compared as an instant, not as wall time
    assert c.window_contains(datetime(2026, 10, 25, 2, 30, fold=1, tzinfo=BERLIN))
    # local midnight is 22:00 UTC in summer, 23:00 UTC in winter
    assert c.local_day(datetime(2026, 7, 1, 21, 59, tzinfo=UTC)) == "2026-07-01"
    assert c.local_day(datetime(2026, 7, 1, 22, 0, tzinfo=UTC)) == "2026-07-02"
    assert c.local_day(datetime(2026, 12, 1, 22, 59, tzinfo=UTC)) == "2026-12-01"
    assert c.local_day(datetime(2026, 12, 1, 23, 0, tzinfo=UTC)) == "2026-12-02"
    assert c.local_day(datetime(2026, 3, 28, 23, 30, tzinfo=UTC)) == "2026-03-29"


@pytest.mark.parametrize("key,value,fragment", [
    ("start", "2026-03-29T02:30:00", "does not exist in Europe/Berlin"),
    ("end", "2026-10-25T02:30:00", "occurs twice in Europe/Berlin"),
])
def test_dst_gaps_and_repeats_rejected(key: str, value: str, fragment: str) -> None:
    doc = mutate(BASE, {"timezone": "Europe/Berlin", "start": "2026-03-01", "end": "2026-12-01", key: value})
    message = error_of(doc)
    assert message.startswith(f"src: {key}: ") and fragment in message, message


# ------------------------------------------------------------ regions, tiers, products
def test_region_include_and_exclude() -> None:
    c = campaign_from_json(mutate(BASE, {"regions_include": ["44", "510104"], "regions_exclude": ["4401"]}))
    assert c.region_allowed(440305) and c.region_allowed(510104)
    assert not c.region_allowed(440106)   # excluded wins over included
    assert not c.region_allowed(510105) and not c.region_allowed(110105)
    assert not c.region_allowed(None)     # unknown region: only when nothing is included
    everywhere = campaign_from_json(BASE)
    assert everywhere.region_allowed(None) and everywhere.region_allowed(820000)
    for bad in (44, 4401, 1_000_000, True, "440106"):
        with pytest.raises(InvalidArgument, match="adcode"):
            everywhere.region_allowed(bad)  # type: ignore[arg-type]


def test_tiers_and_products() -> None:
    store = campaign_from_json(STORE_BASE)
    assert store.tier_for(0).name == "bronze" and store.tier_for(5_000).name == "silver"  # type: ignore[union-attr]
    with pytest.raises(InvalidArgument):
        store.tier_for(-1)
    c = campaign_from_json(mutate(BASE, {"products": {"levels": ["case", "pallet"]}}))
    assert c.products.skus == () and c.matches_product("ANY", "pallet") and not c.matches_product("ANY", "item")
    assert campaign_from_json(BASE).products.levels == ("item",)
    with pytest.raises(NotFound):
        c.prize("nope")


def test_win_on_nth_scan_canonical_and_frozen() -> None:
    c = campaign_from_json(mutate(BASE, {"win_on_nth_scan": [10, 1, 5]}))
    assert c.win_on_nth_scan == (1, 5, 10)
    with pytest.raises(dataclasses.FrozenInstanceError):
        c.odds_ppm = 5  # type: ignore[misc]


# ------------------------------------------------------------ caps
def test_caps_defaults_for_consumer_cash() -> None:
    assert campaign_from_json(BASE).caps == Caps(10, 100_000, None, None)
    c = campaign_from_json(mutate(BASE, {"caps": {"per_user_daily_count": 3, "per_user_total_amount_fen": 5_000}}))
    assert c.caps == Caps(3, 100_000, None, 5_000)
    at_limit = campaign_from_json(mutate(BASE, {"caps": {"per_user_daily_count": 10,
                                                         "per_user_daily_amount_fen": 100_000}}))
    assert at_limit.caps == Caps(10, 100_000)
    # no cash prize, or a store campaign: no WeChat defaults and no WeChat limit
    points_only = mutate(BASE, {"prizes": [{"id": "p", "kind": "points", "points": 5}]})
    assert campaign_from_json(points_only).caps == Caps()
    store_cash = mutate(STORE_BASE, {"prizes": [{"id": "c", "kind": "cash", "amount_fen": 500}],
                                     "caps": {"per_user_daily_count": 50, "per_user_daily_amount_fen": 500_000}})
    assert campaign_from_json(store_cash).caps == Caps(50, 500_000)
    assert campaign_from_json(mutate(STORE_BASE, {"prizes": [{"id": "c", "kind": "cash", "amount_fen": 500}]}
                                     )).caps == Caps()


# ------------------------------------------------------------ round trips
_ids = st.from_regex(r"[A-Za-z0-9_-]{1,12}", fullmatch=True)
_hhmm = st.tuples(st.integers(0, 23), st.sampled_from([0, 15, 30, 59])).map(lambda t: f"{t[0]:02d}:{t[1]:02d}")


@st.composite
def _slots(draw: st.DrawFn) -> list[dict[str, Any]]:
    # distinct boundaries in minutes, paired in order: never overlapping; maybe rotate
    # the last pair to wrap midnight
    marks = sorted(draw(st.sets(st.integers(0, 1439), max_size=6)))
    pairs = [(marks[i], marks[i + 1]) for i in range(0, len(marks) - 1, 2)]
    if pairs and draw(st.booleans()):
        # the last slot wraps midnight, ending at or before the first one starts
        pairs[-1] = (pairs[-1][0], draw(st.integers(0, pairs[0][0])))
    return [{"start": f"{a // 60:02d}:{a % 60:02d}", "end": f"{b // 60:02d}:{b % 60:02d}",
             "odds_ppm": draw(st.integers(0, 1_000_000))} for a, b in pairs if a != b]


@st.composite
def _prize(draw: st.DrawFn, pid: str) -> dict[str, Any]:
    kind = draw(st.sampled_from(["cash", "points", "coupon"]))
    p: dict[str, Any] = {"id": pid, "kind": kind, "weight": draw(st.integers(1, 10_000))}
    if kind == "cash":
        p["amount_fen"] = draw(st.integers(100, 20_000))
        p["budget_amount_fen"] = draw(st.none() | st.integers(0, 10**12))
    elif kind == "points":
        p["points"] = draw(st.integers(1, 10**6))
    else:
        ctype = draw(st.sampled_from(["full_reduction", "discount", "gift"]))
        coupon: dict[str, Any] = {"type": ctype, "valid_days": draw(st.integers(1, 365))}
        if ctype == "full_reduction":
            coupon["threshold_fen"] = draw(st.integers(1, 10**6))
            coupon["value_fen"] = draw(st.integers(1, coupon["threshold_fen"]))
        elif ctype == "discount":
            coupon["percent_off"] = draw(st.integers(1, 99))
        else:
            coupon["gift_sku"] = draw(_ids)
        p["coupon"] = coupon
    p["budget_count"] = draw(st.none() | st.integers(0, 10**9))
    return p


@st.composite
def _campaign_docs(draw: st.DrawFn) -> dict[str, Any]:
    actor = draw(st.sampled_from(["consumer", "store"]))
    start = draw(st.datetimes(datetime(2020, 1, 1), datetime(2030, 1, 1))).replace(hour=12, microsecond=0)
    length = draw(st.timedeltas(timedelta(hours=1), timedelta(days=400)))
    prize_ids = draw(st.lists(_ids, min_size=1, max_size=4, unique=True))
    prizes = [draw(_prize(pid)) for pid in prize_ids]
    doc: dict[str, Any] = {
        "id": draw(_ids), "name": draw(st.text(st.characters(codec="utf-8", exclude_categories=("Cc", "Cs", "Z")),
                                               min_size=1, max_size=20)),
        "timezone": draw(st.sampled_from(["Asia/Shanghai", "Europe/Berlin", "UTC", "America/New_York"])),
        "start": start.isoformat() if draw(st.booleans()) else start.date().isoformat(),
        "end": (start + length).replace(hour=13).isoformat(),
        "status": draw(st.sampled_from(["active", "paused"])), "actor": actor,
        "products": {"skus": draw(st.lists(_ids, max_size=3, unique=True)),
                     "levels": draw(st.lists(st.sampled_from(["item", "case", "pallet"]), min_size=1, unique=True))},
        "regions_include": draw(st.lists(st.sampled_from(["11", "31", "44", "4401", "440106", "51"]), unique=True)),
        "regions_exclude": draw(st.lists(st.sampled_from(["4403", "110105", "82"]), unique=True)),
        "odds_ppm": draw(st.integers(0, 1_000_000)), "slots": draw(_slots()), "prizes": prizes,
        "first_scan_always_wins": draw(st.booleans()),
        "win_on_nth_scan": draw(st.lists(st.integers(1, 1000), unique=True, max_size=4)),
        "blacklist": draw(st.lists(_ids, unique=True, max_size=3)),
        "verdict_policy": {"diverted_can_win": draw(st.booleans()), "suspect_clone_can_win": draw(st.booleans())},
        "plugins": draw(st.lists(st.sampled_from(["a.b:c", "rules:check", "x.y.z:Klass.method"]), unique=True)),
    }
    non_cash = [p["id"] for p in prizes if p["kind"] != "cash"]
    if len(prizes) > 1 and non_cash and draw(st.booleans()):
        doc["consolation"] = non_cash[0]
    has_cash = any(p["kind"] == "cash" for p in prizes)
    caps: dict[str, Any] = {"per_user_total_count": draw(st.none() | st.integers(1, 1000))}
    if actor == "consumer" and has_cash:
        caps["per_user_daily_count"] = draw(st.none() | st.integers(1, 10))
        caps["per_user_daily_amount_fen"] = draw(st.none() | st.integers(1, 100_000))
    if has_cash:
        caps["per_user_total_amount_fen"] = draw(st.none() | st.integers(1, 10**9))
    doc["caps"] = caps
    if actor == "store":
        mins = sorted(draw(st.sets(st.integers(1, 10**6), max_size=3)))
        doc["store_tiers"] = [{"name": f"t{i}", "min_points": m, "multiplier_pct": draw(st.integers(100, 1000))}
                              for i, m in enumerate([0, *mins])]
    return doc


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_campaign_docs())
def test_round_trip_property(doc: dict[str, Any]) -> None:
    c = campaign_from_json(doc)
    stored = c.to_json()
    again = campaign_from_json(json.loads(json.dumps(stored, allow_nan=False)))
    assert again == c
    assert again.to_json() == stored
    # and the stored form is also valid TOML-free input to load_campaign
    assert load_campaign(json.dumps(stored), "stored.json") == c


def test_an_unknown_region_is_allowed_only_without_regions_or_when_the_campaign_says_so() -> None:
    excluded = campaign_from_json(mutate(BASE, {"regions_exclude": ["11"]}))
    assert not excluded.region_allowed(None) and excluded.region_allowed(510104)
    said = campaign_from_json(mutate(BASE, {"regions_exclude": ["11"], "unknown_region_can_win": True}))
    assert said.region_allowed(None) and not said.region_allowed(110105)
    assert campaign_from_json(said.to_json()).unknown_region_can_win
