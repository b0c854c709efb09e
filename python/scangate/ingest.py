"""Trace inputs: linkage and shipment files, validated whole before anything is
applied. A file with one bad row applies nothing and names the row.

- Linkage CSV: ``parent,child`` rows (an optional ``parent,child`` header); every
  row is an EPCIS ADD: the child goes into the parent, leaving any earlier parent.
- Shipments CSV: ``unit,dealer_id[,shipped_at][,shipment_id]`` with a header;
  ``shipped_at`` is ISO 8601 with a time zone offset (default: now), from
  2000-01-01 to 2100-01-01 UTC, no leap second (scangate.trace.parse_time_ms).
- Every CSV: UTF-8; lines end with LF or CRLF (a bare CR is refused, naming its
  line); text fields without NUL or control characters (scangate.trace.check_text).
- Dealers CSV: ``dealer_id,name,territory`` with a header; territory is adcode
  prefixes separated by spaces (``44 3101``).
- EPCIS 2.0 JSON/JSON-LD documents (see scangate.epcis): AggregationEvents and
  shipping ObjectEvents whose identifiers are our codes.
"""

from __future__ import annotations

import csv
import io
import logging
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Protocol

import numpy as np

from . import _core
from .clock import now_ms
from .codes import verify_spans
from .datadir import DataDir, VerifyResult
from .enums import CodeStatus, Level
from .errors import BatchRejected, InvalidArgument, Problem
from .results import EpcisReport, LinkReport
from .state.trace import ADD, DELETE, LinkStep, Shipment, ShipStep, TraceStore, apply_trace_steps
from .trace import (
    MAX_NAME, MAX_SHIPMENT_ID, Dealer, check_dealer_id, check_territory, check_text, check_time_ms, level_allows,
    parse_time_ms, quote,
)

__all__ = [
    "EpcisReport", "LinkReport", "apply_epcis", "link_csv", "load_dealers_csv", "resolve_codes_or_problems",
    "ship_csv",
]

log = logging.getLogger(__name__)

MAX_PROBLEMS = 1000  # a report names at most this many rows (and counts the rest)


def _field_spans(buf: np.ndarray, starts: np.ndarray, ends: np.ndarray):  # type: ignore[no-untyped-def]
    """(comma position, comma count) per line, vectorised."""
    commas = np.flatnonzero(buf == ord(","))
    first = np.searchsorted(commas, starts)
    count = np.searchsorted(commas, ends) - first
    pos = np.where(count > 0, commas[np.minimum(first, max(len(commas) - 1, 0))] if len(commas) else -1, -1)
    return pos, count


def _status_problem(status: int) -> str:
    return {
        CodeStatus.TYPO: "code has a typo (check symbol wrong)",
        CodeStatus.MALFORMED: "not a code (malformed)",
        CodeStatus.COUNTERFEIT: "counterfeit code (does not authenticate)",
        CodeStatus.UNKNOWN_KEY: "code names an unknown key version",
        CodeStatus.NOT_ISSUED: "code was never issued",
    }.get(CodeStatus(status), f"code status {status}")


# A link upload is read, checked and applied this many bytes at a time (about
# 600,000 rows of two URL codes): its memory is bounded by this, not by the file.
LINK_CHUNK_BYTES = 32 << 20
# No row of a linkage CSV is longer (two codes and a comma, with room to spare):
# a longer line is refused by its number without being held whole.
MAX_LINK_LINE = 4096
_HEADER = b"parent,child"
_BOM = b"\xef\xbb\xbf"


class Readable(Protocol):
    """What link_csv reads a file through: ``read(size)``, b"" at its end."""

    def read(self, size: int = -1, /) -> bytes: ...


