"""Campaigns: the declarative model of a scan-to-win promotion, and its loader.

A campaign file (TOML or JSON; the format is in ``docs/campaigns.md``) says who can
win (consumers or stores, where, on which products), when (a window and time
slots in the campaign's time zone), how likely (odds in parts per million) and
what (prizes with budgets, per-user caps, a consolation prize)::

    campaign = load_campaign(Path("caps.toml").read_text(), "caps.toml")
    campaign.odds_at(now)            # 200000 (ppm) by day, 50000 at night
    campaign.region_allowed(110105)  # False: Beijing is excluded
    stored = campaign.to_json()      # campaign_from_json(stored) == campaign

Everything is validated when loaded; the first problem raises InvalidArgument
whose message starts with the source name and the exact field path, for example
``caps.toml: prizes[2].budget_amount_fen: must be a non-negative integer (fen)``.
Money is integer fen (1 CNY = 100 fen), probabilities integer ppm (0 to
1,000,000), never floats. This module does no I/O: it parses text it is given
(except ``load_campaign(..., check_plugins=True)``, which imports the plugins a
campaign names to refuse those not installed or allowed).

The dataclasses are plain frozen values. Build them with ``load_campaign`` or
``campaign_from_json``, which validate; constructing one directly skips that
(``campaign_from_json(c.to_json())`` validates a hand-built one).
"""

from __future__ import annotations

import json
import re
import tomllib
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time
from typing import Any, Literal, NoReturn
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from .errors import InvalidArgument, NotFound, quote

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
    "campaign_from_json",
    "load_campaign",
    "parse_percent_ppm",
]

PPM = 1_000_000                    # odds_ppm of a certain win
CASH_MIN_FEN = 100                 # WeChat red packet: 1 CNY ...
CASH_MAX_FEN = 20_000              # ... to 200 CNY each
WECHAT_DAILY_COUNT = 10            # WeChat: red packets per user per day
WECHAT_DAILY_AMOUNT_FEN = 100_000  # WeChat: 1,000 CNY per user per day
DEFAULT_TIMEZONE = "Asia/Shanghai"
_INT64_MAX = 2**63 - 1             # every count and amount must fit storage

Status = Literal["active", "paused"]
Actor = Literal["consumer", "store"]
PrizeKind = Literal["cash", "points", "coupon"]
CouponType = Literal["full_reduction", "discount", "gift"]

_STATUSES = ("active", "paused")
_ACTORS = ("consumer", "store")
_LEVELS = ("item", "case", "pallet")
_KINDS = ("cash", "points", "coupon")
_COUPON_TYPES = ("full_reduction", "discount", "gift")
_ID_RE = re.compile(r"[A-Za-z0-9_-]{1,64}")
_PERCENT_RE = re.compile(r"(\d{1,7})(?:\.(\d+))?%")
_HHMM_RE = re.compile(r"([01]\d|2[0-3]):([0-5]\d)")
_DATE_RE = re.compile(r"\d{4}-\d{2}-\d{2}")
_DOTTED = r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*"
# "package.module:attribute", or the name of an entry point in group scangate.rules
_PLUGIN_RE = re.compile(rf"{_DOTTED}:{_DOTTED}|[A-Za-z0-9][A-Za-z0-9_.-]{{0,63}}")
_MAX_LABEL = 128
_MAX_NAME = 200


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


