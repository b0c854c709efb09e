"""Hostile input to the parsers and data checks (issue 12, item 8): every case is a
clear error naming the row/line, JSON path or field and why, with nothing applied,
never a traceback. Through the real CLI where a CLI path exists; fuzz tests of the
CSV and EPCIS parsers at the end."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import scangate
from scangate import InvalidArgument, epcis, geo, ingest, points
from scangate.errors import BatchRejected
from scangate.state import raw as state_raw
from scangate.state import reads
from scangate.trace import Shipment, TraceStore
from scangate.verdicts import Scan, decide_verdicts, scan_history

URL = "https://scn.example.com/{}".format
T_SHIP = "2024-05-01T08:00:00Z"
T_SHIP_MS = 1_714_550_400_000
# The documented bounds of every shipment time: 2000-01-01 .. 2100-01-01 UTC (the
# end excluded), as literals so that this file also runs against older code.
MIN_TIME_MS = 946_684_800_000
MAX_TIME_MS = 4_102_444_800_000


@dataclass
class Site:
    root: Path
    tmp: Path
    items: list[str]
    pallet: str

    def write(self, name: str, content: str | bytes) -> Path:
        path = self.tmp / name
        path.write_bytes(content.encode() if isinstance(content, str) else content)
        return path


@pytest.fixture
def site(tmp_path: Path) -> Site:
    """Items, a pallet and one dealer D1 (territory 44); closed before any CLI call."""
    root = tmp_path / "data"
    with scangate.init_data_dir(root) as dd:
        items = dd.issue_codes("BAIJIU", "item", 6, batch="L1").as_strings()
        pallet = dd.issue_codes("BAIJIU", "pallet", 1, batch="L1").as_strings()[0]
        ingest.load_dealers_csv(dd, b"dealer_id,name,territory\nD1,One,44\n")
    return Site(root, tmp_path, items, pallet)


def dump(root: Path) -> dict[str, list[tuple[bytes, bytes]]]:
    """Every record of every database: equal before and after means nothing applied."""
    with scangate.open_data_dir(root) as dd:
        return state_raw.dump(dd)


def rejected(proc: Any, *lines: str) -> list[str]:
    """Exit 2, no traceback, and each of ``lines`` in some stderr line; the stderr lines."""
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr
    err = proc.stderr.splitlines()
    for want in lines:
        assert any(want in line for line in err), (want, err)
    return err


def shipping_doc(units: list[str], destination: Any = "D1", event_time: Any = "2024-05-01T10:00:00Z",
                 **extra: Any) -> dict[str, Any]:
    event = {"type": "ObjectEvent", "action": "OBSERVE", "bizStep": "shipping", "eventTime": event_time,
             "epcList": [URL(u) for u in units],
             "destinationList": [{"type": "owning_party", "destination": destination}], **extra}
    return {"type": "EPCISDocument", "epcisBody": {"eventList": [event]}}


# ------------------------------------------------------------------ bare CR in CSVs
def test_bare_cr_in_shipments_csv(site: Site, run_cli) -> None:
    before = dump(site.root)
    ship = site.write("ship.csv", f"unit,dealer_id,shipped_at\n{site.items[0]},D1,{T_SHIP}\n"
                                  f"{site.items[1]},D1\r{site.items[2]},D1\n"
                                  f"{site.items[3]},D1,{T_SHIP}\r\n"        # CRLF is a line ending
                                  f"{site.items[4]},D1\r\n")
    err = rejected(run_cli("ship", "--data", site.root, ship), f"{ship}:3: row: a bare carriage return")
    assert len(err) == 2        # the summary and exactly one bad line: the CRLF rows are fine
    assert dump(site.root) == before


def test_bare_cr_in_dealers_csv(site: Site, run_cli) -> None:
    before = dump(site.root)
    dealers = site.write("dealers.csv", "dealer_id,name,territory\nD2,Two,44\nD3,Th\rree,44\nD4,Four,51\r")
    rejected(run_cli("dealers", "load", "--data", site.root, dealers),
             f"{dealers}:3: row: a bare carriage return", f"{dealers}:4: row: a bare carriage return")
    assert dump(site.root) == before


def test_crlf_csv_still_loads(site: Site, run_cli) -> None:
    dealers = site.write("dealers.csv", "dealer_id,name,territory\r\nD2,Two,44\r\n")
    assert run_cli("dealers", "load", "--data", site.root, dealers).returncode == 0


def test_csv_field_over_the_csv_size_limit(site: Site, run_cli) -> None:
    """csv's own errors (a field over 128 KiB) name the row, they do not escape."""
    before = dump(site.root)
    dealers = site.write("dealers.csv", 'dealer_id,name,territory\nD2,"' + "x" * 200_000 + '",44\n')
    rejected(run_cli("dealers", "load", "--data", site.root, dealers), f"{dealers}:2: row: bad CSV")
    assert dump(site.root) == before