def link_csv(data: DataDir, content: bytes | Readable, source: str = "input",
             progress: Callable[[str, int], None] | None = None, *,
             chunk_bytes: int = LINK_CHUNK_BYTES) -> LinkReport:
    """Apply a ``parent,child`` CSV as one batch of ADDs, or raise BatchRejected.

    ``content``: the file's bytes or a binary file, read ``chunk_bytes`` at a
    time: each chunk is verified, checked and written into ONE write transaction
    of the trace environment, which commits after the last chunk and only if no
    row of any chunk was bad (all of the file or none of it). A child listed twice
    must name the same parent, across chunks too: each child's parent and line
    are kept in a scratch table on disk (TraceStore.upload_scratch: never synced,
    deleted after), not in memory. The transaction holds the trace
    environment's lock only: decisions commit in the main environment meanwhile.

    ``progress(stage, rows)`` is called as each chunk starts a stage ("verify",
    "apply"), with the rows read so far.
    """
    step = progress or (lambda stage, rows: None)
    table = data.store.range_table()
    trace = TraceStore(data.store)
    problems: list[Problem] = []
    overlong = [0]      # lines refused by _line_chunks
    bad_rows = rows = added = removed = parents = 0
    with trace.env.begin(write=True) as txn, trace.upload_scratch() as scratch:
        for chunk, first_line in _line_chunks(content, chunk_bytes, source, problems, overlong):
            step("verify", rows)
            parent, child, line_no, n_rows, n_bad = _link_chunk(data, table, chunk, first_line, source, problems)
            rows += n_rows
            bad_rows += n_bad + overlong[0]
            overlong[0] = 0
            # a child listed in an earlier chunk: the same parent (nothing to do) or a conflict
            keys, earlier = scratch.earlier(child)
            if earlier:
                keep = np.ones(len(child), bool)
                for i, (before, line) in earlier.items():
                    keep[i] = False
                    if before != int(parent[i]):
                        bad_rows += 1
                        if len(problems) < MAX_PROBLEMS:
                            problems.append(Problem(f"{source}:{int(line_no[i])}", "child",
                                                    f"child already put into another parent on line {line}"))
                parent, child, line_no = parent[keep], child[keep], line_no[keep]
                keys = [k for k, kept in zip(keys, keep.tolist()) if kept]
            scratch.remember(keys, parent, line_no)
            if bad_rows:
                continue        # nothing more is written: the transaction will not commit
            step("apply", rows)
            result = trace.apply_links(parent, child, np.full(len(child), ADD, np.uint8), txn=txn)
            added += result["added"]
            removed += result["removed"]
            parents += scratch.count_new_parents(result["touched"])     # each once over the chunks
        bad_rows += overlong[0]
        if bad_rows:
            problems.sort(key=_line_key)
            unlisted = bad_rows - len(problems)
            if unlisted > 0:
                problems.append(Problem(source, "rows", f"{unlisted} more bad rows not listed"))
            raise BatchRejected(source, problems)      # the transaction aborts: nothing written
    return LinkReport(rows, added, removed, parents)


def _line_chunks(content: bytes | Readable, size: int, source: str, problems: list[Problem],
                 overlong: list[int]) -> Iterator[tuple[bytes, int]]:
    """(chunk, number of its first line): whole lines of ``content``, about
    ``size`` bytes each. A line longer than MAX_LINK_LINE is not held: it is
    counted in ``overlong[0]`` and named in ``problems`` (while they have room),
    and skipped to its end (the upload is then refused, so nothing of it is
    written)."""
    stream: Readable = io.BytesIO(content) if isinstance(content, (bytes, bytearray, memoryview)) else content
    line = 1
    tail = b""
    skipping = False        # inside an overlong line, until its newline
    first = True
    while True:
        block = stream.read(size)
        if first:
            block = block[len(_BOM):] if block.startswith(_BOM) else block
            first = False
        if not block:
            if tail and not skipping:
                yield tail, line
            return
        if skipping:
            end = block.find(b"\n")
            if end < 0:
                continue
            block, skipping, line = block[end + 1:], False, line + 1
        block = tail + block
        cut = block.rfind(b"\n") + 1
        tail = block[cut:]
        if cut:
            yield block[:cut], line
            line += block.count(b"\n", 0, cut)
        if len(tail) > MAX_LINK_LINE:
            overlong[0] += 1
            if len(problems) < MAX_PROBLEMS:
                problems.append(Problem(f"{source}:{line}", "row", f"longer than {MAX_LINK_LINE} bytes"))
            tail, skipping = b"", True


