"""The decision record (scangate.state.records, issue 13): a ``Decision`` is its
own record, version 2, an array led by its tag, stored in its batch's record of
the decision log (tag 3, keyed by the batch's last decision number); a record of
one decision (version 2, or version 1: the verdict as its reply JSON, message
and all, as schema 2 stored them) still reads, as the Decision it holds, with
the message it was told; a damaged record is a CorruptionError naming the
decision record; a retry gets back the Decision it got the first time, equal
and typed, from whichever records hold it.

Records are read from a real data directory (the request index names the
decision number, scangate.state.raw gives the stored bytes); the version 1
records are msgpack written here by hand, not by the code under test.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest

import scangate
from scangate import ingest, rewards, wire
from scangate.enums import CodeStatus, Reason, Verdict
from scangate.errors import CorruptionError
from scangate.rewards import Award, Decision, NoReward, ScanRequest
from scangate.state import reads
from scangate.state import raw as state_raw
from scangate.state.records import DecisionBatch, decode_decision, encode
from scangate.verdict import ScanVerdict
from scangate.verdicts import revoke_range

from fixtures_campaigns import CHENGDU, GUANGZHOU, NOON, campaign, typo
from forgery import random_code_texts

FAKE = random_code_texts(1, seed=13)[0]   # well formed, right check character, not authentic
CAMPAIGN = campaign(name="records", start="2026-05-01", extra='hotline = "400-800-1234"\n',
                    prizes='[[prizes]]\nid = "cash"\nkind = "cash"\namount_fen = 150\n')


@dataclasses.dataclass
class World:
    dd: scangate.DataDir
    requests: list[ScanRequest]


def _world(dd: scangate.DataDir) -> list[ScanRequest]:
    """Requests that reach every verdict: a won first scan, a repeat, a counterfeit
    (with the campaign's hotline), a typo, a diverted code, a clone (its score a
    fraction), a recalled code, a scan with no place, and one sent by an app."""
    rewards.put_campaign(dd, CAMPAIGN, "c1.toml")
    items = dd.issue_codes("BEER", "item", 6).as_strings()
    (case,) = dd.issue_codes("BEER", "case", 1).as_strings()
    ingest.link_csv(dd, ("parent,child\n" + "".join(f"{case},{i}\n" for i in items[:2])).encode(), "pack.csv")
    ingest.load_dealers_csv(dd, b"dealer_id,name,territory\nGD,Guangdong,44\n")
    ingest.ship_csv(dd, f"unit,dealer_id,shipped_at,shipment_id\n{case},GD,2026-05-01T00:00:00Z,SH1\n".encode())
    serials = [int(s) for s in dd.verify_codes(items).serial]
    revoke_range(dd, serials[5], serials[5], "batch damaged")
    return [
        ScanRequest("won", items[2], "u1", region=CHENGDU, time_ms=NOON),
        ScanRequest("again", items[2], "u2", region=GUANGZHOU, time_ms=NOON + 86_400_000),
        ScanRequest("fake", FAKE, "u3", region=CHENGDU, time_ms=NOON),
        ScanRequest("typo", typo(items[4]), "u3", region=CHENGDU, time_ms=NOON),
        ScanRequest("div", items[0], "u4", region=CHENGDU, time_ms=NOON),
        # items[1], scanned by four people in a minute or two: more distinct actors than 3
        *(ScanRequest(f"k{i}", items[1], f"k-{i}", region=GUANGZHOU, time_ms=NOON + i * 30_000) for i in range(4)),
        ScanRequest("recalled", items[5], "u5", region=CHENGDU, time_ms=NOON),
        ScanRequest("placeless", items[3], "u6", time_ms=NOON),
        ScanRequest("won", items[4], "u7", region=CHENGDU, time_ms=NOON, client="app-1"),
    ]


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    dd = scangate.init_data_dir(tmp_path / "d")
    try:
        yield World(dd, _world(dd))
    finally:
        dd.close()


def _decide(dd: scangate.DataDir, requests: list[ScanRequest]) -> list[Decision]:
    out = rewards.decide_scans(dd, requests)
    assert all(type(d) is Decision for d in out), out
    return out  # type: ignore[return-value]


def _stored(dd: scangate.DataDir, r: ScanRequest) -> tuple[bytes, bytes, int]:
    """The key and bytes of the decision log record that holds ``r``'s decision
    (the first keyed at or after its number), and the decision's place in it."""
    pointer = reads.request_record(dd, r.request_id, r.client)
    assert pointer is not None, r
    number = pointer[0]
    key, raw = next((k, v) for k, v in state_raw.items(dd, "decisions") if int.from_bytes(k, "big") >= number)
    items = msgspec.msgpack.decode(raw)
    held = len(items[1]) if items[0] == 3 else 1
    return key, raw, held - 1 - (int.from_bytes(key, "big") - number)


