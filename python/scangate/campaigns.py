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

This is the public face; the code lives in three private modules, split by what
they hold so that each stays readable: ``_campaign_model`` (the dataclasses, their
questions and ``to_json``), ``_campaign_fields`` (readers of one field each, whose
errors name the field: numbers, labels, odds, local times) and ``_campaign_loader``
(TOML/JSON in, each section validated, a Campaign out). Import from here.
"""

from __future__ import annotations

from ._campaign_loader import campaign_from_json, load_campaign, parse_percent_ppm
from ._campaign_model import (
    CASH_MAX_FEN,
    CASH_MIN_FEN,
    DEFAULT_TIMEZONE,
    PPM,
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

# the literal types of the model's fields: public names here before the split, so
# re-exported (explicitly: mypy runs with no_implicit_reexport), though not in __all__
from ._campaign_model import Actor as Actor
from ._campaign_model import CouponType as CouponType
from ._campaign_model import PrizeKind as PrizeKind
from ._campaign_model import Status as Status

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
