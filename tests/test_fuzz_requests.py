"""Hostile-client fuzz (issue 12, item 11): the worker's scan checks, the campaign
parser and the code decoder, fed what a hostile or careless client can send.

- ``server.service.check_scan`` over ScanRequest messages with arbitrary field
  values (as they arrive: serialised and parsed again). What it lets by, the
  library lets by too (``rewards.scan_problem``), and ``rewards.decide_scans``
  decides it on a real data directory without raising: a decision that survives
  JSON and the wire, the stored decision for a retry, ``RequestIdReused`` for an id
  reused with other content. What it refuses, it refuses naming a real field.
- ``load_campaign`` over TOML (and JSON) documents built around the real campaign
  schema, then mutated: it compiles (and round-trips) or raises InvalidArgument
  naming a field of the document, never any other exception.
- ``DataDir.verify_codes`` over arbitrary text, through all three input forms and
  both batch paths: one status per input, the one the reference decoder gives.

The parsers of CSV and EPCIS files are fuzzed in tests/test_hostile_input.py; the
core decoder against the reference over short random text in
tests/test_format_properties.py.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import json
import math
import re
import tomllib
from collections.abc import Iterator
from typing import Any

import msgspec
import numpy as np
import pytest
from google.protobuf.message import DecodeError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import scangate
from scangate import CodeStatus, InvalidArgument, ingest, rewards, wire
from scangate.campaigns import campaign_from_json, load_campaign
from scangate.codes import SMALL_BATCH
from scangate.clock import current as current_clock
from scangate.decide.prepared import prepare
from scangate.rewards import Decision, RequestIdReused, ScanRequest
from scangate.server import scan_service, scanlink
from scangate.server.service import check_scan
from scangate.v1 import scan_pb2
from scangate.verdicts import VerdictConfig

try:
    import reference_format as ref
except ImportError:  # tests/ made a package
    from tests import reference_format as ref  # type: ignore[no-redef]

# The window of the campaign that scans without a time (the clock's now) fall in.
WINDOW = ("2026-01-01", "2030-01-01")
# Every instant a scan may carry (epoch 0 to past rewards.MAX_TIME_MS, 9999-12-30):
# scans at extreme times reach the day, slot and cap arithmetic. No date of today in it.
ALL_TIME = ("1970-01-01T08:00:00", "9999-12-31")

# Hypothesis keeps no example database here: nothing written into the checkout.
FUZZ = settings(deadline=None, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                       HealthCheck.data_too_large])

DISTRICTS = (510104, 510107, 440106, 440103, 110105, 310115, 500101, 513201)   # real (geo's table)


def _campaigns() -> list[str]:
    consumer = f"""
id = "fuzz"
name = "Fuzz red packets"
start = "{WINDOW[0]}"
end = "{WINDOW[1]}"
actor = "consumer"
odds = "30%"
first_scan_always_wins = true
consolation = "pts"
regions_include = ["51", "44"]
regions_exclude = ["4401"]
[products]
skus = ["BEER"]
levels = ["item", "case"]
[[slots]]
start = "18:00"
end = "02:00"
odds = "60%"
[[prizes]]
id = "cny"
kind = "cash"
amount_fen = 188
budget_count = 20
budget_amount_fen = 3000
[[prizes]]
id = "cpn"
kind = "coupon"
budget_count = 10
coupon = {{ type = "full_reduction", threshold_fen = 1000, value_fen = 200, valid_days = 30 }}
[[prizes]]
id = "pts"
kind = "points"
points = 5
[caps]
per_user_daily_count = 3
per_user_total_count = 8
per_user_daily_amount_fen = 400
[verdict_policy]
diverted_can_win = true
"""
    all_time = f"""
id = "all-time"
name = "Any time at all"
start = {ALL_TIME[0]}
end = {ALL_TIME[1]}
actor = "consumer"
odds = "50%"
unknown_region_can_win = true
regions_exclude = ["11"]
win_on_nth_scan = [2, 3]
[products]
skus = ["WIDE"]
[[slots]]
start = "00:00"
end = "00:01"
odds = "100%"
[[prizes]]
id = "cny"
kind = "cash"
amount_fen = 100
[[prizes]]
id = "pts"
kind = "points"
points = 1
[caps]
per_user_daily_count = 2
"""
    stores = f"""
