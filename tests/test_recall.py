"""Recalls (issue 12, item 10): `scangate recall` for a line, a serial range or
the codes of a file, `scangate recalls list`, the RecallService gRPC calls, and
every way a recalled code is looked at (verify, trace, scan) reporting `revoked`."""
from __future__ import annotations

import json
import struct
import tarfile
from pathlib import Path

import lmdb     # schema 1 directories, read and written as on disk: scangate would upgrade them on open
import pytest

import scangate
from scangate import verdicts
from scangate.clock import ManualClock, use
from scangate.errors import CorruptionError
from scangate.recalls import Recall
from scangate.state import layout
from scangate.state import raw as state_raw
from scangate.verdicts import Reason, Scan, Verdict, decide_verdicts

from serverproc import running

CAMPAIGN = """
id = "red-packets"
name = "Red packet on every cap"
start = 2026-01-01
end = 2030-01-01
actor = "consumer"
odds = "100%"
[[prizes]]
id = "cny-2"
kind = "cash"
amount_fen = 200
budget_count = 10000
"""


def _world(data: Path) -> tuple[list[str], list[str]]:
    """Line 1: 10 BEER items (serials 1..10); line 2: 5 WINE items (11..15)."""
    with scangate.init_data_dir(data) as dd:
        beer = dd.issue_codes("BEER", "item", 10).as_strings()
        wine = dd.issue_codes("WINE", "item", 5).as_strings()
    return beer, wine


def _recalls(run_cli, data: Path) -> list[dict]:  # type: ignore[no-untyped-def]
    r = run_cli("recalls", "list", "--data", data, "--json")
    assert r.returncode == 0, r.stderr
    return [json.loads(x) for x in r.stdout.splitlines()]


def _forge(code: str) -> str:
    """The same code with one symbol of its block changed (the check symbol fixed
    up by verify's typo logic would not matter: it no longer authenticates)."""
    i = 10
    return code[:i] + ("A" if code[i] != "A" else "B") + code[i + 1:]


# ------------------------------------------------------------------ the CLI
def test_recall_a_line_verify_trace_and_scan_say_revoked(tmp_path: Path, run_cli) -> None:  # type: ignore[no-untyped-def]
    data = tmp_path / "d"
    beer, wine = _world(data)
    (tmp_path / "codes.txt").write_text("\n".join(beer[:2] + wine[:2]) + "\n")
    r = run_cli("recall", "--data", data, "--line", 1, "--reason", "seal defect")
    assert r.returncode == 0, r.stderr
    assert "recalled: line 1: seal defect" in r.stdout
    # verify: a recalled code authenticates but is counted revoked, and the answer is no
    r = run_cli("verify", "--data", data, tmp_path / "codes.txt")
    assert r.returncode == 1
    rows = [line.split("\t") for line in r.stdout.splitlines()]
    assert [row[1] for row in rows] == ["revoked", "revoked", "genuine", "genuine"]
    assert "2 genuine, 2 revoked" in r.stderr
    r = run_cli("verify", "--data", data, "--json", tmp_path / "codes.txt")
    out = [json.loads(x) for x in r.stdout.splitlines()]
    assert out[0]["status"] == "revoked" and out[0]["sku"] == "BEER"
    assert out[-1]["summary"]["revoked"] == 2 and out[-1]["summary"]["genuine"] == 2
    # the genuine rest of the file still passes
    (tmp_path / "wine.txt").write_text("\n".join(wine) + "\n")
    assert run_cli("verify", "--data", data, "-q", tmp_path / "wine.txt").returncode == 0
    # trace: the chain is still shown (a recall needs it), as revoked, exit 1
    r = run_cli("trace", "--data", data, beer[0])
    assert r.returncode == 1 and f"{beer[0]}: revoked item of BEER" in r.stdout and "SG-R1" in r.stdout
    r = run_cli("trace", "--data", data, beer[0], "--json")
    info = json.loads(r.stdout)
    assert r.returncode == 1 and info["status"] == "revoked" and info["reasons"] == ["SG-R1"]
    assert info["evidence"]["recall_line"] == {"line_id": 1, "reason": "seal defect"}
    assert run_cli("trace", "--data", data, wine[0]).returncode == 0
    # scan
    r = run_cli("scan", "--data", data, beer[0], "--actor", "u1", "--json")
    assert r.returncode == 1 and json.loads(r.stdout)["verdict"]["verdict"] == "revoked"
    assert json.loads(r.stdout)["verdict"]["reasons"][:2] == ["SG-G1", "SG-R1"]


