"""Data directories written by earlier releases open and answer as they did.

tests/data/datadir-vN.tar.gz was made by tests/data/make_datadir.py with the code
of a commit whose SCHEMA_VERSION was N: v1 the record formats before the typed
state layer of issue 13 (JSON), v2 the typed msgpack records with one decision
log record per decision; datadir-vN.json says what it holds and the answers it
gave. A copy of each is opened with today's code: every stored decision comes
back byte for byte on retry, the ledger audits, budgets and points are as
recorded, and new scans decide on top of it. Opening upgrades it to today's
schema (scangate.state.migrate) in one transaction: the tests below check every
upgraded record, that a record the upgrade cannot read leaves the directory
exactly as it was, and that a directory from a newer scangate is refused.
"""
from __future__ import annotations

import dataclasses
import json
import signal
import subprocess
import sys
import textwrap
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import lmdb     # the schema 1 directory as stored: scangate would upgrade it on open
import msgspec
import pytest

import scangate
from scangate import audit, points, rewards, verdicts
from scangate.errors import CorruptionError
from scangate.state import records
from scangate.state.layout import DATABASES, HISTORY_PREFIX, TRACE_DATABASES
from scangate.state.migrate import SCHEMA_VERSION
from scangate.enums import CodeStatus
from scangate.rewards import Decision, NoReward, ScanRequest

DATA = Path(__file__).resolve().parent / "data"
MANIFESTS: dict[str, dict[str, Any]] = {
    v: json.loads((DATA / f"datadir-{v}.json").read_text(encoding="utf-8")) for v in ("v1", "v2")}
MANIFEST = MANIFESTS["v1"]
NOON = 1_780_286_400_000
CHENGDU, GUANGZHOU = 510104, 440106


def extract(into: Path, version: str = "v1") -> Path:
    with tarfile.open(DATA / f"datadir-{version}.tar.gz") as tar:
        # the "data" filter (no links out, no device files) where this Python has it (3.11.4+)
        tar.extractall(into, **({"filter": "data"} if hasattr(tarfile, "data_filter") else {}))  # noqa: S202
    return into / f"datadir-{version}"


def raw_records(path: Path) -> dict[str, list[tuple[bytes, bytes]]]:
    """Every record of every database where the directory's schema keeps it (the
    trace databases in the trace environment from schema 4), opened with plain
    py-lmdb (no scangate, so no upgrade); a database not there reads as empty."""
    env = lmdb.open(str(path / "lmdb"), max_dbs=64, readonly=True, lock=False)
    try:
        with env.begin() as txn:
            schema = int.from_bytes(txn.get(b"schema", db=env.open_db(b"meta", txn=txn)), "big")
        out = {name: _records(env, name) for name in DATABASES if schema < 4 or name not in TRACE_DATABASES}
    finally:
        env.close()
    if schema >= 4:
        trace = lmdb.open(str(path / "lmdb" / "trace"), max_dbs=16, readonly=True, lock=False)
        try:
            out.update((name, _records(trace, name)) for name in TRACE_DATABASES)
        finally:
            trace.close()
    return {name: out[name] for name in DATABASES}


def _records(env: lmdb.Environment, name: str) -> list[tuple[bytes, bytes]]:
    with env.begin() as txn:
        try:
            db = env.open_db(name.encode(), txn=txn, create=False)
        except (lmdb.NotFoundError, lmdb.ReadonlyError):    # not in this environment
            return []
        return [(bytes(k), bytes(v)) for k, v in txn.cursor(db=db)]


def main_databases(path: Path) -> set[str]:
    """The named databases of the main environment."""
    env = lmdb.open(str(path / "lmdb"), max_dbs=64, readonly=True, lock=False)
    try:
        with env.begin() as txn:
            return {bytes(k).decode() for k, _v in txn.cursor()}
    finally:
        env.close()


@dataclasses.dataclass
class Made:
    """An earlier release's data directory, opened (and so upgraded) by today's
    code, and the manifest of what it held and answered."""

    dd: scangate.DataDir
    manifest: dict[str, Any]


@pytest.fixture(params=sorted(MANIFESTS))
def made(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Made]:
    d = scangate.open_data_dir(extract(tmp_path, request.param))
    try:
        yield Made(d, MANIFESTS[request.param])
    finally:
        d.close()


