"""Bad input gets the right status over the real server (issue 12, item 8, the
server half): malformed protobuf is INVALID_ARGUMENT naming the message type
(never UNKNOWN, never a traceback in the log); a 10 MB value gets its status with
a short message (never RESOURCE_EXHAUSTED from overflowing trailers); deeply
nested TOML is INVALID_ARGUMENT; UploadEpcis(validate_schema=true) validates
against the configured GS1 schema; a full disk or LMDB map is UNAVAILABLE
("storage full"), which the client raises as the retryable ``Unavailable``, and
the server serves again once space is freed; GCJ-02 coordinates are judged at
their WGS-84 place."""
from __future__ import annotations

import errno
import json
import os
import re
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest

import scangate
from scangate import geo
from scangate.client import _violations
from scangate.rewards import ScanRequest
from scangate.server.errors import MAX_DETAILS_BYTES, MAX_MESSAGE_CHARS, to_request_error
from scangate.server.writer import GroupCommitWriter
from scangate.trace import Dealer
from scangate.v1 import campaigns_pb2 as camp_pb
from scangate.v1 import codes_pb2 as codes_pb
from scangate.v1 import points_pb2 as points_pb
from scangate.v1 import scan_pb2 as scan_pb
from scangate.v1 import trace_pb2 as trace_pb

from gs1_fixtures import FIXTURES, require_fixtures
from serverproc import SCANGATE_BIN, running

NO_LIMITS = {"SCANGATE_LIMITS_ACTOR_SCANS_PER_MINUTE": "0", "SCANGATE_LIMITS_ACTOR_FAILURES_PER_HOUR": "0"}
# 10 MiB: over what any field may hold, under the server's receive limit (256 MiB,
# server/service.py start_worker) and the client's (the channels below raise theirs)
BIG = "x" * (10 << 20)
CHANNEL_OPTIONS = [("grpc.max_send_message_length", 64 << 20), ("grpc.max_receive_message_length", 64 << 20)]
GARBAGE = b"\xff\xff\xff\xff"      # field 31, wire type 7: no such wire type
BAD_UTF8 = b"\x0a\x02\xff\xfe"     # ScanRequest.request_id (a string) holding bytes that are not UTF-8

CAMPAIGN = """
id = "promo"
name = "Promo"
start = 2026-01-01
end = 2030-01-01
actor = "consumer"
odds = "100%"

[[prizes]]
id = "pts"
kind = "points"
points = 5
"""


def _call(channel: grpc.Channel, method: str, payload: bytes, kind: str = "unary") -> Any:
    """One call with raw bytes in and out (the stubs would refuse to send garbage)."""
    ident = {"request_serializer": lambda b: b, "response_deserializer": lambda b: b}
    if kind == "unary":
        return channel.unary_unary(method, **ident)(payload, timeout=60)
    if kind == "server-stream":
        return list(channel.unary_stream(method, **ident)(payload, timeout=60))
    return list(channel.stream_stream(method, **ident)(iter([payload]), timeout=60))




def _log_records(server: Any) -> list[dict[str, Any]]:
    out = []
    for line in server.logs().splitlines():
        if line.startswith("{"):
            out.append(json.loads(line))
    return out


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    data = tmp_path_factory.mktemp("errors") / "data"
    with running(data, "--workers", "1", env=NO_LIMITS) as srv:
        yield srv


@pytest.fixture(scope="module")
def channel(server: Any) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(server.target, CHANNEL_OPTIONS) as ch:
        yield ch


@pytest.fixture(scope="module")
def world(server: Any) -> dict[str, Any]:
    with scangate.Client(server.target, timeout=60) as c:
        items = [x for b in c.issue_codes("TEA", "item", 40, url=True) for x in b.codes]
        cases = [x for b in c.issue_codes("TEA-CASE", "case", 2, url=True) for x in b.codes]
        assert c.put_dealers([Dealer("D1", "Dealer one", ("44",))]) == 1
        c.put_campaign(CAMPAIGN, "promo.toml")
    return {"items": items, "cases": cases}


