"""Campaign storage (admin writes and reads of the campaigns database) and budget reports.

The campaigns database (scangate.state.layout): c/<id> the campaign's current
record, s/<id> its secret, r/<id>/<revision, u32> the record of every revision
loaded (audit recomputes a decision under the revision it was made with). A
record is JSON: {campaign, commitment, loaded_at_ms, revision, first_seq (the
first ledger entry that can have been decided under it; records stored before
it was kept lack it), revealed_at_ms (current record only, once the secret was
revealed)}.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import secrets
from typing import Any

import lmdb

from ..campaigns import campaign_from_json, load_campaign
from ..clock import Clock
from ..clock import current as current_clock
from ..clock import now_ms
from ..datadir import DataDir
from ..errors import CorruptionError, InvalidArgument, NotFound
from .store import iter_prefix
from . import layout
from .records import COUNTS, U64
from .view import view

__all__ = ["budgets_used", "campaign_revisions", "get_campaign", "list_campaigns", "put_campaign",
           "reveal_secret", "set_campaign_status"]

_UTC_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def put_campaign(data: DataDir, text: str, source: str = "campaign") -> dict[str, Any]:
    """Validate and store a campaign (TOML or JSON). A new campaign gets a fresh
    32-byte secret and publishes its commitment, SHA-256(secret); reloading an
    existing id replaces the rules (a new revision; every revision is kept, for
    audit) and keeps the secret, budgets and counters. A campaign whose secret
    was revealed cannot be reloaded: anyone could then compute its draws."""
    campaign = load_campaign(text, source, check_plugins=True)   # refuses plugins not installed or allowed
    db = data.store.db("campaigns")
    with data.store.env.begin(write=True) as txn:
        key = campaign.id.encode()
        stored = txn.get(layout.CAMPAIGN_PREFIX + key, db=db)
        old_raw = bytes(stored) if stored is not None else None
        old = json.loads(old_raw) if old_raw is not None else None
        if old is not None and old.get("revealed_at_ms") is not None:
            raise InvalidArgument(f"{source}: id: campaign {campaign.id!r} has ended and its secret was revealed, so "
                                  "anyone could compute its draws; load the new rules under another id")
        secret = txn.get(layout.secret_key(campaign.id), db=db)
        if secret is None:
            secret = secrets.token_bytes(32)
            txn.put(layout.secret_key(campaign.id), secret, db=db)
        if old is not None and old_raw is not None:
            kept = layout.revision_key(campaign.id, old["revision"])
            if txn.get(kept, db=db) is None:   # stored before revisions were kept: kept now, before it is replaced
                txn.put(kept, old_raw, db=db)
        # decisions under this revision get ledger numbers from the next one on, so
        # audit can tell an entry that names a revision loaded after it was decided.
        # LMDB runs one write transaction at a time and a batch reads the campaigns
        # inside its own, so on it the bound is exact; audit still treats it as a lower
        # bound (an older revision past first_seq is not a fault), as a store whose
        # deciders commit concurrently will need
        if data.decisions is not None:
            # PostgreSQL: the start of a ledger block of its own. A batch that sees this
            # revision opened its read of the campaigns after this commit, and reserves
            # its block after that, so its numbers are past this one
            first_seq = data.decisions.reserve_ledger_block()
        else:
            last = txn.cursor(db=data.store.db("ledger"))
            first_seq = U64.unpack(last.key())[0] + 1 if last.last() else 1
        record: dict[str, Any] = {
            "campaign": campaign.to_json(), "commitment": hashlib.sha256(secret).hexdigest(),
            "loaded_at_ms": now_ms(), "revision": old["revision"] + 1 if old is not None else 1,
            "first_seq": first_seq}
        raw = json.dumps(record).encode()
        txn.put(layout.CAMPAIGN_PREFIX + key, raw, db=db)
        txn.put(layout.revision_key(campaign.id, record["revision"]), raw, db=db)
        data.store.bump_rules(txn)
    return record


def get_campaign(data: DataDir, campaign_id: str, txn: lmdb.Transaction[bytes] | None = None) -> dict[str, Any]:
    own = txn is None
    txn = txn or data.store.env.begin()
    try:
        raw = txn.get(layout.campaign_key(campaign_id), db=data.store.db("campaigns"))
    finally:
        if own:
            txn.abort()
    if raw is None:
        raise NotFound(f"no campaign {campaign_id!r}")
    return json.loads(raw)  # type: ignore[no-any-return]


def campaign_revisions(data: DataDir, campaign_id: str,
                       txn: lmdb.Transaction[bytes] | None = None) -> dict[int, dict[str, Any]]:
    """Every stored revision of a campaign: revision -> its record as loaded (see
    layout.revision_key). A campaign loaded before revisions were kept has its current
    record only, under its revision. Empty: no such campaign."""
    own = txn is None
    txn = txn or data.store.env.begin()
    try:
        db = data.store.db("campaigns")
        out = {int.from_bytes(k[-4:], "big"): json.loads(bytes(v))
               for k, v in iter_prefix(txn, db, layout.revision_prefix(campaign_id))}
        current = txn.get(layout.campaign_key(campaign_id), db=db)
    finally:
        if own:
            txn.abort()
    if current is not None:
        record = json.loads(bytes(current))
        out.setdefault(record["revision"], record)
    return dict(sorted(out.items()))


def reveal_secret(data: DataDir, campaign_id: str, now_ms: Clock | None = None) -> dict[str, Any]:
    """Publish a campaign's secret once its window has ended, so that anyone can
    check its draws against the commitment published when it was loaded
    (docs/campaigns.md, "Verifying draws"). Records the reveal: the campaign's
    window is closed from then on (no draw may use a public secret, not even a
    late scan dated inside it) and it cannot be reloaded. Asking again returns the
    same secret. Raises InvalidArgument while the window has not ended (``now_ms``:
    the clock; default the process's)."""
    now = (now_ms or current_clock())()      # the process's clock (scangate.clock)
    db = data.store.db("campaigns")
    with data.store.env.begin(write=True) as txn:
        record = get_campaign(data, campaign_id, txn)
        campaign = campaign_from_json(record["campaign"])
        end_ms = (campaign.end - _UTC_EPOCH) // dt.timedelta(milliseconds=1)
        if now < end_ms:
            raise InvalidArgument(
                f"campaign_id: campaign {campaign_id!r} runs until {campaign.end.replace(tzinfo=None).isoformat()} "
                f"({campaign.timezone}); its secret can be revealed only after its window has ended")
        secret = txn.get(layout.secret_key(campaign_id), db=db)
        if secret is None:
            raise CorruptionError(f"campaign {campaign_id}: no secret stored")
        if record.get("revealed_at_ms") is None:
            record["revealed_at_ms"] = now
            txn.put(layout.campaign_key(campaign_id), json.dumps(record).encode(), db=db)
            data.store.bump_rules(txn)
    return {"campaign_id": campaign_id, "secret": bytes(secret).hex(), "commitment": record["commitment"],
            "matches_commitment": hashlib.sha256(secret).hexdigest() == record["commitment"],
            "end": campaign.end.replace(tzinfo=None).isoformat(), "timezone": campaign.timezone,
            "revealed_at_ms": record["revealed_at_ms"]}


def list_campaigns(data: DataDir) -> list[dict[str, Any]]:
    with data.store.env.begin() as txn:
        return [json.loads(v) for _, v in iter_prefix(txn, data.store.db("campaigns"), layout.CAMPAIGN_PREFIX)]


def set_campaign_status(data: DataDir, campaign_id: str, status: str) -> None:
    if status not in ("active", "paused"):
        raise InvalidArgument(f"status: {status!r} is not active or paused")
    db = data.store.db("campaigns")
    with data.store.env.begin(write=True) as txn:
        record = get_campaign(data, campaign_id, txn)
        record["campaign"]["status"] = status
        txn.put(layout.campaign_key(campaign_id), json.dumps(record).encode(), db=db)
        data.store.bump_rules(txn)



def budgets_used(data: DataDir, campaign_id: str) -> dict[str, dict[str, int]]:
    """Awards and fen used per prize of a campaign."""
    prefix = layout.budget_prefix(campaign_id)
    with view(data) as v:
        return {k[len(prefix):].decode(): dict(zip(("count", "amount_fen"), COUNTS[2].unpack(raw)))
                for k, raw in v.items("budgets", prefix=prefix)}