def test_every_stored_decision_comes_back_on_retry(made: Made) -> None:
    dd, manifest = made.dd, made.manifest
    requests = [ScanRequest(**r) for r in manifest["requests"]]
    again = rewards.decide_scans(dd, requests)
    assert [d.to_json() if isinstance(d, Decision) else repr(d) for d in again] == manifest["decisions"]
    # the fingerprints stored then (BLAKE2b, version 1) still tell a reused id from a retry
    reused = [dataclasses.replace(r, actor=r.actor + "-other") for r in requests[:3]]
    assert [type(d).__name__ for d in rewards.decide_scans(dd, reused)] == ["RequestIdReused"] * 3
    # and changed nothing: the same budgets and points as recorded
    assert {c: rewards.budgets_used(dd, c) for c in manifest["budgets_used"]} == manifest["budgets_used"]
    assert {a: points.balance(dd, a) for a in manifest["points"]} == manifest["points"]


def test_the_ledger_audits(made: Made) -> None:
    dd, manifest = made.dd, made.manifest
    entries = list(audit.audit_ledger(dd))
    assert [e["seq"] for e in entries] == list(range(1, manifest["ledger_last"] + 1))
    assert [e["seq"] for e in entries if not e["verified"]] == []


def test_codes_recalls_and_trace_read_as_written(made: Made) -> None:
    dd, manifest = made.dd, made.manifest
    codes = manifest["items"] + manifest["cases"] + manifest["pallets"] + manifest["recalled"]
    result = dd.verify_codes(codes)
    assert set(result.status.tolist()) == {int(CodeStatus.GENUINE)}
    assert len(verdicts.list_recalls(dd)) == manifest["recalls"]
    # items 36..47 went in pallet 1, shipped to GD (Guangdong): in Chengdu they are diverted
    (d,) = verdicts.decide_verdicts(dd, [verdicts.Scan(manifest["items"][46], "new", region=CHENGDU,
                                                        time_ms=NOON)])
    assert d.verdict is verdicts.Verdict.DIVERTED
    assert d.evidence["trace"]["dealer_id"] == "GD"
    (r,) = verdicts.decide_verdicts(dd, [verdicts.Scan(manifest["recalled"][0], "new", time_ms=NOON)])
    assert r.verdict is verdicts.Verdict.REVOKED


def test_new_scans_decide_on_top_of_it(made: Made) -> None:
    dd, manifest = made.dd, made.manifest
    last = manifest["ledger_last"]
    # store-1 earned 200 points: silver tier, 100 points x 150 %
    (store,) = rewards.decide_scans(dd, [ScanRequest("new-s", manifest["cases"][6], "store-1", actor_type="store",
                                                     region=GUANGZHOU, time_ms=NOON + 3_600_000)])
    assert isinstance(store, Decision) and store.award is not None
    assert (store.award.points, store.award.ledger_seq) == (150, last + 1)
    assert points.balance(dd, "store-1") == manifest["points"]["store-1"] + 150
    # a code scanned before is a repeat scan, with its first scan's time
    (repeat,) = rewards.decide_scans(dd, [ScanRequest("new-r", manifest["items"][2], "someone", region=CHENGDU,
                                                      time_ms=NOON + 2 * 86_400_000)])
    assert isinstance(repeat, Decision) and repeat.no_reward is NoReward.ALREADY_CLAIMED
    assert repeat.verdict.first_scan["time_ms"] == manifest["requests"][2]["time_ms"]
    assert [e["verified"] for e in audit.audit_ledger(dd, last + 1)] == [True]
    # the old decision records and the new batches' records side by side: every
    # stored decision still comes back, in one batch of retries
    requests = [ScanRequest(**r) for r in manifest["requests"]]
    assert [d.to_json() for d in rewards.decide_scans(dd, requests)] == manifest["decisions"]  # type: ignore[union-attr]


def test_opening_upgrades_every_schema_1_record(tmp_path: Path) -> None:
    path = extract(tmp_path)
    before = raw_records(path)
    assert before["meta"] and dict(before["meta"])[b"schema"] == (1).to_bytes(4, "big")
    assert all(v[:1] == b"{" for name in ("ledger", "decisions", "claims", "outbox") for _, v in before[name])
    scangate.open_data_dir(path).close()
    after = raw_records(path)
    assert dict(after["meta"])[b"schema"] == SCHEMA_VERSION.to_bytes(4, "big") == (4).to_bytes(4, "big")
    # each upgraded record holds what its JSON held, field by field
    for name, decode in (("ledger", records.decode_ledger), ("decisions", records.decode_decision),
                         ("claims", records.decode_claim), ("outbox", records.decode_payout),
                         ("lines", records.decode_line), ("dealers", records.decode_dealer),
                         ("shipped", records.decode_shipment), ("ship_log", records.decode_shipment),
                         ("revoked", records.decode_range_recall)):     # the fixture's recalls: one range
        old = {k: json.loads(v) for k, v in before[name]}
        new = {k: records.to_json(decode(v)) for k, v in after[name]}
        assert len(new) == len(old) > 0, name
        for key, fields in new.items():
            want = {f: v for f, v in old[key].items() if f != "message"}   # a decision's message is derived
            assert fields == want, (name, key)
    history = [(k, v) for k, v in after["points"] if k.startswith(HISTORY_PREFIX)]
    assert history and all(isinstance(records.decode_points_entry(v), records.PointsEntry) for _, v in history)
    # the rest is as it was: trace, issuance, scans, counters, budgets, campaigns
    for name in ("ranges", "links", "children", "scans", "counters", "budgets", "campaigns"):
        assert after[name] == before[name], name
    # a second open finds today's schema and changes nothing
    scangate.open_data_dir(path).close()
    assert raw_records(path) == after