# ------------------------------------------------------------------- loading
def load_campaign(text: str, source: str, fmt: Literal["toml", "json"] | None = None, *,
                  check_plugins: bool = False) -> Campaign:
    """Parse and validate a campaign from TOML or JSON text. ``fmt`` None: from the
    suffix of ``source`` (.toml, .json), else JSON if the text starts with ``{``.
    ``check_plugins``: also refuse plugins the operator did not install or allow,
    or that cannot be loaded (``scangate.plugins.check_refs``; this imports them),
    as storing a new campaign does. Stored campaigns are read without it: a plugin
    uninstalled since must not make a stored campaign unreadable.
    Raises InvalidArgument("<source>: <field path>: <what is wrong>")."""
    if fmt is None:
        lower = source.lower()
        if lower.endswith(".toml"):
            fmt = "toml"
        elif lower.endswith(".json"):
            fmt = "json"
        else:
            fmt = "json" if text.lstrip("\ufeff \t\r\n").startswith("{") else "toml"
    if fmt not in ("toml", "json"):
        raise InvalidArgument(f"{source}: fmt: must be \"toml\", \"json\" or None, got {fmt!r}")
    text = text.removeprefix("\ufeff")
    doc: Any
    if fmt == "toml":
        try:
            doc = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise InvalidArgument(f"{source}: invalid TOML: {exc}") from None
        except RecursionError:
            # tomllib parses nested arrays and inline tables recursively: a few hundred
            # levels (no campaign needs more than three) exhaust Python's stack
            raise InvalidArgument(f"{source}: invalid TOML: arrays or inline tables nested too deeply") from None
    else:
        try:
            doc = json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_no_constant)
        except (_BadJson, json.JSONDecodeError, RecursionError) as exc:
            raise InvalidArgument(f"{source}: invalid JSON: {exc}") from None
    campaign = campaign_from_json(doc, source)
    if check_plugins and campaign.plugins:
        from .plugins import check_refs      # here: importing plugins is the only I/O, and only when asked

        try:
            check_refs(campaign.plugins)
        except InvalidArgument as exc:
            raise InvalidArgument(f"{source}: {exc}") from None
    return campaign


def campaign_from_json(data: Mapping[str, Any], source: str = "campaign") -> Campaign:
    """Validate a parsed document (``Campaign.to_json()`` output, or a parsed file)."""
    try:
        return _parse_campaign(data)
    except _Bad as exc:
        raise InvalidArgument(f"{source}: {exc.path}: {exc.message}") from None


def parse_percent_ppm(value: str) -> int:
    """``"12.5%"`` -> 125000: a decimal percentage converted exactly to ppm; it must
    be a whole number of ppm (0.0001 % = 1 ppm) from 0 to 100 %."""
    try:
        return _percent(value, "odds")
    except _Bad as exc:
        raise InvalidArgument(f"{exc.path}: {exc.message}") from None


class _BadJson(ValueError):
    pass


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k in out:
            raise _BadJson(f"duplicate key {k!r} in an object")
        out[k] = v
    return out


def _no_constant(name: str) -> NoReturn:
    raise _BadJson(f"{name} is not a number")


class _Bad(Exception):
    def __init__(self, path: str, message: str):
        super().__init__(f"{path}: {message}")
        self.path = path
        self.message = message


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


class _Table:
    """A mapping at ``path`` whose keys must all be ``known``; absent and null
    (JSON) values read as None."""

    def __init__(self, value: Any, path: str, known: tuple[str, ...], hint: str = ""):
        if not isinstance(value, Mapping):
            raise _Bad(path or "(document)", f"must be a table (object), got {_show(value)}")
        unknown = [k for k in value if k not in known]
        if unknown:
            also = f"; also unknown: {', '.join(map(str, unknown[1:]))}" if len(unknown) > 1 else ""
            raise _Bad(_join(path, str(unknown[0])),
                       f"unknown key{hint} (known keys: {', '.join(known)}){also}")
        self.data = value
        self.path = path

    def at(self, key: str) -> str:
        return _join(self.path, key)

    def get(self, key: str) -> Any:
        return self.data.get(key)

    def has(self, key: str) -> bool:
        return self.data.get(key) is not None


def _show(value: Any) -> str:
    if isinstance(value, Mapping):
        return "a table"
    if isinstance(value, list | tuple):
        return "an array"
    return quote(value)


