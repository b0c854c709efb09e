"""The issuance ledger in scangate.state.store, its product lines typed records
(records.LineRecord, schema 2): what a new line writes, what it reads back (also
after a reopen), attributes as JSON holds them, attributes msgpack cannot hold
refused before anything is written, a damaged line record is corruption naming the
line, a schema 1 line the upgrade cannot read changes nothing, and scangate.store
re-exports the state module's names."""
from __future__ import annotations

import json
from pathlib import Path

import lmdb     # a schema 1 directory written as on disk: scangate would upgrade it on open
import pytest

import scangate
import scangate.state.store
import scangate.store
from scangate.enums import Level
from scangate.errors import CorruptionError, InvalidArgument
from scangate.state import layout, records
from scangate.state import raw as state_raw
from scangate.store import ProductLine

from test_datadir_fixture import extract, raw_records

# conftest's clock: 2026-06-01T12:00:00+08:00, in unix seconds
CREATED = 1_780_286_400


def open_lines(dd: scangate.DataDir) -> list[tuple[bytes, bytes]]:
    """The lines database as stored."""
    return state_raw.items(dd, "lines")


def put_schema_1_line(root: Path, line_id: int, raw: bytes) -> None:
    """Replace a line of a schema 1 directory with plain py-lmdb: scangate would upgrade it on open."""
    env = lmdb.open(str(root / "lmdb"), max_dbs=64)
    try:
        with env.begin(write=True) as txn:
            txn.put(line_id.to_bytes(4, "big"), raw, db=env.open_db(b"lines", txn=txn))
    finally:
        env.close()


def test_a_new_line_is_a_line_record_and_reads_back_the_same(tmp_path: Path) -> None:
    root = tmp_path / "data"
    with scangate.init_data_dir(root) as dd:
        before = scangate.clock.current()() // 1000
        made = dd.store.line_for("SKU-1", "case", batch="B7", gtin="6901234567892",
                                 attributes={"colour": "红", "ml": 500, "tags": ["a", "b"]})
        after = scangate.clock.current()() // 1000
        other = dd.store.line_for("SKU-2", Level.ITEM)
        stored = open_lines(dd)
    # the test clock starts at CREATED and runs at real speed: however long the run
    # has gone on, the line is stamped with its reading
    assert CREATED <= before <= made.created_at <= after
    assert made == ProductLine(1, "SKU-1", Level.CASE, "B7", "06901234567892",
                               {"colour": "红", "ml": 500, "tags": ["a", "b"]}, made.created_at)
    assert (other.line_id, other.level, other.attributes) == (2, Level.ITEM, {})
    assert [k for k, _ in stored] == [(1).to_bytes(4, "big"), (2).to_bytes(4, "big")]
    assert all(v[:1] != b"{" for _, v in stored)      # not JSON any more
    first = records.decode_line(stored[0][1])
    assert first == records.LineRecord(1, "SKU-1", "case", "B7", "06901234567892",
                                       {"colour": "红", "ml": 500, "tags": ["a", "b"]}, made.created_at)
    # the edge form is the JSON record schema 1 stored, key for key
    assert records.to_json(first) == made.to_json()
    with scangate.open_data_dir(root) as dd:
        assert dd.store.get_line(1) == made
        assert dd.store.list_lines() == [made, other]
        assert dd.store.line_for("SKU-1", "case", batch="B7", create=False) == made
        assert dd.store.get_lines([2, 1, 2]) == {1: made, 2: other}


def test_attributes_read_as_json_holds_them_when_made_and_after(tmp_path: Path) -> None:
    root = tmp_path / "data"
    with scangate.init_data_dir(root) as dd:
        made = dd.store.line_for("SKU", "item", attributes={"pair": (1, 2), 3: None, "f": 0.5, "t": True})
    assert made.attributes == {"pair": [1, 2], "3": None, "f": 0.5, "t": True}
    with scangate.open_data_dir(root) as dd:
        assert dd.store.get_line(made.line_id) == made


