"""Rewards: the decision of one scan, exactly once.

``decide_scans`` takes a batch of scan requests and, in ONE LMDB write transaction
(group commit), for each: returns the stored decision if its request id was seen
(a retry gets the same answer); decides the verdict (scan history included); picks
the campaign; checks blacklist, verdict policy, the code's claim and the user's
caps; draws (an HMAC of the campaign secret and the scan, so every draw can be
replayed by ``audit_entry``); and writes the claim, budgets, counters, points, the
ledger entry and the payout request. It returns after the commit, so a decision
that reached a caller is durable, and budgets and caps hold whatever the
concurrency: LMDB has one writer at a time.

Not in this module yet (see the rewards issue): the payout worker that drains the
outbox, rule plugins, points redemption and the leaderboard.
"""

from __future__ import annotations

import datetime as dt
import enum
import hashlib
import hmac
import json
import logging
import secrets
import struct
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import lmdb
import numpy as np

from . import points as points_mod
from .campaigns import Campaign, Prize, campaign_from_json, load_campaign
from .datadir import DataDir, VerifyResult
from .enums import CodeStatus
from .errors import CorruptionError, InvalidArgument, NotFound
from .plugins import RuleContext, RuleResult, run_plugins
from .store import iter_prefix
from .trace import _keys7, now_ms
from .verdicts import Scan, Verdict, VerdictConfig, decide_verdicts

__all__ = [
    "Award",
    "Decision",
    "NoReward",
    "ScanRequest",
    "audit_entry",
    "budgets_used",
    "decide_scans",
    "get_campaign",
    "list_campaigns",
    "put_campaign",
    "set_campaign_status",
]

log = logging.getLogger(__name__)

PPM = 1_000_000
_PAIR = struct.Struct(">QQ")   # count, amount (fen)


class NoReward(str, enum.Enum):
    """Why a scan won nothing: stable codes (docs/campaigns.md)."""

    NO_CAMPAIGN = "RW-N1"
    CAMPAIGN_PAUSED = "RW-N2"
    OUTSIDE_WINDOW = "RW-N3"
    REGION_EXCLUDED = "RW-N4"
    VERDICT_NOT_ELIGIBLE = "RW-N5"
    BLACKLISTED = "RW-N6"
    ALREADY_CLAIMED = "RW-N7"
    DAILY_CAP_REACHED = "RW-N8"
    TOTAL_CAP_REACHED = "RW-N9"
    BUDGET_EXHAUSTED = "RW-N10"
    LOST_DRAW = "RW-N11"
    PLUGIN_VETO = "RW-N12"
    PLUGIN_FAILED = "RW-N13"


NO_REWARD_MESSAGES: dict[NoReward, tuple[str, str]] = {
    NoReward.NO_CAMPAIGN: ("本产品当前没有扫码活动。", "There is no campaign for this product right now."),
    NoReward.CAMPAIGN_PAUSED: ("活动已暂停。", "The campaign is paused."),
    NoReward.OUTSIDE_WINDOW: ("不在活动时间内。", "The campaign is not running at this time."),
    NoReward.REGION_EXCLUDED: ("您所在地区不参与本活动。", "Your region does not take part in this campaign."),
    NoReward.VERDICT_NOT_ELIGIBLE: ("此码不符合领奖条件。", "This code is not eligible for a reward."),
    NoReward.BLACKLISTED: ("您的账号暂不能参与活动。", "Your account cannot take part in this campaign."),
    NoReward.ALREADY_CLAIMED: ("此码已参与过抽奖。", "This code has already been used in the draw."),
    NoReward.DAILY_CAP_REACHED: ("今日扫码领奖次数已达上限。", "Scan limit reached for today."),
    NoReward.TOTAL_CAP_REACHED: ("您的领奖次数已达活动上限。", "You have reached this campaign's reward limit."),
    NoReward.BUDGET_EXHAUSTED: ("奖品已发完。", "All prizes have been given out."),
    NoReward.LOST_DRAW: ("很遗憾，未中奖，谢谢参与。", "No prize this time. Thank you for taking part."),
    NoReward.PLUGIN_VETO: ("此次扫码不参与抽奖。", "This scan does not take part in the draw."),
    NoReward.PLUGIN_FAILED: ("系统繁忙，本次未能参与抽奖，请稍后再扫。",
                             "The draw is unavailable right now; please scan again later."),
}