def _link_chunk(data: DataDir, table: Any, content: bytes, first_line: int, source: str,
                problems: list[Problem]) -> tuple[np.ndarray, np.ndarray, np.ndarray, int, int]:
    """The rows of one chunk of whole lines: (parent serials, child serials, line
    numbers) of its good rows, each child once and in serial order; the number of
    rows; the number of bad rows (the first MAX_PROBLEMS of the upload named in
    ``problems``)."""
    buf = np.frombuffer(content, np.uint8)
    starts, ends = _core.split_lines(buf)
    line_no = np.arange(len(starts)) + first_line
    blank = ends == starts           # empty lines (a trailing one, say) carry nothing
    if first_line == 1 and len(starts) and bytes(buf[starts[0] : ends[0]]).strip().lower() == _HEADER:
        blank[0] = True
    starts, ends, line_no = starts[~blank], ends[~blank], line_no[~blank]
    n_bad = 0

    def bad(rows: np.ndarray, fld: str, message: str) -> None:
        nonlocal n_bad
        n_bad += len(rows)
        for r in rows[: max(MAX_PROBLEMS - len(problems), 0)].tolist():
            problems.append(Problem(f"{source}:{int(line_no[r])}", fld, message))

    pos, count = _field_spans(buf, starts, ends)
    shape_bad = count != 1
    bad(np.flatnonzero(shape_bad), "row", "expected exactly two fields: parent,child")
    pos = np.where(shape_bad, starts, pos)
    parent = verify_spans(buf, starts, pos, data.keys, table)
    child = verify_spans(buf, np.where(shape_bad, starts, pos + 1), ends, data.keys, table)
    ok = ~shape_bad
    for name, v in (("parent", parent), ("child", child)):
        not_genuine = ok & (v.status != CodeStatus.GENUINE)
        for st in np.unique(v.status[not_genuine]).tolist():
            bad(np.flatnonzero(not_genuine & (v.status == st)), name, _status_problem(st))
        ok &= v.status == CodeStatus.GENUINE
    wrong_level = np.flatnonzero(ok & ~level_allows(child.level, parent.level))
    n_bad += len(wrong_level)
    for r in wrong_level[: max(MAX_PROBLEMS - len(problems), 0)].tolist():
        problems.append(Problem(f"{source}:{int(line_no[r])}", "child",
                                f"a {Level(int(child.level[r])).label} cannot go into a "
                                f"{Level(int(parent.level[r])).label}"))
    ok[wrong_level] = False
    # a child listed twice in the chunk must name the same parent (across chunks: link_csv)
    good = np.flatnonzero(ok)
    order = good[np.argsort(child.serial[good], kind="stable")]
    cs, ps = child.serial[order], parent.serial[order]
    dup = np.flatnonzero(cs[1:] == cs[:-1])
    conflict = dup[ps[dup + 1] != ps[dup]]
    n_bad += len(conflict)
    for d in conflict[: max(MAX_PROBLEMS - len(problems), 0)].tolist():
        a, b = order[d], order[d + 1]
        problems.append(Problem(f"{source}:{int(line_no[b])}", "child",
                                f"child already put into another parent on line {int(line_no[a])}"))
    keep = np.ones(len(cs), bool)
    keep[dup + 1] = False           # the same (parent, child) twice: once is enough
    sel = order[keep]
    return parent.serial[sel], child.serial[sel], line_no[sel], len(starts), n_bad


def _line_key(p: Problem) -> tuple[int, str]:
    tail = p.where.rsplit(":", 1)[-1]
    return (int(tail) if tail.isdigit() else 1 << 62, p.field)


