"""EPCIS 2.0 JSON / JSON-LD parsing: GS1's own examples, then synthetic documents."""
from __future__ import annotations

import copy
import json
import random
from typing import Any

import pytest

from scangate.epcis import (
    AggregationOp,
    ParsedDocument,
    Problem,
    ShipmentOp,
    classify_epc,
    load_schema,
    parse_document,
)

try:
    from gs1_fixtures import FIXTURES, needs_fixtures, require_fixtures
except ImportError:  # run as the tests package
    from tests.gs1_fixtures import FIXTURES, needs_fixtures, require_fixtures
FIXTURE_NAMES = sorted(p.name for p in FIXTURES.glob("*.jsonld")) if FIXTURES.is_dir() else []

CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
CONTEXT = ["https://ref.gs1.org/standards/epcis/2.0.0/epcis-context.jsonld"]
T0 = "2024-05-01T10:00:00.000Z"


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    require_fixtures()
    return load_schema(FIXTURES / "EPCIS-JSON-Schema.json")


def fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def code(n: int) -> str:
    """A valid-looking 29-symbol code text (authenticity is not checked by the parser)."""
    rng = random.Random(n)
    return "01" + "".join(rng.choice(CROCKFORD) for _ in range(27))


def url(n: int) -> str:
    return f"https://scn.example.com/{code(n)}"


def urn(n: int) -> str:
    return f"urn:scangate:code:{code(n)}"


def event(etype: str, **fields: Any) -> dict[str, Any]:
    return {"type": etype, "eventTime": T0, "eventTimeZoneOffset": "+00:00", **fields}


def document(*events: dict[str, Any]) -> dict[str, Any]:
    return {
        "@context": CONTEXT,
        "type": "EPCISDocument",
        "schemaVersion": "2.0",
        "creationDate": T0,
        "epcisBody": {"eventList": list(events)},
    }


def paths(problems: list[Problem]) -> list[str]:
    return [p.path for p in problems]


def schema_only(problems: list[Problem]) -> list[Problem]:
    return [p for p in problems if p.message.startswith("schema")]


# --------------------------------------------------------------------------- GS1 fixtures


@needs_fixtures
def test_fixtures_present() -> None:
    assert (FIXTURES / "EPCIS-JSON-Schema.json").is_file()
    assert "Example_9.6.3-AggregationEvent.jsonld" in FIXTURE_NAMES
    assert len(FIXTURE_NAMES) >= 7


@needs_fixtures
@pytest.mark.parametrize("name", FIXTURE_NAMES)
def test_fixture_is_schema_valid(name: str, schema: dict[str, Any]) -> None:
    with_schema = parse_document(fixture(name), schema=schema)
    without = parse_document(fixture(name))
    assert schema_only(with_schema.problems) == []
    assert with_schema.problems == without.problems
    assert with_schema.ops == without.ops
    # and the same from text and from the parsed object
    assert parse_document(fixture(name).decode()).problems == without.problems
    assert parse_document(json.loads(fixture(name))).problems == without.problems


def foreign(path: str, uri: str, what: str) -> Problem:
    return Problem(path, f"foreign identifier {uri} ({what}): not a code issued by this engine")


E0 = "epcisBody.eventList[0]"
E1 = "epcisBody.eventList[1]"
SSCC = "urn:epc:id:sscc:0614141.1234567890"
SGTIN17 = "urn:epc:id:sgtin:0614141.107346.2017"
SGTIN18 = "urn:epc:id:sgtin:0614141.107346.2018"
DL17 = "https://id.gs1.org/01/70614141123451/21/2017"
DL18 = "https://id.gs1.org/01/70614141123451/21/2018"


@needs_fixtures
def test_aggregation_example_reports_foreign_ids() -> None:
    doc = parse_document(fixture("Example_9.6.3-AggregationEvent.jsonld"))
    assert doc.problems[:3] == [
        foreign(f"{E0}.parentID", SSCC, "GS1 SSCC"),
        foreign(f"{E0}.childEPCs[0]", SGTIN17, "GS1 SGTIN"),
        foreign(f"{E0}.childEPCs[1]", SGTIN18, "GS1 SGTIN"),
    ]
    assert paths(doc.problems) == [
        f"{E0}.parentID", f"{E0}.childEPCs[0]", f"{E0}.childEPCs[1]", f"{E0}.childQuantityList",
    ]
    assert "childQuantityList (2 entries) is not supported" in doc.problems[3].message
    assert not doc.ok
    assert doc.skipped == []
    # structurally complete, so the op is there (the problems forbid applying it)
    assert doc.ops == [AggregationOp(0, "OBSERVE", SSCC, (SGTIN17, SGTIN18), "2013-06-08T14:58:56.591Z", "receiving")]