def test_recalling_twice_adds_nothing(tmp_path: Path, run_cli) -> None:  # type: ignore[no-untyped-def]
    data = tmp_path / "d"
    beer, _ = _world(data)
    (tmp_path / "c.txt").write_text(f"{beer[3]}\n{beer[4]}\n\n{beer[7]}\n")
    for args in (("--line", 2), ("--range", 3, 5), ("--codes", tmp_path / "c.txt")):
        first = run_cli("recall", "--data", data, *args, "--reason", "bad lot", "--json")
        assert first.returncode == 0, first.stderr
        again = run_cli("recall", "--data", data, *args, "--reason", "said again", "--json")
        assert again.returncode == 0, again.stderr
        assert json.loads(again.stdout)["added"] == 0
        assert json.loads(again.stdout)["recalls"] == json.loads(first.stdout)["recalls"]   # the first reason stays
    r = run_cli("recall", "--data", data, "--range", 3, 5, "--reason", "x")
    assert r.stdout.startswith("already recalled")
    got = _recalls(run_cli, data)
    # line 2; range 3..5; the file's codes as runs of consecutive serials: 4..5 and 8
    assert [(g["kind"], g["line_id"], g["first"], g["last"], g["source"]) for g in got] == [
        ("line", 2, None, None, "line"), ("range", None, 3, 5, "range"),
        ("range", None, 4, 5, "codes"), ("range", None, 8, 8, "codes")]
    assert all(g["reason"] == "bad lot" for g in got)


@pytest.mark.parametrize("args, message", [
    (("--line", 99), "no product line 99"),
    (("--line", -1), "line: -1"),
    (("--range", 5, 3), "FIRST 5 is after LAST 3"),
    (("--range", 0, 3), "serials start at 1"),
    (("--range", 14, 16), "serial 16 of 14..16 was never issued"),     # partly outside any issued range
    (("--range", 100, 200), "serial 100 of 100..200 was never issued"),
    ((), "exactly one of --line, --range or --codes"),
    (("--line", 1, "--range", 1, 2), "exactly one of"),
])
def test_bad_recalls_are_refused_and_change_nothing(tmp_path: Path, run_cli, args, message) -> None:  # type: ignore[no-untyped-def]
    data = tmp_path / "d"
    _world(data)
    r = run_cli("recall", "--data", data, *args, "--reason", "x")
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert message in r.stderr
    assert _recalls(run_cli, data) == []


def test_empty_reason_is_refused(tmp_path: Path, run_cli) -> None:  # type: ignore[no-untyped-def]
    data = tmp_path / "d"
    _world(data)
    r = run_cli("recall", "--data", data, "--line", 1, "--reason", "  ")
    assert r.returncode == 2 and "reason: must not be empty" in r.stderr
    assert _recalls(run_cli, data) == []


def test_a_codes_file_with_a_forged_code_is_refused_whole(tmp_path: Path, run_cli) -> None:  # type: ignore[no-untyped-def]
    data = tmp_path / "d"
    beer, wine = _world(data)
    with scangate.open_data_dir(data) as dd:
        other = scangate.init_data_dir(tmp_path / "other")     # genuine elsewhere, not here
        foreign = other.issue_codes("BEER", "item", 1).as_strings()[0]
        other.close()
        assert dd.verify_code(_forge(beer[1])).status is not scangate.CodeStatus.GENUINE
    f = tmp_path / "recall.txt"
    f.write_text(f"{beer[0]}\n{_forge(beer[1])}\n{wine[0]}\nnot-a-code\n")
    r = run_cli("recall", "--data", data, "--codes", f, "--reason", "x")
    assert r.returncode == 2
    assert "nothing applied" in r.stderr
    assert "line 2: code:" in r.stderr and "line 4: code: malformed" in r.stderr
    assert "line 1:" not in r.stderr and "line 3:" not in r.stderr
    assert _recalls(run_cli, data) == []
    assert run_cli("scan", "--data", data, beer[0], "--actor", "u").returncode == 0   # still genuine
    # a code another data directory issued is no code of ours either
    f.write_text(f"{beer[0]}\n{foreign}\n")
    r = run_cli("recall", "--data", data, "--codes", f, "--reason", "x", "--json")
    assert r.returncode == 2 and "line 2" in r.stdout
    assert _recalls(run_cli, data) == []