def resolve_codes_or_problems(data: DataDir, texts: Sequence[str], paths: Sequence[str],
                              problems: list[Problem]) -> VerifyResult:
    """Verify code texts; append a Problem (with its path) for each not genuine.
    Returns the VerifyResult."""
    result = data.verify_codes(list(texts))
    for i in np.flatnonzero(result.status != CodeStatus.GENUINE).tolist():
        problems.append(Problem(paths[i], "code", f"{quote(texts[i])}: {_status_problem(int(result.status[i]))}"))
    return result


def _parse_time(value: str, where: str, problems: list[Problem]) -> int:
    if not value.strip():
        return now_ms()
    try:
        return parse_time_ms(value, "shipped_at")
    except InvalidArgument as exc:
        problems.append(_problem(where, exc))
        return 0


def _problem(where: str, exc: InvalidArgument) -> Problem:
    """A Problem from an InvalidArgument "field: why" (the shared checks' form)."""
    fld, _, why = str(exc).partition(": ")
    return Problem(where, fld, why)


def _csv_rows(content: bytes, source: str, required: Sequence[str]) -> list[tuple[int, dict[str, str]]]:
    try:
        text = content.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise BatchRejected(source, [Problem(f"{source}:byte {exc.start}", "file", "not UTF-8")]) from None
    # A CR not followed by LF ends a line for some readers (old Mac files, Excel)
    # and not for others: the rows would differ by reader. Refuse each such line.
    if "\r" in text:
        bare = [text.count("\n", 0, m) + 1 for m in _bare_cr_positions(text)]
        if bare:
            lines = list(dict.fromkeys(bare))
            cr = [Problem(f"{source}:{n}", "row", "a bare carriage return (CR not followed by LF) "
                          "inside the line: end lines with LF or CRLF") for n in lines[:MAX_PROBLEMS]]
            if len(lines) > MAX_PROBLEMS:
                cr.append(Problem(source, "rows", f"{len(lines) - MAX_PROBLEMS} more bad rows not listed"))
            raise BatchRejected(source, cr)
    reader = csv.DictReader(io.StringIO(text, newline=""))
    rows: list[tuple[int, dict[str, str]]] = []
    problems: list[Problem] = []
    try:
        fieldnames = reader.fieldnames or []
    except csv.Error as exc:
        raise BatchRejected(source, [Problem(f"{source}:{reader.line_num or 1}", "header", f"bad CSV: {exc}")]) \
            from None
    missing = [c for c in required if c not in fieldnames]
    if missing:
        raise BatchRejected(source, [Problem(f"{source}:1", "header", f"missing column(s) {', '.join(missing)}")])
    while True:
        start = reader.line_num + 1     # the line the next row starts on (csv counts lines consumed)
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:    # a field over csv's size limit, say
            problems.append(Problem(f"{source}:{start}", "row", f"bad CSV: {exc}"))
            if len(problems) >= MAX_PROBLEMS:
                break
            continue
        rows.append((reader.line_num, row))
    if problems:
        raise BatchRejected(source, problems)
    return rows


def _bare_cr_positions(text: str) -> list[int]:
    """Offsets of every CR that is not the first half of a CRLF."""
    out: list[int] = []
    at = text.find("\r")
    while at >= 0:
        if text[at + 1 : at + 2] != "\n":
            out.append(at)
        at = text.find("\r", at + 1)
    return out


def load_dealers_csv(data: DataDir, content: bytes, source: str = "input") -> int:
    """Load or replace dealers and their territories (one transaction)."""
    rows = _csv_rows(content, source, ("dealer_id", "name", "territory"))
    return load_dealers(data, [(f"{source}:{line}", row.get("dealer_id") or "", row.get("name") or "",
                                (row.get("territory") or "").split()) for line, row in rows], source)


