"""Verdicts and reason codes (docs/verdicts.md): counterfeit causes, recalls,
clone score (distinct actors, impossible travel), diversion by adcode and by
latitude/longitude, scan history, input validation, configurable thresholds."""
from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import pytest

import scangate
from scangate import CodeStatus, InvalidArgument, NotFound, _core, geo, ingest
from scangate.verdicts import (
    Reason,
    Scan,
    Verdict,
    VerdictConfig,
    decide_verdicts,
    revoke_line,
    revoke_range,
    scan_history,
)
try:
    import forgery
except ImportError:  # run as the tests package
    from tests import forgery

ALPHABET = _core.ALPHABET.decode() if isinstance(_core.ALPHABET, bytes) else str(_core.ALPHABET)
T0 = 1_714_550_400_000     # 2024-05-01T08:00:00Z, in ms
MIN = 60_000
HOUR = 60 * MIN
GUANGZHOU, BEIJING, SHANGHAI, CHENGDU, URUMQI = 440106, 110101, 310101, 510104, 650102


# ------------------------------------------------------------------ helpers
def typo(code: str, pos: int = 12) -> str:
    return code[:pos] + ALPHABET[(ALPHABET.index(code[pos]) + 1) % 32] + code[pos + 1 :]


def random_blocks_as_text(n: int, version: int, seed: int = 3) -> list[str]:
    return forgery.random_code_texts(n, version, seed)


def forge(dd: scangate.DataDir, serials: list[int], level: int = 1) -> list[str]:
    """Authentic codes made with the real key for serials of our choosing."""
    return forgery.forge(dd.keys.current, serials, [level] * len(serials))


def km_between(a: int, b: int) -> float:
    index = geo.default_index()
    la, lo = index.centroid(np.array([a, b]))
    return float(geo.haversine_km(la[0], lo[0], la[1], lo[1]))


@dataclass
class World:
    dd: scangate.DataDir
    items: list[str]        # 0..19 in case 0 on pallet 0 (shipped to GD, territory 44)
    line_id: int            # the items' product line
    first: int              # the first item serial
    other: list[str]        # another line's items, shipped to GD too


@pytest.fixture
def world(data_dir: scangate.DataDir) -> World:
    items = data_dir.issue_codes("BAIJIU", "item", 40, batch="L1")
    other = data_dir.issue_codes("BAIJIU", "item", 10, batch="L2")
    case = data_dir.issue_codes("BAIJIU", "case", 2, batch="L1").as_strings()
    pallet = data_dir.issue_codes("BAIJIU", "pallet", 1, batch="L1").as_strings()
    it = items.as_strings()
    rows = [f"{case[i // 20]},{it[i]}" for i in range(40)] + [f"{pallet[0]},{case[0]}", f"{pallet[0]},{case[1]}"]
    rows += [f"{pallet[0]},{c}" for c in other.as_strings()]
    ingest.link_csv(data_dir, ("\n".join(rows) + "\n").encode(), "pack.csv")
    ingest.load_dealers_csv(data_dir, b"dealer_id,name,territory\nGD,Guangdong,44\nGZ,Guangzhou,4401\n")
    ingest.ship_csv(data_dir, f"unit,dealer_id,shipped_at,shipment_id\n{pallet[0]},GD,2024-04-30T00:00:00Z,SH1\n"
                    .encode())
    return World(data_dir, it, items.line.line_id, items.range.first, other.as_strings())


