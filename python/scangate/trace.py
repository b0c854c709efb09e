"""Trace: bottle -> case -> pallet linkage, dealers and shipments; the rules.

What may be traced: text fields (``text_problem``, ``check_text``: one check for
every id, name and EPCIS string), dealer ids and territories, shipment times
(``parse_time_ms``, ``check_time_ms``), the level rule (``level_allows``: an item
goes into a case or a pallet, a case onto a pallet).

Where it is kept: ``scangate.state.trace`` (the LMDB store: ``TraceStore``, its
records ``Shipment`` and ``TraceChain``, the write batches of an upload). Its
public names are re-exported here, so ``from scangate.trace import TraceStore``
keeps working; this module opens no transaction itself.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable

import numpy as np

from .errors import InvalidArgument, quote
from .results import Dealer
from .state.trace import (
    ADD, DELETE, MAX_TIME_MS, MIN_TIME_MS, SERIAL_BYTES, SLOTS, SMALL_BATCH, Shipment, TraceChain, TraceStore, _keys7,
    _split, check_time_ms,
)

__all__ = [
    "ADD",
    "DELETE",
    "MAX_DEALER_ID",
    "MAX_NAME",
    "MAX_SHIPMENT_ID",
    "MAX_TIME_MS",
    "MIN_TIME_MS",
    "SERIAL_BYTES",
    "SLOTS",
    "SMALL_BATCH",
    "Dealer",
    "Shipment",
    "TraceChain",
    "TraceStore",
    "_keys7",        # bench/trace.py builds its raw-LMDB baseline with the store's own key encoding
    "_split",
    "check_dealer_id",
    "check_territory",
    "check_text",
    "check_time_ms",
    "level_allows",
    "parse_time_ms",
    "quote",
    "text_problem",
]


MAX_DEALER_ID = 128
MAX_NAME = 200          # a dealer's display name
MAX_SHIPMENT_ID = 128

# The times a shipment may carry (MIN_TIME_MS, MAX_TIME_MS, check_time_ms) are
# defined in scangate.state.trace, beside the log key they keep in range: the
# store refuses the others itself.
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)
# a time's second field of 60 (a leap second), before the fraction and offset
_LEAP_SECOND = re.compile(r"[Tt ]\d{2}:?\d{2}:?60(?:[.,]\d+)?(?:[Zz]|[+-]\d{2}(?::?\d{2})?)?\Z")


def text_problem(value: object, max_len: int, *, one_line: bool = True) -> str | None:
    """Why ``value`` is not acceptable text, or None: it must be a str of at most
    ``max_len`` characters, with no lone surrogate (not Unicode: it cannot be
    stored as UTF-8) and no NUL or other control character (C0, DEL, C1; with
    ``one_line=False`` tab, LF and CR are allowed). The one check every text field
    (ids, names, territories, EPCIS strings) goes through."""
    if not isinstance(value, str):
        return f"must be text, not {type(value).__name__}"
    if len(value) > max_len:
        return f"{len(value)} characters, at most {max_len}"
    if not value.isprintable():     # fast path: printable text has none of the below
        for c in value:
            o = ord(c)
            if 0xD800 <= o <= 0xDFFF:
                return f"contains a lone surrogate (U+{o:04X}): not valid Unicode text"
            if o == 0:
                return "contains a NUL character"
            if (o < 32 or 127 <= o < 160) and not (not one_line and c in "\t\n\r"):
                return f"contains a control character (U+{o:04X})"
    return None


def check_text(value: object, field: str, max_len: int, *, one_line: bool = True) -> str:
    """``value`` when ``text_problem`` finds nothing, else InvalidArgument naming ``field``."""
    why = text_problem(value, max_len, one_line=one_line)
    if why is not None:
        raise InvalidArgument(f"{field}: {why}")
    return value  # type: ignore[return-value]


def parse_time_ms(value: str, field: str) -> int:
    """An ISO 8601 / RFC 3339 date-time with a time zone offset (``Z``/``z`` or
    ``+08:00``; ``T`` or ``t``) as milliseconds since 1970 UTC, checked by
    check_time_ms; else InvalidArgument naming ``field``. A leap second (second 60)
    is refused, not folded into :59: a time that cannot be told apart from the
    second before it must not order shipments."""
    text = check_text(value, field, 64).strip()
    if _LEAP_SECOND.search(text):
        raise InvalidArgument(f"{field}: {quote(text)} has second 60 (a leap second), which is not accepted; "
                              "give :59 or the next second")
    if text[-1:] == "z":            # RFC 3339 allows lower-case z and t (section 5.6 note)
        text = text[:-1] + "Z"
    if len(text) > 10 and text[10] == "t":
        text = text[:10] + "T" + text[11:]
    try:
        stamp = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidArgument(f"{field}: {quote(text)} is not an ISO 8601 time") from None
    if stamp.tzinfo is None:
        raise InvalidArgument(f"{field}: {quote(text)} has no time zone offset (add Z or +08:00)")
    ms = (stamp - _EPOCH) // dt.timedelta(milliseconds=1)
    if not MIN_TIME_MS <= ms < MAX_TIME_MS:
        raise InvalidArgument(f"{field}: {quote(text)} is outside 2000-01-01 .. 2100-01-01 UTC")
    return ms


def check_dealer_id(dealer_id: str) -> str:
    """A dealer id: 1 to 128 characters without control characters or lone
    surrogates (it is an LMDB key, and may be an EPCIS party or location URI)."""
    if not isinstance(dealer_id, str):
        raise InvalidArgument(f"dealer_id: must be text, not {type(dealer_id).__name__}")
    dealer_id = dealer_id.strip()
    if not dealer_id:
        raise InvalidArgument("dealer_id: must not be empty")
    return check_text(dealer_id, "dealer_id", MAX_DEALER_ID)


def check_territory(territory: Iterable[str]) -> tuple[str, ...]:
    out = []
    for p in territory:
        p = check_text(p if isinstance(p, str) else str(p), "territory", 64).strip()
        if not p.isascii() or not p.isdigit() or len(p) not in (2, 4, 6):
            raise InvalidArgument(f"territory: {quote(p)} is not a 2, 4 or 6 digit adcode prefix")
        out.append(p)
    if not out:
        raise InvalidArgument("territory: must name at least one adcode prefix")
    return tuple(sorted(set(out)))


def level_allows(child: np.ndarray, parent: np.ndarray) -> np.ndarray:
    """A level goes only into a higher level: item -> case|pallet, case -> pallet
    (Level values order item 1 < case 2 < pallet 3)."""
    return np.asarray(child, np.uint8) < np.asarray(parent, np.uint8)