def _as_told(d: Decision) -> Decision:
    """``d`` as a reply's JSON or a ScanDecision gives it back: its verdict's message
    as told (``said``), the brand's hotline in it (a reply carries no ``hotline``)."""
    told = msgspec.structs.replace(d.verdict, said=d.verdict.words(), hotline=None)
    return msgspec.structs.replace(d, verdict=told)


def _check_typed(d: Decision) -> None:
    assert type(d) is Decision and type(d.verdict) is ScanVerdict
    assert type(d.verdict.verdict) is Verdict and type(d.verdict.code_status) is CodeStatus
    assert all(type(r) is Reason for r in d.verdict.reasons)
    assert d.award is None or type(d.award) is Award
    assert d.no_reward is None or type(d.no_reward) is NoReward


# ------------------------------------------------------------------ version 2: the Decision itself
def test_a_decision_round_trips_through_its_record_equal_typed_tag_2_first(world: World) -> None:
    decisions = _decide(world.dd, world.requests)
    assert {d.verdict.label for d in decisions} == {"genuine", "counterfeit", "diverted", "suspect_clone", "revoked"}
    assert any(d.verdict.first_scan for d in decisions) and any(d.award for d in decisions)
    assert any(Reason.TYPO in d.verdict.reasons for d in decisions)
    assert any(d.verdict.evidence.get("diversion") for d in decisions)
    assert any(0 < d.verdict.clone_score < 1 for d in decisions)
    # one record for the batch: tag 3, keyed by the last decision's number, the
    # decisions the engine returned, in order (it stores the values it returns)
    (key, batch), = state_raw.items(world.dd, "decisions")
    assert int.from_bytes(key, "big") == len(decisions)
    assert batch == encode(DecisionBatch(decisions))
    assert msgspec.msgpack.decode(batch)[0] == 3
    for i, (r, d) in enumerate(zip(world.requests, decisions)):
        _check_typed(d)
        assert _stored(world.dd, r) == (key, batch, i)
        raw = encode(d)
        items = msgspec.msgpack.decode(raw)
        assert type(items) is list and items[0] == 2 and items[1] == r.request_id, items
        assert msgspec.msgpack.decode(batch)[1][i] == items
        for form in (raw, memoryview(raw)):         # LMDB hands out buffers
            back = decode_decision(form)
            _check_typed(back)
            assert back == d
        assert back.verdict.said is None            # decided here: its message is derived, not stored
        assert back.to_json() == d.to_json() and back.message == d.message
        assert encode(back) == raw


def test_a_told_message_survives_the_record() -> None:
    """A decision read from a version 1 record keeps the message it was told
    through a version 2 record too (a record it is stored again as)."""
    verdict = ScanVerdict(Verdict.COUNTERFEIT, [Reason.COUNTERFEIT_TAG], CodeStatus.COUNTERFEIT, None, "none",
                          hotline="400-000-0000", said=("旧的警告。", "An old warning."))
    d = Decision("r-1", verdict, None, NoReward.VERDICT_NOT_ELIGIBLE, "c1")
    raw = encode(d)
    assert msgspec.msgpack.decode(raw)[0] == 2
    back = decode_decision(raw)
    assert back == d and back.verdict.said == ("旧的警告。", "An old warning.")
    assert back.verdict.message == {"zh-CN": "旧的警告。", "en": "An old warning."}
    assert back.message == {"zh-CN": "旧的警告。", "en": "An old warning."}


# ------------------------------------------------------------------ version 1: the verdict as its JSON
# A repeat scan decided before repeat scans told their first scan: its stored
# message is the plain genuine one, not what the verdict would say today.
V1_REPEAT = {"verdict": "genuine",
             "message": {"zh-CN": "正品验证通过，感谢您的扫码。", "en": "Genuine product. Thank you for scanning."},
             "reasons": ["SG-G2", "SG-G3"], "code_status": "genuine", "region": 440106, "region_source": "adcode",
             "clone_score": 0.0, "first_scan": {"time_ms": NOON, "region": 510104, "actor": "u1"}, "scan_count": 2,
             "evidence": {}}
