"""Guessing limits that hold (server/limits.py): one set of buckets per server,
shared by its worker processes; per actor and per client; on Scan, VerifyCodes
and Trace.

The server tests run a real ``scangate serve --workers 2`` and spread their calls
over both workers (connections checked in /proc). Across processes there is no
fake clock, so they assert bounds that hold however slow the machine is: at most
the burst plus the refill over the time measured around the calls."""
from __future__ import annotations

import multiprocessing
import os
import signal
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import grpc
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import scangate
from scangate.config import LimitsConfig
from scangate.server.auth import add_token
from scangate.server.limits import LimitTable, RateLimiter, client_of_peer
from scangate.v1 import codes_pb2, common_pb2, scan_pb2, trace_pb2

from forgery import random_code_texts
from serverproc import running

OFF = dict(actor_scans_per_minute=0, actor_failures_per_hour=0, client_requests_per_second=0,
           client_codes_per_second=0, client_failures_per_hour=0)


def _limits(**on: int) -> LimitsConfig:
    return LimitsConfig(**{**OFF, **on})


# ====================================================================== the table, in process
class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# Rates and steps chosen so every time is a binary fraction: the table's GCRA and
# the reference token bucket then agree exactly, boundaries included.
_OPS = st.lists(st.one_of(st.tuples(st.just("take"), st.integers(1, 6)),
                          st.tuples(st.just("charge"), st.integers(1, 9)),
                          st.tuples(st.just("wait"), st.integers(0, 24))), max_size=60)


@settings(max_examples=150, deadline=None)
@given(_OPS)
def test_a_bucket_is_the_reference_token_bucket(ops: list[tuple[str, int]]) -> None:
    """client_codes (4 per second) against RateLimiter(4, 1 s); client_failures
    (3600 per hour, so one a second) against RateLimiter(3600, 3600 s)."""
    clock = _Clock()
    table = LimitTable.private(_limits(client_codes_per_second=4), actor_sets=1, client_sets=1, clock=clock)
    failures = LimitTable.private(_limits(client_failures_per_hour=3600), actor_sets=1, client_sets=1, clock=clock)
    ref_codes, ref_failures = RateLimiter(4, 1.0, clock=clock), RateLimiter(3600, 3600.0, clock=clock)
    for op, n in ops:
        if op == "take":
            assert (table.admit("app", (), n) is None) == ref_codes.allow("app", n)
            # a failure check takes nothing; it passes while n tokens are left
            assert (failures.admit("app", (), n) is None) == (ref_failures._level("app", clock.now) >= n)
        elif op == "charge":
            failures.charge_failures("app", (), n)
            ref_failures.charge("app", n)
        else:
            clock.now += n / 8
        assert table.tokens("client_codes", "app") == pytest.approx(ref_codes._level("app", clock.now), abs=1e-9)
        assert failures.tokens("client_failures", "app") == pytest.approx(
            ref_failures._level("app", clock.now), abs=1e-9)


def test_a_call_is_all_or_nothing_and_refusals_quote_a_prefix() -> None:
    clock = _Clock()
    t = LimitTable.private(_limits(actor_scans_per_minute=3, client_codes_per_second=10), actor_sets=4,
                           client_sets=4, clock=clock)
    long_actor = "A" * 100 + "tail"
    assert t.admit("app", ["a", "b", "a"], 3) is None
    # "a" has one scan left: a batch with two of its scans is refused, and takes
    # nothing from "b" or from the client
    r = t.admit("app", ["b", "a", "a"], 3)
    assert r is not None and r.limit == "actor_scans" and r.message.startswith("actor 'a': scan rate limit")
    assert t.tokens("actor_scans", "b") == pytest.approx(2.0)
    assert t.tokens("client_codes", "app") == pytest.approx(7.0)
    for _ in range(3):
        assert t.admit("app", [long_actor], 1) is None
    r = t.admit("app", [long_actor], 1)
    assert r is not None and "A" * 40 in r.message and "A" * 41 not in r.message and "tail" not in r.message
    r = t.admit("x" * 10_000, (), 11)
    assert r is not None and r.limit == "client_codes" and len(r.message) < 200
    assert r.message.startswith("client '" + "x" * 40 + "'...: 11 codes in one call exceed")
    assert t.admit(None, (), 11) is None             # exempt: no client code limits


