"""Request ids are bound to their request (the idempotency-key contract, issue 12
item 1): the same id with the same request returns the stored decision; the same
id with another request (code, actor, actor type, region, coordinates) is refused
with ``RequestIdReused``, naming ``request_id``, and writes nothing: no scan, no
claim, no counter, no budget. Within one batch too, where the refusal is that
request's result and the rest of the batch is decided as usual. Ids are scoped to
``ScanRequest.client`` (the server's token name). Records stored before
fingerprints (8-byte pointers, inline decisions) still answer retries.

Through ``decide_scans``, the group-commit writer, the writer link's frames, and
a real server with ``scangate.Client``."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import grpc
import pytest

import scangate
from scangate import rewards
from scangate.decide.requests import FINGERPRINT_VERSION, fingerprint, fingerprint_v1, fingerprints
from scangate.rewards import Decision, RequestIdReused, ScanRequest
from scangate.state import layout, reads
from scangate.state import raw as state_raw

from fixtures_campaigns import CASH_1, CHENGDU, campaign
from serverproc import running

CAMPAIGN = campaign(name="request ids", end="2030-01-01", prizes=CASH_1 + "budget_count = 1000\n")
NOON = 1_773_115_200_000          # 2026-03-10 12:00 Beijing time
# everything a scan or a decision writes
WRITTEN = ("scans", "budgets", "counters", "claims", "ledger", "outbox", "points", "requests", "decisions")


@pytest.fixture
def dd(on_both_stores: scangate.DataDir) -> scangate.DataDir:
    """conftest's data directory, with CAMPAIGN in it, on both stores (the
    contract holds on LMDB and on PostgreSQL alike)."""
    rewards.put_campaign(on_both_stores, CAMPAIGN, "c1.toml")
    return on_both_stores


def req(rid: str, code: str, actor: str, **kw: Any) -> ScanRequest:
    kw.setdefault("region", CHENGDU)
    kw.setdefault("time_ms", NOON)
    return ScanRequest(rid, code, actor, **kw)


def snapshot(dd: scangate.DataDir) -> dict[str, list[tuple[bytes, bytes]]]:
    return state_raw.dump(dd, WRITTEN)


def entries(dd: scangate.DataDir, name: str) -> int:
    return state_raw.count(dd, name)


def claimed(dd: scangate.DataDir) -> set[int]:
    return {c["ledger_seq"] for c in reads.claims(dd).values()}


def is_refusal(result: object, rid: str) -> bool:
    if not isinstance(result, RequestIdReused):
        return False
    assert result.request_id == rid and result.field == "request_id"
    assert str(result).startswith("request_id: ") and "another request" in str(result)
    return True


def won(d: object) -> bool:
    return isinstance(d, Decision) and d.award is not None and d.award.kind == "cash"


# ------------------------------------------------------------------ decide_scans
def test_alice_then_dave_with_her_request_id_is_refused_and_writes_nothing(dd: scangate.DataDir) -> None:
    a, b = dd.issue_codes("BEER", "item", 2).as_strings()
    [alice] = rewards.decide_scans(dd, [req("req-1", a, "alice")])
    assert won(alice)
    before = snapshot(dd)
    [dave] = rewards.decide_scans(dd, [req("req-1", b, "dave")])
    assert is_refusal(dave, "req-1"), dave          # not alice's win
    assert snapshot(dd) == before                   # no scan, claim, counter, budget, record
    # each field that defines the request counts on its own
    for other in (req("req-1", b, "alice"), req("req-1", a, "dave"), req("req-1", a, "alice", region=440106),
                  req("req-1", a, "alice", actor_type="store"), req("req-1", a, "alice", lat=30.6, lon=104.1)):
        assert is_refusal(rewards.decide_scans(dd, [other])[0], "req-1"), other
    assert snapshot(dd) == before
    # alice's retry still gets her decision, byte for byte, also re-stamped or
    # with other actor tags (neither makes it another scan)
    for retry in (req("req-1", a, "alice"), req("req-1", a, "alice", time_ms=NOON + 60_000),
                  req("req-1", a, "alice", actor_tags=("vip",))):
        [again] = rewards.decide_scans(dd, [retry])
        assert isinstance(again, Decision)
        assert json.dumps(again.to_json()) == json.dumps(alice.to_json())
    assert snapshot(dd) == before
    # dave's code was never touched: his own request id wins it
    assert won(rewards.decide_scans(dd, [req("req-2", b, "dave")])[0])


def test_reuse_inside_one_batch_refuses_only_that_request(dd: scangate.DataDir) -> None:
    a, b, c, d = dd.issue_codes("BEER", "item", 4).as_strings()
    out = rewards.decide_scans(dd, [req("req-1", a, "alice"), req("req-2", c, "bob"), req("req-1", b, "dave"),
                                    req("req-1", a, "alice")])
    assert won(out[0]) and won(out[1])
    assert is_refusal(out[2], "req-1"), out[2]
    assert out[3] is out[0]                          # the same request twice: one decision
    assert entries(dd, "ledger") == 2 and entries(dd, "requests") == 2 and entries(dd, "scans") == 2
    # next to a stored id reused: the batch's other requests are decided as usual
    out = rewards.decide_scans(dd, [req("req-3", d, "carol"), req("req-2", b, "dave"), req("req-1", a, "alice")])
    assert won(out[0]) and is_refusal(out[1], "req-2")
    assert isinstance(out[2], Decision) and out[2].to_json() == rewards.decide_scans(
        dd, [req("req-1", a, "alice")])[0].to_json()  # type: ignore[union-attr]
    assert entries(dd, "ledger") == 3 and entries(dd, "scans") == 3
    assert won(rewards.decide_scans(dd, [req("req-4", b, "dave")])[0])     # b untouched until now


def test_clients_have_their_own_request_ids(dd: scangate.DataDir) -> None:
    a, b, c = dd.issue_codes("BEER", "item", 3).as_strings()
    one = rewards.decide_scans(dd, [req("req-1", a, "alice", client="app-one"),
                                    req("req-1", b, "dave", client="app-two")])
    assert won(one[0]) and won(one[1])
    # no client is a scope of its own; within a scope the id is bound as ever
    [plain] = rewards.decide_scans(dd, [req("req-1", c, "erin")])
    assert won(plain)
    assert is_refusal(rewards.decide_scans(dd, [req("req-1", c, "erin", client="app-one")])[0], "req-1")
    again = rewards.decide_scans(dd, [req("req-1", b, "dave", client="app-two"),
                                      req("req-1", a, "alice", client="app-one"), req("req-1", c, "erin")])
    assert [d.to_json() for d in again] == [d.to_json() for d in (one[1], one[0], plain)]  # type: ignore[union-attr]
    assert entries(dd, "requests") == 3 and entries(dd, "ledger") == 3
    # an id of 128 four-byte characters still makes a key LMDB takes, under a client too
    [d] = dd.issue_codes("BEER", "item", 1).as_strings()
    long_id = "\U0001F600" * 128
    [first] = rewards.decide_scans(dd, [req(long_id, d, "gina", client="app-one")])
    assert won(first) and first.request_id == long_id  # type: ignore[union-attr]
    [again] = rewards.decide_scans(dd, [req(long_id, d, "gina", client="app-one")])
    assert again.to_json() == first.to_json()  # type: ignore[union-attr]
    assert is_refusal(rewards.decide_scans(dd, [req(long_id, a, "gina", client="app-one")])[0], long_id)


def test_records_stored_before_fingerprints_still_answer(dd: scangate.DataDir) -> None:
    """A request record of 8 bytes (a decision number, written before fingerprints)
    matches any request: it cannot be told from a retry. Decisions once stored
    inline in the index are moved into the log by the schema 2 upgrade
    (tests/test_datadir_fixture.py)."""
    a, c, d = dd.issue_codes("BEER", "item", 3).as_strings()
    old, new = rewards.decide_scans(dd, [req("old", a, "alice"), req("new", c, "carol")])
    key = layout.request_key("", "old")
    record = state_raw.get(dd, "requests", key)
    assert record is not None
    state_raw.put(dd, "requests", key, record[:8])
    before = snapshot(dd)
    out = rewards.decide_scans(dd, [req("old", d, "dave"), req("new", d, "dave"), req("old", a, "alice")])
    assert out[0].to_json() == old.to_json()          # type: ignore[union-attr]
    assert is_refusal(out[1], "new")                  # a record with a fingerprint checks it
    assert out[2].to_json() == old.to_json()          # type: ignore[union-attr]
    assert snapshot(dd) == before


def test_version_1_fingerprints_still_tell_a_retry_from_a_reused_id(dd: scangate.DataDir) -> None:
    """Schema 2 stored 16 bytes of BLAKE2b (version 1, no version byte; a 24-byte
    record): a retry that repeats the request still gets its decision, anything
    else under that id is still refused. New records carry the version byte."""
    a, b, c = dd.issue_codes("BEER", "item", 3).as_strings()
    first = req("old", a, "alice", lat=30.66, lon=104.06)
    old, new = rewards.decide_scans(dd, [first, req("new", c, "carol")])
    key = layout.request_key("", "old")
    record = state_raw.get(dd, "requests", key)
    assert record is not None and len(record) == 25 and record[8:9] == FINGERPRINT_VERSION
    assert record[8:] == fingerprint(first)
    v1 = fingerprint_v1(first)
    assert len(v1) == 16 and v1 != record[9:]
    state_raw.put(dd, "requests", key, record[:8] + v1)      # as schema 2 left it
    before = snapshot(dd)
    out = rewards.decide_scans(dd, [first, req("old", a, "alice", lat=30.66, lon=104.07), req("old", b, "alice"),
                                    req("old", a, "alan", lat=30.66, lon=104.06), req("new", c, "carol")])
    assert out[0].to_json() == old.to_json()          # type: ignore[union-attr]
    assert all(is_refusal(o, "old") for o in out[1:4]), out
    assert out[4].to_json() == new.to_json()          # type: ignore[union-attr]
    assert snapshot(dd) == before


def test_a_fingerprint_covers_every_field_of_the_scan_and_only_those() -> None:
    """Each field a retry must repeat changes the fingerprint (both versions);
    the request id, client, time and tags do not; the batch form is the single one."""
    base = ScanRequest("r", "CODE-1", "alice", region=CHENGDU, time_ms=NOON)
    changes: list[dict[str, Any]] = [{"code": "CODE-2"}, {"actor": "alicf"}, {"actor_type": "store"},
                                     {"region": 440106}, {"region": None}, {"lat": 30.0, "lon": 104.0},
                                     {"code": "CODE-1a", "actor": "lice"}]   # the code's length sets the actor apart
    others = [dataclasses.replace(base, **c) for c in changes]
    for make in (fingerprint, fingerprint_v1):
        prints = [make(r) for r in [base, *others]]
        assert len(set(prints)) == len(prints), make
    same = [dataclasses.replace(base, request_id="other", client="app", time_ms=NOON + 1, actor_tags=("vip",))]
    assert all(fingerprint(r) == fingerprint(base) and fingerprint_v1(r) == fingerprint_v1(base) for r in same)
    assert fingerprint(dataclasses.replace(base, lat=30, lon=104)) == fingerprint(others[5])   # 30 is 30.0
    batch = [base, *others, *same]
    assert fingerprints(batch) == [fingerprint(r) for r in batch]


def test_a_reused_id_is_refused_against_the_batch_before_and_its_own_batch(dd: scangate.DataDir) -> None:
    a, b, c = dd.issue_codes("BEER", "item", 3).as_strings()
    [alice] = rewards.decide_scans(dd, [req("req-1", a, "alice")])
    # req-1 is the batch before's; req-2 is taken by erin earlier in this very batch
    dave, erin, dave2 = rewards.decide_scans(dd, [req("req-1", b, "dave"), req("req-2", c, "erin"),
                                                  req("req-2", b, "dave")])
    third = rewards.decide_scans(dd, [req("req-1", b, "dave"), req("req-1", a, "alice")])
    assert won(alice) and won(erin)
    assert is_refusal(dave, "req-1") and is_refusal(dave2, "req-2")
    assert is_refusal(third[0], "req-1") and third[1].to_json() == alice.to_json()  # type: ignore[union-attr]
    assert entries(dd, "ledger") == 2 and entries(dd, "scans") == 2 and len(claimed(dd)) == 2
    assert won(rewards.decide_scans(dd, [req("req-3", b, "dave")])[0])


def test_an_empty_request_id_refuses_the_batch_naming_it_and_writes_nothing(dd: scangate.DataDir) -> None:
    """Bad input, not a verdict: the whole batch is refused before its transaction,
    naming the request by its place in the batch."""
    a, b = dd.issue_codes("BEER", "item", 2).as_strings()
    before = snapshot(dd)
    with pytest.raises(scangate.InvalidArgument) as exc:
        rewards.decide_scans(dd, [req("ok", a, "alice"), req("", b, "dave")])
    assert str(exc.value).startswith("requests[1].request_id: ")
    assert snapshot(dd) == before                   # not even the good request was decided
    assert won(rewards.decide_scans(dd, [req("ok", a, "alice")])[0])


# ------------------------------------------------------------------ server parts
def test_writer_answers_the_reusing_call_with_invalid_argument(dd: scangate.DataDir) -> None:
    from scangate.server.errors import to_request_error
    from scangate.server.writer import GroupCommitWriter, _Item

    a, b, c, d = dd.issue_codes("BEER", "item", 4).as_strings()
    replies: dict[str, tuple[Any, Any]] = {}

    def item(name: str, *requests: ScanRequest) -> _Item:
        return _Item(requests, None, lambda out, err: replies.__setitem__(name, (out, err)))

    w = GroupCommitWriter(dd)
    try:
        # one group commit: alice's call, dave's with her id, a stream batch reusing it, erin's
        w._decide([item("alice", req("req-1", a, "alice")), item("dave", req("req-1", b, "dave")),
                   item("stream", req("s-1", c, "frank"), req("req-1", b, "dave")),
                   item("erin", req("req-2", d, "erin"))])
    finally:
        w.close()
    assert won(replies["alice"][0][0]) and won(replies["erin"][0][0])
    assert replies["dave"][0] is None
    err = to_request_error(replies["dave"][1])
    assert err.code == grpc.StatusCode.INVALID_ARGUMENT
    assert [f for f, _ in err.violations] == ["request_id"] and "another request" in err.message
    assert replies["stream"][0] is None
    assert [f for f, _ in to_request_error(replies["stream"][1]).violations] == ["scans[1].request_id"]


def test_writer_link_carries_the_requests_and_the_client_name() -> None:
    """A worker's frame gives the writer the requests the worker made, every field,
    with the calling client's name (the writer parses no protobuf)."""
    from scangate.server import scanlink

    sent = [req("req-1", "CODE", "alice"),
            ScanRequest("订单-2", "CODE-2", "bob", "store", None, 30.66, 104.06, None, ("vip", "会员"))]
    got: list[ScanRequest] = []

    class Writer:
        def submit_callback(self, requests: list[ScanRequest], deadline: Any, reply: Any, prepared: Any) -> None:
            assert prepared is None
            got.extend(requests)

    for client in ("wechat-mini-program", "", "应用"):
        frame = scanlink._request_frame(7, scanlink.NO_DEADLINE, client, scanlink.PLAIN,
                                        scanlink.encode_intents(sent))
        (n,) = scanlink._LEN.unpack_from(frame)
        assert n == len(frame) - scanlink._LEN.size
        scanlink._submit(frame[scanlink._LEN.size:], Writer(), lambda d: None, scanlink._Tally(), lambda b: None,
                         lambda e: e)
        assert got == [dataclasses.replace(r, client=client) for r in sent]
        assert all(type(r.actor_tags) is tuple for r in got)
        got.clear()