id = "stores"
name = "Store points"
start = {ALL_TIME[0]}
end = {ALL_TIME[1]}
actor = "store"
odds = "80%"
[products]
levels = ["item", "case"]
[[prizes]]
id = "pts"
kind = "points"
points = 7
[[store_tiers]]
name = "base"
min_points = 0
multiplier_pct = 100
[[store_tiers]]
name = "gold"
min_points = 20
multiplier_pct = 250
"""
    return [consumer, all_time, stores]


@dataclasses.dataclass
class Site:
    dd: scangate.DataDir
    codes: list[str]                    # issued: BEER items, BEER cases, WIDE items
    # (client, request id) -> (what the fingerprint covers, the decision): the model
    # of the requests index that decide_scans keeps
    seen: dict[tuple[str, str], tuple[tuple[Any, ...], Decision]]
    reused: int = 0                     # requests refused: their id was used for another scan


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    dd = scangate.init_data_dir(tmp_path_factory.mktemp("fuzz") / "data")
    try:
        for text in _campaigns():
            rewards.put_campaign(dd, text, "fuzz.toml")
        beer = dd.issue_codes("BEER", "item", 30).as_strings()
        cases = dd.issue_codes("BEER", "case", 4).as_strings()
        wide = dd.issue_codes("WIDE", "item", 30).as_strings()
        # a third of the beer shipped to a Sichuan dealer: scans elsewhere are diverted
        ingest.load_dealers_csv(dd, b"dealer_id,name,territory\nD1,Chengdu,51\n")
        rows = "".join(f"{c},D1,2024-05-01T08:00:00Z,S1\n" for c in beer[:10])
        ingest.ship_csv(dd, f"unit,dealer_id,shipped_at,shipment_id\n{rows}".encode())
        yield Site(dd, beer + cases + wide, {})
    finally:
        dd.close()


# ---------------------------------------------------------------------- strings
_ID_CHARS = "abcdefghijklmnopqrstuvwxyz0123456789-_:."
_SHORT_HOSTILE = ["", " ", "\x00", "a\x00b", "\t", "line\nbreak", "\r", "\x7f", "\x85", "\u2028", "\u200b",
                  "\ufeff", "'\"\\", "%s%n{0}", "../../etc/passwd", "null", "-1", "１２３"]
# long ones built when drawn (a strategy's repr shows its literals)
hostile_text = st.one_of(st.sampled_from(_SHORT_HOSTILE), st.sampled_from(
    [("\U0001F600", 128), ("\U0001F600", 127), ("é", 128), ("x", 128), ("x", 129), ("x", 512), ("x", 513),
     ("x", 10_000)]).map(lambda p: p[0] * p[1]))

texts = st.one_of(
    st.text(alphabet=_ID_CHARS, min_size=1, max_size=24),
    st.text(max_size=40),                                # any code point but lone surrogates
    st.text(min_size=120, max_size=140),                 # around the 128-character bound
    hostile_text,
)
# Each field has values a careful client sends and values anything may send. A
# scan takes the first for most fields and the second for a few (often none), so
# that many scans get past the checks into decisions, where retries and reused
# ids meet too (a few ids on purpose).
_PLAIN_IDS = st.one_of(st.sampled_from(["r-1", "r-2", "重复-3"]),
                       st.text(alphabet=_ID_CHARS, min_size=1, max_size=24))
_PLAIN_ACTORS = st.one_of(st.sampled_from(["alice", "bob", "商户-7", "o6_bmjrPTlm6_2sgVt7hMZOPfL2M"]),
                          st.text(alphabet=_ID_CHARS, min_size=1, max_size=24))
# a code: an issued one (as printed, lower case, in a URL, with noise around), or any text
_ISSUED = st.tuples(st.just("issued"), st.integers(0, 63), st.sampled_from(["as is", "lower", "url", "spaced", "tail"]))
_DEGREES = st.sampled_from([90.0, -90.0, 180.0, -180.0, 90.000001, -0.0, 5e-324, 30.66, 104.06])
FIELD_VALUES: dict[str, tuple[st.SearchStrategy[Any], st.SearchStrategy[Any]]] = {
    "request_id": (_PLAIN_IDS, texts),
    # plain: issued, or a forgery in the code's own shape
    "code": (st.one_of(_ISSUED, _ISSUED, st.tuples(st.just("text"), st.text(alphabet=ref.ALPHABET, min_size=29,
                                                                            max_size=29), st.just(""))),
             st.one_of(_ISSUED, st.tuples(st.just("text"), texts, st.just("")))),
    "actor": (_PLAIN_ACTORS, texts),
    "actor_type": (st.sampled_from([0, 1, 2]), st.integers(-2**31, 2**31 - 1)),
    "region": (st.one_of(st.just(0), st.sampled_from(DISTRICTS)),
               st.one_of(st.integers(100000, 999999), st.integers(0, 2**32 - 1),
                         st.sampled_from([99999, 999999, 1_000_000, 440100, 2**32 - 1]))),
    # (lat, lon), either of them absent
    "lat": (st.one_of(st.just((None, None)), st.tuples(st.floats(-90, 90), st.floats(-180, 180))),
            st.tuples(st.one_of(st.none(), st.floats(), _DEGREES), st.one_of(st.none(), st.floats(), _DEGREES))),
    "time_ms": (st.one_of(st.just(0), st.integers(rewards.MIN_TIME_MS, rewards.MAX_TIME_MS)),
                st.one_of(st.integers(-2**63, 2**63 - 1),
                          st.sampled_from([1, -1, rewards.MAX_TIME_MS, rewards.MAX_TIME_MS + 1, 2**53, 2**62,
                                           2**63 - 1, -2**63]))),
    "actor_tags": (st.lists(st.sampled_from(["vip", "member", "新客"]), max_size=4),
                   st.one_of(st.lists(texts, max_size=6),
                             st.integers(30, 40).map(lambda n: [f"t{i}" for i in range(n)]))),
}
# Fields the message has beyond those above (the datum of lat/lon): any value of
# their type, a valid one mostly 0.
_HAS_DATUM = "datum" in scan_pb2.ScanRequest.DESCRIPTOR.fields_by_name
if _HAS_DATUM:
    FIELD_VALUES["datum"] = (st.sampled_from([0, 1]), st.one_of(st.sampled_from([0, 1, 2, 3, -1]),
                                                                st.integers(-2**31, 2**31 - 1)))


@st.composite
def scan_fields(draw: st.DrawFn) -> dict[str, Any]:
    hostile = draw(st.sets(st.sampled_from(sorted(FIELD_VALUES)), max_size=3))
    return {name: draw(pair[1] if name in hostile else pair[0]) for name, pair in FIELD_VALUES.items()}


def _code(site: Site, spec: tuple[str, Any, str]) -> str:
    kind, value, variant = spec
    if kind == "text":
        return str(value)
    code = site.codes[value % len(site.codes)]
    return {"as is": code, "lower": code.lower(), "url": f"https://scn.example.com/{code}",
            "spaced": f"  {code}\t", "tail": f"{code}?from=wechat#x"}[variant]


def _message(site: Site, rid: str, code: str, actor: str, actor_type: int, region: int, lat: float | None,
             lon: float | None, time_ms: int, tags: list[str], **more: int) -> scan_pb2.ScanRequest:
    m = scan_pb2.ScanRequest(request_id=rid, code=code, actor=actor, actor_type=actor_type, region=region,
                             time_ms=time_ms, actor_tags=tags, **more)
    if lat is not None:
        m.lat = lat
    if lon is not None:
        m.lon = lon
    # what a worker sees: the message as it crossed the wire
    return scan_pb2.ScanRequest.FromString(m.SerializeToString())


_FIELDS = tuple(scan_pb2.ScanRequest.DESCRIPTOR.fields_by_name)


def _real_paths(where: str, m: scan_pb2.ScanRequest) -> set[str]:
    return {where + f for f in _FIELDS} | {f"{where}actor_tags[{j}]" for j in range(len(m.actor_tags))}


_LIBRARY_FIELDS = {f.name for f in dataclasses.fields(ScanRequest)} - {"time_ms"}


def _as_decided(m: scan_pb2.ScanRequest, client: str) -> ScanRequest:
    """The request as the writer process decides ``m``: made a request by the
    worker (server/scan_service.py: GCJ-02 coordinates converted to WGS-84), sent
    as an intent and read back by the writer with the calling client's name
    (server/scanlink.py)."""
    (r,) = scanlink.decode_intents(scanlink.encode_intents(scan_service.requests_of([m])), client)
    return r


def _content(r: ScanRequest) -> tuple[Any, ...]:
    """What makes a scan this scan (rewards' fingerprint): a retry must repeat it."""
    return (r.code, r.actor, r.actor_type, r.region,
            None if r.lat is None else repr(float(r.lat)), None if r.lon is None else repr(float(r.lon)))


def _library_refuses(site: Site, r: ScanRequest) -> bool:
    if rewards.scan_problem(r) is not None:
        return True
    try:    # checks that need data (a region no district has) raise before anything is written
        rewards.decide_scans(site.dd, [dataclasses.replace(r, request_id=f"{r.request_id[:100]}-probe")])
    except InvalidArgument:
        return True
    return False


# an example that fails may hold 10,000-character strings: its report is long, not wrong
@pytest.mark.filterwarnings("ignore:Generating overly large repr")
@settings(FUZZ, max_examples=500)
@given(fields=scan_fields(), client=st.sampled_from(["", "app-1", "商城"]), where=st.sampled_from(["", "scans[7]."]),
       prepared=st.booleans())
def test_fuzz_scan_request_checks(site: Site, fields: dict[str, Any], client: str, where: str,
                                  prepared: bool) -> None:
    lat, lon = fields["lat"]
    more = {"datum": fields["datum"]} if _HAS_DATUM else {}
    m = _message(site, fields["request_id"], _code(site, fields["code"]), fields["actor"], fields["actor_type"],
                 fields["region"], lat, lon, fields["time_ms"], fields["actor_tags"], **more)
    problems = check_scan(m, where, client)
    r = _as_decided(m, client)
    if problems:
        paths = _real_paths(where, m)
        for field, why in problems:
            assert field in paths, (field, why)
            assert why and len(why) <= 200, (field, why)     # a short reason, never the whole value
        assert len(set(problems)) == len(problems), problems
        # a refusal of a field the library's request has too is one the library makes
        # too; not of the time (the server's window around its clock is a policy of
        # its own) nor of what the wire alone carries (the datum of lat/lon)
        if any(f[len(where):].split("[")[0] in _LIBRARY_FIELDS for f, _ in problems):
            assert _library_refuses(site, r), (problems, r)
        return
    assert rewards.scan_problem(r) is None, r
    # the writer decides it unchecked (it was checked once, above): never raises; or
    # a worker prepares it (scangate.decide.prepared) and the writer commits what
    # came through the link: never raises either
    if prepared:
        p = prepare(site.dd, [r], VerdictConfig(), current_clock()())
        part = [r] if p is None else scanlink._PREPARED.decode(scanlink._ENCODER.encode(p))
        ((got,),) = rewards.decide_prepared(site.dd, [part])
    else:
        (got,) = rewards.decide_checked(site.dd, [r])
    key, content = (client, r.request_id), _content(r)
    before = site.seen.get(key)
    if before is None:
        assert isinstance(got, Decision) and got.request_id == r.request_id, got
        site.seen[key] = (content, got)
        # a retry (another time too: a retry may be stamped anew) gets it back as it was
        assert rewards.decide_scans(site.dd, [dataclasses.replace(r, time_ms=None)]) == [got]
    elif before[0] == content:                       # a retry: the stored decision, as it was
        assert got == before[1]
    else:                                            # the id reused for another scan: refused, nothing written
        assert isinstance(got, RequestIdReused) and got.field == "request_id", got
        site.reused += 1
        return
    assert isinstance(got, Decision)
    assert got.verdict.label in ("genuine", "counterfeit", "diverted", "suspect_clone", "revoked")
    # its JSON and its ScanDecision both give it back unchanged, the verdict's message
    # as they told it (``said``; the brand's hotline in it: a reply carries no ``hotline``)
    told = msgspec.structs.replace(got, verdict=msgspec.structs.replace(got.verdict, said=got.verdict.words(),
                                                                        hotline=None))
    from_json = Decision.from_json(json.loads(json.dumps(got.to_json())))
    from_proto = wire.decision_from_proto(scan_pb2.ScanDecision.FromString(
        wire.decision_to_proto(got).SerializeToString()))
    assert from_json.to_json() == from_proto.to_json() == got.to_json()
    assert from_json == told, (from_json.verdict, told.verdict)
    assert from_proto == told, (from_proto.verdict, told.verdict)


def test_the_fuzz_reached_decisions_of_every_kind(site: Site) -> None:
    """The fuzz above is only worth its examples if many of them got past the checks
    and into decisions, of genuine codes and of others."""
    if not site.seen:        # run alone: run the fuzz first
        test_fuzz_scan_request_checks(site=site)
    decisions = [d for _, d in site.seen.values()]
    assert len(decisions) >= 20, len(decisions)
    assert any(d.verdict.label == "counterfeit" for d in decisions)
    assert any(d.verdict.code_status.label == "genuine" for d in decisions)
    assert any(d.award is not None for d in decisions)
    assert site.reused >= 1


@pytest.mark.parametrize("raw", [
    b"\x1a\x03\xed\xa0\x80",            # actor: a lone surrogate's UTF-8 (CESU) bytes
    b"\x0a\x02\xff\xfe",                # request_id: not UTF-8 at all
    b"\x12\x05ab\xc0\x80c",             # code: an overlong NUL
])
def test_the_wire_cannot_carry_text_that_is_not_utf8(raw: bytes) -> None:
    """Why check_scan need not look for lone surrogates: protobuf refuses a string
    field that is not UTF-8, when parsed and when set, so none reaches a worker's
    check (the library, which a caller can hand any str, checks them itself)."""
    with pytest.raises(DecodeError):
        scan_pb2.ScanRequest.FromString(raw)
    with pytest.raises(ValueError):
        scan_pb2.ScanRequest(actor="a\ud800")
    assert rewards.scan_problem(ScanRequest("r", "c", "a\ud800")) == (
        "actor", "contains a lone surrogate (U+D800): not valid Unicode text")


# ---------------------------------------------------------------------- campaigns
_SCHEMA: dict[str, tuple[str, ...]] = {
    "": ("id", "name", "timezone", "start", "end", "status", "actor", "products", "regions_include",
         "regions_exclude", "odds", "odds_ppm", "slots", "prizes", "consolation", "caps", "first_scan_always_wins",
         "unknown_region_can_win", "win_on_nth_scan", "one_reward_per_code", "store_tiers", "blacklist",
         "verdict_policy", "plugins"),
    "products": ("skus", "levels"),
    "slots[]": ("start", "end", "odds", "odds_ppm"),
    "prizes[]": ("id", "kind", "weight", "amount_fen", "points", "coupon", "budget_count", "budget_amount_fen"),
    "coupon": ("type", "threshold_fen", "value_fen", "percent_off", "gift_sku", "valid_days"),
    "caps": ("per_user_daily_count", "per_user_daily_amount_fen", "per_user_total_count",
             "per_user_total_amount_fen"),
    "store_tiers[]": ("name", "min_points", "multiplier_pct"),
    "verdict_policy": ("diverted_can_win", "suspect_clone_can_win"),
}
_KNOWN_KEYS = sorted({k for keys in _SCHEMA.values() for k in keys})


def _base_campaign() -> dict[str, Any]:
    """A campaign that compiles, using every part of the schema (the mutations
    below start from it)."""
    return {
        "id": "fuzz", "name": "扫码赢红包 Fuzz", "timezone": "Asia/Shanghai",
        "start": dt.date(2026, 1, 1), "end": dt.datetime(2030, 1, 1, 8, 30), "status": "active", "actor": "consumer",
        "products": {"skus": ["BEER-500", "BEER-330"], "levels": ["item", "case"]},
        "regions_include": ["51", "50"], "regions_exclude": ["5132"], "odds": "10%",
        "slots": [{"start": "18:00", "end": "23:00", "odds": "25%"}, {"start": "23:30", "end": "01:00", "odds_ppm": 5}],
        "prizes": [
            {"id": "cny-188", "kind": "cash", "amount_fen": 188, "budget_count": 2000, "budget_amount_fen": 376_000},
            {"id": "cpn", "kind": "coupon", "weight": 3,
             "coupon": {"type": "full_reduction", "threshold_fen": 1000, "value_fen": 200, "valid_days": 30}},
            {"id": "gift", "kind": "coupon", "coupon": {"type": "gift", "gift_sku": "BEER-330", "valid_days": 7}},
            {"id": "pts", "kind": "points", "points": 10},
        ],
        "consolation": "pts",
        "caps": {"per_user_daily_count": 3, "per_user_daily_amount_fen": 564, "per_user_total_count": 200,
                 "per_user_total_amount_fen": 37_600},
        "first_scan_always_wins": True, "unknown_region_can_win": False, "win_on_nth_scan": [5, 10],
        "one_reward_per_code": True, "blacklist": ["o6_bad"],
        "verdict_policy": {"diverted_can_win": False, "suspect_clone_can_win": False},
    }


def _base_store_campaign() -> dict[str, Any]:
    """A store campaign: tiers, points, a coupon; no cash, so no amount caps."""
    return {
        "id": "stores", "name": "Store points", "timezone": "Europe/London", "start": "2026-03-29T00:30:00",
        "end": dt.datetime(2027, 1, 1), "actor": "store", "odds_ppm": 800_000, "products": {"levels": ["case"]},
        "prizes": [{"id": "pts", "kind": "points", "points": 7},
                   {"id": "off", "kind": "coupon", "coupon": {"type": "discount", "percent_off": 15,
                                                              "valid_days": 14}}],
        "store_tiers": [{"name": "base", "min_points": 0, "multiplier_pct": 100},
                        {"name": "gold", "min_points": 20, "multiplier_pct": 250}],
        "caps": {"per_user_daily_count": 50},
    }


BASES = {"consumer": _base_campaign, "store": _base_store_campaign}


def _slots_of(doc: dict[str, Any]) -> list[tuple[Any, ...]]:
    """Every place in the base document a value can go: (container, key) pairs."""
    out: list[tuple[Any, ...]] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for k in list(node):
                out.append((node, k))
                walk(node[k])
        elif isinstance(node, list):
            for i, v in enumerate(node):
                out.append((node, i))
                walk(v)

    walk(doc)
    return out


# Dates over all datetime holds: a campaign refuses those that do not convert to
# UTC by name (test_campaign_at_the_edge_of_time, below).
_dates = st.dates(dt.date(1, 1, 1), dt.date(9999, 12, 31))
_scalars = st.one_of(
    st.integers(-2**70, 2**70), st.integers(-5, 2_000_000), st.sampled_from([0, 1, 99, 100, 20_000, 20_001, 2**63 - 1,
                                                                              2**63, 1_000_000, 1_000_001]),
    st.floats(allow_nan=True, allow_infinity=True), st.booleans(), texts,
    st.sampled_from(["12.5%", "100%", "100.0001%", "0.00005%", "0%", "18:00", "24:00", "23:59", "Asia/Shanghai",
                     "America/New_York", "Europe/London", "Not/AZone", "UTC", "cash", "coupon", "points", "gift",
                     "discount", "full_reduction", "item", "case", "pallet", "consumer", "store", "active", "paused",
                     "51", "4401", "440106", "011", "builtins:exit", "os:system", "pts", "cny-188", "2026-03-01",
                     "2026-03-08T02:30:00", "2026-13-01"]),
    _dates, st.datetimes(dt.datetime(1, 1, 1), dt.datetime(9999, 12, 31)),
    st.datetimes(dt.datetime(1, 1, 2), dt.datetime(9999, 12, 30), timezones=st.sampled_from(
        [dt.timezone.utc, dt.timezone(dt.timedelta(hours=8)), dt.timezone(dt.timedelta(hours=-5, minutes=-30))])),
    st.times(), st.times(timezones=st.just(dt.timezone.utc)),
)
_keys = st.one_of(st.sampled_from(_KNOWN_KEYS),
                  st.text(alphabet="abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=12),
                  st.text(min_size=1, max_size=8))
toml_values = st.recursive(_scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                             st.dictionaries(_keys, inner, max_size=4)),
                           max_leaves=8)
mutations = st.lists(st.one_of(
    st.tuples(st.just("set"), st.integers(0, 10_000), toml_values),
    st.tuples(st.just("delete"), st.integers(0, 10_000), st.none()),
    st.tuples(st.just("add"), st.integers(0, 10_000), st.tuples(_keys, toml_values)),
), min_size=0, max_size=4)


def _mutate(doc: dict[str, Any], ops: list[tuple[str, int, Any]]) -> dict[str, Any]:
    for op, at, value in ops:
        places = _slots_of(doc)
        if not places:
            break
        container, key = places[at % len(places)]
        if op == "set":
            container[key] = value
        elif op == "delete":
            del container[key]
        else:
            tables = [t for t, _ in places if isinstance(t, dict)] or [doc]
            name, v = value
            tables[at % len(tables)][name] = v
    return doc


_BARE = re.compile(r"[A-Za-z0-9_-]+")
_ESCAPES = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f", "\r": "\\r"}


def _toml_str(s: str) -> str:
    out = []
    for c in s:
        if c in _ESCAPES:
            out.append(_ESCAPES[c])
        elif ord(c) < 0x20 or ord(c) == 0x7F:
            out.append(f"\\u{ord(c):04X}")
        else:
            out.append(c)           # a lone surrogate stays raw: TOML has no escape for one
    return '"' + "".join(out) + '"'


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return repr(v)
    if isinstance(v, str):
        return _toml_str(v)
    if isinstance(v, (dt.datetime, dt.date, dt.time)):
        return v.isoformat()
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{_toml_key(k)} = {_toml_value(x)}" for k, x in v.items()) + "}"
    raise TypeError(type(v))


