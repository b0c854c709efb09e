"""scangate.state.raw (the stored bytes, for repair, forensics and tests), the
read model of scangate.state.reads that tests read the store through, and the
key functions layout gained for them: on real data directories, the values
after real decisions through ``rewards.decide_scans``."""
from __future__ import annotations

import datetime as dt
import hashlib
import sys
import types
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import scangate
from scangate import clock, ingest, plugins, points, rewards, verdicts
from scangate.errors import CorruptionError, InvalidArgument
from scangate.rewards import Decision, NoReward, ScanRequest
from scangate.state import layout, reads, records
from scangate.state import raw as state_raw
from scangate.trace import Shipment

from fixtures_campaigns import CASES_ONLY, CASH_1, CHENGDU, campaign, points_prize

TZ = dt.timezone(dt.timedelta(hours=8))        # Asia/Shanghai, the campaigns' zone


def ms(y: int, mo: int, d: int, h: int = 12) -> int:
    return int(dt.datetime(y, mo, d, h, tzinfo=TZ).timestamp() * 1000)


def day_number(y: int, mo: int, d: int) -> int:
    return (dt.date(y, mo, d) - dt.date(1970, 1, 1)).days


CONSUMER = campaign(name="consumer cash", prizes=CASH_1, tail="[caps]\nper_user_daily_count = 2\n")
STORES = campaign(cid="s1", name="store points", actor="store", prizes=points_prize("p100", 100), tail=CASES_ONLY)


# ------------------------------------------------------------------ raw
def test_put_get_items_count_delete_each_in_its_own_transaction(tmp_path: Path) -> None:
    root = tmp_path / "d"
    with scangate.init_data_dir(root) as dd:
        assert state_raw.items(dd, "dealers") == [] and state_raw.count(dd, "dealers") == 0
        state_raw.put(dd, "dealers", b"k1", b"first")
        state_raw.put(dd, "dealers", b"k1", b"v1")              # replaces
        state_raw.put(dd, "dealers", bytearray(b"k0"), memoryview(b""))   # an empty value is a value
        assert state_raw.items(dd, "dealers") == [(b"k0", b""), (b"k1", b"v1")]      # key order
        assert state_raw.get(dd, "dealers", b"k1") == b"v1"
        assert state_raw.get(dd, "dealers", b"k0") == b""
        assert state_raw.get(dd, "dealers", b"k2") is None
        assert state_raw.count(dd, "dealers") == 2
        assert state_raw.delete(dd, "dealers", b"k1") is True
        assert state_raw.delete(dd, "dealers", b"k1") is False    # nothing left to delete
        assert state_raw.dump(dd, ("dealers", "shipped")) == {"dealers": [(b"k0", b"")], "shipped": []}
        everything = state_raw.dump(dd)
        assert tuple(everything) == layout.DATABASES
        assert everything["dealers"] == [(b"k0", b"")]
        assert everything["meta"] and everything["ledger"] == []
    with scangate.open_data_dir(root) as dd:                    # committed: there after a reopen
        assert state_raw.items(dd, "dealers") == [(b"k0", b"")]
        assert state_raw.dump(dd) == everything


CALLS: list[tuple[str, Callable[[scangate.DataDir, str], object]]] = [
    ("items", lambda dd, name: state_raw.items(dd, name)),
    ("dump", lambda dd, name: state_raw.dump(dd, ("ledger", name))),
    ("count", lambda dd, name: state_raw.count(dd, name)),
    ("get", lambda dd, name: state_raw.get(dd, name, b"k")),
    ("put", lambda dd, name: state_raw.put(dd, name, b"k", b"v")),
    ("delete", lambda dd, name: state_raw.delete(dd, name, b"k")),
]


@pytest.mark.parametrize("call", [c for _, c in CALLS], ids=[n for n, _ in CALLS])
@pytest.mark.parametrize("name", ["nope", "", "Ledger", "ledger "])
def test_an_unknown_database_is_invalid_argument_naming_it(dd: scangate.DataDir, call: Any, name: str) -> None:
    before = state_raw.dump(dd)
    with pytest.raises(InvalidArgument, match=rf"^name: {name!r} is not a database of the store \(one of meta, "):
        call(dd, name)
    assert state_raw.dump(dd) == before


