"""The issuance ledger: product lines, serial ranges, and how verification uses
them (not_issued, key version of a range, which line a code belongs to)."""
from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

import scangate
from scangate import CodeStatus, InvalidArgument, Level, _core
from scangate.keys import KeyVersion

GTIN_OK = "4006381333931"  # a valid EAN-13
GTIN_BAD = "4006381333932"


def encrypt_and_encode(key: KeyVersion, plain: np.ndarray, version: int | None = None) -> list[str]:
    """AES-ECB encrypt (n x 16) plaintexts with ``key``; encode under ``version``
    (default key.version)."""
    n = plain.shape[0]
    enc = Cipher(algorithms.AES(key.key), modes.ECB()).encryptor()
    blocks = np.frombuffer(enc.update(plain.tobytes()) + enc.finalize(), np.uint8).reshape(n, 16).copy()
    out = np.zeros((n, _core.CODE_LEN), np.uint8)
    _core.encode_text(blocks, key.version if version is None else version, out)
    return [bytes(row).decode("ascii") for row in out]


def forge(key: KeyVersion, serials: list[int], levels: list[int], *, version: int | None = None) -> list[str]:
    """Codes for the given serials, made from scratch with ``key`` (as a key holder
    would): pack, AES-ECB encrypt, encode."""
    plain = np.zeros((len(serials), 16), np.uint8)
    _core.pack_serials(np.array(serials, np.uint64), np.array(levels, np.uint8), plain)
    return encrypt_and_encode(key, plain, version)


def statuses(result: scangate.VerifyResult) -> list[CodeStatus]:
    return [CodeStatus(int(s)) for s in result.status]


# ---------------------------------------------------------------- product lines
def test_line_for_find_or_create(data_dir: scangate.DataDir) -> None:
    store = data_dir.store
    a = store.line_for("SKU-1", "item", batch="B1", gtin=GTIN_OK, attributes={"colour": "red"})
    assert (a.sku, a.batch, a.level, a.gtin) == ("SKU-1", "B1", Level.ITEM, GTIN_OK.zfill(14))
    assert a.attributes == {"colour": "red"}
    assert store.line_for("SKU-1", Level.ITEM, batch="B1").line_id == a.line_id
    assert store.line_for(" SKU-1 ", 1, batch="B1 ").line_id == a.line_id  # trimmed
    b = store.line_for("SKU-1", "item", batch="B2")
    c = store.line_for("SKU-1", "case", batch="B1")
    d = store.line_for("SKU-2", "item", batch="B1")
    e = store.line_for("SKU-1", "item")
    ids = [a.line_id, b.line_id, c.line_id, d.line_id, e.line_id]
    assert len(set(ids)) == 5
    # "SKU-1"/"B1" must not collide with "SKU-1B"/"1" or similar splits
    f = store.line_for("SKU-1B", "item", batch="1")
    assert f.line_id not in ids
    assert store.line_for("SKU-1", "item", create=False).line_id == e.line_id
    with pytest.raises(scangate.NotFound):
        store.line_for("SKU-9", "item", create=False)
    assert {ln.line_id for ln in store.list_lines()} == set(ids) | {f.line_id}
    assert store.get_line(c.line_id) == c
    # issue_codes uses the same find-or-create
    issued = data_dir.issue_codes("SKU-1", "item", 3, batch="B1")
    assert issued.line.line_id == a.line_id


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"sku": ""}, "sku"),
        ({"sku": "   "}, "sku"),
        ({"sku": "A\x01B"}, "sku"),
        ({"sku": "A\nB"}, "sku"),
        ({"sku": "A\x00B"}, "sku"),
        ({"sku": "X" * 129}, "sku"),
        ({"batch": "L\x07"}, "batch"),
        ({"level": "bottle"}, "level"),
        ({"level": 4}, "level"),
        ({"level": 0}, "level"),
        ({"gtin": GTIN_BAD}, "gtin"),
        ({"gtin": "12345"}, "gtin"),
        ({"gtin": "40063813339X1"}, "gtin"),
        ({"attributes": {"x": object()}}, "attributes"),
    ],
)
def test_invalid_line_arguments(data_dir: scangate.DataDir, kwargs: dict, field: str) -> None:
    args = {"sku": "SKU", "level": "item", **kwargs}
    sku, level = args.pop("sku"), args.pop("level")
    with pytest.raises(InvalidArgument, match=rf"^{field}\b"):
        data_dir.store.line_for(sku, level, **args)
    with pytest.raises(InvalidArgument, match=rf"^{field}\b"):
        data_dir.issue_codes(sku, level, 5, **args)
    # nothing was created or reserved
    assert data_dir.store.list_lines() == []
    assert data_dir.store.list_ranges() == []
    assert data_dir.store.next_serial() == 1


