"""The decision state on PostgreSQL (psycopg 3): many deciders, one transaction per batch.

``PgStore`` holds what the decision engine writes, the records that
``LmdbBatch`` keeps in the main LMDB environment (scan histories, claims,
counters, budgets, points, the ledger, the payout outbox, the request index and
the decision log), as tables of the ``scangate`` schema. Every process that
decides (any number, on any machine that reaches the database) opens its own
``PgStore`` and decides batches in transactions of their own, concurrently.

This first step keeps the rest where it was: the keys, the issuance ledger (what
verification reads), the trace, the campaigns and the recalls stay in the data
directory (LMDB), which every decider on a machine opens; ``PgBatch`` reads the
rules and the trace from it in a read transaction, as ``LmdbBatch`` does.

Parameters go in binary (``%b``): psycopg then sends a batch's arrays of keys
and records as they are, where the text format would escape every byte string.

Layout. Each table holds records keyed and encoded exactly as in LMDB
(scangate.state.layout, scangate.state.records): ``k bytea PRIMARY KEY, v
bytea``, so a record has one definition whatever the store, and the SQL is the
portable subset (no PostgreSQL-only types or functions in the decision path).
The ledger and the decision log are keyed by number (``n bigint``).

Concurrency. A batch runs at READ COMMITTED and locks every row it decides
against before it reads it, table by table in one order (requests, scans, then
counters, budgets, points as the engine asks for them), each table's keys sorted.
A row that may not exist yet (a code's first scan, a new user's counters, a new
request id) is first inserted empty (``v = ''``: no record) and then locked
(upsert-then-lock): two first scans of one code, or one request id sent twice at
once, queue on the row instead of both deciding as if alone. An empty value
reads as no record everywhere. A deadlock (40P01), a serialization failure
(40001) or a unique violation (23505) aborts the batch: nothing of it is
written, and the caller decides it again (``RETRYABLE``).

Numbers. The ledger's numbers are reserved a block per batch (a sequence that
moves by LEDGER_BLOCK: one call, whoever else reserves), so they grow but leave
gaps, and two batches' entries interleave in number only by commit order. The
decision log holds one row per decision under a number of its own
(``decision_numbers``), the request index pointing at it; the points history's
numbers come from a sequence too. No batch waits on another for a number.
"""

from __future__ import annotations

import math
import random
import struct
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from ..decision import Decision
from ..errors import CorruptionError, InvalidArgument, ScangateError
from . import layout, outbox
from .batch import LmdbBatch, Mutations, Snapshot, account_of, request_pointer
from .outbox import Due
from .records import (ACCOUNT, COUNTS, I64, U64, History, LogRecord, Payout, decode_payout, encode, encode_decisions,
                      unpack_counts)

if TYPE_CHECKING:
    import psycopg

    from ..datadir import DataDir
    from .recalls import Recalls

__all__ = ["LEDGER_BLOCK", "MIGRATIONS", "RETRYABLE", "PgBatch", "PgOutbox", "PgStore", "SCHEMA_VERSION",
           "StandbyUnconfirmed", "retryable"]

LEDGER_BLOCK = 1 << 20      # ledger numbers one batch may use (one sequence call reserves them)
BUDGET_SLOTS = 8            # rows a budget is split into (escrow): batches on different slots do not wait
# a budget slot (key: the budget's key, NUL, the slot number): awards and fen spent
# through it, awards and fen allowed to it, and the limits it was balanced against
# (-1: none; -2: never balanced)
_SLOT = struct.Struct(">qqqqqq")
_NO_LIMIT, _UNBALANCED = -1, -2


def slot_spent(key: bytes, raw: bytes) -> tuple[int, int]:
    """(awards, fen) spent through one budget slot; CorruptionError naming it when
    the record is not a slot's."""
    if len(raw) != _SLOT.size or len(key) < 3 or key[-2] != 0:
        raise CorruptionError(f"budget slot {key!r}: {len(raw)} bytes, not a slot record of {_SLOT.size}")
    awards, fen = _SLOT.unpack(raw)[:2]
    return awards, fen