def _require(t: _Table, key: str, what: str) -> Any:
    value = t.get(key)
    if value is None:
        raise _Bad(t.at(key), f"required: {what}")
    return value


def _int(value: Any, path: str, lo: int = 0, hi: int = _INT64_MAX, unit: str = "") -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        if hi == _INT64_MAX:
            rule = {0: "a non-negative integer", 1: "a positive integer"}.get(lo, f"an integer >= {lo}")
        else:
            rule = f"an integer from {lo} to {hi}"
        suffix = f" ({unit})" if unit else ""
        hint = ""
        if isinstance(value, float) and unit.startswith("fen"):
            hint = "; money is integer fen (1 CNY = 100 fen), never a decimal"
        elif isinstance(value, int) and not isinstance(value, bool) and value > hi == _INT64_MAX:
            hint = " that fits 64 bits"
        raise _Bad(path, f"must be {rule}{suffix}{hint}, got {_show(value)}")
    return value


def _opt_int(t: _Table, key: str, lo: int = 0, unit: str = "") -> int | None:
    value = t.get(key)
    return None if value is None else _int(value, t.at(key), lo, unit=unit)


def _bool(t: _Table, key: str, default: bool) -> bool:
    value = t.get(key)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise _Bad(t.at(key), f"must be true or false, got {_show(value)}")
    return value


def _choice(t: _Table, key: str, choices: tuple[str, ...], default: str | None = None) -> str:
    value = t.get(key)
    if value is None:
        if default is not None:
            return default
        raise _Bad(t.at(key), f"required: one of {', '.join(map(repr, choices))}")
    if value not in choices:
        raise _Bad(t.at(key), f"must be one of {', '.join(map(repr, choices))}, got {_show(value)}")
    return str(value)


def _label(value: Any, path: str, max_len: int = _MAX_LABEL) -> str:
    if not isinstance(value, str):
        raise _Bad(path, f"must be a string, got {_show(value)}")
    text = value.strip()
    if not text:
        raise _Bad(path, "must not be empty")
    if len(text) > max_len:
        raise _Bad(path, f"longer than {max_len} characters")
    for c in text:
        if unicodedata.category(c) in ("Cc", "Cs"):
            raise _Bad(path, f"contains the control or invalid character U+{ord(c):04X}")
    return text


def _ident(value: Any, path: str) -> str:
    if not isinstance(value, str) or not _ID_RE.fullmatch(value):
        raise _Bad(path, f"must be 1 to 64 characters of A-Z a-z 0-9 _ -, got {_show(value)}")
    return value


def _array(t: _Table, key: str) -> list[Any]:
    value = t.get(key)
    if value is None:
        return []
    if not isinstance(value, list | tuple):
        raise _Bad(t.at(key), f"must be an array, got {_show(value)}")
    return list(value)


def _unique(items: list[Any], path: str, key: str = "") -> None:
    """Items of the array at ``path`` (or their field ``key``) must be distinct."""
    seen: dict[Any, int] = {}
    dot = f".{key}" if key else ""
    for i, item in enumerate(items):
        if item in seen:
            raise _Bad(f"{path}[{i}]{dot}", f"duplicates {path}[{seen[item]}]{dot} ({item!r})")
        seen[item] = i


def _sub(t: _Table, key: str, known: tuple[str, ...], hint: str = "") -> _Table:
    """The sub-table ``key`` of ``t`` (absent: empty)."""
    value = t.get(key)
    return _Table({} if value is None else value, t.at(key), known, hint)


def _percent(value: Any, path: str) -> int:
    m = _PERCENT_RE.fullmatch(value) if isinstance(value, str) else None
    if m is None:
        raise _Bad(path, f"must be a percentage string such as \"12.5%\" (or give odds_ppm), got {_show(value)}")
    whole, frac = m.group(1), m.group(2) or ""
    # 1 % = 10,000 ppm: four decimal places are whole ppm; any further digit must be 0.
    if frac[4:].strip("0"):
        raise _Bad(path, f"{value!r} is not a whole number of ppm (the finest step is 0.0001% = 1 ppm)")
    ppm = int(whole) * 10_000 + int((frac[:4] or "0").ljust(4, "0"))
    if ppm > PPM:
        raise _Bad(path, f"must be at most 100%, got {value!r}")
    return ppm