@needs_fixtures
def test_aggregation_example_with_digital_link() -> None:
    doc = parse_document(fixture("Example_9.6.3-AggregationEventWithDigitalLink.jsonld"))
    assert doc.problems[:3] == [
        foreign(f"{E0}.parentID", SSCC, "GS1 SSCC"),
        foreign(f"{E0}.childEPCs[0]", DL17, "GS1 Digital Link URI"),
        foreign(f"{E0}.childEPCs[1]", DL18, "GS1 Digital Link URI"),
    ]
    assert paths(doc.problems)[3:] == [f"{E0}.childQuantityList"]
    assert classify_epc(DL17) == ("foreign", "gs1-digital-link")
    # the class identifiers of its childQuantityList are Digital Links too
    assert classify_epc("https://id.gs1.org/01/04012345987652") == ("foreign", "gs1-digital-link")
    assert classify_epc("https://id.gs1.org/01/04012345123456/10/998877") == ("foreign", "gs1-digital-link")


@needs_fixtures
@pytest.mark.parametrize(
    ("name", "first", "second", "what"),
    [
        ("Example_9.6.1-ObjectEvent.jsonld", SGTIN17, SGTIN18, "GS1 SGTIN"),
        ("Example_9.6.1-ObjectEventWithDigitalLink.jsonld", DL17, DL18, "GS1 Digital Link URI"),
    ],
)
def test_object_event_examples(name: str, first: str, second: str, what: str) -> None:
    raw = json.loads(fixture(name))
    events = raw["epcisBody"]["eventList"]
    assert [e["bizStep"] for e in events] == ["shipping", "receiving"]
    doc = parse_document(raw)
    # event 0 ships, but its units are GS1 ids and it names no destination: no op
    assert doc.ops == []
    assert doc.problems[:2] == [
        foreign(f"{E0}.epcList[0]", first, what),
        foreign(f"{E0}.epcList[1]", second, what),
    ]
    assert paths(doc.problems) == [f"{E0}.epcList[0]", f"{E0}.epcList[1]", f"{E0}.destinationList"]
    assert "missing destinationList" in doc.problems[2].message
    # event 1 (receiving) is not ours: skipped, informational
    assert doc.skipped == [Problem(E1, "ObjectEvent with bizStep 'receiving': not a shipment")]


@needs_fixtures
def test_object_event_example_ships_once_it_has_a_destination() -> None:
    raw = json.loads(fixture("Example_9.6.1-ObjectEvent.jsonld"))
    raw["epcisBody"]["eventList"][0]["destinationList"] = [
        {"type": "location", "destination": "urn:epc:id:sgln:0614141.00777.0"},
        {"type": "owning_party", "destination": "urn:epc:id:pgln:0614141.00777"},
    ]
    doc = parse_document(raw)
    assert doc.ops == [ShipmentOp(0, (SGTIN17, SGTIN18), "urn:epc:id:pgln:0614141.00777", "owning_party",
                                  "2005-04-03T20:33:31.116000-06:00")]
    assert paths(doc.problems) == [f"{E0}.epcList[0]", f"{E0}.epcList[1]"]


@needs_fixtures
def test_all_possible_fields_example() -> None:
    doc = parse_document(fixture("aggregation_event_all_possible_fields.jsonld"))
    assert doc.problems[:3] == [
        foreign(f"{E0}.parentID", SSCC, "GS1 SSCC"),
        foreign(f"{E0}.childEPCs[0]", SGTIN17, "GS1 SGTIN"),
        foreign(f"{E0}.childEPCs[1]", SGTIN18, "GS1 SGTIN"),
    ]
    assert paths(doc.problems)[3:] == [f"{E0}.childQuantityList", f"{E0}.errorDeclaration"]
    assert "errorDeclaration" in doc.problems[4].message
    assert [type(op) for op in doc.ops] == [AggregationOp]
    assert doc.skipped == []