# ------------------------------------------------------------------ a real server
def test_server_refuses_a_reused_request_id(tmp_path: Path) -> None:
    with running(tmp_path / "data") as srv, scangate.Client(srv.target) as c:
        a, b, d, e = next(c.issue_codes("BEER-500", "item", 4)).codes
        c.put_campaign(CAMPAIGN.replace("2026-03-01", "2026-01-01"), "c1.toml")
        alice = c.scan(a, "alice", request_id="req-1", region=CHENGDU)
        assert won(alice)
        with pytest.raises(scangate.InvalidArgument) as exc:
            c.scan(b, "dave", request_id="req-1", region=CHENGDU)
        assert [f for f, _ in exc.value.violations] == ["request_id"]  # type: ignore[attr-defined]
        assert "another request" in str(exc.value)
        assert c.scan(a, "alice", request_id="req-1", region=CHENGDU) == alice
        # in a stream batch: that call fails naming the scan; the batch's other scan was decided
        with pytest.raises(scangate.InvalidArgument) as exc:
            list(c.scan_stream([ScanRequest("s-1", d, "frank", region=CHENGDU),
                                ScanRequest("req-1", b, "dave", region=CHENGDU)]))
        assert [f for f, _ in exc.value.violations] == ["scans[1].request_id"]  # type: ignore[attr-defined]
        [frank] = c.scan_stream([ScanRequest("s-1", d, "frank", region=CHENGDU)])
        assert won(frank)
        # dave's code was never scanned: his own id wins it
        assert won(c.scan(b, "dave", request_id="req-2", region=CHENGDU))
        assert won(c.scan(e, "erin", region=CHENGDU))


def test_server_scopes_request_ids_to_the_calling_token(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with scangate.init_data_dir(data) as dd:
        a, b = dd.issue_codes("BEER-500", "item", 2).as_strings()
    from scangate.server.auth import add_token as add
    t_admin = add(data / "tokens.toml", "ops", "admin")
    t_one, t_two = add(data / "tokens.toml", "app-one", "scanner"), add(data / "tokens.toml", "app-two", "scanner")
    with running(data) as srv:
        with scangate.Client(srv.target, token=t_admin) as ops:
            ops.put_campaign(CAMPAIGN.replace("2026-03-01", "2026-01-01"), "c1.toml")
        with scangate.Client(srv.target, token=t_one) as one, scangate.Client(srv.target, token=t_two) as two:
            first = one.scan(a, "alice", request_id="req-1", region=CHENGDU)
            second = two.scan(b, "dave", request_id="req-1", region=CHENGDU)   # another app's "req-1"
            assert won(first) and won(second)
            assert one.scan(a, "alice", request_id="req-1", region=CHENGDU) == first
            with pytest.raises(scangate.InvalidArgument):                       # bound within its own scope
                one.scan(b, "dave", request_id="req-1", region=CHENGDU)