# The schema, one migration per version; each runs in a transaction of its own.
MIGRATIONS: list[str] = [
    # 1: the decision state
    """
    CREATE SCHEMA IF NOT EXISTS scangate;
    CREATE TABLE scangate.requests (k bytea PRIMARY KEY, v bytea NOT NULL);
    CREATE TABLE scangate.scans (k bytea PRIMARY KEY, v bytea NOT NULL);
    CREATE TABLE scangate.claims (k bytea PRIMARY KEY, v bytea NOT NULL);
    CREATE TABLE scangate.counters (k bytea PRIMARY KEY, v bytea NOT NULL);
    CREATE TABLE scangate.budgets (k bytea PRIMARY KEY, v bytea NOT NULL);
    CREATE TABLE scangate.points (k bytea PRIMARY KEY, v bytea NOT NULL);
    CREATE TABLE scangate.outbox (k bytea PRIMARY KEY, v bytea NOT NULL);
    CREATE TABLE scangate.ledger (n bigint PRIMARY KEY, v bytea NOT NULL);
    CREATE TABLE scangate.decisions (n bigint PRIMARY KEY, v bytea NOT NULL);
    CREATE SEQUENCE scangate.decision_numbers;
    CREATE SEQUENCE scangate.points_numbers;
    CREATE SEQUENCE scangate.ledger_blocks INCREMENT BY 1048576;
    """,
    # 2: budgets split into slots (BUDGET_SLOTS): a budget's one row becomes its slot 0,
    # everything it spent allowed to it, marked never balanced (the first batch to use
    # a budget balances it against the campaign's limits)
    """
    DELETE FROM scangate.budgets WHERE length(v) = 0;
    UPDATE scangate.budgets
       SET k = k || '\\x0000'::bytea, v = v || v || '\\xfffffffffffffffefffffffffffffffe'::bytea;
    """,
]
SCHEMA_VERSION = len(MIGRATIONS)
_VERSION_TABLE = "CREATE TABLE IF NOT EXISTS public.scangate_schema (version integer NOT NULL)"

# SQLSTATEs after which a batch is decided again: serialization_failure,
# deadlock_detected, unique_violation (a row another decider inserted first)
RETRYABLE = frozenset({"40001", "40P01", "23505"})


class StandbyUnconfirmed(ScangateError):
    """A batch's commit returned, but PostgreSQL cancelled its wait for the
    synchronous standby (a cancel request, a statement timeout): the batch is
    committed on the primary and may be missing on the standby, so nothing of it
    may be acknowledged. A retry with the same request ids replays the stored
    decisions, and its own commit waits for the standby, which then holds them
    too (WAL is replicated in order)."""


class StoreUnavailable(ScangateError):
    """The PostgreSQL store cannot be reached (refused, unknown host, bad
    credentials): the message is libpq's, without the password."""


def abort(conn: psycopg.Connection[Any]) -> None:
    """Roll back a failed transaction, unless the failure was the connection's
    (closed or broken: nothing to roll back, and trying would hide the error)."""
    if not (conn.closed or conn.broken):
        conn.rollback()


def retryable(exc: BaseException) -> bool:
    """Whether a batch that raised ``exc`` is decided again (RETRYABLE)."""
    return getattr(exc, "sqlstate", None) in RETRYABLE


def _connect(url: str) -> psycopg.Connection[Any]:
    try:
        import psycopg
    except ImportError:
        raise InvalidArgument("the PostgreSQL store needs psycopg: pip install 'scangate[postgresql]'") from None
    try:
        return psycopg.connect(url, autocommit=False)
    except psycopg.OperationalError as exc:
        raise StoreUnavailable(f"cannot connect to the PostgreSQL store: {str(exc).strip()}") from None


