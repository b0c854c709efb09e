"""The stored bytes of the named databases, as they are: for repair, forensics and
tests, never for the engine.

Every function here runs in a transaction of its own and knows nothing of the
records it reads or writes: a value put here is stored as given, so a test can
damage a record on purpose (a record cut short, an edited ledger entry, a
request record that points nowhere) and check that the readers name it. The
engine and the edges read and write through the typed modules of scangate.state
(batch, reads, points, ...), which check what they write.

Keys are built with scangate.state.layout. An open ``Store`` keeps caches of what
it read (product lines, the issued ranges): a write here does not reach them,
so reopen the data directory to read a line or a range written here.
"""

from __future__ import annotations

from typing import Any

from ..datadir import DataDir
from ..errors import InvalidArgument
from . import layout

__all__ = ["count", "delete", "dump", "get", "items", "put"]

# the databases of the rules every decision reads: a write here moves their
# generation, as scangate.state's own writes do (Store.rules_cached)
_RULES = frozenset({"campaigns", "revoked"})


def _db(data: DataDir, name: str) -> Any:
    """The handle of database ``name``; InvalidArgument naming it when it is none of
    ``layout.DATABASES`` (the store's own error would call a typo corruption)."""
    if name not in layout.DATABASES:
        raise InvalidArgument(f"name: {name!r} is not a database of the store "
                              f"(one of {', '.join(layout.DATABASES)})")
    return data.store.db(name)


def _key(key: bytes) -> bytes:
    if not isinstance(key, (bytes, bytearray, memoryview)):
        raise InvalidArgument(f"key: bytes, not {type(key).__name__}")
    key = bytes(key)
    if not 0 < len(key) <= layout.MAX_KEY:
        raise InvalidArgument(f"key: {len(key)} bytes; a key is 1 to {layout.MAX_KEY} bytes")
    return key


def items(data: DataDir, name: str) -> list[tuple[bytes, bytes]]:
    """Every (key, value) of database ``name``, in key order."""
    db = _db(data, name)
    with data.store.env_of(name).begin() as txn:
        return [(bytes(k), bytes(v)) for k, v in txn.cursor(db=db)]


def dump(data: DataDir, names: tuple[str, ...] = layout.DATABASES) -> dict[str, list[tuple[bytes, bytes]]]:
    """``items`` of each of ``names`` (default: every database), all read in one
    transaction per environment: two dumps are equal when nothing in those
    databases changed."""
    dbs = {name: _db(data, name) for name in names}
    out: dict[str, list[tuple[bytes, bytes]]] = {}
    for env in {data.store.env_of(name) for name in names}:
        with env.begin() as txn:
            out.update((name, [(bytes(k), bytes(v)) for k, v in txn.cursor(db=db)])
                       for name, db in dbs.items() if data.store.env_of(name) is env)
    return {name: out[name] for name in names}


def count(data: DataDir, name: str) -> int:
    """How many records database ``name`` holds."""
    db = _db(data, name)
    with data.store.env_of(name).begin() as txn:
        return int(txn.stat(db)["entries"])


def get(data: DataDir, name: str, key: bytes) -> bytes | None:
    """The value stored under ``key`` in database ``name``; None when there is none."""
    db = _db(data, name)
    key = _key(key)
    with data.store.env_of(name).begin() as txn:
        raw = txn.get(key, db=db)
    return None if raw is None else bytes(raw)


def put(data: DataDir, name: str, key: bytes, value: bytes) -> None:
    """Store ``value`` under ``key`` in database ``name`` as given (replacing what
    was there), unchecked: it need not be the record the key's readers expect."""
    db = _db(data, name)
    key = _key(key)
    if not isinstance(value, (bytes, bytearray, memoryview)):
        raise InvalidArgument(f"value: bytes, not {type(value).__name__}")
    with data.store.env_of(name).begin(write=True) as txn:
        txn.put(key, bytes(value), db=db)
        if name in _RULES:
            data.store.bump_rules(txn)


def delete(data: DataDir, name: str, key: bytes) -> bool:
    """Delete ``key`` from database ``name``; whether there was a record to delete."""
    db = _db(data, name)
    key = _key(key)
    with data.store.env_of(name).begin(write=True) as txn:
        if name in _RULES:
            data.store.bump_rules(txn)
        return bool(txn.delete(key, db=db))
