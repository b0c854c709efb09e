"""Audit as proof: every reward decision recomputed from its ledger entry.

A ledger entry (written by ``scangate.decide.engine``: a msgpack record,
``scangate.state.records.LedgerEntry``, its fields ``LEDGER_FIELDS``) records a
decision and what deciding it again needs: the scan (campaign, serial, actor,
time), the campaign revision it was decided under, the draw (input, HMAC, roll),
where its odds came from (the base odds, a time slot, a plugin), the plugins'
output, the user's scan number and the cap counters it read, the budget left of
every prize, the store tier's multiplier. The audit walks the ledger in order
and, for each entry:

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
  edited counter or budget disagrees with the history (on PostgreSQL a decision
  saw its budget slot's share, which stands where it decides the same and is no
  more than the whole: ``_slot_views``);
- decides again with the engine's own function (``decide.engine.decide_scan``,
  the one every scan was decided with) over a snapshot of that state, the
  plugins' recorded output standing in for running them: a guaranteed win or the
  draw (roll < odds), the prize picked by weight among those with budget left, a
  plugin's prize, the consolation prize, the amount, the points (tier and plugin
  multipliers), the payout key, why no reward; the entry it writes is compared
  with the recorded one, field by field; the caps are checked beside it (an entry
  that exists must be within them);
- checks that the request id (within its client) leads to this decision and that
  the code's claim is this entry.

The audit reads each entry field by field, by name, without the typed decoding
(a tampered entry fails the fields that are wrong, not the read). Each recorded
field is compared with its recomputed value, and ``failed`` names every one that
disagrees (checks that are not fields: ``commitment``, ``caps``, ``claim``, and
``record``: a stored value that is no ledger entry of a known version, with
nothing else to check). Plugins cannot be run again (their context, the code and
the verdict, is not in the ledger), so their recorded output is taken as given
and checked through what it decided: an edited plugin output is named
(``plugin``) with the fields it changes, and one that changed nothing cannot be
told. The request id and client together make the request index's key: when it
leads nowhere, both are named.

The state an entry's audit recomputes comes from what the entries before it
recompute to, not from what they record: an edited entry is named once, and the
entries after it still verify (unless the edit was to a plugin's output, which is
taken as given, or made the entry a ``record`` failure: then later entries that
read the state it changed are named too). Entries written before these fields
were recorded (version 1, ``LegacyLedgerEntry``, before any entry of version 2)
get the checks of their time: commitment, draw input, HMAC, roll, and a won
draw's roll below its odds.

``audit_entry`` audits one entry (walking the ledger up to it; consecutive calls
on an unchanged ledger continue where the last one stopped), ``audit_ledger``
many in one walk, ``export_ledger`` gives the entries as stored, one JSON object
each (for the verifier in docs/campaigns.md). Each call reads the store through
one read snapshot, ``scangate.state.ledger.LedgerSnapshot``.
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeGuard

import msgspec

from .campaigns import PPM, campaign_from_json
from .datadir import DataDir
from .decide.budgets import Budgets, spend
from .decide.campaign import Compiled
from .decide.caps import cash_capped, count_capped
from .decide.draw import draw, draw_message, roll_of
from .decide.engine import BatchValues, decide_scan
from .decide.requests import MAX_TIME_MS, MIN_TIME_MS
from .decision import Decision, NoReward, ScanRequest
from .enums import CodeStatus, Verdict
from .plugins import RuleResult
from .errors import CorruptionError, InvalidArgument, NotFound
from .state import layout
from .state.ledger import LedgerSnapshot
from .state.batch import Mutations, Snapshot
from .state.records import Claim, LedgerEntry, LegacyLedgerEntry
from .verdict import ScanVerdict

if TYPE_CHECKING:
    from .store import Store

__all__ = ["LEDGER_FIELDS", "PLUGIN_FIELDS", "audit_entry", "audit_ledger", "export_ledger"]

# The fields of a ledger entry, in the order it stores them (and the export shows them)
LEDGER_FIELDS: tuple[str, ...] = LedgerEntry.__struct_fields__
# ``plugin``: the merged output of the campaign's plugins (null: it names none)
PLUGIN_FIELDS = ("odds_ppm", "prize_id", "veto", "points_multiplier_pct")
# the fields of each version tag (records.LedgerEntry's and LegacyLedgerEntry's): 1,
# an entry written before decisions recorded their inputs
_VERSIONS = {2: LEDGER_FIELDS, 1: LegacyLedgerEntry.__struct_fields__}

# the fields of an entry that its decision decided (the scan's own are checked
# against the draw input)
_DECIDED_FIELDS = ("hmac", "slot", "odds_from", "odds_ppm", "scan_number", "counters", "budgets", "how", "prize_id", "amount_fen", "tier_pct",
                   "points", "payout_key", "no_reward")
# what a replayed decision is told of the verdict: nothing it decides reads it
# (the verdict was judged before the draw; plugins, which read it, are not run)
_REPLAY_VERDICT = ScanVerdict(Verdict.GENUINE, [], CodeStatus.GENUINE, None, "none")
_BUDGET_EXHAUSTED = NoReward.BUDGET_EXHAUSTED.value
_LOST_DRAW = NoReward.LOST_DRAW.value


def _same(a: Any, b: Any) -> bool:
    """JSON values equal, types included (``True`` is not ``1``, ``1.0`` is not ``1``)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, list):
        return len(a) == len(b) and all(map(_same, a, b))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(v, b[k]) for k, v in a.items())
    return bool(a == b)