# ------------------------------------------------------------------ counterfeit
def test_counterfeit_reasons(world: World) -> None:
    dd = world.dd
    good = world.items[0]
    scans = {
        Reason.MALFORMED: "NOT-A-CODE",
        Reason.TYPO: typo(good),
        Reason.COUNTERFEIT_TAG: random_blocks_as_text(1, 1)[0],
        Reason.UNKNOWN_KEY_VERSION: random_blocks_as_text(1, 9)[0],
        Reason.NOT_ISSUED: forge(dd, [dd.store.next_serial() + 100])[0],
    }
    status = {Reason.MALFORMED: CodeStatus.MALFORMED, Reason.TYPO: CodeStatus.TYPO,
              Reason.COUNTERFEIT_TAG: CodeStatus.COUNTERFEIT, Reason.UNKNOWN_KEY_VERSION: CodeStatus.UNKNOWN_KEY,
              Reason.NOT_ISSUED: CodeStatus.NOT_ISSUED}
    # every one twice, by different actors in distant cities: still counterfeit, never a clone
    batch = [Scan(code, f"actor-{i}", region=region, time_ms=T0 + i)
             for i, (code, region) in enumerate([(c, r) for c in scans.values() for r in (GUANGZHOU, URUMQI)])]
    verdicts = decide_verdicts(dd, batch)
    for (reason, code), pair in zip(scans.items(), zip(verdicts[0::2], verdicts[1::2])):
        for v in pair:
            assert v.verdict is Verdict.COUNTERFEIT, (reason, v)
            assert v.reasons == [reason]
            assert v.code_status is status[reason]
            assert v.clone_score == 0 and v.first_scan is None and v.scan_count == 0
            assert v.to_json()["reasons"] == [reason.value]
            assert v.to_json()["verdict"] == "counterfeit"
        assert pair[1].region == URUMQI and pair[1].region_source == "adcode"
        assert scan_history(dd, code) is None
    assert [r.value for r in scans] == ["SG-C1", "SG-C2", "SG-C3", "SG-C4", "SG-C5"]
    # the genuine original is untouched by its typo's scans
    assert scan_history(dd, good) is None


# ------------------------------------------------------------------ recalls
def test_revoked_line_takes_precedence_over_diversion(world: World) -> None:
    dd = world.dd
    v = decide_verdicts(dd, [Scan(world.items[0], "a", region=BEIJING, time_ms=T0)])[0]
    assert v.verdict is Verdict.DIVERTED                      # control: outside Guangdong
    revoke_line(dd, world.line_id, "contaminated lot")
    v1, v2, v3 = decide_verdicts(dd, [Scan(world.items[1], "b", region=BEIJING, time_ms=T0),
                                      Scan(world.items[2], "c", region=GUANGZHOU, time_ms=T0),
                                      Scan(world.other[0], "d", region=BEIJING, time_ms=T0)])
    assert v1.verdict is Verdict.REVOKED
    assert v1.reasons == [Reason.GENUINE_FIRST_SCAN, Reason.LINE_RECALLED, Reason.DIVERTED_OUTSIDE_TERRITORY]
    assert v1.evidence["recall_line"] == {"line_id": world.line_id, "reason": "contaminated lot"}
    assert v1.evidence["diversion"]["dealer_id"] == "GD"      # the signal stays in the evidence
    assert v2.verdict is Verdict.REVOKED and Reason.DIVERTED_OUTSIDE_TERRITORY not in v2.reasons
    # another line (batch L2) of the same SKU is not recalled
    assert v3.verdict is Verdict.DIVERTED and "recall_line" not in v3.evidence
    with pytest.raises(NotFound):
        revoke_line(dd, 9999, "no such line")


def test_revoked_range_takes_precedence_over_diversion_and_clone(world: World) -> None:
    dd = world.dd
    revoke_range(dd, world.first + 10, world.first + 19, "stolen shipment")
    scans = [Scan(world.items[i], "x", region=BEIJING, time_ms=T0) for i in (9, 10, 19, 20)]
    v9, v10, v19, v20 = decide_verdicts(dd, scans)
    for v in (v10, v19):
        assert v.verdict is Verdict.REVOKED
        assert Reason.RANGE_RECALLED in v.reasons and Reason.DIVERTED_OUTSIDE_TERRITORY in v.reasons
        assert v.evidence["recall_range"] == {"first": world.first + 10, "last": world.first + 19,
                                        "reason": "stolen shipment"}
        assert v.to_json()["verdict"] == "revoked"
    for v in (v9, v20):
        assert v.verdict is Verdict.DIVERTED and Reason.RANGE_RECALLED not in v.reasons
    # many actors across China within minutes: a clone score, but revoked still wins
    cities = [GUANGZHOU, BEIJING, SHANGHAI, CHENGDU, URUMQI]
    out = decide_verdicts(dd, [Scan(world.items[15], f"c{i}", region=r, time_ms=T0 + HOUR + i * 5 * MIN)
                               for i, r in enumerate(cities)])
    assert out[-1].clone_score >= 0.5 and Reason.CLONE_DISTINCT_ACTORS in out[-1].reasons
    assert {v.verdict for v in out} == {Verdict.REVOKED}
    for first, last in ((0, 5), (5, 4)):
        with pytest.raises(InvalidArgument):
            revoke_range(dd, first, last, "bad")