@pytest.mark.parametrize("attributes, message", [
    ({"n": 2**64}, r"^attributes: an integer below -2\*\*63 or above 2\*\*64 - 1 cannot be stored$"),
    ({"n": [-(2**63) - 1]}, r"^attributes: an integer below -2\*\*63 or above 2\*\*64 - 1 cannot be stored$"),
    ({"s": {1, 2}}, r"^attributes: not JSON-serialisable \(Object of type set is not JSON serializable\)$"),
    (["a"], r"^attributes: a JSON object, not list$"),
])
def test_attributes_that_cannot_be_stored_are_refused_and_change_nothing(
        tmp_path: Path, attributes: object, message: str) -> None:
    root = tmp_path / "data"
    with scangate.init_data_dir(root) as dd:
        dd.store.line_for("SKU", "item")
        before = open_lines(dd)
        with pytest.raises(InvalidArgument, match=message):
            dd.issue_codes("SKU-X", "item", 3, attributes=attributes)  # type: ignore[arg-type]
        assert open_lines(dd) == before and len(before) == 1
        assert dd.store.next_serial() == 1
        # the line number was not used up either
        assert dd.store.line_for("SKU-Y", "item").line_id == 2


@pytest.mark.parametrize("raw, detail", [
    (b"\x93\x01\x02", r"product line record: Expected `array` of at least length 8, got 3$"),
    (json.dumps({"line_id": 1, "sku": "SKU", "level": "item", "batch": "", "gtin": "", "attributes": {},
                 "created_at": 1}).encode(), r"product line record: Expected `array`, got `int`$"),  # schema 1's JSON
    (records.encode(records.LineRecord(1, "SKU", "crate", "", "", {}, 1)),
     r"level 'crate' is not one of item, case, pallet$"),
    (b"", r"product line record: Input data was truncated$"),
])
def test_a_damaged_line_record_is_corruption_naming_the_line(tmp_path: Path, raw: bytes, detail: str) -> None:
    root = tmp_path / "data"
    with scangate.init_data_dir(root) as dd:
        dd.store.line_for("SKU", "item")
        state_raw.put(dd, "lines", layout.line_key(1), raw)
    with scangate.open_data_dir(root) as dd:        # a Store that has no line cached
        with pytest.raises(CorruptionError, match=rf"^product line 1 is unreadable: {detail}"):
            dd.store.get_line(1)
        with pytest.raises(CorruptionError, match=r"^product line 1 is unreadable: "):
            dd.store.line_for("SKU", "item")


def test_a_schema_1_line_the_upgrade_cannot_read_changes_nothing(tmp_path: Path) -> None:
    path = extract(tmp_path)
    (key, raw), *_ = raw_records(path)["lines"]
    line = json.loads(raw)
    del line["gtin"]
    put_schema_1_line(path, int.from_bytes(key, "big"), json.dumps(line).encode())
    before = raw_records(path)
    with pytest.raises(CorruptionError, match=rf"^migration: product line #{int.from_bytes(key, 'big')}: no gtin$"):
        scangate.open_data_dir(path)
    assert raw_records(path) == before          # nothing upgraded, the schema still 1
    assert dict(before["meta"])[b"schema"] == (1).to_bytes(4, "big")


def test_an_upgraded_line_reads_as_its_json_did(tmp_path: Path) -> None:
    path = extract(tmp_path)
    old = [json.loads(v) for _, v in raw_records(path)["lines"]]
    assert old
    with scangate.open_data_dir(path) as dd:
        assert [line.to_json() for line in dd.store.list_lines()] == old


def test_scangate_store_re_exports_the_state_store() -> None:
    names = ["DATABASES", "DEFAULT_MAP_SIZE", "IssuedRange", "ProductLine", "RangeTable", "SCHEMA_VERSION", "Store",
             "iter_prefix"]
    assert sorted(scangate.store.__all__) == sorted(scangate.state.store.__all__) == names
    for name in names:
        assert getattr(scangate.store, name) is getattr(scangate.state.store, name), name
    assert scangate.ProductLine is scangate.state.store.ProductLine
