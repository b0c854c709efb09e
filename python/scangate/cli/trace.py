"""link, ship, dealers, trace, recall, recalls: where units went, and recalls."""

from __future__ import annotations

import io
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any, NoReturn

import click
import numpy as np

from ..enums import Level
from .. import ingest, verdicts
from ..errors import BatchRejected, ScangateError
from ..trace import TraceStore
from ._base import EXIT_ERROR, EXIT_NOT_GENUINE, _emit, _fail, _open, cli, data_option, json_option


# ---------------------------------------------------------------------- trace
def _reject(exc: BatchRejected, as_json: bool) -> NoReturn:
    """Report every problem of a rejected batch, one per line, and exit 2."""
    click.echo(f"error: {exc.source}: {len(exc.problems)} problem(s), nothing applied", err=True)
    if as_json:
        _emit({"error": f"{exc.source}: rejected, nothing applied",
               "problems": [{"where": p.where, "field": p.field, "message": p.message} for p in exc.problems]})
    else:
        for p in exc.problems:
            click.echo(f"  {p}", err=True)
    sys.exit(EXIT_ERROR)


def _schema(path: str | None) -> dict[str, Any] | None:
    if path is None:
        return None
    from .. import epcis

    try:
        return epcis.load_schema(path)
    except Exception as exc:  # a schema that does not load is a usage error
        _fail(f"--schema {path}: {exc}")


def _is_json(content: bytes) -> bool:
    return content.lstrip()[:1] in (b"{", b"[")


_HEAD = 1 << 16     # what link reads first, to tell an EPCIS document from a CSV


class _Reading:
    """A file read after its first bytes (``head``), each read counted on the
    progress bar (``advance``)."""

    def __init__(self, head: bytes, rest: IO[bytes], advance: Callable[[int], None]):
        self._head, self._rest, self._advance = head, rest, advance

    def read(self, size: int = -1) -> bytes:
        head = self._head
        if size < 0:
            out, self._head = head + self._rest.read(), b""
        elif len(head) >= size:
            out, self._head = head[:size], head[size:]
        else:
            out, self._head = head + self._rest.read(size - len(head)), b""
        self._advance(len(out))
        return out