# ---------------------------------------------------------------------- malformed protobuf
MALFORMED = [
    ("/scangate.v1.ScanService/Scan", "unary", GARBAGE, "scangate.v1.ScanRequest"),
    ("/scangate.v1.ScanService/Scan", "unary", BAD_UTF8, "scangate.v1.ScanRequest"),
    ("/scangate.v1.ScanService/ScanStream", "stream", GARBAGE, "scangate.v1.ScanBatch"),
    ("/scangate.v1.CodeService/VerifyCodes", "unary", GARBAGE, "scangate.v1.VerifyCodesRequest"),
    ("/scangate.v1.CodeService/IssueCodes", "server-stream", GARBAGE, "scangate.v1.IssueCodesRequest"),
    ("/scangate.v1.TraceService/Trace", "unary", GARBAGE, "scangate.v1.TraceRequest"),
    ("/scangate.v1.CampaignService/GetCampaign", "unary", GARBAGE, "scangate.v1.GetCampaignRequest"),
    ("/scangate.v1.PointsService/Leaderboard", "unary", GARBAGE, "scangate.v1.LeaderboardRequest"),
    ("/scangate.v1.PayoutService/ListPayouts", "unary", GARBAGE, "scangate.v1.ListPayoutsRequest"),
    ("/grpc.health.v1.Health/Check", "unary", GARBAGE, "grpc.health.v1.HealthCheckRequest"),
]


def test_malformed_protobuf_is_invalid_argument_naming_the_type(server: Any, channel: grpc.Channel) -> None:
    for method, kind, payload, type_name in MALFORMED:
        with pytest.raises(grpc.RpcError) as err:
            _call(channel, method, payload, kind)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, (method, err.value.details())
        assert err.value.details() == f"request: not a valid {type_name} message (protobuf wire format)"
        assert _violations(err.value) == [("request", f"not a valid {type_name} message (protobuf wire format)")]


def test_a_malformed_batch_ends_the_stream_after_the_good_ones(server: Any, channel: grpc.Channel,
                                                                world: dict[str, Any]) -> None:
    good = scan_pb.ScanBatch(scans=[scan_pb.ScanRequest(request_id=f"ok-{uuid.uuid4().hex}",
                                                        code=world["items"][0], actor="alice")])
    replies: list[bytes] = []
    call = channel.stream_stream("/scangate.v1.ScanService/ScanStream", request_serializer=lambda b: b,
                                 response_deserializer=lambda b: b)(iter([good.SerializeToString(), GARBAGE]),
                                                                    timeout=60)
    with pytest.raises(grpc.RpcError) as err:
        for reply in call:
            replies.append(reply)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "scangate.v1.ScanBatch" in (err.value.details() or "")
    (first,) = replies
    decisions = scan_pb.ScanDecisionBatch.FromString(first).decisions
    assert [d.request_id for d in decisions] == [good.scans[0].request_id]


def test_client_errors_leave_no_traceback_and_few_lines(server: Any, channel: grpc.Channel) -> None:
    """A client sending garbage cannot flood the log: no traceback, no ERROR, one
    INFO line per 10 s per worker however many malformed messages arrive."""
    for _ in range(30):
        with pytest.raises(grpc.RpcError):
            _call(channel, "/scangate.v1.ScanService/Scan", GARBAGE)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not any("malformed" in r["message"] for r in _log_records(server)):
        time.sleep(0.1)
    records = _log_records(server)
    malformed = [r for r in records if r["message"].startswith("malformed ")]
    assert 1 <= len(malformed) <= 4      # 41 malformed messages so far, within seconds: a line per 10 s
    assert malformed[0]["level"] == "INFO" and "exc_info" not in malformed[0]
    assert "Traceback" not in server.logs()
    assert [r for r in records if r["level"] == "ERROR"] == []


