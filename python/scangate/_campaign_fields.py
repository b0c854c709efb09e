"""Readers of one field of a campaign document each, for the loader
(:mod:`scangate._campaign_loader`): a table with its known keys, integers (fen,
ppm, counts within 64 bits), booleans, choices, labels, identifiers, arrays,
percentages and odds, local date-times and HH:MM times in the campaign time zone.

Each raises ``_Bad(path, message)`` naming the exact field path of the first
problem (``prizes[2].budget_amount_fen``); the loader turns it into the
InvalidArgument the caller sees, prefixed with the source name. They are kept
apart from the loader because none of them knows a campaign's sections: each
knows only the one value it reads.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from datetime import UTC, date, datetime, time
from typing import Any
from zoneinfo import ZoneInfo

from ._campaign_model import PPM
from .errors import quote

_INT64_MAX = 2**63 - 1             # every count and amount must fit storage
_ID_RE = re.compile(r"[A-Za-z0-9_-]{1,64}")
_PERCENT_RE = re.compile(r"(\d{1,7})(?:\.(\d+))?%")
_HHMM_RE = re.compile(r"([01]\d|2[0-3]):([0-5]\d)")
_DATE_RE = re.compile(r"\d{4}-\d{2}-\d{2}")
_MAX_LABEL = 128


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