def _toml_key(k: str) -> str:
    return k if _BARE.fullmatch(k) else _toml_str(k)


def to_toml(doc: dict[str, Any]) -> str:
    """TOML text of ``doc``: a line per top-level key, everything below inline."""
    return "".join(f"{_toml_key(k)} = {_toml_value(v)}\n" for k, v in doc.items())


def _named_paths(doc: Any) -> set[str]:
    """The field paths an error about ``doc`` may name: every node of it, and every
    key of the schema under every table of it (a required key that is missing)."""
    out = {"(document)"}

    def walk(node: Any, path: str) -> None:
        if isinstance(node, dict):
            for k in _KNOWN_KEYS:
                out.add(f"{path}.{k}" if path else k)
            for k, v in node.items():
                p = f"{path}.{k}" if path else str(k)
                out.add(p)
                walk(v, p)
        elif isinstance(node, list):
            for i, v in enumerate(node):
                out.add(f"{path}[{i}]")
                walk(v, f"{path}[{i}]")

    walk(doc, "")
    return out


def _assert_names_a_field(exc: InvalidArgument, source: str, doc: Any, syntax: str) -> None:
    message = str(exc)
    assert message.startswith(f"{source}: "), message
    rest = message[len(source) + 2:]
    if doc is None:
        assert rest.startswith(f"invalid {syntax}: "), message
        return
    assert any(rest.startswith(f"{p}: ") for p in _named_paths(doc)), message