# ---------------------------------------------------------------------- 10 MB values
def _huge_cases(world: dict[str, Any]) -> list[tuple[str, str, bytes, grpc.StatusCode]]:
    item, case = world["items"][1], world["cases"][0]
    inv, nf = grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND
    doc = json.dumps({"type": BIG}).encode()
    return [
        ("Scan request_id", "/scangate.v1.ScanService/Scan",
         scan_pb.ScanRequest(request_id=BIG, code=item, actor="a").SerializeToString(), inv),
        ("Scan code", "/scangate.v1.ScanService/Scan",
         scan_pb.ScanRequest(request_id="r", code=BIG, actor="a").SerializeToString(), inv),
        ("Scan actor", "/scangate.v1.ScanService/Scan",
         scan_pb.ScanRequest(request_id="r", code=item, actor=BIG).SerializeToString(), inv),
        ("Scan actor_tags", "/scangate.v1.ScanService/Scan",
         scan_pb.ScanRequest(request_id="r", code=item, actor="a", actor_tags=[BIG]).SerializeToString(), inv),
        ("IssueCodes sku", "/scangate.v1.CodeService/IssueCodes",
         codes_pb.IssueCodesRequest(sku=BIG, count=1).SerializeToString(), inv),
        ("IssueCodes batch", "/scangate.v1.CodeService/IssueCodes",
         codes_pb.IssueCodesRequest(sku="S", batch=BIG, count=1).SerializeToString(), inv),
        ("UploadLinks parent", "/scangate.v1.TraceService/UploadLinks",
         trace_pb.UploadLinksRequest(links=[trace_pb.Link(parent=BIG, child=item)]).SerializeToString(), inv),
        ("UploadShipments unit", "/scangate.v1.TraceService/UploadShipments",
         trace_pb.UploadShipmentsRequest(shipments=[trace_pb.ShipmentRow(unit=BIG, dealer_id="D1")])
         .SerializeToString(), inv),
        ("UploadShipments dealer_id", "/scangate.v1.TraceService/UploadShipments",
         trace_pb.UploadShipmentsRequest(shipments=[trace_pb.ShipmentRow(unit=case, dealer_id=BIG)])
         .SerializeToString(), inv),
        ("UploadShipments shipment_id", "/scangate.v1.TraceService/UploadShipments",
         trace_pb.UploadShipmentsRequest(shipments=[trace_pb.ShipmentRow(unit=case, dealer_id="D1",
                                                                         shipment_id=BIG)]).SerializeToString(), inv),
        ("UploadEpcis type", "/scangate.v1.TraceService/UploadEpcis",
         trace_pb.UploadEpcisRequest(document=doc).SerializeToString(), inv),
        ("PutDealers dealer_id", "/scangate.v1.TraceService/PutDealers",
         trace_pb.PutDealersRequest(dealers=[trace_pb.Dealer(dealer_id=BIG, name="n", territory=["44"])])
         .SerializeToString(), inv),
        ("PutDealers name", "/scangate.v1.TraceService/PutDealers",
         trace_pb.PutDealersRequest(dealers=[trace_pb.Dealer(dealer_id="D9", name=BIG, territory=["44"])])
         .SerializeToString(), inv),
        ("PutDealers territory", "/scangate.v1.TraceService/PutDealers",
         trace_pb.PutDealersRequest(dealers=[trace_pb.Dealer(dealer_id="D9", name="n", territory=[BIG])])
         .SerializeToString(), inv),
        ("RecallCodes codes", "/scangate.v1.RecallService/RecallCodes",
         trace_pb.RecallCodesRequest(codes=trace_pb.RecallCodeList(codes=[BIG]), reason="r").SerializeToString(),
         inv),
        ("GetCampaign", "/scangate.v1.CampaignService/GetCampaign",
         camp_pb.GetCampaignRequest(campaign_id=BIG).SerializeToString(), nf),
        ("SetCampaignStatus", "/scangate.v1.CampaignService/SetCampaignStatus",
         camp_pb.SetCampaignStatusRequest(campaign_id=BIG, status=camp_pb.CAMPAIGN_STATUS_PAUSED)
         .SerializeToString(), nf),
        ("PutCampaign id", "/scangate.v1.CampaignService/PutCampaign",
         camp_pb.PutCampaignRequest(definition=CAMPAIGN.replace('id = "promo"', f'id = "{BIG}"'))
         .SerializeToString(), inv),
        ("PutCampaign prize id", "/scangate.v1.CampaignService/PutCampaign",
         camp_pb.PutCampaignRequest(definition=CAMPAIGN.replace('id = "pts"', f'id = "{BIG}"'))
         .SerializeToString(), inv),
        ("PutCampaign source", "/scangate.v1.CampaignService/PutCampaign",
         camp_pb.PutCampaignRequest(definition="id = ", source=BIG).SerializeToString(), inv),
        ("GetPoints actor", "/scangate.v1.PointsService/GetPoints",
         points_pb.GetPointsRequest(actor=BIG).SerializeToString(), inv),
        ("RedeemPoints request_id", "/scangate.v1.PointsService/RedeemPoints",
         points_pb.RedeemPointsRequest(request_id=BIG, actor="a", points=1).SerializeToString(), inv),
        ("Leaderboard period", "/scangate.v1.PointsService/Leaderboard",
         points_pb.LeaderboardRequest(period=BIG).SerializeToString(), inv),
    ]


