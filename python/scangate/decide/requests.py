"""Scan requests: their bounds, their identity, and the refusals of one request.

One validation per request: ``scan_problem`` is the only check of a scan's
fields (the server's workers ask it, ``decide_scans`` asks it for library
callers); the fingerprint tells a retry from a reused request id.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import math
import numbers
from collections.abc import Sequence

import xxhash

from ..decision import ScanRequest
from ..errors import InvalidArgument, quote
from ..verdict import Scan
from ..trace import text_problem as _text_problem   # the one text check: no NUL, controls, lone surrogates
from .places import is_district, not_a_district

__all__ = ["check_scans", "scan_fields_problem", "MAX_ACTOR_BYTES", "MAX_CODE_CHARS", "MAX_ID_BYTES", "MAX_ID_CHARS", "MAX_TAGS", "MAX_TAG_CHARS", "MAX_TIME_MS",
           "MIN_TIME_MS", "RequestIdReused", "RequestRefused", "ScanTimeRefused", "check_requests",
           "FINGERPRINT_VERSION", "fingerprint", "fingerprint_v1", "fingerprints", "plainly_valid",
           "same_request", "scan_problem"]

_UTC_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
# epoch ms that datetime can hold (years 1 to 9999); outside, a decision raises as
# datetime.fromtimestamp does
MIN_DATETIME_MS = (dt.datetime(1, 1, 2, tzinfo=dt.UTC) - _UTC_EPOCH) // dt.timedelta(milliseconds=1)
MAX_DATETIME_MS = (dt.datetime(9999, 12, 30, tzinfo=dt.UTC) - _UTC_EPOCH) // dt.timedelta(milliseconds=1)
_blake2b = hashlib.blake2b
_xxh3_128 = xxhash.xxh3_128_digest


class RequestRefused(InvalidArgument):
    """One request of a batch refused, nothing of it written: ``decide_scans``
    puts it in the request's place in its result (not raised; the rest of the
    batch is decided as usual) and the server answers that call with
    INVALID_ARGUMENT naming ``field``."""

    def __init__(self, field: str, why: str, name: str = ""):
        super().__init__(f"{field}: {why}")     # "field: why", which the server makes a field violation
        self.field, self.why, self.name = field, why, name or field

    def at(self, prefix: str) -> RequestRefused:
        """The same refusal inside a batch: ``at("scans[3].")`` names ``scans[3].time_ms``."""
        return type(self)(prefix + self.name, self.why, self.name)

    def __reduce__(self) -> tuple[type[RequestRefused], tuple[str, str, str]]:
        return type(self), (self.field, self.why, self.name)   # args is the message: rebuild from the fields


class RequestIdReused(RequestRefused):
    """A request id already used for a request with other content."""

    def __init__(self, request_id: str, field: str = "request_id"):
        super().__init__(field, f"{quote(request_id)} was already used for another request (another code, actor, "
                                "actor type, region or coordinates); a retry must repeat its request", "request_id")
        self.request_id = request_id

    def at(self, prefix: str) -> RequestIdReused:
        return RequestIdReused(self.request_id, prefix + self.name)

    def __reduce__(self) -> tuple[type[RequestIdReused], tuple[str, str]]:  # type: ignore[override]
        return RequestIdReused, (self.request_id, self.field)


class ScanTimeRefused(RequestRefused):
    """A client's scan time outside the window the deciding clock accepts
    (``scangate.clock.ScanTimePolicy``)."""

    def __init__(self, field: str = "time_ms", why: str = "", name: str = "time_ms"):
        super().__init__(field, why, name)


# ---------------------------------------------------------------------- campaigns


def _encoding(r: ScanRequest) -> bytes:
    """What a fingerprint covers, encoded: actor type, region, latitude, longitude
    (Python reprs; coordinates as floats, so 30 and 30.0 are one place), the
    code's length, each followed by NUL, then the code and the actor: only the two
    free strings come last, and the code's length fixes where the actor begins,
    so no two requests share an encoding."""
    lat, lon = r.lat, r.lon
    lat_text = repr(lat if lat is None else float(lat))
    lon_text = repr(lon if lon is None else float(lon))
    return (f"{r.actor_type}\0{r.region}\0{lat_text}\0{lon_text}\0{len(r.code)}\0{r.code}{r.actor}"
            .encode("utf-8", "surrogatepass"))


FINGERPRINT_VERSION = b"\x02"


def fingerprint(r: ScanRequest) -> bytes:
    """What makes a scan this scan: code, actor, actor type, region and
    coordinates (``_encoding``), as 17 bytes: FINGERPRINT_VERSION, then XXH3-128
    of the encoding. A retry must repeat them; a request id reused for anything
    else is refused (RequestIdReused). Not in it: the request id and client (the
    record's key already); ``time_ms``, because a retry may be stamped anew (a
    request without one is stamped by the server at each try, and apps that stamp
    the send time do the same), and the same code scanned by the same actor at the
    same place is that scan; and ``actor_tags``, which describe the actor rather
    than the scan and may be recomputed by a retrying app.

    Why a fast hash rather than a cryptographic one: the fingerprint only tells a
    retry from an id reused by mistake, where 128 bits make an accidental match
    out of reach. A match made on purpose gains nothing: to aim at a request's
    fingerprint one must know everything it covers, and whoever knows that can
    send the request itself and get its stored decision as a retry does (request
    ids are scoped to their client, so only that client's requests are in reach).
    Version 1 (schema 2's records, 16 bytes without a version byte) was the
    first 16 bytes of BLAKE2b-512 of the same encoding: ``same_request`` still
    checks it.
    ``fingerprints`` is the same for a batch, faster."""
    return FINGERPRINT_VERSION + _xxh3_128(_encoding(r))


def fingerprint_v1(r: ScanRequest) -> bytes:
    """The version 1 fingerprint, which schema 2 stored: the first 16 bytes of
    BLAKE2b-512 of the encoding."""
    return _blake2b(_encoding(r)).digest()[:16]


def fingerprints(requests: Sequence[ScanRequest]) -> list[bytes]:
    """``fingerprint`` of each request: written out for the usual request, without
    coordinates (this runs for every request)."""
    version, xxh3 = FINGERPRINT_VERSION, _xxh3_128
    return [version + xxh3(f"{r.actor_type}\0{r.region}\0None\0None\0{len(r.code)}\0{r.code}{r.actor}"
                           .encode("utf-8", "surrogatepass"))
            if r.lat is None and r.lon is None else fingerprint(r) for r in requests]


def same_request(stored: bytes | None, r: ScanRequest, computed: bytes) -> bool:
    """Whether ``r`` repeats the request whose record stored fingerprint
    ``stored`` (None: a record written before fingerprints, which any request
    matches); ``computed``: ``fingerprint(r)``."""
    if stored is None or stored == computed:
        return True
    return len(stored) == 16 and stored == fingerprint_v1(r)     # version 1, stored by schema 2





# Bounds of a scan's fields (the server's workers check the same ones, from here).
# Every value outside them is refused before anything is decided: a value that
# cannot be decided must fail its own request, never the batch whose transaction
# it would share. time_ms: epoch milliseconds that any time zone's datetime can
# hold (up to 9999-12-30), far below 2**53, so a double (JSON) holds them exactly;
# which window of them a client may send is a policy apart.
MAX_ID_CHARS = 128         # request_id, actor
MAX_ID_BYTES = 511         # request_id's UTF-8 without a client: its record's LMDB key (a client's
                           # ids are hashed when too long, scangate.state.layout.request_key)
# an actor's UTF-8 is part of LMDB keys (its counters, day counters, points
# account, month and history: scangate.state.layout), and LMDB keys are at most
# 511 bytes: the longest, d/<64-character campaign id>/<actor>/<YYYY-MM-DD>, has
# 78 bytes besides the actor (128 characters of 4 bytes each would not fit)
MAX_ACTOR_BYTES = 433
MAX_CODE_CHARS = 512
MAX_TAGS = 32
MAX_TAG_CHARS = 128
MIN_TIME_MS = 1
MAX_TIME_MS = MAX_DATETIME_MS


def scan_problem(r: ScanRequest) -> tuple[str, str] | None:
    """The first field of ``r`` outside the bounds above, and why; None when it
    can be decided."""
    rid = r.request_id
    why = _text_problem(rid, MAX_ID_CHARS)
    if why is None and not rid:
        why = f"1 to {MAX_ID_CHARS} characters"
    if why is None and not r.client and not rid.isascii() and len(rid.encode()) > MAX_ID_BYTES:
        why = f"at most {MAX_ID_BYTES} bytes of UTF-8"
    if why is not None:
        return "request_id", why
    problem = scan_fields_problem(r)
    if problem is not None:
        return problem
    tags = r.actor_tags
    if not isinstance(tags, (tuple, list)) or len(tags) > MAX_TAGS:
        return "actor_tags", f"a sequence of at most {MAX_TAGS} tags"
    for j, tag in enumerate(tags):
        why = _text_problem(tag, MAX_TAG_CHARS)
        if why is not None:
            return f"actor_tags[{j}]", why
    if r.client:
        why = _text_problem(r.client, len(r.client))   # a token's name: any length its file holds
        if why is not None:
            return "client", why
    return None


def check_scans(scans: Sequence[Scan]) -> None:
    """InvalidArgument naming the first scan and field outside the bounds
    (``scans[i].field``): scangate.verdicts.decide_verdicts' one validation."""
    for i, s in enumerate(scans):
        problem = scan_fields_problem(s)
        if problem is not None:
            raise InvalidArgument(f"scans[{i}].{problem[0]}: {problem[1]}")


def scan_fields_problem(r: ScanRequest | Scan) -> tuple[str, str] | None:
    """``scan_problem`` for the fields a request shares with a ``Scan``: code,
    actor, actor type, region, coordinates, time."""
    why = _text_problem(r.code, MAX_CODE_CHARS)
    if why is None and not r.code:
        why = f"1 to {MAX_CODE_CHARS} characters"
    if why is not None:
        return "code", why
    why = _text_problem(r.actor, MAX_ID_CHARS)
    if why is None and not r.actor:
        why = f"1 to {MAX_ID_CHARS} characters"
    if why is None and len(r.actor) > MAX_ACTOR_BYTES // 4 and len(r.actor.encode()) > MAX_ACTOR_BYTES:
        why = f"at most {MAX_ACTOR_BYTES} bytes of UTF-8"
    if why is not None:
        return "actor", why
    if r.actor_type not in ("consumer", "store"):
        return "actor_type", f"{quote(r.actor_type)} is not consumer or store"
    region = r.region
    if region is not None and (isinstance(region, bool) or not isinstance(region, numbers.Integral)
                               or not 100000 <= region <= 999999):
        return "region", f"{quote(region)} is not a 6-digit adcode"
    if region is not None and not is_district(int(region)):
        # whatever the code's state: a made-up adcode is bad input, never evidence of diversion
        return "region", not_a_district(int(region))
    if (r.lat is None) != (r.lon is None):
        return "lat", "lat and lon go together"
    if r.lat is not None:
        for name, v, most in (("lat", r.lat, 90), ("lon", r.lon, 180)):
            if isinstance(v, bool) or not isinstance(v, numbers.Real) or not math.isfinite(v):
                return name, f"{quote(v)} is not a finite number"
            if not -most <= v <= most:
                return name, f"{quote(v)} is outside -{most}..{most}"
    t = r.time_ms
    if t is not None and (isinstance(t, bool) or not isinstance(t, numbers.Integral)
                          or not MIN_TIME_MS <= t <= MAX_TIME_MS):
        return "time_ms", (f"{quote(t)} is not epoch milliseconds from {MIN_TIME_MS} to {MAX_TIME_MS} "
                           "(9999-12-30), or None for now")
    return None


# an actor of at most this many characters fits MAX_ACTOR_BYTES whatever they are
_ACTOR_FITS = min(MAX_ID_CHARS, MAX_ACTOR_BYTES // 4)


def plainly_valid(r: ScanRequest) -> bool:
    """True only for a request that ``scan_problem`` accepts (never for one it
    refuses): the usual request, printable ASCII id, no coordinates, tags or
    client, in one expression. Anything else, valid or not, gets False and goes
    through ``scan_problem``, the one definition of the bounds
    (tests/test_decide_requests.py holds the two to that)."""
    rid, code, actor, region, t = r.request_id, r.code, r.actor, r.region, r.time_ms
    return (type(rid) is str and type(code) is str and type(actor) is str
            and 0 < len(rid) <= MAX_ID_CHARS and 0 < len(code) <= MAX_CODE_CHARS
            and 0 < len(actor) <= _ACTOR_FITS
            and rid.isascii() and rid.isprintable() and code.isprintable() and actor.isprintable()
            and (r.actor_type == "consumer" or r.actor_type == "store")
            and (region is None or (type(region) is int and 100000 <= region <= 999999 and is_district(region)))
            and r.lat is None and r.lon is None
            and (t is None or (type(t) is int and MIN_TIME_MS <= t <= MAX_TIME_MS))
            and r.actor_tags == () and not r.client)


def check_requests(requests: Sequence[ScanRequest]) -> None:
    """InvalidArgument naming the first request and field outside the bounds."""
    for i, r in enumerate(requests):
        if plainly_valid(r):
            continue
        problem = scan_problem(r)
        if problem is not None:
            raise InvalidArgument(f"requests[{i}].{problem[0]}: {problem[1]}")

