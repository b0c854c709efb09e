"""Trace: linkage CSV validated whole (one bad row in a million applies nothing),
re-packing, EPCIS aggregation semantics, GS1's own documents, shipments, dealers;
the records' bytes; every test on both trace paths (scangate.state.trace.TRACE_PATH)."""
from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import scangate
from scangate import _core, ingest
from scangate.epcis import load_schema
from scangate.errors import BatchRejected, CorruptionError, InvalidArgument, NotFound, Problem
from scangate.state import layout
from scangate.state import raw as state_raw
from scangate.state import trace as trace_state
from scangate.trace import Shipment, TraceStore
from scangate.verdicts import Scan, decide_verdicts

try:
    from gs1_fixtures import FIXTURES, needs_fixtures, require_fixtures
except ImportError:  # run as the tests package
    from tests.gs1_fixtures import FIXTURES, needs_fixtures, require_fixtures
try:
    import forgery
except ImportError:  # run as the tests package
    from tests import forgery
FIXTURE_NAMES = sorted(p.name for p in FIXTURES.glob("*.jsonld")) if FIXTURES.is_dir() else []
ALPHABET = _core.ALPHABET.decode() if isinstance(_core.ALPHABET, bytes) else str(_core.ALPHABET)
TRACE_DBS = ("links", "children", "dealers", "shipped", "ship_log")