def test_ten_megabyte_values_get_their_status_with_a_short_message(channel: grpc.Channel,
                                                                   world: dict[str, Any]) -> None:
    long_run = re.compile("x{64}")
    for name, method, payload, want in _huge_cases(world):
        kind = "server-stream" if method.endswith("IssueCodes") else "unary"
        with pytest.raises(grpc.RpcError) as err:
            _call(channel, method, payload, kind)
        details = err.value.details() or ""
        assert err.value.code() == want, (name, err.value.code(), details[:200])
        assert 0 < len(details) <= MAX_MESSAGE_CHARS, (name, len(details))
        assert not long_run.search(details), (name, details)
        violations = _violations(err.value)
        assert all(not long_run.search(f + d) for f, d in violations), (name, violations)
        assert sum(len(f) + len(d) for f, d in violations) <= MAX_DETAILS_BYTES


def test_a_million_bad_rows_come_back_as_some_violations_and_a_count(server: Any, world: dict[str, Any]) -> None:
    """Every bad row named used to make the trailers overflow (RESOURCE_EXHAUSTED)."""
    rows = [(f"not-a-code-{i}", world["items"][2]) for i in range(20_000)]
    with scangate.Client(server.target, timeout=120, stream_timeout=120) as c:
        with pytest.raises(scangate.InvalidArgument) as exc:
            c.upload_links(rows)
    violations = exc.value.violations  # type: ignore[attr-defined]
    assert violations[0][0] == "links[0].parent.code"
    assert 10 < len(violations) < 200
    more_field, more_why = violations[-1]
    assert more_field == "request"
    shown = len(violations) - 1
    assert more_why == f"{20_000 - shown} more violation(s) not shown"
    assert str(exc.value).startswith("links: 20000 problem(s), nothing applied: links[0].parent: code: ")


def test_status_bounds_hold_for_any_message() -> None:
    """The bounds, directly: what a library error says, however long, fits."""
    err = to_request_error(scangate.NotFound(f"no campaign {BIG[:1_000_000]!r} in this data directory"))
    assert err.code == grpc.StatusCode.NOT_FOUND
    assert err.message == f"no campaign {'x' * 40!r}... in this data directory"
    bad = to_request_error(scangate.InvalidArgument("name: " + "y" * 500_000))
    assert len(bad.message) <= MAX_MESSAGE_CHARS and bad.message.startswith("name: " + "y" * 40 + "...")
    assert len(bad.status_proto().SerializeToString()) <= MAX_DETAILS_BYTES + 200