def _is_int(x: Any) -> TypeGuard[int]:
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


def _read_entry(raw: bytes | memoryview) -> tuple[int, dict[str, Any]] | str:
    """A stored ledger entry as the audit reads it: its version tag and its fields by
    name, untyped (with the tag that tells the version), so
    a tampered entry fails the fields that are wrong, not the read; or, when it is
    no ledger entry of a known version, what one is (the ``record`` check's expected)."""
    try:
        items = msgspec.msgpack.decode(raw)
        json.dumps(items)       # the audit's results and the export show the fields as JSON
    except (msgspec.DecodeError, TypeError, ValueError) as exc:
        return f"a ledger entry: msgpack of JSON values ({exc})"
    tag = items[0] if isinstance(items, list) and items else None
    fields = _VERSIONS.get(tag) if type(tag) is int else None    # True is no tag 1
    if fields is None:
        return f"a ledger entry: a msgpack array, its version tag ({' or '.join(map(str, _VERSIONS))}) first"
    if len(items) != len(fields) + 1:
        return f"a ledger entry: {len(fields)} fields after version tag {tag}, not {len(items) - 1}"
    return items[0], dict(zip(fields, items[1:]))


@dataclass
class _Revision:
    """One stored campaign revision, compiled as the engine decides with it
    (scangate.decide.campaign), without its secret."""

    number: int
    compiled: Compiled
    commitment: str | None
    first_seq: int                 # 0: stored before first_seq was kept

    replay: Compiled | None = None     # compiled with the secret, its caps not applied: replayed()

    @classmethod
    def of(cls, number: int, record: dict[str, Any]) -> _Revision:
        return cls(number, Compiled(campaign_from_json(record["campaign"]), None, number), record.get("commitment"),
                   int(record.get("first_seq") or 0))

    def replayed(self, secret: bytes) -> Compiled:
        """The revision as the audit decides with it again: with the campaign's
        secret (the draw), without applying its caps (the audit checks them)."""
        if self.replay is None or self.replay.secret != secret:
            k = Compiled(self.compiled.campaign, secret, self.number)
            k.count_caps = k.cash_caps = False
            self.replay = k
        return self.replay


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

    def same(self, name: str, recorded: Any, expected: Any, plugin: bool = False) -> None:
        """``plugin``: the plugins' recorded output decided the value, so it may be the edit."""
        if not self.ok(name, _same(recorded, expected), expected) and plugin:
            self.fail("plugin")

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


def _slot_views(budgets: Budgets, k: Compiled, recorded: Any) -> None:
    """On a store whose budgets are split into slots (PostgreSQL's escrow,
    scangate.state.pg), a decision saw its slot's share of each budget, not the
    whole remainder this walk recomputes, and its entry records that share. Take
    the recorded remainder in ``budgets`` where it leads to the same decision (one
    more award possible with both or with neither: a slot that cannot cover an
    award is balanced first, and is left short only when the whole budget is)
    and is no more than the whole (a slot never holds more); else keep the
    walk's, and the entry fails ``budgets``."""
    if not isinstance(recorded, dict):
        return
    for prize_id, (_p, key, count_max, fen_max, fen, _w) in k.entry.items():
        left = recorded.get(prize_id)
        if (count_max is None and fen_max is None) or not (isinstance(left, list) and len(left) == 2):
            continue
        spent = budgets[key] or (0, 0)
        view = []
        for limit, used, shown, unit in ((count_max, spent[0], left[0], 1), (fen_max, spent[1], left[1], fen)):
            if limit is None:
                if shown is not None:
                    break
                view.append(used)
                continue
            whole = limit - used
            if not _is_int(shown) or (shown >= unit) != (whole >= unit) or (shown > whole and shown >= unit):
                break
            view.append(limit - shown)
        else:
            budgets[key] = (view[0], view[1])