# ------------------------------------------------------------------ EPCIS eventTime
def test_epcis_leap_second_is_refused_naming_the_path(site: Site, run_cli) -> None:
    before = dump(site.root)
    doc = site.write("ship.json", json.dumps(shipping_doc([site.pallet], event_time="2024-05-01T10:00:60Z")))
    rejected(run_cli("ship", "--data", site.root, doc),
             f"{doc}:epcisBody.eventList[0].eventTime: epcis: eventTime: '2024-05-01T10:00:60Z' has second 60")
    assert dump(site.root) == before


@pytest.mark.parametrize("stamp", ["2024-05-01T10:00:00z", "2024-05-01t10:00:00Z", "2024-05-01t10:00:00.000z"])
def test_epcis_lower_case_t_and_z_are_accepted(site: Site, stamp: str) -> None:
    """RFC 3339 (5.6, note) allows lower-case t and z: the same instant as upper case."""
    with scangate.open_data_dir(site.root) as dd:
        report = ingest.apply_epcis(dd, json.dumps(shipping_doc([site.pallet], event_time=stamp)))
        assert report.shipments == 1
        chain = reads.shipments_of(dd, [dd.verify_code(site.pallet).serial])
    assert [s.shipped_at_ms for s in chain.values()] == [T_SHIP_MS + 2 * 3_600_000]   # 10:00Z


@pytest.mark.parametrize("stamp", ["1999-12-31T23:59:59Z", "0001-01-01T00:00:00+01:00",
                                   "2100-01-01T00:00:00Z", "9999-12-31T23:59:59-01:00"])
def test_epcis_event_time_out_of_bounds(site: Site, run_cli, stamp: str) -> None:
    before = dump(site.root)
    doc = site.write("ship.json", json.dumps(shipping_doc([site.pallet], event_time=stamp)))
    rejected(run_cli("ship", "--data", site.root, doc),
             f"{doc}:epcisBody.eventList[0].eventTime: epcis: eventTime: '{stamp}' is outside 2000-01-01")
    assert dump(site.root) == before


def test_epcis_aggregation_leap_second(site: Site) -> None:
    """The same check on an AggregationEvent's eventTime (a neighbour)."""
    doc = {"type": "EPCISDocument", "epcisBody": {"eventList": [
        {"type": "AggregationEvent", "action": "ADD", "eventTime": "2024-06-30T23:59:60Z",
         "parentID": URL(site.pallet), "childEPCs": [URL(site.items[0])]}]}}
    parsed = epcis.parse_document(json.dumps(doc))
    assert [p.path for p in parsed.problems] == ["epcisBody.eventList[0].eventTime"]
    assert "second 60" in parsed.problems[0].message and not parsed.ops


# ------------------------------------------------------------------ lone surrogates in EPCIS
def test_epcis_lone_surrogate_destination(site: Site, run_cli) -> None:
    before = dump(site.root)
    text = json.dumps(shipping_doc([site.pallet], destination="D1")).replace('"D1"', '"\\udc80"')
    doc = site.write("ship.json", text)
    rejected(run_cli("ship", "--data", site.root, doc),
             f"{doc}:epcisBody.eventList[0].destinationList[0].destination: epcis: destination '\\udc80': "
             "contains a lone surrogate")
    assert dump(site.root) == before


