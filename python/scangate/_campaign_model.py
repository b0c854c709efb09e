"""The campaign model: frozen dataclasses for a campaign and its parts, the
questions a decision asks of a campaign (is an instant in its window, the odds at
it, its local day, may a region or a product win, which store tier), and its
canonical JSON form (``Campaign.to_json``).

Public through :mod:`scangate.campaigns`, which re-exports every name here; the
values are validated when :mod:`scangate._campaign_loader` builds them. Money is
integer fen, probabilities integer ppm. No I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, time
from typing import Any, Literal
from zoneinfo import ZoneInfo

from .errors import InvalidArgument, NotFound

__all__ = [
    "CASH_MAX_FEN",
    "CASH_MIN_FEN",
    "DEFAULT_TIMEZONE",
    "PPM",
    "WECHAT_DAILY_AMOUNT_FEN",
    "WECHAT_DAILY_COUNT",
    "Campaign",
    "Caps",
    "Coupon",
    "Prize",
    "Products",
    "Slot",
    "Tier",
    "VerdictPolicy",
]

PPM = 1_000_000                    # odds_ppm of a certain win
CASH_MIN_FEN = 100                 # WeChat red packet: 1 CNY ...
CASH_MAX_FEN = 20_000              # ... to 200 CNY each
WECHAT_DAILY_COUNT = 10            # WeChat: red packets per user per day
WECHAT_DAILY_AMOUNT_FEN = 100_000  # WeChat: 1,000 CNY per user per day
DEFAULT_TIMEZONE = "Asia/Shanghai"

Status = Literal["active", "paused"]
Actor = Literal["consumer", "store"]
PrizeKind = Literal["cash", "points", "coupon"]
CouponType = Literal["full_reduction", "discount", "gift"]

# the values of the literal types above, as the loader's lists of choices: kept
# beside them so that the two cannot drift apart unnoticed
_STATUSES = ("active", "paused")
_ACTORS = ("consumer", "store")
_LEVELS = ("item", "case", "pallet")
_KINDS = ("cash", "points", "coupon")
_COUPON_TYPES = ("full_reduction", "discount", "gift")


# --------------------------------------------------------------------- model
@dataclass(frozen=True)
class Products:
    """Which scans count: SKUs (empty: every SKU) and packaging levels."""

    skus: tuple[str, ...] = ()
    levels: tuple[str, ...] = ("item",)


@dataclass(frozen=True)
class Slot:
    """Local times [start, end) with their own odds; start > end wraps midnight."""

    start: time
    end: time
    odds_ppm: int

    def contains(self, t: time) -> bool:
        """Whether the local wall-clock time ``t`` (naive) falls in the slot."""
        if self.start < self.end:
            return self.start <= t < self.end
        return t >= self.start or t < self.end


@dataclass(frozen=True)
class Coupon:
    """A coupon prize: 满减 (full_reduction: ``value_fen`` off a spend of at least
    ``threshold_fen``), 折扣 (discount: ``percent_off``), or a gift (``gift_sku``)."""

    type: CouponType
    valid_days: int
    threshold_fen: int = 0
    value_fen: int | None = None
    percent_off: int | None = None
    gift_sku: str | None = None


@dataclass(frozen=True)
class Prize:
    """One prize. ``weight`` is its relative chance among the prizes a win draws
    from; ``amount_fen`` is the cash amount (0 for other kinds)."""

    id: str
    kind: PrizeKind
    weight: int = 1
    amount_fen: int = 0
    points: int = 0
    coupon: Coupon | None = None
    budget_count: int | None = None        # at most this many awards (None: no limit)
    budget_amount_fen: int | None = None   # cash only: at most this many fen in all


@dataclass(frozen=True)
class Caps:
    """Per-user limits (None: no limit). Amounts count cash prizes only."""

    per_user_daily_count: int | None = None
    per_user_daily_amount_fen: int | None = None
    per_user_total_count: int | None = None
    per_user_total_amount_fen: int | None = None


@dataclass(frozen=True)
class Tier:
    """A store tier: stores with at least ``min_points`` get their points
    multiplied by ``multiplier_pct`` / 100."""

    name: str
    min_points: int
    multiplier_pct: int


@dataclass(frozen=True)
class VerdictPolicy:
    """Which non-genuine verdicts may still win. Counterfeit and revoked never do."""

    diverted_can_win: bool = False
    suspect_clone_can_win: bool = False


@dataclass(frozen=True)
class Campaign:
    id: str
    name: str
    timezone: str
    start: datetime           # aware, in the campaign time zone; inclusive
    end: datetime             # aware, in the campaign time zone; exclusive
    actor: Actor
    odds_ppm: int
    prizes: tuple[Prize, ...]
    status: Status = "active"
    products: Products = field(default_factory=Products)
    regions_include: tuple[str, ...] = ()
    regions_exclude: tuple[str, ...] = ()
    slots: tuple[Slot, ...] = ()
    consolation: str | None = None
    caps: Caps = field(default_factory=Caps)
    first_scan_always_wins: bool = False
    # a scan with no region (the user denied location) may win a campaign that lists
    # regions only when it says so: otherwise denying location would dodge them
    unknown_region_can_win: bool = False
    win_on_nth_scan: tuple[int, ...] = ()
    one_reward_per_code: bool = True
    store_tiers: tuple[Tier, ...] = ()
    blacklist: tuple[str, ...] = ()
    verdict_policy: VerdictPolicy = field(default_factory=VerdictPolicy)
    plugins: tuple[str, ...] = ()
    # the brand's consumer hotline, told to a consumer who scans a counterfeit code
    hotline: str | None = None

    # ------------------------------------------------------------ questions
    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def winning_prizes(self) -> tuple[Prize, ...]:
        """The prizes a win draws from (by weight): all but the consolation prize."""
        return tuple(p for p in self.prizes if p.id != self.consolation)

    def prize(self, prize_id: str) -> Prize:
        for p in self.prizes:
            if p.id == prize_id:
                return p
        raise NotFound(f"campaign {self.id}: no prize {prize_id!r}")

    @property
    def has_cash(self) -> bool:
        return any(p.kind == "cash" for p in self.prizes)

    def window_contains(self, when: datetime) -> bool:
        """Whether the instant ``when`` (aware) is in [start, end). Status is not
        considered (a paused campaign's window still contains its days)."""
        when_utc = _aware(when).astimezone(UTC)
        return self.start.astimezone(UTC) <= when_utc < self.end.astimezone(UTC)

    def odds_at(self, when: datetime) -> int:
        """The odds (ppm) at the instant ``when``: those of the slot containing its
        local wall-clock time in the campaign time zone, else the base odds."""
        local = _aware(when).astimezone(self.zone).time().replace(tzinfo=None)
        for slot in self.slots:
            if slot.contains(local):
                return slot.odds_ppm
        return self.odds_ppm

    def local_day(self, when: datetime) -> str:
        """The campaign-local date of ``when`` as YYYY-MM-DD: daily caps reset at
        local midnight."""
        return _aware(when).astimezone(self.zone).date().isoformat()

    def region_allowed(self, adcode: int | None) -> bool:
        """Whether a scan in the 6-digit adcode may win: it must start with an
        included prefix (if any are listed) and with no excluded prefix. An
        unknown region (None) is allowed only when the campaign lists no regions,
        or says ``unknown_region_can_win``."""
        if adcode is None:
            return self.unknown_region_can_win or not (self.regions_include or self.regions_exclude)
        if isinstance(adcode, bool) or not isinstance(adcode, int) or not 100000 <= adcode <= 999999:
            raise InvalidArgument(f"adcode: must be a 6-digit integer or None, got {adcode!r}")
        code = str(adcode)
        if any(code.startswith(p) for p in self.regions_exclude):
            return False
        return not self.regions_include or any(code.startswith(p) for p in self.regions_include)

    def tier_for(self, points: int) -> Tier | None:
        """The highest tier whose min_points is at most ``points`` (None: no tiers)."""
        if isinstance(points, bool) or not isinstance(points, int) or points < 0:
            raise InvalidArgument(f"points: must be a non-negative integer, got {points!r}")
        found = None
        for tier in self.store_tiers:
            if tier.min_points <= points:
                found = tier
        return found

    def matches_product(self, sku: str, level: str) -> bool:
        """Whether a code of this SKU and level (item, case, pallet) takes part."""
        return level in self.products.levels and (not self.products.skus or sku in self.products.skus)

    # -------------------------------------------------------------- storage
    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (canonical: odds as ppm, times local without offset);
        ``campaign_from_json`` of it equals this campaign."""
        return {
            "id": self.id,
            "name": self.name,
            "timezone": self.timezone,
            "start": self.start.replace(tzinfo=None).isoformat(),
            "end": self.end.replace(tzinfo=None).isoformat(),
            "status": self.status,
            "actor": self.actor,
            "products": {"skus": list(self.products.skus), "levels": list(self.products.levels)},
            "regions_include": list(self.regions_include),
            "regions_exclude": list(self.regions_exclude),
            "odds_ppm": self.odds_ppm,
            "slots": [{"start": s.start.strftime("%H:%M"), "end": s.end.strftime("%H:%M"), "odds_ppm": s.odds_ppm}
                      for s in self.slots],
            "prizes": [_prize_json(p) for p in self.prizes],
            "consolation": self.consolation,
            "caps": {
                "per_user_daily_count": self.caps.per_user_daily_count,
                "per_user_daily_amount_fen": self.caps.per_user_daily_amount_fen,
                "per_user_total_count": self.caps.per_user_total_count,
                "per_user_total_amount_fen": self.caps.per_user_total_amount_fen,
            },
            "first_scan_always_wins": self.first_scan_always_wins,
            "unknown_region_can_win": self.unknown_region_can_win,
            "win_on_nth_scan": list(self.win_on_nth_scan),
            "one_reward_per_code": self.one_reward_per_code,
            "store_tiers": [{"name": t.name, "min_points": t.min_points, "multiplier_pct": t.multiplier_pct}
                            for t in self.store_tiers],
            "blacklist": list(self.blacklist),
            "verdict_policy": {
                "diverted_can_win": self.verdict_policy.diverted_can_win,
                "suspect_clone_can_win": self.verdict_policy.suspect_clone_can_win,
            },
            "plugins": list(self.plugins),
            "hotline": self.hotline,
        }


def _prize_json(p: Prize) -> dict[str, Any]:
    coupon = None
    if p.coupon is not None:
        c = p.coupon
        coupon = {"type": c.type, "threshold_fen": c.threshold_fen, "value_fen": c.value_fen,
                  "percent_off": c.percent_off, "gift_sku": c.gift_sku, "valid_days": c.valid_days}
    return {"id": p.id, "kind": p.kind, "weight": p.weight, "amount_fen": p.amount_fen, "points": p.points,
            "coupon": coupon, "budget_count": p.budget_count, "budget_amount_fen": p.budget_amount_fen}


def _aware(when: datetime) -> datetime:
    if not isinstance(when, datetime) or when.tzinfo is None or when.utcoffset() is None:
        raise InvalidArgument(f"when: must be a timezone-aware datetime, got {when!r}")
    return when