@needs_fixtures
@pytest.mark.parametrize(
    ("name", "skipped"),
    [
        ("ErrorDeclarationAndCorrectiveEvent.jsonld", [E0, E1]),
        ("Example-Type-sourceOrDestination_measurement_bizTransaction.jsonld", [E0]),
    ],
)
def test_other_event_types_are_skipped(name: str, skipped: list[str]) -> None:
    doc = parse_document(fixture(name))
    assert doc.ok and doc.ops == []
    assert paths(doc.skipped) == skipped
    etype = json.loads(fixture(name))["epcisBody"]["eventList"][0]["type"]
    assert doc.skipped[0].message.startswith(f"{etype} not used")


# --------------------------------------------------------------------------- classify_epc


def test_classify_code_forms() -> None:
    text = code(1)
    assert classify_epc(url(1)) == ("code", text)
    assert classify_epc(urn(1)) == ("code", text)
    assert classify_epc(f"http://scn.example.com/a/b/{text}?src=qr#top") == ("code", text)
    grouped = "-".join(text[i:i + 5] for i in range(0, 29, 5)).lower()
    assert classify_epc(f"https://scn.example.com/{grouped}") == ("code", text)
    aliased = "O1" + "L" * 26 + "I"  # Crockford aliases: O -> 0, L/I -> 1
    assert classify_epc(f"urn:x:{aliased}") == ("code", "01" + "1" * 27)


@pytest.mark.parametrize(
    ("uri", "kind"),
    [
        ("urn:epc:id:sgtin:0614141.107346.2017", "sgtin"),
        ("urn:epc:id:sscc:0614141.1234567890", "sscc"),
        ("urn:epc:id:sgln:0614141.00777.0", "sgln"),
        ("urn:epc:id:grai:4012345.55555.98765", "grai"),
        ("urn:epc:id:giai:4000001.12345", "giai"),
        ("urn:epc:class:lgtin:4012345.012345.998877", "class:lgtin"),
        ("urn:epc:idpat:sgtin:4012345.098765.*", "idpat:sgtin"),
        ("https://id.gs1.org/01/70614141123451/21/2017", "gs1-digital-link"),
        ("https://id.gs1.org/00/106141412345678908", "gs1-digital-link"),
        ("https://brand.example.com/dl/01/09506000134352/10/ABC/21/" + "0" * 29, "gs1-digital-link"),
        ("https://id.gs1.org/8004/4000001111", "gs1-digital-link"),
    ],
)
def test_classify_foreign(uri: str, kind: str) -> None:
    assert classify_epc(uri) == ("foreign", kind)


@pytest.mark.parametrize(
    "uri",
    [
        "https://scn.example.com/" + "0" * 28,  # 28 symbols
        "https://scn.example.com/" + "U" * 29,  # U is not in the alphabet
        "https://scn.example.com/" + code(1) + "/",  # last segment empty
        "urn:scangate:code:" + code(1) + "0",
        code(1),  # a bare text is not a URI
        "",
        "https://example.com/item/123",
        "https://scn.example.com/ " + code(1)[1:],
    ],
)
def test_classify_unknown(uri: str) -> None:
    kind, reason = classify_epc(uri)
    assert kind == "unknown" and reason


# --------------------------------------------------------------------------- synthetic


def test_aggregation_ops(schema: dict[str, Any]) -> None:
    raw = document(
        event("AggregationEvent", action="ADD", parentID=url(100), childEPCs=[urn(1), url(2)], bizStep="packing"),
        event("AggregationEvent", action="OBSERVE", parentID=urn(200), childEPCs=[url(100)],
              bizStep="https://ref.gs1.org/cbv/BizStep-loading"),
        event("AggregationEvent", action="DELETE", parentID=url(100), childEPCs=[urn(1)], bizStep="unpacking"),
        event("AggregationEvent", action="DELETE", parentID=url(200)),
    )
    doc = parse_document(json.dumps(raw).encode(), schema=schema)
    assert doc.problems == [] and doc.skipped == [] and doc.ok
    assert doc.ops == [
        AggregationOp(0, "ADD", url(100), (urn(1), url(2)), T0, "packing"),
        AggregationOp(1, "OBSERVE", urn(200), (url(100),), T0, "loading"),
        AggregationOp(2, "DELETE", url(100), (urn(1),), T0, "unpacking"),
        AggregationOp(3, "DELETE", url(200), (), T0, None),  # no children: unpack all
    ]