def test_opening_schema_2_changes_only_its_version_and_where_the_trace_is(tmp_path: Path) -> None:
    """Schema 2 -> 3 rewrites nothing: schema 2's decision log records, one
    decision each under its own number, are read as batches of one. Schema 3 ->
    4 moves the trace databases, record for record, to the trace environment."""
    path = extract(tmp_path, "v2")
    before = raw_records(path)
    assert dict(before["meta"])[b"schema"] == (2).to_bytes(4, "big")
    decisions = before["decisions"]
    assert [int.from_bytes(k, "big") for k, _v in decisions] == list(range(1, len(MANIFESTS["v2"]["decisions"]) + 1))
    assert all(msgspec.msgpack.decode(v)[0] == 2 for _k, v in decisions)   # a Decision each
    scangate.open_data_dir(path).close()
    after = raw_records(path)
    assert dict(after["meta"])[b"schema"] == (4).to_bytes(4, "big")
    assert {name: rows for name, rows in after.items() if name != "meta"} == \
        {name: rows for name, rows in before.items() if name != "meta"}
    assert before["links"] and before["shipped"] and before["dealers"]    # the fixture has trace to move
    assert not main_databases(path) & set(TRACE_DATABASES)                 # moved, not copied
    assert {k: v for k, v in after["meta"] if k != b"schema"} == {k: v for k, v in before["meta"] if k != b"schema"}


def test_an_upgrade_that_cannot_read_a_record_changes_nothing(tmp_path: Path) -> None:
    path = extract(tmp_path)
    env = lmdb.open(str(path / "lmdb"), max_dbs=64)    # plain py-lmdb: damage schema 1 before any upgrade
    with env.begin(write=True) as txn:       # the last ledger entry, cut short: the upgrade fails at the end
        db = env.open_db(b"ledger", txn=txn)
        cur = txn.cursor(db=db)
        assert cur.last()
        txn.put(bytes(cur.key()), bytes(cur.value())[:40], db=db)
    env.close()
    before = raw_records(path)
    with pytest.raises(CorruptionError, match=r"migration: ledger entry #\d+: not the JSON record schema 1 wrote"):
        scangate.open_data_dir(path)
    assert raw_records(path) == before          # not one record upgraded, the schema still 1


def test_a_directory_from_a_newer_scangate_is_refused(tmp_path: Path) -> None:
    path = extract(tmp_path)
    env = lmdb.open(str(path / "lmdb"), max_dbs=64)    # plain py-lmdb: a version scangate must not open
    with env.begin(write=True) as txn:
        txn.put(b"schema", (SCHEMA_VERSION + 1).to_bytes(4, "big"), db=env.open_db(b"meta", txn=txn))
    env.close()
    with pytest.raises(CorruptionError, match=f"schema version {SCHEMA_VERSION + 1}, written by a newer scangate"):
        scangate.open_data_dir(path)


def test_records_of_one_kind_do_not_read_as_another() -> None:
    claim = records.encode(records.Claim("c", 7))
    with pytest.raises(CorruptionError, match="ledger record"):
        records.decode_ledger(claim)
    assert records.decode_claim(claim) == records.Claim("c", 7)
    assert msgspec.msgpack.decode(claim)[0] == 1      # the version tag leads every array record