V1_CLONE = {"verdict": "suspect_clone",
            "message": {"zh-CN": "此码已被多次异常扫描，可能被复制，请谨慎。",
                        "en": "This code has been scanned in unusual ways and may have been copied."},
            "reasons": ["SG-G2", "SG-K1", "SG-K2"], "code_status": "genuine", "region": 650102,
            "region_source": "geo:cn-districts@2024.1", "clone_score": 0.833,
            "first_scan": {"time_ms": NOON, "region": 440106, "actor": "k-0"}, "scan_count": 4,
            "evidence": {"distinct_actors": {"count": 4, "threshold": 3},
                         "travel": {"from": 440106, "to": 650102, "km": 3289.7, "hours": 0.02}}}
V1_AWARD = ["c1", "cash", "cash", 150, 0, "draw", 7, "c1:7"]     # Award, an array


def _v1(request_id: str, verdict: Any, award: Any, no_reward: Any, campaign_id: Any, tag: Any = 1) -> bytes:
    """A version 1 decision record, by hand: [1, request id, verdict JSON, award, no reward, campaign]."""
    return msgspec.msgpack.encode([tag, request_id, verdict, award, no_reward, campaign_id])


def test_a_version_1_record_reads_as_the_decision_it_holds_with_its_message() -> None:
    d = decode_decision(_v1("old-1", V1_REPEAT, None, "RW-N7", "c1"))
    _check_typed(d)
    assert (d.request_id, d.award, d.no_reward, d.campaign_id) == ("old-1", None, NoReward.ALREADY_CLAIMED, "c1")
    assert d.verdict.verdict is Verdict.GENUINE and d.verdict.label == "genuine"
    assert d.verdict.reasons == [Reason.GENUINE_REPEAT_SCAN, Reason.NOT_SHIPPED]
    assert d.verdict.code_status is CodeStatus.GENUINE
    assert (d.verdict.region, d.verdict.region_source, d.verdict.scan_count) == (440106, "adcode", 2)
    assert d.verdict.first_scan == {"time_ms": NOON, "region": 510104, "actor": "u1"}
    assert d.verdict.to_json() == V1_REPEAT
    # the message it was told, not the repeat-scan message derived today
    assert d.verdict.said == ("正品验证通过，感谢您的扫码。", "Genuine product. Thank you for scanning.")
    assert d.verdict.message == V1_REPEAT["message"]
    assert d.message == {"zh-CN": "正品验证通过，感谢您的扫码。此码已参与过抽奖。",
                         "en": "Genuine product. Thank you for scanning. This code has already been used in the draw."}
    assert d.to_json() == {"request_id": "old-1", "verdict": V1_REPEAT, "award": None, "no_reward": "RW-N7",
                           "campaign_id": "c1", "message": d.message}
    # stored again, it is a version 2 record that reads back the same, message and all
    again = encode(d)
    assert msgspec.msgpack.decode(again)[0] == 2 and decode_decision(again) == d

    won = decode_decision(_v1("old-2", V1_CLONE, V1_AWARD, None, "c1"))
    _check_typed(won)
    assert won.award == Award("c1", "cash", "cash", 150, 0, "draw", 7, "c1:7") and won.no_reward is None
    assert won.verdict.verdict is Verdict.SUSPECT_CLONE and won.verdict.clone_score == 0.833
    assert won.verdict.reasons == [Reason.GENUINE_REPEAT_SCAN, Reason.CLONE_DISTINCT_ACTORS,
                                   Reason.CLONE_IMPOSSIBLE_TRAVEL]
    assert won.verdict.evidence == V1_CLONE["evidence"]
    assert won.verdict.to_json() == V1_CLONE
    assert won.message == {"zh-CN": "恭喜您获得 1.50 元红包！", "en": "Congratulations! You won a 1.50 CNY red packet."}