def test_biz_step_urn_form_is_normalised() -> None:
    raw = document(event("AggregationEvent", action="ADD", parentID=url(1), childEPCs=[url(2)],
                         bizStep="urn:epcglobal:cbv:bizstep:packing"))
    doc = parse_document(raw)
    assert doc.ok and doc.ops[0].biz_step == "packing"  # type: ignore[union-attr]


def test_shipment_prefers_owning_party(schema: dict[str, Any]) -> None:
    raw = document(
        event("ObjectEvent", action="OBSERVE", bizStep="shipping", epcList=[url(300), urn(301)],
              destinationList=[
                  {"type": "location", "destination": "urn:epc:id:sgln:0614141.00777.0"},
                  {"type": "possessing_party", "destination": "urn:epc:id:pgln:0614141.00001"},
                  {"type": "https://ref.gs1.org/cbv/SDT-owning_party", "destination": "urn:epc:id:pgln:0614141.00002"},
              ]),
        event("ObjectEvent", action="OBSERVE", bizStep="https://ref.gs1.org/cbv/BizStep-shipping",
              epcList=[url(302)],
              destinationList=[
                  {"type": "location", "destination": "urn:epc:id:sgln:0614141.00777.0"},
                  {"type": "possessing_party", "destination": "urn:epc:id:pgln:0614141.00003"},
              ]),
        event("ObjectEvent", action="OBSERVE", bizStep="shipping", epcList=[url(303)],
              destinationList=[{"type": "location", "destination": "urn:epc:id:sgln:0614141.00777.0"}]),
        event("ObjectEvent", action="OBSERVE", bizStep="receiving", epcList=[url(304)]),
    )
    doc = parse_document(raw, schema=schema)
    assert doc.problems == []
    assert doc.ops == [
        ShipmentOp(0, (url(300), urn(301)), "urn:epc:id:pgln:0614141.00002", "owning_party", T0),
        ShipmentOp(1, (url(302),), "urn:epc:id:pgln:0614141.00003", "possessing_party", T0),
        ShipmentOp(2, (url(303),), "urn:epc:id:sgln:0614141.00777.0", "location", T0),
    ]
    assert doc.skipped == [Problem("epcisBody.eventList[3]", "ObjectEvent with bizStep 'receiving': not a shipment")]


def test_one_foreign_child_among_codes(schema: dict[str, Any]) -> None:
    raw = document(event("AggregationEvent", action="ADD", parentID=url(10),
                         childEPCs=[url(11), urn(12), SGTIN17, url(13)], bizStep="packing"))
    doc = parse_document(raw, schema=schema)
    assert doc.problems == [foreign(f"{E0}.childEPCs[2]", SGTIN17, "GS1 SGTIN")]


def test_all_problems_are_reported() -> None:
    raw = document(
        event("AggregationEvent", action="ADD", childEPCs=[url(1), "https://example.com/x", url(1)]),
        event("AggregationEvent", action="ADD", parentID=url(2), childEPCs=[]),
        event("ObjectEvent", action="OBSERVE", bizStep="shipping", epcList=[url(3)],
              destinationList=[{"type": "owning_party", "destination": "urn:a"},
                               {"type": "owning_party", "destination": "urn:b"}]),
        event("ObjectEvent", action="OBSERVE", bizStep="shipping", epcList=[url(4)],
              destinationList=[{"type": "https://example.com/dt", "destination": "urn:c"}]),
    )
    del raw["epcisBody"]["eventList"][3]["eventTime"]
    doc = parse_document(raw)
    assert paths(doc.problems) == [
        f"{E0}.parentID",
        f"{E0}.childEPCs[1]",
        f"{E0}.childEPCs[2]",
        f"{E1}.childEPCs",
        "epcisBody.eventList[2].destinationList",
        "epcisBody.eventList[3].eventTime",
        "epcisBody.eventList[3].destinationList",
    ]
    msgs = [p.message for p in doc.problems]
    assert msgs[0].startswith("missing parentID")
    assert msgs[1].startswith("unrecognised identifier https://example.com/x")
    assert msgs[2] == f"{url(1)} repeats {E0}.childEPCs[0]"
    assert "ambiguous destination" in msgs[4]
    assert msgs[5] == "missing eventTime"
    assert doc.ops == []