@pytest.mark.parametrize(("field", "path"), [
    ("eventTime", "epcisBody.eventList[0].eventTime"),
    ("bizStep", "epcisBody.eventList[0].bizStep"),
    ("action", "epcisBody.eventList[0].action"),
    ("epcList", "epcisBody.eventList[0].epcList[0]"),
    ("type", "epcisBody.eventList[0].destinationList[0].type"),
])
def test_epcis_lone_surrogate_in_other_string_fields(site: Site, run_cli, field: str, path: str) -> None:
    doc = shipping_doc([site.pallet])
    event = doc["epcisBody"]["eventList"][0]
    if field == "epcList":
        event["epcList"] = [URL(site.pallet) + "\udc80"]
    elif field == "type":
        event["destinationList"][0]["type"] = "owning_party\ud800"
    else:
        event[field] = "\udfff" + str(event[field])
    before = dump(site.root)
    path_file = site.write("ship.json", json.dumps(doc))   # ensure_ascii: \\udfff escapes in the file
    err = rejected(run_cli("ship", "--data", site.root, path_file), f"{path_file}:{path}: epcis:")
    assert any(f"{path_file}:{path}: epcis:" in line and "contains a lone surrogate" in line for line in err)
    assert dump(site.root) == before


def test_epcis_nul_in_destination(site: Site, run_cli) -> None:
    before = dump(site.root)
    doc = site.write("ship.json", json.dumps(shipping_doc([site.pallet], destination="D1\u0000")))
    rejected(run_cli("ship", "--data", site.root, doc),
             f"{doc}:epcisBody.eventList[0].destinationList[0].destination: epcis: destination 'D1\\x00': "
             "contains a NUL character")
    assert dump(site.root) == before


# ------------------------------------------------------------------ shipment times
@pytest.mark.parametrize("ms", [2**63 - 1, -(2**63), MIN_TIME_MS - 1, MAX_TIME_MS])
def test_shipped_at_ms_out_of_bounds_via_the_api(site: Site, ms: int) -> None:
    before = dump(site.root)
    with scangate.open_data_dir(site.root) as dd:
        with pytest.raises(BatchRejected) as info:
            ingest.record_shipment_rows(dd, [site.pallet], ["D1"], [ms], [""], ["rows[0]"], "api")
        assert [(p.where, p.field) for p in info.value.problems] == [("rows[0]", "shipped_at")]
        assert "outside 2000-01-01 .. 2100-01-01" in info.value.problems[0].message
        # the store's own entry point refuses them too
        serial = dd.verify_code(site.pallet).serial
        with pytest.raises(InvalidArgument, match="shipped_at_ms"):
            TraceStore(dd.store).record_shipments([Shipment(serial, "D1", ms)])
    assert dump(site.root) == before


@pytest.mark.parametrize("stamp", ["0001-01-01T00:00:00Z", "1970-01-01T00:00:00Z", "9999-12-31T23:59:59Z",
                                   "2100-01-01T00:00:00+00:00"])
def test_csv_shipped_at_far_past_or_future(site: Site, run_cli, stamp: str) -> None:
    before = dump(site.root)
    ship = site.write("ship.csv", f"unit,dealer_id,shipped_at\n{site.pallet},D1,{stamp}\n")
    rejected(run_cli("ship", "--data", site.root, ship), f"{ship}:2: shipped_at: '{stamp}' is outside")
    assert dump(site.root) == before


def test_csv_shipped_at_leap_second_and_lower_case_z(site: Site, run_cli) -> None:
    before = dump(site.root)
    ship = site.write("ship.csv", f"unit,dealer_id,shipped_at\n{site.pallet},D1,2016-12-31T23:59:60Z\n")
    rejected(run_cli("ship", "--data", site.root, ship), f"{ship}:2: shipped_at: '2016-12-31T23:59:60Z' has second 60")
    assert dump(site.root) == before
    ship = site.write("ship2.csv", f"unit,dealer_id,shipped_at\n{site.pallet},D1,2024-05-01T08:00:00z\n")
    proc = run_cli("ship", "--data", site.root, ship)
    assert proc.returncode == 0, proc.stderr


