"""Classifying an identifier found in an EPCIS document (:func:`classify_epc`):
a candidate code of this engine (its canonical text), a GS1 identifier (EPC URN,
GS1 Digital Link URI), or neither, with the reason.

Kept apart from the mapping of events (:mod:`scangate._epcis_events`) because it
is a self-contained question about one string, with its own tables (GS1 Digital
Link application identifiers). Only the form is checked here; whether a code is
authentic is the caller's business (keys and ledger). Public through
:mod:`scangate.epcis`. No I/O.
"""
from __future__ import annotations

import re
from urllib.parse import unquote, urlsplit

from ._epcis_read import _json_kind, _show

__all__ = ["classify_epc"]


_CODE_LEN = 29
_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_CODE_CHARS = frozenset(_CROCKFORD + "OIL")  # O -> 0, I/L -> 1 (Crockford aliases)
_ALIAS = str.maketrans("OIL", "011")
_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.\-]*):")
_BAD_CHARS = re.compile(r"[\s\x00-\x1f\x7f]")

# GS1 Digital Link: primary-key application identifiers and the syntax of their value.
_AN = r"[!-~]"  # printable ASCII (the GS1 AI encodable set, loosely)
_DL_PRIMARY = {
    "01": re.compile(r"\d{8}|\d{12,14}"),  # GTIN
    "00": re.compile(r"\d{18}"),  # SSCC
    "253": re.compile(rf"\d{{13}}{_AN}{{0,17}}"),  # GDTI
    "255": re.compile(r"\d{13,25}"),  # GCN
    "401": re.compile(rf"{_AN}{{1,30}}"),  # GINC
    "402": re.compile(r"\d{17}"),  # GSIN
    "414": re.compile(r"\d{13}"),  # GLN
    "417": re.compile(r"\d{13}"),  # PGLN
    "8003": re.compile(rf"\d{{14}}{_AN}{{0,16}}"),  # GRAI
    "8004": re.compile(rf"{_AN}{{1,30}}"),  # GIAI
    "8006": re.compile(r"\d{18}"),  # ITIP
    "8010": re.compile(rf"{_AN}{{1,30}}"),  # CPID
    "8013": re.compile(rf"{_AN}{{1,25}}"),  # GMN
    "8017": re.compile(r"\d{18}"),  # GSRN-P
    "8018": re.compile(r"\d{18}"),  # GSRN
}
# Convenience alphas of early Digital Link versions.
_DL_ALPHA = {
    "gtin": "01", "sscc": "00", "gdti": "253", "gcn": "255", "ginc": "401",
    "gsin": "402", "gln": "414", "party": "417", "grai": "8003", "giai": "8004",
    "itip": "8006", "cpid": "8010", "gmn": "8013", "gsrnp": "8017", "gsrn": "8018",
    "cpv": "22", "lot": "10", "ser": "21", "glnx": "254",
}
_AI = re.compile(r"\d{2,4}")


def _code_text(candidate: str) -> str | None:
    """The canonical code text (upper case, no hyphens, aliases resolved) or None."""
    if not candidate.isascii():
        return None
    text = candidate.replace("-", "").upper()
    if len(text) != _CODE_LEN or not all(c in _CODE_CHARS for c in text):
        return None
    return text.translate(_ALIAS)


def _is_digital_link(path: str) -> bool:
    """A URL path carrying a GS1 primary key (/01/<gtin>, /00/<sscc>, ...) then AI pairs."""
    segs = [unquote(s) for s in path.split("/")[1:]]
    if segs and segs[-1] == "":
        segs.pop()
    for i in range(len(segs) - 1):
        ai = _DL_ALPHA.get(segs[i].lower(), segs[i])
        syntax = _DL_PRIMARY.get(ai)
        if syntax is None or not syntax.fullmatch(segs[i + 1]):
            continue
        rest = segs[i + 2:]
        if len(rest) % 2 == 0 and all(
            _AI.fullmatch(_DL_ALPHA.get(q.lower(), q)) and v for q, v in zip(rest[0::2], rest[1::2])
        ):
            return True
    return False