class _Auditor:
    """One walk of the ledger in order: the state each decision read, rebuilt from
    the recomputed decisions before it, and the campaigns' secrets and revisions,
    as a snapshot of ``version`` (LedgerSnapshot.version) holds them."""

    def __init__(self, version: int, slotted: bool = False):
        self.version = version
        self.slotted = slotted         # budgets split into slots (PostgreSQL): see _slot_views
        self.next_seq = 1
        self.new_format = False        # an entry of version 2 was seen: no older one can follow
        self.secrets: dict[str, bytes | None] = {}
        self.commitments: dict[str, str | None] = {}    # the campaign's (its current record's)
        self.revisions: dict[str, dict[int, _Revision]] = {}
        self.last_revision: dict[str, int] = {}      # campaign -> newest revision an entry so far was decided under
        self.users: dict[tuple[str, str], _User] = {}
        # budget key -> awards, fen spent (None: none), as decide.budgets reads them
        self.budgets: Budgets = defaultdict(type(None))
        self.earned: dict[str, int] = {}             # actor -> points earned (every campaign)

    # ------------------------------------------------------------------ reads
    def _secret(self, snap: LedgerSnapshot, campaign_id: Any) -> bytes | None:
        # a str read from msgpack is valid UTF-8: it encodes
        if not isinstance(campaign_id, str):
            return None
        if campaign_id not in self.secrets:
            secret = self.secrets[campaign_id] = snap.secret(campaign_id)
            record = snap.current_campaign(campaign_id) if secret is not None else None
            self.commitments[campaign_id] = record.get("commitment") if record is not None else None
        return self.secrets[campaign_id]

    def _commitment(self, cid: str, secret: bytes, r: _Checks) -> str | None:
        """The campaign's published commitment, checked against its secret."""
        commitment = self.commitments[cid]
        r.ok("commitment", hashlib.sha256(secret).hexdigest() == commitment, commitment)
        return commitment

    def _revisions(self, snap: LedgerSnapshot, campaign_id: str) -> dict[int, _Revision]:
        revs = self.revisions.get(campaign_id)
        if revs is None:
            revs = self.revisions[campaign_id] = {
                n: _Revision.of(n, record) for n, record in snap.revisions(campaign_id).items()}
        return revs

    def _decision(self, snap: LedgerSnapshot, request_id: Any, client: Any) -> Decision | None:
        """The stored decision the request index gives for the id within its client
        (None: none, or no decision record, which leads to no decision either)."""
        if not isinstance(request_id, str) or not isinstance(client, str) or not request_id:
            return None
        try:
            return snap.decision_of(request_id, client)     # read from msgpack: valid UTF-8
        except CorruptionError:
            return None

    # ------------------------------------------------------------------ walk
    def run(self, snap: LedgerSnapshot, first: int, last: int | None) -> Iterator[dict[str, Any]]:
        """Audit the entries from ``next_seq`` on (up to ``last``), yielding those
        from ``first`` on."""
        for seq, raw in snap.entries(self.next_seq, last):
            result = self.check(snap, seq, raw)
            self.next_seq = seq + 1
            if seq >= first:
                yield result

    def check(self, snap: LedgerSnapshot, seq: int, raw: bytes) -> dict[str, Any]:
        r = _Checks()
        read = _read_entry(raw)
        if isinstance(read, str):       # nothing to recompute: the state it changed is lost to the walk
            r.fail("record", read)
            return r.result(seq, {}, None)
        tag, entry = read
        if tag == 1 and not self.new_format:
            return self._check_legacy(snap, seq, entry)
        self.new_format = True
        for name in LEDGER_FIELDS:      # an old entry after a new one: checked as new
            if name not in entry:
                r.fail(name, "missing")
        r.same("seq", entry.get("seq"), seq)
        scan = self._scan(snap, entry, r)
        if scan is None:
            return r.result(seq, entry, None)
        cid, serial, actor, time_ms, mac, secret = scan
        if not MIN_TIME_MS <= time_ms <= MAX_TIME_MS:     # no decision has such a time
            r.fail("time_ms", f"{MIN_TIME_MS} to {MAX_TIME_MS}")
            return r.result(seq, entry, None)
        commitment = self._commitment(cid, secret, r)
        roll = roll_of(mac)
        r.same("roll", entry.get("roll"), roll)

        rev = self._revision(snap, cid, entry.get("revision"), seq, r)
        if rev is None:
            return r.result(seq, entry, commitment)
        if rev.commitment is not None:
            r.ok("commitment", rev.commitment == commitment, commitment)
        k, c = rev.compiled, rev.compiled.campaign

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

        # the state the decision read, from the decisions before this one: the
        # user's counters (their scan number, awards today and in all), the budgets,
        # the points the actor had earned
        day = k.clock.day_number(time_ms)
        user = self.users.get((cid, actor)) or _User()
        d_count, d_fen = user.days.get(day, (0, 0))
        counts = (user.awards, user.fen, user.scans, d_count, d_fen, ())    # as decide.caps reads them
        within_caps = count_capped(c.caps, counts) is None

        # decide again: the engine's own decision of a scan (decide.engine.decide_scan)
        # over that state, the plugins' recorded output in place of running them, and
        # the entry it writes compared with this one field by field. The caps are
        # checked here rather than applied there: an entry that exists is explained.
        again = self._replay(rev, secret, entry, cid, serial, actor, time_ms, outputs, user, day, seq)
        plugin_odds, wanted_id, pct = outputs["odds_ppm"], outputs["prize_id"], outputs["points_multiplier_pct"]
        prize = k.entry[again.prize_id][0] if again.prize_id is not None else None
        picked = prize is not None and again.how not in ("consolation", "lost")   # a win found a prize
        plugin_fields = {"odds_ppm": plugin_odds is not None, "prize_id": picked and wanted_id is not None,
                         "points": pct is not None}
        for name in _DECIDED_FIELDS:
            r.same(name, entry.get(name), getattr(again, name), plugin=plugin_fields.get(name, False))
        if prize is not None and prize.kind == "cash" and again.how != "consolation":
            within_caps = within_caps and cash_capped(c.caps, counts, again.amount_fen) is None
        r.ok("caps", within_caps, "a decision within the campaign's caps (this one should have been refused)")

        # the request id leads to this decision, and the code's claim is this entry
        decision = self._decision(snap, entry.get("request_id"), entry.get("client"))
        if decision is None:
            r.fail("request_id", "an id (within its client) in the request index")
            r.fail("client", "the client the request id was sent by")
        else:
            r.ok("client", True)
            award = decision.award
            # an award names its ledger entry; a decision without one names none, so
            # it can only be one that an entry can stand for (the index is the link)
            r.ok("request_id", decision.request_id == entry.get("request_id") and decision.campaign_id == cid
                 and (award.ledger_seq == seq if award is not None
                      else decision.no_reward in (_BUDGET_EXHAUSTED, _LOST_DRAW)),
                 "the request whose decision this entry is")
        claim = self._claim(snap, serial)
        r.ok("claim", claim is not None and (claim.campaign_id, claim.ledger_seq) == (cid, seq),
             {"campaign_id": cid, "ledger_seq": seq})

        self._count(cid, actor, user, k.budget_key[prize.id] if prize is not None else None,
                    again.how != "consolation", again.amount_fen, again.points, day)
        self.last_revision[cid] = max(self.last_revision.get(cid, 0), rev.number)
        return r.result(seq, entry, commitment)

    def _replay(self, rev: _Revision, secret: bytes, entry: dict[str, Any], cid: str, serial: int, actor: str,
                time_ms: int, outputs: dict[str, Any], user: _User, day: int, seq: int) -> LedgerEntry:
        """The ledger entry the engine writes for this scan over the state the
        entries before it left (``user``, the budgets, the points earned), with the
        plugins' recorded ``outputs`` and the caps not applied."""
        k = rev.replayed(secret)
        today, month = k.days_at(time_ms)
        name = actor.encode()
        total_key = k.total_prefix + name
        point_keys = layout.award_keys(name, month) if k.has_points else None
        snap = Snapshot()
        claim_key = layout.serial_key(serial)
        snap.claims[claim_key] = None
        d_count, d_fen = user.days.get(day, (0, 0))
        snap.counters[total_key] = (user.awards, user.fen, user.scans, today[0], d_count, d_fen) if user.scans \
            else None
        snap.budgets = {key: self.budgets[key] for _p, key, *_rest in k.entry.values()}
        if self.slotted:
            _slot_views(snap.budgets, k, entry.get("budgets"))
        if point_keys is not None:
            snap.accounts[point_keys[0]] = (0, self.earned.get(actor, 0))
            snap.months[point_keys[1]] = 0
        m = Mutations()
        rule = RuleResult(outputs["veto"], outputs["odds_ppm"], outputs["prize_id"], outputs["points_multiplier_pct"])

        def recorded(*_scan: Any) -> tuple[RuleResult, list[tuple[str, str]]]:
            return rule, []

        request = ScanRequest(entry.get("request_id"), "", actor, k.actor,       # type: ignore[arg-type]
                              client=entry.get("client"))                       # type: ignore[arg-type]
        decide_scan(BatchValues(snap, m, seq, 0), (k, claim_key, today, total_key, point_keys), request, time_ms,
                    _REPLAY_VERDICT, None, serial, recorded)
        (again,) = m.ledger      # caps off, the claim free, no plugin veto: a draw, whatever it gives
        return again

    def _scan(self, snap: LedgerSnapshot, entry: dict[str, Any], r: _Checks
              ) -> tuple[str, int, str, int, bytes, bytes] | None:
        """The entry's scan, authenticated: (campaign, serial, actor, time, HMAC,
        secret), its fields checked against it; None when no campaign with a
        secret is named by either the fields or the draw input."""
        cid, serial, actor, time_ms = fields = (entry.get("campaign_id"), entry.get("serial"), entry.get("actor"),
                                                entry.get("time_ms"))
        typed = isinstance(cid, str) and isinstance(actor, str) and _is_int(serial) and _is_int(time_ms) \
            and serial >= 0 and time_ms >= 0
        recorded = entry.get("hmac")
        parsed = _parse_draw(entry.get("draw_input"))

        def mac_of(scan: tuple[Any, ...] | None) -> bytes | None:
            if scan is None:
                return None
            secret = self._secret(snap, scan[0])
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

    def _revision(self, snap: LedgerSnapshot, cid: str, recorded: Any, seq: int, r: _Checks) -> _Revision | None:
        """The revision the entry was decided under: the one it names if that one
        exists, was loaded before the entry (first_seq) and is not older than one
        an earlier entry used; else (named as failed) the one it should name."""
        revs = self._revisions(snap, cid)
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

    def _claim(self, snap: LedgerSnapshot, serial: int) -> Claim | None:
        try:
            return snap.claim(serial)
        except CorruptionError:    # no claim record: no claim
            return None

    def _check_legacy(self, snap: LedgerSnapshot, seq: int, entry: dict[str, Any]) -> dict[str, Any]:
        """An entry written before decisions recorded their inputs: the draw only,
        as audited then; the counts it adds are taken as recorded."""
        r = _Checks()
        cid = entry["campaign_id"]
        secret = self._secret(snap, cid)
        if secret is None:
            r.fail("campaign_id", "a campaign with a stored secret")
            return r.result(seq, entry, None, legacy=True)
        commitment = self._commitment(cid, secret, r)
        message, mac = draw(secret, cid, entry["serial"], entry["actor"], entry["time_ms"])
        roll = roll_of(mac)
        r.same("draw_input", entry.get("draw_input"), message)
        r.same("hmac", entry.get("hmac"), mac.hex())
        r.same("roll", entry.get("roll"), roll)
        odds = entry.get("odds_ppm")
        r.ok("odds_ppm", entry.get("how") != "draw" or (isinstance(odds, (int, float)) and roll < odds),
             f"more than the roll {roll} (a won draw)")
        actor, prize_id, amount, points = (entry[k] for k in ("actor", "prize_id", "amount_fen", "points"))
        if isinstance(actor, str):      # its day's awards unknown: as audited then
            self._count(cid, actor, self.users.get((cid, actor)) or _User(),
                        layout.budget_key(cid, prize_id) if isinstance(prize_id, str) else None,
                        entry["how"] != "consolation", amount if _is_int(amount) else 0,
                        points if _is_int(points) else 0, None)
        return r.result(seq, entry, commitment, legacy=True)

    def _count(self, cid: str, actor: str, user: _User, budget: bytes | None, capped: bool, amount: int,
               points: int, day: int | None) -> None:
        """What a decision adds to the state the next ones read: the user's scan, an
        award of the prize whose ``budget`` key is given (a consolation prize is not
        ``capped``: it counts towards no cap) and its budget spent, the points earned."""
        user.scans += 1
        if budget is not None:
            if capped:
                user.awards += 1
                user.fen += amount
                if day is not None:
                    d_count, d_fen = user.days.get(day, (0, 0))
                    user.days[day] = (d_count + 1, d_fen + amount)
            spend(self.budgets, budget, amount)
        if points > 0:
            self.earned[actor] = self.earned.get(actor, 0) + points
        self.users[(cid, actor)] = user