def test_a_retry_of_a_request_decided_in_version_1_gets_the_stored_decision(world: World) -> None:
    """Schema 2 stored one decision per record, under its own number: a version 1
    record there, among batch records, reads as the decision it holds."""
    r = world.requests[1]                            # "again": a repeat scan
    _decide(world.dd, world.requests[:1])
    (first,) = _decide(world.dd, [r])                # a batch of one: a record of its own
    _decide(world.dd, world.requests[2:])
    key, _raw, place = _stored(world.dd, r)
    assert (int.from_bytes(key, "big"), place) == (2, 0)
    v1 = _v1(r.request_id, V1_REPEAT, None, "RW-N7", "c1")
    state_raw.put(world.dd, "decisions", key, v1)
    before = state_raw.dump(world.dd)
    (got,) = _decide(world.dd, [r])
    assert got == decode_decision(v1) != first
    assert got.verdict.to_json() == V1_REPEAT
    assert got.message["en"] == "Genuine product. Thank you for scanning. This code has already been used in the draw."
    assert reads.decision_of(world.dd, r.request_id) == {"request_id": "again", "verdict": V1_REPEAT, "award": None,
                                                          "no_reward": "RW-N7", "campaign_id": "c1"}
    assert state_raw.dump(world.dd) == before       # the retry wrote nothing


# ------------------------------------------------------------------ damaged records
def _corrupt(raw: bytes | memoryview) -> CorruptionError:
    with pytest.raises(CorruptionError) as exc:
        decode_decision(raw)
    assert str(exc.value).startswith("decision record: "), exc.value
    return exc.value


def test_a_record_under_a_wrong_tag_is_corruption() -> None:
    d = Decision("r-1", ScanVerdict(Verdict.GENUINE, [Reason.GENUINE_FIRST_SCAN], CodeStatus.GENUINE, CHENGDU,
                                    "adcode"), Award("c1", "cash", "cash", 150, 0, "draw", 1, "c1:1"), None, "c1")
    v2 = msgspec.msgpack.decode(encode(d))
    v1 = msgspec.msgpack.decode(_v1("r-1", V1_REPEAT, V1_AWARD, None, "c1"))
    assert (v2[0], v1[0]) == (2, 1)
    for items in (v2, v1):
        for tag in (0, 3, 99, -1, "2", "1", None, 1.0, True):
            _corrupt(msgspec.msgpack.encode([tag, *items[1:]]))
    _corrupt(msgspec.msgpack.encode([1, *v2[1:]]))   # version 2's fields under version 1's tag
    _corrupt(msgspec.msgpack.encode([2, *v1[1:]]))   # and the other way round
    _corrupt(msgspec.msgpack.encode(v2[1:]))         # no tag at all


def test_a_truncated_record_is_corruption() -> None:
    verdict = ScanVerdict(Verdict.SUSPECT_CLONE, [Reason.GENUINE_REPEAT_SCAN, Reason.CLONE_DISTINCT_ACTORS],
                          CodeStatus.GENUINE, CHENGDU, "adcode", 0.75, {"time_ms": NOON, "region": CHENGDU, "actor": "a"},
                          4, {"distinct_actors": {"count": 4, "threshold": 3}})
    d = Decision("用户\"1\"", verdict, None, NoReward.VERDICT_NOT_ELIGIBLE, "c1")
    for raw in (encode(d), _v1("old-1", V1_REPEAT, V1_AWARD, None, "c1")):
        assert decode_decision(raw).request_id in ("用户\"1\"", "old-1")
        for cut in range(len(raw)):
            _corrupt(raw[:cut])
            _corrupt(memoryview(raw)[:cut])
        _corrupt(raw + b"\x00")                      # a record and something after it
        _corrupt(msgspec.msgpack.encode(msgspec.msgpack.decode(raw)[:-1]))   # a field short


@pytest.mark.parametrize("field,value", [
    ("verdict", "fake"), ("verdict", "Genuine"), ("verdict", "VERDICT_GENUINE"), ("verdict", 0), ("verdict", None),
    ("reasons", ["SG-G1", "SG-X9"]), ("reasons", "SG-G1"), ("code_status", "forged"), ("code_status", 0),
])
def test_a_version_1_verdict_that_is_none_is_corruption(field: str, value: Any) -> None:
    _corrupt(_v1("old-1", {**V1_REPEAT, field: value}, None, "RW-N7", "c1"))


@pytest.mark.parametrize("field", ["verdict", "reasons", "code_status", "region", "region_source", "clone_score",
                                   "first_scan", "scan_count", "evidence"])
def test_a_version_1_verdict_missing_a_field_is_corruption(field: str) -> None:
    verdict = {k: v for k, v in V1_REPEAT.items() if k != field}
    _corrupt(_v1("old-1", verdict, None, "RW-N7", "c1"))