def _odds(t: _Table, required: bool = True) -> int:
    has_pct, has_ppm = t.has("odds"), t.has("odds_ppm")
    if has_pct and has_ppm:
        raise _Bad(t.at("odds"), "give odds or odds_ppm, not both")
    if has_pct:
        return _percent(t.get("odds"), t.at("odds"))
    if has_ppm:
        return _int(t.get("odds_ppm"), t.at("odds_ppm"), 0, PPM, "ppm: 1000000 = always")
    raise _Bad(t.at("odds_ppm"), "required: the odds, as odds_ppm = 125000 or odds = \"12.5%\"")


def _local_datetime(value: Any, path: str, tz: ZoneInfo, tzname: str) -> datetime:
    what = "date-time"
    naive: datetime | None = None
    if isinstance(value, datetime):
        if value.tzinfo is not None:
            raise _Bad(path, f"must not have a UTC offset (it is read in the campaign time zone {tzname}), "
                             f"got {value.isoformat()}")
        naive = value
    elif isinstance(value, date):
        naive, what = datetime.combine(value, time()), "midnight"
    elif isinstance(value, str):
        try:
            if _DATE_RE.fullmatch(value):
                naive, what = datetime.combine(date.fromisoformat(value), time()), "midnight"
            else:
                naive = datetime.fromisoformat(value)
        except ValueError:
            naive = None
        if naive is not None and naive.tzinfo is not None:
            raise _Bad(path, f"must not have a UTC offset (it is read in the campaign time zone {tzname}), "
                             f"got {value!r}")
    if naive is None:
        raise _Bad(path, "must be an ISO date (2026-03-01) or a date-time without offset "
                         f"(2026-03-01T08:00:00), got {_show(value)}")
    aware = naive.replace(tzinfo=tz)
    try:
        round_trip = aware.astimezone(UTC).astimezone(tz).replace(tzinfo=None)
    except OverflowError:   # within hours of year 1 or 9999: in UTC it is not a datetime
        raise _Bad(path, f"{naive.isoformat()} in {tzname} is outside the times a scan can have") from None
    if round_trip != naive:
        raise _Bad(path, f"{naive.isoformat()} ({what}) does not exist in {tzname}: the clocks skip it")
    if aware.utcoffset() != aware.replace(fold=1).utcoffset():
        raise _Bad(path, f"{naive.isoformat()} ({what}) occurs twice in {tzname} (the clocks go back); "
                         "choose a time that is not ambiguous")
    return aware


def _hhmm(value: Any, path: str) -> time:
    if isinstance(value, time):
        if value.tzinfo is None and value.second == 0 and value.microsecond == 0:
            return value
    elif isinstance(value, str):
        m = _HHMM_RE.fullmatch(value)
        if m:
            return time(int(m.group(1)), int(m.group(2)))
    raise _Bad(path, f"must be a local time \"HH:MM\" (00:00 to 23:59), got {_show(value)}")


def _minutes(slot: Slot) -> list[tuple[int, int]]:
    s = slot.start.hour * 60 + slot.start.minute
    e = slot.end.hour * 60 + slot.end.minute
    return [(s, e)] if s < e else [(s, 1440), (0, e)]


def _fmt_slot(slot: Slot) -> str:
    return f"\"{slot.start:%H:%M}\"-\"{slot.end:%H:%M}\""


