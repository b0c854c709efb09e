"""Loading a campaign: TOML or JSON text (``load_campaign``) or a parsed
document (``campaign_from_json``) validated, section by section, into the model of
:mod:`scangate._campaign_model`; and ``parse_percent_ppm``.

The first problem raises InvalidArgument whose message starts with the source name
and the exact field path (``caps.toml: prizes[2].budget_amount_fen: ...``): the
field readers of :mod:`scangate._campaign_fields` name the field, and
``campaign_from_json`` adds the source. Public through :mod:`scangate.campaigns`.
No I/O, except ``load_campaign(..., check_plugins=True)``, which imports the
plugins a campaign names.
"""

from __future__ import annotations

import json
import re
import tomllib
from collections.abc import Mapping
from datetime import UTC
from typing import Any, Literal, NoReturn
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from ._campaign_fields import (
    _array,
    _Bad,
    _bool,
    _choice,
    _hhmm,
    _ident,
    _int,
    _label,
    _local_datetime,
    _odds,
    _opt_int,
    _percent,
    _require,
    _show,
    _sub,
    _Table,
    _unique,
)
from ._campaign_model import (
    _ACTORS,
    _COUPON_TYPES,
    _KINDS,
    _LEVELS,
    _STATUSES,
    CASH_MAX_FEN,
    CASH_MIN_FEN,
    DEFAULT_TIMEZONE,
    WECHAT_DAILY_AMOUNT_FEN,
    WECHAT_DAILY_COUNT,
    Campaign,
    Caps,
    Coupon,
    Prize,
    Products,
    Slot,
    Tier,
    VerdictPolicy,
)
from .errors import InvalidArgument

__all__ = ["campaign_from_json", "load_campaign", "parse_percent_ppm"]

_DOTTED = r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*"
# "package.module:attribute", or the name of an entry point in group scangate.rules
_PLUGIN_RE = re.compile(rf"{_DOTTED}:{_DOTTED}|[A-Za-z0-9][A-Za-z0-9_.-]{{0,63}}")
_MAX_NAME = 200


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