def test_parent_repeated_as_child_is_a_problem() -> None:
    # the same code in URL and URN form is the same code
    raw = document(event("AggregationEvent", action="ADD", parentID=url(5), childEPCs=[urn(5)]))
    doc = parse_document(raw)
    assert doc.problems == [Problem(f"{E0}.childEPCs[0]", f"{urn(5)} repeats {E0}.parentID")]


@pytest.mark.parametrize(
    "data",
    [b'{"type": "EPCISDocument", "epcisBody": ', "[1, 2", b"\xff\xfe{}", '{"a": NaN}'],
)
def test_malformed_input_is_a_problem(data: bytes | str) -> None:
    doc = parse_document(data)
    assert doc.ops == [] and len(doc.problems) == 1
    assert doc.problems[0].path == "$"


def test_not_an_epcis_document() -> None:
    assert paths(parse_document("[]").problems) == ["$"]
    assert parse_document('{"type": "Foo"}').problems == [
        Problem("type", "type 'Foo' is not EPCISDocument or EPCISQueryDocument")]
    assert paths(parse_document('{"type": "EPCISDocument", "epcisBody": {}}').problems) == ["epcisBody.eventList"]


def test_duplicate_json_key_is_a_problem() -> None:
    text = json.dumps(document(event("AggregationEvent", action="ADD", parentID=url(1), childEPCs=[url(2)])))
    text = text.replace('"action": "ADD"', '"action": "ADD", "action": "DELETE"')
    doc = parse_document(text)
    assert doc.problems == [Problem("$", "duplicate key 'action' in a JSON object: readers disagree on "
                                         "which value counts")]


def test_query_document() -> None:
    raw = {
        "@context": CONTEXT, "type": "EPCISQueryDocument", "schemaVersion": "2.0", "creationDate": T0,
        "epcisBody": {"queryResults": {"queryName": "SimpleEventQuery", "resultsBody": {"eventList": [
            event("AggregationEvent", action="ADD", parentID=url(7), childEPCs=[url(8)], bizStep="packing"),
        ]}}},
    }
    doc = parse_document(raw)
    assert doc.problems == []
    assert doc.ops == [AggregationOp(0, "ADD", url(7), (url(8),), T0, "packing")]


def test_schema_violation_has_a_path(schema: dict[str, Any]) -> None:
    raw = document(event("AggregationEvent", action="PACK", parentID=url(1), childEPCs=[url(2)]))
    doc = parse_document(raw, schema=schema)
    found = schema_only(doc.problems)
    assert found and found[0].path == f"{E0}.action"
    assert "PACK" in found[0].message
    assert f"{E0}.action" in paths(doc.problems[len(found):])  # the structural check agrees
    assert doc.ops == []

    raw = document(event("AggregationEvent", action="ADD", parentID=url(1), childEPCs=[url(2)]))
    del raw["@context"]
    del raw["epcisBody"]["eventList"][0]["eventTimeZoneOffset"]
    doc = parse_document(raw, schema=schema)
    assert [(p.path, p.message) for p in doc.problems] == [
        ("$", "schema: '@context' is a required property"),
        (E0, "schema: 'eventTimeZoneOffset' is a required property"),
    ]


def test_unresolvable_external_ref_is_a_problem_not_a_crash() -> None:
    external = {"$schema": "http://json-schema.org/draft-07/schema#",
                "properties": {"epcisBody": {"$ref": "https://example.invalid/body.json"}}}
    raw = document(event("AggregationEvent", action="ADD", parentID=url(1), childEPCs=[url(2)]))
    doc = parse_document(raw, schema=external)
    assert paths(doc.problems) == ["$"]
    assert "not available offline" in doc.problems[0].message
    assert len(doc.ops) == 1


def test_parse_does_not_mutate_its_input() -> None:
    raw = document(event("AggregationEvent", action="ADD", parentID=url(1), childEPCs=[url(2)]))
    before = copy.deepcopy(raw)
    assert isinstance(parse_document(raw), ParsedDocument)
    assert raw == before