def test_bounds_are_the_documented_instants() -> None:
    from scangate.trace import MAX_TIME_MS as max_ms, MIN_TIME_MS as min_ms, parse_time_ms

    assert (min_ms, max_ms) == (MIN_TIME_MS, MAX_TIME_MS)
    assert parse_time_ms("2000-01-01T00:00:00Z", "t") == MIN_TIME_MS
    assert parse_time_ms("2099-12-31T23:59:59.999Z", "t") == MAX_TIME_MS - 1
    assert parse_time_ms(T_SHIP, "t") == T_SHIP_MS


# ------------------------------------------------------------------ NUL and friends in dealers
def test_nul_in_dealer_name_id_and_territory(site: Site, run_cli) -> None:
    before = dump(site.root)
    dealers = site.write("dealers.csv", "dealer_id,name,territory\nD2,Two,44\nD3,Th\x00ree,44\n"
                                        "D\x004,Four,44\nD5,Five,4\x004\nD6,Six\x1b[2J,44\n")
    err = rejected(run_cli("dealers", "load", "--data", site.root, dealers),
                   f"{dealers}:3: name: contains a NUL character",
                   f"{dealers}:4: dealer_id: contains a NUL character",
                   f"{dealers}:5: territory: contains a NUL character",
                   f"{dealers}:6: name: contains a control character (U+001B)")
    assert len(err) == 5
    assert dump(site.root) == before


def test_lone_surrogate_and_long_text_via_the_api(site: Site) -> None:
    """The Python API takes str that no UTF-8 file can hold: lone surrogates."""
    before = dump(site.root)
    with scangate.open_data_dir(site.root) as dd:
        with pytest.raises(BatchRejected) as info:
            ingest.load_dealers(dd, [("r0", "D\udc80", "Two", ["44"]), ("r1", "D3", "n\ud800", ["44"]),
                                     ("r2", "D4", "x" * 201, ["44"]), ("r3", "D5", "Five", ["4\udc804"])])
        assert [(p.where, p.field) for p in info.value.problems] == [
            ("r0", "dealer_id"), ("r1", "name"), ("r2", "name"), ("r3", "territory")]
        assert "lone surrogate" in info.value.problems[0].message
        with pytest.raises(BatchRejected) as info:
            ingest.record_shipment_rows(dd, [site.pallet, site.items[0]], ["D\udc80", "D1"],
                                        [T_SHIP_MS, T_SHIP_MS], ["", "S\x00"], ["rows[0]", "rows[1]"], "api")
        assert [(p.where, p.field) for p in info.value.problems] == [("rows[0]", "dealer_id"),
                                                                     ("rows[1]", "shipment_id")]
    assert dump(site.root) == before


def test_nul_in_shipment_id_csv(site: Site, run_cli) -> None:
    before = dump(site.root)
    ship = site.write("ship.csv", f"unit,dealer_id,shipped_at,shipment_id\n{site.pallet},D1,{T_SHIP},S\x001\n")
    rejected(run_cli("ship", "--data", site.root, ship), f"{ship}:2: shipment_id: contains a NUL character")
    assert dump(site.root) == before


# ------------------------------------------------------------------ points periods
@pytest.mark.parametrize("period", ["9999-99", "2026-13", "2026-00", "0000-01", "２０２６-01", "2026-1", "26-01-"])
def test_leaderboard_period_refused(site: Site, run_cli, period: str) -> None:
    rejected(run_cli("points", "leaderboard", "--data", site.root, "--period", period), "period")
    with scangate.open_data_dir(site.root) as dd, pytest.raises(InvalidArgument, match="^period: "):
        points.leaderboard(dd, period)