def _plugin_output_ok(plugin: Any) -> bool:
    """Whether a recorded plugin output has the shape a decision writes (a vetoed
    scan has no ledger entry: veto is false)."""
    if not isinstance(plugin, dict) or tuple(plugin) != PLUGIN_FIELDS:
        return False
    odds, prize, veto, pct = (plugin[k] for k in PLUGIN_FIELDS)
    return (odds is None or (_is_int(odds) and 0 <= odds <= PPM)) and (prize is None or isinstance(prize, str)) \
        and veto is False and (pct is None or _is_int(pct))


# The walk of the last audit_entry call per store: the next call on a snapshot of the
# same version (LedgerSnapshot.version) at a later entry continues it.
_walks: dict[int, tuple[Store, _Auditor]] = {}


def audit_entry(data: DataDir, seq: int) -> dict[str, Any]:
    """Audit ledger entry ``seq`` (the module docstring): the entry, with
    ``checks`` by name, ``failed`` (the names that disagree, in check order),
    ``expected`` (what each failed one should be, where it can be said) and
    ``verified``. Raises NotFound when there is no such entry."""
    if isinstance(seq, bool) or not isinstance(seq, int) or seq < 1:
        raise InvalidArgument(f"seq: must be a ledger entry number (1 or more), got {seq!r}")
    store = data.store
    result = None
    with LedgerSnapshot(data) as snap:
        kept = _walks.get(id(store))
        auditor = kept[1] if kept is not None and kept[0] is store else None
        if auditor is None or auditor.version != snap.version or auditor.next_seq > seq:
            auditor = _Auditor(snap.version, snap.slotted)
        for result in auditor.run(snap, seq, seq):
            pass
        if len(_walks) >= 16:
            _walks.clear()
        _walks[id(store)] = (store, auditor)
    if result is None:
        raise NotFound(f"no ledger entry {seq}")
    return result


