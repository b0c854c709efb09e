"""Rewards: the decision of one scan, exactly once.

``decide_scans`` takes a batch of scan requests and, in ONE LMDB write transaction
(group commit), for each: returns the stored decision if its request id was seen
for the same request (a retry gets the same answer; the id reused for another
request gets ``RequestIdReused`` in its place, and changes nothing); decides the
verdict (scan history included); picks the campaign; checks blacklist, verdict
policy, the code's claim and the user's caps; draws (an HMAC of the campaign secret and the scan, so every draw can be
replayed by ``audit_entry``); and writes the claim, budgets, counters, points, the
ledger entry and the payout request. It returns after the commit, so a decision
that reached a caller is durable, and budgets and caps hold whatever the
concurrency: LMDB has one writer at a time.

A batch first runs the stateless checks of every scan, then reads the state they
need in a few getmultis, decides scan after scan against a write-back cache
(so the result is the same as reading and writing LMDB scan after scan), and writes
each changed key once before the commit. Records (JSON ones are byte for byte what
json.dumps writes; tests/test_rewards_encoding.py):

    requests   request id (scoped by ``ScanRequest.client``: _scoped_key) -> 8-byte
               number of its decision in ``decisions``, then the request's 16-byte
               fingerprint (_fingerprint; records of 8 bytes, written before it,
               have none and match any request)
    decisions  number -> json.dumps(Decision.to_json()); appended only
    claims     serial (7 bytes) -> JSON {campaign_id, ledger_seq}
    counters   t/<campaign>/<actor> -> awards, fen, eligible scans (3 x u64), then
               the awards of one local day: day number (days since 1970-01-01,
               i64), awards, fen (u64); a record of 3 holds no day (as all did
               in data written before the day moved in);
               d/<campaign>/<actor>/<local day> -> awards, fen of any other day
               (2 x u64): written when an award on another day takes the t/
               record's place, read when a scan's day is not the one t/ holds;
               pf/<campaign>/<plugin> -> failures, 0 (2 x u64)
    budgets    <campaign>/<prize> -> awards, fen (2 x u64)
    ledger     seq (u64) -> JSON entry: the decision and every input needed to
               recompute it (scangate.audit.LEDGER_FIELDS)
    campaigns  c/<id> the current record, s/<id> the secret, r/<id>/<revision>
               every revision loaded (_revision_key)
    outbox     <campaign>:<serial> -> JSON payout request
    points     see scangate.points

The payout worker is scangate.payouts, rule plugins scangate.plugins, points
redemption and the leaderboard scangate.points.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import logging
import math
import numbers
import operator
import secrets
import struct
from collections.abc import Container, Iterable, Sequence
from dataclasses import asdict
from typing import Any

import lmdb

from . import points as points_mod
from .campaigns import Campaign, Prize, campaign_from_json, load_campaign
from .datadir import DataDir, VerifyResult
from .decision import NO_REWARD_MESSAGES, Award, Decision, NoReward, ScanRequest
from .decision import SAID_BY_VERDICT as _SAID_BY_VERDICT
from .decision import decision_message as _message
from .enums import CodeStatus
from .errors import CorruptionError, InvalidArgument, NotFound, quote
from .jsontext import esc as _esc
from .jsontext import number as _num
from .localtime import LocalClock
from .plugins import RuleContext, RuleResult, run_plugins
from .store import ProductLine, iter_prefix
from .clock import Clock, ScanTimePolicy, now_ms
from .clock import current as current_clock
from .trace import SERIAL_BYTES
from .trace import text_problem as _text_problem   # the one text check: no NUL, controls, lone surrogates
from .verdicts import Scan, ScanVerdict, Verdict, VerdictConfig, _decide_verdicts

__all__ = [
    "Award",
    "Decision",
    "NoReward",
    "RequestIdReused",
    "ScanRequest",
    "audit_entry",
    "budgets_used",
    "campaign_revisions",
    "decide_scans",
    "get_campaign",
    "list_campaigns",
    "put_campaign",
    "reveal_secret",
    "set_campaign_status",
]

log = logging.getLogger(__name__)

PPM = 1_000_000
_PAIR = struct.Struct(">QQ")   # count, amount (fen)


class RequestRefused(InvalidArgument):
    """One request of a batch refused, nothing of it written: ``decide_scans``
    puts it in the request's place in its result (not raised; the rest of the
    batch is decided as usual) and the server answers that call with
    INVALID_ARGUMENT naming ``field``."""

    def __init__(self, field: str, why: str, name: str = ""):
        super().__init__(f"{field}: {why}")     # "field: why", which the server makes a field violation
        self.field, self.why, self.name = field, why, name or field

    def at(self, prefix: str) -> RequestRefused:
        """The same refusal inside a batch: ``at("scans[3].")`` names ``scans[3].time_ms``."""
        return type(self)(prefix + self.name, self.why, self.name)

    def __reduce__(self) -> tuple[type[RequestRefused], tuple[str, str, str]]:
        return type(self), (self.field, self.why, self.name)   # args is the message: rebuild from the fields


class RequestIdReused(RequestRefused):
    """A request id already used for a request with other content."""

    def __init__(self, request_id: str, field: str = "request_id"):
        super().__init__(field, f"{quote(request_id)} was already used for another request (another code, actor, "
                                "actor type, region or coordinates); a retry must repeat its request", "request_id")
        self.request_id = request_id

    def at(self, prefix: str) -> RequestIdReused:
        return RequestIdReused(self.request_id, prefix + self.name)

    def __reduce__(self) -> tuple[type[RequestIdReused], tuple[str, str]]:  # type: ignore[override]
        return RequestIdReused, (self.request_id, self.field)


class ScanTimeRefused(RequestRefused):
    """A client's scan time outside the window the deciding clock accepts
    (``scangate.clock.ScanTimePolicy``)."""

    def __init__(self, field: str = "time_ms", why: str = "", name: str = "time_ms"):
        super().__init__(field, why, name)


# ---------------------------------------------------------------------- campaigns
# The campaigns database: c/<id> the campaign's current record, s/<id> its secret,
# r/<id>/<revision, u32> the record of every revision loaded (audit recomputes a
# decision under the revision it was made with: _revision_key). A record is JSON:
# {campaign, commitment, loaded_at_ms, revision, first_seq (the first ledger entry
# that can have been decided under it; records stored before it was kept lack it),
# revealed_at_ms (current record only, once the secret was revealed)}.
_REVISION = struct.Struct(">I")


def _revision_key(campaign_id: str, revision: int) -> bytes:
    return b"r/" + campaign_id.encode() + b"/" + _REVISION.pack(revision)


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
        stored = txn.get(b"c/" + key, db=db)
        old_raw = bytes(stored) if stored is not None else None
        old = json.loads(old_raw) if old_raw is not None else None
        if old is not None and old.get("revealed_at_ms") is not None:
            raise InvalidArgument(f"{source}: id: campaign {campaign.id!r} has ended and its secret was revealed, so "
                                  "anyone could compute its draws; load the new rules under another id")
        secret = txn.get(b"s/" + key, db=db)
        if secret is None:
            secret = secrets.token_bytes(32)
            txn.put(b"s/" + key, secret, db=db)
        if old is not None and old_raw is not None:
            kept = _revision_key(campaign.id, old["revision"])
            if txn.get(kept, db=db) is None:   # stored before revisions were kept: kept now, before it is replaced
                txn.put(kept, old_raw, db=db)
        # decisions under this revision get ledger numbers from the next one on, so
        # audit can tell an entry that names a revision loaded after it was decided.
        # A lower bound only: a pipelined batch decided under the revision before
        # may still append after this commit (scangate.pipeline reads campaigns
        # unchecked), so an older revision past first_seq is not a fault
        last = txn.cursor(db=data.store.db("ledger"))
        first_seq = _U64.unpack(last.key())[0] + 1 if last.last() else 1
        record: dict[str, Any] = {
            "campaign": campaign.to_json(), "commitment": hashlib.sha256(secret).hexdigest(),
            "loaded_at_ms": now_ms(), "revision": old["revision"] + 1 if old is not None else 1,
            "first_seq": first_seq}
        raw = json.dumps(record).encode()
        txn.put(b"c/" + key, raw, db=db)
        txn.put(_revision_key(campaign.id, record["revision"]), raw, db=db)
    return record


def get_campaign(data: DataDir, campaign_id: str, txn: lmdb.Transaction[bytes] | None = None) -> dict[str, Any]:
    own = txn is None
    txn = txn or data.store.env.begin()
    try:
        raw = txn.get(b"c/" + campaign_id.encode(), db=data.store.db("campaigns"))
    finally:
        if own:
            txn.abort()
    if raw is None:
        raise NotFound(f"no campaign {campaign_id!r}")
    return json.loads(raw)  # type: ignore[no-any-return]


def campaign_revisions(data: DataDir, campaign_id: str,
                       txn: lmdb.Transaction[bytes] | None = None) -> dict[int, dict[str, Any]]:
    """Every stored revision of a campaign: revision -> its record as loaded (see
    _revision_key). A campaign loaded before revisions were kept has its current
    record only, under its revision. Empty: no such campaign."""
    own = txn is None
    txn = txn or data.store.env.begin()
    try:
        db = data.store.db("campaigns")
        out = {_REVISION.unpack(k[-4:])[0]: json.loads(bytes(v))
               for k, v in iter_prefix(txn, db, b"r/" + campaign_id.encode() + b"/")}
        current = txn.get(b"c/" + campaign_id.encode(), db=db)
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
        secret = txn.get(b"s/" + campaign_id.encode(), db=db)
        if secret is None:
            raise CorruptionError(f"campaign {campaign_id}: no secret stored")
        if record.get("revealed_at_ms") is None:
            record["revealed_at_ms"] = now
            txn.put(b"c/" + campaign_id.encode(), json.dumps(record).encode(), db=db)
    return {"campaign_id": campaign_id, "secret": bytes(secret).hex(), "commitment": record["commitment"],
            "matches_commitment": hashlib.sha256(secret).hexdigest() == record["commitment"],
            "end": campaign.end.replace(tzinfo=None).isoformat(), "timezone": campaign.timezone,
            "revealed_at_ms": record["revealed_at_ms"]}


def list_campaigns(data: DataDir) -> list[dict[str, Any]]:
    with data.store.env.begin() as txn:
        return [json.loads(v) for _, v in iter_prefix(txn, data.store.db("campaigns"), b"c/")]


def set_campaign_status(data: DataDir, campaign_id: str, status: str) -> None:
    if status not in ("active", "paused"):
        raise InvalidArgument(f"status: {status!r} is not active or paused")
    db = data.store.db("campaigns")
    with data.store.env.begin(write=True) as txn:
        record = get_campaign(data, campaign_id, txn)
        record["campaign"]["status"] = status
        txn.put(b"c/" + campaign_id.encode(), json.dumps(record).encode(), db=db)


# ---------------------------------------------------------------------- batch state
_MISSING = object()
_UTC_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_US = dt.timedelta(microseconds=1)
# epoch ms that datetime can hold (years 1 to 9999); outside, a decision raises as
# datetime.fromtimestamp does
_MIN_MS = (dt.datetime(1, 1, 2, tzinfo=dt.UTC) - _UTC_EPOCH) // dt.timedelta(milliseconds=1)
_MAX_MS = (dt.datetime(9999, 12, 30, tzinfo=dt.UTC) - _UTC_EPOCH) // dt.timedelta(milliseconds=1)
_GENUINE = int(CodeStatus.GENUINE)
_NO_RULE = RuleResult()
_MESSAGE_KEYS = {"zh-CN", "en"}
# counters and budgets: see the module docstring


_new, _set_attr = object.__new__, object.__setattr__
_U64 = struct.Struct(">Q")
_POINTER_SIZES = (8, 24)     # a request record: decision number, then (24) the fingerprint
_blake2b = hashlib.blake2b


def _fingerprint(r: ScanRequest) -> bytes:
    """16 bytes of BLAKE2b over what makes a scan this scan: code, actor, actor
    type, region and coordinates. A retry must repeat them; a request id reused
    for anything else is refused (RequestIdReused). Not in it: the request id and
    client (the record's key already); ``time_ms``, because a retry may be
    stamped anew (a request without one is stamped by the server at each try, and
    apps that stamp the send time do the same), and the same code scanned by the
    same actor at the same place is that scan; and ``actor_tags``, which describe
    the actor rather than the scan and may be recomputed by a retrying app.

    Encoding: actor type, region, latitude, longitude (Python reprs; coordinates
    as floats, so 30 and 30.0 are one place), the code's length, each followed by
    NUL, then the code and the actor: only the two free strings come last, and
    the code's length fixes where the actor begins, so no two requests share an
    encoding. ``_fingerprints`` is the same for a batch, faster."""
    lat, lon = r.lat, r.lon
    lat_text = repr(lat if lat is None else float(lat))
    lon_text = repr(lon if lon is None else float(lon))
    return _blake2b(f"{r.actor_type}\0{r.region}\0{lat_text}\0{lon_text}\0{len(r.code)}\0{r.code}{r.actor}"
                    .encode("utf-8", "surrogatepass")).digest()[:16]


def _fingerprints(requests: Sequence[ScanRequest]) -> list[bytes]:
    """``_fingerprint`` of each request: written out for the usual request, without
    coordinates (this runs for every request; the hash object's own work is
    most of it, so BLAKE2b's 64-byte digest is cut rather than a 16-byte one
    asked for by keyword, which costs more)."""
    return [_blake2b(f"{r.actor_type}\0{r.region}\0None\0None\0{len(r.code)}\0{r.code}{r.actor}"
                     .encode("utf-8", "surrogatepass")).digest()[:16]
            if r.lat is None and r.lon is None else _fingerprint(r) for r in requests]


_client_prefix: dict[str, bytes] = {}
_MAX_KEY = 511      # LMDB's longest key (its default build)


def _scoped_key(client: str, request_id: str) -> bytes:
    """The request record key of ``request_id`` sent by ``client``: 0xFF (never in
    the UTF-8 of an unscoped id, the key of a request without a client, so the
    two cannot meet), 16 bytes of BLAKE2b of the client's name (a fixed length,
    whatever the name's), then the id; an id too long for an LMDB key after the
    prefix (511 bytes) becomes 0xFE (never in UTF-8 either) and 32 bytes of its
    BLAKE2b, so no length of id fails the batch's write."""
    prefix = _client_prefix.get(client)
    if prefix is None:
        if len(_client_prefix) >= 10_000:
            _client_prefix.clear()
        prefix = _client_prefix[client] = b"\xff" + _blake2b(
            client.encode("utf-8", "surrogatepass"), digest_size=16, person=b"scangate-client").digest()
    rid = request_id.encode()
    if len(rid) > _MAX_KEY - len(prefix):
        rid = b"\xfe" + _blake2b(rid, digest_size=32, person=b"scangate-longid").digest()
    return prefix + rid


def _decision(request_id: str, verdict: dict[str, Any], award: Award | None, no_reward: NoReward | None,
              campaign_id: str | None) -> Decision:
    """``Decision(...)``, the same value, made without the frozen dataclass's
    field-by-field ``__init__`` (thousands a second: it shows)."""
    d = _new(Decision)
    _set_attr(d, "__dict__", {"request_id": request_id, "verdict": verdict, "award": award,
                              "no_reward": no_reward, "campaign_id": campaign_id})
    return d


def _award(campaign_id: str, prize_id: str, kind: str, amount_fen: int, points: int, how: str, ledger_seq: int,
           payout_key: str | None) -> Award:
    """``Award(...)``, as ``_decision``."""
    a = _new(Award)
    _set_attr(a, "__dict__", {"campaign_id": campaign_id, "prize_id": prize_id, "kind": kind,
                              "amount_fen": amount_fen, "points": points, "how": how, "ledger_seq": ledger_seq,
                              "payout_key": payout_key})
    return a


class _Claims:
    """The claims inside the batch's write transaction: read through a cache that
    holds the batch's own claims, written once each by ``flush``."""

    __slots__ = ("db", "dirty", "txn", "values")

    def __init__(self, txn: lmdb.Transaction[bytes], db: Any):
        self.txn, self.db = txn, db
        self.values: dict[bytes, bytes | None] = {}
        self.dirty: dict[bytes, bytes] = {}

    def prefetch(self, keys: Iterable[bytes]) -> None:
        """Read the keys not cached yet in one getmulti: afterwards ``values``
        holds every one of them (None: no claim)."""
        values = self.values
        missing = list(set(keys).difference(values))
        if missing:
            values.update(dict.fromkeys(missing))
            values.update(self.txn.cursor(db=self.db).getmulti(missing))

    def put(self, key: bytes, value: bytes) -> None:
        self.values[key] = self.dirty[key] = value

    def flush(self) -> None:
        if self.dirty:
            self.txn.cursor(db=self.db).putmulti(list(self.dirty.items()))


class _Counts:
    """Counters or budgets inside the batch's write transaction, as tuples of
    unsigned integers (stored big-endian, 8 bytes each): read through a cache that
    holds the batch's own changes, each changed key written once by
    ``flush``. Deciding scan after scan against it gives exactly what reading and
    writing LMDB scan after scan gives."""

    __slots__ = ("db", "dirty", "txn", "values")

    def __init__(self, txn: lmdb.Transaction[bytes], db: Any):
        self.txn, self.db = txn, db
        self.values: dict[bytes, tuple[int, ...] | None] = {}
        self.dirty: set[bytes] = set()

    def prefetch(self, keys: Iterable[bytes]) -> None:
        """Read the keys not cached yet in one getmulti: afterwards ``values``
        holds every one of them (None: not stored)."""
        values = self.values
        missing = list(set(keys).difference(values))
        if missing:
            values.update(dict.fromkeys(missing))
            for key, raw in self.txn.cursor(db=self.db).getmulti(missing):
                values[key] = _unpack_counts(raw)

    def get(self, key: bytes) -> tuple[int, ...] | None:
        value = self.values.get(key, _MISSING)
        if value is _MISSING:
            raw = self.txn.get(key, db=self.db)
            value = self.values[key] = _unpack_counts(raw) if raw is not None else None
        return value  # type: ignore[return-value]

    def pair(self, key: bytes) -> tuple[int, int]:
        return self.get(key) or (0, 0)  # type: ignore[return-value]

    def put(self, key: bytes, value: tuple[int, ...]) -> None:
        self.values[key] = value
        self.dirty.add(key)

    def add_pair(self, key: bytes, count: int, amount: int) -> None:
        c, a = self.pair(key)
        self.put(key, (c + count, a + amount))

    def flush(self) -> None:
        if self.dirty:
            values = self.values
            self.txn.cursor(db=self.db).putmulti(
                [(k, _COUNTS[len(v)].pack(*v)) for k in self.dirty if (v := values[k]) is not None])


_COUNTS = {2: _PAIR, 3: struct.Struct(">QQQ"), 6: struct.Struct(">QQQqQQ")}
_ZERO2 = (0, 0)


def _unpack_counts(raw: bytes) -> tuple[int, ...]:
    return _COUNTS[len(raw) // 8].unpack(raw)


class _Batch:
    """The reward databases of one batch's write transaction."""

    def __init__(self, data: DataDir, txn: lmdb.Transaction[bytes]):
        s = data.store
        self.txn = txn
        self.campaigns_db, self.requests_db, self.ledger_db = s.db("campaigns"), s.db("requests"), s.db("ledger")
        self.outbox_db = s.db("outbox")
        self.claims = _Claims(txn, s.db("claims"))
        self.counters, self.budgets = _Counts(txn, s.db("counters")), _Counts(txn, s.db("budgets"))
        self.points = points_mod.PointsWriter(txn, s.db("points"))
        self.decisions_db = s.db("decisions")
        self.ledger: list[tuple[bytes, bytes]] = []
        self.outbox: dict[bytes, bytes] = {}
        self.requests: dict[bytes, bytes] = {}    # request key -> its decision's JSON, in decision order
        self.prints: list[bytes] = []             # their requests' fingerprints, in the same order
        cur = txn.cursor(db=self.ledger_db)
        self.next_seq = struct.unpack(">Q", cur.key())[0] + 1 if cur.last() else 1

    def stored(self, request_ids: Sequence[bytes]) -> dict[bytes, tuple[bytes, bytes | None]]:
        """The stored decisions (JSON) of the request keys that have one, with the
        fingerprint of the request decided (None: stored before fingerprints)."""
        txn = self.txn
        index = txn.cursor(db=self.requests_db).getmulti(list(set(request_ids)))
        if not index:
            return {}
        # 8 bytes point into the decision log, 24 add the fingerprint; anything else
        # is a decision stored inline (data written before the log existed): JSON,
        # never 8 or 24 bytes long
        inline = {rid: (value, None) for rid, value in index if len(value) not in _POINTER_SIZES}
        log = dict(txn.cursor(db=self.decisions_db).getmulti(
            sorted({v[:8] for _, v in index if len(v) in _POINTER_SIZES})))
        out = {rid: (log[value[:8]], value[8:] or None) for rid, value in index if len(value) in _POINTER_SIZES}
        out.update(inline)
        return out

    def flush(self) -> None:
        self.claims.flush()
        self.counters.flush()
        self.budgets.flush()
        self.points.flush()
        txn = self.txn
        if self.ledger:   # sequence numbers past the last entry: appended
            txn.cursor(db=self.ledger_db).putmulti(self.ledger, append=True)
        if self.outbox:
            txn.cursor(db=self.outbox_db).putmulti(list(self.outbox.items()))
        if self.requests:   # the decisions appended to the log, the request index pointing at them
            cur = txn.cursor(db=self.decisions_db)
            number = _U64.unpack(cur.key())[0] + 1 if cur.last() else 1
            keys = list(map(_U64.pack, range(number, number + len(self.requests))))
            cur.putmulti(list(zip(keys, self.requests.values())), append=True)
            txn.cursor(db=self.requests_db).putmulti(
                [(rid, number + fingerprint) for rid, number, fingerprint in zip(self.requests, keys, self.prints)])


class _Hmac:
    """HMAC-SHA256 under one key (RFC 2104) with the padded key's hash states made
    once: a draw costs two hash copies, not a fresh HMAC set-up. ``audit_entry``
    recomputes every draw with the standard library's hmac instead."""

    __slots__ = ("inner", "outer")

    def __init__(self, key: bytes):
        if len(key) > 64:
            key = hashlib.sha256(key).digest()
        key = key.ljust(64, b"\0")
        self.inner = hashlib.sha256(bytes(b ^ 0x36 for b in key))
        self.outer = hashlib.sha256(bytes(b ^ 0x5C for b in key))

    def digest(self, message: bytes) -> bytes:
        inner = self.inner.copy()
        inner.update(message)
        outer = self.outer.copy()
        outer.update(inner.digest())
        return outer.digest()


class _Live:
    """A stored campaign compiled for deciding: its rules as sets, integers and
    encoded keys and JSON fragments. Cached per stored record and secret, so a
    reload or a status change (a new record) compiles anew."""

    def __init__(self, campaign: Campaign, secret: bytes | None, revision: int = 0):
        c = self.campaign = campaign
        self.revision = revision    # the stored record's: each ledger entry names it
        self.secret = secret
        self.hmac = _Hmac(secret) if secret is not None else None
        self.id = c.id
        self.id_json = _esc(c.id)
        self.key = c.id.encode() + b"/"
        self.actor = c.actor
        self.active = c.status == "active"
        self.start_us = (c.start - _UTC_EPOCH) // _US
        self.end_us = (c.end - _UTC_EPOCH) // _US
        self.blacklist = frozenset(c.blacklist)
        self.diverted_ok = c.verdict_policy.diverted_can_win
        self.clone_ok = c.verdict_policy.suspect_clone_can_win
        self.caps = c.caps
        self.odds = c.odds_ppm
        self.slots = tuple((s.start.hour * 60 + s.start.minute, s.end.hour * 60 + s.end.minute, s.odds_ppm)
                           for s in c.slots)
        self.nth = frozenset(c.win_on_nth_scan)
        self.budget_key = {p.id: f"{c.id}/{p.id}".encode() for p in c.prizes}
        # per prize: (prize, budget key, count budget, fen budget, fen per award, weight)
        self.entry = {p.id: (p, self.budget_key[p.id], p.budget_count, p.budget_amount_fen, p.amount_fen, p.weight)
                      for p in c.prizes}
        self.winning = tuple(self.entry[p.id] for p in c.winning_prizes)
        self.consolation = self.entry[c.consolation] if c.consolation is not None else None
        self.plugins = c.plugins
        self.first_scan_wins = c.first_scan_always_wins
        self.tiers = bool(c.store_tiers)
        self.has_points = any(p.kind == "points" for p in c.prizes)
        self.coupon_json = {p.id: json.dumps(asdict(p.coupon)) if p.coupon else "null" for p in c.prizes}
        self.prize_json = {p.id: _esc(p.id) for p in c.prizes}
        # the award's JSON up to its points (Decision.to_json()["award"], key order of Award)
        self.award_head = {p.id: (f'{{"campaign_id": {self.id_json}, "prize_id": {_esc(p.id)}, '
                                  f'"kind": {_esc(p.kind)}, "amount_fen": {_num(p.amount_fen)}, "points": ')
                           for p in c.prizes}
        self.clock = LocalClock(c.zone)
        self.month_from_day = c.zone == points_mod.PERIOD_ZONE
        self._regions: dict[int | None, bool] = {}
        # the ledger entry's fragments that are the same for every scan of this
        # campaign: campaign and revision; the odds part when no slot or plugin can
        # change them; the prizes with a budget (JSON id, key, awards, fen: their
        # budgets left are recorded; a prize without one cannot run out), all of
        # them for a pick, the consolation prize's alone for a lost draw
        self.ledger_campaign = f'"campaign_id": {self.id_json}, "revision": {revision}, '
        self.ledger_odds = (f'"slot": null, "odds_from": "base", "odds_ppm": {_num(self.odds)}, "plugin": null'
                            if not self.slots and not self.plugins else None)
        rows = {pid: (self.prize_json[pid], key, count_max, fen_max)
                for pid, (_p, key, count_max, fen_max, _fen, _w) in self.entry.items()
                if count_max is not None or fen_max is not None}
        self.budget_rows = tuple(rows.values())
        self.consolation_rows = (rows[c.consolation],) if c.consolation in rows else ()

    def region_allowed(self, region: int | None) -> bool:
        allowed = self._regions.get(region)
        if allowed is None:
            if len(self._regions) >= 100_000:
                self._regions.clear()
            allowed = self._regions[region] = self.campaign.region_allowed(region)
        return allowed

    def odds_at(self, time_ms: int) -> int:
        """Campaign.odds_at for the instant, from the local minute of the day (slots
        start and end on whole minutes)."""
        if not self.slots:
            return self.campaign.odds_ppm
        minute = self.clock.minute(time_ms)
        for start, end, odds in self.slots:
            if (start <= minute < end) if start < end else (minute >= start or minute < end):
                return odds
        return self.campaign.odds_ppm


_live_cache: dict[tuple[bytes, bytes | None], _Live] = {}


def _live_campaigns(txn: lmdb.Transaction[bytes], db: Any) -> list[_Live]:
    """The stored campaigns in id order, compiled (parsed only when a record is new)."""
    out = []
    for key, raw in iter_prefix(txn, db, b"c/"):
        secret = txn.get(b"s/" + key, db=db)
        live = _live_cache.get((raw, secret))
        if live is None:
            if len(_live_cache) >= 256:
                _live_cache.clear()
            live = _live_cache[(raw, secret)] = _compile_live(raw, secret)
        out.append(live)
    return out


def _compile_live(raw: bytes, secret: bytes | None) -> _Live:
    """A stored campaign record compiled, with its revision (each ledger entry
    names the revision it was decided under). A campaign whose secret was revealed
    is closed: its window is empty (RW-N3), since anyone can now compute its draws."""
    record = json.loads(raw)
    live = _Live(campaign_from_json(record["campaign"]), secret, record["revision"])
    if record.get("revealed_at_ms") is not None:
        live.end_us = live.start_us
    return live


def _draw(secret: bytes, campaign_id: str, serial: int, actor: str, time_ms: int) -> tuple[str, bytes]:
    """The auditable draw: HMAC-SHA256 of the campaign secret over the scan."""
    message = f"{campaign_id}|{serial}|{actor}|{time_ms}"
    return message, hmac.new(secret, message.encode(), hashlib.sha256).digest()


# A prize compiled for deciding (_Live.entry): the prize, its budget key, its count
# and fen budgets (None: unlimited), the fen one award costs, its weight in the draw.
_Entry = tuple[Prize, bytes, "int | None", "int | None", int, int]


def _pick_prize(budgets: dict[bytes, Any], entries: Sequence[_Entry], mac: bytes) -> _Entry | None:
    """The prize a win draws, by weight, among those with budget left (None: none)."""
    left = [e for e in entries if _budget_left(budgets, e)]
    total = sum(e[5] for e in left)
    if total == 0:
        return None
    point = _U64.unpack_from(mac, 8)[0] % total     # int.from_bytes(mac[8:16], "big") % total
    for e in left:
        if point < e[5]:
            return e
        point -= e[5]
    return None  # unreachable


_SLOT_TEXT = tuple(map(str, range(64)))   # a slot's index as JSON (campaigns rarely have more than a few)
_NO_CLIENT = '""'
_NO_COUNTS = "[0, 0, 0, 0]"     # a user's first scan in a campaign: no counter record yet


def _slot_odds(c: _Live, time_ms: int) -> tuple[int, str]:
    """``c.odds_at(time_ms)``, and the index (as JSON text) of the slot that gave
    them, "null" for the base odds: the ledger entry records where its odds came from."""
    minute = c.clock.minute(time_ms)
    for i, (start, end, odds) in enumerate(c.slots):
        if (start <= minute < end) if start < end else (minute >= start or minute < end):
            return odds, _SLOT_TEXT[i] if i < 64 else str(i)
    return c.odds, "null"


def _plugin_json(rule: RuleResult) -> str:
    """The plugins' merged output as the ledger entry records it (run_plugins has
    checked the types: ints, a str, a bool); json.dumps of the same dict."""
    odds, prize, pct = rule.odds_ppm, rule.prize_id, rule.points_multiplier_pct
    return (f'{{"odds_ppm": {"null" if odds is None else _num(odds)}, '
            f'"prize_id": {"null" if prize is None else _esc(prize)}, "veto": {"true" if rule.veto else "false"}, '
            f'"points_multiplier_pct": {"null" if pct is None else _num(pct)}}}')


def _budgets_json(rows: tuple[tuple[str, bytes, int | None, int | None], ...], budgets: dict[bytes, Any]) -> str:
    """What is left of the budgets of ``rows`` (_Live.budget_rows: prizes with a
    budget) before this decision, as the ledger entry records it: ``{"<prize>":
    [awards left, fen left], ...}`` in the campaign's prize order, null for no
    limit (negative when a reload cut a budget below what was already spent)."""
    parts = []
    for prize_json, key, count_max, fen_max in rows:
        count, amount = budgets[key] or _ZERO2
        parts.append(f'{prize_json}: [{"null" if count_max is None else count_max - count}, '
                     f'{"null" if fen_max is None else fen_max - amount}]')
    return "{" + ", ".join(parts) + "}"


def _budget_left(budgets: dict[bytes, Any], e: _Entry) -> bool:
    """Whether one more award of the prize stays within its budgets (``budgets``:
    the batch's budget values, prefetched)."""
    _p, key, count_max, fen_max, fen, _w = e
    count, amount = budgets[key] or _ZERO2
    return (count_max is None or count < count_max) and (fen_max is None or amount + fen <= fen_max)


def _message_json(message: dict[str, str]) -> str:
    if message.keys() != _MESSAGE_KEYS:
        return json.dumps(message)
    return f'{{"zh-CN": {_esc(message["zh-CN"])}, "en": {_esc(message["en"])}}}'


_NO_REWARD_JSON = {r: (_esc(r.value), _message_json({"zh-CN": zh, "en": en}))
                   for r, (zh, en) in NO_REWARD_MESSAGES.items()}
_award_message_json: dict[tuple[str, int, int], str] = {}
_TRUSTING = ScanTimePolicy()    # the library's default: a caller's scan times stand (scangate.clock)


# ---------------------------------------------------------------------- decide
def decide_scans(data: DataDir, requests: Sequence[ScanRequest],
                 verdict_config: VerdictConfig | None = None, *,
                 time_policy: ScanTimePolicy = _TRUSTING, now_ms: Clock | None = None
                 ) -> list[Decision | RequestRefused]:
    """Decide a batch of scans in one write transaction; see the module docstring.
    One result per request, in order: its decision, or a ``RequestRefused`` (not
    raised) in its place: ``RequestIdReused`` where its request id (within its
    ``client``) was used before, stored or earlier in the batch, for a request
    with other content; ``ScanTimeRefused`` where its ``time_ms`` is outside
    ``time_policy``'s window around ``now_ms()`` (the process's clock,
    ``scangate.clock``). A refused request writes nothing and leaves the rest of
    the batch as it would be without it. A retry of a decided request gets its
    stored decision whatever its time: the window applies to new scans only.

    Every scan is decided at one time: now, or its own ``time_ms`` (a late scan,
    within the window; a time ahead of now counts as now)."""
    _check_requests(requests)
    checks = data.verify_codes([r.code for r in requests])
    now = (now_ms or current_clock())()
    with data.store.env.begin(write=True) as txn:
        return _decide_in(data, requests, checks, verdict_config, txn, now, time_policy)


# Bounds of a scan's fields (the server's workers check the same ones, from here).
# Every value outside them is refused before anything is decided: a value that
# cannot be decided must fail its own request, never the batch whose transaction
# it would share. time_ms: epoch milliseconds that any time zone's datetime can
# hold (up to 9999-12-30), far below 2**53, so a double (JSON) holds them exactly;
# which window of them a client may send is a policy apart.
MAX_ID_CHARS = 128         # request_id, actor
MAX_ID_BYTES = 511         # request_id's UTF-8 without a client: its record's LMDB key (a client's
                           # ids are hashed when too long, _scoped_key)
MAX_CODE_CHARS = 512
MAX_TAGS = 32
MAX_TAG_CHARS = 128
MIN_TIME_MS = 1
MAX_TIME_MS = _MAX_MS


def scan_problem(r: ScanRequest) -> tuple[str, str] | None:
    """The first field of ``r`` outside the bounds above, and why; None when it
    can be decided."""
    rid = r.request_id
    why = _text_problem(rid, MAX_ID_CHARS)
    if why is None and not rid:
        why = f"1 to {MAX_ID_CHARS} characters"
    if why is None and not r.client and not rid.isascii() and len(rid.encode()) > MAX_ID_BYTES:
        why = f"at most {MAX_ID_BYTES} bytes of UTF-8"
    if why is not None:
        return "request_id", why
    why = _text_problem(r.code, MAX_CODE_CHARS)
    if why is None and not r.code:
        why = f"1 to {MAX_CODE_CHARS} characters"
    if why is not None:
        return "code", why
    why = _text_problem(r.actor, MAX_ID_CHARS)
    if why is None and not r.actor:
        why = f"1 to {MAX_ID_CHARS} characters"
    if why is not None:
        return "actor", why
    if r.actor_type not in ("consumer", "store"):
        return "actor_type", f"{quote(r.actor_type)} is not consumer or store"
    region = r.region
    if region is not None and (isinstance(region, bool) or not isinstance(region, numbers.Integral)
                               or not 100000 <= region <= 999999):
        return "region", f"{quote(region)} is not a 6-digit adcode"
    if (r.lat is None) != (r.lon is None):
        return "lat", "lat and lon go together"
    if r.lat is not None:
        for name, v, most in (("lat", r.lat, 90), ("lon", r.lon, 180)):
            if isinstance(v, bool) or not isinstance(v, numbers.Real) or not math.isfinite(v):
                return name, f"{quote(v)} is not a finite number"
            if not -most <= v <= most:
                return name, f"{quote(v)} is outside -{most}..{most}"
    t = r.time_ms
    if t is not None and (isinstance(t, bool) or not isinstance(t, numbers.Integral)
                          or not MIN_TIME_MS <= t <= MAX_TIME_MS):
        return "time_ms", (f"{quote(t)} is not epoch milliseconds from {MIN_TIME_MS} to {MAX_TIME_MS} "
                           "(9999-12-30), or None for now")
    tags = r.actor_tags
    if not isinstance(tags, (tuple, list)) or len(tags) > MAX_TAGS:
        return "actor_tags", f"a sequence of at most {MAX_TAGS} tags"
    for j, tag in enumerate(tags):
        why = _text_problem(tag, MAX_TAG_CHARS)
        if why is not None:
            return f"actor_tags[{j}]", why
    if r.client:
        why = _text_problem(r.client, len(r.client))   # a token's name: any length its file holds
        if why is not None:
            return "client", why
    return None


def _check_requests(requests: Sequence[ScanRequest]) -> None:
    for i, r in enumerate(requests):
        problem = scan_problem(r)
        if problem is not None:
            raise InvalidArgument(f"requests[{i}].{problem[0]}: {problem[1]}")


def _decide_in(data: DataDir, requests: Sequence[ScanRequest], checks: VerifyResult,
               verdict_config: VerdictConfig | None, txn: Any, now: int,
               time_policy: ScanTimePolicy = _TRUSTING) -> list[Decision | RequestRefused]:
    """decide_scans inside ``txn``: an LMDB write transaction, or a pipelined batch's
    stand-in for one (scangate.pipeline), which the deciding code cannot tell apart."""
    batch = _Batch(data, txn)
    ids = [r.request_id.encode() if not r.client else _scoped_key(r.client, r.request_id) for r in requests]
    prints = _fingerprints(requests)
    stored = batch.stored(ids) if ids else {}
    firsts: dict[bytes, int] = {}     # request key -> the first fresh request with it in the batch
    fresh: list[int] = []
    out: list[Decision | RequestRefused | None] = []
    timed = time_policy is not _TRUSTING and any(r.time_ms is not None for r in requests)
    if not stored and not timed and len(set(ids)) == len(ids):   # the usual batch: every request new, once
        fresh = list(range(len(requests)))
        out = [None] * len(requests)
    else:
        for i, r in enumerate(requests):
            key = ids[i]
            found = stored.get(key)
            if found is not None:       # a retry gets the stored decision; another request, a refusal
                raw, fingerprint = found
                out.append(Decision.from_json(json.loads(raw)) if fingerprint is None or fingerprint == prints[i]
                           else RequestIdReused(r.request_id))
            elif r.time_ms is not None and (why := time_policy.problem(r.time_ms, now)) is not None:
                out.append(ScanTimeRefused("time_ms", why))
            else:
                out.append(None)
                if key not in firsts:   # else the id's second use in the batch: settled below
                    fresh.append(i)
                    firsts[key] = i
    if fresh:
        # the scans to judge: the requests themselves (they have a Scan's fields) when
        # their time stands, else a Scan stamped with the decided time
        # (ScanTimePolicy.decided, written out: this runs for every scan)
        latest = now if time_policy.ahead_ms is not None else MAX_TIME_MS
        scans: list[ScanRequest | Scan] = [
            r if r.time_ms is not None and r.time_ms <= latest
            else Scan(r.code, r.actor, r.actor_type, r.region, r.lat, r.lon, now)
            for r in (requests[i] for i in fresh)]
        fresh_checks = checks if len(fresh) == len(requests) else VerifyResult(
            checks.status[fresh], checks.key_version[fresh], checks.serial[fresh], checks.level[fresh],
            checks.line_id[fresh], checks.lines)
        verdicts = _decide_verdicts(data, scans, verdict_config or VerdictConfig(), txn, fresh_checks)
        decided = _decide(batch, _live_campaigns(txn, batch.campaigns_db), [requests[i] for i in fresh],
                          [s.time_ms for s in scans], verdicts, fresh_checks)  # type: ignore[misc]
        batch.prints = prints if len(fresh) == len(requests) else [prints[i] for i in fresh]
        for i, (decision, text) in zip(fresh, decided):
            batch.requests[ids[i]] = text.encode()
            out[i] = decision
    for i, d in enumerate(out):
        if d is None:   # the same id twice in one batch: the first one's decision if the same request
            first = firsts[ids[i]]
            out[i] = out[first] if prints[i] == prints[first] else RequestIdReused(requests[i].request_id)
    batch.flush()
    return out  # type: ignore[return-value]


# Enum members read by the per-scan code, as module constants: on Python 3.11 each
# ``Enum.MEMBER`` lookup goes through EnumType.__getattr__'s slow attribute hook.
_ALREADY_CLAIMED = NoReward.ALREADY_CLAIMED
_BLACKLISTED = NoReward.BLACKLISTED
_BUDGET_EXHAUSTED = NoReward.BUDGET_EXHAUSTED
_CAMPAIGN_PAUSED = NoReward.CAMPAIGN_PAUSED
_DAILY_CAP_REACHED = NoReward.DAILY_CAP_REACHED
_LOST_DRAW = NoReward.LOST_DRAW
_NO_CAMPAIGN = NoReward.NO_CAMPAIGN
_OUTSIDE_WINDOW = NoReward.OUTSIDE_WINDOW
_PLUGIN_FAILED = NoReward.PLUGIN_FAILED
_PLUGIN_VETO = NoReward.PLUGIN_VETO
_REGION_EXCLUDED = NoReward.REGION_EXCLUDED
_TOTAL_CAP_REACHED = NoReward.TOTAL_CAP_REACHED
_VERDICT_NOT_ELIGIBLE = NoReward.VERDICT_NOT_ELIGIBLE
_V_COUNTERFEIT = Verdict.COUNTERFEIT
_V_GENUINE = Verdict.GENUINE
_verdict_of = operator.attrgetter("verdict")
_V_DIVERTED = Verdict.DIVERTED
_V_REVOKED = Verdict.REVOKED
_V_SUSPECT_CLONE = Verdict.SUSPECT_CLONE


# A scan past the stateless checks (campaign, window, region, blacklist, verdict
# policy): its campaign and the keys of the state its decision reads and writes:
# (campaign, claim key, the scan's local day (days since 1970-01-01, YYYY-MM-DD),
# total counter key, the keys of the points records an award would change, None
# when the campaign has no points prize).
_Eligible = tuple[_Live, bytes, tuple[int, str], bytes, "points_mod.AwardKeys | None"]


def _select(campaigns: list[_Live], candidates: dict[tuple[str, int], list[_Live]], r: ScanRequest,
            time_ms: int, v: ScanVerdict, line: ProductLine | None, line_id: int,
            serial: int) -> _Eligible | tuple[NoReward, _Live | None]:
    """The stateless part of a decision: the deciding campaign and the state keys,
    or why there is no reward (and the campaign to name)."""
    verdict = v.verdict
    if verdict is _V_COUNTERFEIT or verdict is _V_REVOKED or line is None:
        return _VERDICT_NOT_ELIGIBLE, None
    matching = candidates.get((r.actor_type, line_id))
    if matching is None:
        sku, level = line.sku, line.level.label
        matching = candidates[(r.actor_type, line_id)] = [
            c for c in campaigns if c.actor == r.actor_type and c.campaign.matches_product(sku, level)]
    if not _MIN_MS <= time_ms <= _MAX_MS:
        dt.datetime.fromtimestamp(time_ms / 1000, dt.UTC)   # raises, as before
    at_us = time_ms * 1000
    region = v.region
    if len(matching) == 1:      # the usual case: one campaign for the product
        c = matching[0]
        if not c.active:
            return _CAMPAIGN_PAUSED, c
        if not c.start_us <= at_us < c.end_us:
            return _OUTSIDE_WINDOW, c
        if not c.region_allowed(region):
            return _REGION_EXCLUDED, c
    else:
        if not matching:
            return _NO_CAMPAIGN, None
        active = [c for c in matching if c.active]
        if not active:
            return _CAMPAIGN_PAUSED, matching[0]
        running = [c for c in active if c.start_us <= at_us < c.end_us]
        if not running:
            return _OUTSIDE_WINDOW, active[0]
        allowed = [c for c in running if c.region_allowed(region)]
        if not allowed:
            return _REGION_EXCLUDED, running[0]
        c = allowed[0]
    if c.secret is None:
        raise CorruptionError(f"campaign {c.id}: no secret stored")
    # precedence: blacklist > must-win > eligible
    if r.actor in c.blacklist:
        return _BLACKLISTED, c
    if (verdict is _V_DIVERTED and not c.diverted_ok) or \
            (verdict is _V_SUSPECT_CLONE and not c.clone_ok):
        return _VERDICT_NOT_ELIGIBLE, c
    actor = r.actor.encode()
    clock = c.clock
    number = clock.day_number(time_ms)
    day = clock.iso_day(number)
    # the points' month (Asia/Shanghai): from the campaign's own day when it keeps that zone
    point_keys = points_mod.award_keys(actor, points_mod.period(time_ms, day if c.month_from_day else None)) \
        if c.has_points else None
    return c, serial.to_bytes(SERIAL_BYTES, "big"), (number, day), b"t/" + c.key + actor, point_keys


def _decide(b: _Batch, campaigns: list[_Live], requests: list[ScanRequest], times: list[int],
            verdicts: list[ScanVerdict], checks: VerifyResult) -> list[tuple[Decision, str]]:
    """The fresh scans' decisions, in order, and their JSON texts (request records):
    first the stateless checks of every scan, then one read of all the state they
    need, then scan after scan against the batch's cached state."""
    status, serials, line_ids = checks.status.tolist(), checks.serial.tolist(), checks.line_id.tolist()
    lines = checks.lines
    candidates: dict[tuple[str, int], list[_Live]] = {}
    selected = [_select(campaigns, candidates, r, t, v, lines[line_ids[i]] if status[i] == _GENUINE else None,
                        line_ids[i], serials[i])
                for i, (r, t, v) in enumerate(zip(requests, times, verdicts))]
    eligible = [(i, e) for i, e in enumerate(selected) if len(e) == 5]
    if eligible:
        b.claims.prefetch([e[1] for _, e in eligible])
        b.counters.prefetch([e[3] for _, e in eligible])
        b.points.prefetch_keys([k for _, e in eligible if (keys := e[4]) for k in keys[:2]])
        b.budgets.prefetch({entry[1] for c in {e[0] for _, e in eligible} for entry in c.entry.values()})
    if _V_COUNTERFEIT in map(_verdict_of, verdicts):
        # the brand's hotline for the consumer's warning: the first campaign that names one
        hotline = next((c.campaign.hotline for c in campaigns if c.campaign.hotline and c.active), None)
        for v in verdicts:
            if v.verdict is _V_COUNTERFEIT:
                v.hotline = hotline
    out = []
    for r, t, v, e, line_id, serial in zip(requests, times, verdicts, selected, line_ids, serials):
        if len(e) == 5:
            out.append(_decide_eligible(b, e, r, t, v, lines[line_id], serial))
        else:
            out.append(_no_reward(r, v, v.to_json(), e[0], e[1]))
    return out


def _day_key(total_key: bytes, day: str) -> bytes:
    """The d/ record of one local day (YYYY-MM-DD) beside a t/ record."""
    return b"d/" + total_key[2:] + b"/" + day.encode()


def _no_reward(r: ScanRequest, v: ScanVerdict, verdict: dict[str, Any], reason: NoReward,
               campaign: _Live | None) -> tuple[Decision, str]:
    """A decision without a reward, and its JSON."""
    cid = campaign.id if campaign is not None else None
    reason_json, message_json = _NO_REWARD_JSON[reason]
    if v.verdict is not _V_GENUINE or v.first_scan is not None:     # the verdict has its say (_message)
        message_json = _message_json(_message(None, reason, verdict))
    text = (f'{{"request_id": {_esc(r.request_id)}, "verdict": {v.json_text()}, "award": null, '
            f'"no_reward": {reason_json}, "campaign_id": {"null" if campaign is None else campaign.id_json}, '
            f'"message": {message_json}}}')
    return _decision(r.request_id, verdict, None, reason, cid), text


def _decide_eligible(b: _Batch, e: _Eligible, r: ScanRequest, time_ms: int, v: ScanVerdict,
                     line: ProductLine, serial: int) -> tuple[Decision, str]:
    """The stateful part of a decision: claim, caps, draw, prize, writes. The keys
    of ``e`` were prefetched, so their values are in the caches."""
    c, claim_key, today, total_key, point_keys = e
    verdict = v.to_json()
    claims = b.claims
    if claims.values[claim_key] is not None:
        return _no_reward(r, v, verdict, _ALREADY_CLAIMED, c)
    counters = b.counters
    caps = c.caps
    total = counters.values[total_key]
    if total is None:       # no awards, no scans: no day records either
        t_count = t_amount = n = d_count = d_amount = 0
        held: tuple[int, ...] = ()
    else:
        t_count, t_amount, n = total[0], total[1], total[2]
        held = total[3:]    # the day the record holds: (day number, awards, fen), or ()
        if held and held[0] == today[0]:
            d_count, d_amount = held[1], held[2]
        else:
            d_count, d_amount = counters.pair(_day_key(total_key, today[1]))
    if caps.per_user_daily_count is not None and d_count >= caps.per_user_daily_count:
        return _no_reward(r, v, verdict, _DAILY_CAP_REACHED, c)
    if caps.per_user_total_count is not None and t_count >= caps.per_user_total_count:
        return _no_reward(r, v, verdict, _TOTAL_CAP_REACHED, c)
    # the user's Nth eligible scan in this campaign (written back with the outcome:
    # a scan refused below by a plugin or a cash cap is not a used scan)
    n += 1
    actor = r.actor
    # numbers each record repeats, as text once (an int's str is its JSON)
    serial_text, time_text = str(serial), str(time_ms)
    message = f"{c.id}|{serial_text}|{actor}|{time_text}"   # the draw, as _draw; audit_entry replays it
    mac = c.hmac.digest(message.encode())  # type: ignore[union-attr]
    roll = _U64.unpack_from(mac)[0] % PPM   # int.from_bytes(mac[:8], "big") % PPM
    if c.slots:
        odds, slot_json = _slot_odds(c, time_ms)
    else:
        odds, slot_json = c.odds, "null"
    rule = _NO_RULE
    plugin_json = "null"    # the plugins' merged output, for the ledger entry (audit cannot run them again)
    campaign = c.campaign
    if c.plugins:
        when = dt.datetime.fromtimestamp(time_ms / 1000, dt.UTC)
        ctx = RuleContext(c.id, r.code, serial, line.sku, line.batch, line.level.label, verdict,
                          actor, r.actor_type, tuple(r.actor_tags),
                          {"scan_number": n, "awards_today": d_count, "awards_total": t_count}, time_ms,
                          when.astimezone(campaign.zone), verdict.get("region"), None, odds)
        rule, failures = run_plugins(campaign.plugins, ctx)
        if rule.odds_ppm is not None and not 0 <= rule.odds_ppm <= PPM:
            failures.append(("odds", f"odds_ppm {rule.odds_ppm} outside 0..{PPM}"))
        if failures or rule.veto:
            for ref, _why in failures:
                counters.add_pair(f"pf/{c.id}/{ref}".encode(), 1, 0)
            return _no_reward(r, v, verdict, _PLUGIN_FAILED if failures else _PLUGIN_VETO, c)
        plugin_json = _plugin_json(rule)
        if rule.odds_ppm is not None:
            odds = rule.odds_ppm
    how = win_how(n, c.first_scan_wins, c.nth, roll, odds)
    # the budgets read, as the ledger entry records them: every prize's (with a
    # budget) when a win picks, the consolation prize's when a lost draw may get
    # it, none (null) else
    budget_rows = c.budget_rows if how != "lost" else c.consolation_rows if c.consolation is not None else None
    budgets = b.budgets.values      # prefetched: every budget key of the batch's campaigns
    won: _Entry | None = None
    reason: NoReward | None = None
    if how != "lost":
        won = _pick_prize(budgets, c.winning, mac)
        if won is None:
            reason = _BUDGET_EXHAUSTED
    if won is not None and rule.prize_id is not None and rule.prize_id != won[0].id:
        wanted = c.entry.get(rule.prize_id)
        if wanted is not None and _budget_left(budgets, wanted):
            won = wanted     # a plugin's prize, still within the campaign's budgets
    consolation = c.consolation
    if won is None and consolation is not None and _budget_left(budgets, consolation):
        won, how, reason = consolation, "consolation", None
    if won is None and reason is None:
        reason = _LOST_DRAW
    prize = won[0] if won is not None else None
    if prize is not None and prize.kind == "cash" and how != "consolation":
        if caps.per_user_daily_amount_fen is not None and d_amount + prize.amount_fen > caps.per_user_daily_amount_fen:
            return _no_reward(r, v, verdict, _DAILY_CAP_REACHED, c)
        if caps.per_user_total_amount_fen is not None and t_amount + prize.amount_fen > caps.per_user_total_amount_fen:
            return _no_reward(r, v, verdict, _TOTAL_CAP_REACHED, c)
    # ---- commit the outcome: one draw per code, won or lost
    seq = b.next_seq
    b.next_seq = seq + 1
    seq_text = str(seq)
    points = 0
    time_json = time_text if type(time_ms) is int else _num(time_ms)
    payout_json = "null"
    tier_json = "null"
    actor_json = _esc(actor)
    # what the pick saw: read before this award is counted
    budgets_json = "null" if budget_rows is None else _budgets_json(budget_rows, budgets) if budget_rows else "{}"
    if prize is None:
        counters.put(total_key, (t_count, t_amount, n, *held))
        prize_json = "null"
        amount = 0
    else:
        prize_json = c.prize_json[prize.id]
        amount = prize.amount_fen
        if prize.kind == "points":
            points = prize.points
            # store tiers follow cumulative points earned (redeeming does not demote)
            tier = campaign.tier_for(b.points.earned(actor)) if c.tiers else None
            if tier is not None:
                points = points * tier.multiplier_pct // 100
                tier_json = str(tier.multiplier_pct)
            if rule.points_multiplier_pct is not None:
                points = points * max(rule.points_multiplier_pct, 0) // 100
            b.points.credit(point_keys, points, seq_text, time_json)  # type: ignore[arg-type]
        budget_key = won[1]  # type: ignore[index]
        count, spent = budgets[budget_key] or _ZERO2       # prefetched, as _pick_prize read it
        b.budgets.put(budget_key, (count + 1, spent + amount))
        if how != "consolation":
            if held and held[0] != today[0] and (held[1] or held[2]):
                # today takes the record's day place: the day it held keeps its awards
                counters.put(_day_key(total_key, c.clock.iso_day(held[0])), (held[1], held[2]))
            counters.put(total_key, (t_count + 1, t_amount + amount, n, today[0], d_count + 1, d_amount + amount))
        else:
            counters.put(total_key, (t_count, t_amount, n, *held))
        if prize.kind in ("cash", "coupon"):
            payout_key = f"{c.id}:{serial_text}"
            payout_json = f'"{payout_key}"'    # campaign ids and serials need no escaping
            b.outbox[payout_key.encode()] = (
                f'{{"key": {payout_json}, "state": "pending", "attempts": 0, "ledger_seq": {seq_text}, '
                f'"actor": {actor_json}, "prize_id": {prize_json}, "kind": "{prize.kind}", '
                f'"amount_fen": {amount}, "coupon": {c.coupon_json[prize.id]}, '
                f'"created_ms": {now_ms()}}}').encode()
    points_json = str(points)       # an int: prize points, scaled by integer percentages
    request_json = _esc(r.request_id)
    odds_json = odds if type(odds) is int else _num(odds)     # a plugin's odds need not be an int
    # the ledger entry: the decision and every input audit needs to recompute it
    # (scangate.audit, LEDGER_FIELDS there; docs/campaigns.md, "Audit")
    odds_text = c.ledger_odds or (
        f'"slot": {slot_json}, '
        f'"odds_from": "{"plugin" if rule.odds_ppm is not None else "base" if slot_json == "null" else "slot"}", '
        f'"odds_ppm": {odds_json}, "plugin": {plugin_json}')
    b.ledger.append((_U64.pack(seq), (
        f'{{"seq": {seq_text}, "request_id": {request_json}, '
        f'"client": {_esc(r.client) if r.client else _NO_CLIENT}, {c.ledger_campaign}"serial": {serial_text}, '
        f'"actor": {actor_json}, "time_ms": {time_json}, "draw_input": {_esc(message)}, '
        f'"hmac": "{mac.hex()}", "roll": {roll}, {odds_text}, "scan_number": {n}, '
        f'"counters": {_NO_COUNTS if total is None else f"[{d_count}, {d_amount}, {t_count}, {t_amount}]"}, '
        f'"how": "{how}", "budgets": {budgets_json}, "prize_id": {prize_json}, "amount_fen": {amount}, '
        f'"tier_pct": {tier_json}, "points": {points_json}, "payout_key": {payout_json}, '
        f'"no_reward": {"null" if reason is None else _NO_REWARD_JSON[reason][0]}}}').encode()))
    claims.put(claim_key, f'{{"campaign_id": {c.id_json}, "ledger_seq": {seq_text}}}'.encode())
    if prize is None:
        return _no_reward(r, v, verdict, reason, c)  # type: ignore[arg-type]
    award = _award(c.id, prize.id, prize.kind, amount, points, how, seq,
                   payout_json[1:-1] if prize.kind in ("cash", "coupon") else None)
    key = (prize.kind, amount, points)
    message_json = _award_message_json.get(key)
    if message_json is None:
        if len(_award_message_json) >= 10_000:
            _award_message_json.clear()
        message_json = _award_message_json[key] = _message_json(_message(award, None, verdict))
    text = (f'{{"request_id": {request_json}, "verdict": {v.json_text()}, '
            f'"award": {c.award_head[prize.id]}{points_json}, "how": "{how}", "ledger_seq": {seq_text}, '
            f'"payout_key": {payout_json}}}, "no_reward": null, "campaign_id": {c.id_json}, '
            f'"message": {message_json}}}')
    return _decision(r.request_id, verdict, award, None, c.id), text


def win_how(n: int, first_scan_wins: bool, nth: Container[int], roll: int, odds: float) -> str:
    """How the user's ``n``-th eligible scan in a campaign goes, before budgets:
    a guaranteed first or Nth scan win, else the draw (``roll`` below ``odds``)
    won or lost. The decision and the audit's replay (scangate.audit) both ask it."""
    if n == 1 and first_scan_wins:
        return "first_scan"
    if n in nth:
        return "nth_scan"
    return "draw" if roll < odds else "lost"


def budgets_used(data: DataDir, campaign_id: str) -> dict[str, dict[str, int]]:
    """Awards and fen used per prize of a campaign."""
    with data.store.env.begin() as txn:
        return {k.decode(): dict(zip(("count", "amount_fen"), _PAIR.unpack(v)))
                for k, v in iter_prefix(txn, data.store.db("budgets"), f"{campaign_id}/".encode())}


# ---------------------------------------------------------------------- audit
def audit_entry(data: DataDir, seq: int) -> dict[str, Any]:
    """Recompute ledger entry ``seq``'s whole decision from what it records, the
    campaign revision it names and the campaign secret: ``scangate.audit``
    (``audit_ledger`` for many). Returns the entry with ``checks`` (by field),
    ``failed`` (the fields that disagree), ``expected`` and ``verified``."""
    from .audit import audit_entry as audit_one    # here: audit imports this module

    return audit_one(data, seq)
