"""Audit as proof: every reward decision recomputed from its ledger entry.

A ledger entry (written by ``scangate.decide.engine``; its fields are
``LEDGER_FIELDS``) records a decision and what deciding it again needs: the scan
(campaign, serial, actor, time), the campaign revision it was decided under, the
draw (input, HMAC, roll), where its odds came from (the base odds, a time slot, a
plugin), the plugins' output, the user's scan number and the cap counters it
read, the budget left of every prize, the store tier's multiplier. The audit
walks the ledger in order and, for each entry:

- authenticates the scan: the HMAC of the campaign secret over the draw input
  must be the recorded HMAC, the secret must match the commitment published when
  the campaign was loaded, and the entry's campaign, serial, actor and time must
  be those of the draw input (an edited one is named, and the draw input's used);
- takes the campaign revision the entry names, which must exist, must have been
  loaded before the entry was decided (its ``first_seq``) and must not be older
  than one an earlier entry of the campaign was decided under; and recomputes
  the slot and the odds at the scan's time under it;
- recomputes the state the decision read from the entries before it: the user's
  scan number, their awards and fen today (the campaign's local day) and in all,
  every prize's budget left, the points the actor had earned (store tiers), so an
  edited counter or budget disagrees with the history;
- decides again: a guaranteed win or the draw (roll < odds), the prize picked by
  weight among those with budget left, a plugin's prize, the consolation prize,
  the caps, the amount, the points (tier and plugin multipliers), the payout key,
  why no reward;
- checks that the request id (within its client) leads to this decision and that
  the code's claim is this entry.

Each recorded field is compared with its recomputed value, and ``failed`` names
every one that disagrees (checks that are not fields: ``commitment``, ``caps``,
``claim``). Plugins cannot be run again (their context, the code and the
verdict, is not in the ledger), so their recorded output is taken as given and
checked through what it decided: an edited plugin output is named (``plugin``)
with the fields it changes, and one that changed nothing cannot be told. The
request id and client together make the request index's key: when it leads
nowhere, both are named.

The state an entry's audit recomputes comes from what the entries before it
recompute to, not from what they record: an edited entry is named once, and the
entries after it still verify (unless the edit was to a plugin's output, which is
taken as given: then later entries that read the state it changed are named
too). Entries written before these fields were recorded (the fields of that time
only) get the checks of their time: commitment, draw input, HMAC, roll, and a
won draw's roll below its odds.

``audit_entry`` audits one entry (walking the ledger up to it; consecutive calls
on an unchanged ledger continue where the last one stopped), ``audit_ledger``
many in one walk, ``export_ledger`` gives the entries as stored (JSON lines, for
the verifier in docs/campaigns.md).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

import lmdb

from . import rewards
from .campaigns import PPM, Campaign, Prize, campaign_from_json
from .datadir import DataDir
from .errors import CorruptionError, InvalidArgument, NotFound
from .decide.draw import draw, draw_message
from .state import layout
from .state.batch import POINTER_SIZES as _POINTER_SIZES
from .state.records import U64

__all__ = ["LEDGER_FIELDS", "PLUGIN_FIELDS", "audit_entry", "audit_ledger", "export_ledger"]

# The fields of a ledger entry, in the order it writes them (json.dumps of a dict
# in this order; tests/test_rewards_encoding.py).
LEDGER_FIELDS = (
    "seq", "request_id", "client", "campaign_id", "revision", "serial", "actor", "time_ms", "draw_input", "hmac",
    "roll", "slot", "odds_from", "odds_ppm", "plugin", "scan_number", "counters", "how", "budgets", "prize_id",
    "amount_fen", "tier_pct", "points", "payout_key", "no_reward",
)
# ``plugin``: the merged output of the campaign's plugins (null: it names none)
PLUGIN_FIELDS = ("odds_ppm", "prize_id", "veto", "points_multiplier_pct")
# an entry written before decisions recorded their inputs
_LEGACY_FIELDS = frozenset((
    "seq", "request_id", "campaign_id", "serial", "actor", "time_ms", "draw_input", "hmac", "roll", "odds_ppm",
    "scan_number", "how", "prize_id", "amount_fen", "points", "payout_key", "no_reward"))

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_EPOCH_ORDINAL = dt.date(1970, 1, 1).toordinal()
_U64 = U64
_BUDGET_EXHAUSTED = rewards.NoReward.BUDGET_EXHAUSTED.value
_LOST_DRAW = rewards.NoReward.LOST_DRAW.value


def _same(a: Any, b: Any) -> bool:
    """JSON values equal, types included (``True`` is not ``1``, ``1.0`` is not ``1``)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, list):
        return len(a) == len(b) and all(map(_same, a, b))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(v, b[k]) for k, v in a.items())
    return bool(a == b)