class PgStore:
    """A process's connections to the decision state on PostgreSQL at ``url``
    (a libpq URL: postgresql://user@host:port/db): one per thread that uses it
    (``conn``), since a connection holds one transaction at a time and a
    server's worker reads and redeems from several threads at once."""

    def __init__(self, url: str):
        self.url = url
        self._checked = False
        self._local = threading.local()
        self._all: list[psycopg.Connection[Any]] = []
        self._guard = threading.Lock()
        self._open()            # this thread's, now: an unreachable store fails here

    @property
    def conn(self) -> psycopg.Connection[Any]:
        """This thread's connection (opened on first use)."""
        conn = getattr(self._local, "conn", None)
        return conn if conn is not None else self._open()

    @property
    def views(self) -> int:
        """scangate.state.view's read transactions open on this thread's connection."""
        return int(getattr(self._local, "views", 0))

    @views.setter
    def views(self, n: int) -> None:
        self._local.views = n

    def _open(self) -> psycopg.Connection[Any]:
        conn = _connect(self.url)
        local = self._local

        def notice(diag: Any) -> None:
            # PostgreSQL's warning when a commit's wait for the synchronous standby was
            # cancelled: "canceling wait for synchronous replication ..."; the commit
            # itself is reported as done
            if "wait for synchronous replication" in (diag.message_primary or ""):
                local.unreplicated = True

        conn.add_notice_handler(notice)
        local.conn, local.unreplicated, local.views = conn, False, 0
        with self._guard:
            self._all = [c for c in self._all if not c.closed]
            self._all.append(conn)
        # a PostgreSQL planner setting (see PgBatch): not for CockroachDB, which
        # announces itself with a crdb_version parameter and lacks the setting
        self._index_lookups = conn.info.parameter_status("crdb_version") is None
        return conn

    def live(self) -> None:
        """Connect again if this thread's connection was lost (the server
        restarted, a failover, a network cut): StoreUnavailable while it cannot
        be reached."""
        conn = getattr(self._local, "conn", None)
        if conn is None or conn.closed or conn.broken:
            if conn is not None:
                conn.close()
            self._open()

    def lost(self, exc: BaseException) -> bool:
        """Whether ``exc`` is the connection's loss (or a failed reconnection), after
        which a batch may be decided again once ``live`` reconnects: whatever of it
        committed is found by its request ids and replayed."""
        conn = getattr(self._local, "conn", None)
        return isinstance(exc, StoreUnavailable) or conn is None or conn.closed or conn.broken

    def close(self) -> None:
        """Close every thread's connection."""
        with self._guard:
            conns, self._all = self._all, []
        for conn in conns:
            conn.close()

    def __enter__(self) -> PgStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def version(self) -> int:
        """The schema version the database holds (0: none)."""
        with self.conn.cursor() as cur:
            cur.execute("SELECT to_regclass('public.scangate_schema') IS NOT NULL")
            row = cur.fetchone()
            if not row or not row[0]:
                self.conn.rollback()
                return 0
            cur.execute("SELECT version FROM public.scangate_schema")
            got = cur.fetchone()
        self.conn.rollback()
        return int(got[0]) if got else 0

    def migrate(self) -> int:
        """Bring the schema to SCHEMA_VERSION, one migration per transaction, under
        a lock of the version table (several processes may start at once: one
        migrates, the others wait and find it done). The version it ends at; a
        database of a newer release is refused."""
        conn = self.conn
        while True:
            with conn.cursor() as cur:
                cur.execute(_VERSION_TABLE)
                cur.execute("LOCK TABLE public.scangate_schema IN EXCLUSIVE MODE")
                cur.execute("SELECT version FROM public.scangate_schema")
                row = cur.fetchone()
                version = int(row[0]) if row else 0
                if version > SCHEMA_VERSION:
                    conn.rollback()
                    raise CorruptionError(f"the PostgreSQL store holds schema {version}; this release knows "
                                          f"{SCHEMA_VERSION}: upgrade scangate")
                if version == SCHEMA_VERSION:
                    conn.commit()
                    return version
                cur.execute(MIGRATIONS[version])
                if row:
                    cur.execute("UPDATE public.scangate_schema SET version = %s", [version + 1])
                else:
                    cur.execute("INSERT INTO public.scangate_schema (version) VALUES (%s)", [version + 1])
            conn.commit()

    def check(self) -> None:
        """Raise unless the database holds this release's schema (``migrate``
        makes it so)."""
        version = self.version()
        if version != SCHEMA_VERSION:
            raise CorruptionError(f"the PostgreSQL store holds schema {version}, not {SCHEMA_VERSION}: "
                                  "make it with scangate.state.pg.PgStore(url).migrate()")

    @contextmanager
    def batch(self, data: DataDir) -> Iterator[PgBatch]:
        """One batch's transaction, committed when the block ends without an
        exception, rolled back otherwise (nothing of the batch is written).
        CorruptionError, before anything is read, when the database does not hold
        this release's schema."""
        self.live()
        if not self._checked:
            self.check()
            self._checked = True
        lmdb_txn = data.store.env.begin()
        try:
            batch = PgBatch(self.conn, LmdbBatch(data.store, lmdb_txn), self._index_lookups)
            try:
                yield batch
            except BaseException:
                abort(self.conn)
                raise
            self._local.unreplicated = False
            self.conn.commit()
            if self._local.unreplicated:
                raise StandbyUnconfirmed("the batch committed on the primary, but its wait for the synchronous "
                                         "standby was cancelled: not acknowledged; retry with the same request ids")
        finally:
            lmdb_txn.abort()

    def copy_from(self, data: DataDir, chunk: int = 20_000) -> dict[str, int]:
        """Copy a data directory's decision state (its LMDB store) into this
        PostgreSQL store, which must hold this release's schema and no decision
        yet, in one transaction (a failure copies nothing). Records keep their
        bytes but where the layouts differ: a budget becomes its slot 0, all it
        spent allowed to it and never balanced (as migration 2 does); a decision
        log record of a batch becomes a row per decision; the points history's
        q record and the numbers the directory gave out set the sequences, so
        new numbers follow the copied ones. The records copied, by table."""
        self.live()
        self.check()
        held = {t: self.count(t) for t in (*_TABLES, "ledger", "decisions")}
        if any(held.values()):
            raise InvalidArgument(f"store: the PostgreSQL store already holds decisions "
                                  f"({', '.join(f'{t} {n}' for t, n in held.items() if n)}): copy into an empty one")
        copied: dict[str, int] = {}
        last = {"ledger": 0, "decisions": 0, "points": 0}
        cur = self.conn.cursor()

        def put(table: str, rows: list[tuple[Any, bytes]]) -> None:
            if not rows:
                return
            key = "n" if table in ("ledger", "decisions") else "k"
            kind = "bigint" if key == "n" else "bytea"
            cur.execute(f"INSERT INTO scangate.{table} ({key}, v) SELECT * FROM unnest(%b::{kind}[], %b::bytea[])",
                        [[k for k, _v in rows], [v for _k, v in rows]])
            copied[table] = copied.get(table, 0) + len(rows)
            rows.clear()

        try:
            with data.store.env.begin() as txn:
                for table in (*_TABLES, "ledger", "decisions"):
                    rows: list[tuple[Any, bytes]] = []
                    for k, v in txn.cursor(db=data.store.db(table)):
                        key, value = bytes(k), bytes(v)
                        if table == "points" and key == layout.HISTORY_SEQ:
                            last["points"] = int(U64.unpack(value)[0])
                            continue
                        if table == "budgets":      # awards and fen spent: slot 0, allowed what it spent
                            rows.append((key + b"\0\0", value + value + _SLOT.pack(0, 0, 0, 0, _UNBALANCED,
                                                                                 _UNBALANCED)[32:]))
                        elif table == "ledger":
                            last["ledger"] = n = int(U64.unpack(key)[0])
                            rows.append((n, value))
                        elif table == "decisions":
                            for n, d in LogRecord(int(U64.unpack(key)[0]), value).decisions():
                                rows.append((n, encode_decisions([d])))
                                last["decisions"] = n
                        else:
                            rows.append((key, value))
                        if len(rows) >= chunk:
                            put(table, rows)
                    put(table, rows)
            # the sequences past the copied numbers (ledger blocks: the next one starts
            # past the last copied entry)
            for sequence, n in (("ledger_blocks", last["ledger"]), ("decision_numbers", last["decisions"]),
                                ("points_numbers", last["points"])):
                if n:
                    cur.execute(f"SELECT setval('scangate.{sequence}', %s)", [n])
            self.conn.commit()
        except BaseException:
            abort(self.conn)
            raise
        finally:
            cur.close()
        return copied

    def last_points_number(self) -> int | None:
        """The last points history number given out; None before the first."""
        with self.conn.cursor() as cur:
            cur.execute("SELECT last_value, is_called FROM scangate.points_numbers")
            row = cur.fetchone()
        self.conn.rollback()
        return int(row[0]) if row and row[1] else None

    def reserve_ledger_block(self) -> int:
        """The first number of a ledger block no batch will use (committed at once):
        every block reserved after it starts past it."""
        with self.conn.cursor() as cur:
            cur.execute("SELECT nextval('scangate.ledger_blocks')")
            row = cur.fetchone()
        self.conn.commit()
        assert row is not None
        return int(row[0])

    def count(self, table: str) -> int:
        """How many records a table holds (empty placeholders not counted)."""
        if table not in _TABLES and table not in ("ledger", "decisions"):
            raise InvalidArgument(f"no table {table!r}")
        with self.conn.cursor() as cur:
            cur.execute(f"SELECT count(*) FROM scangate.{table} WHERE length(v) > 0")
            row = cur.fetchone()
        self.conn.rollback()
        return int(row[0]) if row else 0

    def budgets_spent(self) -> dict[bytes, tuple[int, int]]:
        """Every budget's awards and fen spent, summed over its slots (the LMDB
        store's one ``budgets`` record per budget)."""
        from .view import sum_slots

        return {key: COUNTS[2].unpack(raw) for key, raw in sum_slots(iter(self.records("budgets").items()))}

    def budget_slots(self, key: bytes) -> dict[bytes, tuple[int, ...]]:
        """Every slot of budget ``key`` as stored (awards and fen spent, awards and
        fen allowed, the limits it was balanced against: -1 none)."""
        return {k: _SLOT.unpack(v) for k, v in self.records("budgets").items() if k[:-2] == key}

    def records(self, table: str) -> dict[Any, bytes]:
        """Every record of a table (key or number -> value), placeholders left out:
        for tests and repair, never the decision path."""
        if table not in _TABLES and table not in ("ledger", "decisions"):
            raise InvalidArgument(f"no table {table!r}")
        key = "n" if table in ("ledger", "decisions") else "k"
        with self.conn.cursor() as cur:
            cur.execute(f"SELECT {key}, v FROM scangate.{table} WHERE length(v) > 0 ORDER BY {key}")
            rows = cur.fetchall()
        self.conn.rollback()
        return {(k if isinstance(k, int) else bytes(k)): bytes(v) for k, v in rows}