_CAMPAIGN_KEYS = (
    "id", "name", "timezone", "start", "end", "status", "actor", "products", "regions_include",
    "regions_exclude", "odds", "odds_ppm", "slots", "prizes", "consolation", "caps", "first_scan_always_wins",
    "unknown_region_can_win",
    "win_on_nth_scan", "one_reward_per_code", "store_tiers", "blacklist", "verdict_policy", "plugins", "hotline",
)
_PRODUCT_KEYS = ("skus", "levels")
_SLOT_KEYS = ("start", "end", "odds", "odds_ppm")
_PRIZE_KEYS = ("id", "kind", "weight", "amount_fen", "points", "coupon", "budget_count", "budget_amount_fen")
_COUPON_KEYS = ("type", "threshold_fen", "value_fen", "percent_off", "gift_sku", "valid_days")
_CAPS_KEYS = ("per_user_daily_count", "per_user_daily_amount_fen", "per_user_total_count",
              "per_user_total_amount_fen")
_TIER_KEYS = ("name", "min_points", "multiplier_pct")
_POLICY_KEYS = ("diverted_can_win", "suspect_clone_can_win")


def _parse_campaign(doc: Any) -> Campaign:
    t = _Table(doc, "", _CAMPAIGN_KEYS)
    cid = _ident(_require(t, "id", "the campaign id"), "id")
    name = _label(_require(t, "name", "the campaign name"), "name", _MAX_NAME)

    tzname = t.get("timezone")
    if tzname is None:
        tzname = DEFAULT_TIMEZONE
    bad_zone = _Bad("timezone", f"must be an IANA time zone name such as \"Asia/Shanghai\", got {_show(tzname)}")
    if not isinstance(tzname, str):
        raise bad_zone
    try:
        tz = ZoneInfo(tzname)
    except (ZoneInfoNotFoundError, ValueError, OSError):   # OSError: a name too long for a file
        if not available_timezones():
            raise _Bad("timezone", f"no time zone database to look up {tzname!r} in: install the tzdata "
                                   "package (pip install tzdata)") from None
        raise bad_zone from None
    start = _local_datetime(_require(t, "start", "the first moment, e.g. 2026-03-01"), "start", tz, tzname)
    end = _local_datetime(_require(t, "end", "the end (exclusive), e.g. 2026-07-01"), "end", tz, tzname)
    if end.astimezone(UTC) <= start.astimezone(UTC):
        raise _Bad("end", f"must be after start ({end.replace(tzinfo=None).isoformat()} <= "
                          f"{start.replace(tzinfo=None).isoformat()})")
    status = _choice(t, "status", _STATUSES, "active")
    actor = _choice(t, "actor", _ACTORS)

    products = _parse_products(t)
    include = _parse_regions(t, "regions_include")
    exclude = _parse_regions(t, "regions_exclude")
    odds = _odds(t)
    slots = _parse_slots(t)
    prizes = _parse_prizes(t)
    has_cash = any(p.kind == "cash" for p in prizes)

    consolation = t.get("consolation")
    if consolation is not None:
        consolation = _ident(consolation, "consolation")
        by_id = {p.id: p for p in prizes}
        if consolation not in by_id:
            raise _Bad("consolation", f"no prize has the id {consolation!r} (prizes: {', '.join(by_id)})")
        if by_id[consolation].kind == "cash":
            raise _Bad("consolation", f"prize {consolation!r} is cash; a consolation must be points or a coupon")
        if len(prizes) == 1:
            raise _Bad("consolation", "is the only prize: a win would have nothing to draw; add a prize to win")

    caps = _parse_caps(t, cash_limits=has_cash and actor == "consumer", has_cash=has_cash)

    first = _bool(t, "first_scan_always_wins", False)
    unknown_region = _bool(t, "unknown_region_can_win", False)
    nth_raw = _array(t, "win_on_nth_scan")
    nth = [_int(n, f"win_on_nth_scan[{i}]", 1, unit="the user's Nth scan in this campaign; 1 = first")
           for i, n in enumerate(nth_raw)]
    _unique(nth, "win_on_nth_scan")

    if not _bool(t, "one_reward_per_code", True):
        raise _Bad("one_reward_per_code", "must be true: each code is one physical item and rewards once; "
                                          "paying a code twice is what code farms and resold caps exploit "
                                          "(remove the key or set it to true)")

    tiers = _parse_tiers(t, actor)

    blacklist = []
    for i, a in enumerate(_array(t, "blacklist")):
        path = f"blacklist[{i}]"
        if not isinstance(a, str) or not a.strip():
            raise _Bad(path, f"must be a non-empty actor id string, got {_show(a)}")
        if a != a.strip():
            raise _Bad(path, f"has leading or trailing whitespace, so it would never match: {a!r}")
        blacklist.append(_label(a, path))
    _unique(blacklist, "blacklist")

    pt = _sub(t, "verdict_policy", _POLICY_KEYS, hint=" (counterfeit and revoked codes never win)")
    policy = VerdictPolicy(diverted_can_win=_bool(pt, "diverted_can_win", False),
                           suspect_clone_can_win=_bool(pt, "suspect_clone_can_win", False))

    plugins = []
    for i, ref in enumerate(_array(t, "plugins")):
        if not isinstance(ref, str) or not _PLUGIN_RE.fullmatch(ref):
            raise _Bad(f"plugins[{i}]", f"must be a \"package.module:attribute\" reference or an entry-point "
                                        f"name, got {_show(ref)}")
        plugins.append(ref)
    _unique(plugins, "plugins")
    hotline = t.get("hotline")
    if hotline is not None:
        hotline = _label(hotline, "hotline", 32)

    return Campaign(
        id=cid, name=name, timezone=tzname, start=start, end=end, status=status,  # type: ignore[arg-type]
        actor=actor, odds_ppm=odds, prizes=prizes, products=products,  # type: ignore[arg-type]
        regions_include=include, regions_exclude=exclude, slots=slots, consolation=consolation, caps=caps,
        first_scan_always_wins=first, unknown_region_can_win=unknown_region, win_on_nth_scan=tuple(sorted(nth)), one_reward_per_code=True,
        store_tiers=tiers, blacklist=tuple(blacklist), verdict_policy=policy, plugins=tuple(plugins),
        hotline=hotline,
    )


