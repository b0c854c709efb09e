"""Rewards engine against a plain-Python model (hypothesis stateful testing).

The model knows the campaign rules of docs/campaigns.md and the auditable draw
(HMAC-SHA256 of the campaign secret over "campaign|serial|actor|time_ms", as every
ledger entry's draw_input shows): it predicts each decision exactly and keeps its
own budgets, caps, claims, scan numbers and points. Invariants after every step
are checked against the LMDB state and the ledger.
"""
from __future__ import annotations

import hashlib
import hmac
import shutil
import tempfile
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

import scangate
from scangate import points as points_mod
from scangate import rewards
from scangate.rewards import Decision, NoReward, ScanRequest
from scangate.clock import current as current_clock
from scangate.decide.prepared import prepare
from scangate.state import raw as state_raw
from scangate.verdicts import VerdictConfig
from scangate.state import reads

TZ = ZoneInfo("Asia/Shanghai")
PPM = 1_000_000
CID = "model"
N_CODES = 14
ACTORS = ["u0", "u1", "u2", "farm"]          # "farm" is blacklisted
CHENGDU, BEIJING = 510104, 110101            # Beijing ("11") is excluded
T0 = int(datetime(2026, 3, 1, 0, 0, tzinfo=TZ).timestamp() * 1000)
END = datetime(2026, 3, 9, tzinfo=TZ)
# clock steps between batches: back a day too (a scan uploaded late), so daily caps
# are checked across days in any order
STEPS = [0, 60_000, 60_000, 3 * 3_600_000, 24 * 3_600_000, -24 * 3_600_000]
NTH = (4,)
CAPS = {"daily_count": 2, "daily_fen": 500, "total_count": 3, "total_fen": 600}
CASH_FEN = 300


@dataclass(frozen=True)
class Rules:
    odds_ppm: int
    cash_count: int | None
    cash_fen: int | None
    coupon_count: int | None
    cons_count: int | None
    status: str = "active"

    def prizes(self) -> list[dict[str, Any]]:
        """Campaign order: cash, coupon (winning, weights 2 and 1), then the consolation."""
        return [
            {"id": "cash", "kind": "cash", "weight": 2, "amount": CASH_FEN, "count": self.cash_count,
             "fen": self.cash_fen},
            {"id": "coupon", "kind": "coupon", "weight": 1, "amount": 0, "count": self.coupon_count, "fen": None},
            {"id": "cons", "kind": "points", "weight": 1, "amount": 0, "count": self.cons_count, "fen": None,
             "points": 10},
        ]

    def toml(self) -> str:
        def opt(key: str, v: int | None) -> str:
            return f"{key} = {v}\n" if v is not None else ""
        return (
            f'id = "{CID}"\nname = "model campaign"\ntimezone = "Asia/Shanghai"\n'
            f'start = 2026-03-01\nend = {END.date().isoformat()}\nactor = "consumer"\nodds_ppm = {self.odds_ppm}\n'
            f'status = "{self.status}"\nfirst_scan_always_wins = true\nwin_on_nth_scan = {list(NTH)}\n'
            f'consolation = "cons"\nregions_exclude = ["11"]\nblacklist = ["farm"]\n'
            f'[[prizes]]\nid = "cash"\nkind = "cash"\nweight = 2\namount_fen = {CASH_FEN}\n'
            + opt("budget_count", self.cash_count) + opt("budget_amount_fen", self.cash_fen)
            + '[[prizes]]\nid = "coupon"\nkind = "coupon"\nweight = 1\n' + opt("budget_count", self.coupon_count)
            + '[prizes.coupon]\ntype = "full_reduction"\nthreshold_fen = 1000\nvalue_fen = 100\nvalid_days = 7\n'
            + '[[prizes]]\nid = "cons"\nkind = "points"\npoints = 10\n' + opt("budget_count", self.cons_count)
            + f'[caps]\nper_user_daily_count = {CAPS["daily_count"]}\nper_user_daily_amount_fen = {CAPS["daily_fen"]}\n'
            f'per_user_total_count = {CAPS["total_count"]}\nper_user_total_amount_fen = {CAPS["total_fen"]}\n'
        )