def test_gtin_conflict_on_existing_line(data_dir: scangate.DataDir) -> None:
    data_dir.store.line_for("SKU", "item", gtin=GTIN_OK)
    with pytest.raises(InvalidArgument, match="^gtin"):
        data_dir.store.line_for("SKU", "item", gtin="96385074")  # valid EAN-8, other GTIN


# ---------------------------------------------------------------- serial ranges
def test_ranges_are_disjoint_also_after_reopen(data_dir: scangate.DataDir) -> None:
    root = data_dir.root
    first = data_dir.issue_codes("SKU", "item", 100)
    second = data_dir.issue_codes("SKU", "item", 50)
    other = data_dir.issue_codes("SKU-B", "pallet", 7)
    assert (first.range.first, first.range.last) == (1, 100)
    assert (second.range.first, second.range.last) == (101, 150)
    assert (other.range.first, other.range.last) == (151, 157)
    before = data_dir.store.list_ranges()
    data_dir.close()
    with scangate.open_data_dir(root) as dd:
        assert dd.store.list_ranges() == before
        assert dd.store.next_serial() == 158
        third = dd.issue_codes("SKU", "item", 10)
        assert (third.range.first, third.range.last) == (158, 167)
        codes = first.as_strings() + second.as_strings() + other.as_strings() + third.as_strings()
        result = dd.verify_codes(codes)
        assert result.counts()[CodeStatus.GENUINE] == len(codes)
        assert len(set(codes)) == len(codes)
        serials = result.serial.tolist()
        assert serials == list(range(1, 168))
        ranges = dd.store.list_ranges()
    spans = sorted((r.first, r.last) for r in ranges)
    assert all(a_last < b_first for (_, a_last), (b_first, _) in zip(spans, spans[1:]))
    assert all(r.complete for r in ranges)


def test_reserve_rejects_bad_counts(data_dir: scangate.DataDir) -> None:
    line = data_dir.store.line_for("SKU", "item")
    for count in (0, -1):
        with pytest.raises(InvalidArgument, match="^count"):
            data_dir.store.reserve_range(line, count, 1)
    with pytest.raises(InvalidArgument, match="^count"):
        data_dir.store.reserve_range(line, _core.MAX_SERIAL + 1, 1)  # one past the last serial
    assert data_dir.store.list_ranges() == [] and data_dir.store.next_serial() == 1
    data_dir.store.reserve_range(line, 5, 1)
    with pytest.raises(InvalidArgument, match="^count"):
        data_dir.store.reserve_range(line, _core.MAX_SERIAL - 4, 1)
    last = data_dir.store.reserve_range(line, _core.MAX_SERIAL - 5, 1)  # exactly the rest
    assert (last.first, last.last) == (6, _core.MAX_SERIAL)
    with pytest.raises(InvalidArgument, match="^count"):
        data_dir.store.reserve_range(line, 1, 1)  # serials exhausted
    assert data_dir.store.next_serial() == _core.MAX_SERIAL + 1


