"""End to end through `scangate serve` on a real port and `scangate.Client`:
issue, link, ship, campaign, scan (unary and stream), trace, points, leaderboard,
payouts; rich INVALID_ARGUMENT; health; reflection with a third-party client;
Prometheus metrics across two workers."""
from __future__ import annotations

import asyncio
import json
import threading
import urllib.request
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_status import rpc_status

import scangate
from scangate import clock, points
from scangate.rewards import NoReward, ScanRequest
from scangate.trace import Dealer
from scangate.v1 import scan_pb2, scan_pb2_grpc

from serverproc import running

CAMPAIGN = """
id = "summer"
name = "Summer red packets"
start = 2026-01-01
end = 2030-01-01
actor = "consumer"
odds = "100%"
regions_exclude = ["11", "31"]

[[prizes]]
id = "cny-2"
kind = "cash"
amount_fen = 200
budget_count = 1000

[caps]
per_user_daily_count = 3
"""

STORE_CAMPAIGN = """
id = "stores"
name = "Store points"
start = 2026-01-01
end = 2030-01-01
actor = "store"
odds = "100%"

[products]
levels = ["case"]

[[prizes]]
id = "pts-50"
kind = "points"
points = 50
"""


@pytest.fixture(scope="module", params=["workers", "writer", "postgresql"])
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator:
    """A server of two workers, once with each of them preparing its calls'
    read-only half (server.prepare = "workers"), once with the writer deciding
    every scan whole ("writer"), and once with the decision state on PostgreSQL
    (``--store``, a real cluster: conftest's pg_server) and a decider process
    for each worker (server.deciders = 2): every test here holds for all three."""
    data = tmp_path_factory.mktemp("srv") / "data"
    store = ("--store", request.getfixturevalue("pg_server").database()) if request.param == "postgresql" else ()
    env = {"SCANGATE_SERVER_PREPARE": request.param} if not store else \
        {"SCANGATE_SERVER_PREPARE": "writer", "SCANGATE_SERVER_DECIDERS": "2"}
    with running(data, "--workers", "2", *store, metrics=True, env=env) as srv:
        yield srv


@pytest.fixture(scope="module")
def client(server) -> Iterator[scangate.Client]:  # type: ignore[no-untyped-def]
    with scangate.Client(server.target) as c:
        yield c