def test_recall_single_codes_only_those(tmp_path: Path, run_cli) -> None:  # type: ignore[no-untyped-def]
    data = tmp_path / "d"
    beer, _ = _world(data)
    r = run_cli("recall", "--data", data, "--codes", "-", "--reason", "stolen case", input=f"{beer[5]}\n")
    assert r.returncode == 0, r.stderr
    assert "recalled 1 codes in 1 entries (1 new" in r.stdout
    r = run_cli("verify", "--data", data, "-", input="\n".join(beer) + "\n")
    assert [row.split("\t")[1] for row in r.stdout.splitlines()] == ["genuine"] * 5 + ["revoked"] + ["genuine"] * 4
    r = run_cli("scan", "--data", data, beer[5], "--actor", "u", "--json")
    v = json.loads(r.stdout)["verdict"]
    assert v["verdict"] == "revoked" and v["evidence"]["recall_range"] == {"first": 6, "last": 6,
                                                                           "reason": "stolen case"}


def test_a_code_inside_a_recalled_range_keeps_the_range(tmp_path: Path) -> None:
    """Recalls were keyed by their first serial alone: recalling code serial 1
    after serials 1..10 replaced the range, un-recalling serials 2..10."""
    beer, _ = _world(tmp_path / "d")
    with scangate.open_data_dir(tmp_path / "d") as dd:
        verdicts.recall_range(dd, 1, 10, "whole run")
        verdicts.recall_codes(dd, [beer[0]], "this one too")
        out = decide_verdicts(dd, [Scan(c, "u") for c in beer])
        assert {v.verdict for v in out} == {Verdict.REVOKED}
        assert len(verdicts.list_recalls(dd)) == 2


def test_older_range_keys_are_still_read(tmp_path: Path) -> None:
    """A data directory written by the first recall code (key: b"R" + first; its
    value as the upgrade to schema 2 leaves it: [1, last 3, "old", at_ms 1, "range"])."""
    beer, _ = _world(tmp_path / "d")
    with scangate.open_data_dir(tmp_path / "d") as dd:
        # the first recall code's key, which layout no longer builds: b"R" + first
        state_raw.put(dd, "revoked", b"R" + struct.pack(">Q", 2), b"\x95\x01\x03\xa3old\x01\xa5range")
        assert [(r.first, r.last, r.reason) for r in verdicts.list_recalls(dd)] == [(2, 3, "old")]
        assert verdicts.recall_range(dd, 2, 3, "again").added == 0        # the same recall: nothing added
        v = decide_verdicts(dd, [Scan(beer[1], "u"), Scan(beer[3], "u")])
        assert [x.verdict for x in v] == [Verdict.REVOKED, Verdict.GENUINE]
        assert Reason.RANGE_RECALLED in v[0].reasons


# ------------------------------------------------------------------ the records
AT_MS = 1_780_000_000_000      # needs 8 bytes: msgpack uint 64 (0xcf)


def _revoked(data: Path) -> list[tuple[bytes, bytes]]:
    """The revoked database's raw entries, read with plain py-lmdb: a schema 1
    directory, which scangate would upgrade on open, read as it is on disk."""
    env = lmdb.open(str(data / "lmdb"), max_dbs=64, readonly=True, lock=False)
    try:
        with env.begin() as txn:
            return [(bytes(k), bytes(v)) for k, v in txn.cursor(db=env.open_db(b"revoked", txn=txn))]
    finally:
        env.close()


def test_recall_records_keep_their_bytes(tmp_path: Path) -> None:
    """A recall is a msgpack array led by its version tag (scangate.state.records):
    [1, reason, at_ms] for a line, [1, last, reason, at_ms, source] for a range.
    Expected bytes built here, by hand, from the msgpack spec."""
    beer, _ = _world(tmp_path / "d")
    with scangate.open_data_dir(tmp_path / "d") as dd, use(ManualClock(AT_MS)):
        verdicts.recall_line(dd, 2, "seal")
        verdicts.recall_range(dd, 3, 4, "hot")
        verdicts.recall_codes(dd, [beer[5]], "one")
        listed = verdicts.list_recalls(dd)
        stored = state_raw.items(dd, "revoked")
    at = b"\xcf" + AT_MS.to_bytes(8, "big")
    assert stored == [
        (b"L\x00\x00\x00\x02", b"\x93\x01\xa4seal" + at),
        (b"R" + struct.pack(">QQ", 3, 4), b"\x95\x01\x04\xa3hot" + at + b"\xa5range"),
        (b"R" + struct.pack(">QQ", 6, 6), b"\x95\x01\x06\xa3one" + at + b"\xa5codes"),
    ]
    assert listed == [Recall("line", "seal", AT_MS, line_id=2, source="line"),
                      Recall("range", "hot", AT_MS, first=3, last=4, source="range"),
                      Recall("range", "one", AT_MS, first=6, last=6, source="codes")]