def test_a_version_2_verdict_that_is_none_is_corruption() -> None:
    d = Decision("r-1", ScanVerdict(Verdict.DIVERTED, [Reason.GENUINE_FIRST_SCAN, Reason.DIVERTED_OUTSIDE_TERRITORY],
                                    CodeStatus.GENUINE, CHENGDU, "adcode"), None, NoReward.VERDICT_NOT_ELIGIBLE, "c1")
    items = msgspec.msgpack.decode(encode(d))
    verdict = items[2]
    assert verdict[:3] == [int(Verdict.DIVERTED), ["SG-G1", "SG-D1"], int(CodeStatus.GENUINE)]
    for at, value in ((0, 5), (0, -1), (0, "diverted"), (1, ["SG-G1", "SG-X9"]), (1, "SG-G1"), (2, 6), (2, "genuine")):
        damaged = list(verdict)
        damaged[at] = value
        _corrupt(msgspec.msgpack.encode([*items[:2], damaged, *items[3:]]))
    _corrupt(msgspec.msgpack.encode([*items[:4], "RW-N99", items[5]]))    # a reason for no reward that is none
    _corrupt(msgspec.msgpack.encode([*items[:2], {"verdict": "diverted"}, *items[3:]]))   # a verdict as JSON


def test_a_damaged_stored_record_is_corruption_on_retry_and_read(world: World) -> None:
    r = world.requests[1]
    _decide(world.dd, world.requests)
    key, raw, place = _stored(world.dd, r)
    tag, decisions = msgspec.msgpack.decode(raw)
    assert (tag, place, len(decisions)) == (3, 1, len(world.requests))
    damaged_own = list(decisions)
    damaged_own[place] = [2, r.request_id, "fake", None, None, "c1"]
    for damaged in (raw[: len(raw) // 2], _v1(r.request_id, {**V1_REPEAT, "verdict": "fake"}, None, None, "c1"),
                    msgspec.msgpack.encode([7, decisions]),
                    msgspec.msgpack.encode([3, damaged_own]),          # its own decision damaged
                    msgspec.msgpack.encode([3, decisions[:1]]),        # a record too short to hold it
                    msgspec.msgpack.encode([3, []]),                   # a record that holds nothing
                    msgspec.msgpack.encode([2, *decisions[place][1:]])):   # one decision, under another number
        state_raw.put(world.dd, "decisions", key, damaged)
        before = state_raw.dump(world.dd)
        with pytest.raises(CorruptionError, match=r"decision record: "):
            rewards.decide_scans(world.dd, [r])
        with pytest.raises(CorruptionError, match=r"^decision record: "):
            reads.decision_of(world.dd, r.request_id)
        assert state_raw.dump(world.dd) == before       # nothing of the refused retry was written


def test_a_damaged_neighbour_in_the_batch_record_does_not_fail_a_retry(world: World) -> None:
    """A retry decodes only its own decision of its batch's record: another
    request's damaged decision there is that request's corruption, not this one's."""
    first = _decide(world.dd, world.requests)
    key, raw, _place = _stored(world.dd, world.requests[1])
    tag, decisions = msgspec.msgpack.decode(raw)
    decisions[0] = [2, world.requests[0].request_id, "fake", None, None, "c1"]
    state_raw.put(world.dd, "decisions", key, msgspec.msgpack.encode([tag, decisions]))
    assert _decide(world.dd, world.requests[1:]) == first[1:]
    with pytest.raises(CorruptionError, match=r"^decision record: "):
        reads.decision_of(world.dd, world.requests[0].request_id)


# ------------------------------------------------------------------ retries
def test_a_retry_spanning_batch_records_gets_each_decision(world: World) -> None:
    """Decisions decided in batches of 1, 4 and the rest, retried together in
    another order: each from its own batch's record, nothing written."""
    rs = world.requests
    first = _decide(world.dd, rs[:1]) + _decide(world.dd, rs[1:5]) + _decide(world.dd, rs[5:])
    lasts = [int.from_bytes(k, "big") for k, _v in state_raw.items(world.dd, "decisions")]
    assert lasts == [1, 5, len(rs)]
    assert [n for n, _d in reads.decision_log(world.dd)] == list(range(1, len(rs) + 1))
    assert [d for _n, d in reads.decision_log(world.dd)] == first
    before = state_raw.dump(world.dd)
    order = [7, 0, 3, 11, 1, 5, 2, 9, 4, 10, 6, 8]
    assert sorted(order) == list(range(len(rs)))
    assert _decide(world.dd, [rs[i] for i in order]) == [first[i] for i in order]
    assert state_raw.dump(world.dd) == before


def test_a_retry_returns_a_decision_equal_to_the_first(world: World, tmp_path: Path) -> None:
    first = _decide(world.dd, world.requests)
    before = state_raw.dump(world.dd)
    again = _decide(world.dd, world.requests)
    assert again == first
    for a, d in zip(again, first):
        _check_typed(a)
        assert a.to_json() == d.to_json() and a.message == d.message
    # re-stamped (a retry may carry another time), one at a time, in another order
    restamped = [dataclasses.replace(r, time_ms=None) for r in reversed(world.requests)]
    assert _decide(world.dd, restamped) == first[::-1]
    assert [_decide(world.dd, [r])[0] for r in world.requests] == first
    assert state_raw.dump(world.dd) == before       # no retry wrote anything
    # from the disk, in a data directory opened again
    world.dd.close()
    with scangate.open_data_dir(tmp_path / "d") as dd:
        assert _decide(dd, world.requests) == first
    world.dd = scangate.open_data_dir(tmp_path / "d")


# ------------------------------------------------------------------ the writer's answer to a worker
def test_the_writer_hands_workers_the_decisions_they_encode_alike(world: World) -> None:
    """The writer answers a worker with the Decision records (server/scanlink.py,
    msgpack) and the worker makes the ScanDecision: every kind of decision, a told
    message and the brand's hotline included, comes through equal, typed, and
    encodes to the same reply as the writer's own."""
    from scangate.server import scanlink

    decisions = _decide(world.dd, world.requests)
    told = _as_told(decisions[0])
    sent = [*decisions, told]
    got = scanlink.decode_decisions(scanlink.encode_decisions(sent))
    assert got == sent
    for a, d in zip(got, sent):
        _check_typed(a)
        assert wire.decision_to_proto(a).SerializeToString() == wire.decision_to_proto(d).SerializeToString()
    assert any(d.verdict.hotline for d in got) and got[-1].verdict.said is not None
    assert scanlink.decode_decisions(memoryview(scanlink.encode_decisions(sent))) == sent   # from a buffer


def test_a_worker_reads_the_writers_replies_whole_however_the_bytes_arrive(world: World) -> None:
    """``scanlink.take_replies`` (a worker's link and bench writer read with it):
    replies split anywhere, or several in one read, come out whole, in order,
    each once; a reply cut short waits in the buffer; a refusal carries its status."""
    from google.rpc import code_pb2, status_pb2

    from scangate.server import scanlink

    decisions = _decide(world.dd, world.requests)
    refusal = status_pb2.Status(code=code_pb2.INVALID_ARGUMENT, message="scans[0].code: too long")
    stream = (scanlink._encode_ok(7, decisions) + scanlink._encode_error(8, refusal)
              + scanlink._encode_ok(9, decisions[:1]))
    for cut in (1, 3, 4, 5, 13, 64, len(stream) - 1, len(stream)):
        buf, got = bytearray(), []
        for start in range(0, len(stream), cut):
            buf += stream[start : start + cut]
            got += [(item, ok, bytes(payload)) for item, ok, payload in scanlink.take_replies(buf)]
        assert buf == b"" and [(item, ok) for item, ok, _ in got] == [(7, True), (8, False), (9, True)]
        assert scanlink.decode_decisions(got[0][2]) == decisions
        assert status_pb2.Status.FromString(got[1][2]) == refusal
        assert scanlink.decode_decisions(got[2][2]) == decisions[:1]
    half = bytearray(stream[:10])
    assert scanlink.take_replies(half) == [] and half == stream[:10]


# ------------------------------------------------------------------ a reply gives the verdict back
def test_a_reply_gives_back_the_verdict_as_decided(world: World) -> None:
    """A decision's reply JSON and its ScanDecision read back as the same decision,
    its verdict's message as told; a clone's score too, a fraction included (the
    reply carries it to three decimals: the decision holds it so)."""
    decisions = _decide(world.dd, world.requests)
    clones = [d for d in decisions if 0 < d.verdict.clone_score < 1]
    assert clones
    for d in decisions:
        from_json = Decision.from_json(d.to_json())
        from_proto = wire.decision_from_proto(wire.decision_to_proto(d))
        assert from_json.to_json() == from_proto.to_json() == d.to_json()
        assert from_json == _as_told(d), (from_json.verdict, d.verdict)
        assert from_proto == _as_told(d), (from_proto.verdict, d.verdict)