# ---------------------------------------------------------------------- the field named
def test_out_of_range_uploads_name_the_grpc_field(server: Any, world: dict[str, Any]) -> None:
    with scangate.Client(server.target, timeout=60) as c:
        for when in (2**63 - 1, -(2**63)):
            with pytest.raises(scangate.InvalidArgument) as exc:
                c.upload_shipments([(world["cases"][1], "D1", when)])
            assert exc.value.violations == [  # type: ignore[attr-defined]
                ("shipments[0].shipped_at_ms", f"{when} ms is outside 2000-01-01 .. 2100-01-01 UTC")]
        with pytest.raises(scangate.InvalidArgument) as exc:
            c.upload_shipments([("NOT-A-CODE", "D1")])
        assert [f for f, _ in exc.value.violations] == ["shipments[0].unit"]  # type: ignore[attr-defined]
        nul_id, nul_name = Dealer("D\x002", "ok", ("44",)), Dealer("D2", "a\x00b", ("44",))
        for dealer, field in ((nul_id, "dealers[0].dealer_id"), (nul_name, "dealers[0].name")):
            with pytest.raises(scangate.InvalidArgument) as exc:
                c.put_dealers([dealer])
            assert exc.value.violations == [(field, "contains a NUL character")]  # type: ignore[attr-defined]
        with pytest.raises(scangate.InvalidArgument) as exc:
            c.leaderboard("9999-99")
        assert exc.value.violations == [  # type: ignore[attr-defined]
            ("period", "'9999-99' is not a month (YYYY-MM, month 01 to 12)")]
        assert c.trace([world["cases"][1]])[0].shipment.dealer_id == ""      # nothing was recorded


# ---------------------------------------------------------------------- deeply nested TOML
DEEP_TOML = CAMPAIGN + "extra = " + "[" * 2000 + "]" * 2000 + "\n"