@pytest.fixture(scope="module")
def world(client: scangate.Client) -> dict:
    """Codes issued, packed into cases, shipped to a Chengdu dealer, campaigns loaded."""
    items = [c for b in client.issue_codes("BEER-500", "item", 60, batch_size=25) for c in b.codes]
    cases = [c for b in client.issue_codes("BEER-500-CASE", "case", 5) for c in b.codes]
    report = client.upload_links([(cases[i // 12], code) for i, code in enumerate(items)], source="line-7")
    assert (report.rows, report.added, report.parents) == (60, 60, 5)
    assert client.put_dealers([Dealer("CD-01", "Chengdu dealer", ("5101",))]) == 1
    assert client.upload_shipments([(c, "CD-01") for c in cases], source="dn-1") == 5
    first = client.put_campaign(CAMPAIGN, "summer.toml")
    assert first.revision == 1 and len(first.commitment) == 64
    client.put_campaign(STORE_CAMPAIGN, "stores.toml")
    return {"items": items, "cases": cases}


def test_issue_streams_every_code_once_in_serial_order(client: scangate.Client) -> None:
    batches = list(client.issue_codes("WATER", "item", 1001, batch_size=250))
    assert [len(b.codes) for b in batches] == [250, 250, 250, 250, 1]
    serials = [b.first_serial for b in batches]
    assert serials == [serials[0] + 250 * i for i in range(5)]
    codes = [c for b in batches for c in b.codes]
    assert len(set(codes)) == 1001
    checks = client.verify_codes(codes[:3] + ["NOT-A-CODE"])
    assert [c.status for c in checks] == [1, 1, 1, 3]     # GENUINE x3, MALFORMED
    assert [c.serial for c in checks[:3]] == [serials[0], serials[0] + 1, serials[0] + 2]
    assert checks[0].sku == "WATER"
    urls = next(client.issue_codes("WATER", "item", 2, url=True)).codes
    assert all(u.startswith("HTTPS://") or u.startswith("http") for u in urls)
    assert [c.status for c in client.verify_codes(urls)] == [1, 1]


def test_scan_unary_wins_then_retry_is_identical(client: scangate.Client, world: dict) -> None:
    code = world["items"][0]
    d = client.scan(code, "openid-1", request_id="req-1", region=510104)
    assert d.verdict.label == "genuine" and [r.value for r in d.verdict.reasons] == ["SG-G1"]
    assert d.award is not None and d.award.kind == "cash" and d.award.amount_fen == 200
    assert d.award.payout_key and d.campaign_id == "summer"
    assert "红包" in d.message["zh-CN"] and "red packet" in d.message["en"]
    assert d.verdict.evidence["trace"]["dealer_id"] == "CD-01"
    assert client.scan(code, "openid-1", request_id="req-1", region=510104) == d
    again = client.scan(code, "openid-2", region=510104)      # a new request on a claimed code
    assert again.no_reward is NoReward.ALREADY_CLAIMED
    assert again.verdict.scan_count == 2 and again.verdict.first_scan["region"] == 510104


def test_scan_outside_territory_is_diverted_and_excluded_region_wins_nothing(client: scangate.Client,
                                                                             world: dict) -> None:
    d = client.scan(world["items"][1], "openid-3", region=440106)          # Guangzhou, shipped to Chengdu
    assert d.verdict.label == "diverted"
    assert d.verdict.evidence["diversion"]["territory"] == ["5101"]
    b = client.scan(world["items"][2], "openid-3", region=310104)          # Shanghai: excluded
    assert b.no_reward is NoReward.REGION_EXCLUDED


def test_counterfeit_scan(client: scangate.Client, world: dict) -> None:
    code = world["items"][3]
    forged = code[:5] + ("A" if code[5] != "A" else "B") + code[6:]
    d = client.scan(forged, "openid-4", region=510104)
    assert d.verdict.label == "counterfeit" and d.award is None
    assert d.verdict.code_status.label in ("typo", "counterfeit")


def test_scan_stream_decides_batches_in_order(client: scangate.Client, world: dict) -> None:
    items = world["items"][10:40]
    reqs = [ScanRequest(f"stream-{i}", code, f"openid-s{i % 10}", region=510104) for i, code in enumerate(items)]
    decisions = list(client.scan_stream(reqs, batch_size=7))
    assert [d.request_id for d in decisions] == [r.request_id for r in reqs]
    won = [d for d in decisions if d.award]
    capped = [d for d in decisions if d.no_reward is NoReward.DAILY_CAP_REACHED]
    assert len(won) == 30 and not capped      # 3 scans per user: inside the daily cap of 3
    more = list(client.scan_stream([ScanRequest("stream-x", world["items"][40], "openid-s0", region=510104)]))
    assert more[0].no_reward is NoReward.DAILY_CAP_REACHED
    assert more[0].message["en"] == "Scan limit reached for today."


def test_async_client_scans(server, world: dict) -> None:  # type: ignore[no-untyped-def]
    async def go() -> list:
        async with scangate.AsyncClient(server.target) as c:
            one = await c.scan(world["items"][41], "openid-async", region=510104)
            many = [d async for d in c.scan_stream(
                [ScanRequest(f"as-{i}", world["items"][42 + i], f"openid-as{i}", region=510104) for i in range(3)])]
            board = await c.leaderboard(points.period_of(clock.now_ms()))
            return [one, many, board]

    one, many, _ = asyncio.run(go())
    assert one.award is not None
    assert [d.request_id for d in many] == ["as-0", "as-1", "as-2"] and all(d.award for d in many)


def test_store_points_and_leaderboard(client: scangate.Client, world: dict) -> None:
    for i, case in enumerate(world["cases"][:3]):
        d = client.scan(case, f"store-{i % 2}", actor_type="store", region=510104)
        assert d.award is not None and d.award.points == 50, d
    assert client.points("store-0").balance == 100
    p = client.points("store-1")
    assert p.balance == 50 and p.earned == 50 and [h.delta for h in p.history] == [50]
    period = points.period_of(clock.now_ms())     # the server's clock is the tests' (conftest)
    board = client.leaderboard(period, top=10, actor="store-1")
    assert [(e.actor, e.points) for e in board.top][:2] == [("store-0", 100), ("store-1", 50)]
    assert board.actor.rank == 2 and board.ranked >= 2
    r = client.redeem_points("store-1", 80, "redeem-1")
    assert not r.ok and r.reason == "insufficient_points" and r.balance == 50
    assert client.redeem_points("store-1", 30, "redeem-2").ok
    assert client.points("store-1").balance == 20


def test_campaigns_and_payouts(client: scangate.Client, world: dict) -> None:
    ids = [c.campaign_id for c in client.list_campaigns()]
    assert ids == ["stores", "summer"]
    paused = client.set_campaign_status("summer", "paused")
    assert paused.status == 2
    d = client.scan(world["items"][50], "openid-p", region=510104)
    assert d.no_reward is NoReward.CAMPAIGN_PAUSED
    assert client.set_campaign_status("summer", "active").status == 1
    c = client.get_campaign("summer")
    assert json.loads(c.definition_json)["id"] == "summer"
    used = {b.prize_id: (b.count, b.amount_fen) for b in c.budgets}
    payouts = client.list_payouts(state="pending", limit=1000)
    assert used["cny-2"][0] == len(payouts.payouts) == payouts.counts["pending"]
    assert used["cny-2"][1] == 200 * used["cny-2"][0]
    assert all(p.kind == "cash" and p.amount_fen == 200 and p.campaign_id == "summer" for p in payouts.payouts)
    with pytest.raises(scangate.NotFound):
        client.get_campaign("winter")


def test_trace(client: scangate.Client, world: dict) -> None:
    (r, bad) = client.trace([world["items"][0], "0000"])
    assert r.found and len(r.ancestors) == 1 and r.dealer.dealer_id == "CD-01"
    assert r.shipment.dealer_id == "CD-01" and r.shipment.unit_serial == r.ancestors[0]
    assert not bad.found and bad.status == 3


def test_malformed_requests_name_the_field(server, client: scangate.Client, world: dict) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(scangate.InvalidArgument) as exc:
        client.scan(world["items"][5], "", region=12)
    fields = [f for f, _ in exc.value.violations]  # type: ignore[attr-defined]
    assert fields == ["actor", "region"]
    with pytest.raises(scangate.InvalidArgument) as exc:
        list(client.scan_stream([ScanRequest("ok-1", world["items"][5], "u"), ScanRequest("", world["items"][6], "u")]))
    assert [f for f, _ in exc.value.violations] == ["scans[1].request_id"]  # type: ignore[attr-defined]
    with pytest.raises(scangate.InvalidArgument) as exc:   # a bad row rejects the upload, naming it
        client.upload_links([(world["cases"][0], world["items"][7]), (world["items"][8], world["cases"][1])])
    assert [f for f, _ in exc.value.violations] == ["links[1].child"]  # type: ignore[attr-defined]
    with pytest.raises(scangate.InvalidArgument) as exc:
        client.put_campaign('id = "x"\nname = "x"\nstart = 2026-01-01\nend = 2025-01-01\nactor = "consumer"\n'
                            'odds = "10%"\n[[prizes]]\nid = "p"\nkind = "points"\npoints = 1\n', "x.toml")
    assert "end" in str(exc.value)
    # the raw status carries google.rpc.BadRequest for any gRPC client
    with grpc.insecure_channel(server.target) as ch:
        with pytest.raises(grpc.RpcError) as raw:
            scan_pb2_grpc.ScanServiceStub(ch).Scan(scan_pb2.ScanRequest(code="x", actor="a"), timeout=10)
    assert raw.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    status = rpc_status.from_call(raw.value)
    detail = error_details_pb2.BadRequest()
    assert status.details[0].Unpack(detail)
    assert [v.field for v in detail.field_violations] == ["request_id"]


def test_health_and_reflection_with_a_third_party_client(server, world: dict) -> None:  # type: ignore[no-untyped-def]
    with grpc.insecure_channel(server.target) as ch:
        stub = health_pb2_grpc.HealthStub(ch)
        for name in ("", "scangate.v1.ScanService"):
            assert stub.Check(health_pb2.HealthCheckRequest(service=name), timeout=10).status == \
                health_pb2.HealthCheckResponse.SERVING
    from grpc_requests import Client as ReflectionClient

    rc = ReflectionClient.get_by_endpoint(server.target)
    services = set(rc.service_names)
    assert {"scangate.v1.ScanService", "scangate.v1.CampaignService", "grpc.health.v1.Health"} <= services
    reply = rc.request("scangate.v1.ScanService", "Scan", {
        "request_id": f"reflect-{uuid.uuid4().hex}", "code": world["items"][55], "actor": "reflection-user",
        "region": 510104})
    assert reply["verdict"]["verdict"] == "VERDICT_GENUINE"
    assert reply["award"]["amount_fen"] in ("200", 200)


def _metrics(server) -> dict[str, float]:  # type: ignore[no-untyped-def]
    text = urllib.request.urlopen(f"http://127.0.0.1:{server.metrics_port}/metrics", timeout=10).read().decode()
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            out[name] = out.get(name, 0.0) + float(value)
    return out


def test_metrics_add_up_over_workers(server, client: scangate.Client, world: dict) -> None:  # type: ignore[no-untyped-def]
    before = _metrics(server)
    n = 12
    for i in range(n):      # fresh channels: SO_REUSEPORT spreads connections over both workers
        with scangate.Client(server.target) as c:
            c.scan(world["items"][i], f"metrics-{i}", region=510104)
    after = _metrics(server)
    key = 'scangate_requests_total{code="OK",method="Scan"}'
    assert after[key] - before.get(key, 0) == n
    verdicts = [k for k in after if k.startswith("scangate_verdicts_total{")]
    assert sum(after[k] - before.get(k, 0) for k in verdicts) == n
    assert after["scangate_commit_batch_size_count"] > before.get("scangate_commit_batch_size_count", 0)
    assert 'scangate_payout_queue_depth{state="pending"}' in after
    assert after['scangate_payout_queue_depth{state="pending"}'] == client.list_payouts().counts["pending"]


def test_one_code_scanned_at_once_through_both_workers_is_decided_in_one_order(server, world: dict) -> None:  # type: ignore[no-untyped-def]
    """Sixteen clients, each on its own connection (SO_REUSEPORT spreads them over
    both workers), scan one code at the same instant. With workers preparing, each
    worker reads the code's history before the writer commits any of them: the
    writer's revision check must catch every stale read. So the decisions see scan
    counts 1..16, each once, every later one names the first, and the code pays once."""
    clients = 16
    for round_, code in enumerate(world["items"][56:60]):
        barrier = threading.Barrier(clients)

        def scan(i: int, code: str = code, barrier: threading.Barrier = barrier) -> scangate.Decision:
            with scangate.Client(server.target) as c:
                c.trace([code])                 # connected before the barrier: the scans start together
                barrier.wait(timeout=30)
                return c.scan(code, f"racer-{round_}-{i}", request_id=f"race-{round_}-{i}", region=510104)

        with ThreadPoolExecutor(clients) as pool:
            decisions = list(pool.map(scan, range(clients)))
        counts = sorted(d.verdict.scan_count for d in decisions)
        assert counts == list(range(1, clients + 1)), counts
        winner, first = next((i, d) for i, d in enumerate(decisions) if d.verdict.scan_count == 1)
        assert first.verdict.first_scan is None         # it is the first
        assert all(d.verdict.first_scan is not None and d.verdict.first_scan["actor"] == f"racer-{round_}-{winner}"
                   for d in decisions if d is not first)
        awarded = [d for d in decisions if d.award is not None]
        assert awarded == [first] and first.award is not None and first.award.amount_fen == 200
        assert all(d.no_reward is not None for d in decisions if d is not first)


def test_put_dealers_names_each_bad_row(client: scangate.Client) -> None:
    with pytest.raises(scangate.InvalidArgument) as exc:
        client.put_dealers([Dealer("OK-1", "fine", ("51",)), Dealer("", "no id", ("44",)),
                            Dealer("BAD-T", "bad territory", ("4x",))])
    assert [f for f, _ in exc.value.violations] == ["dealers[1].dealer_id", "dealers[2].territory"]  # type: ignore[attr-defined]