# ------------------------------------------------------------------ clones
CITIES = [GUANGZHOU, BEIJING, SHANGHAI, CHENGDU, URUMQI]


def clone_scans(code: str) -> list[Scan]:
    return [Scan(code, f"actor-{city}", region=city, time_ms=T0 + i * 5 * MIN) for i, city in enumerate(CITIES)]


def test_one_code_in_five_cities_within_minutes_is_a_clone(world: World) -> None:
    code = world.items[3]
    out = decide_verdicts(world.dd, clone_scans(code))
    first = out[0]
    assert first.verdict is Verdict.GENUINE and first.reasons == [Reason.GENUINE_FIRST_SCAN]
    assert first.clone_score == 0 and first.first_scan is None and first.scan_count == 1
    for i, v in enumerate(out[1:], start=1):
        assert v.verdict is Verdict.SUSPECT_CLONE, (i, v)
        assert v.clone_score >= 0.5
        assert v.reasons[0] is Reason.GENUINE_REPEAT_SCAN
        assert Reason.CLONE_IMPOSSIBLE_TRAVEL in v.reasons
        # outside Guangdong: diverted too, but the clone verdict wins
        assert Reason.DIVERTED_OUTSIDE_TERRITORY in v.reasons
        travel = v.evidence["travel"]
        km = km_between(CITIES[i - 1], CITIES[i])
        assert travel["from_region"] == CITIES[i - 1] and travel["to_region"] == CITIES[i]
        assert travel["km"] == pytest.approx(km, abs=0.1) and km > 900
        assert travel["hours"] == pytest.approx(5 / 60, abs=1e-3)
        assert travel["speed_kmh"] == pytest.approx(km * 12, rel=1e-3) and travel["speed_kmh"] > 900
        assert travel["max_speed_kmh"] == 900
        assert v.first_scan == {"time_ms": T0, "region": GUANGZHOU, "actor": f"actor-{GUANGZHOU}"}
        assert v.scan_count == i + 1
    # distinct actors: 4 and 5 over a threshold of 3
    assert Reason.CLONE_DISTINCT_ACTORS not in out[2].reasons
    assert out[3].evidence["distinct_actors"] == {"count": 4, "threshold": 3}
    assert out[4].evidence["distinct_actors"] == {"count": 5, "threshold": 3}
    assert out[4].reasons == [Reason.GENUINE_REPEAT_SCAN, Reason.CLONE_DISTINCT_ACTORS,
                              Reason.CLONE_IMPOSSIBLE_TRAVEL, Reason.DIVERTED_OUTSIDE_TERRITORY]
    assert out[4].clone_score == pytest.approx(1.0)
    assert json.loads(json.dumps(out[4].to_json()))["verdict"] == "suspect_clone"

    # the first scanner scans again two days later, at home: no clone signal by itself
    again = decide_verdicts(world.dd, [Scan(code, f"actor-{GUANGZHOU}", region=GUANGZHOU,
                                            time_ms=T0 + 48 * HOUR)])[0]
    assert Reason.CLONE_DISTINCT_ACTORS not in again.reasons
    assert Reason.CLONE_IMPOSSIBLE_TRAVEL not in again.reasons
    assert again.clone_score == 0
    assert again.verdict is Verdict.GENUINE and again.reasons == [Reason.GENUINE_REPEAT_SCAN]
    assert again.first_scan == {"time_ms": T0, "region": GUANGZHOU, "actor": f"actor-{GUANGZHOU}"}
    assert again.scan_count == 6
    history = scan_history(world.dd, code)
    assert history == {"first_ms": T0, "first_region": GUANGZHOU, "first_actor": f"actor-{GUANGZHOU}",
                       "count": 6, "distinct_actors": 5, "last_ms": T0 + 48 * HOUR, "last_region": GUANGZHOU}