@pytest.mark.parametrize(("key", "value", "message"), [
    (b"", b"v", r"^key: 0 bytes; a key is 1 to 511 bytes$"),
    (b"k" * 512, b"v", r"^key: 512 bytes; a key is 1 to 511 bytes$"),
    ("k", b"v", r"^key: bytes, not str$"),
    (b"k", "v", r"^value: bytes, not str$"),
    (b"k", None, r"^value: bytes, not NoneType$"),
])
def test_a_key_or_value_no_record_can_have_is_refused_and_writes_nothing(
        dd: scangate.DataDir, key: Any, value: Any, message: str) -> None:
    before = state_raw.dump(dd)
    with pytest.raises(InvalidArgument, match=message):
        state_raw.put(dd, "dealers", key, value)
    if isinstance(value, bytes):
        for read in (state_raw.get, state_raw.delete):
            with pytest.raises(InvalidArgument, match=message):
                read(dd, "dealers", key)
    assert state_raw.dump(dd) == before
    state_raw.put(dd, "dealers", b"k" * 511, b"v")              # the longest key is one
    assert state_raw.get(dd, "dealers", b"k" * 511) == b"v"


# ------------------------------------------------------------------ layout's new keys
def test_the_new_key_functions_are_the_keys_the_store_writes(dd: scangate.DataDir) -> None:
    """Pinned by hand, and the keys the issuance ledger, the recalls and the trace
    store write."""
    items = dd.issue_codes("BEER", "item", 6).as_strings()
    [pallet] = dd.issue_codes("BEER", "pallet", 1).as_strings()
    pallet_serial = dd.verify_code(pallet).serial
    assert layout.line_key(1) == b"\x00\x00\x00\x01" and layout.line_key(2) == b"\x00\x00\x00\x02"
    assert [k for k, _ in state_raw.items(dd, "lines")] == [layout.line_key(1), layout.line_key(2)]

    with clock.use(clock.ManualClock(ms(2026, 3, 1))):
        verdicts.recall_line(dd, 2, "seal")
        verdicts.recall_range(dd, 3, 4, "hot")
    assert layout.line_recall_key(2) == b"L\x00\x00\x00\x02"
    assert layout.range_recall_key(3, 4) == b"R" + bytes(7) + b"\x03" + bytes(7) + b"\x04"
    assert [k for k, _ in state_raw.items(dd, "revoked")] == [layout.line_recall_key(2),
                                                                 layout.range_recall_key(3, 4)]

    ingest.load_dealers_csv(dd, "dealer_id,name,territory\nD1,广州一号,4401\n".encode())
    ingest.ship_csv(dd, f"unit,dealer_id,shipped_at,shipment_id\n{pallet},D1,2024-05-01T10:00:00Z,S1\n".encode())
    at = 1_714_557_600_000                                        # 2024-05-01T10:00:00Z
    assert layout.dealer_key("D1") == b"D1" and layout.dealer_key("广州") == "广州".encode()
    assert [k for k, _ in state_raw.items(dd, "dealers")] == [layout.dealer_key("D1")]
    assert layout.ship_log_key(pallet_serial, at) == pallet_serial.to_bytes(7, "big") + at.to_bytes(8, "big")
    assert [k for k, _ in state_raw.items(dd, "ship_log")] == [layout.ship_log_key(pallet_serial, at)]
    assert [k for k, _ in state_raw.items(dd, "shipped")] == [layout.serial_key(pallet_serial)]

    # the shipment, read back through the read model; an item in no shipment of its own has none
    item_serial = dd.verify_code(items[0]).serial
    assert reads.shipments_of(dd, [pallet_serial, item_serial]) == {
        pallet_serial: Shipment(pallet_serial, "D1", at, "S1")}
    assert reads.shipments_of(dd, []) == {}


# ------------------------------------------------------------------ reads after real decisions
def decide(dd: scangate.DataDir, requests: list[ScanRequest]) -> list[Decision]:
    out = rewards.decide_scans(dd, requests)
    assert all(isinstance(d, Decision) for d in out)
    return out  # type: ignore[return-value]