def test_deeply_nested_toml_is_invalid_argument(server: Any, tmp_path: Path) -> None:
    with scangate.Client(server.target, timeout=60) as c:
        for text in (DEEP_TOML, CAMPAIGN + "extra = " + "{a = " * 2000 + "1" + "}" * 2000 + "\n"):
            with pytest.raises(scangate.InvalidArgument) as exc:
                c.put_campaign(text, "deep.toml")
            assert str(exc.value) == "deep.toml: invalid TOML: arrays or inline tables nested too deeply"
    assert "RecursionError" not in server.logs() and "Traceback" not in server.logs()
    # the CLI's path: a clear error, exit 2
    data = tmp_path / "data"
    with scangate.init_data_dir(data):
        pass
    path = tmp_path / "deep.toml"
    path.write_text(DEEP_TOML, encoding="utf-8")
    proc = subprocess.run([str(SCANGATE_BIN), "campaign", "load", "--data", str(data), str(path)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "invalid TOML: arrays or inline tables nested too deeply" in proc.stderr
    with scangate.open_data_dir(data) as dd:
        from scangate import rewards

        assert rewards.list_campaigns(dd) == []


# ---------------------------------------------------------------------- EPCIS schema
def _epcis_document(parent: str, child: str, action: str = "ADD") -> bytes:
    t0 = "2024-05-01T10:00:00.000Z"
    return json.dumps({
        "@context": ["https://ref.gs1.org/standards/epcis/2.0.0/epcis-context.jsonld"],
        "type": "EPCISDocument", "schemaVersion": "2.0", "creationDate": t0,
        "epcisBody": {"eventList": [{"type": "AggregationEvent", "eventTime": t0, "eventTimeZoneOffset": "+00:00",
                                     "action": action, "parentID": parent, "childEPCs": [child]}]},
    }).encode()


def test_validate_schema_without_a_configured_schema_is_failed_precondition(server: Any,
                                                                            world: dict[str, Any]) -> None:
    doc = _epcis_document(world["cases"][0], world["items"][3])
    with scangate.Client(server.target, timeout=60) as c:
        with pytest.raises(scangate.RemoteError) as exc:
            c.upload_epcis(doc, validate_schema=True)
        assert exc.value.code == "FAILED_PRECONDITION"
        assert "server.epcis_schema" in str(exc.value)
        assert c.upload_epcis(doc).added == 1           # without validation: as before


def test_validate_schema_with_the_gs1_schema(tmp_path: Path) -> None:
    require_fixtures()
    env = {**NO_LIMITS, "SCANGATE_SERVER_EPCIS_SCHEMA": str(FIXTURES / "EPCIS-JSON-Schema.json")}
    with running(tmp_path / "data", env=env) as srv, scangate.Client(srv.target, timeout=60) as c:
        items = [x for b in c.issue_codes("TEA", "item", 2, url=True) for x in b.codes]
        (case,) = [x for b in c.issue_codes("TEA-CASE", "case", 1, url=True) for x in b.codes]
        report = c.upload_epcis(_epcis_document(case, items[0]), validate_schema=True, source="line.json")
        assert (report.aggregations, report.added) == (1, 1)
        with pytest.raises(scangate.InvalidArgument) as exc:      # PACK is not an EPCIS action
            c.upload_epcis(_epcis_document(case, items[1], action="PACK"), validate_schema=True,
                           source="line.json")
        schema_said = [(f, d) for f, d in exc.value.violations if d.startswith("schema")]  # type: ignore[attr-defined]
        assert schema_said and schema_said[0][0] == "line.json:epcisBody.eventList[0].action.epcis"
        # GS1's own examples pass the schema over the server; they are refused only
        # because their identifiers are not codes this server issued
        for name in ("Example_9.6.1-ObjectEvent.jsonld", "Example_9.6.3-AggregationEvent.jsonld"):
            with pytest.raises(scangate.InvalidArgument) as exc:
                c.upload_epcis((FIXTURES / name).read_bytes(), validate_schema=True, source=name)
            found = exc.value.violations  # type: ignore[attr-defined]
            assert found and not [d for _, d in found if d.startswith("schema")], found
    assert "Traceback" not in srv.logs()


def test_a_missing_or_wrong_schema_file_stops_the_start_naming_the_key(tmp_path: Path) -> None:
    not_a_schema = tmp_path / "schema.json"
    not_a_schema.write_text('{"type": 5}', encoding="utf-8")
    for path, why in ((tmp_path / "nope.json", f"no file {tmp_path / 'nope.json'}"),
                      (not_a_schema, f"{not_a_schema} is not a JSON schema: 5 is not valid under any of the "
                                     "given schemas")):
        env = {**os.environ, "SCANGATE_SERVER_EPCIS_SCHEMA": str(path)}
        proc = subprocess.run([str(SCANGATE_BIN), "serve", "--data", str(tmp_path / "data"), "--port", "0",
                               "--metrics-port", "0"], capture_output=True, text=True, timeout=120, env=env)
        assert proc.returncode == 2, (proc.stdout, proc.stderr)
        assert proc.stderr.strip() == f"error: config: SCANGATE_SERVER_EPCIS_SCHEMA: server.epcis_schema: {why}"
        assert not (tmp_path / "data").exists()          # refused before anything was created


# ---------------------------------------------------------------------- datum
def _border_point(index: geo.DistrictIndex) -> tuple[float, float, int, int]:
    """A WGS-84 point whose district differs from the district of the same
    numbers read as WGS-84 after the GCJ-02 shift: (GCJ-02 lat, lon, district
    of the true point, district the shifted numbers fall in)."""
    # along the line between two neighbouring districts' points in central Shanghai
    rows = np.flatnonzero((index.adcodes // 100) == 3101)
    assert rows.size >= 2
    a, b = rows[0], rows[1]
    for t in np.linspace(0.0, 1.0, 2001):
        lat = index.lat[a] + t * (index.lat[b] - index.lat[a])
        lon = index.lon[a] + t * (index.lon[b] - index.lon[a])
        g_lat, g_lon = geo.wgs84_to_gcj02(lat, lon)
        (true_code, shifted_code), _ = index.nearest([lat, float(g_lat)], [lon, float(g_lon)])
        if true_code != shifted_code:
            return float(g_lat), float(g_lon), int(true_code), int(shifted_code)
    raise AssertionError("no point found where the GCJ-02 shift changes the district")


def test_gcj02_coordinates_are_judged_at_their_wgs84_place(server: Any, channel: grpc.Channel,
                                                           world: dict[str, Any]) -> None:
    g_lat, g_lon, true_code, shifted_code = _border_point(geo.default_index())
    with scangate.Client(server.target, timeout=60) as c:
        as_gcj = c.scan(world["items"][10], "gina", lat=g_lat, lon=g_lon, datum="gcj02")
        as_wgs = c.scan(world["items"][11], "gina", lat=g_lat, lon=g_lon)
        assert as_gcj.verdict.region == true_code
        assert as_wgs.verdict.region == shifted_code != true_code
        rid = f"gcj-{uuid.uuid4().hex}"
        first = c.scan(world["items"][12], "gina", lat=g_lat, lon=g_lon, datum="gcj02", request_id=rid)
        again = c.scan(world["items"][12], "gina", lat=g_lat, lon=g_lon, datum="gcj02", request_id=rid)
        assert again == first        # a retry converts to the same point: the same request
        with pytest.raises(scangate.InvalidArgument):
            c.scan(world["items"][12], "gina", lat=g_lat, lon=g_lon, request_id=rid)     # other coordinates
        with pytest.raises(scangate.InvalidArgument):
            c.scan(world["items"][13], "gina", lat=g_lat, lon=g_lon, datum="bd09")
    m = scan_pb.ScanRequest(request_id="datum-7", code=world["items"][13], actor="gina", lat=g_lat, lon=g_lon,
                            datum=7)    # type: ignore[arg-type]
    with pytest.raises(grpc.RpcError) as err:
        _call(channel, "/scangate.v1.ScanService/Scan", m.SerializeToString())
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert _violations(err.value) == [("datum", "7 is not a known Datum")]


# ---------------------------------------------------------------------- a full store
def _fill(directory: Path) -> Path:
    """Write a file in ``directory`` until its file system is full; the file."""
    filler = directory / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        size = 1 << 20
        while size:              # unbuffered: down to the last byte that fits
            try:
                os.write(fd, b"\0" * size)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC
                size //= 2
    finally:
        os.close(fd)
    return filler


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A data directory whose LMDB environment lives on an 8 MiB tmpfs: the
    directory, with codes issued. Skips where mounting is not permitted."""
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("a full disk is simulated with a tmpfs mount, which needs root")
    data = tmp_path / "data"
    with scangate.init_data_dir(data):
        pass
    lmdb_dir = data / "lmdb"
    saved = tmp_path / "lmdb-saved"
    shutil.copytree(lmdb_dir, saved)
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m,mode=0700", "tmpfs", str(lmdb_dir)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"mounting a tmpfs is not permitted here: {proc.stderr.strip()}")
    try:
        shutil.copytree(saved, lmdb_dir, dirs_exist_ok=True)     # the trace's environment (lmdb/trace/) too
        yield data
    finally:
        subprocess.run(["umount", "-l", str(lmdb_dir)], capture_output=True)


def test_a_full_disk_is_unavailable_and_serving_resumes_when_space_is_freed(small_disk: Path) -> None:
    data = small_disk
    with running(data, "--workers", "1", env=NO_LIMITS) as srv, \
            scangate.Client(srv.target, timeout=60, stream_timeout=60) as c:
        codes = [x for b in c.issue_codes("TEA", "item", 300) for x in b.codes]
        packed = [x for b in c.issue_codes("TEA", "item", 3000) for x in b.codes]
        (case,) = [x for b in c.issue_codes("TEA-CASE", "case", 1) for x in b.codes]
        assert c.scan(codes[0], "amy").verdict.code_status.label == "genuine"
        filler = _fill(data / "lmdb")
        # LMDB reuses freed pages first: scan until a commit needs a new one
        refused: scangate.Unavailable | None = None
        refused_at = 0
        for i in range(1, len(codes)):
            try:
                c.scan(codes[i], f"user-{i}", request_id=f"full-{i}")
            except scangate.Unavailable as exc:
                refused, refused_at = exc, i
                break
        assert refused is not None, "the scans never ran out of space"
        assert refused.code == "UNAVAILABLE"
        assert "storage full: no space left on the data directory's disk" in str(refused)
        with pytest.raises(scangate.Unavailable):        # the same request, retried: still full
            c.scan(codes[refused_at], f"user-{refused_at}", request_id=f"full-{refused_at}")
        # an upload (written by the worker process, not the writer): the same answer
        chunks = [packed[k : k + 100] for k in range(0, len(packed), 100)]
        upload_refused = None
        for k, chunk in enumerate(chunks):
            try:
                c.upload_links([(case, x) for x in chunk])
            except scangate.Unavailable as exc:
                upload_refused = k
                assert "storage full: " in str(exc)
                break
        assert upload_refused is not None, "the uploads never ran out of space"
        filler.unlink()
        # the same requests, retried, succeed now: the writer process served throughout
        d = c.scan(codes[refused_at], f"user-{refused_at}", request_id=f"full-{refused_at}")
        assert d.request_id == f"full-{refused_at}" and d.verdict.code_status.label == "genuine"
        assert d.verdict.scan_count == 1
        assert c.scan(codes[-1], "later").verdict.scan_count == 1
        assert c.upload_links([(case, x) for x in chunks[upload_refused]]).added == 100
    logs = srv.logs()
    records = _log_records(srv)
    full = [r for r in records if r["message"].startswith("storage full:")]
    # one line per process that met it (the writer: scans; the worker: the upload)
    assert [r["level"] for r in full] == ["ERROR", "ERROR"] and len({r["pid"] for r in full}) == 2, full
    assert all("exc_info" not in r for r in full)
    assert "Traceback" not in logs
    assert "exited with" not in logs                  # no process of the server died


def test_a_full_map_is_unavailable(tmp_path: Path) -> None:
    """The LMDB map size reached (no mount needed): the writer answers every scan
    of the failing commit with UNAVAILABLE "storage full", and keeps going."""
    root = tmp_path / "data"
    with scangate.init_data_dir(root) as dd:
        codes = dd.issue_codes("TEA", "item", 3000).as_strings()
    with scangate.open_data_dir(root, map_size=os.path.getsize(root / "lmdb" / "data.mdb") + (256 << 10)) as dd:
        writer = GroupCommitWriter(dd, max_batch=64)
        try:
            error: BaseException | None = None
            for i in range(0, len(codes), 50):
                reqs = [ScanRequest(f"m-{j}", codes[j], f"u-{j}", region=510104) for j in range(i, i + 50)]
                try:
                    writer.submit(reqs).result(60)
                except Exception as exc:   # noqa: BLE001 - the one expected, checked below
                    error = exc
                    break
            assert error is not None, "the map never filled"
            err = to_request_error(error)
            assert err.code == grpc.StatusCode.UNAVAILABLE
            assert err.message.startswith("storage full: the LMDB map size of the data directory is reached")
            # the writer thread lives on: the next submission is answered (decided if
            # it fits in what is left, else refused the same way)
            later = writer.submit([ScanRequest("m-next", codes[-1], "u", region=510104)]).exception(60)
            assert later is None or to_request_error(later).code == grpc.StatusCode.UNAVAILABLE
        finally:
            writer.close(60)