def test_batch_and_one_by_one_agree(world: World) -> None:
    batch = decide_verdicts(world.dd, clone_scans(world.items[4]))
    single = [decide_verdicts(world.dd, [s])[0] for s in clone_scans(world.items[5])]
    assert [v.to_json() for v in batch] == [v.to_json() for v in single]


def test_fresh_code_scanned_twice_by_the_same_actor(world: World) -> None:
    code = world.items[6]
    a, b = decide_verdicts(world.dd, [Scan(code, "shop-1", "store", region=GUANGZHOU, time_ms=T0),
                                      Scan(code, "shop-1", "store", region=GUANGZHOU, time_ms=T0 + MIN)])
    assert (a.verdict, a.reasons, a.first_scan) == (Verdict.GENUINE, [Reason.GENUINE_FIRST_SCAN], None)
    assert b.verdict is Verdict.GENUINE
    assert b.reasons == [Reason.GENUINE_REPEAT_SCAN]
    assert b.first_scan == {"time_ms": T0, "region": GUANGZHOU, "actor": "shop-1"}
    assert b.clone_score == 0 and b.scan_count == 2
    # a third time from far away, still by that one actor: a repeat, not a clone
    c = decide_verdicts(world.dd, [Scan(code, "shop-1", region=URUMQI, time_ms=T0 + 2 * MIN)])[0]
    assert c.clone_score == 0 and Reason.CLONE_DISTINCT_ACTORS not in c.reasons
    history = scan_history(world.dd, code)
    assert history is not None and (history["count"], history["distinct_actors"]) == (3, 1)


def test_two_actors_same_city_hours_apart_is_genuine(world: World) -> None:
    code = world.items[7]
    a, b = decide_verdicts(world.dd, [Scan(code, "alice", region=GUANGZHOU, time_ms=T0),
                                      Scan(code, "bob", region=440104, time_ms=T0 + 3 * HOUR)])
    assert a.verdict is Verdict.GENUINE and b.verdict is Verdict.GENUINE
    assert b.reasons == [Reason.GENUINE_REPEAT_SCAN] and b.clone_score == 0
    assert b.first_scan is not None and b.first_scan["actor"] == "alice"
    assert scan_history(world.dd, code)["distinct_actors"] == 2  # type: ignore[index]


def test_unshipped_code_is_genuine_with_not_shipped(data_dir: scangate.DataDir) -> None:
    code = data_dir.issue_codes("SKU", "item", 1).as_strings()[0]
    v = decide_verdicts(data_dir, [Scan(code, "a", region=URUMQI, time_ms=T0)])[0]
    assert v.verdict is Verdict.GENUINE
    assert v.reasons == [Reason.GENUINE_FIRST_SCAN, Reason.NOT_SHIPPED]
    assert "trace" not in v.evidence and "diversion" not in v.evidence


# ------------------------------------------------------------------ regions
def test_lat_lon_resolves_to_a_district_and_drives_diversion(world: World) -> None:
    dd = world.dd
    index = geo.default_index()
    src = f"geo:{index.source.package}@{index.source.version}"
    v_gz, v_bj, v_none = decide_verdicts(dd, [
        Scan(world.items[20], "a", lat=23.1291, lon=113.2644, time_ms=T0),      # Guangzhou, Yuexiu
        Scan(world.items[21], "b", lat=39.9042, lon=116.4074, time_ms=T0),      # Beijing, Dongcheng
        Scan(world.items[22], "c", time_ms=T0),                                  # no place at all
    ])
    assert v_gz.region is not None and v_gz.region // 100 == 4401
    assert v_gz.region_source == src and v_gz.region_source.startswith("geo:")
    assert v_gz.verdict is Verdict.GENUINE
    assert v_bj.region is not None and v_bj.region // 100 == 1101 and v_bj.region_source == src
    assert v_bj.verdict is Verdict.DIVERTED
    assert v_bj.evidence["diversion"] == {"dealer_id": "GD", "territory": ["44"], "scan_region": v_bj.region,
                                          "region_source": src}
    assert v_bj.evidence["trace"]["shipment_id"] == "SH1"
    # no region: diversion cannot be judged, so genuine
    assert (v_none.region, v_none.region_source, v_none.verdict) == (None, "none", Verdict.GENUINE)
    # coordinates drive travel too: Guangzhou then Beijing 10 minutes later, by someone else
    later = decide_verdicts(dd, [Scan(world.items[20], "z", lat=39.9042, lon=116.4074, time_ms=T0 + 10 * MIN)])[0]
    assert Reason.CLONE_IMPOSSIBLE_TRAVEL in later.reasons and later.verdict is Verdict.SUSPECT_CLONE
    assert later.evidence["travel"]["from_region"] == v_gz.region


