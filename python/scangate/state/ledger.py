"""The reads of the decision state that the audit makes (scangate.audit), in one
read snapshot: the ledger's entries as stored, the campaigns' secrets, current
records and revisions, the request index's decisions and the claims.

``LedgerSnapshot`` is a context manager over one read snapshot
(scangate.state.view: an LMDB read transaction, and a PostgreSQL one where the
decision state is there): every read inside its ``with`` block sees the state
as one commit left it, however many batches commit meanwhile. Its ``version``
tells two snapshots of one state apart from others (the audit keeps its walk of
the ledger for the next call on the same version). Nothing of the store is in
its API.

Values that no key can hold (an empty campaign id, one longer than a key, a
request key past LMDB's longest, a serial past 2^56) have no record: the reads
give None, as for a key not stored, since the audit asks with values read from
an entry that may have been edited.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Iterator
from contextlib import ExitStack
from types import TracebackType
from typing import TYPE_CHECKING, Any

from ..errors import CorruptionError
from . import layout
from .batch import POINTER_SIZES
from .campaigns import campaign_revisions
from ..decision import Decision
from .records import U64, Claim, decode_claim
from .view import LmdbView, PgView, View, logged_decision, view

if TYPE_CHECKING:
    import lmdb

    from ..datadir import DataDir

__all__ = ["LedgerSnapshot"]

# The longest campaign id a campaign key (s/, c/, r/<id>/<revision>) is read for:
# a key of LMDB's default build holds 511 bytes.
_MAX_CAMPAIGN_ID = 400


class LedgerSnapshot:
    """One read snapshot of the decision state, for the audit (the module docstring).

    ``with LedgerSnapshot(data) as snap:``; the reads raise RuntimeError outside
    the block, and CorruptionError for a stored record that is not what its
    database holds."""

    def __init__(self, data: DataDir) -> None:
        self._data = data
        self._stack: ExitStack | None = None
        self._view: View | None = None
        self._version = 0

    def __enter__(self) -> LedgerSnapshot:
        if self._stack is not None:
            raise RuntimeError("a LedgerSnapshot is entered once")
        self._stack = ExitStack()
        self._view = self._stack.enter_context(view(self._data))
        self._version = self._lmdb().id()
        if self._data.decisions is not None:
            # what a PostgreSQL snapshot sees: its xmin, xmax and the transactions
            # in progress; two equal ones see the same commits
            self._data.decisions.conn.execute("SELECT 1")   # the snapshot is taken by the first statement
            row = self._data.decisions.conn.execute("SELECT pg_current_snapshot()::text").fetchone()
            self._version = (self._version << 32) ^ zlib.crc32(str(row[0] if row else "").encode())
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        stack, self._stack, self._view = self._stack, None, None
        if stack is not None:
            stack.close()     # read transactions: nothing to commit

    def _read(self) -> View:
        if self._view is None:
            raise RuntimeError("a LedgerSnapshot is read inside its with block")
        return self._view

    def _lmdb(self) -> lmdb.Transaction[bytes]:
        v = self._read()
        assert isinstance(v, (LmdbView, PgView))
        return (v if isinstance(v, LmdbView) else v.rest).txn

    @property
    def slotted(self) -> bool:
        """Whether budgets are split into slots, each decision seeing its slot's
        share (the PostgreSQL store)."""
        return self._data.decisions is not None

    @property
    def version(self) -> int:
        """The state this snapshot reads: the number of the last write committed
        before it (LMDB's transaction id; with PostgreSQL, and its snapshot). Two
        snapshots of one version read the same values."""
        self._read()
        return self._version

    # ------------------------------------------------------------------ ledger
    def entries(self, first: int = 1, last: int | None = None) -> Iterator[tuple[int, bytes]]:
        """(seq, the entry's bytes as stored) of ledger entries ``first`` to
        ``last`` (None: to the end), in order; undecoded (scangate.audit reads them
        field by field)."""
        for key, raw in self._read().items("ledger", layout.seq_key(max(first, 0))):
            seq = layout.seq_of(key)
            if last is not None and seq > last:
                break
            yield seq, raw

    # ------------------------------------------------------------------ campaigns
    def _campaign_get(self, key: bytes, campaign_id: str) -> bytes | None:
        if not 0 < len(campaign_id.encode()) <= _MAX_CAMPAIGN_ID:
            return None
        return self._read().get("campaigns", key)

    def secret(self, campaign_id: str) -> bytes | None:
        """The campaign's secret (None: no such campaign)."""
        return self._campaign_get(layout.secret_key(campaign_id), campaign_id)

    def current_campaign(self, campaign_id: str) -> dict[str, Any] | None:
        """The campaign's current record (scangate.state.campaigns: campaign,
        commitment, revision...), or None."""
        raw = self._campaign_get(layout.campaign_key(campaign_id), campaign_id)
        if raw is None:
            return None
        try:
            record = json.loads(raw)
        except ValueError as exc:
            raise CorruptionError(f"campaign {campaign_id!r}: its record is not JSON ({exc})") from None
        if not isinstance(record, dict):
            raise CorruptionError(f"campaign {campaign_id!r}: its record is not a JSON object")
        return record

    def revisions(self, campaign_id: str) -> dict[int, dict[str, Any]]:
        """Every stored revision of the campaign: revision -> its record as loaded
        (scangate.state.campaigns.campaign_revisions), in order; empty: no such
        campaign."""
        if not 0 < len(campaign_id.encode()) <= _MAX_CAMPAIGN_ID:
            return {}
        return campaign_revisions(self._data, campaign_id, self._lmdb())

    # ------------------------------------------------------------------ decisions, claims
    def decision_of(self, request_id: str, client: str) -> Decision | None:
        """The stored decision the request index gives for ``request_id`` within
        ``client`` (None: the index holds no such request; CorruptionError when
        the log does not hold the decision it points to)."""
        key = layout.request_key(client, request_id)
        if not 0 < len(key) <= layout.MAX_KEY:
            return None
        v = self._read()
        pointer = v.get("requests", key)
        if pointer is None:
            return None
        if len(pointer) not in POINTER_SIZES:    # schema 2 stores no decision inline
            raise CorruptionError(f"request {request_id!r}: its index record is {len(pointer)} bytes, not a "
                                  f"decision number ({' or '.join(map(str, POINTER_SIZES))} bytes)")
        number = int(U64.unpack_from(pointer)[0])
        return logged_decision(v, number)

    def claim(self, serial: int) -> Claim | None:
        """The claim made on the code of ``serial`` (None: none)."""
        try:
            key = layout.serial_key(serial)
        except OverflowError:       # no code has that serial
            return None
        raw = self._read().get("claims", key)
        return decode_claim(raw) if raw is not None else None
