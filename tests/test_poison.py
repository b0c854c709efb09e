"""One poison scan must not fail its neighbours (issue 12, item 3).

A scan whose fields cannot be decided (``time_ms = 2**62`` made ``datetime``
raise inside the group commit) used to fail every scan committed with it. Now
every field is range-checked before a scan reaches a group commit (the worker's
``check_scan``, ``decide_scans``'s own validation), and should deciding a batch
still raise, the writer decides it again without the failing item."""
from __future__ import annotations

import math
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import lmdb     # only its MapFullError: the error LMDB raises when its map is full, simulated below
import pytest

import scangate
from scangate import rewards
from scangate.rewards import ScanRequest, decide_scans
from scangate.server.writer import GroupCommitWriter
from scangate.v1 import scan_pb2, scan_pb2_grpc

from serverproc import running, violations

NOON = 1_773_115_200_000          # 2026-03-10 12:00 Beijing time
CHENGDU = 510104

# (what the scan carries, the field its refusal must name); each can reach the
# server through a raw stub. The first ones reached the group commit and raised
# there (datetime out of range, an LMDB key too long).
POISONS: list[tuple[dict[str, Any], str]] = [
    ({"time_ms": 2**62}, "time_ms"),
    ({"time_ms": 2**53}, "time_ms"),
    ({"time_ms": 2**63 - 1}, "time_ms"),
    ({"request_id": "\U0001F600" * 128}, "request_id"),     # 512 bytes of UTF-8: over LMDB's key size
    ({"actor": "\U0001F600" * 127}, "actor"),                # 508 bytes: its counters' keys would not fit
    ({"time_ms": -1}, "time_ms"),
    ({"lat": math.nan, "lon": 104.0}, "lat"),
    ({"lat": 30.6, "lon": math.inf}, "lon"),
    ({"lat": 1e308, "lon": 104.0}, "lat"),
    ({"region": 2**32 - 1}, "region"),
    ({"actor": "poison\x00actor"}, "actor"),
    ({"actor_tags": ["x" * 10_000]}, "actor_tags[0]"),
]




def _poison_message(code: str, n: int, kw: dict[str, Any]) -> scan_pb2.ScanRequest:
    m = scan_pb2.ScanRequest(request_id=f"poison-{n}", code=code, actor=f"mallory-{n}", region=CHENGDU,
                             time_ms=NOON)
    for key, value in kw.items():
        if key == "actor_tags":
            m.actor_tags.extend(value)
        elif key == "lat" or key == "lon":
            m.ClearField("region")
            setattr(m, key, value)
        else:
            setattr(m, key, value)
    return m


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    data = tmp_path_factory.mktemp("poison") / "data"
    env = {"SCANGATE_LIMITS_ACTOR_SCANS_PER_MINUTE": "0", "SCANGATE_LIMITS_ACTOR_FAILURES_PER_HOUR": "0"}
    with running(data, "--workers", "1", env=env) as srv:
        yield srv