def _parse_products(t: _Table) -> Products:
    pt = _sub(t, "products", _PRODUCT_KEYS)
    skus = [_label(s, f"products.skus[{i}]") for i, s in enumerate(_array(pt, "skus"))]
    _unique(skus, "products.skus")
    if pt.get("levels") is None:
        levels = ["item"]
    else:
        levels = _array(pt, "levels")
        if not levels:
            raise _Bad("products.levels", "must name at least one of 'item', 'case', 'pallet' (or be left out: item)")
        for i, lv in enumerate(levels):
            if lv not in _LEVELS:
                raise _Bad(f"products.levels[{i}]", f"must be one of 'item', 'case', 'pallet', got {_show(lv)}")
        _unique(levels, "products.levels")
    return Products(skus=tuple(skus), levels=tuple(levels))


def _parse_regions(t: _Table, key: str) -> tuple[str, ...]:
    out = []
    for i, p in enumerate(_array(t, key)):
        if not isinstance(p, str) or not p.isascii() or not p.isdigit() or len(p) not in (2, 4, 6) \
                or p.startswith("0"):
            raise _Bad(f"{key}[{i}]", "must be an adcode prefix string of 2, 4 or 6 digits "
                                      f"(\"44\" Guangdong, \"4401\" Guangzhou, \"440106\" Tianhe), got {_show(p)}")
        out.append(p)
    _unique(out, key)
    return tuple(out)