_TABLES = ("requests", "scans", "claims", "counters", "budgets", "points", "outbox")


class PgBatch:
    """The decision state of one PostgreSQL transaction (scangate.state.batch's
    BatchState): rows locked as they are read, the batch's writes set-based. The
    rules and the trace come from ``rules`` (an LmdbBatch over a read transaction
    of the data directory)."""

    def __init__(self, conn: psycopg.Connection[Any], rules: LmdbBatch, index_lookups: bool = False):
        self.conn, self.rules = conn, rules
        self.cur = conn.cursor()
        if index_lookups:
            # A batch looks its rows up by key (``k = ANY($1)``, about a hundred keys).
            # On a table of thousands to tens of thousands of rows PostgreSQL plans a
            # sequential scan, and for an array parameter it compares every row with
            # every key: 3-4 ms a lookup, where the primary key's index takes 0.1-0.3
            # (pg_stat_statements, 3,000 scans in batches of 100). For this
            # transaction only, so a connection pooler sees nothing left behind.
            self.cur.execute("SET LOCAL enable_seqscan = off")
        self.histories_read: tuple[dict[int, bytes], dict[bytes, bytes]] = ({}, {})
        self.trace_read: int | None = None
        self._ledger_block: int | None = None
        # budget key -> (its slot's key, the slot as locked, the engine's view of it)
        self._slots: dict[bytes, tuple[bytes, tuple[int, ...], tuple[int, int]]] = {}

    # ------------------------------------------------------------------ locks
    def _lock(self, table: str, keys: Iterable[bytes]) -> dict[bytes, bytes]:
        """Insert the keys not in ``table`` yet as empty rows, lock every one (in
        key order), and return the records among them (empty rows left out)."""
        ordered = sorted(set(keys))
        if not ordered:
            return {}
        cur = self.cur
        # The rows this statement inserts are this transaction's, locked by it and
        # empty: only the keys it did not insert (rows that were there, or that
        # another batch inserted and committed while this one waited) are read and
        # locked. New request ids and first scans, most of a batch, cost one statement.
        cur.execute(f"INSERT INTO scangate.{table} (k, v) SELECT k, '' FROM unnest(%b::bytea[]) AS t(k) "
                    "ORDER BY k ON CONFLICT (k) DO NOTHING RETURNING k", [ordered])
        inserted = {bytes(row[0]) for row in cur.fetchall()}
        there = [k for k in ordered if k not in inserted]
        if not there:
            return {}
        cur.execute(f"SELECT k, v FROM scangate.{table} WHERE k = ANY(%b) ORDER BY k FOR UPDATE", [there])
        return {bytes(k): bytes(v) for k, v in cur.fetchall() if v}

    def _get(self, table: str, keys: Iterable[bytes]) -> dict[bytes, bytes]:
        """The records of these keys, without locks (rows a lock taken before
        guards: a code's claim behind its scan row)."""
        wanted = sorted(set(keys))
        if not wanted:
            return {}
        self.cur.execute(f"SELECT k, v FROM scangate.{table} WHERE k = ANY(%b)", [wanted])
        return {bytes(k): bytes(v) for k, v in self.cur.fetchall() if v}

    def _put(self, table: str, pairs: Iterable[tuple[bytes, bytes]]) -> None:
        """Upsert (key, record) pairs; of a key given twice, the last record."""
        latest = dict(pairs)
        if not latest:
            return
        keys, values = zip(*sorted(latest.items()))
        self.cur.execute(f"INSERT INTO scangate.{table} (k, v) SELECT * FROM unnest(%b::bytea[], %b::bytea[]) "
                         "ON CONFLICT (k) DO UPDATE SET v = EXCLUDED.v", [list(keys), list(values)])

    def _numbers(self, sequence: str, count: int) -> list[int]:
        if count == 0:
            return []
        self.cur.execute(f"SELECT nextval('scangate.{sequence}') FROM generate_series(1, %s)", [count])
        return sorted(int(row[0]) for row in self.cur.fetchall())

    # ------------------------------------------------------------------ reads
    def stored_decisions(self, request_keys: Sequence[bytes]) -> dict[bytes, tuple[Decision, bytes | None]]:
        index = {key: request_pointer(key, raw) for key, raw in self._lock("requests", request_keys).items()}
        if not index:
            return {}
        numbers = sorted({number for number, _fp in index.values()})
        self.cur.execute("SELECT n, v FROM scangate.decisions WHERE n = ANY(%b)", [numbers])
        log = {int(n): bytes(v) for n, v in self.cur.fetchall()}
        out = {}
        for key, (number, fingerprint) in index.items():
            raw = log.get(number)
            if raw is None:
                raise CorruptionError(f"request record {key!r} points at decision #{number}, which is not stored")
            out[key] = (LogRecord(number, raw).decision(number), fingerprint)
        return out

    def histories(self, serials: Iterable[int]) -> tuple[dict[int, bytes], dict[int, History]]:
        keys = {s: s.to_bytes(layout.SERIAL_BYTES, "big") for s in serials}
        if not keys:
            return keys, {}
        stored = self._lock("scans", keys.values())
        self.histories_read = (keys, stored)
        return keys, {s: History.unpack(raw) for s, k in keys.items() if (raw := stored.get(k)) is not None}

    def chains(self, serials: Sequence[int]) -> list[Any]:
        chains = self.rules.chains(serials)
        self.trace_read = self.rules.trace_read
        return chains

    def recalls(self) -> Recalls:
        return self.rules.recalls()

    def campaigns(self) -> list[tuple[bytes, bytes | None]]:
        return self.rules.campaigns()

    def next_ledger_seq(self) -> int:
        if self._ledger_block is None:
            self.cur.execute("SELECT nextval('scangate.ledger_blocks')")
            row = self.cur.fetchone()
            assert row is not None
            self._ledger_block = int(row[0])
        return self._ledger_block

    def read(self, snap: Snapshot, claims: Iterable[bytes] = (), counters: Iterable[bytes] = (),
             budgets: Iterable[bytes] = (), accounts: Iterable[bytes] = (), months: Iterable[bytes] = ()) -> None:
        """As LmdbBatch.read; the counters' and points' rows locked, each budget's
        through one of its slots (``_budget``)."""
        claims = set(claims)
        missing = [k for k in claims if k not in snap.claims]
        if missing:
            snap.claims.update(dict.fromkeys(missing))
            snap.claims.update(self._get("claims", missing))
        missing = [k for k in set(counters) if k not in snap.counters]
        if missing:
            snap.counters.update(dict.fromkeys(missing))
            snap.counters.update((k, unpack_counts(raw)) for k, raw in self._lock("counters", missing).items())
        limits = budgets if isinstance(budgets, Mapping) else {}
        for key in sorted(set(budgets) - snap.budgets.keys()):
            snap.budgets[key] = self._budget(key, limits.get(key) or (None, None, 0), max(1, len(claims)))
        want_accounts = [k for k in set(accounts) if k not in snap.accounts]
        want_months = [k for k in set(months) if k not in snap.months]
        if want_accounts or want_months:
            found = self._lock("points", [*want_accounts, *want_months])
            snap.accounts.update(dict.fromkeys(want_accounts, (0, 0)))
            snap.months.update(dict.fromkeys(want_months, 0))
            for key in want_accounts:
                if (raw := found.get(key)) is not None:
                    snap.accounts[key] = account_of(key, raw)
            for key in want_months:
                if (raw := found.get(key)) is not None:
                    snap.months[key] = I64.unpack(raw)[0]

    # ------------------------------------------------------------------ budget slots
    def _budget(self, key: bytes, limits: tuple[int | None, int | None, int], need: int) -> tuple[int, int]:
        """The engine's view of budget ``key`` (awards and fen spent), through one
        of its slots, locked for the batch: what is left in the view is what is
        left in the slot. A batch takes the first slot no other batch holds
        (SKIP LOCKED), so batches on one hot prize do not wait for each other.
        When the slot cannot cover ``need`` awards (the batch's eligible scans)
        or was balanced against other limits (a campaign reloaded), the budget is
        balanced first: every slot locked, what is left of the limits shared out,
        this slot getting at least what it needs if the budget has it. So a batch
        sees a budget exhausted only when all of it is spent."""
        count_max, fen_max, fen = limits
        slot_key, slot = self._take_slot(key)
        balanced = (_NO_LIMIT if count_max is None else count_max, _NO_LIMIT if fen_max is None else fen_max)
        short = ((count_max is not None and slot[2] - slot[0] < need)
                 or (fen_max is not None and slot[3] - slot[1] < need * fen))
        spent = None
        if short or slot[4:] != balanced:
            slot, spent = self._balance(key, slot_key, count_max, fen_max, need, need * fen)
        def seen(dim: int, limit: int | None) -> int:
            if limit is None:
                return slot[dim]
            if spent is not None and spent[dim] >= limit:
                # all of it spent (or more: a limit lowered below what was spent): the
                # budget's own total, so the engine records what it has left, as on LMDB
                return spent[dim]
            return limit - (slot[2 + dim] - slot[dim])

        view = (seen(0, count_max), seen(1, fen_max))
        self._slots[key] = (slot_key, slot, view)
        return view

    def _take_slot(self, key: bytes) -> tuple[bytes, tuple[int, ...]]:
        """A slot of budget ``key``, locked: the first no other batch holds, else a
        new one while there are fewer than BUDGET_SLOTS, else one to wait for."""
        lo, hi = key + b"\0", key + b"\1"
        cur = self.cur
        cur.execute("SELECT k, v FROM scangate.budgets WHERE k >= %b AND k < %b ORDER BY k LIMIT 1 "
                    "FOR UPDATE SKIP LOCKED", [lo, hi])
        row = cur.fetchone()
        if row is None:
            cur.execute("SELECT count(*) FROM scangate.budgets WHERE k >= %b AND k < %b", [lo, hi])
            counted = cur.fetchone()
            n = int(counted[0]) if counted else 0
            slot = lo + bytes([n if n < BUDGET_SLOTS else random.randrange(BUDGET_SLOTS)])
            cur.execute("INSERT INTO scangate.budgets (k, v) VALUES (%b, %b) ON CONFLICT (k) DO NOTHING",
                        [slot, _SLOT.pack(0, 0, 0, 0, _UNBALANCED, _UNBALANCED)])
            cur.execute("SELECT k, v FROM scangate.budgets WHERE k = %b FOR UPDATE", [slot])
            row = cur.fetchone()
            assert row is not None
        return bytes(row[0]), _SLOT.unpack(bytes(row[1]))

    def _balance(self, key: bytes, mine: bytes, count_max: int | None, fen_max: int | None, need_awards: int,
                 need_fen: int) -> tuple[tuple[int, ...], tuple[int, int]]:
        """Lock every slot of budget ``key`` (in key order) and share out what is
        left of its limits: slot ``mine`` gets what it needs, at least an even
        share, as far as the budget goes; the rest goes evenly to the others. Every
        slot is rewritten against these limits; the allowances then add up to the
        limits exactly (conserved: a slot never holds what another was allowed).
        Returns slot ``mine`` and the budget's awards and fen spent over all slots."""
        cur = self.cur
        cur.execute("SELECT k, v FROM scangate.budgets WHERE k >= %b AND k < %b ORDER BY k FOR UPDATE",
                    [key + b"\0", key + b"\1"])
        slots = {bytes(k): list(_SLOT.unpack(bytes(v))) for k, v in cur.fetchall()}
        total = (sum(s[0] for s in slots.values()), sum(s[1] for s in slots.values()))
        others = [k for k in slots if k != mine]
        for dim, limit, need in ((0, count_max, need_awards), (1, fen_max, need_fen)):
            spent = [s[dim] for s in slots.values()]
            if limit is None:
                for s in slots.values():
                    s[2 + dim] = s[dim]
                continue
            left = max(0, limit - sum(spent))
            share = min(left, max(need, math.ceil(left / len(slots))))
            slots[mine][2 + dim] = slots[mine][dim] + share
            rest = left - share
            for i, k in enumerate(others):
                slots[k][2 + dim] = slots[k][dim] + rest // len(others) + (1 if i < rest % len(others) else 0)
        tag = (_NO_LIMIT if count_max is None else count_max, _NO_LIMIT if fen_max is None else fen_max)
        for s in slots.values():
            s[4:] = tag
        self._put("budgets", [(k, _SLOT.pack(*s)) for k, s in slots.items()])
        return tuple(slots[mine]), total

    def _spend(self, budgets: Mapping[bytes, tuple[int, ...]]) -> list[tuple[bytes, bytes]]:
        """The slot records after the batch's awards (``budgets``: the engine's
        views after them, each the view read plus what the batch spent)."""
        out = []
        for key, after in budgets.items():
            slot_key, slot, before = self._slots[key]
            awards, fen = after[0] - before[0], after[1] - before[1]
            if (awards < 0 or fen < 0 or (slot[4] != _NO_LIMIT and slot[0] + awards > slot[2])
                    or (slot[5] != _NO_LIMIT and slot[1] + fen > slot[3])):
                raise CorruptionError(f"budget {key!r}: the batch spent {awards} awards, {fen} fen beyond its slot")
            out.append((slot_key, _SLOT.pack(slot[0] + awards, slot[1] + fen, *slot[2:])))
        return out

    # ------------------------------------------------------------------ writes
    def apply(self, m: Mutations) -> None:
        """Write one batch's mutations, set-based (inside the caller's
        transaction), in one pipeline: the statements go out together and the
        batch waits for the server once, not once per statement."""
        held = self._lock("counters", m.counter_adds) if m.counter_adds else {}
        ledger_first = self.next_ledger_seq() if m.ledger else 0
        numbers = self._numbers("points_numbers", len(m.points_history))
        decision_numbers = self._numbers("decision_numbers", len(m.decisions))
        with self.conn.pipeline():
            self._write(m, held, ledger_first, numbers, decision_numbers)

    def _write(self, m: Mutations, held: dict[bytes, bytes], ledger_first: int, numbers: list[int],
               decision_numbers: list[int]) -> None:
        self._put("claims", [(k, encode(c)) for k, c in m.claims.items()])
        counters = dict(m.counters)
        if m.counter_adds:      # as LmdbBatch.apply: added to the stored count, under the row's lock
            for key, add in m.counter_adds.items():
                count, amount = unpack_counts(held[key]) if key in held else (0, 0)
                counters[key] = (count + add, amount)
        self._put("counters", [(k, COUNTS[len(v)].pack(*v)) for k, v in counters.items()])
        self._put("budgets", self._spend(m.budgets))
        points = [*((k, ACCOUNT.pack(*v)) for k, v in m.accounts.items()),
                  *((k, I64.pack(v)) for k, v in m.months.items())]
        points += [(prefix + layout.seq_key(n), encode(entry)) for n, (prefix, entry) in zip(numbers, m.points_history)]
        self._put("points", points)
        if m.ledger:
            first = ledger_first
            if m.ledger[0].seq != first or m.ledger[-1].seq - first >= LEDGER_BLOCK:
                raise CorruptionError("ledger: a batch's entries must be numbered within the block it reserved")
            self.cur.execute("INSERT INTO scangate.ledger (n, v) SELECT * FROM unnest(%b::bigint[], %b::bytea[])",
                             [[e.seq for e in m.ledger], [encode(e) for e in m.ledger]])
        self._put("outbox", [(k, encode(p)) for k, p in m.outbox.items()])
        if m.decisions:
            self.cur.execute("INSERT INTO scangate.decisions (n, v) SELECT * FROM unnest(%b::bigint[], %b::bytea[])",
                             [decision_numbers, [encode_decisions([d]) for _k, _fp, d in m.decisions]])
            self._put("requests", [(key, layout.seq_key(n) + fingerprint)
                                   for n, (key, fingerprint, _d) in zip(decision_numbers, m.decisions)])
        self._put("scans", list(m.histories))