def test_poison_scans_from_three_clients_fail_alone(server: Any) -> None:
    """The issue's reproduction over the real server: three honest clients (the
    client library, unary scans) and three poison clients (raw stubs: the library
    would refuse some values itself) at the same time, on one worker, so that
    poison and honest scans share group commits. Every honest scan is decided
    and recorded once; every poison scan gets INVALID_ARGUMENT naming its field."""
    with scangate.Client(server.target) as admin:
        codes = [c for b in admin.issue_codes("BEER-500", "item", 200) for c in b.codes]
    honest_codes, poison_codes = codes[:150], codes[150:]
    honest: list[ScanRequest] = [ScanRequest(f"honest-{i}", c, f"user-{i % 7}", region=CHENGDU)
                                 for i, c in enumerate(honest_codes)]
    decided: dict[str, Any] = {}
    failed: list[str] = []
    poison_results: list[tuple[str, grpc.StatusCode | None, list[str]]] = []
    honest_done = threading.Event()
    lock = threading.Lock()
    start = threading.Barrier(6)

    def honest_client(part: list[ScanRequest]) -> None:
        with scangate.Client(server.target) as c:
            start.wait(30)
            for r in part:
                try:
                    d = c.scan(r.code, r.actor, request_id=r.request_id, region=r.region, time_ms=r.time_ms)
                except Exception as exc:    # noqa: BLE001 - every failure is counted, whatever it is
                    with lock:
                        failed.append(f"{r.request_id}: {type(exc).__name__}: {str(exc)[:80]}")
                else:
                    with lock:
                        decided[r.request_id] = d

    def poison_client(k: int) -> None:
        with grpc.insecure_channel(server.target) as ch:
            stub = scan_pb2_grpc.ScanServiceStub(ch)
            start.wait(30)
            n = 0
            # keep poisoning as long as honest scans are in flight, every kind, at least once
            while n < len(POISONS) or (not honest_done.is_set() and n < 3000):
                kw, field = POISONS[(n + k) % len(POISONS)]
                m = _poison_message(poison_codes[(n * 3 + k) % len(poison_codes)], n * 3 + k, kw)
                try:
                    stub.Scan(m, timeout=30)
                except grpc.RpcError as err:
                    with lock:
                        poison_results.append((field, err.code(), violations(err)))
                else:
                    with lock:
                        poison_results.append((field, None, []))
                n += 1

    threads = [threading.Thread(target=honest_client, args=(honest[i::3],)) for i in range(3)]
    poisoners = [threading.Thread(target=poison_client, args=(k,)) for k in range(3)]
    for t in threads + poisoners:
        t.start()
    for t in threads:
        t.join(180)
    honest_done.set()
    for t in poisoners:
        t.join(180)

    assert failed == [], f"{len(failed)} of 150 honest scans failed, first: {failed[:3]}"
    assert sorted(decided) == sorted(r.request_id for r in honest)
    assert all(d.verdict.label == "genuine" and d.verdict.scan_count == 1 for d in decided.values())
    assert len(poison_results) >= len(POISONS)
    wrong = [(field, code, got) for field, code, got in poison_results
             if code != grpc.StatusCode.INVALID_ARGUMENT or got != [field]]
    assert wrong == [], f"{len(wrong)} poison scans not refused by field, first: {wrong[:3]}"
    assert {field for field, _, _ in poison_results} == {field for _, field in POISONS}

    # every honest decision was recorded once: a retry (same ids) returns it as
    # stored, and a new scan of each code is its second
    with scangate.Client(server.target) as c:
        again = list(c.scan_stream(honest))
        fresh = list(c.scan_stream([ScanRequest(f"again-{r.request_id}", r.code, r.actor, region=CHENGDU)
                                for r in honest]))
    assert again == [decided[r.request_id] for r in honest]
    assert [d.verdict.scan_count for d in fresh] == [2] * len(honest)
    # no poison was ever decided: none of their codes has a scan
    with scangate.Client(server.target) as c:
        checks = list(c.scan_stream([ScanRequest(f"check-{i}", code, "auditor", region=CHENGDU)
                                     for i, code in enumerate(poison_codes)]))
    assert [d.verdict.scan_count for d in checks] == [1] * len(poison_codes)
    assert "internal error" not in server.logs()


def test_a_poison_scan_in_a_stream_names_its_index(server: Any) -> None:
    """A ScanStream batch with one poison scan is refused whole, naming
    ``scans[i].field``; nothing of it reaches the writer."""
    with scangate.Client(server.target) as admin:
        codes = [c for b in admin.issue_codes("BEER-500", "item", 3) for c in b.codes]
    batch = scan_pb2.ScanBatch(scans=[
        _poison_message(codes[0], 900, {}),
        _poison_message(codes[1], 901, {"time_ms": 2**62}),
        _poison_message(codes[2], 902, {"lat": math.nan, "lon": 104.0})])
    with grpc.insecure_channel(server.target) as ch:
        with pytest.raises(grpc.RpcError) as raw:
            list(scan_pb2_grpc.ScanServiceStub(ch).ScanStream(iter([batch]), timeout=30))
    assert raw.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert violations(raw.value) == ["scans[1].time_ms", "scans[2].lat"]
    with scangate.Client(server.target) as c:
        d = c.scan(codes[0], "auditor", region=CHENGDU)
    assert d.verdict.scan_count == 1       # the batch's honest scan was not decided either


# ---------------------------------------------------------------------- in process
@pytest.fixture
def dd(tmp_path: Path) -> Iterator[Any]:
    d = scangate.init_data_dir(tmp_path / "d")
    yield d
    d.close()