def _schema_1(into: Path) -> Path:
    """The schema 1 data directory of tests/data (see tests/test_datadir_fixture.py)."""
    with tarfile.open(Path(__file__).resolve().parent / "data" / "datadir-v1.tar.gz") as tar:
        tar.extractall(into, **({"filter": "data"} if hasattr(tarfile, "data_filter") else {}))  # noqa: S202
    return into / "datadir-v1"


def _put_raw(data: Path, entries: list[tuple[bytes, bytes]]) -> None:
    """Add to a schema 1 directory's revoked database with plain py-lmdb (scangate would upgrade it)."""
    env = lmdb.open(str(data / "lmdb"), max_dbs=64)
    try:
        with env.begin(write=True) as txn:
            db = env.open_db(b"revoked", txn=txn)
            for k, v in entries:
                txn.put(k, v, db=db)
    finally:
        env.close()


def test_schema_1_recalls_are_upgraded_with_their_old_defaults(tmp_path: Path) -> None:
    """Schema 1's JSON recalls become the typed records on open: one written by the
    first recall code (no at_ms, no source, a range keyed by its first serial
    only) gets the values schema 1's reader gave it (at_ms 0, source "range"),
    and its key stays."""
    data = _schema_1(tmp_path)
    _put_raw(data, [(b"L" + struct.pack(">I", 1), b'{"reason": "old line"}'),
                    (b"R" + struct.pack(">Q", 70), b'{"last": 72, "reason": "old range"}')])
    scangate.open_data_dir(data).close()
    with scangate.open_data_dir(data) as dd:            # schema 2 now: a second open changes nothing
        after = dict(state_raw.items(dd, "revoked"))
    assert after[b"L\x00\x00\x00\x01"] == b"\x93\x01\xa8old line\x00"
    assert after[b"R" + struct.pack(">Q", 70)] == b"\x95\x01\x48\xa9old range\x00\xa5range"
    assert after[b"R" + struct.pack(">QQ", 59, 60)] == (b"\x95\x01\x3c\xb4fixture: a bad batch\xcf"
                                                       + (1_780_200_000_000).to_bytes(8, "big") + b"\xa5codes")
    assert len(after) == 3
    with scangate.open_data_dir(data) as dd:
        assert verdicts.list_recalls(dd) == [
            Recall("line", "old line", 0, line_id=1, source="line"),
            Recall("range", "fixture: a bad batch", 1_780_200_000_000, first=59, last=60, source="codes"),
            Recall("range", "old range", 0, first=70, last=72, source="range")]


@pytest.mark.parametrize(("key", "value", "message"), [
    (b"L\x00\x00\x00\x01", b'{"at_ms": 5}', "migration: recall of line 1: no reason"),
    (b"R" + struct.pack(">QQ", 70, 72), b'{"last": "72", "reason": "x"}',
     r"migration: recall of serials from 70: Expected `int`, got `str` - at `\$\[1\]`"),
    (b"R" + struct.pack(">QQ", 70, 72), b"\x95\x01", "migration: recall of serials from 70: not the JSON record"),
    (b"X7", b'{"reason": "x"}', r"migration: recall b'X7': not a line \(L\) or range \(R\) key"),
])
def test_a_schema_1_recall_the_upgrade_cannot_read_changes_nothing(tmp_path: Path, key: bytes, value: bytes,
                                                                   message: str) -> None:
    data = _schema_1(tmp_path)
    _put_raw(data, [(key, value)])
    before = _revoked(data)
    with pytest.raises(CorruptionError, match=message):
        scangate.open_data_dir(data)
    assert _revoked(data) == before


def test_a_damaged_recall_record_is_corruption(tmp_path: Path) -> None:
    """A recall that is not its typed record (here: schema 1's JSON in a schema 2
    directory) is CorruptionError naming the record, for every reader."""
    beer, _ = _world(tmp_path / "d")
    with scangate.open_data_dir(tmp_path / "d") as dd:
        state_raw.put(dd, "revoked", layout.range_recall_key(3, 4),
                      b'{"last": 4, "reason": "json", "at_ms": 1, "source": "range"}')
        with pytest.raises(CorruptionError, match="range recall record"):
            verdicts.list_recalls(dd)
        with pytest.raises(CorruptionError, match="range recall record"):
            decide_verdicts(dd, [Scan(beer[0], "u")])