def test_a_batch_whose_actors_share_a_set_keeps_each() -> None:
    """One set: every actor of a batch lands in it; each keeps its own bucket."""
    clock = _Clock()
    t = LimitTable.private(_limits(actor_scans_per_minute=5), actor_sets=1, client_sets=1, clock=clock)
    assert t.admit(None, ["a", "b", "c", "b"], 4) is None
    assert [t.tokens("actor_scans", k) for k in "abc"] == pytest.approx([4.0, 3.0, 4.0])
    assert t.admit(None, [f"x{i}" for i in range(8)], 8) is None      # more actors than slots: some evicted
    assert sum(t.tokens("actor_scans", k) < 5 for k in [*"abc", *(f"x{i}" for i in range(8))]) == 8


def test_eviction_keeps_the_deepest_debts() -> None:
    """One set of 8 slots. A flood of fresh keys reuses the nearly-full slots; a
    depleted bucket stays until every other slot of its set is deeper in debt."""
    clock = _Clock()
    t = LimitTable.private(_limits(actor_failures_per_hour=10), actor_sets=1, client_sets=1, clock=clock)
    t.charge_failures(None, ["guesser"] * 10, 10)
    assert t.admit(None, ["guesser"], 1) is not None
    for i in range(2000):                           # fresh actors, one failure each
        t.charge_failures(None, [f"fresh-{i}"], 1)
    assert t.admit(None, ["guesser"], 1) is not None            # still refused
    assert t.tokens("actor_failures", "guesser") == pytest.approx(0.0)
    # only 7 slots were left for 2000 keys: the early ones were evicted (read full)
    assert sum(t.tokens("actor_failures", f"fresh-{i}") == 10 for i in range(2000)) == 2000 - 7
    # a set whose slots are all in debt gives up the least indebted
    for k in range(7):
        t.charge_failures(None, [f"deep-{k}"] * (k + 2), k + 2)
    t.charge_failures(None, ["newcomer"] * 5, 5)     # evicts deep-0 (2 failures), not the guesser (10)
    assert t.tokens("actor_failures", "deep-0") == 10
    assert [t.tokens("actor_failures", f"deep-{k}") for k in range(1, 7)] == pytest.approx(
        [10.0 - (k + 2) for k in range(1, 7)])
    assert t.tokens("actor_failures", "newcomer") == pytest.approx(5.0)
    assert t.tokens("actor_failures", "guesser") == pytest.approx(0.0)
    # two periods later every bucket is full again, and its slot free for anyone
    clock.now += 2 * 3600
    assert t.admit(None, ["guesser"], 1) is None


def test_debt_stops_one_period_below_empty() -> None:
    clock = _Clock()
    t = LimitTable.private(_limits(client_failures_per_hour=100), actor_sets=1, client_sets=1, clock=clock)
    t.charge_failures("app", (), 10_000)
    assert t.tokens("client_failures", "app") == pytest.approx(-100.0)
    clock.now += 3600 + 36                        # one period and one token's time
    assert t.tokens("client_failures", "app") == pytest.approx(1.0)
    assert t.admit("app", (), 1) is None


def test_client_of_peer() -> None:
    assert client_of_peer("ipv4:10.1.2.3:50000") == "ipv4:10.1.2.3"
    assert client_of_peer("ipv6:[2001:db8:1:2:aa:bb:cc:dd]:443") == "ipv6:2001:db8:1:2::/64"
    assert client_of_peer("ipv6:[2001:db8:1:2::9]:444") == "ipv6:2001:db8:1:2::/64"   # same /64: same client
    assert client_of_peer("ipv6:[::ffff:10.1.2.3]:5") == "ipv4:10.1.2.3"               # dual-stack IPv4
    assert client_of_peer("ipv6:[::1]:5") == "ipv6:::1"
    assert client_of_peer("unix:/run/x.sock") == "unix:/run/x.sock"


def test_the_file_is_checked_and_private(tmp_path: Path) -> None:
    path = tmp_path / "limits"
    LimitTable.create(path, actor_sets=2, client_sets=2)
    assert path.stat().st_mode & 0o777 == 0o600
    with pytest.raises(FileExistsError):
        LimitTable.create(path)                    # never adopts a file that is there
    t = LimitTable.open(path, _limits(actor_scans_per_minute=1))
    assert t.admit(None, ["a"], 1) is None and t.admit(None, ["a"], 1) is not None
    t.close()
    other = tmp_path / "other"
    other.write_bytes(b"\0" * 8192)
    with pytest.raises(scangate.CorruptionError, match="limits table"):
        LimitTable.open(other, _limits())


# ====================================================================== the table, across processes
def _take_many(path: str, start: Any, attempts: int, out: Any) -> None:
    table = LimitTable.open(path, _limits(actor_scans_per_minute=3000))
    start.wait(60)
    out.put(sum(table.admit(None, ["same"], 1) is None for _ in range(attempts)))