@dataclass(frozen=True)
class ScanRequest:
    """One scan as an upstream app sends it; ``request_id`` makes retries safe."""

    request_id: str
    code: str
    actor: str
    actor_type: str = "consumer"
    region: int | None = None
    lat: float | None = None
    lon: float | None = None
    time_ms: int | None = None
    actor_tags: tuple[str, ...] = ()   # from the upstream app (member, vip...), for rule plugins


@dataclass(frozen=True)
class Award:
    campaign_id: str
    prize_id: str
    kind: str
    amount_fen: int
    points: int
    how: str                  # draw | first_scan | nth_scan | consolation
    ledger_seq: int
    payout_key: str | None    # idempotency key of the payout request (cash, coupon)


@dataclass(frozen=True)
class Decision:
    request_id: str
    verdict: dict[str, Any]
    award: Award | None
    no_reward: NoReward | None
    campaign_id: str | None

    @property
    def message(self) -> dict[str, str]:
        if self.award is not None:
            if self.award.kind == "cash":
                zh = f"恭喜您获得 {self.award.amount_fen / 100:.2f} 元红包！"
                en = f"Congratulations! You won a {self.award.amount_fen / 100:.2f} CNY red packet."
            elif self.award.kind == "points":
                zh, en = f"恭喜您获得 {self.award.points} 积分！", f"You earned {self.award.points} points!"
            else:
                zh, en = "恭喜您获得一张优惠券！", "You won a coupon!"
            return {"zh-CN": zh, "en": en}
        if self.no_reward is not None:
            zh, en = NO_REWARD_MESSAGES[self.no_reward]
            return {"zh-CN": zh, "en": en}
        return self.verdict.get("message", {})

    def to_json(self) -> dict[str, Any]:
        return {"request_id": self.request_id, "verdict": self.verdict,
                "award": dict(self.award.__dict__) if self.award else None,   # flat: no asdict deepcopy
                "no_reward": self.no_reward.value if self.no_reward else None,
                "campaign_id": self.campaign_id, "message": self.message}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Decision:
        return cls(d["request_id"], d["verdict"], Award(**d["award"]) if d["award"] else None,
                   NoReward(d["no_reward"]) if d["no_reward"] else None, d["campaign_id"])


# ---------------------------------------------------------------------- campaigns
def put_campaign(data: DataDir, text: str, source: str = "campaign") -> dict[str, Any]:
    """Validate and store a campaign (TOML or JSON). A new campaign gets a fresh
    32-byte secret and publishes its commitment, SHA-256(secret); reloading an
    existing id replaces the rules and keeps the secret, budgets and counters."""
    campaign = load_campaign(text, source)
    db = data.store.db("campaigns")
    with data.store.env.begin(write=True) as txn:
        key = campaign.id.encode()
        old = txn.get(b"c/" + key, db=db)
        secret = txn.get(b"s/" + key, db=db)
        if secret is None:
            secret = secrets.token_bytes(32)
            txn.put(b"s/" + key, secret, db=db)
        record = {"campaign": campaign.to_json(), "commitment": hashlib.sha256(secret).hexdigest(),
                  "loaded_at_ms": now_ms(), "revision": (json.loads(old)["revision"] + 1) if old else 1}
        txn.put(b"c/" + key, json.dumps(record).encode(), db=db)
    return record


def get_campaign(data: DataDir, campaign_id: str, txn: lmdb.Transaction | None = None) -> dict[str, Any]:
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