class PgOutbox:
    """The payout outbox on PostgreSQL, as the payout runners use it
    (scangate.state.outbox.Outbox; scangate.payouts.run_payouts): any number of
    runners, each with its own ``PgStore``, on any machines. A lease locks the
    rows it takes with ``FOR UPDATE SKIP LOCKED``, so runners that found the same
    candidates take different rows instead of waiting for each other; whether a
    row is due, and what a lease, a renewal and a finish change, are the LMDB
    outbox's rules (scangate.state.outbox), on the same records."""

    def __init__(self, store: PgStore):
        self.store = store

    @property
    def conn(self) -> psycopg.Connection[Any]:
        return self.store.conn      # the calling thread's

    def _rows(self, sql: str, params: Sequence[Any]) -> list[tuple[bytes, Payout]]:
        with self.conn.cursor() as cur:
            cur.execute(sql, params)
            return [(bytes(k), decode_payout(bytes(v))) for k, v in cur.fetchall()]

    def payouts(self) -> list[Payout]:
        rows = self._rows("SELECT k, v FROM scangate.outbox WHERE length(v) > 0 ORDER BY k", [])
        self.conn.rollback()
        return [row for _k, row in rows]

    def candidates(self, after: bytes | None, due: Due, limit: int) -> tuple[list[bytes], bytes | None, bool]:
        """As scangate.state.outbox.candidates: a page at a time, without locks."""
        keys: list[bytes] = []
        last = after
        try:
            while True:
                page = self._rows("SELECT k, v FROM scangate.outbox WHERE k > %b AND length(v) > 0 ORDER BY k "
                                  "LIMIT %s", [last or b"", _PAGE])
                for key, row in page:
                    last = key
                    if due(row):
                        keys.append(key)
                        if len(keys) == limit:
                            return keys, last, False
                if len(page) < _PAGE:
                    return keys, last, True
        finally:
            self.conn.rollback()

    def lease(self, keys: list[bytes], due: Due, runner: str, now: int, lease_ms: int
              ) -> list[tuple[bytes, Payout]]:
        """As scangate.state.outbox.lease; rows another runner has locked are skipped."""
        order = {key: i for i, key in enumerate(keys)}
        try:
            found = self._rows("SELECT k, v FROM scangate.outbox WHERE k = ANY(%b) AND length(v) > 0 ORDER BY k "
                               "FOR UPDATE SKIP LOCKED", [sorted(set(keys))])
            leased = [(key, outbox.leased(row, runner, now, lease_ms)) for key, row in found if due(row)]
            self._write(leased)
            self.conn.commit()
        except BaseException:
            abort(self.conn)
            raise
        return sorted(leased, key=lambda kv: order[kv[0]])

    def renew(self, keys: list[bytes], runner: str, now: int, lease_ms: int) -> set[bytes]:
        try:
            rows = self._locked(keys)
            kept = [(key, outbox.renewed(row, now, lease_ms)) for key, row in rows if outbox.holds(row, runner)]
            self._write(kept)
            self.conn.commit()
        except BaseException:
            abort(self.conn)
            raise
        return {key for key, _row in kept}

    def finish(self, key: bytes, runner: str, **changes: Any) -> bool:
        try:
            rows = self._locked([key])
            if not outbox.holds(rows[0][1], runner):
                self.conn.rollback()
                return False
            self._write([(key, outbox.finished(rows[0][1], changes))])
            self.conn.commit()
        except BaseException:
            abort(self.conn)
            raise
        return True

    def _locked(self, keys: list[bytes]) -> list[tuple[bytes, Payout]]:
        """The rows of a runner's leased sends, locked: rows are never deleted."""
        rows = self._rows("SELECT k, v FROM scangate.outbox WHERE k = ANY(%b) AND length(v) > 0 ORDER BY k "
                          "FOR UPDATE", [sorted(set(keys))])
        missing = set(keys) - {key for key, _row in rows}
        if missing:
            raise CorruptionError(f"outbox row {min(missing).decode('utf-8', 'replace')!r} is missing")
        return rows

    def _write(self, rows: Sequence[tuple[bytes, Payout]]) -> None:
        if rows:
            with self.conn.cursor() as cur:
                cur.execute("UPDATE scangate.outbox AS o SET v = u.v FROM unnest(%b::bytea[], %b::bytea[]) AS u(k, v) "
                            "WHERE o.k = u.k", [[k for k, _r in rows], [encode(r) for _k, r in rows]])


_PAGE = 500     # outbox rows a candidate scan reads at a time