def _is_int(x: Any) -> bool:
    return type(x) is int


def _parse_draw(text: Any) -> tuple[str, int, str, int] | None:
    """The scan a draw input names, or None if it is not one: a campaign id has no
    ``|``, serial and time are canonical decimal integers, the actor is the rest."""
    if not isinstance(text, str):
        return None
    try:
        cid, rest = text.split("|", 1)
        serial, rest = rest.split("|", 1)
        actor, time_ms = rest.rsplit("|", 1)
    except ValueError:
        return None
    for digits in (serial, time_ms):
        if not (digits.isascii() and digits.isdigit()) or str(int(digits)) != digits:
            return None
    return cid, int(serial), actor, int(time_ms)


@dataclass
class _Revision:
    """One stored campaign revision, ready for recomputing decisions."""

    number: int
    campaign: Campaign
    commitment: str | None
    first_seq: int                 # 0: stored before first_seq was kept
    zone: ZoneInfo
    prizes: dict[str, Prize]

    @classmethod
    def of(cls, number: int, record: dict[str, Any]) -> _Revision:
        c = campaign_from_json(record["campaign"])
        return cls(number, c, record.get("commitment"), int(record.get("first_seq") or 0), c.zone,
                   {p.id: p for p in c.prizes})


@dataclass
class _User:
    """What the decisions before an entry left in one user's counters of one campaign."""

    scans: int = 0                 # entries (the Nth eligible scan)
    awards: int = 0                # awards that count towards the caps (not consolation)
    fen: int = 0
    days: dict[int, tuple[int, int]] = field(default_factory=dict)   # local day number -> awards, fen


class _Checks:
    """The checks of one entry by name; a name fails once any of its checks fails."""

    def __init__(self) -> None:
        self.checks: dict[str, bool] = {}
        self.expected: dict[str, Any] = {}

    def ok(self, name: str, good: bool, expected: Any = None) -> bool:
        if not good:
            if self.checks.get(name, True):
                self.expected[name] = expected
            self.checks[name] = False
        else:
            self.checks.setdefault(name, True)
        return good

    def same(self, name: str, recorded: Any, expected: Any) -> bool:
        return self.ok(name, _same(recorded, expected), expected)

    def fail(self, name: str, expected: Any = None) -> None:
        self.ok(name, False, expected)

    def result(self, seq: int, entry: dict[str, Any], commitment: str | None, **extra: Any) -> dict[str, Any]:
        """The audit's answer: the entry's fields, then the campaign's commitment,
        the checks, the names that failed with what each should be, whether the
        entry verified, and the number it is stored under (``audited_seq``)."""
        failed = [k for k, good in self.checks.items() if not good]
        return {**entry, "commitment": commitment, "checks": self.checks, "failed": failed,
                "expected": {k: self.expected[k] for k in failed}, "verified": not failed, "audited_seq": seq,
                **extra}


