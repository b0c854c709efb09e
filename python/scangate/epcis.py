"""GS1 EPCIS 2.0 JSON / JSON-LD documents -> aggregation and shipment operations.

One document in, a :class:`ParsedDocument` out: the operations scangate can apply
(bottle -> case -> pallet aggregation, shipments) plus a precise report of every
problem, each with the JSON path it concerns. Nothing here raises on bad input and
nothing stops at the first problem: the caller gets *all* of them and applies nothing
when there is any.

What is used:

- ``AggregationEvent`` (ADD / OBSERVE / DELETE) -> :class:`AggregationOp`;
- ``ObjectEvent`` whose bizStep is ``shipping`` -> :class:`ShipmentOp`.

Every other event (other event types, ObjectEvents that are not shipping) is listed in
``skipped``: informational, it does not make the document fail.

Identifiers are only *classified* here (:func:`classify_epc`): a code text in URL or
URN form is accepted as a candidate; its authenticity is the caller's business
(keys and ledger). GS1 identifiers (EPC URNs, GS1 Digital Link URIs) and anything
else are problems: they are not codes issued by this engine.

An operation is built whenever its event is structurally complete, even when some of
its identifiers are foreign (so the report can show what the document asked for);
``problems`` non-empty means the document as a whole must not be applied.

No I/O except :func:`load_schema`, which reads the schema file it is given.
"""
from __future__ import annotations

import json
import logging
import os
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any, Union
from urllib.parse import unquote, urlsplit

from .errors import InvalidArgument
from .trace import parse_time_ms, quote, text_problem

if TYPE_CHECKING:  # pragma: no cover
    from jsonschema.exceptions import ValidationError
    from jsonschema.protocols import Validator

log = logging.getLogger(__name__)

__all__ = [
    "AggregationOp",
    "ShipmentOp",
    "Problem",
    "ParsedDocument",
    "parse_document",
    "load_schema",
    "schema_problems",
    "classify_epc",
]


# --------------------------------------------------------------------------- results


@dataclass(frozen=True)
class AggregationOp:
    event_index: int  # index in epcisBody.eventList
    action: str  # "ADD" | "OBSERVE" | "DELETE"
    parent: str | None  # parentID as given (None if absent)
    children: tuple[str, ...]  # childEPCs as given (empty: a DELETE unpacks all)
    event_time: str
    biz_step: str | None  # short name, e.g. "packing"


@dataclass(frozen=True)
class ShipmentOp:
    event_index: int
    units: tuple[str, ...]  # epcList of a shipping ObjectEvent, as given
    destination: str  # from destinationList: owning_party > possessing_party > location
    destination_type: str  # owning_party | possessing_party | location
    event_time: str


@dataclass(frozen=True)
class Problem:
    path: str  # JSON path, e.g. "epcisBody.eventList[2].childEPCs[1]"; "$" = the document
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


@dataclass
class ParsedDocument:
    ops: list[AggregationOp | ShipmentOp] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)  # any -> apply nothing
    skipped: list[Problem] = field(default_factory=list)  # informational

    @property
    def ok(self) -> bool:
        """True when the document may be applied (no problems)."""
        return not self.problems


# --------------------------------------------------------------------------- paths

_Path = tuple[Union[str, int], ...]
_PLAIN_KEY = re.compile(r"[A-Za-z_@$][A-Za-z0-9_@$-]*")


def _render(path: _Path | Any) -> str:
    """("epcisBody", "eventList", 2, "childEPCs", 1) -> 'epcisBody.eventList[2].childEPCs[1]'."""
    out: list[str] = []
    for part in path:
        if isinstance(part, int):
            out.append(f"[{part}]")
        elif _PLAIN_KEY.fullmatch(part):
            out.append(f".{part}" if out else part)
        else:
            out.append(f"[{json.dumps(part)}]")
    return "".join(out) or "$"


def _show(value: Any, limit: int = 120) -> str:
    """A value for a message: strings as they are, other things as JSON; cut when long."""
    text = value if isinstance(value, str) else json.dumps(value, default=repr)
    text = text if len(text) <= limit else text[: limit - 3] + "..."
    # a lone surrogate (from a JSON \\udc80 escape) as its escape: messages go to
    # UTF-8 output, which cannot carry one
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _json_kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


# --------------------------------------------------------------------------- identifiers

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


# --------------------------------------------------------------------------- vocabulary