@cli.command()
@data_option
@click.argument("source", type=click.File("rb"))
@click.option("--schema", "schema_file", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Validate EPCIS documents against this EPCIS 2.0 JSON schema first.")
@json_option
def link(data: Path, source: IO[bytes], schema_file: str | None, as_json: bool) -> None:
    """Record bottle-case-pallet linkage from a parent,child CSV or an EPCIS 2.0
    document (AggregationEvents). All of the file or none of it. A CSV is read a
    chunk at a time (its memory does not grow with the file); an EPCIS document
    is read whole."""
    started = time.perf_counter()
    head = source.read(_HEAD)
    try:
        size = os.fstat(source.fileno()).st_size
    except (OSError, ValueError, AttributeError, io.UnsupportedOperation):    # a pipe, a test's BytesIO
        size = 0
    with _open(data) as dd, click.progressbar(
            length=max(size, 1), label="linking", file=sys.stderr,
            hidden=as_json or not size or not sys.stderr.isatty(), item_show_func=lambda s: s) as bar:

        def step(stage: str, rows: int) -> None:
            bar.update(0, f"{stage}, {rows:,} rows read")

        summary: dict[str, int | float]
        try:
            if _is_json(head):
                content = head + source.read()
                summary = dict(ingest.apply_epcis(dd, content, source.name, _schema(schema_file)).to_json())
            else:
                reader = _Reading(head, source, bar.update)
                report = ingest.link_csv(dd, reader, source.name, progress=step)
                summary = {"rows": report.rows, "added": report.added, "removed": report.removed,
                           "parents": report.parents}
        except BatchRejected as exc:
            bar.render_finish()
            _reject(exc, as_json)
    summary["seconds"] = round(time.perf_counter() - started, 3)
    if as_json:
        _emit(summary)
    else:
        click.echo(", ".join(f"{k} {v:,}" if isinstance(v, int) else f"{k} {v}" for k, v in summary.items()))


@cli.command()
@data_option
@click.argument("source", type=click.File("rb"))
@click.option("--schema", "schema_file", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Validate EPCIS documents against this EPCIS 2.0 JSON schema first.")
@json_option
def ship(data: Path, source: IO[bytes], schema_file: str | None, as_json: bool) -> None:
    """Record shipments from a CSV (unit,dealer_id[,shipped_at][,shipment_id]) or an
    EPCIS 2.0 document (shipping ObjectEvents). All of the file or none of it."""
    content = source.read()
    with _open(data) as dd:
        try:
            if _is_json(content):
                summary = ingest.apply_epcis(dd, content, source.name, _schema(schema_file)).to_json()
            else:
                summary = {"shipments": ingest.ship_csv(dd, content, source.name)}
        except BatchRejected as exc:
            _reject(exc, as_json)
    if as_json:
        _emit(summary)
    else:
        click.echo(", ".join(f"{k} {v:,}" for k, v in summary.items()))


@cli.group()
def dealers() -> None:
    """Dealers and their territories (adcode prefixes)."""


@dealers.command("load")
@data_option
@click.argument("source", type=click.File("rb"))
@json_option
def dealers_load(data: Path, source: IO[bytes], as_json: bool) -> None:
    """Load or replace dealers from a CSV: dealer_id,name,territory."""
    with _open(data) as dd:
        try:
            n = ingest.load_dealers_csv(dd, source.read(), source.name)
        except BatchRejected as exc:
            _reject(exc, as_json)
    _emit({"dealers": n}) if as_json else click.echo(f"{n:,} dealers loaded")


@dealers.command("list")
@data_option
@json_option
def dealers_list(data: Path, as_json: bool) -> None:
    """List dealers and their territories."""
    with _open(data) as dd:
        for d in TraceStore(dd.store).list_dealers():
            _emit(d.to_json()) if as_json else click.echo(f"{d.dealer_id}\t{d.name}\t{' '.join(d.territory)}")


@cli.command()
@data_option
@click.argument("code")
@json_option
def trace(data: Path, code: str, as_json: bool) -> None:
    """Show where a code sits: product line, case, pallet, shipment, dealer,
    territory; and, for a case or pallet, its children. A recalled code is shown
    in full but as `revoked`, with its recall, and exits 1."""
    with _open(data) as dd:
        check = dd.verify_code(code)
        if not check.genuine or check.serial is None or check.line is None:
            _emit({"code": code, "status": check.status.label}) if as_json else \
                click.echo(f"{code}: {check.status.label}")
            sys.exit(EXIT_NOT_GENUINE)
        # a recalled code is still traced in full (a recall needs to know where its
        # units went), but reported revoked, and the answer is no (exit 1)
        recall_reasons, recall_evidence = verdicts.RecallIndex(dd).evidence(check.serial, check.line.line_id)
        ts = TraceStore(dd.store)
        chain = ts.trace(np.array([check.serial], np.uint64))[0]
        children = ts.children_of(check.serial)
        history = ts.shipment_history(chain.shipment.unit) if chain.shipment else []
        ancestor_levels = dd.store.levels_of(np.array(chain.ancestors, np.uint64)).tolist()
    status = "revoked" if recall_reasons else "genuine"
    info: dict[str, Any] = {
        "code": code, "status": status, "level": check.level.label if check.level else None,
        "line": check.line.to_json(), "ancestors": list(chain.ancestors),
        "ancestor_levels": [Level(int(x)).label for x in ancestor_levels],
        "shipment": chain.shipment.to_json() if chain.shipment else None,
        "dealer": chain.dealer.to_json() if chain.dealer else None,
        "shipment_history": [s.to_json() for s in history],
        "children": len(children),
    }
    if recall_reasons:
        info["reasons"] = [r.value for r in recall_reasons]
        info["evidence"] = recall_evidence
    if as_json:
        _emit(info)
        sys.exit(EXIT_NOT_GENUINE if recall_reasons else 0)
    click.echo(f"{code}: {status} {info['level']} of {check.line.sku} batch {check.line.batch or '-'}")
    for reason, (name, ev) in zip(recall_reasons, recall_evidence.items()):
        click.echo(f"  recalled ({reason.value}): {json.dumps(ev, ensure_ascii=False)}")
    for level, serial in zip(ancestor_levels, chain.ancestors):
        click.echo(f"  in {Level(int(level)).label} serial {serial}")
    if chain.shipment and chain.dealer:
        when = time.strftime("%Y-%m-%d %H:%M", time.gmtime(chain.shipment.shipped_at_ms / 1000))
        click.echo(f"  shipped {when} UTC to {chain.dealer.dealer_id} ({chain.dealer.name}), "
                   f"territory {' '.join(chain.dealer.territory)}"
                   f"{', ' + str(len(history)) + ' shipments in history' if len(history) > 1 else ''}")
    else:
        click.echo("  no shipment recorded")
    if len(children):
        click.echo(f"  holds {len(children):,} children")
    sys.exit(EXIT_NOT_GENUINE if recall_reasons else 0)


# ---------------------------------------------------------------------- recalls
def _when(at_ms: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.gmtime(at_ms / 1000)) + " UTC"


def _recall_text(r: verdicts.Recall) -> str:
    if r.kind == "line":
        return f"line {r.line_id}"
    what = f"serial {r.first}" if r.first == r.last else f"serials {r.first}..{r.last} ({r.count:,} codes)"
    return what + (", from a codes file" if r.source == "codes" else "")


def _read_codes_file(source: IO[bytes]) -> tuple[list[str], list[int]]:
    """The codes of a file, one per line, and their 1-based line numbers; blank
    lines are skipped (their numbers still count)."""
    codes, numbers = [], []
    for n, raw in enumerate(source.read().splitlines(), 1):
        text = raw.strip()
        if text:
            codes.append(text.decode("utf-8", errors="replace"))
            numbers.append(n)
    return codes, numbers


@cli.command()
@data_option
@click.option("--line", "line_id", type=int, default=None, help="Recall a whole product line (its id: `scangate ledger`).")
@click.option("--range", "serial_range", type=(int, int), default=None, metavar="FIRST LAST",
              help="Recall serials FIRST..LAST (all of them issued).")
@click.option("--codes", "codes_file", type=click.File("rb"), default=None, metavar="FILE",
              help="Recall the codes in FILE, one per line ('-': stdin); each must verify genuine, "
                   "else nothing is recalled.")
@click.option("--reason", required=True, help="Why (kept with the recall, shown as scan evidence).")
@json_option
def recall(data: Path, line_id: int | None, serial_range: tuple[int, int] | None, codes_file: IO[bytes] | None,
           reason: str, as_json: bool) -> None:
    """Recall a product line, a serial range or single codes: from then on verify,
    trace and scan report their genuine codes as `revoked` (SG-R1, SG-R2), and they
    win no reward. Recalling the same thing again changes nothing."""
    given = [x is not None for x in (line_id, serial_range, codes_file)]
    if sum(given) != 1:
        _fail("give exactly one of --line, --range or --codes")
    with _open(data) as dd:
        try:
            if line_id is not None:
                report = verdicts.recall_line(dd, line_id, reason)
            elif serial_range is not None:
                report = verdicts.recall_range(dd, serial_range[0], serial_range[1], reason)
            else:
                assert codes_file is not None
                name = getattr(codes_file, "name", "codes")
                codes, numbers = _read_codes_file(codes_file)
                report = verdicts.recall_codes(dd, codes, reason, source=str(name), lines=numbers)
        except BatchRejected as exc:
            _reject(exc, as_json)
        except ScangateError as exc:
            _fail(str(exc))
    if as_json:
        _emit({"added": report.added, "codes": report.codes, "recalls": [r.to_json() for r in report.recalls]})
        return
    if codes_file is not None:
        click.echo(f"recalled {report.codes:,} codes in {len(report.recalls):,} entries "
                   f"({report.added:,} new, the others already recalled): {reason}")
        return
    r = report.recalls[0]
    state = "recalled" if report.added else f"already recalled {_when(r.at_ms)}"
    click.echo(f"{state}: {_recall_text(r)}: {r.reason}")


@cli.group()
def recalls() -> None:
    """Recalls made with `scangate recall`."""


@recalls.command("list")
@data_option
@json_option
def recalls_list(data: Path, as_json: bool) -> None:
    """Every recall: product lines, then serial ranges (single codes are ranges of one)."""
    with _open(data) as dd:
        entries = verdicts.list_recalls(dd)
    if as_json:
        for r in entries:
            _emit(r.to_json())
        return
    for r in entries:
        click.echo(f"{_recall_text(r)}: {r.reason} ({_when(r.at_ms)})")
    click.echo(f"{len(entries):,} recalls", err=True)