class _Auditor:
    """One walk of the ledger in order: the state each decision read, rebuilt from
    the recomputed decisions before it, and the campaigns' secrets and revisions."""

    def __init__(self, data: DataDir, txn_id: int):
        self.data, self.store, self.txn_id = data, data.store, txn_id
        self.next_seq = 1
        self.new_format = False        # an entry with every field was seen: no older one can follow
        self.secrets: dict[str, bytes | None] = {}
        self.current: dict[str, dict[str, Any] | None] = {}
        self.revisions: dict[str, dict[int, _Revision]] = {}
        self.last_revision: dict[str, int] = {}      # campaign -> newest revision an entry so far was decided under
        self.users: dict[tuple[str, str], _User] = {}
        self.used: dict[tuple[str, str], tuple[int, int]] = {}    # (campaign, prize) -> awards, fen
        self.earned: dict[str, int] = {}             # actor -> points earned (every campaign)

    # ------------------------------------------------------------------ reads
    def _secret(self, txn: lmdb.Transaction[bytes], campaign_id: Any) -> bytes | None:
        if not isinstance(campaign_id, str):
            return None
        if campaign_id not in self.secrets:
            try:
                key = campaign_id.encode()
            except UnicodeEncodeError:
                return None
            raw = txn.get(layout.secret_key(campaign_id), db=self.store.db("campaigns")) if 0 < len(key) <= 400 else None
            self.secrets[campaign_id] = bytes(raw) if raw is not None else None
            record = txn.get(layout.campaign_key(campaign_id), db=self.store.db("campaigns")) if raw is not None else None
            self.current[campaign_id] = json.loads(bytes(record)) if record is not None else None
        return self.secrets[campaign_id]

    def _revisions(self, txn: lmdb.Transaction[bytes], campaign_id: str) -> dict[int, _Revision]:
        revs = self.revisions.get(campaign_id)
        if revs is None:
            revs = self.revisions[campaign_id] = {
                n: _Revision.of(n, record)
                for n, record in rewards.campaign_revisions(self.data, campaign_id, txn).items()}
        return revs

    def _decision(self, txn: lmdb.Transaction[bytes], request_id: Any, client: Any) -> dict[str, Any] | None:
        """The stored decision the request index gives for the id within its client."""
        if not isinstance(request_id, str) or not isinstance(client, str) or not request_id:
            return None
        try:
            key = layout.request_key(client, request_id)
        except UnicodeEncodeError:
            return None
        if len(key) > 511:
            return None
        pointer = txn.get(key, db=self.store.db("requests"))
        if pointer is None:
            return None
        value = bytes(pointer)
        if len(value) in _POINTER_SIZES:     # else a decision stored inline, as data written long ago
            logged = txn.get(value[:8], db=self.store.db("decisions"))
            if logged is None:
                return None
            value = bytes(logged)
        decision = json.loads(value)
        return decision if isinstance(decision, dict) else None

    # ------------------------------------------------------------------ walk
    def run(self, txn: lmdb.Transaction[bytes], first: int, last: int | None) -> Iterator[dict[str, Any]]:
        """Audit the entries from ``next_seq`` on (up to ``last``), yielding those
        from ``first`` on."""
        cur = txn.cursor(db=self.store.db("ledger"))
        if not cur.set_range(_U64.pack(self.next_seq)):
            return
        for key, raw in cur.iternext():
            seq = _U64.unpack(key)[0]
            if last is not None and seq > last:
                break
            result = self.check(txn, seq, bytes(raw))
            self.next_seq = seq + 1
            if seq >= first:
                yield result

    def check(self, txn: lmdb.Transaction[bytes], seq: int, raw: bytes) -> dict[str, Any]:
        try:
            entry = json.loads(raw)
        except ValueError as exc:
            raise CorruptionError(f"ledger entry {seq}: not JSON ({exc})") from None
        if not isinstance(entry, dict):
            raise CorruptionError(f"ledger entry {seq}: not a JSON object")
        if not self.new_format and entry.keys() == _LEGACY_FIELDS:
            return self._check_legacy(txn, seq, entry)
        self.new_format = True
        r = _Checks()
        for name in entry:
            if name not in LEDGER_FIELDS:
                r.fail(name, "no such field")
        for name in LEDGER_FIELDS:
            if name not in entry:
                r.fail(name, "missing")
        r.same("seq", entry.get("seq"), seq)
        scan = self._scan(txn, entry, r)
        if scan is None:
            return r.result(seq, entry, None)
        cid, serial, actor, time_ms, mac, secret = scan
        if not rewards.MIN_TIME_MS <= time_ms <= rewards.MAX_TIME_MS:     # no decision has such a time
            r.fail("time_ms", f"{rewards.MIN_TIME_MS} to {rewards.MAX_TIME_MS}")
            return r.result(seq, entry, None)
        current = self.current[cid] or {}
        commitment = current.get("commitment")
        r.ok("commitment", hashlib.sha256(secret).hexdigest() == commitment, commitment)
        roll = _U64.unpack_from(mac)[0] % PPM
        r.same("roll", entry.get("roll"), roll)

        rev = self._revision(txn, cid, entry.get("revision"), seq, r)
        if rev is None:
            return r.result(seq, entry, commitment)
        if rev.commitment is not None:
            r.ok("commitment", rev.commitment == commitment, commitment)
        c = rev.campaign

        # the plugins' output (taken as given: plugins cannot be run again)
        outputs: dict[str, Any] = dict.fromkeys(PLUGIN_FIELDS)
        outputs["veto"] = False
        plugin = entry.get("plugin")
        if c.plugins:
            if r.ok("plugin", _plugin_output_ok(plugin),
                    "the plugins' output: {odds_ppm, prize_id, veto: false, points_multiplier_pct}"):
                outputs = dict(plugin)  # type: ignore[arg-type]   # checked: a dict of the four
        else:
            r.same("plugin", plugin, None)

        # odds: the slot's at the scan's local time, unless a plugin set them
        local = (_EPOCH + dt.timedelta(milliseconds=time_ms)).astimezone(rev.zone)
        wall = local.time().replace(tzinfo=None)
        slot = next((i for i, s in enumerate(c.slots) if s.contains(wall)), None)
        plugin_odds = outputs["odds_ppm"]
        odds = plugin_odds if plugin_odds is not None else (c.slots[slot].odds_ppm if slot is not None else c.odds_ppm)
        r.same("slot", entry.get("slot"), slot)
        r.same("odds_from", entry.get("odds_from"),
               "plugin" if plugin_odds is not None else "slot" if slot is not None else "base")
        if not r.same("odds_ppm", entry.get("odds_ppm"), odds) and plugin_odds is not None:
            r.fail("plugin")

        # the user's counters, from the decisions before this one
        day = local.date().toordinal() - _EPOCH_ORDINAL
        user = self.users.get((cid, actor)) or _User()
        d_count, d_fen = user.days.get(day, (0, 0))
        n = user.scans + 1
        r.same("scan_number", entry.get("scan_number"), n)
        r.same("counters", entry.get("counters"), [d_count, d_fen, user.awards, user.fen])
        caps = c.caps
        within_caps = not ((caps.per_user_daily_count is not None and d_count >= caps.per_user_daily_count)
                           or (caps.per_user_total_count is not None and user.awards >= caps.per_user_total_count))

        # decide again
        how = rewards.win_how(n, c.first_scan_always_wins, c.win_on_nth_scan, roll, odds)
        used = self.used

        def left(p: Prize) -> bool:
            count, fen = used.get((cid, p.id), (0, 0))
            return (p.budget_count is None or count < p.budget_count) and \
                (p.budget_amount_fen is None or fen + p.amount_fen <= p.budget_amount_fen)

        # the budgets left that the decision read: every prize's (with a budget) for
        # a pick, the consolation prize's for a lost draw, none else
        budgets = None
        if how != "lost" or c.consolation is not None:
            budgets = {}
            for p in c.prizes if how != "lost" else (rev.prizes[c.consolation],):  # type: ignore[index]
                if p.budget_count is not None or p.budget_amount_fen is not None:
                    count, fen = used.get((cid, p.id), (0, 0))
                    budgets[p.id] = [None if p.budget_count is None else p.budget_count - count,
                                     None if p.budget_amount_fen is None else p.budget_amount_fen - fen]
        r.same("budgets", entry.get("budgets"), budgets)
        won: Prize | None = None
        reason: str | None = None
        if how != "lost":
            won = _pick([p for p in c.winning_prizes if left(p)], mac)
            if won is None:
                reason = _BUDGET_EXHAUSTED
        wanted_id = outputs["prize_id"]
        plugin_prize = won is not None and wanted_id is not None    # the plugin's prize was considered
        if won is not None and wanted_id is not None and wanted_id != won.id:
            wanted = rev.prizes.get(wanted_id)
            if wanted is not None and left(wanted):
                won = wanted
        consolation = rev.prizes.get(c.consolation) if c.consolation is not None else None
        if won is None and consolation is not None and left(consolation):
            won, how, reason = consolation, "consolation", None
        if won is None and reason is None:
            reason = _LOST_DRAW
        amount = won.amount_fen if won is not None else 0
        if won is not None and won.kind == "cash" and how != "consolation":
            within_caps = within_caps and not (
                (caps.per_user_daily_amount_fen is not None and d_fen + amount > caps.per_user_daily_amount_fen)
                or (caps.per_user_total_amount_fen is not None and user.fen + amount > caps.per_user_total_amount_fen))
        points, tier_pct, plugin_points = 0, None, False
        if won is not None and won.kind == "points":
            points = won.points
            tier = c.tier_for(self.earned.get(actor, 0)) if c.store_tiers else None
            if tier is not None:
                points = points * tier.multiplier_pct // 100
                tier_pct = tier.multiplier_pct
            pct = outputs["points_multiplier_pct"]
            if pct is not None:
                points = points * max(pct, 0) // 100
                plugin_points = True
        payout = f"{cid}:{serial}" if won is not None and won.kind in ("cash", "coupon") else None
        r.same("how", entry.get("how"), how)
        if not r.same("prize_id", entry.get("prize_id"), won.id if won is not None else None) and plugin_prize:
            r.fail("plugin")
        r.same("amount_fen", entry.get("amount_fen"), amount)
        r.same("tier_pct", entry.get("tier_pct"), tier_pct)
        if not r.same("points", entry.get("points"), points) and plugin_points:
            r.fail("plugin")
        r.same("payout_key", entry.get("payout_key"), payout)
        r.same("no_reward", entry.get("no_reward"), reason)
        r.ok("caps", within_caps, "a decision within the campaign's caps (this one should have been refused)")

        # the request id leads to this decision, and the code's claim is this entry
        decision = self._decision(txn, entry.get("request_id"), entry.get("client"))
        if decision is None:
            r.fail("request_id", "an id (within its client) in the request index")
            r.fail("client", "the client the request id was sent by")
        else:
            r.ok("client", True)
            award = decision.get("award")
            # an award names its ledger entry; a decision without one names none, so
            # it can only be one that an entry can stand for (the index is the link)
            r.ok("request_id", decision.get("request_id") == entry.get("request_id")
                 and decision.get("campaign_id") == cid
                 and (award.get("ledger_seq") == seq if isinstance(award, dict)
                      else award is None and decision.get("no_reward") in (_BUDGET_EXHAUSTED, _LOST_DRAW)),
                 "the request whose decision this entry is")
        r.ok("claim", self._claim(txn, serial) == {"campaign_id": cid, "ledger_seq": seq},
             {"campaign_id": cid, "ledger_seq": seq})

        # the state the next decisions read
        user.scans = n
        if won is not None:
            if how != "consolation":
                user.awards += 1
                user.fen += amount
                user.days[day] = (d_count + 1, d_fen + amount)
            count, fen = used.get((cid, won.id), (0, 0))
            used[(cid, won.id)] = (count + 1, fen + amount)
        if points > 0:
            self.earned[actor] = self.earned.get(actor, 0) + points
        self.users[(cid, actor)] = user
        self.last_revision[cid] = max(self.last_revision.get(cid, 0), rev.number)
        return r.result(seq, entry, commitment)

    def _scan(self, txn: lmdb.Transaction[bytes], entry: dict[str, Any], r: _Checks
              ) -> tuple[str, int, str, int, bytes, bytes] | None:
        """The entry's scan, authenticated: (campaign, serial, actor, time, HMAC,
        secret), its fields checked against it; None when no campaign with a
        secret is named by either the fields or the draw input."""
        cid, serial, actor, time_ms = fields = (entry.get("campaign_id"), entry.get("serial"), entry.get("actor"),
                                                entry.get("time_ms"))
        typed = isinstance(cid, str) and isinstance(actor, str) and isinstance(serial, int) \
            and isinstance(time_ms, int) and _is_int(serial) and _is_int(time_ms) and serial >= 0 and time_ms >= 0
        recorded = entry.get("hmac")
        parsed = _parse_draw(entry.get("draw_input"))

        def mac_of(scan: tuple[Any, ...] | None) -> bytes | None:
            if scan is None:
                return None
            secret = self._secret(txn, scan[0])
            return draw(secret, *scan)[1] if secret is not None else None

        by_fields = mac_of(fields) if typed else None
        truth: tuple[Any, ...]
        if by_fields is not None and by_fields.hex() == recorded:
            truth, mac = fields, by_fields
        else:
            by_input = mac_of(parsed)
            if by_input is not None and (by_input.hex() == recorded or by_fields is None):
                truth, mac = parsed, by_input   # type: ignore[assignment]
            elif by_fields is not None:
                truth, mac = fields, by_fields
            else:
                r.fail("campaign_id", "a campaign with a stored secret")
                return None
        for name, value, expected in zip(("campaign_id", "serial", "actor", "time_ms"), fields, truth):
            r.same(name, value, expected)
        r.same("draw_input", entry.get("draw_input"), draw_message(*truth))
        r.same("hmac", recorded, mac.hex())
        cid = truth[0]
        return cid, truth[1], truth[2], truth[3], mac, self.secrets[cid]  # type: ignore[return-value]

    def _revision(self, txn: lmdb.Transaction[bytes], cid: str, recorded: Any, seq: int, r: _Checks) -> _Revision | None:
        """The revision the entry was decided under: the one it names if that one
        exists, was loaded before the entry (first_seq) and is not older than one
        an earlier entry used; else (named as failed) the one it should name."""
        revs = self._revisions(txn, cid)
        floor = self.last_revision.get(cid, 0)
        if _is_int(recorded) and recorded in revs and revs[recorded].first_seq <= seq and recorded >= floor:
            r.ok("revision", True)
            return revs[recorded]
        loaded = [n for n, rev in revs.items() if rev.first_seq <= seq]
        ceiling = max(loaded) if loaded else None
        if _is_int(recorded) and recorded < floor and floor in revs:
            expected = floor
        else:
            expected = ceiling if ceiling is not None and ceiling >= floor else floor
        r.fail("revision", expected)
        return revs.get(expected)

    def _claim(self, txn: lmdb.Transaction[bytes], serial: int) -> Any:
        try:
            key = layout.serial_key(serial)
        except OverflowError:
            return None
        raw = txn.get(key, db=self.store.db("claims"))
        return json.loads(bytes(raw)) if raw is not None else None

    def _check_legacy(self, txn: lmdb.Transaction[bytes], seq: int, entry: dict[str, Any]) -> dict[str, Any]:
        """An entry written before decisions recorded their inputs: the draw only,
        as audited then; the counts it adds are taken as recorded."""
        r = _Checks()
        cid = entry.get("campaign_id")
        secret = self._secret(txn, cid)
        if secret is None:
            r.fail("campaign_id", "a campaign with a stored secret")
            return r.result(seq, entry, None, legacy=True)
        commitment = (self.current[cid] or {}).get("commitment")  # type: ignore[index]
        r.ok("commitment", hashlib.sha256(secret).hexdigest() == commitment, commitment)
        try:
            message, mac = draw(secret, cid, entry["serial"],  # type: ignore[arg-type]
                                         entry["actor"], entry["time_ms"])
        except KeyError as exc:
            r.fail(str(exc.args[0]), "missing")
            return r.result(seq, entry, commitment, legacy=True)
        roll = _U64.unpack_from(mac)[0] % PPM
        r.same("draw_input", entry.get("draw_input"), message)
        r.same("hmac", entry.get("hmac"), mac.hex())
        r.same("roll", entry.get("roll"), roll)
        odds = entry.get("odds_ppm")
        r.ok("odds_ppm", entry.get("how") != "draw" or (isinstance(odds, (int, float)) and roll < odds),
             f"more than the roll {roll} (a won draw)")
        actor, prize_id = entry.get("actor"), entry.get("prize_id")
        amount, points = entry.get("amount_fen") or 0, entry.get("points") or 0
        if isinstance(actor, str):
            user = self.users.setdefault((cid, actor), _User())  # type: ignore[arg-type]
            user.scans += 1
            if prize_id is not None and entry.get("how") != "consolation":
                user.awards += 1
                user.fen += amount
            if isinstance(prize_id, str):
                count, fen = self.used.get((cid, prize_id), (0, 0))  # type: ignore[arg-type]
                self.used[(cid, prize_id)] = (count + 1, fen + amount)  # type: ignore[index]
            if isinstance(points, int) and points > 0:
                self.earned[actor] = self.earned.get(actor, 0) + points
        return r.result(seq, entry, commitment, legacy=True)