_BIZSTEP_PREFIXES = (
    "urn:epcglobal:cbv:bizstep:",
    "https://ref.gs1.org/cbv/BizStep-",
    "http://ref.gs1.org/cbv/BizStep-",
)
_SDT_PREFIXES = (
    "urn:epcglobal:cbv:sdt:",
    "https://ref.gs1.org/cbv/SDT-",
    "http://ref.gs1.org/cbv/SDT-",
)
_DESTINATION_PREFERENCE = ("owning_party", "possessing_party", "location")
_ACTIONS = ("ADD", "OBSERVE", "DELETE")
_TIME = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(?:\.\d+)?(?:([Zz])|([+-])(\d{2}):(\d{2}))"
)


def _short_name(value: str, prefixes: tuple[str, ...]) -> str:
    for prefix in prefixes:
        if value.lower().startswith(prefix.lower()):
            return value[len(prefix):]
    return value


def _time_problem(value: str) -> str | None:
    """Why ``value`` is not a usable eventTime, or None. RFC 3339's shape, lower-case
    ``t`` and ``z`` included (its section 5.6 allows them); a leap second (:60) and
    times outside 2000-01-01 .. 2100-01-01 UTC are refused (scangate.trace.parse_time_ms)."""
    if _TIME.fullmatch(value) is None:
        return (f"eventTime {_show(value, 60)!r} is not an RFC 3339 date-time "
                "with a time zone (e.g. 2024-05-01T10:00:00Z)")
    try:
        parse_time_ms(value, "eventTime")
    except InvalidArgument as exc:
        return str(exc)
    return None


# The longest string field read from a document (identifiers, destinations, types).
MAX_STRING = 4096


# --------------------------------------------------------------------------- schema