def classify_epc(uri: str) -> tuple[str, str]:
    """Classify an identifier found in an EPCIS document.

    Returns one of

    - ``("code", text)``: it can carry one of our codes; ``text`` is the canonical
      29-symbol text (upper case, hyphens removed, O/I/L aliases resolved). Accepted:
      an http(s) URL whose last path segment (query and fragment dropped first) is a
      code text, or another URI (``urn:...``) whose last ':'-separated part is one.
      Authenticity is NOT checked.
    - ``("foreign", kind)``: a GS1 identifier. ``kind`` is the EPC scheme for
      ``urn:epc:id:<scheme>:...`` (``"sgtin"``, ``"sscc"``, ``"sgln"``, ...),
      ``"class:<scheme>"`` / ``"idpat:<scheme>"`` / ``"tag:<scheme>"`` for
      ``urn:epc:class|idpat|tag:...``, ``"epc"`` / ``"epcglobal"`` for other GS1 URNs,
      and ``"gs1-digital-link"`` for GS1 Digital Link URLs (``/01/<gtin>/21/<serial>``,
      ``/00/<sscc>``, ...). A Digital Link is foreign even if its serial looks like a
      code text.
    - ``("unknown", reason)`` otherwise.
    """
    if not isinstance(uri, str):
        return ("unknown", f"not a string but {_json_kind(uri)}")
    if not uri:
        return ("unknown", "empty string")
    if _BAD_CHARS.search(uri):
        return ("unknown", "contains whitespace or control characters")
    m = _SCHEME.match(uri)
    if m is None:
        if _code_text(uri) is not None:
            return ("unknown", "a bare code text, not a URI: EPCIS identifiers are URIs "
                               "(use the URL form https://<host>/<TEXT> or urn:...:<TEXT>)")
        return ("unknown", "not a URI (no scheme)")
    scheme = m.group(1).lower()
    if scheme == "urn":
        parts = uri.split(":")
        nid = parts[1].lower() if len(parts) > 1 else ""
        if nid == "epc":
            space = parts[2].lower() if len(parts) > 2 else ""
            sub = parts[3].lower() if len(parts) > 3 else ""
            if space == "id" and sub:
                return ("foreign", sub)
            if space in ("class", "idpat", "tag") and sub:
                return ("foreign", f"{space}:{sub}")
            return ("foreign", "epc")
        if nid == "epcglobal":
            return ("foreign", "epcglobal")
    if scheme in ("http", "https"):
        try:
            parts_ = urlsplit(uri)
        except ValueError as exc:
            return ("unknown", f"malformed URL ({exc})")
        if not parts_.netloc:
            return ("unknown", "URL without a host")
        if _is_digital_link(parts_.path):
            return ("foreign", "gs1-digital-link")
        last = parts_.path.rsplit("/", 1)[-1]
        text = _code_text(last)
        if text is not None:
            return ("code", text)
        return ("unknown", f"URL whose last path segment {_show(last, 60)!r} is not a "
                           f"{_CODE_LEN}-symbol code text")
    last = uri.split("#", 1)[0].split("?", 1)[0].rsplit(":", 1)[-1]
    text = _code_text(last)
    if text is not None:
        return ("code", text)
    return ("unknown", f"URI whose last ':'-separated part {_show(last, 60)!r} is not a "
                       f"{_CODE_LEN}-symbol code text, and not a GS1 identifier")


def _describe_foreign(kind: str) -> str:
    if kind == "gs1-digital-link":
        return "GS1 Digital Link URI"
    for prefix, what in (("class:", "EPC class"), ("idpat:", "EPC pattern"), ("tag:", "EPC tag URI")):
        if kind.startswith(prefix):
            return f"GS1 {what} {kind[len(prefix):]}"
    if kind in ("epc", "epcglobal"):
        return "GS1 URN"
    return f"GS1 {kind.upper()}"