# ---------------------------------------------------------------------- state helpers
class _State:
    """The reward databases inside one write transaction."""

    def __init__(self, data: DataDir, txn: lmdb.Transaction):
        s = data.store
        self.txn = txn
        self.campaigns, self.requests, self.claims = s.db("campaigns"), s.db("requests"), s.db("claims")
        self.budgets, self.counters, self.ledger = s.db("budgets"), s.db("counters"), s.db("ledger")
        self.outbox, self.points = s.db("outbox"), s.db("points")
        cur = txn.cursor(db=self.ledger)
        self.next_seq = struct.unpack(">Q", cur.key())[0] + 1 if cur.last() else 1

    def pair(self, db: Any, key: bytes) -> tuple[int, int]:
        raw = self.txn.get(key, db=db)
        return _PAIR.unpack(raw) if raw else (0, 0)

    def add_pair(self, db: Any, key: bytes, count: int, amount: int) -> None:
        c, a = self.pair(db, key)
        self.txn.put(key, _PAIR.pack(c + count, a + amount), db=db)



def _draw(secret: bytes, campaign_id: str, serial: int, actor: str, time_ms: int) -> tuple[str, bytes]:
    """The auditable draw: HMAC-SHA256 of the campaign secret over the scan."""
    message = f"{campaign_id}|{serial}|{actor}|{time_ms}"
    return message, hmac.new(secret, message.encode(), hashlib.sha256).digest()


def _pick_prize(prizes: Sequence[Prize], mac: bytes) -> Prize | None:
    total = sum(p.weight for p in prizes)
    if total == 0:
        return None
    point = int.from_bytes(mac[8:16], "big") % total
    for p in prizes:
        if point < p.weight:
            return p
        point -= p.weight
    return None  # unreachable


def _budget_left(state: _State, c: Campaign, p: Prize) -> bool:
    count, amount = state.pair(state.budgets, f"{c.id}/{p.id}".encode())
    if p.budget_count is not None and count + 1 > p.budget_count:
        return False
    if p.budget_amount_fen is not None and amount + p.amount_fen > p.budget_amount_fen:
        return False
    return True


# ---------------------------------------------------------------------- decide
def decide_scans(data: DataDir, requests: Sequence[ScanRequest],
                 verdict_config: VerdictConfig | None = None) -> list[Decision]:
    """Decide a batch of scans in one write transaction; see the module docstring."""
    for i, r in enumerate(requests):
        if not r.request_id or len(r.request_id) > 128:
            raise InvalidArgument(f"requests[{i}].request_id: 1 to 128 characters")
        if r.actor_type not in ("consumer", "store"):
            raise InvalidArgument(f"requests[{i}].actor_type: {r.actor_type!r} is not consumer or store")
    checks = data.verify_codes([r.code for r in requests])
    with data.store.env.begin(write=True) as txn:
        state = _State(data, txn)
        campaigns = [(campaign_from_json(rec["campaign"]), txn.get(b"s/" + rec["campaign"]["id"].encode(),
                                                                    db=state.campaigns))
                     for rec in _records(txn, state)]
        done: dict[str, Decision] = {}
        fresh: list[int] = []
        out: list[Decision | None] = []
        for i, r in enumerate(requests):
            raw = txn.get(r.request_id.encode(), db=state.requests)
            if raw is not None:
                out.append(Decision.from_json(json.loads(raw)))
            elif r.request_id in done:
                out.append(done[r.request_id])   # the same request twice in one batch
            else:
                out.append(None)
                fresh.append(i)
                done[r.request_id] = None  # type: ignore[assignment]
        scans = [Scan(requests[i].code, requests[i].actor, requests[i].actor_type, requests[i].region,
                      requests[i].lat, requests[i].lon,
                      requests[i].time_ms if requests[i].time_ms is not None else now_ms()) for i in fresh]
        fresh_checks = VerifyResult(*(a[fresh] for a in (checks.status, checks.key_version, checks.serial,
                                                         checks.level, checks.line_id)), checks.lines)
        verdicts = decide_verdicts(data, scans, verdict_config, txn=txn, checks=fresh_checks) if scans else []
        for i, scan, v in zip(fresh, scans, verdicts):
            r = requests[i]
            line = checks[i].line if checks.status[i] == CodeStatus.GENUINE else None
            decision = _decide_one(state, campaigns, r, scan.time_ms or now_ms(), v, line,
                                   int(checks.serial[i]))
            txn.put(r.request_id.encode(), json.dumps(decision.to_json()).encode(), db=state.requests)
            done[r.request_id] = decision
            out[i] = decision
        for i, d in enumerate(out):
            if d is None:
                out[i] = done[requests[i].request_id]
    return out  # type: ignore[return-value]