def test_a_decision_stored_inline_moves_into_the_log(tmp_path: Path) -> None:
    """Data older than the decision log kept a request's decision (JSON) in the
    request index itself: the upgrade appends it to the log and points at it, and a
    retry gets it back."""
    path = extract(tmp_path)
    first = MANIFEST["requests"][0]
    env = lmdb.open(str(path / "lmdb"), max_dbs=64)    # plain py-lmdb: the old layout, before the upgrade
    with env.begin(write=True) as txn:
        requests, log = env.open_db(b"requests", txn=txn), env.open_db(b"decisions", txn=txn)
        key = first["request_id"].encode()
        pointer = bytes(txn.get(key, db=requests))[:8]
        txn.put(key, bytes(txn.get(pointer, db=log)), db=requests)      # the old layout
        cur = txn.cursor(db=log)
        assert cur.last()
        last = int.from_bytes(bytes(cur.key()), "big")
    env.close()
    with scangate.open_data_dir(path) as d:
        (again,) = rewards.decide_scans(d, [ScanRequest(**first)])
        assert isinstance(again, Decision) and again.to_json() == MANIFEST["decisions"][0]
    after = raw_records(path)
    assert dict(after["requests"])[first["request_id"].encode()] == (last + 1).to_bytes(8, "big")
    assert records.to_json(records.decode_decision(after["decisions"][-1][1])) == {
        k: v for k, v in MANIFEST["decisions"][0].items() if k != "message"}


UPGRADER = textwrap.dedent("""
    import logging, sys
    import scangate
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(message)s")
    scangate.open_data_dir(sys.argv[1]).close()
    print("opened", flush=True)
""")


def test_an_interrupted_move_of_the_trace_is_made_again_over_what_it_left(tmp_path: Path) -> None:
    """Schema 3 -> 4 commits the trace environment's copy before the main
    environment drops the originals: a crash between the two leaves the old
    schema with its trace whole and a stray copy in the trace environment, which
    the next open replaces. Here that stray copy is made by hand, with a record
    that is not in the original and another damaged."""
    path = extract(tmp_path, "v2")
    before = raw_records(path)
    stray = lmdb.open(str(path / "lmdb" / "trace"), max_dbs=16)
    with stray.begin(write=True) as txn:
        links = stray.open_db(b"links", txn=txn)
        key, value = before["links"][0]
        txn.put(key, value[:-1], db=links)                      # damaged
        txn.put(b"\xff" * 7, value, db=links)                  # not in the original
        txn.put(b"D-stray", b"x", db=stray.open_db(b"dealers", txn=txn))
    stray.close()
    scangate.open_data_dir(path).close()
    after = raw_records(path)
    for name in ("links", "children", "dealers", "shipped", "ship_log"):
        assert after[name] == before[name], name


def test_a_kill_during_the_upgrade_leaves_schema_1_whole_and_the_next_open_upgrades(tmp_path: Path) -> None:
    """kill -9 while the upgrade runs (after it logged that it is upgrading the
    ledger, before its one transaction commits): the directory is the schema 1
    directory byte for byte, and the next open upgrades all of it."""
    path = extract(tmp_path)
    env = lmdb.open(str(path / "lmdb"), max_dbs=64, map_size=1 << 32)  # plain: schema 1 grown before its upgrade
    extra = 300_000        # schema 1 ledger entries: enough that the upgrade runs long after its first log line
    with env.begin(write=True) as txn:
        db = env.open_db(b"ledger", txn=txn)
        cur = txn.cursor(db=db)
        assert cur.last()
        last, entry = int.from_bytes(bytes(cur.key()), "big"), json.loads(bytes(cur.value()))
        cur.putmulti([((last + i).to_bytes(8, "big"), json.dumps({**entry, "seq": last + i}).encode())
                      for i in range(1, extra + 1)], append=True)
    env.close()
    before = raw_records(path)
    with subprocess.Popen([sys.executable, "-c", UPGRADER, str(path)], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True) as proc:
        assert proc.stderr is not None
        for line in proc.stderr:
            if "upgrading to schema 2: ledger" in line:
                proc.send_signal(signal.SIGKILL)
                break
        else:
            raise AssertionError(f"the upgrade never reached the ledger: exit {proc.wait()}")
        assert proc.wait() == -signal.SIGKILL
    assert raw_records(path) == before             # nothing of the upgrade: schema 1, every record as it was
    done = subprocess.run([sys.executable, "-c", UPGRADER, str(path)], capture_output=True, text=True,
                          timeout=600, check=False)
    assert done.returncode == 0 and done.stdout == "opened\n", done.stderr[-2000:]
    after = raw_records(path)
    assert dict(after["meta"])[b"schema"] == SCHEMA_VERSION.to_bytes(4, "big")
    assert len(after["ledger"]) == len(before["ledger"]) == MANIFEST["ledger_last"] + extra
    assert records.to_json(records.decode_ledger(after["ledger"][-1][1]))["seq"] == last + extra