def test_leaderboard_real_periods_accepted() -> None:
    for good in ("2026-01", "2026-12", "1999-06"):
        assert points.parse_period(good) == good


# ------------------------------------------------------------------ regions
@pytest.fixture
def shipped(site: Site) -> Site:
    with scangate.open_data_dir(site.root) as dd:
        ingest.record_shipment_rows(dd, site.items, ["D1"] * len(site.items), [T_SHIP_MS] * len(site.items),
                                    [""] * len(site.items), [f"r{i}" for i in range(len(site.items))], "api")
    return site


@pytest.mark.parametrize("region", [999999, 440100, 440000, 100000, 449999])
def test_region_that_is_no_district_is_refused(shipped: Site, region: int) -> None:
    """A made-up adcode is invalid input, never evidence of diversion; nothing recorded."""
    assert not geo.default_index().is_district([region])[0]
    before = dump(shipped.root)
    with scangate.open_data_dir(shipped.root) as dd:
        with pytest.raises(InvalidArgument, match=r"^scans\[1\]\.region: ") as info:
            decide_verdicts(dd, [Scan(shipped.items[0], "a", region=440106, time_ms=T_SHIP_MS + 1),
                                 Scan(shipped.items[1], "b", region=region, time_ms=T_SHIP_MS + 1)])
        assert str(region) in str(info.value)
        # with lat/lon given as well: the adcode is still checked
        with pytest.raises(InvalidArgument, match=r"^scans\[0\]\.region: "):
            decide_verdicts(dd, [Scan(shipped.items[1], "b", region=region, lat=23.1, lon=113.3,
                                      time_ms=T_SHIP_MS + 1)])
        assert scan_history(dd, shipped.items[0]) is None
    assert dump(shipped.root) == before


def test_real_districts_still_decide(shipped: Site) -> None:
    with scangate.open_data_dir(shipped.root) as dd:
        inside, outside, placeless = decide_verdicts(dd, [
            Scan(shipped.items[0], "a", region=440106, time_ms=T_SHIP_MS + 1),       # Guangzhou: in 44
            Scan(shipped.items[1], "b", region=510104, time_ms=T_SHIP_MS + 1),       # Chengdu: diverted
            Scan(shipped.items[2], "c", time_ms=T_SHIP_MS + 1)])                     # no region
        assert [v.verdict.label for v in (inside, outside, placeless)] == ["genuine", "diverted", "genuine"]


# ------------------------------------------------------------------ fuzz
_FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="module")
def fuzz_dd(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    dd = scangate.init_data_dir(tmp_path_factory.mktemp("fuzz") / "data")
    items = dd.issue_codes("BAIJIU", "item", 4, batch="F").as_strings()
    ingest.load_dealers_csv(dd, b"dealer_id,name,territory\nD1,One,44\n")
    try:
        yield dd, items
    finally:
        dd.close()


_csv_text = st.one_of(
    st.text(),
    st.text(alphabet=st.sampled_from(list(',"\r\n\x00\udc80D1 abc4-:TZz\ufeff')), max_size=80),
    st.binary(max_size=200).map(lambda b: b.decode("latin-1")),
)


def _only_our_errors(call) -> None:  # type: ignore[no-untyped-def]
    try:
        call()
    except InvalidArgument as exc:      # BatchRejected is one
        str(exc).encode("utf-8")        # the message itself is printable as UTF-8
        if isinstance(exc, BatchRejected):
            for p in exc.problems:
                str(p).encode("utf-8")


@_FUZZ
@given(header=st.sampled_from(["unit,dealer_id,shipped_at,shipment_id\n", "dealer_id,name,territory\n",
                               "parent,child\n", ""]),
       body=_csv_text, raw=st.binary(max_size=120), which=st.sampled_from(["ship", "dealers", "link"]))
def test_fuzz_csv_parsers(fuzz_dd, header: str, body: str, raw: bytes, which: str) -> None:  # type: ignore[no-untyped-def]
    dd, _items = fuzz_dd
    parse = {"ship": ingest.ship_csv, "dealers": ingest.load_dealers_csv, "link": ingest.link_csv}[which]
    content = (header + body).encode("utf-8", "surrogatepass")   # surrogates: invalid UTF-8 bytes
    _only_our_errors(lambda: parse(dd, content, "fuzz.csv"))
    _only_our_errors(lambda: parse(dd, raw, "fuzz.csv"))


# Text that reaches what st.text() leaves out: lone surrogates, NUL, CR and other controls.
_char = st.one_of(st.characters(blacklist_categories=()), st.sampled_from(["\udc80", "\ud800", "\udfff", "\x00",
                                                                          "\r", "\x1b", "\x85"]))
_any_text = st.text(_char, max_size=20)
_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | _any_text,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_any_text, inner, max_size=4),
    max_leaves=20,
)
_hostile_str = st.one_of(
    _any_text,
    st.sampled_from(["2024-05-01T10:00:60Z", "2024-05-01T10:00:00z", "2024-05-01t10:00:00Z",
                     "0001-01-01T00:00:00Z", "9999-12-31T23:59:59+23:59", "2024-02-30T00:00:00Z",
                     "2024-05-01T24:00:00Z", "\udc80", "D1\x00", "D1", "shipping", "ADD", "owning_party",
                     "2024-05-01T10:00:00.0000000001+08:00", "2016-12-31T23:59:60.5+08:00"]),
)