def _records(txn: lmdb.Transaction, state: _State) -> list[dict[str, Any]]:
    return [json.loads(v) for _, v in iter_prefix(txn, state.campaigns, b"c/")]   # in id order


def _decide_one(state: _State, campaigns: list[tuple[Campaign, bytes]], r: ScanRequest, time_ms: int,
                v: Any, line: Any, serial: int) -> Decision:
    verdict_json = v.to_json()

    def no(reason: NoReward, campaign: Campaign | None) -> Decision:
        return Decision(r.request_id, verdict_json, None, reason, campaign.id if campaign else None)

    if v.verdict in (Verdict.COUNTERFEIT, Verdict.REVOKED) or line is None:
        return no(NoReward.VERDICT_NOT_ELIGIBLE, None)
    when = dt.datetime.fromtimestamp(time_ms / 1000, dt.timezone.utc)
    candidates = [(c, s) for c, s in campaigns
                  if c.actor == r.actor_type and c.matches_product(line.sku, line.level.label)]
    if not candidates:
        return no(NoReward.NO_CAMPAIGN, None)
    active = [(c, s) for c, s in candidates if c.status == "active"]
    if not active:
        return no(NoReward.CAMPAIGN_PAUSED, candidates[0][0])
    running = [(c, s) for c, s in active if c.window_contains(when)]
    if not running:
        return no(NoReward.OUTSIDE_WINDOW, active[0][0])
    region = verdict_json.get("region")
    allowed = [(c, s) for c, s in running if c.region_allowed(region)]
    if not allowed:
        return no(NoReward.REGION_EXCLUDED, running[0][0])
    campaign, secret = allowed[0]
    if secret is None:
        raise CorruptionError(f"campaign {campaign.id}: no secret stored")
    # precedence: blacklist > must-win > eligible
    if r.actor in campaign.blacklist:
        return no(NoReward.BLACKLISTED, campaign)
    policy = campaign.verdict_policy
    if (v.verdict is Verdict.DIVERTED and not policy.diverted_can_win) or \
            (v.verdict is Verdict.SUSPECT_CLONE and not policy.suspect_clone_can_win):
        return no(NoReward.VERDICT_NOT_ELIGIBLE, campaign)
    claim_key = _keys7(np.array([serial], np.uint64))
    if state.txn.get(claim_key, db=state.claims) is not None:
        return no(NoReward.ALREADY_CLAIMED, campaign)
    day = campaign.local_day(when)
    actor_key = f"{campaign.id}/{r.actor}".encode()
    daily_key = b"d/" + actor_key + f"/{day}".encode()
    total_key = b"t/" + actor_key
    caps = campaign.caps
    d_count, d_amount = state.pair(state.counters, daily_key)
    t_count, t_amount = state.pair(state.counters, total_key)
    if caps.per_user_daily_count is not None and d_count >= caps.per_user_daily_count:
        return no(NoReward.DAILY_CAP_REACHED, campaign)
    if caps.per_user_total_count is not None and t_count >= caps.per_user_total_count:
        return no(NoReward.TOTAL_CAP_REACHED, campaign)
    # the user's Nth eligible scan in this campaign
    n_key = b"n/" + actor_key
    n = state.pair(state.counters, n_key)[0] + 1
    state.txn.put(n_key, _PAIR.pack(n, 0), db=state.counters)
    message, mac = _draw(secret, campaign.id, serial, r.actor, time_ms)
    roll = int.from_bytes(mac[:8], "big") % PPM
    odds = campaign.odds_at(when)
    rule = RuleResult()
    if campaign.plugins:
        ctx = RuleContext(campaign.id, r.code, serial, line.sku, line.batch, line.level.label, verdict_json,
                          r.actor, r.actor_type, tuple(r.actor_tags),
                          {"scan_number": n, "awards_today": d_count, "awards_total": t_count}, time_ms,
                          when.astimezone(campaign.zone), verdict_json.get("region"), None, odds)
        rule, failures = run_plugins(campaign.plugins, ctx)
        if rule.odds_ppm is not None and not 0 <= rule.odds_ppm <= PPM:
            failures.append(("odds", f"odds_ppm {rule.odds_ppm} outside 0..{PPM}"))
        if failures or rule.veto:
            for ref, _why in failures:
                state.add_pair(state.counters, f"pf/{campaign.id}/{ref}".encode(), 1, 0)
            state.txn.put(n_key, _PAIR.pack(n - 1, 0), db=state.counters)   # not a used scan
            return no(NoReward.PLUGIN_FAILED if failures else NoReward.PLUGIN_VETO, campaign)
        if rule.odds_ppm is not None:
            odds = rule.odds_ppm
    if campaign.first_scan_always_wins and n == 1:
        how = "first_scan"
    elif n in campaign.win_on_nth_scan:
        how = "nth_scan"
    else:
        how = "draw" if roll < odds else "lost"
    prize: Prize | None = None
    reason: NoReward | None = None
    if how != "lost":
        prize = _pick_prize([p for p in campaign.winning_prizes if _budget_left(state, campaign, p)], mac)
        if prize is None:
            reason = NoReward.BUDGET_EXHAUSTED
    if prize is not None and rule.prize_id is not None and rule.prize_id != prize.id:
        wanted = next((p for p in campaign.prizes if p.id == rule.prize_id), None)
        if wanted is not None and _budget_left(state, campaign, wanted):
            prize = wanted     # a plugin's prize, still within the campaign's budgets
    if prize is None and campaign.consolation is not None:
        consolation = campaign.prize(campaign.consolation)
        if _budget_left(state, campaign, consolation):
            prize, how, reason = consolation, "consolation", None
    if prize is None and reason is None:
        reason = NoReward.LOST_DRAW
    if prize is not None and prize.kind == "cash" and how != "consolation":
        if caps.per_user_daily_amount_fen is not None and d_amount + prize.amount_fen > caps.per_user_daily_amount_fen:
            prize, reason = None, NoReward.DAILY_CAP_REACHED
        elif caps.per_user_total_amount_fen is not None and \
                t_amount + prize.amount_fen > caps.per_user_total_amount_fen:
            prize, reason = None, NoReward.TOTAL_CAP_REACHED
    if reason in (NoReward.DAILY_CAP_REACHED, NoReward.TOTAL_CAP_REACHED):
        state.txn.put(n_key, _PAIR.pack(n - 1, 0), db=state.counters)   # not a used scan
        return no(reason, campaign)
    # ---- commit the outcome: one draw per code, won or lost
    seq = state.next_seq
    state.next_seq += 1
    points = 0
    if prize is not None and prize.kind == "points":
        points = prize.points
        # store tiers follow cumulative points earned (redeeming does not demote)
        tier = campaign.tier_for(points_mod.earned(state.txn, state.points, r.actor)) if campaign.store_tiers \
            else None
        if tier is not None:
            points = points * tier.multiplier_pct // 100
        if rule.points_multiplier_pct is not None:
            points = points * max(rule.points_multiplier_pct, 0) // 100
        points_mod.add_points(state.txn, state.points, r.actor, points, "award", f"ledger:{seq}", time_ms)
    payout_key = None
    if prize is not None:
        state.add_pair(state.budgets, f"{campaign.id}/{prize.id}".encode(), 1, prize.amount_fen)
        if how != "consolation":
            state.add_pair(state.counters, daily_key, 1, prize.amount_fen)
            state.add_pair(state.counters, total_key, 1, prize.amount_fen)
        if prize.kind in ("cash", "coupon"):
            payout_key = f"{campaign.id}:{serial}"
            state.txn.put(payout_key.encode(), json.dumps({
                "key": payout_key, "state": "pending", "attempts": 0, "ledger_seq": seq,
                "actor": r.actor, "prize_id": prize.id, "kind": prize.kind, "amount_fen": prize.amount_fen,
                "coupon": asdict(prize.coupon) if prize.coupon else None, "created_ms": now_ms(),
            }).encode(), db=state.outbox)
    entry = {
        "seq": seq, "request_id": r.request_id, "campaign_id": campaign.id, "serial": serial,
        "actor": r.actor, "time_ms": time_ms, "draw_input": message, "hmac": mac.hex(), "roll": roll,
        "odds_ppm": odds, "scan_number": n, "how": how,
        "prize_id": prize.id if prize else None, "amount_fen": prize.amount_fen if prize else 0,
        "points": points, "payout_key": payout_key, "no_reward": reason.value if reason else None,
    }
    state.txn.put(struct.pack(">Q", seq), json.dumps(entry).encode(), db=state.ledger)
    state.txn.put(claim_key, json.dumps({"campaign_id": campaign.id, "ledger_seq": seq}).encode(),
                  db=state.claims)
    if prize is None:
        return Decision(r.request_id, verdict_json, None, reason, campaign.id)
    award = Award(campaign.id, prize.id, prize.kind, prize.amount_fen, points, how, seq, payout_key)
    return Decision(r.request_id, verdict_json, award, None, campaign.id)


