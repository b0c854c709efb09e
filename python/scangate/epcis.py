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

This module is the public face and the one entry point, :func:`parse_document`,
which reads, validates and maps a document; the code lives in three private
modules, split by what they hold: ``_epcis_read`` (JSON text and schema validation
to problems with their paths), ``_epcis_identifiers`` (:func:`classify_epc`) and
``_epcis_events`` (events to operations). Import from here.
"""
from __future__ import annotations

import logging
from typing import Any

from ._epcis_events import AggregationOp, ParsedDocument, ShipmentOp, _Parser
from ._epcis_identifiers import classify_epc
from ._epcis_read import Problem, _load, load_schema, schema_problems

# public here before the split (not in __all__): re-exported explicitly, as mypy
# runs with no_implicit_reexport
from ._epcis_events import MAX_STRING as MAX_STRING

# named after this module, as before the split: logging configured for
# scangate.epcis still sees parse_document's records
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