def test_diversion_by_city_territory(world: World) -> None:
    dd = world.dd
    pallet_items = world.other[:3]
    ingest.ship_csv(dd, f"unit,dealer_id,shipped_at\n{pallet_items[0]},GZ,2024-05-01T00:00:00Z\n".encode())
    a, b = decide_verdicts(dd, [Scan(pallet_items[0], "a", region=440304, time_ms=T0),     # Shenzhen
                                Scan(pallet_items[1], "b", region=440304, time_ms=T0)])
    assert a.verdict is Verdict.DIVERTED and a.evidence["diversion"]["territory"] == ["4401"]
    assert b.verdict is Verdict.GENUINE            # its pallet went to GD (all of Guangdong)


# ------------------------------------------------------------------ validation
@pytest.mark.parametrize(
    ("bad", "words"),
    [(Scan("X", "a", region=12), "region"),
     (Scan("X", "a", region=1_000_000), "region"),
     (Scan("X", "a", region=0), "region"),
     (Scan("X", "a", lat=23.1), "lat and lon"),
     (Scan("X", "a", lon=113.2), "lat and lon"),
     (Scan("X", ""), "actor"),
     # the one validation (scangate.decide.requests.check_scans) also refuses what a
     # request may not hold: controls in an id, an id too long, a coordinate not finite
     (Scan("X", "a\0b"), r"scans\[1\]\.actor: "),
     (Scan("X", "a" * 129), r"scans\[1\]\.actor: "),
     (Scan("X", "a", lat=float("nan"), lon=113.2), r"scans\[1\]\.lat: nan is not a finite number")],
)
def test_invalid_scans_raise_and_record_nothing(world: World, bad: Scan, words: str) -> None:
    good = Scan(world.items[8], "a", region=GUANGZHOU, time_ms=T0)
    with pytest.raises(InvalidArgument, match=words) as info:
        decide_verdicts(world.dd, [good, Scan(world.items[9], bad.actor, region=bad.region, lat=bad.lat,
                                              lon=bad.lon)])
    assert "scans[1]" in str(info.value)
    assert scan_history(world.dd, world.items[8]) is None


@pytest.mark.parametrize(
    "kwargs",
    [{"max_distinct_actors": 0}, {"max_speed_kmh": 0}, {"min_travel_km": -1}, {"clone_score_threshold": 0},
     {"clone_score_threshold": 1.5}],
)
def test_invalid_config(kwargs: dict) -> None:
    with pytest.raises(InvalidArgument):
        VerdictConfig(**kwargs)


# ------------------------------------------------------------------ thresholds
def same_city(code: str, n: int) -> list[Scan]:
    return [Scan(code, f"neighbour-{i}", region=GUANGZHOU, time_ms=T0 + i * MIN) for i in range(n)]