def budgets_used(data: DataDir, campaign_id: str) -> dict[str, dict[str, int]]:
    """Awards and fen used per prize of a campaign."""
    with data.store.env.begin() as txn:
        return {k.decode(): dict(zip(("count", "amount_fen"), _PAIR.unpack(v)))
                for k, v in iter_prefix(txn, data.store.db("budgets"), f"{campaign_id}/".encode())}


# ---------------------------------------------------------------------- audit
def audit_entry(data: DataDir, seq: int) -> dict[str, Any]:
    """Replay one ledger entry: recompute its HMAC from the campaign secret and the
    recorded scan, check the secret against the published commitment, and re-derive
    the roll. Returns the entry with ``verified`` true when everything matches."""
    with data.store.env.begin() as txn:
        raw = txn.get(struct.pack(">Q", seq), db=data.store.db("ledger"))
        if raw is None:
            raise NotFound(f"no ledger entry {seq}")
        entry = json.loads(raw)
        record = get_campaign(data, entry["campaign_id"], txn)
        secret = txn.get(b"s/" + entry["campaign_id"].encode(), db=data.store.db("campaigns"))
    if secret is None:
        raise CorruptionError(f"campaign {entry['campaign_id']}: no secret stored")
    message, mac = _draw(secret, entry["campaign_id"], entry["serial"], entry["actor"], entry["time_ms"])
    checks = {
        "commitment": hashlib.sha256(secret).hexdigest() == record["commitment"],
        "draw_input": message == entry["draw_input"],
        "hmac": mac.hex() == entry["hmac"],
        "roll": int.from_bytes(mac[:8], "big") % PPM == entry["roll"],
        "outcome": entry["how"] != "draw" or entry["roll"] < entry["odds_ppm"],
    }
    return {**entry, "commitment": record["commitment"], "checks": checks, "verified": all(checks.values())}
