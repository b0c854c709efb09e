"""Audit as proof (issue 12, item 5): every ledger entry records what recomputing
its decision needs, ``scangate audit`` recomputes the whole decision and names the
field that disagrees, ``scangate campaign reveal`` publishes the secret once the
campaign has ended, and the verifier in docs/campaigns.md checks the draws with
the standard library alone.

The world: a consumer campaign with time slots, guaranteed wins, budgets that run
out, a consolation prize and a rule plugin (``steer`` below: the odds, a prize, a
points multiplier), reloaded once (two revisions with other odds); a store
campaign with tiers and the member-day plugin. Real scans decided by
``rewards.decide_scans`` on a real data directory at explicit times inside the
windows. Then every recorded field of the ledger entries is edited in LMDB (an
element of the msgpack record changed), one at a time, and the audit must name
exactly that field (or, for a plugin's output, which cannot be recomputed, the
fields it decided); a stored value that is no ledger entry is named as such.
"""
from __future__ import annotations

import copy
import hashlib
import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import msgspec
import pytest

import scangate
from scangate.state import layout, reads
from scangate.state import raw as state_raw
from scangate import audit, plugins, rewards
from scangate.errors import CorruptionError, InvalidArgument
from scangate.plugins import RuleContext, RuleResult
from scangate.rewards import NoReward, ScanRequest
from scangate.state.ledger import LedgerSnapshot

from conftest import RunCli
from docblocks import REPO, section_blocks

TZ = ZoneInfo("Asia/Shanghai")
DOC = REPO / "docs" / "campaigns.md"
STEER = "test_audit_proof:steer"


def ms(y: int, mo: int, d: int, h: int = 12, mi: int = 0) -> int:
    return int(datetime(y, mo, d, h, mi, tzinfo=TZ).timestamp() * 1000)


def steer(ctx: RuleContext) -> RuleResult | None:
    """A rule plugin: "lucky" actors always win the draw, "vip" ones get the big
    red packet when they win, "double" ones double points."""
    if "lucky" in ctx.actor_tags:
        return RuleResult(odds_ppm=1_000_000)
    if "vip" in ctx.actor_tags:
        return RuleResult(prize_id="cny-big")
    if "double" in ctx.actor_tags:
        return RuleResult(points_multiplier_pct=200)
    return None


def proof_campaign(base: str, slot: str) -> str:
    return f"""
id = "proof"
name = "Audit proof"
start = 2026-03-01
end = 2026-06-01
actor = "consumer"
odds = "{base}"
consolation = "pts"
first_scan_always_wins = true
win_on_nth_scan = [2]
plugins = ["{STEER}"]

[[slots]]
start = "20:00"
end = "23:00"
odds = "{slot}"

[[prizes]]
id = "cash"
kind = "cash"
weight = 3
amount_fen = 150
budget_count = 6
budget_amount_fen = 900

[[prizes]]
id = "cny-big"
kind = "cash"
weight = 1
amount_fen = 500
budget_count = 3

[[prizes]]
id = "cpn"
kind = "coupon"
weight = 2
budget_count = 4

[prizes.coupon]
type = "discount"
percent_off = 10
valid_days = 30

[[prizes]]
id = "pts"
kind = "points"
points = 5
budget_count = 30

[caps]
per_user_daily_count = 3
per_user_total_count = 12
"""


STORE = """
id = "proof-store"
name = "Audit proof stores"
start = 2026-03-01
end = 2026-06-01
actor = "store"
odds = "100%"
plugins = ["member-day-double-points"]

[products]
levels = ["case"]

[[prizes]]
id = "sp"
kind = "points"
points = 100

[[store_tiers]]
name = "bronze"
min_points = 0
multiplier_pct = 100

[[store_tiers]]
name = "silver"
min_points = 200
multiplier_pct = 150
"""

TAGS = {1: ("lucky",), 2: ("vip",), 3: ("double",)}


def _scan_number(entry: dict[str, Any]) -> int:
    """i of a consumer scan's request id req-<i>, in the order the world sent them
    (ledger numbers are that order on LMDB, with gaps on PostgreSQL)."""
    return int(entry["request_id"].removeprefix("req-"))