# ------------------------------------------------------------------ gRPC
def test_recall_over_grpc_admin_only_and_scans_get_no_reward(tmp_path: Path, run_cli) -> None:  # type: ignore[no-untyped-def]
    data = tmp_path / "d"
    beer, wine = _world(data)
    tokens = {}
    for name, role in (("app", "scanner"), ("line-7", "line"), ("ops", "admin")):
        r = run_cli("tokens", "add", name, "--role", role, "--data", data)
        assert r.returncode == 0, r.stderr
        tokens[role] = r.stdout.strip()
    with running(data) as srv:
        with scangate.Client(srv.target, token=tokens["admin"]) as admin, \
                scangate.Client(srv.target, token=tokens["scanner"]) as app, \
                scangate.Client(srv.target, token=tokens["line"]) as line:
            admin.put_campaign(CAMPAIGN, "red-packets.toml")
            for who in (app, line):
                with pytest.raises(scangate.PermissionDenied) as exc:
                    who.recall("x", line_id=1)
                assert exc.value.code == "PERMISSION_DENIED"
                with pytest.raises(scangate.PermissionDenied):
                    who.list_recalls()
            # hostile requests: nothing recalled
            with pytest.raises(scangate.NotFound):
                admin.recall("x", line_id=99)
            with pytest.raises(scangate.InvalidArgument) as bad:
                admin.recall("x", serial_range=(14, 16))
            assert bad.value.violations[0][0] == "range"
            with pytest.raises(scangate.InvalidArgument):
                admin.recall("x", serial_range=(5, 3))
            with pytest.raises(scangate.InvalidArgument) as bad:
                admin.recall("x", codes=[beer[0], _forge(beer[1]), beer[2]])
            assert [f for f, _ in bad.value.violations] == ["codes.codes[1]"]
            with pytest.raises(scangate.InvalidArgument):
                admin.recall("", line_id=1)
            assert admin.list_recalls() == []
            # a genuine code before the recall wins (the control)
            d = app.scan(wine[0], actor="wx-1", region=510104)
            assert d.verdict.label == "genuine" and d.award is not None
            report = admin.recall("bottle seal", codes=[beer[0], beer[1], beer[4]])
            assert report.added == 2 and report.codes == 3
            assert [(r.first, r.last, r.source) for r in report.recalls] == [(1, 2, "codes"), (5, 5, "codes")]
            assert admin.recall("again", codes=[beer[0], beer[1], beer[4]]).added == 0
            assert admin.recall("line", line_id=2).added == 1
            listed = admin.list_recalls()
            assert [(r.kind, r.line_id, r.first, r.last) for r in listed] == [
                ("line", 2, None, None), ("range", None, 1, 2), ("range", None, 5, 5)]
            assert all(r.at_ms > 0 for r in listed)
            # the recalled code through the real server: revoked, no reward
            d = app.scan(beer[0], actor="wx-2", region=510104)
            assert d.verdict.label == "revoked" and d.award is None
            assert "SG-R2" in [r.value for r in d.verdict.reasons]
            d = app.scan(wine[1], actor="wx-3", region=510104)           # line 2
            assert d.verdict.label == "revoked" and d.award is None and "SG-R1" in [r.value for r in d.verdict.reasons]
            assert app.scan(beer[2], actor="wx-4", region=510104).award is not None   # its neighbour is fine
            # verify and trace carry the recall
            checks = app.verify_codes([beer[0], beer[2], wine[1]])
            assert [c.HasField("recall") for c in checks] == [True, False, True]
            assert checks[0].recall.reason == "bottle seal" and checks[0].recall.first == 1
            assert checks[2].recall.line_id == 2
            traced = app.trace([beer[4], beer[3]])
            assert traced[0].found and traced[0].recall.last == 5 and not traced[1].HasField("recall")


def test_async_client_recalls(tmp_path: Path) -> None:
    import asyncio

    data = tmp_path / "d"
    beer, _ = _world(data)

    async def go(target: str) -> None:
        async with scangate.AsyncClient(target) as c:
            r = await c.recall("hot", serial_range=(3, 4))
            assert r.added == 1 and r.codes == 2
            assert [(x.first, x.last) for x in await c.list_recalls()] == [(3, 4)]

    with running(data) as srv:
        asyncio.run(go(srv.target))