def audit_ledger(data: DataDir, first: int = 1, last: int | None = None, *,
                 campaign_id: str | None = None) -> Iterator[dict[str, Any]]:
    """Audit the ledger entries ``first`` to ``last`` (None: to the end), or only
    those of ``campaign_id`` among them (and those that are no ledger entry: they
    may be), in one walk (audit_entry's results)."""
    with LedgerSnapshot(data) as snap:
        auditor = _Auditor(snap.version, snap.slotted)
        for result in auditor.run(snap, first, last):
            if campaign_id is None or result.get("campaign_id") == campaign_id or "record" in result["checks"]:
                yield result


def export_ledger(data: DataDir, campaign_id: str | None = None) -> Iterator[bytes]:
    """The ledger entries (of ``campaign_id``, if given), as stored: one JSON
    object each, its fields in their order (``LEDGER_FIELDS``), read as the audit
    reads them (an edited value is shown as it is, for the verifier to catch), what
    ``scangate campaign ledger`` prints one per line. Raises CorruptionError at an
    entry that is no ledger entry of a known version."""
    with LedgerSnapshot(data) as snap:
        for seq, raw in snap.entries():
            read = _read_entry(raw)
            if isinstance(read, str):
                raise CorruptionError(f"ledger entry {seq}: expected {read}")
            if campaign_id is None or read[1]["campaign_id"] == campaign_id:
                yield json.dumps(read[1]).encode()