def consumer_scans(codes: list[str], first: int) -> list[ScanRequest]:
    """Scans by eight users over several days, one in three at 21:xx (the slot),
    some sent by an app with its own request-id scope."""
    out = []
    for k, code in enumerate(codes):
        i = first + k
        user = i % 8
        out.append(ScanRequest(f"req-{i}", code, f"u{user}", region=510104,
                               time_ms=ms(2026, 3, 10 + i // 12, 21 if i % 3 == 0 else 10, i % 60),
                               actor_tags=TAGS.get(user, ()), client="app-1" if i % 5 == 0 else ""))
    return out


@dataclass
class World:
    dd: scangate.DataDir
    root: Path
    entries: list[dict[str, Any]]      # the ledger as decided
    rev2_first_seq: int
    env: dict[str, str]                # what the CLI needs to find the store (SCANGATE_STORE)


def ledger(dd: scangate.DataDir) -> list[dict[str, Any]]:
    return list(reads.ledger(dd))


def encode_entry(e: dict[str, Any], fields: tuple[str, ...] = audit.LEDGER_FIELDS, tag: int = 2) -> bytes:
    """A ledger record as stored: a msgpack array, the version tag, then the fields in order."""
    return msgspec.msgpack.encode([tag, *(e[k] for k in fields)])


def put_entry(dd: scangate.DataDir, seq: int, raw: bytes) -> None:
    state_raw.put(dd, "ledger", layout.seq_key(seq), raw)


def raw_entry(dd: scangate.DataDir, seq: int) -> bytes:
    stored = state_raw.get(dd, "ledger", layout.seq_key(seq))
    assert stored is not None, seq
    return stored


@pytest.fixture(scope="module", params=["lmdb", "postgresql"])
def world(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    """The proof's ledger, its decision state in LMDB, then in PostgreSQL."""
    plugins.configure([STEER])
    root = tmp_path_factory.mktemp("proof") / "d"
    url = request.getfixturevalue("pg_server").database() if request.param == "postgresql" else ""
    scangate.init_data_dir(root).close()
    dd = scangate.open_data_dir(root, store=url or None)
    try:
        items = dd.issue_codes("BEER", "item", 100).as_strings()
        cases = dd.issue_codes("BEER", "case", 6).as_strings()
        assert rewards.put_campaign(dd, proof_campaign("100%", "0%"), "proof.toml")["revision"] == 1
        rewards.put_campaign(dd, STORE, "store.toml")
        for start in range(0, 50, 10):
            rewards.decide_scans(dd, consumer_scans(items[start:start + 10], start))
        rev2 = rewards.put_campaign(dd, proof_campaign("0%", "100%"), "proof.toml")
        assert rev2["revision"] == 2
        for start in range(50, 100, 10):
            rewards.decide_scans(dd, consumer_scans(items[start:start + 10], start))
        # store scans on member day (the 8th) by members: tiers and the plugin's double points
        rewards.decide_scans(dd, [ScanRequest(f"store-{k}", case, "store-1", "store", region=510104,
                                              time_ms=ms(2026, 4, 8, 9, k), actor_tags=("member",))
                                  for k, case in enumerate(cases)])
        yield World(dd, root, ledger(dd), rev2["first_seq"], {"SCANGATE_STORE": url})
    finally:
        dd.close()
        plugins.configure(None, verify=False)


def first(w: World, what: str, pred: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
    found = [e for e in w.entries if pred(e)]
    assert found, f"the world has no entry that is {what}"
    return found[0]


# ---------------------------------------------------------------------- the world
def test_the_world_exercises_every_rule(world: World) -> None:
    es = world.entries
    assert len(es) >= 100
    assert {e["how"] for e in es} >= {"first_scan", "nth_scan", "draw", "lost", "consolation"}
    assert {e["no_reward"] for e in es} >= {None, NoReward.BUDGET_EXHAUSTED.value, NoReward.LOST_DRAW.value}
    assert {e["prize_id"] for e in es} >= {"cash", "cny-big", "cpn", "pts", "sp"}
    assert {e["odds_from"] for e in es} == {"base", "slot", "plugin"}
    assert {e["revision"] for e in es if e["campaign_id"] == "proof"} == {1, 2}
    assert {e["client"] for e in es} == {"", "app-1"}
    assert any(isinstance(e["budgets"], dict) and e["budgets"]["cash"] == [0, 0] for e in es)  # spent
    assert {e["tier_pct"] for e in es if e["campaign_id"] == "proof-store"} == {100, 150}
    assert {e["plugin"]["points_multiplier_pct"] for e in es if e["campaign_id"] == "proof-store"} == {200}
    assert any(e["plugin"] == {"odds_ppm": None, "prize_id": "cny-big", "veto": False,
                               "points_multiplier_pct": None} and e["prize_id"] == "cny-big" for e in es)
    assert any(e["plugin"]["points_multiplier_pct"] == 200 and e["prize_id"] == "pts" and e["points"] == 10
               for e in es if e["campaign_id"] == "proof")
    # every entry records exactly the fields audit reads, in their order
    assert all(tuple(e) == audit.LEDGER_FIELDS for e in es)
    assert all(tuple(e["plugin"]) == audit.PLUGIN_FIELDS for e in es)
    # revisions are kept, each with the first ledger entry it can decide
    revs = rewards.campaign_revisions(world.dd, "proof")
    assert sorted(revs) == [1, 2] and revs[1]["first_seq"] == 1
    assert revs[2]["first_seq"] == world.rev2_first_seq
    proof = [e for e in es if e["campaign_id"] == "proof"]
    assert max(e["seq"] for e in proof if e["revision"] == 1) < world.rev2_first_seq \
        <= min(e["seq"] for e in proof if e["revision"] == 2)
    if world.dd.decisions is None:      # one writer: the very next number (PostgreSQL: a block of its own)
        assert world.rev2_first_seq == 1 + sum(1 for e in proof if e["revision"] == 1)
    assert revs[1]["campaign"]["odds_ppm"] == 1_000_000 and revs[2]["campaign"]["odds_ppm"] == 0


def test_untampered_entries_verify(world: World) -> None:
    # the export: each entry as json.dumps of its fields in order, byte for byte
    assert list(audit.export_ledger(world.dd)) == [json.dumps(e).encode() for e in world.entries]
    assert list(audit.export_ledger(world.dd, "proof-store")) == \
        [json.dumps(e).encode() for e in world.entries if e["campaign_id"] == "proof-store"]
    results = list(audit.audit_ledger(world.dd))
    assert [r["audited_seq"] for r in results] == [e["seq"] for e in world.entries]
    bad = [(r["seq"], r["failed"], r["expected"]) for r in results if not r["verified"]]
    assert bad == []
    # one entry at a time gives the same answers as one walk
    for e in world.entries[::7]:
        one = rewards.audit_entry(world.dd, e["seq"])
        assert one["verified"] is True and one["failed"] == [] and all(one["checks"].values())
        assert set(one["checks"]) >= set(audit.LEDGER_FIELDS) - {"plugin"} | {"commitment", "caps", "claim"}
    with pytest.raises(scangate.NotFound):
        rewards.audit_entry(world.dd, len(world.entries) + 1)


def test_the_audit_reads_one_snapshot(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    """scangate.state.ledger: the reads the audit makes, in one read snapshot, whose
    version audit_entry keeps its walk by."""
    dd, es = world.dd, world.entries
    e = first(world, "an award sent by a client", lambda e: e["client"] == "app-1" and e["prize_id"] is not None)
    with LedgerSnapshot(dd) as snap, LedgerSnapshot(dd) as again:
        assert snap.version == again.version
        assert [seq for seq, _ in snap.entries()] == [x["seq"] for x in es]
        three = [x["seq"] for x in es[2:5]]
        assert list(snap.entries(three[0], three[-1])) == [(seq, raw_entry(dd, seq)) for seq in three]
        assert list(snap.entries(es[-1]["seq"] + 1)) == []
        decision = snap.decision_of(e["request_id"], e["client"])
        assert decision is not None and decision.award is not None
        assert (decision.request_id, decision.campaign_id, decision.award.ledger_seq) == \
            (e["request_id"], e["campaign_id"], e["seq"])
        assert snap.decision_of(e["request_id"], "") is None        # an id is looked up within its client
        assert snap.decision_of("r" * 600, "") is None               # no key that long
        claim = snap.claim(e["serial"])
        assert claim is not None and (claim.campaign_id, claim.ledger_seq) == (e["campaign_id"], e["seq"])
        assert snap.claim(2**56) is None                              # no code has that serial
        secret = snap.secret("proof")
        current = snap.current_campaign("proof")
        assert secret is not None and current is not None
        assert hashlib.sha256(secret).hexdigest() == current["commitment"] and current["revision"] == 2
        assert snap.revisions("proof") == rewards.campaign_revisions(dd, "proof")
        assert sorted(snap.revisions("proof")) == [1, 2]
        for cid in ("nope", "", "c" * 401):
            assert (snap.secret(cid), snap.current_campaign(cid), snap.revisions(cid)) == (None, None, {})
    with pytest.raises(RuntimeError, match="inside its with block"):
        snap.secret("proof")

    # a request record that points nowhere is corruption to the snapshot; to the
    # audit, a request id that leads to no decision
    key = layout.request_key(e["client"], e["request_id"])
    pointer = state_raw.get(dd, "requests", key)
    assert pointer is not None
    state_raw.put(dd, "requests", key, b"\x00" * 5)
    try:
        with LedgerSnapshot(dd) as snap, pytest.raises(CorruptionError, match="index record is 5 bytes"):
            snap.decision_of(e["request_id"], e["client"])
        assert set(audit.audit_entry(dd, e["seq"])["failed"]) == {"request_id", "client"}
    finally:
        state_raw.put(dd, "requests", key, pointer)
    assert audit.audit_entry(dd, e["seq"])["verified"] is True

    # audit_entry continues its walk on a snapshot of the same version, and only then
    checked: list[int] = []
    check = audit._Auditor.check

    def counted(self: Any, snap: LedgerSnapshot, seq: int, raw: bytes) -> dict[str, Any]:
        checked.append(seq)
        return check(self, snap, seq, raw)

    monkeypatch.setattr(audit._Auditor, "check", counted)
    audit._walks.clear()                    # the walk of the calls above is not continued
    n = [x["seq"] for x in es[:5]]          # the first five numbers (PostgreSQL's leave gaps)
    assert audit.audit_entry(dd, n[2])["verified"] and audit.audit_entry(dd, n[4])["verified"]
    assert checked == n                     # walked once
    audit.audit_entry(dd, n[3])
    assert checked[5:] == n[:4]             # an earlier entry: walked again
    put_entry(dd, n[0], raw_entry(dd, n[0]))    # a write (of the same value): another version
    del checked[:]
    audit.audit_entry(dd, n[4])
    assert checked == n


# ---------------------------------------------------------------------- tampering
# Fields a plugin's recorded output decides (it is taken as given: an edit of it
# is named with what it changed).
PLUGIN_DEPENDENTS = {"plugin", "odds_ppm", "odds_from", "how", "budgets", "prize_id", "amount_fen", "tier_pct",
                     "points", "payout_key", "no_reward"}


@dataclass(frozen=True)
class Tamper:
    field: str                                   # the field edited ("plugin.odds_ppm": inside plugin)
    what: str                                    # which entry
    pick: Callable[[dict[str, Any]], bool]
    edit: Callable[[dict[str, Any], World], None]
    named: frozenset[str]                        # exactly these are named...
    at_most: frozenset[str] | None = None        # ...or, when given, at least ``named`` and at most these


def _set(key: str, value: Callable[[dict[str, Any], World], Any]) -> Callable[[dict[str, Any], World], None]:
    def edit(e: dict[str, Any], w: World) -> None:
        if "." in key:
            outer, inner = key.split(".")
            e[outer][inner] = value(e, w)
        else:
            e[key] = value(e, w)
    return edit


def _flip_hex(text: str) -> str:
    return ("1" if text[0] == "0" else "0") + text[1:]


def _other_award(e: dict[str, Any], w: World) -> str:
    """Another award's request id, sent by the same client (so the index has it)."""
    return next(o["request_id"] for o in w.entries
                if o["prize_id"] is not None and o["seq"] != e["seq"] and o["client"] == e["client"])


def _is_proof(e: dict[str, Any]) -> bool:
    return e["campaign_id"] == "proof"


def _plain(e: dict[str, Any]) -> bool:      # a consumer entry the plugin said nothing to
    return _is_proof(e) and e["plugin"] == dict.fromkeys(audit.PLUGIN_FIELDS) | {"veto": False}


def _budget_one_more(e: dict[str, Any], w: World) -> dict[str, Any]:
    b = copy.deepcopy(e["budgets"])
    b["pts"][0] += 1
    return b  # type: ignore[no-any-return]


ANY = _is_proof
TAMPERS = [
    Tamper("seq", "any", ANY, _set("seq", lambda e, w: e["seq"] + 1000), frozenset({"seq"})),
    Tamper("request_id", "an award", lambda e: e["prize_id"] is not None, _set("request_id", lambda e, w: "req-x"),
           frozenset({"request_id", "client"})),
    Tamper("request_id", "an award, given another award's id", lambda e: e["prize_id"] is not None,
           _set("request_id", _other_award), frozenset({"request_id"})),
    Tamper("client", "a scoped request", lambda e: e["client"] == "app-1", _set("client", lambda e, w: ""),
           frozenset({"request_id", "client"})),
    Tamper("client", "an unscoped request", lambda e: _is_proof(e) and e["client"] == "",
           _set("client", lambda e, w: "app-1"), frozenset({"request_id", "client"})),
    Tamper("campaign_id", "a consumer entry, given the store campaign", ANY,
           _set("campaign_id", lambda e, w: "proof-store"), frozenset({"campaign_id"})),
    Tamper("campaign_id", "a consumer entry, given no campaign", ANY, _set("campaign_id", lambda e, w: "nope"),
           frozenset({"campaign_id"})),
    Tamper("revision", "a revision-1 entry decided before revision 2 was loaded", lambda e: e["revision"] == 1
           and _is_proof(e), _set("revision", lambda e, w: 2), frozenset({"revision"})),
    Tamper("revision", "any, given a revision never loaded", ANY, _set("revision", lambda e, w: 99),
           frozenset({"revision"})),
    Tamper("revision", "a revision-2 entry after another one", lambda e: _is_proof(e) and e["revision"] == 2
           and _scan_number(e) >= 60, _set("revision", lambda e, w: 1), frozenset({"revision"})),
    Tamper("serial", "any", ANY, _set("serial", lambda e, w: e["serial"] + 1), frozenset({"serial"})),
    Tamper("serial", "any, as a string", ANY, _set("serial", lambda e, w: str(e["serial"])), frozenset({"serial"})),
    Tamper("actor", "any", ANY, _set("actor", lambda e, w: "mallory"), frozenset({"actor"})),
    Tamper("time_ms", "any", ANY, _set("time_ms", lambda e, w: e["time_ms"] + 60_000), frozenset({"time_ms"})),
    Tamper("draw_input", "any", ANY, _set("draw_input", lambda e, w: e["draw_input"] + "0"),
           frozenset({"draw_input"})),
    Tamper("hmac", "any", ANY, _set("hmac", lambda e, w: _flip_hex(e["hmac"])), frozenset({"hmac"})),
    Tamper("roll", "any", ANY, _set("roll", lambda e, w: (e["roll"] + 1) % 1_000_000), frozenset({"roll"})),
    Tamper("slot", "a scan outside the slot", lambda e: _is_proof(e) and e["slot"] is None,
           _set("slot", lambda e, w: 0), frozenset({"slot"})),
    Tamper("slot", "a scan in the slot", lambda e: e["slot"] == 0, _set("slot", lambda e, w: None),
           frozenset({"slot"})),
    Tamper("odds_from", "base odds", lambda e: e["odds_from"] == "base",
           _set("odds_from", lambda e, w: "slot"), frozenset({"odds_from"})),
    # the issue's example: a lost draw edited to certain odds
    Tamper("odds_ppm", "a lost draw", lambda e: e["no_reward"] == NoReward.LOST_DRAW.value,
           _set("odds_ppm", lambda e, w: 1_000_000), frozenset({"odds_ppm"})),
    Tamper("odds_ppm", "a won draw at the base odds", lambda e: e["how"] == "draw" and e["odds_from"] == "base",
           _set("odds_ppm", lambda e, w: 0), frozenset({"odds_ppm"})),
    Tamper("plugin", "an entry the plugin said nothing to", _plain, _set("plugin", lambda e, w: None),
           frozenset({"plugin"})),
    Tamper("plugin.veto", "an entry the plugin said nothing to", _plain, _set("plugin.veto", lambda e, w: True),
           frozenset({"plugin"})),
    Tamper("plugin.odds_ppm", "a lucky draw", lambda e: e["odds_from"] == "plugin" and e["how"] == "draw",
           _set("plugin.odds_ppm", lambda e, w: 0), frozenset({"plugin", "odds_ppm"}), frozenset(PLUGIN_DEPENDENTS)),
    Tamper("plugin.prize_id", "a VIP's big red packet", lambda e: e["prize_id"] == "cny-big"
           and e["plugin"]["prize_id"] == "cny-big", _set("plugin.prize_id", lambda e, w: "cash"),
           frozenset({"plugin", "prize_id", "amount_fen"})),
    Tamper("plugin.points_multiplier_pct", "doubled points", lambda e: _is_proof(e) and e["points"] == 10,
           _set("plugin.points_multiplier_pct", lambda e, w: 100), frozenset({"plugin", "points"})),
    Tamper("scan_number", "any", ANY, _set("scan_number", lambda e, w: e["scan_number"] + 1),
           frozenset({"scan_number"})),
    Tamper("counters", "any", ANY, _set("counters", lambda e, w: [e["counters"][0] + 1, *e["counters"][1:]]),
           frozenset({"counters"})),
    Tamper("counters", "a scan after a cash award", lambda e: _is_proof(e) and e["counters"][3] > 0,
           _set("counters", lambda e, w: [*e["counters"][:3], e["counters"][3] - 150]), frozenset({"counters"})),
    Tamper("how", "a won draw", lambda e: e["how"] == "draw" and e["prize_id"] is not None,
           _set("how", lambda e, w: "first_scan"), frozenset({"how"})),
    Tamper("budgets", "a consolation", lambda e: e["how"] == "consolation", _set("budgets", _budget_one_more),
           frozenset({"budgets"})),
    Tamper("budgets", "a consolation, as if none was read", lambda e: e["how"] == "consolation",
           _set("budgets", lambda e, w: None), frozenset({"budgets"})),
    Tamper("prize_id", "a cash award", lambda e: e["prize_id"] == "cash", _set("prize_id", lambda e, w: "cpn"),
           frozenset({"prize_id"})),
    Tamper("amount_fen", "a cash award", lambda e: e["prize_id"] == "cash",
           _set("amount_fen", lambda e, w: 20_000), frozenset({"amount_fen"})),
    Tamper("tier_pct", "a silver store", lambda e: e["tier_pct"] == 150, _set("tier_pct", lambda e, w: 100),
           frozenset({"tier_pct"})),
    Tamper("points", "a consolation", lambda e: _plain(e) and e["how"] == "consolation",
           _set("points", lambda e, w: e["points"] + 1), frozenset({"points"})),
    # member day's multiplier scaled these points: the plugin's recorded output or
    # the points could be the edit, so both are named
    Tamper("points", "a store award", lambda e: e["campaign_id"] == "proof-store",
           _set("points", lambda e, w: e["points"] * 2), frozenset({"points", "plugin"})),
    Tamper("payout_key", "a cash award", lambda e: e["prize_id"] == "cash",
           _set("payout_key", lambda e, w: f"proof:{e['serial'] + 1}"), frozenset({"payout_key"})),
    Tamper("no_reward", "a lost draw", lambda e: e["no_reward"] == NoReward.LOST_DRAW.value,
           _set("no_reward", lambda e, w: NoReward.BUDGET_EXHAUSTED.value), frozenset({"no_reward"})),
    Tamper("no_reward", "an award", lambda e: e["prize_id"] is not None,
           _set("no_reward", lambda e, w: NoReward.LOST_DRAW.value), frozenset({"no_reward"})),
]


def test_every_recorded_field_is_tampered() -> None:
    tampered = {t.field for t in TAMPERS}
    assert tampered >= set(audit.LEDGER_FIELDS) | {f"plugin.{k}" for k in audit.PLUGIN_FIELDS if k != "veto"} \
        | {"plugin.veto"}


@pytest.mark.parametrize("t", TAMPERS, ids=[f"{t.field}: {t.what}" for t in TAMPERS])
def test_every_tamper_is_named(world: World, t: Tamper) -> None:
    dd = world.dd
    target = first(world, t.what, t.pick)
    seq = target["seq"]
    original = raw_entry(dd, seq)
    items = msgspec.msgpack.decode(original)      # [version tag, fields...]
    assert items[0] == 2 and len(items) == 1 + len(audit.LEDGER_FIELDS)
    before = dict(zip(audit.LEDGER_FIELDS, items[1:]))
    edited = copy.deepcopy(before)
    t.edit(edited, world)       # one element changed, by its field's name
    assert tuple(edited) == audit.LEDGER_FIELDS, "an edit changes an element, not the record's shape"
    assert edited != before, "the edit changed nothing"
    put_entry(dd, seq, msgspec.msgpack.encode([items[0], *edited.values()]))
    try:
        result = rewards.audit_entry(dd, seq)
        named = set(result["failed"])
        assert result["verified"] is False
        if t.at_most is None:
            assert named == t.named, (result["failed"], result["expected"])
        else:
            assert t.named <= named <= t.at_most, (result["failed"], result["expected"])
        # the walk over the whole ledger names the same entry, the same way; the
        # entries before it verify, and (unless a plugin's output, taken as given,
        # changed what it decided) so do the ones after it
        walk = {r["audited_seq"]: r for r in audit.audit_ledger(dd)}
        assert walk[seq]["failed"] == result["failed"]
        others = [(s, r["failed"]) for s, r in walk.items() if s != seq and not r["verified"]]
        if t.field.startswith("plugin."):
            assert all(s > seq for s, _ in others), others
        else:
            assert others == []
        # what the audit says the field should be is what it was
        if t.field in audit.LEDGER_FIELDS and t.field not in ("request_id", "client", "plugin"):
            assert result["expected"][t.field] == before[t.field]
    finally:
        put_entry(dd, seq, original)
    assert rewards.audit_entry(dd, seq)["verified"] is True


def test_the_issue_examples_are_named(world: World) -> None:
    """The issue: an entry edited to odds_ppm = 1000000, or with another prize_id,
    still said verified."""
    dd = world.dd
    lost = first(world, "a lost draw", lambda e: e["no_reward"] == NoReward.LOST_DRAW.value)
    cash = first(world, "a cash award", lambda e: e["prize_id"] == "cash")
    for target, key, value in ((lost, "odds_ppm", 1_000_000), (cash, "prize_id", "cny-big")):
        original = raw_entry(dd, target["seq"])
        put_entry(dd, target["seq"], encode_entry({**target, key: value}))
        try:
            result = rewards.audit_entry(dd, target["seq"])
            assert result["verified"] is False and result["failed"] == [key]
            assert result["expected"] == {key: target[key]}
        finally:
            put_entry(dd, target["seq"], original)


# elements of the record (the version tag first)
COUNTERS, HMAC = 1 + audit.LEDGER_FIELDS.index("counters"), 1 + audit.LEDGER_FIELDS.index("hmac")
# Stored values that are no ledger entry of a known version: named (``record``,
# with what a ledger entry is), never an exception. A field removed or added is
# not an edit of a field: the array's length is its version's.
UNREADABLE: list[tuple[str, Callable[[list[Any], bytes], bytes], str]] = [
    ("an element removed", lambda items, raw: msgspec.msgpack.encode(items[:COUNTERS] + items[COUNTERS + 1:]),
     "a ledger entry: 25 fields after version tag 2, not 24"),
    ("an element added", lambda items, raw: msgspec.msgpack.encode([*items, 100]),
     "a ledger entry: 25 fields after version tag 2, not 26"),
    ("an unknown version", lambda items, raw: msgspec.msgpack.encode([3, *items[1:]]),
     "a ledger entry: a msgpack array, its version tag (2 or 1) first"),
    ("true for the version", lambda items, raw: msgspec.msgpack.encode([True, *items[1:]]),
     "a ledger entry: a msgpack array, its version tag (2 or 1) first"),
    ("a map of the fields", lambda items, raw: msgspec.msgpack.encode(dict(zip(audit.LEDGER_FIELDS, items[1:]))),
     "a ledger entry: a msgpack array, its version tag (2 or 1) first"),
    ("the entry as JSON (schema 1)",
     lambda items, raw: json.dumps(dict(zip(audit.LEDGER_FIELDS, items[1:]))).encode(),
     "a ledger entry: msgpack of JSON values (MessagePack data is malformed: trailing characters (byte 1))"),
    ("cut short", lambda items, raw: raw[:-1], "a ledger entry: msgpack of JSON values (Input data was truncated)"),
    ("a binary value", lambda items, raw: msgspec.msgpack.encode([*items[:HMAC], bytes.fromhex(items[HMAC]), *items[HMAC + 1:]]),
     "a ledger entry: msgpack of JSON values (Object of type bytes is not JSON serializable)"),
]


@pytest.mark.parametrize(("what", "make", "why"), UNREADABLE, ids=[u[0] for u in UNREADABLE])
def test_a_record_that_is_no_ledger_entry_is_named(world: World, what: str,
                                                   make: Callable[[list[Any], bytes], bytes], why: str) -> None:
    dd = world.dd
    seq = first(world, "a consumer entry after the first ten", lambda e: _is_proof(e) and _scan_number(e) >= 10)["seq"]
    original = raw_entry(dd, seq)
    put_entry(dd, seq, make(msgspec.msgpack.decode(original), original))
    try:
        result = rewards.audit_entry(dd, seq)
        assert result == {"commitment": None, "checks": {"record": False}, "failed": ["record"],
                          "expected": {"record": why}, "verified": False, "audited_seq": seq}
        walk = {r["audited_seq"]: r for r in audit.audit_ledger(dd)}
        assert walk[seq] == result
        # the entries before it verify (those after it may have read the state it changed)
        assert [s for s, r in walk.items() if s < seq and not r["verified"]] == []
        # whichever campaign it was, a campaign's audit shows it
        assert seq in [r["audited_seq"] for r in audit.audit_ledger(dd, campaign_id="proof-store")]
        # the export cannot show it: refused, naming the entry
        with pytest.raises(CorruptionError) as caught:
            list(audit.export_ledger(dd))
        assert str(caught.value) == f"ledger entry {seq}: expected {why}"
    finally:
        put_entry(dd, seq, original)
    assert rewards.audit_entry(dd, seq)["verified"] is True


def test_cli_audit_names_a_record_that_is_no_ledger_entry(world: World, run_cli: RunCli) -> None:
    dd = world.dd
    seq = first(world, "a consumer entry after the first ten", lambda e: _is_proof(e) and _scan_number(e) >= 10)["seq"]
    original = raw_entry(dd, seq)
    put_entry(dd, seq, original[:-1])
    try:
        r = run_cli("audit", "--data", world.root, str(seq), env=world.env)
        assert r.returncode == 1, r.stderr
        assert r.stdout.splitlines() == [f"#{seq} None None roll None / odds None ppm -> None: FAILED record "
                                         '(expected "a ledger entry: msgpack of JSON values (Input data was '
                                         'truncated)")']
    finally:
        put_entry(dd, seq, original)


def test_cli_audit_names_the_field_and_exits_1(world: World, run_cli: RunCli) -> None:
    dd = world.dd
    r = run_cli("audit", "--data", world.root, "--all", env=world.env)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == f"{len(world.entries):,} ledger entries audited, 0 failed"
    r = run_cli("audit", "--data", world.root, "--all", "--campaign", "proof-store", "--json", env=world.env)
    assert r.returncode == 0
    rows = [json.loads(line) for line in r.stdout.splitlines()]
    assert len(rows) == sum(e["campaign_id"] == "proof-store" for e in world.entries)
    assert all(row["verified"] and row["campaign_id"] == "proof-store" for row in rows)
    lost = first(world, "a lost draw", lambda e: e["no_reward"] == NoReward.LOST_DRAW.value)
    seq = lost["seq"]
    original = raw_entry(dd, seq)
    put_entry(dd, seq, encode_entry({**lost, "odds_ppm": 1_000_000}))
    try:
        r = run_cli("audit", "--data", world.root, str(seq), str(seq + 1), env=world.env)
        assert r.returncode == 1, r.stderr
        lines = r.stdout.splitlines()
        assert lines[0] == (f"#{seq} proof lost roll {lost['roll']} / odds 1000000 ppm -> RW-N11: "
                            f"FAILED odds_ppm (expected {lost['odds_ppm']})")
        assert lines[1].endswith(": verified")
        r = run_cli("audit", "--data", world.root, "--all", env=world.env)
        assert r.returncode == 1
        assert r.stdout.splitlines() == [lines[0], f"{len(world.entries):,} ledger entries audited, 1 failed"]
    finally:
        put_entry(dd, seq, original)
    for args in ((), (str(seq), "--all"), ("--campaign", "proof", str(seq))):
        r = run_cli("audit", "--data", world.root, *args, env=world.env)
        assert r.returncode == 2 and r.stderr.startswith("error: "), (args, r.stderr)
    r = run_cli("audit", "--data", world.root, str(len(world.entries) + 1), env=world.env)
    assert r.returncode == 2 and f"no ledger entry {len(world.entries) + 1}" in r.stderr


# ---------------------------------------------------------------------- old entries
def test_entries_written_before_inputs_were_recorded_keep_their_checks(tmp_path: Path) -> None:
    legacy = ("seq", "request_id", "campaign_id", "serial", "actor", "time_ms", "draw_input", "hmac", "roll",
              "odds_ppm", "scan_number", "how", "prize_id", "amount_fen", "points", "payout_key", "no_reward")
    with scangate.init_data_dir(tmp_path / "d") as dd:
        codes = dd.issue_codes("BEER", "item", 20).as_strings()
        rewards.put_campaign(dd, BASIC.format(end="2026-06-01"), "basic.toml")
        rewards.decide_scans(dd, [ScanRequest(f"r{i}", c, f"u{i % 3}", time_ms=ms(2026, 3, 10, 9, i))
                                  for i, c in enumerate(codes)])
        entries = ledger(dd)
        for e in entries:       # as the ledger was written before: version 1, its fields
            put_entry(dd, e["seq"], encode_entry(e, legacy, tag=1))
        results = list(audit.audit_ledger(dd))
        assert all(r["verified"] and r["legacy"] for r in results)
        assert set(results[0]["checks"]) == {"commitment", "draw_input", "hmac", "roll", "odds_ppm"}
        won = next(e for e in entries if e["how"] == "draw")
        put_entry(dd, won["seq"], encode_entry({**won, "odds_ppm": won["roll"]}, legacy, tag=1))
        assert rewards.audit_entry(dd, won["seq"])["failed"] == ["odds_ppm"]
        # new entries after them, then an old-shaped one after a new one: that one is named
        rewards.decide_scans(dd, [ScanRequest(f"new-{i}", code, "u9", time_ms=ms(2026, 3, 11, 9, i))
                                  for i, code in enumerate(dd.issue_codes("BEER", "item", 2).as_strings())])
        last = ledger(dd)[-1]
        assert rewards.audit_entry(dd, last["seq"])["verified"] is True
        put_entry(dd, last["seq"], encode_entry(last, legacy, tag=1))
        failed = rewards.audit_entry(dd, last["seq"])["failed"]
        assert set(failed) == set(audit.LEDGER_FIELDS) - set(legacy) | {"request_id"}   # no client to look it up in


def test_a_campaign_stored_before_revisions_were_kept(tmp_path: Path) -> None:
    with scangate.init_data_dir(tmp_path / "d") as dd:
        codes = dd.issue_codes("BEER", "item", 20).as_strings()
        loaded = rewards.put_campaign(dd, BASIC.format(end="2026-06-01"), "basic.toml")
        old = {k: v for k, v in loaded.items() if k != "first_seq"}
        # as stored then: no revision records, no first_seq
        assert state_raw.delete(dd, "campaigns", layout.revision_key("basic", 1))
        state_raw.put(dd, "campaigns", layout.campaign_key("basic"), json.dumps(old).encode())
        assert rewards.campaign_revisions(dd, "basic") == {1: old}
        rewards.decide_scans(dd, [ScanRequest(f"r{i}", c, f"u{i}", time_ms=ms(2026, 3, 10, 9, i))
                                  for i, c in enumerate(codes[:10])])
        reloaded = rewards.put_campaign(dd, BASIC.format(end="2026-06-01").replace('"40%"', '"90%"'), "b.toml")
        assert reloaded["revision"] == 2 and reloaded["first_seq"] == 11
        assert rewards.campaign_revisions(dd, "basic") == {1: old, 2: reloaded}    # the old one kept
        rewards.decide_scans(dd, [ScanRequest(f"s{i}", c, f"v{i}", time_ms=ms(2026, 3, 10, 9, i))
                                  for i, c in enumerate(codes[10:])])
        entries = ledger(dd)
        assert [e["revision"] for e in entries] == [1] * 10 + [2] * 10
        assert [e["odds_ppm"] for e in entries] == [400_000] * 10 + [900_000] * 10
        assert all(r["verified"] for r in audit.audit_ledger(dd))


# ---------------------------------------------------------------------- reveal
BASIC = """
id = "basic"
name = "Basic draw"
start = 2026-03-01
end = {end}
actor = "consumer"
odds = "40%"

[[slots]]
start = "20:00"
end = "23:00"
odds = "70%"

[[prizes]]
id = "cash"
kind = "cash"
amount_fen = 100

[[prizes]]
id = "cpn"
kind = "coupon"

[prizes.coupon]
type = "gift"
gift_sku = "BEER-330"
valid_days = 7
"""


def _verifier(tmp_path: Path) -> Path:
    [block] = section_blocks(DOC, "Verifying draws", "python")
    path = tmp_path / "verify_draws.py"
    path.write_text(block.text, encoding="utf-8")
    return path


def _run_verifier(script: Path, secret: str, commitment: str, lines: str) -> subprocess.CompletedProcess[str]:
    # run as the doc says: python3 with nothing but the standard library (-I: no site-packages, no cwd)
    return subprocess.run([sys.executable, "-I", str(script), secret, commitment], input=lines, text=True,
                          capture_output=True, timeout=120, check=False)


def test_reveal_and_the_standalone_verifier(tmp_path: Path, run_cli: RunCli) -> None:
    data = tmp_path / "d"
    with scangate.init_data_dir(data) as dd:
        codes = dd.issue_codes("BEER", "item", 60).as_strings()
        loaded = rewards.put_campaign(dd, BASIC.format(end="2026-06-01"), "basic.toml")
        rewards.decide_scans(dd, [ScanRequest(f"r{i}", c, f"user \"{i % 5}\" 用户|x", time_ms=ms(2026, 3, 10 + i % 4,
                                                                                        9 + i % 14, i))
                                  for i, c in enumerate(codes)])
        entries = ledger(dd)
        assert {e["how"] for e in entries} == {"draw", "lost"} and {e["odds_from"] for e in entries} == {"base", "slot"}
        assert {e["budgets"] is None for e in entries} == {True, False}    # no consolation: a lost draw reads none
        assert list(audit.export_ledger(dd)) == [json.dumps(e).encode() for e in entries]
        # before the end of its window (its last local day): refused, nothing changed
        with pytest.raises(InvalidArgument, match=r"^campaign_id: campaign 'basic' runs until 2026-06-01T00:00:00 "
                                                  r"\(Asia/Shanghai\); its secret can be revealed only after"):
            rewards.reveal_secret(dd, "basic", now_ms=lambda: ms(2026, 5, 31, 23, 59))
        assert "revealed_at_ms" not in rewards.get_campaign(dd, "basic")
    # the CLI on a clock before the end: exit 2, the reason on stderr
    r = run_cli("campaign", "reveal", "--data", data, "basic", env={"SCANGATE_CLOCK": "2026-05-31T23:00:00+08:00"})
    assert r.returncode == 2 and "can be revealed only after its window has ended" in r.stderr and r.stdout == ""
    for command in ("reveal", "ledger"):
        r = run_cli("campaign", command, "--data", data, "nope")
        assert r.returncode == 2 and r.stderr == "error: no campaign 'nope'\n", r.stderr
    # after the end (the tests' clock: 2026-06-01 12:00 Beijing time)
    r = run_cli("campaign", "reveal", "--data", data, "basic")
    assert r.returncode == 0, r.stderr
    secret_line, commitment_line = r.stdout.splitlines()
    secret = secret_line.removeprefix("secret ")
    commitment = commitment_line.removeprefix("commitment ")
    assert commitment == loaded["commitment"] == hashlib.sha256(bytes.fromhex(secret)).hexdigest()
    assert "its secret matches its commitment" in r.stderr
    again = run_cli("campaign", "reveal", "--data", data, "basic", "--json")
    assert again.returncode == 0 and json.loads(again.stdout)["secret"] == secret   # the same, asked again
    exported = run_cli("campaign", "ledger", "--data", data, "basic")
    assert exported.returncode == 0
    lines = exported.stdout
    with scangate.open_data_dir(data) as dd:
        assert lines.encode() == b"".join(raw + b"\n" for raw in audit.export_ledger(dd, "basic"))
        assert len(lines.splitlines()) == len(ledger(dd))
        # revealed: the campaign is closed (even a scan dated inside its window) and cannot be reloaded
        code = dd.issue_codes("BEER", "item", 1).as_strings()[0]
        late = rewards.decide_scans(dd, [ScanRequest("late", code, "u1", time_ms=ms(2026, 5, 20))])[0]
        assert late.no_reward is NoReward.OUTSIDE_WINDOW
        with pytest.raises(InvalidArgument, match="secret was revealed"):
            rewards.put_campaign(dd, BASIC.format(end="2026-09-01"), "basic.toml")
        assert rewards.get_campaign(dd, "basic")["revealed_at_ms"] >= ms(2026, 6, 1)
    assert run_cli("audit", "--data", data, "--all").returncode == 0

    # the exact block of docs/campaigns.md, stdlib only, agrees: every draw checks out
    script = _verifier(tmp_path)
    v = _run_verifier(script, secret, commitment, lines)
    assert v.returncode == 0, v.stdout + v.stderr
    assert v.stdout.splitlines() == [f"{len(lines.splitlines())} draws checked, 0 failed"]
    # and catches an edited entry: a lost draw made a win, a won draw's roll, another HMAC
    rows = [json.loads(line) for line in lines.splitlines()]
    lost = next(i for i, e in enumerate(rows) if e["how"] == "lost")
    won = next(i for i, e in enumerate(rows) if e["how"] == "draw")
    edited = copy.deepcopy(rows)
    edited[lost]["how"] = "draw"
    edited[won]["roll"] = (edited[won]["roll"] + 1) % 1_000_000
    edited[won]["hmac"] = _flip_hex(edited[won]["hmac"])
    v = _run_verifier(script, secret, commitment, "".join(json.dumps(e) + "\n" for e in edited))
    assert v.returncode == 1
    assert sorted(v.stdout.splitlines()[:-1]) == sorted([f"entry {rows[lost]['seq']}: odds_ppm",
                                                         f"entry {rows[won]['seq']}: hmac, roll"])
    assert v.stdout.splitlines()[-1] == f"{len(rows)} draws checked, 2 failed"
    # a secret that is not the committed one is refused before any draw
    v = _run_verifier(script, "00" * 32, commitment, lines)
    assert v.returncode == 1 and "does not match the commitment" in v.stderr


def test_the_verifier_uses_the_standard_library_only(tmp_path: Path) -> None:
    text = _verifier(tmp_path).read_text()
    imports = {line.split()[1] for line in text.splitlines() if line.startswith(("import ", "from "))}
    assert imports == {"hashlib", "hmac", "json", "sys"}
