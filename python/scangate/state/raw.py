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

Where the data directory was opened with a PostgreSQL store
(``DataDir.decisions``), the databases the decision engine writes
(``view.DECISION_DBS``) are its tables, read and written here as
scangate.state.view presents them (a budget's slot rows summed: write budgets
through the engine there).
"""

from __future__ import annotations

from typing import Any

from ..datadir import DataDir
from ..errors import InvalidArgument
from . import layout
from .view import DECISION_DBS, view

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


def _on_pg(data: DataDir, name: str) -> bool:
    return data.decisions is not None and name in DECISION_DBS


def items(data: DataDir, name: str) -> list[tuple[bytes, bytes]]:
    """Every (key, value) of database ``name``, in key order."""
    db = _db(data, name)
    if _on_pg(data, name):
        with view(data) as v:
            return list(v.items(name))
    with data.store.env_of(name).begin() as txn:
        return [(bytes(k), bytes(v)) for k, v in txn.cursor(db=db)]


def dump(data: DataDir, names: tuple[str, ...] = layout.DATABASES) -> dict[str, list[tuple[bytes, bytes]]]:
    """``items`` of each of ``names`` (default: every database), all read in one
    transaction per environment: two dumps are equal when nothing in those
    databases changed."""
    dbs = {name: _db(data, name) for name in names}
    out: dict[str, list[tuple[bytes, bytes]]] = {}
    if data.decisions is not None:
        with view(data) as v:
            out.update((name, list(v.items(name))) for name in names if name in DECISION_DBS)
        dbs = {name: db for name, db in dbs.items() if name not in out}
    for env in {data.store.env_of(name) for name in dbs}:
        with env.begin() as txn:
            out.update((name, [(bytes(k), bytes(v)) for k, v in txn.cursor(db=db)])
                       for name, db in dbs.items() if data.store.env_of(name) is env)
    return {name: out[name] for name in names}


def count(data: DataDir, name: str) -> int:
    """How many records database ``name`` holds."""
    db = _db(data, name)
    if _on_pg(data, name):
        return len(items(data, name))
    with data.store.env_of(name).begin() as txn:
        return int(txn.stat(db)["entries"])


def get(data: DataDir, name: str, key: bytes) -> bytes | None:
    """The value stored under ``key`` in database ``name``; None when there is none."""
    db = _db(data, name)
    key = _key(key)
    if _on_pg(data, name):
        with view(data) as v:
            return v.get(name, key)
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
    if _on_pg(data, name):
        _pg_write(data, name, key, bytes(value))
        return
    with data.store.env_of(name).begin(write=True) as txn:
        txn.put(key, bytes(value), db=db)
        if name in _RULES:
            data.store.bump_rules(txn)


def delete(data: DataDir, name: str, key: bytes) -> bool:
    """Delete ``key`` from database ``name``; whether there was a record to delete."""
    db = _db(data, name)
    key = _key(key)
    if _on_pg(data, name):
        return _pg_write(data, name, key, None)
    with data.store.env_of(name).begin(write=True) as txn:
        if name in _RULES:
            data.store.bump_rules(txn)
        return bool(txn.delete(key, db=db))


def _pg_write(data: DataDir, name: str, key: bytes, value: bytes | None) -> bool:
    """Put (or, for None, delete) one row of a PostgreSQL table; whether a record
    was there. The ledger and the decision log are keyed by the 8-byte number."""
    if name == "budgets":
        raise InvalidArgument("name: a budget is split into slot rows on PostgreSQL (scangate.state.pg); "
                              "its raw record cannot be written")
    from .pg import abort

    assert data.decisions is not None
    conn = data.decisions.conn
    k: int | bytes = key
    column = "k"
    if name in ("ledger", "decisions"):
        if len(key) != 8:
            raise InvalidArgument(f"key: {len(key)} bytes; a {name} key is an 8-byte number")
        column, k = "n", int.from_bytes(key, "big")
    try:
        with conn.cursor() as cur:
            cur.execute(f"DELETE FROM scangate.{name} WHERE {column} = %b RETURNING length(v)", [k])
            was = any(row[0] for row in cur.fetchall())
            if value is not None:
                cur.execute(f"INSERT INTO scangate.{name} ({column}, v) VALUES (%b, %b)", [k, value])
        conn.commit()
    except BaseException:
        abort(conn)
        raise
    return was