def test_two_processes_share_one_bucket(tmp_path: Path) -> None:
    """Two processes take from one actor's bucket (3000 a minute: 50 a second
    refill) as fast as they can, 4000 attempts each: together they get the burst
    plus the refill over the time they ran, not twice the burst, and no update is
    lost (every token was taken)."""
    path = str(tmp_path / "limits")
    LimitTable.create(path, actor_sets=16, client_sets=16)
    ctx = multiprocessing.get_context("spawn")
    start, out = ctx.Event(), ctx.Queue()
    procs = [ctx.Process(target=_take_many, args=(path, start, 4000, out)) for _ in range(2)]
    for p in procs:
        p.start()
    time.sleep(1.0)                                # both mapped the table and wait
    t0 = time.monotonic()
    start.set()
    counts = [out.get(timeout=300) for _ in procs]
    elapsed = time.monotonic() - t0
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    assert 3000 <= sum(counts) <= 3000 + 50 * elapsed + 1, (counts, elapsed)
    table = LimitTable.open(path, _limits(actor_scans_per_minute=3000))
    assert table.tokens("actor_scans", "same") < 1.0 + 50 * (time.monotonic() - t0)


def _hold_lock(path: str, held: Any) -> None:
    table = LimitTable.open(path, _limits(actor_scans_per_minute=5))
    with table.locked():
        held.set()
        time.sleep(600)


def test_a_worker_killed_inside_the_lock_stalls_nobody(tmp_path: Path) -> None:
    path = str(tmp_path / "limits")
    LimitTable.create(path, actor_sets=2, client_sets=2)
    ctx = multiprocessing.get_context("spawn")
    held = ctx.Event()
    p = ctx.Process(target=_hold_lock, args=(path, held))
    p.start()
    assert held.wait(60)
    table = LimitTable.open(path, _limits(actor_scans_per_minute=5))
    done: list[Any] = []
    waiter = threading.Thread(target=lambda: done.append(table.admit(None, ["a"], 1)), daemon=True)
    waiter.start()
    waiter.join(1.0)
    assert not done                                 # the lock is really held
    assert p.pid is not None
    os.kill(p.pid, signal.SIGKILL)
    p.join(30)
    waiter.join(30)
    assert done == [None]                           # the kernel dropped the dead holder's lock


# ====================================================================== a real server, two workers
def _tcp_established(port: int) -> set[int]:
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table, encoding="ascii") as f:
                rows = f.read().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            cols = row.split()
            if int(cols[1].rsplit(":", 1)[1], 16) == port and cols[3] == "01":
                inodes.add(int(cols[9]))
    return inodes


def _connections_per_worker(server_pid: int, port: int) -> list[int]:
    """Established connections on ``port`` held by each child of the server that
    holds any (its workers)."""
    established = _tcp_established(port)
    counts = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="ascii", errors="replace") as f:
                if int(f.read().rsplit(")", 1)[1].split()[1]) != server_pid:
                    continue
            held = {int(os.readlink(f"/proc/{entry}/fd/{fd}")[8:-1]) for fd in os.listdir(f"/proc/{entry}/fd")
                    if os.readlink(f"/proc/{entry}/fd/{fd}").startswith("socket:[")}
        except (OSError, ValueError):
            continue
        if held & established:
            counts.append(len(held & established))
    return sorted(counts)


@contextmanager
def _spread(target: str, server_pid: int, n: int = 8) -> Iterator[list[grpc.Channel]]:
    """``n`` channels, one TCP connection each, at least one on each of the two
    workers (SO_REUSEPORT hashes each connection: reconnect until both have some)."""
    port = int(target.rsplit(":", 1)[1])
    for _ in range(30):
        channels = [grpc.insecure_channel(target, options=[("grpc.use_local_subchannel_pool", 1)])
                    for _ in range(n)]
        for ch in channels:
            grpc.channel_ready_future(ch).result(timeout=60)
        split: list[int] = []
        for _ in range(50):                      # the server side accepts a moment later
            split = _connections_per_worker(server_pid, port)
            if sum(split) >= n:
                break
            time.sleep(0.05)
        if len(split) == 2 and min(split) > 0:
            try:
                yield channels
            finally:
                for ch in channels:
                    ch.close()
            return
        for ch in channels:
            ch.close()
    raise AssertionError(f"30 tries and every connection on one worker: {split}")


def _calls(channels: list[grpc.Channel], method: str, reply: Any) -> list[Any]:
    return [ch.unary_unary(method, request_serializer=lambda m: m.SerializeToString(),
                           response_deserializer=reply.FromString) for ch in channels]