def test_counters_budgets_and_requests_after_real_decisions(dd: scangate.DataDir) -> None:
    stored = rewards.put_campaign(dd, CONSUMER, "c1.toml")
    codes = dd.issue_codes("BEER", "item", 5).as_strings()
    times = [ms(2026, 3, 10, 9), ms(2026, 3, 10, 10), ms(2026, 3, 10, 11), ms(2026, 3, 11, 9)]
    out = decide(dd, [ScanRequest(f"r{i}", c, "u1", region=CHENGDU, time_ms=t)
                      for i, (c, t) in enumerate(zip(codes, times))])
    assert [(d.no_reward, d.award and d.award.amount_fen) for d in out] == [
        (None, 100), (None, 100), (NoReward.DAILY_CAP_REACHED, None), (None, 100)]
    (other,) = decide(dd, [ScanRequest("x1", codes[4], "u2", region=CHENGDU, time_ms=times[0], client="app")])
    assert other.award is not None

    # u1: 3 awards, 300 fen, 3 eligible scans (the capped one is not counted); the
    # record holds the 11th (1 award); the 10th moved to its own record
    assert reads.counters(dd, "c1", "u1") == reads.ActorCounters(3, 300, 3, day_number(2026, 3, 11), 1, 100)
    assert reads.counters(dd, "c1", "u1") == (3, 300, 3, 20523, 1, 100)
    assert reads.day_counters(dd, "c1", "u1", "2026-03-10") == (2, 200)
    assert reads.day_counters(dd, "c1", "u1", "2026-03-11") is None    # held in the total record
    assert reads.counters(dd, "c1", "u2") == (1, 100, 1, day_number(2026, 3, 10), 1, 100)
    assert reads.counters(dd, "c1", "nobody") is None
    # a record written before the total held its day: awards, fen and scans alone
    state_raw.put(dd, "counters", layout.total_key("c1", "old"), records.pack_counts((5, 500, 7)))
    assert reads.counters(dd, "c1", "old") == reads.ActorCounters(5, 500, 7, None, 0, 0)
    assert reads.counters(dd, "c2", "u1") is None

    assert reads.budget(dd, "c1", "cny-1") == (4, 400)
    assert reads.budget(dd, "c1", "nothing") is None
    assert reads.budgets(dd) == {"c1/cny-1": (4, 400)}
    assert sum(e["amount_fen"] for e in reads.ledger(dd)) == 400

    # every request's record: its decision's number in the log and its fingerprint
    found = reads.requests(dd)
    assert sorted(n for n, _fp in found.values()) == [1, 2, 3, 4, 5]
    assert all(fp is not None and len(fp) == 17 for _n, fp in found.values())
    assert set(found) == {b"r0", b"r1", b"r2", b"r3", layout.request_key("app", "x1")}
    for rid in ("r0", "r1", "r2", "r3"):
        assert reads.request_record(dd, rid) == found[rid.encode()]
    assert reads.request_record(dd, "x1", "app") == found[layout.request_key("app", "x1")]
    assert reads.request_record(dd, "x1") is None                # that id was sent by a client
    assert reads.request_record(dd, "never") is None
    number, _fp = found[b"r3"]
    decision, award = reads.decision_of(dd, "r3"), out[3].award
    assert decision is not None and award is not None and decision["award"]["ledger_seq"] == award.ledger_seq
    # a record written before fingerprints: the decision's number alone
    key = layout.request_key("", "r3")
    raw_record = state_raw.get(dd, "requests", key)
    assert raw_record is not None and raw_record[:8] == number.to_bytes(8, "big")
    state_raw.put(dd, "requests", key, raw_record[:8])
    assert reads.request_record(dd, "r3") == (number, None)

    # the scan history of a scanned code, none of a code never scanned
    history = reads.scan_history(dd, dd.verify_code(codes[0]).serial)
    assert history is not None
    assert (history.first_ms, history.first_region, history.count, history.first_actor) == (
        times[0], CHENGDU, 1, "u1")
    [unscanned] = dd.issue_codes("BEER", "item", 1).as_strings()
    assert reads.scan_history(dd, dd.verify_code(unscanned).serial) is None

    # the campaign's secret is the one its commitment was published for
    secret = reads.campaign_secret(dd, "c1")
    assert secret is not None and len(secret) == 32
    assert hashlib.sha256(secret).hexdigest() == stored["commitment"]
    assert reads.campaign_secret(dd, "c2") is None