rules_st = st.builds(
    Rules,
    odds_ppm=st.sampled_from([0, 300_000, PPM, PPM]),
    cash_count=st.sampled_from([None, 0, 2, 5]),
    cash_fen=st.sampled_from([None, 0, 300, 1000, 1000]),
    coupon_count=st.sampled_from([None, 1, 3]),
    cons_count=st.sampled_from([None, 2, 6]),
)


@dataclass(frozen=True)
class Sent:
    request: ScanRequest
    decision: dict[str, Any]


class RewardsMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.tmp = Path(tempfile.mkdtemp(prefix="rewards-model-"))
        self.dd = self.open_data(self.tmp / "d")
        self.codes = self.dd.issue_codes("BEER-500", "item", N_CODES).as_strings()
        check = self.dd.verify_codes(self.codes)
        self.serials = [int(s) for s in check.serial]
        # model state
        self.clock = T0
        self.sent: list[Sent] = []
        self.n_req = 0
        self.claimed: set[int] = set()
        self.budgets: dict[str, list[int]] = defaultdict(lambda: [0, 0])
        self.floor: dict[str, int] = {}          # count already spent when a lower budget was loaded
        self.daily: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
        self.total: dict[str, list[int]] = defaultdict(lambda: [0, 0])
        self.nscan: dict[str, int] = defaultdict(int)
        self.points: dict[str, int] = defaultdict(int)
        self.awards: list[dict[str, Any]] = []
        self.rules: Rules | None = None
        self.secret = b""

    def open_data(self, root: Path) -> scangate.DataDir:
        return scangate.init_data_dir(root)

    def teardown(self) -> None:
        try:
            self.dd.close()
        finally:
            shutil.rmtree(self.tmp, ignore_errors=True)

    # ------------------------------------------------------------------ rules
    @initialize(r=rules_st)
    def load(self, r: Rules) -> None:
        record = rewards.put_campaign(self.dd, r.toml(), "model.toml")
        self.rules = r
        secret = reads.campaign_secret(self.dd, CID)
        assert secret is not None
        self.secret = secret
        assert record["commitment"] == hashlib.sha256(self.secret).hexdigest()
        self.commitment = record["commitment"]

    @rule(r=rules_st, status=st.sampled_from(["active", "active", "paused"]))
    def change_campaign(self, r: Rules, status: str) -> None:
        r = Rules(r.odds_ppm, r.cash_count, r.cash_fen, r.coupon_count, r.cons_count, status)
        record = rewards.put_campaign(self.dd, r.toml(), "model.toml")
        assert record["commitment"] == self.commitment          # same secret after a reload
        for p in r.prizes():
            self.floor[p["id"]] = max(self.floor.get(p["id"], 0), self.budgets[p["id"]][0])
        self.rules = r

    @rule(status=st.sampled_from(["active", "paused"]))
    def pause_resume(self, status: str) -> None:
        assert self.rules is not None
        rewards.set_campaign_status(self.dd, CID, status)
        self.rules = Rules(self.rules.odds_ppm, self.rules.cash_count, self.rules.cash_fen,
                           self.rules.coupon_count, self.rules.cons_count, status)

    @rule(scans=st.lists(st.tuples(st.integers(0, N_CODES - 1), st.sampled_from(["u0", "u0", *ACTORS]),
                                   st.sampled_from([CHENGDU, CHENGDU, CHENGDU, BEIJING])), min_size=1, max_size=3),
          step=st.sampled_from(STEPS))
    def scan(self, scans: list[tuple[int, str, int]], step: int) -> None:
        self.clock += step
        batch = []
        for code_i, actor, region in scans:
            batch.append(ScanRequest(f"req-{self.n_req}", self.codes[code_i], actor, region=region,
                                     time_ms=self.clock))
            self.n_req += 1
        self._send(batch, fresh=[True] * len(batch))

    @precondition(lambda self: bool(self.sent))
    @rule(data=st.data(), later=st.booleans(), with_fresh=st.booleans())
    def retry(self, data: st.DataObject, later: bool, with_fresh: bool) -> None:
        old = data.draw(st.sampled_from(self.sent))
        r = old.request
        if later:   # the client retries later: still the stored answer
            r = ScanRequest(r.request_id, r.code, r.actor, region=r.region, time_ms=self.clock + 1)
        batch, fresh = [r], [False]
        if with_fresh:
            self.clock += 60_000
            code_i = data.draw(st.integers(0, N_CODES - 1))
            batch.append(ScanRequest(f"req-{self.n_req}", self.codes[code_i], "u0", region=CHENGDU,
                                     time_ms=self.clock))
            self.n_req += 1
            fresh.append(True)
        decisions = self._send(batch, fresh)
        assert decisions[0] == old.decision, (old.decision, decisions[0])

    # ------------------------------------------------------------------ the model
    def _send(self, batch: list[ScanRequest], fresh: list[bool]) -> list[dict[str, Any]]:
        before = len(self._ledger())
        out = self._decide(batch)
        assert len(out) == len(batch)
        js = [d.to_json() for d in out]
        for r, d, is_fresh in zip(batch, js, fresh):
            assert d["request_id"] == r.request_id
            assert d["message"]["zh-CN"] and d["message"]["en"]
            if is_fresh:
                self._check(r, d)
                self.sent.append(Sent(r, d))
        assert len(self._ledger()) == before + sum(1 for d, f in zip(js, fresh) if f and self._drew(d))
        return js

    def _decide(self, batch: list[ScanRequest]) -> list[Any]:
        return rewards.decide_scans(self.dd, batch)

    @staticmethod
    def _drew(d: dict[str, Any]) -> bool:
        return d["award"] is not None or d["no_reward"] in (NoReward.LOST_DRAW.value,
                                                           NoReward.BUDGET_EXHAUSTED.value)

    def _budget_left(self, p: dict[str, Any]) -> bool:
        count, fen = self.budgets[p["id"]]
        if p["count"] is not None and count + 1 > p["count"]:
            return False
        return not (p["fen"] is not None and fen + p["amount"] > p["fen"])

    def _predict(self, r: ScanRequest, verdict: str) -> tuple[str | None, dict[str, Any] | None]:
        """(no_reward code, award fields) by the rules, updating the model."""
        rules = self.rules
        assert rules is not None
        if rules.status == "paused":
            return NoReward.CAMPAIGN_PAUSED.value, None
        when = datetime.fromtimestamp(r.time_ms / 1000, TZ)
        if not (datetime(2026, 3, 1, tzinfo=TZ) <= when < END):
            return NoReward.OUTSIDE_WINDOW.value, None
        if r.region == BEIJING:
            return NoReward.REGION_EXCLUDED.value, None
        if r.actor == "farm":
            return NoReward.BLACKLISTED.value, None
        if verdict != "genuine":
            return NoReward.VERDICT_NOT_ELIGIBLE.value, None
        serial = self.serials[self.codes.index(r.code)]
        if serial in self.claimed:
            return NoReward.ALREADY_CLAIMED.value, None
        day = when.date().isoformat()
        daily, total = self.daily[(r.actor, day)], self.total[r.actor]
        if daily[0] >= CAPS["daily_count"]:
            return NoReward.DAILY_CAP_REACHED.value, None
        if total[0] >= CAPS["total_count"]:
            return NoReward.TOTAL_CAP_REACHED.value, None
        n = self.nscan[r.actor] + 1
        mac = hmac.new(self.secret, f"{CID}|{serial}|{r.actor}|{r.time_ms}".encode(), hashlib.sha256).digest()
        roll = int.from_bytes(mac[:8], "big") % PPM
        if n == 1:
            how = "first_scan"
        elif n in NTH:
            how = "nth_scan"
        else:
            how = "draw" if roll < rules.odds_ppm else "lost"
        prizes = rules.prizes()
        prize, reason = None, None
        if how != "lost":
            avail = [p for p in prizes[:2] if self._budget_left(p)]
            if avail:
                point = int.from_bytes(mac[8:16], "big") % sum(p["weight"] for p in avail)
                for p in avail:
                    if point < p["weight"]:
                        prize = p
                        break
                    point -= p["weight"]
            else:
                reason = NoReward.BUDGET_EXHAUSTED.value
        if prize is None and self._budget_left(prizes[2]):
            prize, how, reason = prizes[2], "consolation", None
        if prize is None and reason is None:
            reason = NoReward.LOST_DRAW.value
        if prize is not None and prize["kind"] == "cash":
            if daily[1] + prize["amount"] > CAPS["daily_fen"]:
                return NoReward.DAILY_CAP_REACHED.value, None
            if total[1] + prize["amount"] > CAPS["total_fen"]:
                return NoReward.TOTAL_CAP_REACHED.value, None
        # committed: the code is drawn, won or lost
        self.nscan[r.actor] = n
        self.claimed.add(serial)
        if prize is None:
            return reason, None
        b = self.budgets[prize["id"]]
        b[0] += 1
        b[1] += prize["amount"]
        if how != "consolation":
            for c in (daily, total):
                c[0] += 1
                c[1] += prize["amount"]
        pts = prize.get("points", 0)
        self.points[r.actor] += pts
        award = {"campaign_id": CID, "prize_id": prize["id"], "kind": prize["kind"], "amount_fen": prize["amount"],
                 "points": pts, "how": how}
        self.awards.append({**award, "actor": r.actor})
        return None, award

    def _check(self, r: ScanRequest, d: dict[str, Any]) -> None:
        verdict = d["verdict"]["verdict"]
        assert verdict in ("genuine", "suspect_clone"), d["verdict"]
        reason, award = self._predict(r, verdict)
        assert d["no_reward"] == reason, (r, d, reason, award)
        if award is None:
            assert d["award"] is None, d
        else:
            assert d["award"] is not None, d
            got = {k: d["award"][k] for k in award}
            assert got == award, (got, award)
            assert (d["award"]["payout_key"] is not None) == (award["kind"] in ("cash", "coupon"))

    # ------------------------------------------------------------------ state readers
    def _ledger(self) -> list[dict[str, Any]]:
        return list(reads.ledger(self.dd))

    def _budgets(self) -> dict[str, tuple[int, int]]:
        return reads.budgets(self.dd)

    # ------------------------------------------------------------------ invariants
    @invariant()
    def budgets_never_overspent(self) -> None:
        if self.rules is None:
            return
        stored = self._budgets()
        for p in self.rules.prizes():
            count, fen = stored.get(f"{CID}/{p['id']}", (0, 0))
            assert [count, fen] == self.budgets[p["id"]], (p["id"], count, fen)
            if p["count"] is not None:
                assert count <= max(p["count"], self.floor.get(p["id"], 0)), (p, count)
            if p["fen"] is not None:
                assert fen <= p["fen"] or count <= self.floor.get(p["id"], 0), (p, fen)
        assert all(k.startswith(f"{CID}/") for k in stored)

    @invariant()
    def caps_hold_in_the_ledger(self) -> None:
        daily: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
        total: dict[str, list[int]] = defaultdict(lambda: [0, 0])
        for e in self._ledger():
            if e["prize_id"] is None or e["how"] == "consolation":
                continue
            day = datetime.fromtimestamp(e["time_ms"] / 1000, TZ).date().isoformat()
            for c in (daily[(e["actor"], day)], total[e["actor"]]):
                c[0] += 1
                c[1] += e["amount_fen"]
        for c in daily.values():
            assert c[0] <= CAPS["daily_count"] and c[1] <= CAPS["daily_fen"], c
        for c in total.values():
            assert c[0] <= CAPS["total_count"] and c[1] <= CAPS["total_fen"], c

    @invariant()
    def ledger_consistent(self) -> None:
        entries = self._ledger()
        serials = [e["serial"] for e in entries]
        assert len(serials) == len(set(serials)), "a code drawn twice"
        assert set(serials) == self.claimed
        seqs = [e["seq"] for e in entries]
        # one writer numbers without gaps; PostgreSQL's deciders take a block a batch
        assert seqs == (list(range(1, len(entries) + 1)) if self.dd.decisions is None else sorted(set(seqs)))
        won = [e for e in entries if e["prize_id"] is not None]
        assert len(won) == len(self.awards)
        budgets = self._budgets()
        assert sum(e["amount_fen"] for e in entries) == sum(v[1] for v in budgets.values())
        assert sum(v[0] for v in budgets.values()) == len(won)
        outbox = reads.outbox(self.dd)
        paid = {e["payout_key"]: e for e in won if e["prize_id"] in ("cash", "coupon")}
        assert None not in paid
        assert set(outbox) == set(paid)
        for key, row in outbox.items():
            assert row["state"] == "pending" and row["ledger_seq"] == paid[key]["seq"]
            assert row["amount_fen"] == paid[key]["amount_fen"]
        for actor in ACTORS:
            assert points_mod.balance(self.dd, actor) == self.points[actor], actor

    @invariant()
    def retries_are_stored(self) -> None:
        # every request decided so far has exactly one stored answer equal to its first
        # (the requests index points at the decision's entry in the decision log; the
        # stored decision has no message: it is derived from the rest)
        assert state_raw.count(self.dd, "requests") == len(reads.decision_log(self.dd)) == len(self.sent)
        for s in self.sent[-3:]:
            stored = reads.decision_of(self.dd, s.request.request_id)
            assert stored is not None and Decision.from_json(stored).to_json() == s.decision

    @invariant()
    def last_entries_audit(self) -> None:
        entries = self._ledger()
        for e in entries[-2:]:
            assert rewards.audit_entry(self.dd, e["seq"])["verified"] is True