def _plugin_output_ok(plugin: Any) -> bool:
    """Whether a recorded plugin output has the shape a decision writes (a vetoed
    scan has no ledger entry: veto is false)."""
    if not isinstance(plugin, dict) or tuple(plugin) != PLUGIN_FIELDS:
        return False
    odds, prize, veto, pct = (plugin[k] for k in PLUGIN_FIELDS)
    return (odds is None or (_is_int(odds) and 0 <= odds <= PPM)) and (prize is None or isinstance(prize, str)) \
        and veto is False and (pct is None or _is_int(pct))


def _pick(candidates: list[Prize], mac: bytes) -> Prize | None:
    """The prize a win draws among those with budget left, by weight: bytes 8 to
    16 of the HMAC, mod the weights' sum (scangate.decide.budgets.pick_prize)."""
    total = sum(p.weight for p in candidates)
    if total == 0:
        return None
    point = int.from_bytes(mac[8:16], "big") % total
    for p in candidates:
        if point < p.weight:
            return p
        point -= p.weight
    return None  # unreachable


# The walk of the last audit_entry call per environment: the next call on the same
# snapshot (LMDB's transaction id) at a later entry continues it.
_walks: dict[int, tuple[lmdb.Environment, _Auditor]] = {}


def audit_entry(data: DataDir, seq: int) -> dict[str, Any]:
    """Audit ledger entry ``seq`` (the module docstring): the entry, with
    ``checks`` by name, ``failed`` (the names that disagree, in check order),
    ``expected`` (what each failed one should be, where it can be said) and
    ``verified``. Raises NotFound when there is no such entry."""
    if isinstance(seq, bool) or not isinstance(seq, int) or seq < 1:
        raise InvalidArgument(f"seq: must be a ledger entry number (1 or more), got {seq!r}")
    env = data.store.env
    result = None
    with env.begin() as txn:
        kept = _walks.get(id(env))
        auditor = kept[1] if kept is not None and kept[0] is env else None
        if auditor is None or auditor.txn_id != txn.id() or auditor.next_seq > seq:
            auditor = _Auditor(data, txn.id())
        for result in auditor.run(txn, seq, seq):
            pass
        if len(_walks) >= 16:
            _walks.clear()
        _walks[id(env)] = (env, auditor)
    if result is None:
        raise NotFound(f"no ledger entry {seq}")
    return result


def audit_ledger(data: DataDir, first: int = 1, last: int | None = None, *,
                 campaign_id: str | None = None) -> Iterator[dict[str, Any]]:
    """Audit the ledger entries ``first`` to ``last`` (None: to the end), or only
    those of ``campaign_id`` among them, in one walk (audit_entry's results)."""
    env = data.store.env
    with env.begin() as txn:
        auditor = _Auditor(data, txn.id())
        for result in auditor.run(txn, first, last):
            if campaign_id is None or result.get("campaign_id") == campaign_id:
                yield result


def export_ledger(data: DataDir, campaign_id: str | None = None) -> Iterator[bytes]:
    """The ledger entries (of ``campaign_id``, if given), as stored: one JSON
    object each, what ``scangate campaign ledger`` prints one per line."""
    with data.store.env.begin() as txn:
        for _key, raw in txn.cursor(db=data.store.db("ledger")):
            raw = bytes(raw)
            if campaign_id is None or json.loads(raw).get("campaign_id") == campaign_id:
                yield raw