def test_points_reads_after_real_decisions_and_a_redemption(dd: scangate.DataDir) -> None:
    rewards.put_campaign(dd, STORES, "s1.toml")
    cases = dd.issue_codes("BEER", "case", 3).as_strings()
    april, may = ms(2026, 4, 10), ms(2026, 5, 10)
    assert reads.points_accounts(dd) == {} and reads.points_histories(dd) == {}
    assert reads.history_number(dd) is None
    out = decide(dd, [ScanRequest("s0", cases[0], "store-1", actor_type="store", region=CHENGDU, time_ms=april),
                      ScanRequest("s1", cases[1], "store-1", actor_type="store", region=CHENGDU, time_ms=may),
                      ScanRequest("s2", cases[2], "store/2", actor_type="store", region=CHENGDU, time_ms=may)])
    seqs = [d.award.ledger_seq for d in out]  # type: ignore[union-attr]
    assert [d.award.points for d in out] == [100, 100, 100]  # type: ignore[union-attr]
    with clock.use(clock.ManualClock(may + 1)):
        spent = points.redeem(dd, "store-1", 30, "spend-1", note="mug")
        refused = points.redeem(dd, "store/2", 101, "spend-2")
    assert spent.ok and not refused.ok

    assert reads.points_accounts(dd) == {"store-1": (170, 200), "store/2": (100, 100)}
    one = [records.PointsEntry(100, 100, "award", f"ledger:{seqs[0]}", april),
           records.PointsEntry(100, 200, "award", f"ledger:{seqs[1]}", may),
           records.PointsEntry(-30, 170, "redeem", "mug", may + 1)]
    two = [records.PointsEntry(100, 100, "award", f"ledger:{seqs[2]}", may)]
    assert reads.points_history(dd, "store-1") == one
    assert reads.points_history(dd, "store/2") == two
    assert reads.points_history(dd, "store") == []          # a prefix of another actor is no actor
    assert reads.points_histories(dd) == {"store-1": one, "store/2": two}
    assert reads.history_number(dd) == 4
    assert reads.redemption(dd, "spend-1") == records.RedemptionRecord("spend-1", "store-1", 30, True, 170, None)
    assert reads.redemption(dd, "spend-2") == records.RedemptionRecord(
        "spend-2", "store/2", 101, False, 100, "insufficient_points")
    assert reads.redemption(dd, "never") is None
    assert reads.month_points(dd, "2026-04") == {"store-1": 100}
    assert reads.month_points(dd, "2026-05") == {"store-1": 100, "store/2": 100}
    assert reads.month_points(dd, "2026-06") == {}
    # the same values as the points API's
    assert points.balance(dd, "store-1") == 170 and points.earned_of(dd, "store-1") == 200


@pytest.fixture
def clean_policy() -> Iterator[None]:
    plugins.configure(None, verify=False)
    yield
    plugins.configure(None, verify=False)
    sys.modules.pop("scangate_test_state_raw_plugin", None)


def test_plugin_failures_are_counted_per_campaign_and_plugin(dd: scangate.DataDir, clean_policy: None) -> None:
    def fails(ctx: Any) -> Any:
        raise RuntimeError("plugin bug")

    module = types.ModuleType("scangate_test_state_raw_plugin")
    module.rule = fails  # type: ignore[attr-defined]
    sys.modules[module.__name__] = module
    ref = f"{module.__name__}:rule"
    plugins.configure(sorted(plugins.allowed_refs() | {ref}))
    rewards.put_campaign(dd, CONSUMER.replace('odds = "100%"', f'odds = "100%"\nplugins = ["{ref}"]'), "c1.toml")
    codes = dd.issue_codes("BEER", "item", 3).as_strings()
    assert reads.plugin_failures(dd, "c1", ref) == 0
    out = decide(dd, [ScanRequest(f"p{i}", c, f"u{i}", region=CHENGDU, time_ms=ms(2026, 3, 10))
                      for i, c in enumerate(codes)])
    assert [d.no_reward for d in out] == [NoReward.PLUGIN_FAILED] * 3
    assert reads.plugin_failures(dd, "c1", ref) == 3
    assert reads.plugin_failures(dd, "c2", ref) == 0
    assert reads.plugin_failures(dd, "c1", "another:rule") == 0