def load_schema(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a JSON schema file and check it against its own metaschema.

    Raises OSError, ValueError (not JSON, or an unsupported ``$schema``) or
    ``jsonschema.SchemaError``.
    """
    with open(path, "rb") as fh:
        schema = json.loads(fh.read().decode("utf-8-sig"))
    if not isinstance(schema, dict):
        raise ValueError(f"{os.fspath(path)}: a JSON schema must be an object")
    _validator_class(schema).check_schema(schema)
    return schema


def _validator_class(schema: dict[str, Any]) -> type[Validator]:
    """The Draft validator named by ``$schema`` (Draft 2020-12 when there is none)."""
    import jsonschema

    classes: tuple[type[Validator], ...] = (
        jsonschema.Draft202012Validator,
        jsonschema.Draft201909Validator,
        jsonschema.Draft7Validator,
        jsonschema.Draft6Validator,
        jsonschema.Draft4Validator,
        jsonschema.Draft3Validator,
    )
    declared = schema.get("$schema")
    if declared is None:
        return jsonschema.Draft202012Validator
    if not isinstance(declared, str):
        raise ValueError(f"$schema must be a string, not {_json_kind(declared)}")
    for cls in classes:
        if str(cls.META_SCHEMA["$schema"]).rstrip("#") == declared.rstrip("#"):
            return cls
    raise ValueError(f"unsupported $schema {declared!r}")


def _refuse_remote(uri: str) -> Any:
    # Validation is offline: a $ref to anything outside the schema itself (and the
    # JSON Schema metaschemas, which jsonschema bundles) cannot be resolved.
    raise LookupError(f"{uri} is not available offline")


def _schema_error_problem(error: ValidationError) -> Problem:
    path = _render(tuple(error.absolute_path))
    if error.validator in ("anyOf", "oneOf") and error.context:
        from jsonschema.exceptions import best_match

        closest = best_match(error.context)
        where = _render(tuple(closest.absolute_path))
        at = "" if where == path else f" at {where}"
        message = (f"schema: matches none of the allowed forms ({error.validator}); "
                   f"closest: {_show(closest.message, 300)}{at}")
    else:
        message = f"schema: {_show(error.message, 300)}"
    return Problem(path, message)


def schema_problems(doc: Any, schema: dict[str, Any]) -> list[Problem]:
    """Validate a parsed document against ``schema``; one Problem per error.

    Offline: a ``$ref`` outside the schema (other than the standard metaschemas) is
    reported as a Problem at ``$`` (the document then fails: it could not be checked).
    """
    from referencing import Registry
    from referencing.exceptions import Unresolvable

    cls = _validator_class(schema)
    validator = cls(schema, registry=Registry(retrieve=_refuse_remote))  # type: ignore[call-arg]  # attrs alias
    try:
        errors = list(validator.iter_errors(doc))
    except Unresolvable as exc:
        return [Problem("$", f"schema validation could not run: {exc}; the schema refers to a "
                             "resource that is not available offline (inline or bundle it)")]
    except RecursionError:
        return [Problem("$", "schema validation could not run: the document is nested too deeply")]
    # Sorted by path (a parent before its members), not in the schema's order.
    errors.sort(key=lambda e: [(0, k, "") if isinstance(k, int) else (1, 0, k) for k in e.absolute_path])
    out: list[Problem] = []
    for error in errors:
        problem = _schema_error_problem(error)
        if problem not in out:
            out.append(problem)
    return out


# --------------------------------------------------------------------------- parsing


class _Reject(ValueError):
    pass


def _reject_constant(name: str) -> Any:
    raise _Reject(f"{name} is not JSON")


def _load(data: bytes | str | dict[str, Any], problems: list[Problem]) -> tuple[bool, Any]:
    if isinstance(data, dict):
        return True, data
    if isinstance(data, (bytes, bytearray, memoryview)):
        try:
            text = bytes(data).decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            problems.append(Problem("$", f"not UTF-8 text: byte {exc.start} cannot be decoded"))
            return False, None
    elif isinstance(data, str):
        text = data
    else:
        raise TypeError(f"parse_document takes bytes, str or dict, not {type(data).__name__}")

    duplicates: list[str] = []

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        obj: dict[str, Any] = {}
        for key, value in items:
            if key in obj:
                duplicates.append(key)
            obj[key] = value
        return obj

    try:
        doc = json.loads(text, object_pairs_hook=pairs, parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        problems.append(Problem("$", f"malformed JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"))
        return False, None
    except _Reject as exc:
        problems.append(Problem("$", f"malformed JSON: {exc}"))
        return False, None
    except RecursionError:
        problems.append(Problem("$", "malformed JSON: nested too deeply"))
        return False, None
    for key in dict.fromkeys(duplicates):
        problems.append(Problem("$", f"duplicate key {key!r} in a JSON object: readers disagree "
                                     "on which value counts"))
    return True, doc


class _Parser:
    def __init__(self) -> None:
        self.result = ParsedDocument()

    # -- helpers
    def problem(self, path: _Path, message: str) -> None:
        self.result.problems.append(Problem(_render(path), message))

    def skip(self, path: _Path, message: str) -> None:
        self.result.skipped.append(Problem(_render(path), message))

    def string(self, ev: dict[str, Any], p: _Path, key: str, *, required: bool, why: str = "") -> str | None:
        """ev[key] when it is a non-empty string; a problem when it is not (or is missing and required)."""
        if key not in ev:
            if required:
                self.problem(p + (key,), f"missing {key}{why}")
            return None
        value = ev[key]
        if not isinstance(value, str):
            self.problem(p + (key,), f"{key} must be a string, not {_json_kind(value)}")
            return None
        if not value:
            self.problem(p + (key,), f"{key} must not be empty")
            return None
        bad = text_problem(value, MAX_STRING)
        if bad is not None:
            self.problem(p + (key,), f"{key} {quote(value)}: {bad}")
            return None
        return value

    def identifier(self, path: _Path, value: Any) -> str | None:
        """Check one identifier; the canonical code text (for duplicate checks) or None."""
        if not isinstance(value, str):
            self.problem(path, f"identifier must be a string, not {_json_kind(value)}")
            return None
        why = text_problem(value, MAX_STRING)
        if why is not None:
            self.problem(path, f"identifier {quote(value)}: {why}")
            return None
        kind, detail = classify_epc(value)
        if kind == "code":
            return detail
        if kind == "foreign":
            self.problem(path, f"foreign identifier {_show(value)} ({_describe_foreign(detail)}): "
                               "not a code issued by this engine")
        else:
            self.problem(path, f"unrecognised identifier {_show(value)}: {detail}")
        return None

    def identifier_list(self, ev: dict[str, Any], p: _Path, key: str,
                        seen: dict[str, _Path]) -> tuple[bool, tuple[str, ...]]:
        """(well-formed, the strings as given) for an array of identifiers."""
        value = ev[key]
        if not isinstance(value, list):
            self.problem(p + (key,), f"{key} must be an array, not {_json_kind(value)}")
            return False, ()
        items: list[str] = []
        ok = True
        for j, item in enumerate(value):
            path = p + (key, j)
            text = self.identifier(path, item)
            if isinstance(item, str):
                items.append(item)
            else:
                ok = False
            canon = text if text is not None else item if isinstance(item, str) else None
            if canon is not None:
                if canon in seen:
                    self.problem(path, f"{_show(item)} repeats {_render(seen[canon])}")
                else:
                    seen[canon] = path
        return ok, tuple(items)

    def action(self, ev: dict[str, Any], p: _Path) -> str | None:
        value = self.string(ev, p, "action", required=True)
        if value is not None and value not in _ACTIONS:
            self.problem(p + ("action",), f"action {_show(value, 60)!r} is not one of ADD, OBSERVE, DELETE")
            return None
        return value

    def event_time(self, ev: dict[str, Any], p: _Path) -> str | None:
        value = self.string(ev, p, "eventTime", required=True)
        why = None if value is None else _time_problem(value)
        if why is not None:
            self.problem(p + ("eventTime",), why)
            return None
        return value

    def biz_step(self, ev: dict[str, Any], p: _Path) -> tuple[bool, str | None]:
        if "bizStep" not in ev:
            return True, None
        value = self.string(ev, p, "bizStep", required=False)
        if value is None:
            return False, None
        return True, _short_name(value, _BIZSTEP_PREFIXES)

    def unsupported(self, ev: dict[str, Any], p: _Path, what: str) -> None:
        if ev.get("errorDeclaration") is not None:
            self.problem(p + ("errorDeclaration",), f"errorDeclaration (this {what} event declares an earlier "
                                                    "event with its eventID erroneous) is not supported: "
                                                    "only new events can be applied")

    # -- document
    def document(self, doc: Any) -> None:
        if not isinstance(doc, dict):
            self.problem((), f"the document must be a JSON object, not {_json_kind(doc)}")
            return
        dtype = doc.get("type")
        if dtype == "EPCISDocument":
            route: _Path = ("epcisBody", "eventList")
        elif dtype == "EPCISQueryDocument":
            route = ("epcisBody", "queryResults", "resultsBody", "eventList")
        else:
            self.problem(("type",), "missing type: expected EPCISDocument" if dtype is None else
                         f"type {_show(dtype, 60)!r} is not EPCISDocument or EPCISQueryDocument")
            return
        node: Any = doc
        for depth, key in enumerate(route):
            if key not in node:
                self.problem(route[: depth + 1], f"missing {key} (a {dtype} has {_render(route)})")
                return
            node = node[key]
            want = list if key == "eventList" else dict
            if not isinstance(node, want):
                self.problem(route[: depth + 1], f"{key} must be {_json_kind(want())}, not {_json_kind(node)}")
                return
        for i, ev in enumerate(node):
            self.event(i, ev, route + (i,))

    def event(self, i: int, ev: Any, p: _Path) -> None:
        if not isinstance(ev, dict):
            self.problem(p, f"an event must be a JSON object, not {_json_kind(ev)}")
            return
        etype = ev.get("type")
        if etype == "AggregationEvent":
            self.aggregation(i, ev, p)
        elif etype == "ObjectEvent":
            self.object_event(i, ev, p)
        elif not isinstance(etype, str):
            self.problem(p + ("type",), "missing event type" if etype is None else
                         f"event type must be a string, not {_json_kind(etype)}")
        else:
            self.skip(p, f"{_show(etype, 60)} not used (only AggregationEvent and shipping ObjectEvent are)")

    def aggregation(self, i: int, ev: dict[str, Any], p: _Path) -> None:
        action = self.action(ev, p)
        event_time = self.event_time(ev, p)
        step_ok, biz_step = self.biz_step(ev, p)
        ok = action is not None and event_time is not None and step_ok
        seen: dict[str, _Path] = {}

        parent: str | None = None
        if "parentID" in ev:
            value = ev["parentID"]
            canon = self.identifier(p + ("parentID",), value)
            if isinstance(value, str):
                parent = value
                seen[canon if canon is not None else value] = p + ("parentID",)
            else:
                ok = False
        elif action in ("ADD", "DELETE"):
            self.problem(p + ("parentID",), f"missing parentID: an aggregation {action} needs the "
                                            "parent (case or pallet) it applies to")
            ok = False

        children: tuple[str, ...] = ()
        list_ok = True
        if "childEPCs" in ev:
            list_ok, children = self.identifier_list(ev, p, "childEPCs", seen)
            ok = ok and list_ok
        if action == "ADD" and not children and list_ok:
            self.problem(p + ("childEPCs",), "an aggregation ADD needs at least one child in childEPCs")
            ok = False

        quantities = ev.get("childQuantityList")
        if quantities:
            n = len(quantities) if isinstance(quantities, list) else 1
            self.problem(p + ("childQuantityList",), f"childQuantityList ({n} entr{'y' if n == 1 else 'ies'}) "
                         "is not supported: every child must be a serialised code in childEPCs")
        self.unsupported(ev, p, "aggregation")

        if ok:
            assert action is not None and event_time is not None
            self.result.ops.append(AggregationOp(i, action, parent, children, event_time, biz_step))

    def object_event(self, i: int, ev: dict[str, Any], p: _Path) -> None:
        step_ok, biz_step = self.biz_step(ev, p)
        if not step_ok:
            return
        if biz_step != "shipping":
            self.skip(p, "ObjectEvent without bizStep: not a shipment" if biz_step is None else
                      f"ObjectEvent with bizStep {_show(biz_step, 60)!r}: not a shipment")
            return
        action = self.action(ev, p)
        event_time = self.event_time(ev, p)
        ok = action is not None and event_time is not None

        units: tuple[str, ...] = ()
        list_ok = True
        if "epcList" in ev:
            list_ok, units = self.identifier_list(ev, p, "epcList", {})
            ok = ok and list_ok
        quantities = ev.get("quantityList")
        if quantities:
            self.problem(p + ("quantityList",), "quantityList is not supported: every shipped unit "
                                                "must be a serialised code in epcList")
        elif not units and list_ok:
            self.problem(p + ("epcList",), "a shipping ObjectEvent needs the shipped units in epcList")
            ok = False

        chosen = self.destination(ev, p)
        self.unsupported(ev, p, "shipping")
        if ok and chosen is not None:
            assert event_time is not None
            self.result.ops.append(ShipmentOp(i, units, chosen[1], chosen[0], event_time))

    def destination(self, ev: dict[str, Any], p: _Path) -> tuple[str, str] | None:
        """(type, destination) by preference, or None (with a problem)."""
        key_path = p + ("destinationList",)
        if "destinationList" not in ev:
            self.problem(key_path, "missing destinationList: a shipping ObjectEvent must say where the "
                                   "units go (owning_party, possessing_party or location)")
            return None
        entries = ev["destinationList"]
        if not isinstance(entries, list):
            self.problem(key_path, f"destinationList must be an array, not {_json_kind(entries)}")
            return None
        found: dict[str, dict[str, _Path]] = {}
        well_formed = True
        for j, entry in enumerate(entries):
            ep = key_path + (j,)
            if not isinstance(entry, dict):
                self.problem(ep, f"a destination must be an object, not {_json_kind(entry)}")
                well_formed = False
                continue
            dtype = self.string(entry, ep, "type", required=True)
            dest = self.string(entry, ep, "destination", required=True)
            if dtype is None or dest is None:
                well_formed = False
                continue
            found.setdefault(_short_name(dtype, _SDT_PREFIXES), {}).setdefault(dest, ep)
        if not well_formed:
            return None
        for dtype in _DESTINATION_PREFERENCE:
            values = found.get(dtype)
            if not values:
                continue
            if len(values) > 1:
                where = ", ".join(f"{_show(v, 60)} at {_render(at)}" for v, at in values.items())
                self.problem(key_path, f"ambiguous destination: {len(values)} different {dtype} "
                                       f"destinations ({where})")
                return None
            return dtype, next(iter(values))
        self.problem(key_path, "no destination of type owning_party, possessing_party or location")
        return None


def parse_document(data: bytes | str | dict[str, Any], *, schema: dict[str, Any] | None = None) -> ParsedDocument:
    """Turn one EPCIS 2.0 JSON / JSON-LD document into operations and a problem report.

    ``data`` is the document's bytes (UTF-8), its text, or the already parsed object.
    With ``schema`` (e.g. from :func:`load_schema`), the document is also validated
    against it and every validation error becomes a Problem (message prefixed
    ``"schema: "``). Never raises on bad input (only on a ``data`` of the wrong
    Python type, or an unusable ``schema``).
    """
    parser = _Parser()
    loaded, doc = _load(data, parser.result.problems)
    if loaded:
        if schema is not None:
            parser.result.problems.extend(schema_problems(doc, schema))
        parser.document(doc)
    result = parser.result
    for problems in (result.problems, result.skipped):
        for k, prob in enumerate(problems):   # every message printable as UTF-8, whatever it quotes
            safe = prob.message.encode("utf-8", "backslashreplace").decode("utf-8")
            if safe != prob.message:
                problems[k] = Problem(prob.path, safe)
    log.debug("EPCIS document: %d ops, %d problems, %d skipped events",
              len(result.ops), len(result.problems), len(result.skipped))
    return result
