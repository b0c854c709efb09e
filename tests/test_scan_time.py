"""The server owns the clock (issue 12, item 2).

A decision's time is the deciding process's clock; a client's ``time_ms`` counts
only as the moment of a late (offline) scan inside the configured window
(``[server] late_scan_s``, 300 s by default) and at most ``clock_skew_s`` ahead
(counted as now). Outside it: INVALID_ARGUMENT naming ``time_ms``, nothing
written. The issue's reproduction: twelve scans dated on twelve future days gave
one user 12 wins under a cap of 10 a day.

Library tests run on a ``ManualClock``; server tests on the clock conftest.py
injects (``SCANGATE_CLOCK``), which the server's processes share.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

import scangate
from scangate import clock, rewards
from scangate.clock import ManualClock, ScanTimePolicy
from scangate.config import load_config
from scangate.errors import InvalidArgument
from scangate.rewards import Decision, NoReward, ScanRequest, ScanTimeRefused
from scangate.state import raw as state_raw
from scangate.v1 import scan_pb2, scan_pb2_grpc

from serverproc import running, violations

DAY = 86_400_000
NOON = 1_780_286_400_000          # 2026-06-01 12:00 Beijing time
END = NOON + 3_600_000            # the campaign ends at 13:00
CAMPAIGN = """
id = "c1"
name = "server clock"
timezone = "Asia/Shanghai"
start = 2026-05-01
end = 2026-06-01T13:00:00
actor = "consumer"
odds = "100%"

[caps]
per_user_daily_count = 10
per_user_daily_amount_fen = 100000

[[prizes]]
id = "cny-1"
kind = "cash"
amount_fen = 100
budget_count = 1000
"""
SERVER = ScanTimePolicy(late_ms=300_000, ahead_ms=10_000)   # the server's defaults
WRITTEN = ("scans", "budgets", "counters", "claims", "ledger", "outbox", "points", "requests", "decisions")


@pytest.fixture
def dd(tmp_path: Path) -> Iterator[scangate.DataDir]:
    d = scangate.init_data_dir(tmp_path / "d")
    rewards.put_campaign(d, CAMPAIGN, "c1.toml")
    try:
        yield d
    finally:
        d.close()


def snapshot(dd: scangate.DataDir) -> dict[str, list[tuple[bytes, bytes]]]:
    return state_raw.dump(dd, WRITTEN)


def decide(dd: scangate.DataDir, now: int, *requests: ScanRequest) -> list[Any]:
    return rewards.decide_scans(dd, list(requests), time_policy=SERVER, now_ms=ManualClock(now))


def first_scan_ms(dd: scangate.DataDir, code: str, now: int) -> int:
    """When the deciding clock recorded ``code``'s first scan: a second scan says."""
    (d,) = decide(dd, now, ScanRequest(f"probe-{code}", code, "prober"))
    return int(d.verdict.first_scan["time_ms"])


# ---------------------------------------------------------------------- library
def test_twelve_future_days_do_not_beat_a_daily_cap_of_ten(dd: scangate.DataDir) -> None:
    codes = dd.issue_codes("BEER", "item", 24).as_strings()
    now = NOON - 2 * DAY
    before = snapshot(dd)
    dated = [ScanRequest(f"f{i}", c, "alice", time_ms=now + (i + 1) * DAY) for i, c in enumerate(codes[:12])]
    results = decide(dd, now, *dated)
    assert all(isinstance(r, ScanTimeRefused) and r.field == "time_ms" for r in results), results
    assert "after the server's clock" in str(results[0]) and str(results[0]).startswith("time_ms: ")
    assert snapshot(dd) == before                       # nothing of them written
    # the same twelve on the server's clock: one day, ten wins, then the cap
    undated = [ScanRequest(f"u{i}", c, "alice") for i, c in enumerate(codes[12:])]
    results = decide(dd, now, *undated)
    assert [r.award is not None for r in results] == [True] * 10 + [False] * 2
    assert {r.no_reward for r in results[10:]} == {NoReward.DAILY_CAP_REACHED}