class PreparedMachine(RewardsMachine):
    """The same model, each scan of a batch prepared on its own (as a server's
    workers prepare each call) and the batch's parts committed as one group
    (scangate.decide.prepared): a code scanned twice in one group, or a retry,
    sends the group down the whole-decision path, so both paths and the switch
    between them meet the model."""

    def _decide(self, batch: list[ScanRequest]) -> list[Any]:
        rewards.check_requests(batch)
        now = current_clock()()
        parts = [prepare(self.dd, [r], VerdictConfig(), now) or [r] for r in batch]
        return [d for part in rewards.decide_prepared(self.dd, parts) for d in part]


_PG: list[Any] = []     # the session's PostgreSQL server, once a PostgreSQL machine asks for it


@pytest.fixture
def pg_for_models(pg_server: Any) -> None:
    _PG[:] = [pg_server]


class PgRewardsMachine(RewardsMachine):
    """The same model with the decision state on PostgreSQL (a database of its
    own per example). The prepared path is LMDB's alone: a PostgreSQL batch
    locks what it reads as it reads it (scangate.rewards.decide_prepared)."""

    def open_data(self, root: Path) -> scangate.DataDir:
        scangate.init_data_dir(root).close()
        return scangate.open_data_dir(root, store=_PG[0].database())


RewardsMachine.TestCase.settings = settings(max_examples=30, stateful_step_count=40, deadline=None)
TestRewardsModel = RewardsMachine.TestCase
PreparedMachine.TestCase.settings = settings(max_examples=20, stateful_step_count=40, deadline=None)
TestPreparedModel = PreparedMachine.TestCase
PgRewardsMachine.TestCase.settings = settings(max_examples=12, stateful_step_count=40, deadline=None)
TestPgRewardsModel = pytest.mark.usefixtures("pg_for_models")(PgRewardsMachine.TestCase)
