"""The reads of the decision state that the audit makes (scangate.audit), in one
read snapshot: the ledger's entries as stored, the campaigns' secrets, current
records and revisions, the request index's decisions and the claims.

``LedgerSnapshot`` is a context manager over one LMDB read transaction: every
read inside its ``with`` block sees the state as one commit left it, however
many batches commit meanwhile. Its ``version`` tells two snapshots of one state
apart from others (the audit keeps its walk of the ledger for the next call on
the same version). Nothing of LMDB is in its API.

Values that no key can hold (an empty campaign id, one longer than a key, a
request key past LMDB's longest, a serial past 2^56) have no record: the reads
give None, as for a key not stored, since the audit asks with values read from
an entry that may have been edited.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from types import TracebackType
from typing import TYPE_CHECKING, Any

from ..errors import CorruptionError
from . import layout
from .batch import POINTER_SIZES, logged_decisions
from .campaigns import campaign_revisions
from ..decision import Decision
from .records import U64, Claim, decode_claim

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
        self._txn: lmdb.Transaction[bytes] | None = None

    def __enter__(self) -> LedgerSnapshot:
        if self._txn is not None:
            raise RuntimeError("a LedgerSnapshot is entered once")
        self._txn = self._data.store.env.begin()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        txn, self._txn = self._txn, None
        if txn is not None:
            txn.abort()     # a read transaction: nothing to commit

    def _open(self) -> lmdb.Transaction[bytes]:
        if self._txn is None:
            raise RuntimeError("a LedgerSnapshot is read inside its with block")
        return self._txn

    @property
    def version(self) -> int:
        """The state this snapshot reads: the number of the last write committed
        before it (LMDB's transaction id). Two snapshots of one version read the
        same values."""
        return int(self._open().id())

    # ------------------------------------------------------------------ ledger
    def entries(self, first: int = 1, last: int | None = None) -> Iterator[tuple[int, bytes]]:
        """(seq, the entry's bytes as stored) of ledger entries ``first`` to
        ``last`` (None: to the end), in order; undecoded (scangate.audit reads them
        field by field)."""
        txn = self._open()
        cur = txn.cursor(db=self._data.store.db("ledger"))
        if not cur.set_range(layout.seq_key(max(first, 0))):
            return
        for key, raw in cur.iternext():
            seq = layout.seq_of(key)
            if last is not None and seq > last:
                break
            yield seq, bytes(raw)

    # ------------------------------------------------------------------ campaigns
    def _campaign_get(self, key: bytes, campaign_id: str) -> bytes | None:
        if not 0 < len(campaign_id.encode()) <= _MAX_CAMPAIGN_ID:
            return None
        raw = self._open().get(key, db=self._data.store.db("campaigns"))
        return bytes(raw) if raw is not None else None

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
        return campaign_revisions(self._data, campaign_id, self._open())

    # ------------------------------------------------------------------ decisions, claims
    def decision_of(self, request_id: str, client: str) -> Decision | None:
        """The stored decision the request index gives for ``request_id`` within
        ``client`` (None: the index holds no such request; CorruptionError when
        the log does not hold the decision it points to)."""
        key = layout.request_key(client, request_id)
        if not 0 < len(key) <= layout.MAX_KEY:
            return None
        txn = self._open()
        pointer = txn.get(key, db=self._data.store.db("requests"))
        if pointer is None:
            return None
        if len(pointer) not in POINTER_SIZES:    # schema 2 stores no decision inline
            raise CorruptionError(f"request {request_id!r}: its index record is {len(pointer)} bytes, not a "
                                  f"decision number ({' or '.join(map(str, POINTER_SIZES))} bytes)")
        number = int(U64.unpack_from(pointer)[0])
        return logged_decisions(txn, self._data.store.db("decisions"), [number])[number]

    def claim(self, serial: int) -> Claim | None:
        """The claim made on the code of ``serial`` (None: none)."""
        try:
            key = layout.serial_key(serial)
        except OverflowError:       # no code has that serial
            return None
        raw = self._open().get(key, db=self._data.store.db("claims"))
        return decode_claim(raw) if raw is not None else None