def test_verify_maps_codes_to_their_lines(data_dir: scangate.DataDir) -> None:
    plan = [
        ("SKU-A", "item", "B1", 40),
        ("SKU-A", "case", "B1", 8),
        ("SKU-A", "item", "B2", 30),
        ("SKU-B", "pallet", "", 3),
        ("SKU-B", "item", "", 25),
        ("SKU-A", "item", "B1", 20),  # a second range for the first line
    ]
    expected: dict[str, tuple[str, str, Level, int]] = {}
    for sku, level, batch, n in plan:
        issued = data_dir.issue_codes(sku, level, n, batch=batch)
        for i, code in enumerate(issued.as_strings()):
            expected[code] = (sku, batch, Level.parse(level), issued.range.first + i)
        if (sku, level, batch) == ("SKU-A", "item", "B1"):
            first_line = issued.line.line_id
    data_dir.rotate_key()
    issued = data_dir.issue_codes("SKU-A", "item", 15, batch="B1")  # same line, new key
    assert issued.line.line_id == first_line
    for i, code in enumerate(issued.as_strings()):
        expected[code] = ("SKU-A", "B1", Level.ITEM, issued.range.first + i)
    codes = list(expected)
    random.Random(5).shuffle(codes)
    result = data_dir.verify_codes(("\n".join(codes) + "\n").encode())
    assert result.counts()[CodeStatus.GENUINE] == len(codes)
    for i, code in enumerate(codes):
        check = result[i]
        sku, batch, level, serial = expected[code]
        assert check.line is not None
        assert (check.line.sku, check.line.batch, check.line.level, check.level, check.serial) == (
            sku, batch, level, level, serial,
        ), code
        assert check.key_version == (2 if code.startswith("02") else 1)
    assert set(result.lines) == {ln.line_id for ln in data_dir.store.list_lines()}


# ---------------------------------------------------------------- forged blocks
def test_authentic_block_with_unreserved_serial_is_not_issued(data_dir: scangate.DataDir) -> None:
    issued = data_dir.issue_codes("SKU", "item", 10)
    key = data_dir.keys.current
    nxt = data_dir.store.next_serial()
    # sanity: forging an issued serial reproduces the issued code exactly
    assert forge(key, [issued.range.first + 3], [1]) == [issued.as_strings()[3]]
    forged = forge(key, [nxt, nxt + 1, nxt + 10**6, _core.MAX_SERIAL], [1, 2, 3, 1])
    # serial 0 authenticates but is never issued (pack_serials refuses it: build by hand)
    zero = np.frombuffer(bytes([0x11]) + bytes(7) + _core.REDUNDANCY, np.uint8).reshape(1, 16)
    forged += encrypt_and_encode(key, zero)
    result = data_dir.verify_codes(forged + issued.as_strings())
    got = statuses(result)
    assert got == [CodeStatus.NOT_ISSUED] * 5 + [CodeStatus.GENUINE] * 10
    # nothing about the serial is exposed for codes that are not genuine
    assert result.serial[:5].tolist() == [0] * 5 and result.line_id[:5].tolist() == [-1] * 5
    # ... and they stay not_issued after more (later) serials are reserved elsewhere
    data_dir.issue_codes("SKU-2", "item", 3)
    assert statuses(data_dir.verify_codes(forged[2:])) == [CodeStatus.NOT_ISSUED] * 3


def test_authentic_block_with_wrong_level_for_its_range_is_not_genuine(data_dir: scangate.DataDir) -> None:
    issued = data_dir.issue_codes("SKU", "item", 10)
    forged = forge(data_dir.keys.current, [issued.range.first + 2], [int(Level.CASE)])
    check = data_dir.verify_code(forged[0])
    assert check.status is not CodeStatus.GENUINE, (check.level, check.line)


def test_code_under_other_key_version_than_its_range_is_counterfeit(data_dir: scangate.DataDir) -> None:
    v1 = data_dir.issue_codes("SKU", "item", 20)
    kv1 = data_dir.keys.current
    kv2 = data_dir.rotate_key()
    v2 = data_dir.issue_codes("SKU", "item", 20)
    assert v2.range.key_version == 2
    # a holder of key 2 forging a serial reserved under key 1
    forged_old = forge(kv2, [v1.range.first, v1.range.last], [1, 1])
    # a holder of key 1 forging a serial reserved under key 2
    forged_new = forge(kv1, [v2.range.first], [1])
    # controls: the same forging with the range's own key gives the genuine code
    assert forge(kv1, [v1.range.first], [1]) == [v1.as_strings()[0]]
    assert forge(kv2, [v2.range.first], [1]) == [v2.as_strings()[0]]
    result = data_dir.verify_codes(forged_old + forged_new + [v1.as_strings()[0], v2.as_strings()[0]])
    assert statuses(result) == [CodeStatus.COUNTERFEIT] * 3 + [CodeStatus.GENUINE] * 2
    # a genuine v1 block relabelled as version 2 does not decrypt under key 2
    relabelled = forge(kv1, [v1.range.first], [1], version=2)
    assert statuses(data_dir.verify_codes(relabelled)) == [CodeStatus.COUNTERFEIT]