# ------------------------------------------------------------------ damage the readers name
def test_damaged_records_are_corruption_naming_them(dd: scangate.DataDir) -> None:
    rewards.put_campaign(dd, CONSUMER, "c1.toml")
    rewards.put_campaign(dd, STORES, "s1.toml")
    [code] = dd.issue_codes("BEER", "item", 1).as_strings()
    [case] = dd.issue_codes("BEER", "case", 1).as_strings()
    decide(dd, [ScanRequest("r0", code, "u1", region=CHENGDU, time_ms=ms(2026, 3, 10)),
                ScanRequest("s0", case, "store-1", actor_type="store", region=CHENGDU, time_ms=ms(2026, 3, 10))])

    total = layout.total_key("c1", "u1")
    state_raw.put(dd, "counters", total, records.pack_counts((1, 100)))
    with pytest.raises(CorruptionError, match=r"^counters of 'u1' in campaign 'c1': 16 bytes, not 24 or 48$"):
        reads.counters(dd, "c1", "u1")
    state_raw.put(dd, "counters", layout.day_key(total, "2026-03-09"), b"\x00" * 24)
    with pytest.raises(CorruptionError, match=r"^counters of 'u1' in campaign 'c1' on 2026-03-09: 24 bytes, not 16$"):
        reads.day_counters(dd, "c1", "u1", "2026-03-09")

    state_raw.put(dd, "budgets", layout.budget_key("c1", "cny-1"), b"\x00" * 7)
    with pytest.raises(CorruptionError, match=r"^budget of prize 'cny-1' of campaign 'c1': 7 bytes, not 16$"):
        reads.budget(dd, "c1", "cny-1")
    with pytest.raises(CorruptionError, match=r"^budget 'c1/cny-1': 7 bytes, not 16$"):
        reads.budgets(dd)

    state_raw.put(dd, "points", layout.account_key(b"store-1"), records.I64.pack(100))   # schema 1's form
    with pytest.raises(CorruptionError, match=r"^points account 'store-1': 8 bytes, not 16 \(a schema 1 record"):
        reads.points_accounts(dd)
    state_raw.put(dd, "points", layout.HISTORY_SEQ, b"\x01")
    with pytest.raises(CorruptionError, match=r"^points history number: 1 bytes, not 8$"):
        reads.history_number(dd)
    [(history_key, entry)] = [(k, v) for k, v in state_raw.items(dd, "points")
                              if k.startswith(layout.history_prefix(b"store-1"))]
    state_raw.put(dd, "points", history_key, entry[:-2])
    with pytest.raises(CorruptionError, match=r"^points history record: "):
        reads.points_history(dd, "store-1")
    with pytest.raises(CorruptionError, match=r"^points history record: "):
        reads.points_histories(dd)
    state_raw.put(dd, "points", layout.HISTORY_PREFIX + b"no-number", entry)
    assert state_raw.delete(dd, "points", history_key)
    with pytest.raises(CorruptionError, match=r"^points history key b'h/no-number': not <actor> NUL <number>$"):
        reads.points_histories(dd)

    key = layout.request_key("", "r0")
    state_raw.put(dd, "requests", key, b"\x00" * 5)
    with pytest.raises(CorruptionError, match=r"^request record b'r0': 5 bytes, not a decision number$"):
        reads.request_record(dd, "r0")
    with pytest.raises(CorruptionError, match=r"^request record b'r0': 5 bytes, not a decision number$"):
        reads.requests(dd)

    # an edited ledger entry that is no ledger record: its reader names the kind
    [(seq_key, ledger_entry)] = state_raw.items(dd, "ledger")[:1]
    assert seq_key == layout.seq_key(1)
    state_raw.put(dd, "ledger", seq_key, ledger_entry[:10])
    with pytest.raises(CorruptionError, match=r"^ledger record: "):
        list(reads.ledger(dd))