@settings(FUZZ, max_examples=400)
@given(base=st.sampled_from(sorted(BASES)), ops=mutations,
       edit=st.one_of(st.none(), st.tuples(st.integers(0, 10_000), st.integers(0, 3), texts)))
def test_fuzz_campaign_toml(base: str, ops: list[tuple[str, int, Any]], edit: tuple[int, int, str] | None) -> None:
    doc = _mutate(BASES[base](), ops)
    text = to_toml(doc)
    if edit is not None:       # and now and then the text itself mangled: cut, doubled or written into
        at, how, s = edit
        at %= len(text) + 1
        text = [text[:at] + s + text[at:], text[:at], text[:at] + text[at // 2:], text.replace("=", s, 1)][how]
    try:
        parsed: Any = tomllib.loads(text.removeprefix("\ufeff"))
    except tomllib.TOMLDecodeError:
        parsed = None
    try:
        campaign = load_campaign(text, "fuzz.toml")
    except InvalidArgument as exc:
        _assert_names_a_field(exc, "fuzz.toml", parsed, "TOML")
    else:
        assert parsed is not None
        assert campaign_from_json(campaign.to_json()) == campaign
        assert campaign_from_json(json.loads(json.dumps(campaign.to_json()))) == campaign


@settings(FUZZ, max_examples=150)
@given(base=st.sampled_from(sorted(BASES)), ops=mutations)
def test_fuzz_campaign_json(base: str, ops: list[tuple[str, int, Any]]) -> None:
    """The same documents as JSON (dates and times as their ISO text, as a JSON file
    must give them; NaN and Infinity as Python writes them, which JSON refuses)."""
    doc = _mutate(BASES[base](), ops)
    text = json.dumps(doc, default=lambda v: v.isoformat(), ensure_ascii=False)
    try:
        parsed: Any = json.loads(text, parse_constant=lambda name: 1 / 0)
    except (ValueError, ZeroDivisionError):
        parsed = None
    try:
        campaign = load_campaign(text, "fuzz.json")
    except InvalidArgument as exc:
        _assert_names_a_field(exc, "fuzz.json", parsed, "JSON")
    else:
        assert campaign_from_json(campaign.to_json()) == campaign


def test_the_base_campaigns_compile() -> None:
    """The fuzz starts from campaigns that load, so its mutations test the checks
    one at a time rather than failing on the first required key."""
    c = load_campaign(to_toml(_base_campaign()), "fuzz.toml")
    assert (c.id, len(c.prizes), len(c.slots), c.consolation) == ("fuzz", 4, 2, "pts")
    s = load_campaign(json.dumps(_base_store_campaign(), default=lambda v: v.isoformat()), "stores.json")
    assert (s.id, s.actor, len(s.store_tiers), s.caps.per_user_daily_count) == ("stores", "store", 2, 50)


@pytest.mark.parametrize("when,zone", [("0001-01-01", "Asia/Shanghai"), ("9999-12-31T23:00:00", "America/New_York")])
def test_campaign_at_the_edge_of_time(when: str, zone: str) -> None:
    text = (f'id = "edge"\nname = "Edge"\ntimezone = "{zone}"\nactor = "consumer"\nodds = "1%"\n'
            f'start = {when if when.startswith("0") else "2026-01-01"}\n'
            f'end = {when if when.startswith("9") else "2030-01-01"}\n'
            '[[prizes]]\nid = "p"\nkind = "points"\npoints = 1\n')
    with pytest.raises(InvalidArgument) as exc:
        load_campaign(text, "edge.toml")
    assert str(exc.value).startswith(("edge.toml: start: ", "edge.toml: end: "))


@pytest.mark.parametrize("zone", ["x" * 256, "Asia/" + "x" * 300])
def test_campaign_time_zone_name_too_long_for_a_file(zone: str) -> None:
    doc = _base_campaign()
    doc["timezone"] = zone
    with pytest.raises(InvalidArgument) as exc:
        load_campaign(to_toml(doc), "tz.toml")
    assert str(exc.value).startswith("tz.toml: timezone: ")


@pytest.mark.parametrize("nested", ["[" * 5000 + "]" * 5000, "{a = " * 3000 + "1" + "}" * 3000])
def test_deeply_nested_campaign_toml(nested: str) -> None:
    # issue 12, item 8: RecursionError inside tomllib, INTERNAL over PutCampaign
    with pytest.raises(InvalidArgument) as exc:
        load_campaign(f'id = "deep"\nx = {nested}\n', "deep.toml")
    assert str(exc.value).startswith("deep.toml: invalid TOML: ")


@pytest.mark.parametrize("key", ["id", "actor", "timezone", "odds", "start"])
def test_campaign_errors_quote_a_short_prefix(key: str) -> None:
    doc = _base_campaign()
    doc[key] = "x" * 100_000
    with pytest.raises(InvalidArgument) as exc:
        load_campaign(to_toml(doc), "big.toml")
    assert str(exc.value).startswith(f"big.toml: {key}: ")
    assert len(str(exc.value)) < 400


# ---------------------------------------------------------------------- codes
@dataclasses.dataclass
class Codes:
    dd: scangate.DataDir
    issued: list[str]
    serials: set[tuple[int, int]]        # (serial, level) of every issued code
    keys: dict[int, bytes]


@pytest.fixture(scope="module")
def codes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Codes]:
    dd = scangate.init_data_dir(tmp_path_factory.mktemp("codes") / "data")
    try:
        issued = dd.issue_codes("SKU", "item", 20).as_strings() + dd.issue_codes("SKU", "case", 5).as_strings()
        v = dd.verify_codes(issued)
        serials = set(zip(v.serial.tolist(), v.level.tolist()))
        yield Codes(dd, issued, serials, {kv.version: kv.key for kv in dd.keys.versions()})
    finally:
        dd.close()


def _expected(c: Codes, text: str | bytes) -> tuple[CodeStatus, int | None]:
    """The reference decoder, then the issuance ledger: the status and serial."""
    d = ref.decode(text, c.keys)
    status = {ref.OK: CodeStatus.GENUINE, ref.TYPO: CodeStatus.TYPO, ref.MALFORMED: CodeStatus.MALFORMED,
              ref.COUNTERFEIT: CodeStatus.COUNTERFEIT, ref.UNKNOWN_KEY: CodeStatus.UNKNOWN_KEY}[d.status]
    if status == CodeStatus.GENUINE and (d.serial, d.level) not in c.serials:
        return CodeStatus.NOT_ISSUED, None
    return status, d.serial if status == CodeStatus.GENUINE else None


_code_texts = st.one_of(
    st.text(max_size=60),
    st.text(alphabet=ref.ALPHABET + ref.ALPHABET.lower() + "OoIiLl-/?# .:", min_size=26, max_size=34),
    st.lists(st.sampled_from(["\ud800", "\udfff", "\udc80", "\ud83d", "a", "\ue000"]), max_size=6).map("".join),
    hostile_text,
    st.tuples(st.integers(0, 24), st.sampled_from(["{}", "{}\x00", "\x00{}", "{} ", "http://h/{}", "{}\ud800",
                                                   "{}?x", "{}{}"])),
)


@settings(FUZZ, max_examples=150)
@given(items=st.lists(_code_texts, min_size=1, max_size=12))
def test_fuzz_verify_codes_arbitrary_text(codes: Codes, items: list[Any]) -> None:
    """verify_codes on arbitrary strings (NUL, controls, lone surrogates, 10,000
    characters, issued codes with noise around): one status per input, in order,
    never an exception, and each the status the reference decoder gives; the same
    through a newline-separated buffer, an 'S' array, and the large-batch path."""
    texts_in = [x if isinstance(x, str) else x[1].replace("{}", codes.issued[x[0]]) for x in items]
    got = codes.dd.verify_codes(texts_in)
    assert len(got) == len(texts_in)
    for t, status, serial in zip(texts_in, got.status.tolist(), got.serial.tolist()):
        want, want_serial = _expected(codes, t.encode("utf-8", "replace"))   # a list's str is read so
        assert (CodeStatus(status), serial if want_serial is not None else None) == (want, want_serial), t
    # the large-batch path (past SMALL_BATCH), with the texts at its end
    big = codes.dd.verify_codes([codes.issued[0]] * SMALL_BATCH + texts_in)
    assert big.status[SMALL_BATCH:].tolist() == got.status.tolist()
    genuine = got.status == CodeStatus.GENUINE
    assert big.serial[SMALL_BATCH:][genuine].tolist() == got.serial[genuine].tolist()
    # one line each in a buffer: the same, where a line can hold the text as it is
    lines = [t for t in texts_in if "\n" not in t and not t.endswith("\r")]
    if lines:
        buf = codes.dd.verify_codes("".join(t + "\n" for t in lines).encode("utf-8", "surrogatepass"))
        assert len(buf) == len(lines)
        for t, status in zip(lines, buf.status.tolist()):
            assert CodeStatus(status) == _expected(codes, t.encode("utf-8", "surrogatepass"))[0], t
    # an 'S' array: fixed-width bytes, whose trailing NULs are padding
    fixed = [t.encode("utf-8", "replace") for t in texts_in if not t.endswith("\x00")]
    if fixed:
        arr = codes.dd.verify_codes(np.array(fixed, dtype="S"))
        assert [CodeStatus(s) for s in arr.status.tolist()] == [_expected(codes, b)[0] for b in fixed]


def test_verify_codes_refuses_a_bare_string(codes: Codes) -> None:
    # a str is a sequence of one-character codes: misuse, said so
    with pytest.raises(TypeError, match="list of codes"):
        codes.dd.verify_codes(codes.issued[0])