def test_distinct_actor_threshold_is_configuration(world: World) -> None:
    default = decide_verdicts(world.dd, same_city(world.items[11], 5))
    assert [v.verdict for v in default] == [Verdict.GENUINE] * 3 + [Verdict.SUSPECT_CLONE] * 2
    assert default[3].clone_score == round(0.5 + 0.5 * (4 - 3) / 3, 3)     # held as replies show it
    assert default[4].clone_score == round(0.5 + 0.5 * (5 - 3) / 3, 3)
    assert all(Reason.CLONE_IMPOSSIBLE_TRAVEL not in v.reasons for v in default)

    relaxed = decide_verdicts(world.dd, same_city(world.items[12], 5), VerdictConfig(max_distinct_actors=10))
    assert [v.verdict for v in relaxed] == [Verdict.GENUINE] * 5
    assert all(Reason.CLONE_DISTINCT_ACTORS not in v.reasons and v.clone_score == 0 for v in relaxed)

    # the signal fires (reason kept) but stays under a higher score threshold
    lenient = decide_verdicts(world.dd, same_city(world.items[13], 4), VerdictConfig(clone_score_threshold=0.9))
    assert lenient[3].verdict is Verdict.GENUINE
    assert Reason.CLONE_DISTINCT_ACTORS in lenient[3].reasons
    assert lenient[3].clone_score == round(2 / 3, 3)

    # the threshold compares the exact score (0.6666...), not the 0.667 the verdict shows
    edge = decide_verdicts(world.dd, same_city(world.items[30], 4), VerdictConfig(clone_score_threshold=0.6667))
    assert edge[3].verdict is Verdict.GENUINE and edge[3].clone_score == 0.667
    assert Reason.CLONE_DISTINCT_ACTORS in edge[3].reasons


def test_travel_thresholds_are_configuration(world: World) -> None:
    def gz_then_chengdu(code: str) -> list[Scan]:
        return [Scan(code, "a", region=GUANGZHOU, time_ms=T0), Scan(code, "b", region=CHENGDU, time_ms=T0 + 3 * HOUR)]

    km = km_between(GUANGZHOU, CHENGDU)
    speed = km / 3
    assert 100 < speed < 900
    assert decide_verdicts(world.dd, gz_then_chengdu(world.items[14]))[1].clone_score == 0
    slow = VerdictConfig(max_speed_kmh=300)
    v = decide_verdicts(world.dd, gz_then_chengdu(world.items[16]), slow)[1]
    assert Reason.CLONE_IMPOSSIBLE_TRAVEL in v.reasons
    assert v.clone_score == pytest.approx(min(1.0, 0.5 + 0.5 * (speed - 300) / 300), rel=1e-3)
    assert v.verdict is Verdict.SUSPECT_CLONE
    # jumps shorter than min_travel_km are ignored, however fast
    far = VerdictConfig(min_travel_km=5000)
    out = decide_verdicts(world.dd, clone_scans(world.items[17])[:3], far)
    assert all(Reason.CLONE_IMPOSSIBLE_TRAVEL not in v.reasons for v in out)
    assert out[2].verdict is Verdict.DIVERTED        # Shanghai, outside Guangdong, and no clone signal


# ------------------------------------------------------------------ travel time of the right scan
def test_a_scan_without_place_does_not_shorten_travel_time(world: World) -> None:
    code = world.items[18]
    out = decide_verdicts(world.dd, [Scan(code, "a", region=GUANGZHOU, time_ms=T0),
                                     Scan(code, "b", time_ms=T0 + 10 * HOUR),
                                     Scan(code, "c", region=BEIJING, time_ms=T0 + 10 * HOUR + 5 * MIN)])
    assert [v.clone_score for v in out] == [0, 0, 0]
    assert Reason.CLONE_IMPOSSIBLE_TRAVEL not in out[2].reasons


def test_out_of_order_scan_times_use_the_real_gap(world: World) -> None:
    code = world.items[19]
    out = decide_verdicts(world.dd, [Scan(code, "a", region=GUANGZHOU, time_ms=T0 + 10 * HOUR),
                                     Scan(code, "b", region=BEIJING, time_ms=T0)])
    assert Reason.CLONE_IMPOSSIBLE_TRAVEL not in out[1].reasons
    assert out[1].clone_score == 0


def test_placeless_scans_are_recorded_without_region(world: World) -> None:
    code = world.items[10]
    out = decide_verdicts(world.dd, [Scan(code, "a", time_ms=T0), Scan(code, "b", region=URUMQI, time_ms=T0 + MIN)])
    assert out[0].region is None and out[0].verdict is Verdict.GENUINE
    assert out[1].first_scan == {"time_ms": T0, "region": None, "actor": "a"}
    assert Reason.CLONE_IMPOSSIBLE_TRAVEL not in out[1].reasons          # nowhere to travel from
    assert out[1].verdict is Verdict.DIVERTED
    history = scan_history(world.dd, code)
    assert history is not None and (history["first_region"], history["last_region"]) == (None, URUMQI)
