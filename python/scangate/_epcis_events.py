"""The mapping half of :func:`scangate.epcis.parse_document`: the events of a
parsed EPCIS 2.0 document to the operations scangate applies.

- ``AggregationEvent`` (ADD / OBSERVE / DELETE) -> :class:`AggregationOp`
  (bottle -> case -> pallet links);
- ``ObjectEvent`` whose bizStep is ``shipping`` -> :class:`ShipmentOp`;
- every other event is listed in ``skipped``.

Every problem found (a missing field, a foreign identifier, an unsupported
feature) is collected with its JSON path, none stops the walk, and an operation
is built whenever its event is structurally complete, so the report shows what
the document asked for. Public through :mod:`scangate.epcis`. No I/O.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from ._epcis_identifiers import _describe_foreign, classify_epc
from ._epcis_read import Problem, _json_kind, _Path, _render, _show
from .errors import InvalidArgument
from .trace import parse_time_ms, quote, text_problem

__all__ = ["MAX_STRING", "AggregationOp", "ParsedDocument", "ShipmentOp"]


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


@dataclass
class ParsedDocument:
    ops: list[AggregationOp | ShipmentOp] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)  # any -> apply nothing
    skipped: list[Problem] = field(default_factory=list)  # informational

    @property
    def ok(self) -> bool:
        """True when the document may be applied (no problems)."""
        return not self.problems


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


# --------------------------------------------------------------------------- events


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