@pytest.fixture(autouse=True, params=trace_state.TRACE_PATHS)
def trace_path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Every test here runs on both trace paths: every batch with Python ints
    ("small"), every batch with numpy ("array"); in this process and in the ones
    it starts (SCANGATE_TRACE_PATH). The same in tests/test_trace_scale.py."""
    monkeypatch.setattr(trace_state, "TRACE_PATH", request.param)
    monkeypatch.setenv(trace_state.TRACE_PATH_ENV, request.param)
    return str(request.param)


# ------------------------------------------------------------------ helpers
def typo(code: str, pos: int = 10) -> str:
    """The code with one symbol substituted: always a typo (check symbol wrong)."""
    new = ALPHABET[(ALPHABET.index(code[pos]) + 1) % 32]
    return code[:pos] + new + code[pos + 1 :]


def counterfeit(n: int, version: int = 1, seed: int = 7) -> list[str]:
    """Well-formed texts (check symbol right) of random blocks: they do not authenticate."""
    return forgery.random_code_texts(n, version, seed)


def forge(dd: scangate.DataDir, serials: list[int], level: int = 1) -> list[str]:
    """Authentic codes (made with the real key) for serials that may never have been issued."""
    return forgery.forge(dd.keys.current, serials, [level] * len(serials))


def db_entries(dd: scangate.DataDir) -> dict[str, int]:
    return {name: state_raw.count(dd, name) for name in TRACE_DBS}


def db_snapshot(dd: scangate.DataDir) -> dict[str, list[tuple[bytes, bytes]]]:
    return state_raw.dump(dd, TRACE_DBS)


def serials(issued: scangate.IssuedCodes) -> np.ndarray:
    return np.arange(issued.range.first, issued.range.last + 1, dtype=np.uint64)


def csv(rows: list[tuple[str, str]], header: bool = True) -> bytes:
    return (("parent,child\n" if header else "") + "".join(f"{p},{c}\n" for p, c in rows)).encode()


URL = "https://scn.example.com/{}".format
T0 = "2024-05-01T10:00:00Z"
T0_MS = 1_714_557_600_000


def event(etype: str, **fields: Any) -> dict[str, Any]:
    return {"type": etype, "eventTime": T0, "eventTimeZoneOffset": "+00:00", **fields}


def agg(action: str, parent: str | None, children: list[str] | None = None, **extra: Any) -> dict[str, Any]:
    ev = event("AggregationEvent", action=action, **extra)
    if parent is not None:
        ev["parentID"] = URL(parent)
    if children is not None:
        ev["childEPCs"] = [URL(c) for c in children]
    return ev


def shipping(units: list[str], dealer: str, when: str = T0) -> dict[str, Any]:
    ev = event("ObjectEvent", action="OBSERVE", bizStep="shipping", epcList=[URL(u) for u in units],
               destinationList=[{"type": "owning_party", "destination": dealer}])
    ev["eventTime"] = when
    return ev


def document(*events: dict[str, Any]) -> str:
    return json.dumps({
        "@context": ["https://ref.gs1.org/standards/epcis/2.0.0/epcis-context.jsonld"],
        "type": "EPCISDocument", "schemaVersion": "2.0", "creationDate": T0,
        "epcisBody": {"eventList": list(events)},
    })


# ------------------------------------------------------------------ one bad row in a million
N = 1_000_000
PER_CASE = 20
MID = 500_000          # the row corrupted (0-based data row); its line is MID + 2 (header on line 1)
MID_LINE = MID + 2
W = 2 * _core.CODE_LEN + 2


@dataclass
class Million:
    dd: scangate.DataDir
    items: scangate.IssuedCodes
    cases: scangate.IssuedCodes
    pallets: scangate.IssuedCodes
    rows: np.ndarray  # (N x 60) "case,item\n"

    def item(self, i: int) -> str:
        return self.items.text[i].tobytes().decode()

    def case(self, i: int) -> str:
        return self.cases.text[i].tobytes().decode()

    def pallet(self, i: int) -> str:
        return self.pallets.text[i].tobytes().decode()

    def content(self, replace: dict[int, str]) -> bytes:
        """The CSV (with header) with the given data rows replaced by other text."""
        parts = [b"parent,child\n"]
        last = 0
        for r in sorted(replace):
            parts += [self.rows[last:r].tobytes(), replace[r].encode() + b"\n"]
            last = r + 1
        parts.append(self.rows[last:].tobytes())
        return b"".join(parts)


def build_rows(items: scangate.IssuedCodes, cases: scangate.IssuedCodes) -> np.ndarray:
    n = len(items)
    rows = np.empty((n, W), np.uint8)
    rows[:, : _core.CODE_LEN] = cases.text[np.arange(n) // PER_CASE]
    rows[:, _core.CODE_LEN] = ord(",")
    rows[:, _core.CODE_LEN + 1 : -1] = items.text
    rows[:, -1] = ord("\n")
    return rows


def issue_million(root: Path) -> Million:
    dd = scangate.init_data_dir(root)
    items = dd.issue_codes("SKU", "item", N, batch="L1")
    cases = dd.issue_codes("SKU", "case", N // PER_CASE, batch="L1")
    pallets = dd.issue_codes("SKU", "pallet", 10, batch="L1")
    return Million(dd, items, cases, pallets, build_rows(items, cases))


@pytest.fixture(scope="module")
def million(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Million]:
    m = issue_million(tmp_path_factory.mktemp("million") / "data")
    try:
        yield m
    finally:
        m.dd.close()


def assert_nothing_linked(m: Million) -> None:
    ts = TraceStore(m.dd.store)
    assert not ts.ancestors(serials(m.items)).any()
    assert not ts.ancestors(serials(m.cases)).any()
    for c in (0, MID // PER_CASE, len(m.cases) - 1):
        assert len(ts.children_of(m.cases.range.first + c)) == 0
    assert db_entries(m.dd) == {"links": 0, "children": 0, "dealers": 0, "shipped": 0, "ship_log": 0}


BadRow = Callable[[Million], tuple[dict[int, str], list[tuple[str, str, str]]]]

BAD_ROWS: dict[str, BadRow] = {
    # name: (rows to replace, expected [(where, field, message part)])
    "child-typo": lambda m: ({MID: f"{m.case(MID // 20)},{typo(m.item(MID))}"},
                             [(f"m.csv:{MID_LINE}", "child", "typo")]),
    "parent-typo": lambda m: ({MID: f"{typo(m.case(MID // 20), 3)},{m.item(MID)}"},
                              [(f"m.csv:{MID_LINE}", "parent", "typo")]),
    "child-counterfeit": lambda m: ({MID: f"{m.case(MID // 20)},{counterfeit(1)[0]}"},
                                    [(f"m.csv:{MID_LINE}", "child", "counterfeit")]),
    "child-not-issued": lambda m: ({MID: f"{m.case(MID // 20)},{forge(m.dd, [m.dd.store.next_serial() + 5])[0]}"},
                                   [(f"m.csv:{MID_LINE}", "child", "never issued")]),
    "child-malformed": lambda m: ({MID: f"{m.case(MID // 20)},NOT-A-CODE"},
                                  [(f"m.csv:{MID_LINE}", "child", "malformed")]),
    "case-into-item": lambda m: ({MID: f"{m.item(MID)},{m.case(3)}"},
                                 [(f"m.csv:{MID_LINE}", "child", "a case cannot go into a")]),
    "pallet-into-case": lambda m: ({MID: f"{m.case(MID // 20)},{m.pallet(0)}"},
                                   [(f"m.csv:{MID_LINE}", "child", "a pallet cannot go into a")]),
    "item-into-item": lambda m: ({MID: f"{m.item(MID + 1)},{m.item(MID)}"},
                                 [(f"m.csv:{MID_LINE}", "child", "cannot go into")]),
    "three-fields": lambda m: ({MID: f"{m.case(MID // 20)},{m.item(MID)},extra"},
                               [(f"m.csv:{MID_LINE}", "row", "two fields")]),
    "one-field": lambda m: ({MID: m.item(MID)}, [(f"m.csv:{MID_LINE}", "row", "two fields")]),
    # the child of row MID listed again, 250,000 rows later, under another case
    "child-twice": lambda m: ({MID + 250_000: f"{m.case(7)},{m.item(MID)}"},
                              [(f"m.csv:{MID_LINE + 250_000}", "child", f"line {MID_LINE}")]),
}


@pytest.mark.parametrize("name", list(BAD_ROWS))
def test_one_bad_row_in_a_million_applies_nothing(million: Million, name: str) -> None:
    replace, expected = BAD_ROWS[name](million)
    content = million.content(replace)
    with pytest.raises(BatchRejected) as info:
        ingest.link_csv(million.dd, content, "m.csv")
    problems = info.value.problems
    assert [(p.where, p.field) for p in problems] == [(w, f) for w, f, _ in expected], problems
    for p, (_, _, part) in zip(problems, expected):
        assert part in p.message, p
    assert info.value.source == "m.csv"
    assert_nothing_linked(million)


def test_a_million_rows_apply_when_valid(tmp_path: Path) -> None:
    m = issue_million(tmp_path / "data")
    with m.dd:
        report = ingest.link_csv(m.dd, m.content({}), "m.csv")
        assert (report.rows, report.added, report.removed, report.parents) == (N, N, 0, N // PER_CASE)
        anc = TraceStore(m.dd.store).ancestors(serials(m.items))
        expected = np.uint64(m.cases.range.first) + (np.arange(N) // PER_CASE).astype(np.uint64)
        assert np.array_equal(anc[:, 0], expected)
        assert not anc[:, 1].any()
        assert db_entries(m.dd)["children"] == N // PER_CASE
        assert db_entries(m.dd)["links"] == len(np.unique(serials(m.items) >> np.uint64(3)))  # 8 slots a bucket


def test_many_bad_rows_are_all_named_in_line_order(data_dir: scangate.DataDir) -> None:
    items = data_dir.issue_codes("SKU", "item", 30).as_strings()
    cases = data_dir.issue_codes("SKU", "case", 3).as_strings()
    rows = [(cases[i // 10], items[i]) for i in range(30)]
    text = csv(rows).decode().splitlines()
    text[4] = f"{cases[0]},{typo(items[3])}"          # line 5
    text[9] = f"{typo(cases[0])},{items[8]}"          # line 10
    text[2] = "just-one-field"                         # line 3
    text[20] = f"{items[0]},{cases[1]}"                # line 21: case into item
    with pytest.raises(BatchRejected) as info:
        ingest.link_csv(data_dir, ("\n".join(text) + "\n").encode(), "f.csv")
    assert [(p.where, p.field) for p in info.value.problems] == [
        ("f.csv:3", "row"), ("f.csv:5", "child"), ("f.csv:10", "parent"), ("f.csv:21", "child"),
    ]
    assert "4 problem(s), nothing applied" in str(info.value)
    assert db_entries(data_dir)["links"] == 0


def test_csv_without_header_and_crlf(data_dir: scangate.DataDir) -> None:
    items = data_dir.issue_codes("SKU", "item", 4).as_strings()
    case = data_dir.issue_codes("SKU", "case", 1)
    content = "".join(f"{case.as_strings()[0]},{c}\r\n" for c in items).encode()
    report = ingest.link_csv(data_dir, content, "f.csv")
    assert (report.rows, report.added) == (4, 4)
    assert TraceStore(data_dir.store).children_of(case.range.first).tolist() == [1, 2, 3, 4]
    # a bad row of a header-less file is named by its own line number
    bad = f"{case.as_strings()[0]},{items[0]}\n{case.as_strings()[0]},{typo(items[1])}\n".encode()
    with pytest.raises(BatchRejected) as info:
        ingest.link_csv(data_dir, bad, "g.csv")
    assert [(p.where, p.field) for p in info.value.problems] == [("g.csv:2", "child")]


# ------------------------------------------------------------------ re-packing
def test_repacking_moves_children_between_parents(data_dir: scangate.DataDir) -> None:
    items = data_dir.issue_codes("SKU", "item", 40)
    cases = data_dir.issue_codes("SKU", "case", 3)
    pallet = data_dir.issue_codes("SKU", "pallet", 1)
    it, cs, pl = items.as_strings(), cases.as_strings(), pallet.as_strings()
    ingest.link_csv(data_dir, csv([(cs[i // 20], it[i]) for i in range(40)]
                                  + [(pl[0], cs[0]), (pl[0], cs[1])]), "a.csv")
    ts = TraceStore(data_dir.store)
    s = serials(items)
    c0, c1, c2 = (int(x) for x in serials(cases))
    p0 = pallet.range.first
    assert ts.children_of(c0).tolist() == s[:20].tolist()
    assert ts.children_of(c1).tolist() == s[20:].tolist()

    # move bottles 3, 4, 5 from case 0 into case 1 and bottle 30 into the (unshipped, loose) case 2
    report = ingest.link_csv(data_dir, csv([(cs[1], it[3]), (cs[1], it[4]), (cs[1], it[5]), (cs[2], it[30])]),
                             "b.csv")
    assert (report.rows, report.added) == (4, 4)
    moved = {3, 4, 5}
    assert ts.children_of(c0).tolist() == [int(s[i]) for i in range(20) if i not in moved]
    assert ts.children_of(c1).tolist() == sorted([int(s[i]) for i in moved] + [int(s[i]) for i in range(20, 40)
                                                                                  if i != 30])
    assert ts.children_of(c2).tolist() == [int(s[30])]
    anc = ts.ancestors(s)
    expected_parent = [c1 if i in moved or 20 <= i < 40 else c0 for i in range(40)]
    expected_parent[30] = c2
    assert anc[:, 0].tolist() == expected_parent
    assert anc[:, 1].tolist() == [0 if p == c2 else p0 for p in expected_parent]

    # linking the same pair again changes nothing
    before = db_snapshot(data_dir)
    ingest.link_csv(data_dir, csv([(cs[1], it[3])]), "c.csv")
    assert db_snapshot(data_dir) == before
    # the same row twice in one file is fine (once is enough)
    report = ingest.link_csv(data_dir, csv([(cs[0], it[3]), (cs[0], it[3])]), "d.csv")
    assert report.added == 1
    assert int(s[3]) in ts.children_of(c0).tolist() and int(s[3]) not in ts.children_of(c1).tolist()


def test_a_parent_that_loses_all_children_disappears(data_dir: scangate.DataDir) -> None:
    items = data_dir.issue_codes("SKU", "item", 3).as_strings()
    cases = data_dir.issue_codes("SKU", "case", 2)
    cs = cases.as_strings()
    ingest.link_csv(data_dir, csv([(cs[0], c) for c in items]), "a.csv")
    ingest.link_csv(data_dir, csv([(cs[1], c) for c in items]), "b.csv")
    ts = TraceStore(data_dir.store)
    assert len(ts.children_of(cases.range.first)) == 0
    assert ts.children_of(cases.range.first + 1).tolist() == [1, 2, 3]
    assert db_entries(data_dir)["children"] == 1


# ------------------------------------------------------------------ EPCIS aggregation
@dataclass
class Packed:
    dd: scangate.DataDir
    items: list[str]
    cases: list[str]
    pallets: list[str]
    item_serials: np.ndarray
    case_serials: np.ndarray
    pallet_serials: np.ndarray

    @property
    def ts(self) -> TraceStore:
        return TraceStore(self.dd.store)


@pytest.fixture
def packed(data_dir: scangate.DataDir) -> Packed:
    """20 items in case 0, 20 in case 1, cases 0 and 1 on pallet 0; case 2, pallet 1 empty."""
    items = data_dir.issue_codes("SKU", "item", 40)
    cases = data_dir.issue_codes("SKU", "case", 3)
    pallets = data_dir.issue_codes("SKU", "pallet", 2)
    it, cs, pl = items.as_strings(), cases.as_strings(), pallets.as_strings()
    ingest.link_csv(data_dir, csv([(cs[i // 20], it[i]) for i in range(40)] + [(pl[0], cs[0]), (pl[0], cs[1])]),
                    "pack.csv")
    return Packed(data_dir, it, cs, pl, serials(items), serials(cases), serials(pallets))


def test_epcis_delete_without_children_unpacks_all(packed: Packed) -> None:
    report = ingest.apply_epcis(packed.dd, document(agg("DELETE", packed.cases[0])), "e.json")
    assert (report.aggregations, report.added, report.removed) == (1, 0, 20)
    ts = packed.ts
    assert len(ts.children_of(int(packed.case_serials[0]))) == 0
    anc = ts.ancestors(packed.item_serials)
    assert not anc[:20].any()
    assert anc[20:, 0].tolist() == [int(packed.case_serials[1])] * 20
    # the case itself stays on its pallet
    assert ts.ancestors(packed.case_serials[:1])[0].tolist() == [int(packed.pallet_serials[0]), 0]
    # unpacking an empty parent is harmless
    report = ingest.apply_epcis(packed.dd, document(agg("DELETE", packed.cases[2])), "e.json")
    assert report.removed == 0


def test_epcis_delete_with_children_and_add(packed: Packed) -> None:
    doc = document(
        agg("DELETE", packed.cases[0], [packed.items[0], packed.items[1]]),
        agg("DELETE", packed.cases[0], [packed.items[25]]),      # not in case 0: nothing to do
        agg("ADD", packed.cases[2], [packed.items[1]]),
    )
    report = ingest.apply_epcis(packed.dd, doc, "e.json")
    assert (report.aggregations, report.added, report.removed) == (3, 1, 2)
    ts = packed.ts
    anc = ts.ancestors(packed.item_serials)
    assert anc[0].tolist() == [0, 0]
    assert anc[1].tolist() == [int(packed.case_serials[2]), 0]
    assert anc[25].tolist() == [int(packed.case_serials[1]), int(packed.pallet_serials[0])]
    assert ts.children_of(int(packed.case_serials[0])).tolist() == packed.item_serials[2:20].tolist()
    assert ts.children_of(int(packed.case_serials[2])).tolist() == [int(packed.item_serials[1])]


def test_epcis_events_apply_in_order(packed: Packed) -> None:
    # ADD then DELETE of the same child in one document: it ends up loose
    doc = document(agg("ADD", packed.cases[2], [packed.items[5]]), agg("DELETE", packed.cases[2], [packed.items[5]]))
    ingest.apply_epcis(packed.dd, doc, "e.json")
    assert packed.ts.ancestors(packed.item_serials[5:6]).tolist() == [[0, 0]]
    assert len(packed.ts.children_of(int(packed.case_serials[2]))) == 0
    assert int(packed.item_serials[5]) not in packed.ts.children_of(int(packed.case_serials[0])).tolist()
    # ADD an item straight onto a pallet, and the case onto the other pallet
    doc = document(agg("ADD", packed.pallets[1], [packed.items[6], packed.cases[1]]))
    ingest.apply_epcis(packed.dd, doc, "e.json")
    anc = packed.ts.ancestors(packed.item_serials[[6, 21]])
    assert anc.tolist() == [[int(packed.pallet_serials[1]), 0],
                            [int(packed.case_serials[1]), int(packed.pallet_serials[1])]]


def test_epcis_observe_changes_nothing(packed: Packed) -> None:
    before = db_snapshot(packed.dd)
    doc = document(agg("OBSERVE", packed.cases[2], [packed.items[0], packed.items[30]]),
                   agg("OBSERVE", packed.pallets[1], [packed.cases[0]]))
    report = ingest.apply_epcis(packed.dd, doc, "e.json")
    assert (report.events, report.aggregations, report.added, report.removed) == (2, 2, 0, 0)
    assert db_snapshot(packed.dd) == before


@pytest.mark.parametrize(
    ("parent_kind", "child_kind", "words"),
    [("cases", "pallets", "a pallet cannot go into a case"),
     ("items", "items", "cannot go into"),
     ("items", "cases", "a case cannot go into"),
     ("cases", "cases", "a case cannot go into a case"),
     ("pallets", "pallets", "a pallet cannot go into a pallet")],
)
def test_epcis_level_rules(packed: Packed, parent_kind: str, child_kind: str, words: str) -> None:
    before = db_snapshot(packed.dd)
    parent = getattr(packed, parent_kind)[2 if parent_kind == "cases" else 1]
    child = getattr(packed, child_kind)[0]
    # event 0 is valid, event 1 breaks the level rule: nothing at all is applied
    doc = document(agg("ADD", packed.cases[2], [packed.items[7]]), agg("ADD", parent, [packed.items[8], child]))
    with pytest.raises(BatchRejected) as info:
        ingest.apply_epcis(packed.dd, doc, "e.json")
    problems = info.value.problems
    base = "e.json:epcisBody.eventList[1].childEPCs"
    expected = [(f"{base}[0]", "child")] if parent_kind == "items" else []   # an item into an item, too
    assert [(p.where, p.field) for p in problems] == expected + [(f"{base}[1]", "child")], problems
    assert words in problems[-1].message
    assert db_snapshot(packed.dd) == before


def test_epcis_pallet_into_case_rejected(packed: Packed) -> None:
    before = db_snapshot(packed.dd)
    doc = document(agg("ADD", packed.cases[2], [packed.items[0], packed.pallets[1]]))
    with pytest.raises(BatchRejected) as info:
        ingest.apply_epcis(packed.dd, doc, "e.json")
    assert info.value.problems == [Problem("e.json:epcisBody.eventList[0].childEPCs[1]", "child",
                                           "a pallet cannot go into a case")]
    assert db_snapshot(packed.dd) == before


def test_epcis_codes_not_genuine_are_named_by_path(packed: Packed) -> None:
    before = db_snapshot(packed.dd)
    fake = counterfeit(1)[0]
    doc = document(agg("ADD", packed.cases[2], [packed.items[0], typo(packed.items[1])]),
                   agg("ADD", fake, [packed.items[2]]),
                   shipping([packed.pallets[0]], "NO-SUCH-DEALER"))
    with pytest.raises(BatchRejected) as info:
        ingest.apply_epcis(packed.dd, doc, "e.json")
    got = {(p.where, p.field) for p in info.value.problems}
    assert got == {
        ("e.json:epcisBody.eventList[0].childEPCs[1]", "code"),
        ("e.json:epcisBody.eventList[1].parentID", "code"),
        ("e.json:epcisBody.eventList[2].destinationList", "destination"),
    }, info.value.problems
    assert db_snapshot(packed.dd) == before


def test_epcis_shipping_records_the_dealer(packed: Packed) -> None:
    ingest.load_dealers_csv(packed.dd, b"dealer_id,name,territory\nD1,One,44\nD2,Two,51 3101\n")
    doc = document(shipping([packed.pallets[0]], "D1", "2024-05-01T10:00:00Z"),
                   shipping([packed.cases[1]], "D2", "2024-05-03T10:00:00+08:00"))
    report = ingest.apply_epcis(packed.dd, doc, "s.json")
    assert (report.shipments, report.aggregations) == (2, 0)
    chains = packed.ts.trace(packed.item_serials[[0, 39]])
    assert chains[0].dealer is not None and chains[0].dealer.dealer_id == "D1"
    assert chains[0].shipment is not None and chains[0].shipment.unit == int(packed.pallet_serials[0])
    assert chains[0].shipment.shipment_id == "epcis:0"
    # the case's own, later shipment governs its bottles
    assert chains[1].dealer is not None and chains[1].dealer.dealer_id == "D2"
    assert chains[1].dealer.territory == ("3101", "51")
    assert chains[1].shipment is not None and chains[1].shipment.shipped_at_ms == 1_714_701_600_000


# ------------------------------------------------------------------ GS1 fixtures
@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    require_fixtures()
    return load_schema(FIXTURES / "EPCIS-JSON-Schema.json")


E0 = "epcisBody.eventList[0]"
GS1_REJECTED = {
    "Example_9.6.1-ObjectEvent.jsonld": [f"{E0}.epcList[0]", f"{E0}.epcList[1]", f"{E0}.destinationList"],
    "Example_9.6.1-ObjectEventWithDigitalLink.jsonld": [f"{E0}.epcList[0]", f"{E0}.epcList[1]",
                                                        f"{E0}.destinationList"],
    "Example_9.6.3-AggregationEvent.jsonld": [f"{E0}.parentID", f"{E0}.childEPCs[0]", f"{E0}.childEPCs[1]",
                                              f"{E0}.childQuantityList"],
    "Example_9.6.3-AggregationEventWithDigitalLink.jsonld": [f"{E0}.parentID", f"{E0}.childEPCs[0]",
                                                             f"{E0}.childEPCs[1]", f"{E0}.childQuantityList"],
    "aggregation_event_all_possible_fields.jsonld": [f"{E0}.parentID", f"{E0}.childEPCs[0]", f"{E0}.childEPCs[1]",
                                                     f"{E0}.childQuantityList", f"{E0}.errorDeclaration"],
}
# documents whose events are all of kinds the engine does not use: applied as no-ops
GS1_SKIPPED = {
    "ErrorDeclarationAndCorrectiveEvent.jsonld": 2,
    "Example-Type-sourceOrDestination_measurement_bizTransaction.jsonld": 1,
}


@needs_fixtures
def test_every_gs1_fixture_is_covered() -> None:
    assert set(FIXTURE_NAMES) == set(GS1_REJECTED) | set(GS1_SKIPPED)


@needs_fixtures
@pytest.mark.parametrize("name", FIXTURE_NAMES)
def test_gs1_fixture_changes_nothing(packed: Packed, schema: dict[str, Any], name: str) -> None:
    ingest.load_dealers_csv(packed.dd, b"dealer_id,name,territory\nD1,One,44\n")
    ingest.ship_csv(packed.dd, f"unit,dealer_id,shipped_at\n{packed.pallets[0]},D1,{T0}\n".encode())
    before = db_snapshot(packed.dd)
    counts = db_entries(packed.dd)
    assert counts == {"links": 6, "children": 3, "dealers": 1, "shipped": 1, "ship_log": 1}
    content = (FIXTURES / name).read_bytes()
    if name in GS1_REJECTED:
        with pytest.raises(BatchRejected) as info:
            ingest.apply_epcis(packed.dd, content, name, schema=schema)
        problems = info.value.problems
        assert [p.where for p in problems] == [f"{name}:{path}" for path in GS1_REJECTED[name]]
        foreign = [p for p in problems if "foreign identifier" in p.message]
        assert [p.where.split(".")[-1] for p in foreign] == [
            path.split(".")[-1] for path in GS1_REJECTED[name] if path.endswith("]") or path.endswith("ID")]
        assert all("not a code issued by this engine" in p.message for p in foreign)
        assert not any(p.message.startswith("schema") for p in problems)   # the fixtures are schema-valid
    else:
        report = ingest.apply_epcis(packed.dd, content, name, schema=schema)
        assert (report.skipped, report.aggregations, report.shipments, report.added, report.removed) == (
            GS1_SKIPPED[name], 0, 0, 0, 0)
    assert db_entries(packed.dd) == counts
    assert db_snapshot(packed.dd) == before


# ------------------------------------------------------------------ shipments
@pytest.fixture
def shipped(packed: Packed) -> Packed:
    ingest.load_dealers_csv(packed.dd, "dealer_id,name,territory\nD1,广州一号,4401\nD2,Chengdu Two,51\n"
                                       "D3,Three,11 12\n".encode())
    return packed


def test_later_shipment_supersedes_and_history_keeps_both(shipped: Packed) -> None:
    p = shipped.pallets[0]
    ingest.ship_csv(shipped.dd, f"unit,dealer_id,shipped_at,shipment_id\n{p},D1,2024-05-01T08:00:00+08:00,S1\n"
                    .encode())
    ts = shipped.ts
    assert ts.trace(shipped.item_serials[:1])[0].dealer.dealer_id == "D1"  # type: ignore[union-attr]
    ingest.ship_csv(shipped.dd, f"unit,dealer_id,shipped_at,shipment_id\n{p},D2,2024-05-02T08:00:00+08:00,S2\n"
                    .encode())
    chain = ts.trace(shipped.item_serials[:1])[0]
    assert chain.dealer is not None and chain.dealer.dealer_id == "D2"
    assert chain.shipment is not None and (chain.shipment.shipment_id, chain.shipment.shipped_at_ms) == (
        "S2", 1_714_608_000_000)
    # an older shipment recorded late goes into the history but does not take over
    ingest.ship_csv(shipped.dd, f"unit,dealer_id,shipped_at,shipment_id\n{p},D3,2024-04-30T08:00:00Z,S0\n"
                    .encode())
    assert ts.trace(shipped.item_serials[:1])[0].dealer.dealer_id == "D2"  # type: ignore[union-attr]
    history = ts.shipment_history(int(shipped.pallet_serials[0]))
    assert [(s.dealer_id, s.shipment_id) for s in history] == [("D3", "S0"), ("D1", "S1"), ("D2", "S2")]
    assert all(s.unit == int(shipped.pallet_serials[0]) for s in history)
    # the item and the other pallet have no history of their own
    assert ts.shipment_history(int(shipped.item_serials[0])) == []
    assert ts.shipment_history(int(shipped.pallet_serials[1])) == []
    assert ts.dealer("D1") is not None and ts.dealer("D1").name == "广州一号"  # type: ignore[union-attr]


def test_loose_item_and_unshipped_units(shipped: Packed) -> None:
    chain = shipped.ts.trace(shipped.item_serials[:1])[0]
    assert chain.shipment is None and chain.dealer is None
    assert chain.ancestors == (int(shipped.case_serials[0]), int(shipped.pallet_serials[0]))
    # a bottle shipped on its own
    ingest.ship_csv(shipped.dd, f"unit,dealer_id\n{shipped.items[0]},D3\n".encode())
    chain = shipped.ts.trace(shipped.item_serials[:2])
    assert chain[0].dealer.dealer_id == "D3" and chain[0].shipment.unit == int(shipped.item_serials[0])  # type: ignore[union-attr]
    assert chain[1].dealer is None


@pytest.mark.parametrize(
    ("row", "field", "words"),
    [("{unit},D9,2024-05-01T08:00:00Z", "dealer_id", "'D9' is not loaded"),
     pytest.param("{unit},,2024-05-01T08:00:00Z", "dealer_id", "", id="empty-dealer"),
     ("{unit},D1,yesterday", "shipped_at", "not an ISO 8601 time"),
     ("{unit},D1,2024-13-01T08:00:00Z", "shipped_at", "not an ISO 8601 time"),
     ("{unit},D1,2024-05-01T08:00:00", "shipped_at", "no time zone"),
     ("{typo},D1,2024-05-01T08:00:00Z", "code", "typo"),
     ("{fake},D1,2024-05-01T08:00:00Z", "code", "counterfeit")],
)
def test_bad_shipment_row_is_named_and_nothing_applied(shipped: Packed, row: str, field: str, words: str) -> None:
    good = f"{shipped.pallets[1]},D1,2024-05-01T08:00:00Z"
    bad = row.format(unit=shipped.pallets[0], typo=typo(shipped.pallets[0]), fake=counterfeit(1)[0])
    content = f"unit,dealer_id,shipped_at\n{good}\n{good}\n{bad}\n{good}\n".encode()
    before = db_snapshot(shipped.dd)
    with pytest.raises(BatchRejected) as info:
        ingest.ship_csv(shipped.dd, content, "s.csv")
    problems = info.value.problems
    assert [(p.where, p.field) for p in problems] == [("s.csv:4", field)], problems
    assert words in problems[0].message
    assert db_snapshot(shipped.dd) == before


def test_shipments_csv_needs_its_columns(shipped: Packed) -> None:
    with pytest.raises(BatchRejected) as info:
        ingest.ship_csv(shipped.dd, f"code,dealer\n{shipped.pallets[0]},D1\n".encode(), "s.csv")
    assert [(p.where, p.field) for p in info.value.problems] == [("s.csv:1", "header")]
    assert "unit" in info.value.problems[0].message and "dealer_id" in info.value.problems[0].message


# ------------------------------------------------------------------ dealers
def test_dealers_load_and_replace(data_dir: scangate.DataDir) -> None:
    n = ingest.load_dealers_csv(data_dir, "dealer_id,name,territory\nD1,广州,4401\nD2,Multi,51 3101 440106 51\n"
                                .encode())
    assert n == 2
    ts = TraceStore(data_dir.store)
    dealers = {d.dealer_id: d for d in ts.list_dealers()}
    assert dealers["D1"].territory == ("4401",)
    assert dealers["D2"].territory == ("3101", "440106", "51")
    assert dealers["D2"].covers(510104) and dealers["D2"].covers(440106) and not dealers["D2"].covers(440105)
    assert not dealers["D1"].covers(440000 + 300 + 4)   # 440304 is Shenzhen
    ingest.load_dealers_csv(data_dir, b"dealer_id,name,territory\nD1,Renamed,44\n")
    assert ts.dealer("D1") is not None and ts.dealer("D1").territory == ("44",)  # type: ignore[union-attr]
    assert ts.dealer("D1").name == "Renamed"  # type: ignore[union-attr]
    assert len(ts.list_dealers()) == 2


@pytest.mark.parametrize(
    ("territory", "words"),
    [("4", "'4'"), ("44x", "'44x'"), ("441", "'441'"), ("4401066", "'4401066'"), ("", "at least one"),
     ("44 ４４", "'４４'"), ("44 -1", "'-1'")],
)
def test_dealers_bad_territory_names_the_line(data_dir: scangate.DataDir, territory: str, words: str) -> None:
    content = f"dealer_id,name,territory\nD1,One,44\nD2,Two,4401 51\nD3,Bad,{territory}\nD4,Four,11\n".encode()
    with pytest.raises(BatchRejected) as info:
        ingest.load_dealers_csv(data_dir, content, "d.csv")
    problems = info.value.problems
    assert [(p.where, p.field) for p in problems] == [("d.csv:4", "territory")], problems
    assert words in problems[0].message
    assert TraceStore(data_dir.store).list_dealers() == []


def test_dealers_overlong_dealer_id_is_rejected(data_dir: scangate.DataDir) -> None:
    content = f"dealer_id,name,territory\nD1,One,44\n{'D' * 600},Long,44\n".encode()
    with pytest.raises(BatchRejected) as info:
        ingest.load_dealers_csv(data_dir, content, "d.csv")
    assert [(p.where, p.field) for p in info.value.problems] == [("d.csv:3", "dealer_id")]
    assert TraceStore(data_dir.store).list_dealers() == []


def test_dealers_bad_rows_all_named(data_dir: scangate.DataDir) -> None:
    content = b"dealer_id,name,territory\n,Nameless,44\nD2,Two,4\nD3,Three,44x 51\nD4,Four,11\n"
    with pytest.raises(BatchRejected) as info:
        ingest.load_dealers_csv(data_dir, content, "d.csv")
    assert [(p.where, p.field) for p in info.value.problems] == [
        ("d.csv:2", "dealer_id"), ("d.csv:3", "territory"), ("d.csv:4", "territory")]
    assert TraceStore(data_dir.store).list_dealers() == []
    with pytest.raises(BatchRejected) as info:
        ingest.load_dealers_csv(data_dir, b"id,name\nD1,One\n", "d.csv")
    assert [(p.where, p.field) for p in info.value.problems] == [("d.csv:1", "header")]


# ------------------------------------------------------------------ CSV forms
def test_csv_accepted_forms(data_dir: scangate.DataDir) -> None:
    it = data_dir.issue_codes("SKU", "item", 6).as_strings()
    case = data_dir.issue_codes("SKU", "case", 1)
    c = case.as_strings()[0]
    forms = [
        f"Parent,Child\n{c},{it[0]}\n",                               # header in any case
        f" {c} , {it[1]} \n",                                        # spaces around fields
        f"{c.lower()},{it[2][:5]}-{it[2][5:15]}-{it[2][15:]}\n",     # lower case, hyphen groups
        f"https://scn.example.com/{c},HTTPS://SCN.EXAMPLE.COM/{it[3]}?src=qr\n",  # URL form
        f"{c},{it[4]}",                                              # no final newline
        "parent,child\n",                                           # header only
        "",                                                         # empty file
    ]
    for form in forms:
        ingest.link_csv(data_dir, form.encode(), "f.csv")
    assert TraceStore(data_dir.store).children_of(case.range.first).tolist() == [1, 2, 3, 4, 5]


def test_blank_lines_are_skipped_and_line_numbers_stay_true(data_dir: scangate.DataDir) -> None:
    it = data_dir.issue_codes("SKU", "item", 3).as_strings()
    c = data_dir.issue_codes("SKU", "case", 1).as_strings()[0]
    report = ingest.link_csv(data_dir, f"{c},{it[0]}\n\n{c},{it[1]}\n\n".encode(), "f.csv")
    assert (report.rows, report.added) == (2, 2)
    # a bad row after a blank line is still named by its real line number
    with pytest.raises(BatchRejected) as info:
        ingest.link_csv(data_dir, f"{c},{it[2]}\n\n{c},{it[2][:-1]}\n".encode(), "g.csv")
    assert [(p.where, p.field) for p in info.value.problems] == [("g.csv:3", "child")]


def test_link_csv_accepts_a_byte_order_mark(data_dir: scangate.DataDir) -> None:
    it = data_dir.issue_codes("SKU", "item", 2).as_strings()
    case = data_dir.issue_codes("SKU", "case", 1)
    c = case.as_strings()[0]
    report = ingest.link_csv(data_dir, ("\ufeffparent,child\n" + f"{c},{it[0]}\n{c},{it[1]}\n").encode(), "f.csv")
    assert report.added == 2


def test_epcis_destination_that_is_no_dealer_id_says_why(packed: Packed) -> None:
    before = db_snapshot(packed.dd)
    long_id = "D" * 129
    with pytest.raises(BatchRejected) as info:
        ingest.apply_epcis(packed.dd, document(shipping([packed.pallets[0]], long_id)), "e.json")
    assert info.value.problems == [Problem("e.json:epcisBody.eventList[0].destinationList", "destination",
                                           f"'{'D' * 40}'... is not a dealer id: 129 characters, at most 128")]
    assert db_snapshot(packed.dd) == before


# ------------------------------------------------------------------ uploads through the state layer
def test_link_rows_apply_their_segments_in_order(packed: Packed) -> None:
    """The gRPC upload: rows cut into segments (a child again, an unpack-all row),
    applied in one transaction by scangate.state.trace.apply_trace_steps."""
    it, cs = packed.items, packed.cases
    report = ingest.link_rows(packed.dd, [cs[2], cs[1], cs[2], cs[0], cs[0]], [it[0], it[20], it[0], "", it[1]],
                              ["ADD", "DELETE", "DELETE", "DELETE", "ADD"], "rows")
    # item 0 into case 2 and out again; item 20 out of case 1; case 0 unpacked (items
    # 1..19: item 0 had left it), then item 1 back into it
    assert (report.rows, report.added, report.removed, report.parents) == (5, 2, 21, 3)
    case, pallet = (int(x) for x in packed.case_serials[:2]), int(packed.pallet_serials[0])
    c0, c1 = case
    anc = packed.ts.ancestors(packed.item_serials).tolist()
    assert anc[0] == [0, 0] and anc[1] == [c0, pallet] and anc[2:21] == [[0, 0]] * 19
    assert anc[21:] == [[c1, pallet]] * 19
    assert packed.ts.children_of(c0).tolist() == [int(packed.item_serials[1])]
    assert packed.ts.children_of(c1).tolist() == packed.item_serials[21:].tolist()
    assert len(packed.ts.children_of(int(packed.case_serials[2]))) == 0


def test_trace_steps_apply_all_or_nothing(packed: Packed) -> None:
    case2, item0, pallet0 = int(packed.case_serials[2]), int(packed.item_serials[0]), int(packed.pallet_serials[0])
    link = trace_state.LinkStep(np.array([case2], np.uint64), np.array([item0], np.uint64),
                                np.array([trace_state.ADD], np.uint8))
    before = db_snapshot(packed.dd)
    # the link step is applied inside the transaction, then a shipment fails it: nothing stays
    with pytest.raises(NotFound, match="dealer 'NOBODY' is not loaded"):
        trace_state.apply_trace_steps(packed.dd.store, [link, trace_state.ShipStep((Shipment(pallet0, "NOBODY",
                                                                                             T0_MS),))])
    assert db_snapshot(packed.dd) == before
    ingest.load_dealers_csv(packed.dd, b"dealer_id,name,territory\nD1,One,44\n")
    before = db_snapshot(packed.dd)
    with pytest.raises(InvalidArgument, match="shipped_at_ms: 4102444800000 ms is outside"):
        trace_state.apply_trace_steps(packed.dd.store, [link, trace_state.ShipStep((
            Shipment(pallet0, "D1", T0_MS), Shipment(pallet0, "D1", trace_state.MAX_TIME_MS)))])
    assert db_snapshot(packed.dd) == before
    result = trace_state.apply_trace_steps(packed.dd.store, [link, trace_state.ShipStep((Shipment(pallet0, "D1",
                                                                                                  T0_MS),))])
    assert result == {"added": 1, "removed": 0, "shipments": 1}
    chain = packed.ts.trace(packed.item_serials[[0, 1]])
    assert [c.ancestors for c in chain] == [(case2,), (int(packed.case_serials[0]), pallet0)]
    assert chain[0].shipment is None and chain[1].shipment == Shipment(pallet0, "D1", T0_MS)


def test_dealer_lookup_of_ids_no_dealer_can_have(shipped: Packed) -> None:
    ts = shipped.ts
    assert ts.dealer(" D1 ") == ts.dealer("D1") is not None     # white space around an id, as the loaders strip it
    for no_id in ("", "   ", "D\udc80", "D" * 600, "D9"):
        assert ts.dealer(no_id) is None, no_id
    with pytest.raises(NotFound, match="is not loaded"):
        ts.record_shipments([Shipment(int(shipped.pallet_serials[0]), "D\udc80", T0_MS)])
    assert db_entries(shipped.dd)["shipped"] == 0


# ------------------------------------------------------------------ the records' bytes
def _mp_str(text: str) -> bytes:
    """msgpack str, by the spec (fixstr up to 31 bytes, else str 8)."""
    raw = text.encode()
    return (bytes([0xA0 | len(raw)]) if len(raw) < 32 else bytes([0xD9, len(raw)])) + raw


def _mp_uint(n: int) -> bytes:
    """msgpack non-negative int in its shortest form, by the spec."""
    if n < 0x80:
        return bytes([n])
    for marker, width in ((0xCC, 1), (0xCD, 2), (0xCE, 4), (0xCF, 8)):
        if n < 1 << (8 * width):
            return bytes([marker]) + n.to_bytes(width, "big")
    raise ValueError(n)


def test_records_keep_their_bytes(shipped: Packed) -> None:
    """The trace records are byte for byte the schema 2 formats: links and
    children as they always were, dealers and shipments msgpack arrays led by
    their version tag (scangate.state.records). Expected bytes built here, by
    hand, from the msgpack spec."""
    ingest.ship_csv(shipped.dd, f"unit,dealer_id,shipped_at,shipment_id\n{shipped.pallets[0]},D1,{T0},S1\n"
                    .encode())
    snap = db_snapshot(shipped.dd)
    key7 = lambda n: int(n).to_bytes(7, "big")  # noqa: E731
    items, cases, pallets = (a.tolist() for a in (shipped.item_serials, shipped.case_serials, shipped.pallet_serials))
    parent_of = {**{s: cases[i // 20] for i, s in enumerate(items)}, cases[0]: pallets[0], cases[1]: pallets[0]}
    buckets: dict[int, list[int]] = {}
    for child, parent in parent_of.items():
        buckets.setdefault(child >> 3, [0] * 8)[child & 7] = parent
    assert snap["links"] == [(key7(b), b"".join(map(key7, slots))) for b, slots in sorted(buckets.items())]
    assert snap["children"] == [(key7(cases[0]), b"".join(map(key7, items[:20]))),
                                (key7(cases[1]), b"".join(map(key7, items[20:]))),
                                (key7(pallets[0]), key7(cases[0]) + key7(cases[1]))]
    # [tag 1, dealer_id, name, [territory...]]: a fixarray of 4, the tag a positive fixint
    assert snap["dealers"] == [
        (b"D1", b"\x94\x01\xa2D1\xac" + "广州一号".encode() + b"\x91\xa44401"),    # 12 bytes of UTF-8: 0xac
        (b"D2", b"\x94\x01\xa2D2\xabChengdu Two\x91\xa251"),
        (b"D3", b"\x94\x01\xa2D3\xa5Three\x92\xa211\xa212"),
    ]
    # [tag 1, unit, dealer_id, shipped_at_ms, shipment_id]
    shipment = b"\x95\x01" + _mp_uint(pallets[0]) + _mp_str("D1") + b"\xcf" + T0_MS.to_bytes(8, "big") + _mp_str("S1")
    assert snap["shipped"] == [(key7(pallets[0]), shipment)]
    assert snap["ship_log"] == [(key7(pallets[0]) + struct.pack(">q", T0_MS), shipment)]


def test_a_damaged_trace_record_is_corruption(shipped: Packed) -> None:
    """A dealer or shipment value that is not its typed record (here: schema 1's
    JSON in a schema 2 directory, or a record cut short) is CorruptionError
    naming the record, never a wrong answer."""
    ingest.ship_csv(shipped.dd, f"unit,dealer_id,shipped_at\n{shipped.pallets[0]},D1,{T0}\n".encode())
    ts, unit, dd = shipped.ts, int(shipped.pallet_serials[0]), shipped.dd
    json_shipment = b'{"unit": %d, "dealer_id": "D1", "shipped_at_ms": %d, "shipment_id": ""}' % (unit, T0_MS)
    state_raw.put(dd, "shipped", layout.serial_key(unit), json_shipment)
    state_raw.put(dd, "ship_log", layout.ship_log_key(unit, T0_MS), json_shipment)
    with pytest.raises(CorruptionError, match="shipment record"):
        ts.trace(shipped.item_serials[:1])
    with pytest.raises(CorruptionError, match="shipment record"):
        decide_verdicts(shipped.dd, [Scan(shipped.items[0], "u1", region=440106, time_ms=T0_MS + 3_600_000)])
    with pytest.raises(CorruptionError, match="shipment record"):
        ts.shipment_history(unit)
    dealer = state_raw.get(dd, "dealers", layout.dealer_key("D2"))
    assert dealer is not None
    state_raw.put(dd, "dealers", layout.dealer_key("D2"), dealer[:-3])
    with pytest.raises(CorruptionError, match="dealer record"):
        ts.dealer("D2")
    with pytest.raises(CorruptionError, match="dealer record"):
        ts.list_dealers()
    assert ts.dealer("D1") == scangate.trace.Dealer("D1", "广州一号", ("4401",))    # the others read as written


# ------------------------------------------------------------------ the two trace paths
def test_each_trace_path_is_taken(shipped: Packed, trace_path: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """TRACE_PATH really chooses the path (calls counted), for a trace and for the
    verdict engine's read; unset, the batch's size chooses it."""
    ingest.ship_csv(shipped.dd, f"unit,dealer_id,shipped_at\n{shipped.pallets[0]},D1,{T0}\n".encode())
    calls = {"small": 0, "array": 0}
    small, array = TraceStore._parents_small, TraceStore.ancestors

    def counted_small(self: TraceStore, serials: list[int], txn: Any) -> list[int]:
        calls["small"] += 1
        return small(self, serials, txn)

    def counted_array(self: TraceStore, serials: np.ndarray, txn: Any = None) -> np.ndarray:
        calls["array"] += 1
        return array(self, serials, txn)

    monkeypatch.setattr(TraceStore, "_parents_small", counted_small)
    monkeypatch.setattr(TraceStore, "ancestors", counted_array)
    # parents then grandparents: two small calls, or one ancestors call
    expected = {"small": 2, "array": 0} if trace_path == "small" else {"small": 0, "array": 1}
    up = (int(shipped.case_serials[0]), int(shipped.pallet_serials[0]))
    chains = shipped.ts.trace(shipped.item_serials[[0, 1]])
    assert [(c.ancestors, c.dealer.dealer_id if c.dealer else None) for c in chains] == [(up, "D1")] * 2
    assert calls == expected
    calls.update(small=0, array=0)
    verdict = decide_verdicts(shipped.dd, [Scan(shipped.items[0], "u1", region=440106, time_ms=T0_MS + 3_600_000)])[0]
    assert verdict.evidence["trace"]["dealer_id"] == "D1"
    assert verdict.evidence["trace"]["shipped_unit"] == int(shipped.pallet_serials[0])
    assert calls == expected
    # unset: up to SMALL_BATCH serials the small path, more the array path
    monkeypatch.setattr(trace_state, "TRACE_PATH", None)
    for n, path in ((1, "small"), (trace_state.SMALL_BATCH, "small"), (trace_state.SMALL_BATCH + 1, "array")):
        calls.update(small=0, array=0)
        chains = shipped.ts.trace(np.resize(shipped.item_serials[:20], n))
        assert len(chains) == n and all(c.ancestors == up and c.dealer is not None for c in chains)
        assert calls == ({"small": 2, "array": 0} if path == "small" else {"small": 0, "array": 1}), n


def test_a_wrong_trace_path_is_refused(packed: Packed, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(trace_state, "TRACE_PATH", "fast")
    with pytest.raises(InvalidArgument, match=r"TRACE_PATH: 'fast' is not one of small, array or None"):
        packed.ts.trace(packed.item_serials[:1])
    # from the environment, read when the module is imported: a wrong value stops the import
    script = "import scangate.trace, scangate.state.trace as t; print(t.TRACE_PATH)"

    def run(value: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-c", script], env={**os.environ, trace_state.TRACE_PATH_ENV: value},
                              cwd=tmp_path, capture_output=True, text=True, timeout=300, check=False)

    bad = run("fast")
    assert bad.returncode == 1
    assert "SCANGATE_TRACE_PATH: 'fast' is not one of small, array (or unset)" in bad.stderr
    assert [run(v).stdout for v in ("small", "array", "")] == ["small\n", "array\n", "None\n"]