def test_a_late_scan_inside_the_window_is_decided_at_its_own_time(dd: scangate.DataDir) -> None:
    a, b, c, d = dd.issue_codes("BEER", "item", 4).as_strings()
    now = END + 60_000                                  # the campaign ended a minute ago
    late, undated = decide(dd, now, ScanRequest("late", a, "bob", time_ms=END - 120_000),
                           ScanRequest("now", b, "carol"))
    assert isinstance(late, Decision) and late.award is not None          # scanned while it ran
    assert isinstance(undated, Decision) and undated.no_reward is NoReward.OUTSIDE_WINDOW
    assert first_scan_ms(dd, a, now) == END - 120_000
    assert first_scan_ms(dd, b, now) == now
    # just outside the window: refused, naming time_ms and the window
    (old,) = decide(dd, now, ScanRequest("old", c, "dave", time_ms=now - 300_001))
    assert isinstance(old, ScanTimeRefused) and "at most 5.0 min in the past" in str(old)
    # a time a little ahead is the phone's clock running fast: it counts as now
    (ahead,) = decide(dd, END - 60_000, ScanRequest("ahead", d, "erin", time_ms=END - 55_000))
    assert isinstance(ahead, Decision) and ahead.award is not None
    assert first_scan_ms(dd, d, END - 60_000) == END - 60_000


def test_a_retry_after_the_window_gets_its_stored_decision(dd: scangate.DataDir) -> None:
    (code,) = dd.issue_codes("BEER", "item", 1).as_strings()
    request = ScanRequest("r1", code, "frank", time_ms=NOON - 60_000)
    (first,) = decide(dd, NOON, request)
    assert isinstance(first, Decision) and first.award is not None
    before = snapshot(dd)
    (again,) = decide(dd, NOON + DAY, request)          # a day later: outside any window
    assert isinstance(again, Decision)
    assert json.dumps(again.to_json()) == json.dumps(first.to_json())
    assert snapshot(dd) == before


def test_one_refused_time_leaves_the_rest_of_the_batch_decided(dd: scangate.DataDir) -> None:
    a, b, c = dd.issue_codes("BEER", "item", 3).as_strings()
    results = decide(dd, NOON, ScanRequest("a", a, "g1"), ScanRequest("b", b, "g2", time_ms=NOON + DAY),
                     ScanRequest("c", c, "g3", time_ms=NOON - 1_000))
    assert isinstance(results[0], Decision) and isinstance(results[2], Decision)
    assert isinstance(results[1], ScanTimeRefused)
    assert results[1].at("scans[1].").field == "scans[1].time_ms"
    # the refused request's id is still free for a scan with a good time
    (b2,) = decide(dd, NOON, ScanRequest("b", b, "g2"))
    assert isinstance(b2, Decision) and b2.verdict.scan_count == 1


def test_the_library_default_trusts_its_caller(dd: scangate.DataDir) -> None:
    """decide_scans without a policy is the operator's own code (an import of
    offline scans): its times stand, past or future."""
    (code,) = dd.issue_codes("BEER", "item", 1).as_strings()
    (d,) = rewards.decide_scans(dd, [ScanRequest("x", code, "h", time_ms=NOON - 10 * DAY)],
                                now_ms=ManualClock(NOON))
    assert isinstance(d, Decision) and d.award is not None
    assert first_scan_ms(dd, code, NOON) == NOON - 10 * DAY


# ---------------------------------------------------------------------- clock
def test_scangate_clock_is_shared_with_child_processes() -> None:
    """conftest set SCANGATE_CLOCK; a child process reads the same clock (the
    anchor travels in SCANGATE_CLOCK_ANCHOR_MS), not one restarted at its start."""
    assert os.environ.get(clock.ANCHOR_ENV)
    ours = clock.now_ms()
    out = subprocess.run([sys.executable, "-c", "from scangate import clock; print(clock.now_ms())"],
                         capture_output=True, text=True, check=True, timeout=60).stdout
    theirs = int(out)
    # months from the system's date, but within the child's start-up of ours
    assert abs(clock.system_ms() - ours) > 30 * DAY
    assert 0 <= theirs - ours < 60_000