# ---------------------------------------------------------------- persistence, CLI
def test_ranges_persist_and_cli_ledger_lists_them(data_dir: scangate.DataDir, run_cli) -> None:
    a = data_dir.issue_codes("SKU-A", "item", 100, batch="B1", gtin=GTIN_OK, attributes={"k": "v"})
    b = data_dir.issue_codes("SKU-B", "case", 10)
    data_dir.rotate_key()
    a2 = data_dir.issue_codes("SKU-A", "item", 5, batch="B1")
    ranges = data_dir.store.list_ranges()
    assert [(r.first, r.last, r.line_id, r.key_version, r.complete) for r in ranges] == [
        (1, 100, a.line.line_id, 1, True),
        (101, 110, b.line.line_id, 1, True),
        (111, 115, a.line.line_id, 2, True),
    ]
    root = data_dir.root
    data_dir.close()
    with scangate.open_data_dir(root) as dd:
        assert dd.store.list_ranges() == ranges
    proc = run_cli("ledger", "--data", root, "--json")
    assert proc.returncode == 0, proc.stderr
    rows = {r["line_id"]: r for r in map(json.loads, proc.stdout.splitlines())}
    assert set(rows) == {a.line.line_id, b.line.line_id}
    ra, rb = rows[a.line.line_id], rows[b.line.line_id]
    assert (ra["sku"], ra["batch"], ra["level"], ra["gtin"], ra["attributes"]) == (
        "SKU-A", "B1", "item", GTIN_OK.zfill(14), {"k": "v"},
    )
    assert ra["issued"] == 105
    assert ra["ranges"] == [
        {"first": 1, "last": 100, "key_version": 1, "complete": True},
        {"first": 111, "last": 115, "key_version": 2, "complete": True},
    ]
    assert (rb["sku"], rb["level"], rb["issued"]) == ("SKU-B", "case", 10)
    assert rb["ranges"] == [{"first": 101, "last": 110, "key_version": 1, "complete": True}]
    assert a2.range.first == 111
    proc = run_cli("ledger", "--data", root)
    assert proc.returncode == 0 and len(proc.stdout.splitlines()) == 2


def test_cli_issue_reserves_a_range(data_dir: scangate.DataDir, run_cli, tmp_path: Path) -> None:
    root = data_dir.root
    data_dir.issue_codes("SKU", "item", 5)
    data_dir.close()
    out = tmp_path / "codes.txt"
    proc = run_cli("issue", "--data", root, "--sku", "SKU", "--level", "case", "--count", 30,
                   "--batch", "L2", "--out", out, "--json")
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert (summary["first_serial"], summary["last_serial"], summary["count"]) == (6, 35, 30)
    assert not Path(str(out) + ".part").exists()
    with scangate.open_data_dir(root) as dd:
        result = dd.verify_codes(out.read_bytes())
        assert result.counts()[CodeStatus.GENUINE] == 30
        assert result.serial.tolist() == list(range(6, 36))
        assert {(ln.sku, ln.batch, ln.level) for ln in result.lines.values()} == {("SKU", "L2", Level.CASE)}
        assert dd.store.list_ranges()[-1].complete


# ---------------------------------------------------------------- known bugs
@pytest.mark.parametrize("gtin", ["\u00b2" * 8, "\u0664\u0660\u0660\u0666\u0663\u0668\u0661\u0663\u0663\u0663\u0669\u0663\u0661"])
def test_gtin_with_non_ascii_digits_is_invalid(data_dir: scangate.DataDir, gtin: str) -> None:
    with pytest.raises(InvalidArgument, match="^gtin"):
        data_dir.store.line_for("SKU", "item", gtin=gtin)


@pytest.mark.parametrize("bad", ["\x7f", "\x85", "\x9b"])
def test_label_with_del_or_c1_control_is_invalid(data_dir: scangate.DataDir, bad: str) -> None:
    with pytest.raises(InvalidArgument, match="^sku"):
        data_dir.store.line_for(f"SKU{bad}1", "item")


@pytest.mark.parametrize("field", ["sku", "batch"])
def test_label_with_lone_surrogate_is_invalid(data_dir: scangate.DataDir, field: str) -> None:
    args = {"sku": "SKU", "batch": "B", field: "X\udcff"}
    with pytest.raises(InvalidArgument, match=f"^{field}"):
        data_dir.store.line_for(args["sku"], "item", batch=args["batch"])