def _parse_slots(t: _Table) -> tuple[Slot, ...]:
    slots: list[Slot] = []
    for i, raw in enumerate(_array(t, "slots")):
        path = f"slots[{i}]"
        st = _Table(raw, path, _SLOT_KEYS)
        start = _hhmm(_require(st, "start", "a local time \"HH:MM\""), st.at("start"))
        end = _hhmm(_require(st, "end", "a local time \"HH:MM\" (exclusive)"), st.at("end"))
        if start == end:
            raise _Bad(st.at("end"), f"equals start ({start:%H:%M}): a slot must not be empty "
                                     "(for the whole day set the base odds instead)")
        slot = Slot(start, end, _odds(st))
        for j, other in enumerate(slots):
            if any(a < d and c < b for a, b in _minutes(slot) for c, d in _minutes(other)):
                raise _Bad(path, f"{_fmt_slot(slot)} overlaps slots[{j}] {_fmt_slot(other)}")
        slots.append(slot)
    return tuple(slots)


def _parse_prizes(t: _Table) -> tuple[Prize, ...]:
    raw = _array(t, "prizes")
    if not raw:
        raise _Bad("prizes", "required: at least one prize")
    prizes: list[Prize] = []
    for i, item in enumerate(raw):
        prizes.append(_parse_prize(_Table(item, f"prizes[{i}]", _PRIZE_KEYS)))
    _unique([p.id for p in prizes], "prizes", "id")
    return tuple(prizes)


def _not_for(pt: _Table, key: str, why: str) -> None:
    value = pt.get(key)
    if value is not None and value != 0:
        raise _Bad(pt.at(key), why)


def _parse_prize(pt: _Table) -> Prize:
    pid = _ident(_require(pt, "id", "the prize id"), pt.at("id"))
    kind = _choice(pt, "kind", _KINDS)
    weight = pt.get("weight")
    weight = 1 if weight is None else _int(weight, pt.at("weight"), 1, unit="relative chance among the prizes")
    amount = points = 0
    coupon = None
    if kind == "cash":
        amount = _int(_require(pt, "amount_fen", "the red packet amount in fen (100 = 1 CNY)"), pt.at("amount_fen"),
                      CASH_MIN_FEN, CASH_MAX_FEN, "fen: 1 to 200 CNY, the WeChat red packet limits")
    else:
        _not_for(pt, "amount_fen", f"only cash prizes have an amount (this prize is {kind}); leave it out")
    if kind == "points":
        points = _int(_require(pt, "points", "the points awarded"), pt.at("points"), 1)
    else:
        _not_for(pt, "points", f"only points prizes have points (this prize is {kind}); leave it out")
    if kind == "coupon":
        coupon = _parse_coupon(_Table(_require(pt, "coupon", "a [coupon] table"), pt.at("coupon"), _COUPON_KEYS))
    elif pt.get("coupon") is not None:
        raise _Bad(pt.at("coupon"), f"only coupon prizes have a coupon (this prize is {kind}); leave it out")
    budget_count = _opt_int(pt, "budget_count", 0, "the most awards of this prize")
    budget_amount = None
    if pt.get("budget_amount_fen") is not None:
        if kind != "cash":
            raise _Bad(pt.at("budget_amount_fen"), f"only cash prizes have an amount budget (this prize is {kind}); "
                                                   "use budget_count")
        budget_amount = _int(pt.get("budget_amount_fen"), pt.at("budget_amount_fen"), 0, unit="fen")
    return Prize(id=pid, kind=kind, weight=weight, amount_fen=amount, points=points,  # type: ignore[arg-type]
                 coupon=coupon, budget_count=budget_count, budget_amount_fen=budget_amount)