@pytest.mark.parametrize("value, why", [
    ("tomorrow", "is not an RFC 3339 time"),
    ("2026-06-01T00:00:00", "has no time zone"),
])
def test_a_bad_scangate_clock_is_refused_by_name(value: str, why: str) -> None:
    with pytest.raises(InvalidArgument, match=f"SCANGATE_CLOCK: .*{why}"):
        clock.clock_from_env({clock.CLOCK_ENV: value})
    with pytest.raises(InvalidArgument, match="SCANGATE_CLOCK_ANCHOR_MS"):
        clock.clock_from_env({clock.CLOCK_ENV: "2026-06-01T00:00:00Z", clock.ANCHOR_ENV: "soon"})


def test_the_window_is_configured_and_checked() -> None:
    cfg = load_config(env={"SCANGATE_SERVER_LATE_SCAN_S": "86400", "SCANGATE_SERVER_CLOCK_SKEW_S": "2"})
    assert cfg.server.scan_time_policy == ScanTimePolicy(late_ms=86_400_000, ahead_ms=2_000)
    assert load_config(env={}).server.scan_time_policy == SERVER
    for bad in ("-1", "nan", "9999999"):
        with pytest.raises(InvalidArgument, match="SCANGATE_SERVER_LATE_SCAN_S: server.late_scan_s"):
            load_config(env={"SCANGATE_SERVER_LATE_SCAN_S": bad})


# ---------------------------------------------------------------------- server
SERVED = CAMPAIGN.replace("end = 2026-06-01T13:00:00", "end = 2026-06-30")




def test_the_server_decides_on_its_clock(tmp_path: Path) -> None:
    with running(tmp_path / "data", "--workers", "1") as srv, scangate.Client(srv.target) as c:
        c.put_campaign(SERVED, "c1.toml")
        codes = [x for b in c.issue_codes("BEER", "item", 6) for x in b.codes]
        now = clock.now_ms()            # the server's clock is this one (conftest)
        with grpc.insecure_channel(srv.target) as ch:
            stub = scan_pb2_grpc.ScanServiceStub(ch)
            for i, t in enumerate((now + 2 * DAY, now - 3_600_000, 1_893_456_000_000)):  # ahead, late, 2030
                with pytest.raises(grpc.RpcError) as err:
                    stub.Scan(scan_pb2.ScanRequest(request_id=f"bad-{i}", code=codes[0], actor="mallory",
                                                   time_ms=t), timeout=30)
                assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
                assert violations(err.value) == ["time_ms"], err.value.details()
            # in a stream, the refusal names the scan
            batch = scan_pb2.ScanBatch(scans=[
                scan_pb2.ScanRequest(request_id="s0", code=codes[1], actor="mallory"),
                scan_pb2.ScanRequest(request_id="s1", code=codes[2], actor="mallory", time_ms=now + DAY)])
            with pytest.raises(grpc.RpcError) as err:
                list(stub.ScanStream(iter([batch]), timeout=30))
            assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert violations(err.value) == ["scans[1].time_ms"]
        # nothing of the refused scans was written: codes[0] and [2] are unscanned
        assert c.scan(codes[0], "trent").verdict.scan_count == 1
        assert c.scan(codes[2], "trent").verdict.scan_count == 1
        # a late scan a minute ago is decided at its own time
        late = c.scan(codes[3], "ursula", time_ms=now - 60_000)
        assert late.award is not None
        assert c.scan(codes[3], "victor").verdict.first_scan["time_ms"] == now - 60_000
        # a scan without a time is stamped by the server, on its clock, not the system's
        c.scan(codes[4], "wendy")
        stamped = c.scan(codes[4], "xavier").verdict.first_scan["time_ms"]
        assert 0 <= stamped - now < 600_000
    assert "SCANGATE_CLOCK is set" in srv.logs()


def test_the_late_scan_window_is_the_operators(tmp_path: Path) -> None:
    env = {"SCANGATE_SERVER_LATE_SCAN_S": "86400"}      # store apps that sync once a day
    with running(tmp_path / "data", "--workers", "1", env=env) as srv, scangate.Client(srv.target) as c:
        c.put_campaign(SERVED, "c1.toml")
        (code,) = [x for b in c.issue_codes("BEER", "item", 1) for x in b.codes]
        hours_ago = clock.now_ms() - 5 * 3_600_000
        assert c.scan(code, "yvonne", time_ms=hours_ago).award is not None
        with pytest.raises(scangate.InvalidArgument, match="time_ms"):
            c.scan(code, "zed", time_ms=clock.now_ms() - 2 * DAY)