def load_dealers(data: DataDir, rows: Sequence[tuple[str, str, str, Sequence[str]]], source: str = "input") -> int:
    """Load or replace dealers from (where, dealer_id, name, territory prefixes)
    rows in one transaction, or raise BatchRejected naming each row and field."""
    problems: list[Problem] = []
    dealers = []
    for where, dealer_id, name, territory in rows:
        before = len(problems)
        try:
            dealer_id = check_dealer_id(dealer_id)
        except InvalidArgument as exc:
            problems.append(_problem(where, exc))
        try:
            name = check_text(name, "name", MAX_NAME).strip()
        except InvalidArgument as exc:
            problems.append(_problem(where, exc))
        try:
            prefixes = check_territory(territory)
        except InvalidArgument as exc:  # names the prefix
            problems.append(_problem(where, exc))
        if len(problems) == before:
            dealers.append(Dealer(dealer_id, name, prefixes))
    if problems:
        raise BatchRejected(source, problems)
    TraceStore(data.store).put_dealers(dealers)
    return len(dealers)


def ship_csv(data: DataDir, content: bytes, source: str = "input") -> int:
    """Record a shipments CSV (one transaction) or raise BatchRejected."""
    problems: list[Problem] = []
    rows = _csv_rows(content, source, ("unit", "dealer_id"))
    wheres = [f"{source}:{line}" for line, _ in rows]
    times = [_parse_time(row.get("shipped_at") or "", w, problems) for w, (_, row) in zip(wheres, rows)]
    return record_shipment_rows(data, [(r.get("unit") or "").strip() for _, r in rows],
                                [(r.get("dealer_id") or "").strip() for _, r in rows], times,
                                [(r.get("shipment_id") or "").strip() for _, r in rows], wheres, source, problems)


def record_shipment_rows(data: DataDir, units: Sequence[str], dealer_ids: Sequence[str], times_ms: Sequence[int],
                         shipment_ids: Sequence[str], wheres: Sequence[str], source: str,
                         problems: list[Problem] | None = None) -> int:
    """Record shipments (one transaction) or raise BatchRejected naming each row
    (``wheres[i]``) and field; ``problems`` may carry earlier ones (times)."""
    problems = [] if problems is None else problems
    if not (len(units) == len(dealer_ids) == len(times_ms) == len(shipment_ids) == len(wheres)):
        raise InvalidArgument("shipments: units, dealer_ids, times_ms, shipment_ids and wheres differ in length")
    trace = TraceStore(data.store)
    result = resolve_codes_or_problems(data, units, wheres, problems)
    known: dict[str, bool] = {}
    shipments = []
    for i, dealer_id in enumerate(dealer_ids):
        if times_ms[i]:     # 0: now
            try:
                check_time_ms(times_ms[i], "shipped_at")
            except InvalidArgument as exc:
                problems.append(_problem(wheres[i], exc))
        try:
            check_text(shipment_ids[i], "shipment_id", MAX_SHIPMENT_ID)
        except InvalidArgument as exc:
            problems.append(_problem(wheres[i], exc))
        try:
            check_dealer_id(dealer_id)
            if dealer_id not in known:
                known[dealer_id] = trace.dealer(dealer_id) is not None
            if not known[dealer_id]:
                problems.append(Problem(wheres[i], "dealer_id", f"dealer {quote(dealer_id)} is not loaded"))
        except InvalidArgument as exc:
            problems.append(Problem(wheres[i], "dealer_id", str(exc).split(": ", 1)[-1]))
        shipments.append(Shipment(int(result.serial[i]), dealer_id, times_ms[i] or now_ms(), shipment_ids[i]))
    if problems:
        raise BatchRejected(source, sorted(problems, key=_line_key))
    trace.record_shipments(shipments)
    return len(shipments)