def _library_poisons() -> list[tuple[dict[str, Any], str]]:
    """What a library caller can pass that the wire cannot carry, besides POISONS."""
    wire = [(kw, field) for kw, field in POISONS if field != "actor_tags[0]"]
    return wire + [
        ({"actor_tags": ("x" * 10_000,)}, "actor_tags[0]"),
        ({"time_ms": 0}, "time_ms"),
        ({"time_ms": 1.5}, "time_ms"),
        ({"region": -5}, "region"),
        ({"lat": 30.6}, "lat"),                         # without lon
        ({"actor": "a\ud800"}, "actor"),                # a lone surrogate: no UTF-8
        ({"code": "\ud800"}, "code"),
        ({"actor_tags": tuple(f"t{i}" for i in range(33))}, "actor_tags"),
    ]


@pytest.mark.parametrize("kw,field", _library_poisons(), ids=lambda v: str(v)[:24] if isinstance(v, dict) else v)
def test_decide_scans_refuses_each_field_by_name(dd: Any, kw: dict[str, Any], field: str) -> None:
    """A library caller's poison scan is refused before its transaction, naming
    ``requests[i].field``, and nothing of the batch is written."""
    codes = dd.issue_codes("BEER", "item", 2).as_strings()
    good = ScanRequest("good", codes[0], "alice", region=CHENGDU, time_ms=NOON)
    poison = ScanRequest(**{"request_id": "poison", "code": codes[1], "actor": "bob", "region": CHENGDU,
                            "time_ms": NOON, **kw})
    with pytest.raises(scangate.InvalidArgument) as exc:
        decide_scans(dd, [good, poison])
    assert str(exc.value).startswith(f"requests[1].{field}: ")
    assert len(str(exc.value)) < 200          # a short prefix of the value, never all of it
    (d,) = decide_scans(dd, [ScanRequest("good-2", codes[0], "alice", region=CHENGDU, time_ms=NOON)])
    assert d.verdict.scan_count == 1       # nothing of the refused batch was written