def _outcomes(calls: list[Any], requests: list[Any], token: str | None = None,
              concurrent: bool = True) -> tuple[list[Any], list[str], float]:
    """Send ``requests`` round-robin over ``calls`` (all at once, or one after the
    other); their replies, the refusals' messages, and the seconds around it all.
    Anything but OK or RESOURCE_EXHAUSTED fails the test."""
    md = (("authorization", f"Bearer {token}"),) if token else None
    replies, refused = [], []
    t0 = time.monotonic()
    if concurrent:
        futures = [calls[i % len(calls)].future(r, timeout=120, metadata=md) for i, r in enumerate(requests)]
        results: list[Any] = []
        for f in futures:
            try:
                results.append(f.result())
            except grpc.RpcError as exc:
                results.append(exc)
    else:
        results = []
        for i, r in enumerate(requests):
            try:
                results.append(calls[i % len(calls)](r, timeout=120, metadata=md))
            except grpc.RpcError as exc:
                results.append(exc)
    elapsed = time.monotonic() - t0
    for res in results:
        if isinstance(res, grpc.RpcError):
            assert res.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, (res.code(), res.details())
            refused.append(res.details())
        else:
            replies.append(res)
    return replies, refused, elapsed


def _scan(code: str, actor: str) -> scan_pb2.ScanRequest:
    return scan_pb2.ScanRequest(request_id=uuid.uuid4().hex, code=code, actor=actor, region=510104)


def _issue(data: Path, n: int) -> list[str]:
    with scangate.init_data_dir(data) as dd:
        return dd.issue_codes("BEER", "item", n).as_strings()


def test_an_actor_spread_over_two_workers_gets_one_rate(tmp_path: Path) -> None:
    """20 scans a minute for one actor, 5 failures an hour: 60 scans of genuine
    codes at once over connections on both workers get 20 (plus one per 3 s of the
    run) decided, never 40; then 12 guesses one after the other: 5 decided."""
    data = tmp_path / "d"
    codes = _issue(data, 60)
    env = {"SCANGATE_LIMITS_ACTOR_SCANS_PER_MINUTE": "20", "SCANGATE_LIMITS_ACTOR_FAILURES_PER_HOUR": "5"}
    with running(data, "--workers", "2", env=env) as srv, _spread(srv.target, srv.proc.pid) as channels:
        scan = _calls(channels, "/scangate.v1.ScanService/Scan", scan_pb2.ScanDecision)
        replies, refused, elapsed = _outcomes(scan, [_scan(c, "spreader") for c in codes])
        assert 20 <= len(replies) <= 20 + elapsed / 3, (len(replies), elapsed)
        assert len(replies) + len(refused) == 60
        assert all(d.verdict.code_status == common_pb2.CODE_STATUS_GENUINE for d in replies)
        assert all(m == "actor 'spreader': scan rate limit (20 per minute); try later" for m in refused)
        guesses = random_code_texts(12, seed=11)
        replies, refused, elapsed = _outcomes(scan, [_scan(g, "guesser") for g in guesses], concurrent=False)
        assert 5 <= len(replies) <= 5 + elapsed / 720, (len(replies), elapsed)
        assert all(d.verdict.code_status != common_pb2.CODE_STATUS_GENUINE for d in replies)
        assert refused and all("actor 'guesser': too many scans of codes that are not genuine" in m
                               for m in refused)