def link_rows(data: DataDir, parents: Sequence[str], children: Sequence[str], actions: Sequence[str],
              source: str = "links") -> LinkReport:
    """Apply aggregation rows in order, in one transaction: ADD puts ``children[i]``
    under ``parents[i]``; DELETE takes it out, or with child "" unpacks the parent.
    Rows are named ``links[i]`` in problems; a bad row applies nothing."""
    problems: list[Problem] = []
    n = len(parents)
    if not (len(children) == len(actions) == n):
        raise InvalidArgument("links: parents, children and actions differ in length")
    texts, paths, where_of = [], [], []
    for i in range(n):
        if actions[i] not in ("ADD", "DELETE"):
            problems.append(Problem(f"links[{i}]", "action", f"{actions[i]!r} is not ADD or DELETE"))
        texts.append(parents[i])
        paths.append(f"links[{i}].parent")
        if children[i] or actions[i] == "ADD":
            where_of.append(len(texts))
            texts.append(children[i])
            paths.append(f"links[{i}].child")
        else:
            where_of.append(-1)
    checks = resolve_codes_or_problems(data, texts, paths, problems)
    first_parent: dict[int, tuple[int, int]] = {}
    parent_idx: list[int] = []   # index of row i's parent in texts
    k = 0
    for i in range(n):
        parent_idx.append(k)
        k += 1 if where_of[i] < 0 else 2
    for i in range(n):
        p, c = parent_idx[i], where_of[i]
        if actions[i] != "ADD" or c < 0 or checks.status[p] != 0 or checks.status[c] != 0:
            continue
        if not level_allows(checks.level[c], checks.level[p]):
            problems.append(Problem(f"links[{i}]", "child",
                                    f"a {Level(int(checks.level[c])).label} cannot go into a "
                                    f"{Level(int(checks.level[p])).label}"))
        child_serial = int(checks.serial[c])
        seen = first_parent.setdefault(child_serial, (int(checks.serial[p]), i))
        if seen[0] != int(checks.serial[p]):
            problems.append(Problem(f"links[{i}]", "child", f"child already put into another parent in links[{seen[1]}]"))
    if problems:
        raise BatchRejected(source, problems)
    parents_touched: set[int] = set()
    # rows go to apply_links in segments, in order: a segment ends before an
    # unpack-all row and before a child it already holds (one action per child);
    # the state layer applies them all in one transaction
    steps: list[LinkStep | ShipStep] = []
    seg: list[tuple[int, int, int]] = []
    held: set[int] = set()

    def cut(unpack: tuple[int, ...] = ()) -> None:
        arr = np.array(seg, np.uint64).reshape(-1, 3)
        steps.append(LinkStep(arr[:, 0], arr[:, 1], arr[:, 2].astype(np.uint8), unpack))
        seg.clear()
        held.clear()

    for i in range(n):
        parent = int(checks.serial[parent_idx[i]])
        parents_touched.add(parent)
        c = where_of[i]
        if c < 0:
            if seg:
                cut()
            cut((parent,))
            continue
        child = int(checks.serial[c])
        if child in held:
            cut()
        seg.append((parent, child, ADD if actions[i] == "ADD" else DELETE))
        held.add(child)
    if seg:
        cut()
    result = apply_trace_steps(data.store, steps)
    return LinkReport(n, result["added"], result["removed"], len(parents_touched))