def test_the_longest_actor_allowed_fits_every_key_it_is_part_of() -> None:
    """MAX_ACTOR_BYTES: an actor one byte longer is refused (library and server
    alike), and at the limit every key built from it, with the longest campaign
    id, fits an LMDB key. An actor of 127 emoji (508 bytes) once passed both
    checks and failed the group commit with its counters' key."""
    from scangate.server.scan_service import check_scan
    from scangate.state import layout

    at_limit = "\U0001F600" * (rewards.MAX_ACTOR_BYTES // 4) + "x" * (rewards.MAX_ACTOR_BYTES % 4)
    assert len(at_limit.encode()) == rewards.MAX_ACTOR_BYTES
    campaign = "c" * 64
    actor = at_limit.encode()
    total = layout.total_key(campaign, at_limit)
    keys = [total, layout.day_key(total, "2026-12-07"), *layout.award_keys(actor, "2026-12")[:2],
            layout.history_prefix(actor) + (2**64 - 1).to_bytes(8, "big")]
    assert max(map(len, keys)) == layout.MAX_KEY          # the longest is exactly LMDB's limit
    for actor_text, refused in ((at_limit, False), (at_limit + "x", True), ("\U0001F600" * 109, True)):
        request = ScanRequest("r", "01ABC", actor_text)
        assert (rewards.scan_problem(request) == ("actor", f"at most {rewards.MAX_ACTOR_BYTES} bytes of UTF-8")) \
            is refused, actor_text
        m = scan_pb2.ScanRequest(request_id="r", code="01ABC", actor=actor_text)
        assert (("actor", f"at most {rewards.MAX_ACTOR_BYTES} bytes of UTF-8") in check_scan(m, "")) is refused


def _gated_writer(dd: Any) -> tuple[GroupCommitWriter, threading.Event, list[int]]:
    """A writer whose first commit waits for ``gate``: everything submitted
    meanwhile queues up into the next group commit."""
    gate = threading.Event()
    sizes: list[int] = []

    def on_commit(n: int, seconds: float) -> None:
        sizes.append(n)
        gate.wait(10)

    return GroupCommitWriter(dd, on_commit=on_commit), gate, sizes


def test_writer_decides_the_rest_of_a_batch_when_one_scan_raises(dd: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Deciding raises for one scan of a batch of items, after the batch's writes
    went into its transaction: that item alone gets the error, every other item is
    decided and committed, and nothing of the failed try was committed."""
    codes = dd.issue_codes("BEER", "item", 10).as_strings()
    marked = codes[5]
    real = rewards.decide_batch
    tries: list[int] = []

    def decide_in(batch: Any, requests: Any, *args: Any) -> Any:
        out, mutations = real(batch, requests, *args)
        tries.append(len(requests))
        if any(r.code == marked for r in requests):
            batch.apply(mutations)              # the batch's writes are in the transaction now
            raise ValueError("year 146140482 is out of range")
        return out, mutations

    monkeypatch.setattr(rewards, "decide_batch", decide_in)
    w, gate, sizes = _gated_writer(dd)
    first = w.submit([ScanRequest("first", codes[0], "u0", region=CHENGDU, time_ms=NOON)])
    while not sizes:                            # the writer holds the first commit open
        time.sleep(0.01)
    futures = {c: w.submit([ScanRequest(f"r{i}", c, f"u{i}", region=CHENGDU, time_ms=NOON + i)])
               for i, c in enumerate(codes[1:], 1)}
    gate.set()
    assert first.result(10)[0].verdict.scan_count == 1
    with pytest.raises(ValueError, match="out of range"):
        futures[marked].result(10)
    others = {c: f.result(10)[0] for c, f in futures.items() if c != marked}
    w.close()
    assert all(d.verdict.label == "genuine" and d.verdict.scan_count == 1 for d in others.values())
    assert tries[1] == 9                        # the batch was tried whole first (the common path)
    assert sum(sizes) == 1 + 8                  # every other scan committed, once
    monkeypatch.setattr(rewards, "decide_batch", real)
    # nothing of a failed try was committed: the marked code was never scanned, and
    # the other scans' request records hold their one decision
    (d,) = decide_scans(dd, [ScanRequest("later", marked, "v", region=CHENGDU, time_ms=NOON)])
    assert d.verdict.scan_count == 1
    again = decide_scans(dd, [ScanRequest(f"r{i}", c, f"u{i}", region=CHENGDU, time_ms=NOON + i)
                              for i, c in enumerate(codes[1:], 1) if c != marked])
    assert again == [d for c, d in others.items()]


def test_writer_does_not_split_a_batch_on_a_store_error(dd: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """A full map or a failing disk is no scan's fault: every waiter of the batch
    hears it at once, without one failing transaction per part of the batch."""
    codes = dd.issue_codes("BEER", "item", 6).as_strings()
    real = rewards.decide_batch
    tries: list[int] = []
    broken = threading.Event()

    def decide_in(batch: Any, requests: Any, *args: Any) -> Any:
        tries.append(len(requests))
        if broken.is_set():
            raise lmdb.MapFullError("mdb_put: MDB_MAP_FULL")
        return real(batch, requests, *args)

    monkeypatch.setattr(rewards, "decide_batch", decide_in)
    w, gate, sizes = _gated_writer(dd)
    first = w.submit([ScanRequest("first", codes[0], "u0")])
    while not sizes:
        time.sleep(0.01)
    broken.set()
    futures = [w.submit([ScanRequest(f"r{i}", c, "u")]) for i, c in enumerate(codes[1:])]
    gate.set()
    first.result(10)
    for f in futures:
        with pytest.raises(lmdb.MapFullError):
            f.result(10)
    w.close()
    assert tries == [1, 5]


def test_a_region_no_district_has_is_invalid_input_not_diversion(tmp_path: Path) -> None:
    # issue 12: 999999 was judged `diverted`; a city code is no place a scan happens either
    with running(tmp_path / "data") as srv, scangate.Client(srv.target) as c:
        code = next(c.issue_codes("BEER-500", "item", 1)).codes[0]
        for region in (999999, 440100):
            with pytest.raises(scangate.InvalidArgument) as exc:
                c.scan(code, "alice", region=region)
            assert [f for f, _ in exc.value.violations] == ["region"]  # type: ignore[attr-defined]
        first = c.scan(code, "alice", region=440106).verdict
        assert first.label == "genuine" and not first.first_scan   # the refused scans left no trace