def _parse_coupon(ct: _Table) -> Coupon:
    ctype = _choice(ct, "type", _COUPON_TYPES)
    threshold = ct.get("threshold_fen")
    threshold = 0 if threshold is None else _int(threshold, ct.at("threshold_fen"), 0,
                                                 unit="fen: the least spend; 0 = no threshold")
    value = percent = gift = None
    if ctype == "full_reduction":
        value = _int(_require(ct, "value_fen", "the fen taken off"), ct.at("value_fen"), 1, unit="fen")
        if threshold and value > threshold:
            raise _Bad(ct.at("value_fen"), f"{value} fen off is more than the threshold of {threshold} fen")
    elif ct.get("value_fen") is not None:
        raise _Bad(ct.at("value_fen"), f"only full_reduction coupons have value_fen (this one is {ctype})")
    if ctype == "discount":
        percent = _int(_require(ct, "percent_off", "the discount, 1 to 99 percent"), ct.at("percent_off"),
                       1, 99, "percent")
    elif ct.get("percent_off") is not None:
        raise _Bad(ct.at("percent_off"), f"only discount coupons have percent_off (this one is {ctype})")
    if ctype == "gift":
        gift = _label(_require(ct, "gift_sku", "the SKU given"), ct.at("gift_sku"))
    elif ct.get("gift_sku") is not None:
        raise _Bad(ct.at("gift_sku"), f"only gift coupons have gift_sku (this one is {ctype})")
    valid_days = _int(_require(ct, "valid_days", "how many days the coupon stays valid"), ct.at("valid_days"), 1,
                      unit="days")
    return Coupon(type=ctype, valid_days=valid_days, threshold_fen=threshold,  # type: ignore[arg-type]
                  value_fen=value, percent_off=percent, gift_sku=gift)


def _parse_caps(t: _Table, cash_limits: bool, has_cash: bool) -> Caps:
    ct = _sub(t, "caps", _CAPS_KEYS)
    values: dict[str, int | None] = {}
    for key in _CAPS_KEYS:
        amount = key.endswith("_fen")
        if amount and not has_cash and ct.get(key) is not None:
            raise _Bad(ct.at(key), "the campaign has no cash prize: amount caps count cash only")
        values[key] = _opt_int(ct, key, 1, "fen" if amount else "")
    if cash_limits:
        for key, limit, what in (("per_user_daily_count", WECHAT_DAILY_COUNT, "red packets"),
                                 ("per_user_daily_amount_fen", WECHAT_DAILY_AMOUNT_FEN, "fen (1,000 CNY)")):
            value = values[key]
            if value is None:
                values[key] = limit
            elif value > limit:
                raise _Bad(ct.at(key), f"at most {limit} {what} per user per day for a consumer campaign with cash "
                                       f"prizes (the WeChat red packet limit), got {value}")
    return Caps(**values)


def _parse_tiers(t: _Table, actor: str) -> tuple[Tier, ...]:
    raw = _array(t, "store_tiers")
    if raw and actor != "store":
        raise _Bad("store_tiers", f"only store campaigns have tiers (actor is {actor!r})")
    tiers: list[Tier] = []
    for i, item in enumerate(raw):
        tt = _Table(item, f"store_tiers[{i}]", _TIER_KEYS)
        tier = Tier(name=_label(_require(tt, "name", "the tier name"), tt.at("name")),
                    min_points=_int(_require(tt, "min_points", "the least points"), tt.at("min_points"), 0,
                                    unit="points"),
                    multiplier_pct=_int(_require(tt, "multiplier_pct", "100 = x1"), tt.at("multiplier_pct"), 100,
                                        1000, "percent: 100 = x1, 1000 = x10"))
        if i == 0 and tier.min_points != 0:
            raise _Bad(tt.at("min_points"), f"the first tier must start at 0 points, got {tier.min_points}")
        if tiers and tier.min_points <= tiers[-1].min_points:
            raise _Bad(tt.at("min_points"), f"tiers must be sorted by min_points, ascending: {tier.min_points} "
                                            f"<= {tiers[-1].min_points} of store_tiers[{i - 1}]")
        tiers.append(tier)
    _unique([x.name for x in tiers], "store_tiers", "name")
    return tuple(tiers)