def apply_epcis(data: DataDir, content: bytes | str, source: str = "input",
                schema: dict[str, Any] | None = None) -> EpcisReport:
    """Apply an EPCIS 2.0 document: AggregationEvents (ADD, DELETE; OBSERVE changes
    nothing) and shipping ObjectEvents, event by event, in one transaction.

    Every identifier must be one of our codes, genuine and issued; a shipment's
    destination must be a loaded dealer id. Anything else (GS1 SGTIN/SSCC the
    engine never issued included) is reported with its JSON path and nothing is
    applied.
    """
    from . import epcis

    parsed = epcis.parse_document(content, schema=schema)
    problems = [Problem(f"{source}:{p.path}", "epcis", p.message) for p in parsed.problems]
    texts: list[str] = []
    paths: list[str] = []
    slots: dict[tuple[int, str, int], int] = {}   # (op, role, position) -> index in texts

    def want(op_i: int, role: str, pos: int, uri: str | None, path: str) -> None:
        if uri is None:
            return
        kind, value = epcis.classify_epc(uri)
        if kind == "code":       # foreign ones are already in parsed.problems
            slots[(op_i, role, pos)] = len(texts)
            texts.append(value)
            paths.append(f"{source}:{path}")

    for i, op in enumerate(parsed.ops):
        base = f"epcisBody.eventList[{op.event_index}]"
        if isinstance(op, epcis.AggregationOp):
            want(i, "parent", 0, op.parent, f"{base}.parentID")
            for j, c in enumerate(op.children):
                want(i, "child", j, c, f"{base}.childEPCs[{j}]")
        else:
            for j, u in enumerate(op.units):
                want(i, "unit", j, u, f"{base}.epcList[{j}]")
    checks = resolve_codes_or_problems(data, texts, paths, problems) if texts else None
    trace = TraceStore(data.store)
    known_dealers: dict[str, str | None] = {}   # destination -> why it is not a loaded dealer, or None
    for i, op in enumerate(parsed.ops):
        base = f"{source}:epcisBody.eventList[{op.event_index}]"
        if isinstance(op, epcis.ShipmentOp):
            if op.destination not in known_dealers:
                try:
                    loaded = trace.dealer(check_dealer_id(op.destination)) is not None
                    known_dealers[op.destination] = None if loaded else "is not a loaded dealer id"
                except InvalidArgument as exc:   # not a dealer id at all: say why
                    known_dealers[op.destination] = f"is not a dealer id: {str(exc).split(': ', 1)[-1]}"
            why = known_dealers[op.destination]
            if why is not None:
                problems.append(Problem(f"{base}.destinationList", "destination", f"{quote(op.destination)} {why}"))
        elif op.action == "ADD" and checks is not None and (i, "parent", 0) in slots:
            p = slots[(i, "parent", 0)]
            for j in range(len(op.children)):
                slot = slots.get((i, "child", j))
                if slot is not None and checks.status[p] == 0 and checks.status[slot] == 0 \
                        and not level_allows(checks.level[slot], checks.level[p]):
                    problems.append(Problem(f"{base}.childEPCs[{j}]", "child",
                                            f"a {Level(int(checks.level[slot])).label} cannot go into a "
                                            f"{Level(int(checks.level[p])).label}"))
    if problems:
        raise BatchRejected(source, problems)

    def serial(op_i: int, role: str, pos: int) -> int:
        assert checks is not None
        return int(checks.serial[slots[(op_i, role, pos)]])

    # the events in document order, applied by the state layer in one transaction
    steps: list[LinkStep | ShipStep] = []
    aggregations = 0
    for i, op in enumerate(parsed.ops):
        if isinstance(op, epcis.ShipmentOp):
            at = parse_time_ms(op.event_time, "eventTime")   # checked by the parser: cannot raise
            steps.append(ShipStep(tuple(Shipment(serial(i, "unit", j), op.destination, at, f"epcis:{op.event_index}")
                                        for j in range(len(op.units)))))
            continue
        aggregations += 1
        if op.action == "OBSERVE":
            continue
        parent = serial(i, "parent", 0)
        kids = np.array([serial(i, "child", j) for j in range(len(op.children))], np.uint64)
        action = ADD if op.action == "ADD" else DELETE
        steps.append(LinkStep(np.full(len(kids), parent, np.uint64), kids, np.full(len(kids), action, np.uint8),
                              (parent,) if action == DELETE and not len(kids) else ()))
    result = apply_trace_steps(data.store, steps)
    return EpcisReport(len(parsed.ops) + len(parsed.skipped), aggregations, result["shipments"], result["added"],
                       result["removed"], len(parsed.skipped))