def test_a_fresh_actor_per_scan_is_stopped_by_the_client_limit(tmp_path: Path) -> None:
    """A client (token) guessing with a fresh actor id for every scan: 20 codes
    that are not genuine an hour for the client, across both workers, then its
    VerifyCodes and Trace and even its genuine scans are refused until the bucket
    refills; another client and an exempt line token are untouched."""
    data = tmp_path / "d"
    codes = _issue(data, 5)
    tokens = {name: add_token(data / "tokens.toml", name, role)
              for name, role in (("guessing-app", "scanner"), ("other-app", "scanner"), ("line-1", "line"))}
    env = {"SCANGATE_LIMITS_CLIENT_FAILURES_PER_HOUR": "20"}
    with running(data, "--workers", "2", env=env) as srv, _spread(srv.target, srv.proc.pid) as channels:
        scan = _calls(channels, "/scangate.v1.ScanService/Scan", scan_pb2.ScanDecision)
        verify = _calls(channels, "/scangate.v1.CodeService/VerifyCodes", codes_pb2.VerifyCodesReply)
        trace = _calls(channels, "/scangate.v1.TraceService/Trace", trace_pb2.TraceReply)
        guesses = random_code_texts(40, seed=12)
        replies, refused, elapsed = _outcomes(scan, [_scan(g, f"fresh-{i}") for i, g in enumerate(guesses)],
                                              tokens["guessing-app"], concurrent=False)
        assert 20 <= len(replies) <= 20 + elapsed / 180, (len(replies), elapsed)
        assert all(d.verdict.code_status == common_pb2.CODE_STATUS_COUNTERFEIT for d in replies)
        assert refused and all(m == "client 'guessing-app': too many codes that are not genuine (20 per hour); "
                                    "try later" for m in refused)
        # the same client, any call, even a genuine code from a new actor
        for calls, request in ((scan, _scan(codes[0], "new-user")),
                               (verify, codes_pb2.VerifyCodesRequest(codes=codes[:1])),
                               (trace, trace_pb2.TraceRequest(codes=codes[:1]))):
            replies, refused, _ = _outcomes(calls[:1], [request], tokens["guessing-app"])
            assert not replies and len(refused) == 1 and "not genuine" in refused[0]
        replies, refused, _ = _outcomes(scan[:1], [_scan(codes[0], "new-user")], tokens["other-app"])
        assert not refused and replies[0].verdict.code_status == common_pb2.CODE_STATUS_GENUINE
        # a line token is exempt from the code limits: 100 guesses verified, then more
        for _ in range(2):
            replies, refused, _ = _outcomes(verify[:1], [codes_pb2.VerifyCodesRequest(codes=guesses + guesses
                                                                                       + guesses[:20])],
                                            tokens["line-1"])
            assert not refused and len(replies[0].results) == 100


def test_verify_and_trace_are_limited_by_codes(tmp_path: Path) -> None:
    """100 codes a second for a client across Scan, VerifyCodes and Trace (burst
    100), two workers: calls of 50 get at most the burst plus the refill; a call
    of more than 100 is refused outright; failures there count as guesses."""
    data = tmp_path / "d"
    codes = _issue(data, 120)
    token = add_token(data / "tokens.toml", "app", "scanner")
    env = {"SCANGATE_LIMITS_CLIENT_CODES_PER_SECOND": "100", "SCANGATE_LIMITS_CLIENT_FAILURES_PER_HOUR": "60"}
    with running(data, "--workers", "2", env=env) as srv, _spread(srv.target, srv.proc.pid) as channels:
        verify = _calls(channels, "/scangate.v1.CodeService/VerifyCodes", codes_pb2.VerifyCodesReply)
        trace = _calls(channels, "/scangate.v1.TraceService/Trace", trace_pb2.TraceReply)
        _, refused, _ = _outcomes(verify[:1], [codes_pb2.VerifyCodesRequest(codes=codes[:101])], token)
        assert refused == ["client 'app': 101 codes in one call exceed the code-check limit of 100 per second; "
                           "send fewer per call"]
        for calls in (verify, trace):
            req = (codes_pb2.VerifyCodesRequest if calls is verify else trace_pb2.TraceRequest)(codes=codes[:50])
            replies, refused, elapsed = _outcomes(calls, [req] * 24, token)
            assert 2 <= len(replies) and 50 * len(replies) <= 100 + 100 * elapsed, (len(replies), elapsed)
            assert len(replies) + len(refused) == 24
            assert all(len(r.results) == 50 for r in replies)
            assert all(m == "client 'app': code-check rate limit (100 codes per second across Scan, VerifyCodes "
                            "and Trace); try later" for m in refused)
            time.sleep(1.1)                      # full again
        # 50 guesses verified: 50 of the 60 failures an hour; 30 more are refused
        # until 30 tokens are back (an hour's 60th part each: never within this test)
        replies, _, _ = _outcomes(verify[:1], [codes_pb2.VerifyCodesRequest(codes=random_code_texts(50, seed=13))],
                                  token)
        assert len(replies) == 1 and all(r.status != common_pb2.CODE_STATUS_GENUINE for r in replies[0].results)
        time.sleep(1.1)
        _, refused, _ = _outcomes(trace[:1], [trace_pb2.TraceRequest(codes=random_code_texts(30, seed=14))], token)
        assert refused == ["client 'app': too many codes that are not genuine (60 per hour); try later"]
        replies, _, _ = _outcomes(trace[:1], [trace_pb2.TraceRequest(codes=codes[:10])], token)
        assert len(replies) == 1 and all(r.status == common_pb2.CODE_STATUS_GENUINE for r in replies[0].results)