def _encodings(doc: Any) -> list[str | bytes]:
    """The document as ASCII JSON (\\u escapes), as raw text, and as bytes (with any
    surrogate written as the invalid UTF-8 it would be)."""
    raw = json.dumps(doc, ensure_ascii=False)
    return [json.dumps(doc), raw, raw.encode("utf-8", "surrogatepass")]


@_FUZZ
@given(doc=_hostile_str | _json, text=_any_text, slot=st.sampled_from(["eventTime", "destination", "epc", "bizStep", "doc"]))
def test_fuzz_epcis_arbitrary_json(fuzz_dd, doc: Any, text: str, slot: str) -> None:  # type: ignore[no-untyped-def]
    """Arbitrary JSON as the document, and in each slot of an otherwise valid shipment."""
    dd, items = fuzz_dd
    if slot == "doc":
        shaped: Any = doc
    else:
        shaped = shipping_doc([items[2]])
        event = shaped["epcisBody"]["eventList"][0]
        if slot == "destination":
            event["destinationList"][0]["destination"] = doc
        elif slot == "epc":
            event["epcList"] = [doc]
        else:
            event[slot] = doc
    for content in [*_encodings(shaped), text, text.encode("utf-8", "surrogatepass")]:
        _only_our_errors(lambda: ingest.apply_epcis(dd, content, "fuzz.json"))


@_FUZZ
@given(etype=st.sampled_from(["ObjectEvent", "AggregationEvent"]),
       action=st.sampled_from(["ADD", "OBSERVE", "DELETE"]) | _hostile_str,
       step=st.just("shipping") | _hostile_str, when=st.just("2024-05-01T10:00:00Z") | _hostile_str,
       dest=st.just("D1") | _hostile_str | _json, dtype=st.just("owning_party") | _hostile_str,
       epc=_hostile_str | _json, use_item=st.booleans())
def test_fuzz_epcis_shaped_documents(fuzz_dd, etype: str, action: Any, step: Any, when: Any, dest: Any,  # type: ignore[no-untyped-def]
                                     dtype: Any, epc: Any, use_item: bool) -> None:
    dd, items = fuzz_dd
    unit = URL(items[0]) if use_item else epc
    event = {"type": etype, "action": action, "bizStep": step, "eventTime": when, "epcList": [unit],
             "parentID": URL(items[1]), "childEPCs": [unit],
             "destinationList": [{"type": dtype, "destination": dest}]}
    for content in _encodings({"type": "EPCISDocument", "epcisBody": {"eventList": [event]}}):
        _only_our_errors(lambda: ingest.apply_epcis(dd, content, "fuzz.json"))
