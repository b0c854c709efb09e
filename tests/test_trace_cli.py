"""`scangate link`, `ship`, `dealers load|list` and `trace` through the installed
console script: human and --json output, exit codes (0 ok, 1 trace of a code that
is not genuine, 2 a rejected file: nothing applied, every problem on stderr)."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

import scangate
from scangate import _core
from scangate.trace import TraceStore

try:
    from gs1_fixtures import FIXTURES, needs_fixtures
except ImportError:  # run as the tests package
    from tests.gs1_fixtures import FIXTURES, needs_fixtures
ALPHABET = _core.ALPHABET.decode() if isinstance(_core.ALPHABET, bytes) else str(_core.ALPHABET)
URL = "https://scn.example.com/{}".format


def typo(code: str) -> str:
    return code[:9] + ALPHABET[(ALPHABET.index(code[9]) + 1) % 32] + code[10:]


def counterfeit() -> str:
    out = np.zeros((1, _core.CODE_LEN), np.uint8)
    _core.encode_text(np.arange(16, dtype=np.uint8).reshape(1, 16), 1, out)
    return bytes(out[0]).decode()


def epcis(*events: dict) -> str:
    return json.dumps({"@context": ["https://ref.gs1.org/standards/epcis/2.0.0/epcis-context.jsonld"],
                       "type": "EPCISDocument", "schemaVersion": "2.0", "creationDate": "2024-05-01T10:00:00Z",
                       "epcisBody": {"eventList": list(events)}})


def agg(action: str, parent: str, children: list[str]) -> dict:
    return {"type": "AggregationEvent", "eventTime": "2024-05-01T10:00:00Z", "eventTimeZoneOffset": "+00:00",
            "action": action, "parentID": URL(parent), "childEPCs": [URL(c) for c in children]}


@dataclass
class Site:
    root: Path
    tmp: Path
    items: list[str]
    cases: list[str]
    pallets: list[str]
    first: dict[str, int]

    def write(self, name: str, text: str) -> Path:
        path = self.tmp / name
        path.write_text(text, encoding="utf-8")
        return path

    def serial(self, kind: str, i: int) -> int:
        return self.first[kind] + i


@pytest.fixture
def site(tmp_path: Path) -> Site:
    """40 items, 2 cases, 2 pallets issued in-process; the data directory is closed
    before any CLI call."""
    root = tmp_path / "data"
    with scangate.init_data_dir(root) as dd:
        items = dd.issue_codes("BAIJIU", "item", 40, batch="L7")
        cases = dd.issue_codes("BAIJIU", "case", 2, batch="L7")
        pallets = dd.issue_codes("BAIJIU", "pallet", 2, batch="L7")
    return Site(root, tmp_path, items.as_strings(), cases.as_strings(), pallets.as_strings(),
                {"item": items.range.first, "case": cases.range.first, "pallet": pallets.range.first})


def packing_csv(site: Site) -> str:
    rows = [f"{site.cases[i // 20]},{site.items[i]}" for i in range(40)]
    rows += [f"{site.pallets[0]},{site.cases[0]}", f"{site.pallets[0]},{site.cases[1]}"]
    return "parent,child\n" + "\n".join(rows) + "\n"


def ancestors(site: Site, kind: str, idx: list[int]) -> list[list[int]]:
    with scangate.open_data_dir(site.root) as dd:
        ser = np.array([site.serial(kind, i) for i in idx], np.uint64)
        return TraceStore(dd.store).ancestors(ser).tolist()


# ------------------------------------------------------------------ the happy path
def test_link_dealers_ship_trace(site: Site, run_cli) -> None:
    proc = run_cli("link", "--data", site.root, site.write("pack.csv", packing_csv(site)))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("rows 42, added 42, removed 0, parents 3, seconds ")
    assert ancestors(site, "item", [0, 39]) == [[site.serial("case", 0), site.serial("pallet", 0)],
                                                [site.serial("case", 1), site.serial("pallet", 0)]]

    dealers = site.write("dealers.csv", "dealer_id,name,territory\nD1,广州总代,4401 51\nD2,Beijing,11\n")
    proc = run_cli("dealers", "load", "--data", site.root, dealers)
    assert (proc.returncode, proc.stdout.strip()) == (0, "2 dealers loaded"), proc.stderr
    proc = run_cli("dealers", "load", "--data", site.root, dealers, "--json")
    assert (proc.returncode, json.loads(proc.stdout)) == (0, {"dealers": 2})
    proc = run_cli("dealers", "list", "--data", site.root)
    assert proc.returncode == 0 and proc.stdout.splitlines() == ["D1\t广州总代\t4401 51", "D2\tBeijing\t11"]
    proc = run_cli("dealers", "list", "--data", site.root, "--json")
    assert [json.loads(x) for x in proc.stdout.splitlines()] == [
        {"dealer_id": "D1", "name": "广州总代", "territory": ["4401", "51"]},
        {"dealer_id": "D2", "name": "Beijing", "territory": ["11"]}]

    ship = site.write("ship.csv", f"unit,dealer_id,shipped_at,shipment_id\n{site.pallets[0]},D1,"
                                  "2024-05-01T08:00:00+08:00,SH-1\n")
    proc = run_cli("ship", "--data", site.root, ship)
    assert (proc.returncode, proc.stdout.strip()) == (0, "shipments 1"), proc.stderr
    proc = run_cli("ship", "--data", site.root, ship, "--json")    # the same shipment again: logged once
    assert (proc.returncode, json.loads(proc.stdout)) == (0, {"shipments": 1})

    # trace an item: human
    proc = run_cli("trace", "--data", site.root, site.items[5])
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [
        f"{site.items[5]}: genuine item of BAIJIU batch L7",
        f"  in case serial {site.serial('case', 0)}",
        f"  in pallet serial {site.serial('pallet', 0)}",
        "  shipped 2024-05-01 00:00 UTC to D1 (广州总代), territory 4401 51",
    ]
    # ... and --json, by its URL form
    proc = run_cli("trace", "--data", site.root, URL(site.items[5]), "--json")
    assert proc.returncode == 0, proc.stderr
    info = json.loads(proc.stdout)
    assert (info["status"], info["level"], info["children"]) == ("genuine", "item", 0)
    assert info["line"]["sku"] == "BAIJIU" and info["line"]["batch"] == "L7"
    assert info["ancestors"] == [site.serial("case", 0), site.serial("pallet", 0)]
    shipment = {"unit": site.serial("pallet", 0), "dealer_id": "D1", "shipped_at_ms": 1_714_521_600_000,
                "shipment_id": "SH-1"}
    assert info["shipment"] == shipment
    assert info["dealer"] == {"dealer_id": "D1", "name": "广州总代", "territory": ["4401", "51"]}
    assert info["shipment_history"] == [shipment]

    # a case and a pallet show their children
    proc = run_cli("trace", "--data", site.root, site.cases[1], "--json")
    assert (json.loads(proc.stdout)["children"], json.loads(proc.stdout)["ancestors"]) == (
        20, [site.serial("pallet", 0)])
    proc = run_cli("trace", "--data", site.root, site.pallets[0])
    assert proc.returncode == 0 and proc.stdout.splitlines()[-1] == "  holds 2 children"
    # the other pallet: nothing known
    proc = run_cli("trace", "--data", site.root, site.pallets[1], "--json")
    info = json.loads(proc.stdout)
    assert (info["ancestors"], info["shipment"], info["dealer"], info["children"]) == ([], None, None, 0)
    proc = run_cli("trace", "--data", site.root, site.pallets[1])
    assert "no shipment recorded" in proc.stdout

    # a later shipment to another dealer supersedes; the history keeps both
    later = site.write("later.csv", f"unit,dealer_id,shipped_at,shipment_id\n{site.pallets[0]},D2,"
                                    "2024-06-01T08:00:00Z,SH-2\n")
    assert run_cli("ship", "--data", site.root, later).returncode == 0
    proc = run_cli("trace", "--data", site.root, site.items[5], "--json")
    info = json.loads(proc.stdout)
    assert info["dealer"]["dealer_id"] == "D2" and info["shipment"]["shipment_id"] == "SH-2"
    assert [s["shipment_id"] for s in info["shipment_history"]] == ["SH-1", "SH-2"]
    proc = run_cli("trace", "--data", site.root, site.items[5])
    assert "to D2 (Beijing), territory 11, 2 shipments in history" in proc.stdout


def test_link_json_output_and_repacking(site: Site, run_cli) -> None:
    proc = run_cli("link", "--data", site.root, site.write("pack.csv", packing_csv(site)), "--json")
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert {k: summary[k] for k in ("rows", "added", "removed", "parents")} == {
        "rows": 42, "added": 42, "removed": 0, "parents": 3}
    assert isinstance(summary["seconds"], float)
    # move items 0..4 into case 1 by CSV
    move = site.write("move.csv", "".join(f"{site.cases[1]},{site.items[i]}\n" for i in range(5)))
    proc = run_cli("link", "--data", site.root, move, "--json")
    assert proc.returncode == 0 and json.loads(proc.stdout)["added"] == 5
    proc = run_cli("trace", "--data", site.root, site.cases[0], "--json")
    assert json.loads(proc.stdout)["children"] == 15
    proc = run_cli("trace", "--data", site.root, site.cases[1], "--json")
    assert json.loads(proc.stdout)["children"] == 25


def test_link_epcis_document(site: Site, run_cli) -> None:
    assert run_cli("link", "--data", site.root, site.write("pack.csv", packing_csv(site))).returncode == 0
    doc = epcis(agg("DELETE", site.cases[0], [site.items[0]]), agg("ADD", site.pallets[1], [site.items[0]]))
    proc = run_cli("link", "--data", site.root, site.write("move.jsonld", doc), "--json")
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert {k: summary[k] for k in ("events", "aggregations", "added", "removed", "skipped")} == {
        "events": 2, "aggregations": 2, "added": 1, "removed": 1, "skipped": 0}
    assert ancestors(site, "item", [0, 1]) == [[site.serial("pallet", 1), 0],
                                               [site.serial("case", 0), site.serial("pallet", 0)]]
    # human output of the same kind of summary
    proc = run_cli("link", "--data", site.root,
                   site.write("observe.json", epcis(agg("OBSERVE", site.cases[1], [site.items[20]]))))
    assert proc.returncode == 0 and proc.stdout.startswith("events 1, aggregations 1, shipments 0, added 0")
    # shipping by EPCIS through `scangate ship`
    dealers = site.write("dealers.csv", "dealer_id,name,territory\nD1,One,44\n")
    assert run_cli("dealers", "load", "--data", site.root, dealers).returncode == 0
    ship = epcis({"type": "ObjectEvent", "eventTime": "2024-05-02T10:00:00Z", "eventTimeZoneOffset": "+00:00",
                  "action": "OBSERVE", "bizStep": "shipping", "epcList": [URL(site.pallets[1])],
                  "destinationList": [{"type": "owning_party", "destination": "D1"}]})
    proc = run_cli("ship", "--data", site.root, site.write("ship.json", ship), "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["shipments"] == 1
    proc = run_cli("trace", "--data", site.root, site.items[0], "--json")
    assert json.loads(proc.stdout)["dealer"]["dealer_id"] == "D1"


# ------------------------------------------------------------------ not genuine
def test_trace_of_codes_that_are_not_genuine_exits_1(site: Site, run_cli) -> None:
    for code, status in [(typo(site.items[0]), "typo"), ("HELLO", "malformed"), (counterfeit(), "counterfeit")]:
        proc = run_cli("trace", "--data", site.root, code)
        assert (proc.returncode, proc.stdout.strip()) == (1, f"{code}: {status}"), proc.stderr
        proc = run_cli("trace", "--data", site.root, code, "--json")
        assert proc.returncode == 1
        assert json.loads(proc.stdout) == {"code": code, "status": status}


# ------------------------------------------------------------------ rejected files
def test_rejected_link_file_exits_2_and_applies_nothing(site: Site, run_cli) -> None:
    lines = packing_csv(site).splitlines()
    lines[3] = f"{site.cases[0]},{typo(site.items[2])}"          # line 4
    lines[30] = f"{site.items[0]},{site.cases[1]}"               # line 31: a case into an item
    lines[35] = f"{site.cases[0]},{site.items[34]},extra"        # line 36
    bad = site.write("bad.csv", "\n".join(lines) + "\n")
    proc = run_cli("link", "--data", site.root, bad)
    assert proc.returncode == 2
    assert proc.stdout == ""
    err = proc.stderr.splitlines()
    assert err[0] == f"error: {bad}: 3 problem(s), nothing applied"
    assert err[1:] == [f"  {bad}:4: child: code has a typo (check symbol wrong)",
                       f"  {bad}:31: child: a case cannot go into a item",
                       f"  {bad}:36: row: expected exactly two fields: parent,child"]
    assert ancestors(site, "item", list(range(40))) == [[0, 0]] * 40

    proc = run_cli("link", "--data", site.root, bad, "--json")
    assert proc.returncode == 2
    report = json.loads(proc.stdout)
    assert report["error"] == f"{bad}: rejected, nothing applied"
    assert [(p["where"], p["field"]) for p in report["problems"]] == [
        (f"{bad}:4", "child"), (f"{bad}:31", "child"), (f"{bad}:36", "row")]
    assert ancestors(site, "item", list(range(40))) == [[0, 0]] * 40


def test_rejected_epcis_file_names_json_paths(site: Site, run_cli) -> None:
    doc = epcis(agg("ADD", site.cases[0], [site.items[0], site.pallets[0]]),
                agg("ADD", counterfeit(), [site.items[1]]))
    bad = site.write("bad.json", doc)
    proc = run_cli("link", "--data", site.root, bad)
    assert proc.returncode == 2
    err = proc.stderr.splitlines()
    assert err[0] == f"error: {bad}: 2 problem(s), nothing applied"
    assert sorted(err[1:]) == sorted([
        f"  {bad}:epcisBody.eventList[0].childEPCs[1]: child: a pallet cannot go into a case",
        f"  {bad}:epcisBody.eventList[1].parentID: code: {counterfeit()!r}: counterfeit code (does not authenticate)",
    ])
    assert ancestors(site, "item", [0, 1]) == [[0, 0], [0, 0]]


@needs_fixtures
def test_gs1_aggregation_example_is_rejected_by_the_cli(site: Site, run_cli) -> None:
    path = FIXTURES / "Example_9.6.3-AggregationEvent.jsonld"
    proc = run_cli("link", "--data", site.root, path)
    assert proc.returncode == 2
    err = proc.stderr.splitlines()
    assert err[0].startswith("error: ") and "4 problem(s), nothing applied" in err[0]
    assert [line.split(": ")[0].strip() for line in err[1:]] == [
        f"{path}:epcisBody.eventList[0].{p}" for p in ("parentID", "childEPCs[0]", "childEPCs[1]",
                                                        "childQuantityList")]
    assert "urn:epc:id:sscc:0614141.1234567890" in err[1]


@needs_fixtures
def test_cli_schema_option_validates_before_applying(site: Site, run_cli, tmp_path) -> None:
    schema = FIXTURES / "EPCIS-JSON-Schema.json"
    path = FIXTURES / "Example_9.6.3-AggregationEvent.jsonld"
    proc = run_cli("link", "--data", site.root, path, "--schema", schema)
    assert proc.returncode == 2 and "4 problem(s), nothing applied" in proc.stderr  # valid per schema
    broken = tmp_path / "broken.jsonld"
    broken.write_text(path.read_text().replace('"OBSERVE"', '"PACK"'))
    proc = run_cli("link", "--data", site.root, broken, "--schema", schema)
    assert proc.returncode == 2
    assert any("epcisBody.eventList[0].action" in line and "schema" in line for line in proc.stderr.splitlines())


def test_rejected_dealers_and_shipments(site: Site, run_cli) -> None:
    bad = site.write("dealers.csv", "dealer_id,name,territory\nD1,One,44\nD2,Two,44x\nD3,Three,4\n")
    proc = run_cli("dealers", "load", "--data", site.root, bad)
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == [
        f"error: {bad}: 2 problem(s), nothing applied",
        f"  {bad}:3: territory: '44x' is not a 2, 4 or 6 digit adcode prefix",
        f"  {bad}:4: territory: '4' is not a 2, 4 or 6 digit adcode prefix",
    ]
    proc = run_cli("dealers", "list", "--data", site.root)
    assert (proc.returncode, proc.stdout) == (0, "")

    good = site.write("good.csv", "dealer_id,name,territory\nD1,One,44\n")
    assert run_cli("dealers", "load", "--data", site.root, good).returncode == 0
    ship = site.write("ship.csv", f"unit,dealer_id,shipped_at\n{site.pallets[0]},D1,2024-05-01T00:00:00Z\n"
                                  f"{site.pallets[1]},D9,2024-05-01T00:00:00Z\n"
                                  f"{site.cases[0]},D1,tomorrow\n")
    proc = run_cli("ship", "--data", site.root, ship)
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == [
        f"error: {ship}: 2 problem(s), nothing applied",
        f"  {ship}:3: dealer_id: dealer 'D9' is not loaded",
        f"  {ship}:4: shipped_at: 'tomorrow' is not an ISO 8601 time",
    ]
    proc = run_cli("trace", "--data", site.root, site.pallets[0], "--json")
    assert json.loads(proc.stdout)["shipment"] is None          # the good row was not applied either


def test_missing_data_dir_and_file(site: Site, run_cli) -> None:
    proc = run_cli("trace", "--data", site.tmp / "nowhere", site.items[0])
    assert proc.returncode == 2 and proc.stderr.startswith("error: ") and "no scangate data directory" in proc.stderr
    proc = run_cli("link", "--data", site.root, site.tmp / "missing.csv")
    assert proc.returncode == 2 and "missing.csv" in proc.stderr


def test_trace_labels_an_item_on_a_pallet_as_pallet(site: Site, run_cli) -> None:
    link = site.write("direct.csv", f"{site.pallets[1]},{site.items[7]}\n")
    assert run_cli("link", "--data", site.root, link).returncode == 0
    proc = run_cli("trace", "--data", site.root, site.items[7])
    assert proc.returncode == 0
    assert f"  in pallet serial {site.serial('pallet', 1)}" in proc.stdout.splitlines()
    assert "in case" not in proc.stdout
