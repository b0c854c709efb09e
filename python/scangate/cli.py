"""The `scangate` command line.

Every command prints for people on a terminal and, with ``--json``, one JSON object
per line for scripts. Exit statuses (EXIT_HELP says them to users): 0 success; 1 the
answer is no (a code that is not genuine, an audit that fails, a refused
redemption); 2 bad input or usage, with the reason on stderr; 3 an unexpected
failure (a bug), one line on stderr, the traceback with ``--verbose``; 130
interrupted. A script can tell a verdict from a crash by the status alone.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
import traceback
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any, NoReturn

import click
import numpy as np

from . import __version__
from .datadir import DataDir, init_data_dir, open_data_dir
from .enums import CodeStatus, Level
from . import clock, ingest, plugins, rewards, verdicts
from . import points as points_mod
from .config import CONFIG_FILE_NAME, load_config
from .payouts import FileAdapter, list_payouts, run_payouts
from .errors import BatchRejected, ScangateError
from .outfile import open_codes_output
from .trace import TraceStore

DATA_ENV = "SCANGATE_DATA"
DEFAULT_DATA = "scangate-data"
EXIT_NOT_GENUINE = 1
EXIT_ERROR = 2
EXIT_INTERNAL = 3
EXIT_INTERRUPTED = 130   # 128 + SIGINT, as shells report it
EXIT_HELP = """\b
Exit status:
  0  success
  1  the answer is no: a code that is not genuine or is recalled (verify,
     trace, scan), an audit that fails, a refused points redemption
  2  bad input or usage; the reason is on stderr
  3  an unexpected failure (a bug); one line on stderr, the traceback
     with --verbose
  130  interrupted (Ctrl-C)"""
# verify reads its input in slices of this many bytes (cut at a newline)
VERIFY_SLICE = 32 << 20

data_option = click.option(
    "--data",
    "data",
    envvar=DATA_ENV,
    default=DEFAULT_DATA,
    show_default=True,
    type=click.Path(file_okay=False, path_type=Path),
    help=f"Data directory (LMDB environment and key file); env {DATA_ENV}.",
)
json_option = click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")


def _fail(message: str) -> NoReturn:
    click.echo(f"error: {message}", err=True)
    sys.exit(EXIT_ERROR)


def _open(data: Path) -> DataDir:
    try:
        return open_data_dir(data)
    except ScangateError as exc:
        _fail(str(exc))


def _emit(obj: dict[str, Any]) -> None:
    click.echo(json.dumps(obj, ensure_ascii=False))


class _Options:
    """What main() needs to know of the global options after a command failed."""

    verbose = 0


@click.group(context_settings={"help_option_names": ["-h", "--help"]}, epilog=EXIT_HELP)
@click.version_option(__version__, prog_name="scangate")
@click.option("-v", "--verbose", count=True,
              help="More log output (-v info, -vv debug); tracebacks of unexpected failures.")
def cli(verbose: int) -> None:
    """scangate: issue, trace and verify one-item-one-code codes."""
    _Options.verbose = verbose
    level = logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


# ---------------------------------------------------------------------- init, keys
@cli.command()
@data_option
@click.option("--url-prefix", default=None, help="Prefix of the URL form (default HTTPS://SCN.EXAMPLE.COM/).")
@click.option("--exist-ok", is_flag=True, help="Succeed without change if DIR is already a data directory.")
@json_option
def init(data: Path, url_prefix: str | None, exist_ok: bool, as_json: bool) -> None:
    """Create a data directory: LMDB environment and key version 1."""
    try:
        existing = exist_ok and (data / "lmdb" / "data.mdb").exists()
        if existing:
            dd = open_data_dir(data)
        elif url_prefix:
            dd = init_data_dir(data, url_prefix=url_prefix)
        else:
            dd = init_data_dir(data)
    except ScangateError as exc:
        _fail(str(exc))
    with dd:
        info = {"data": str(data), "key_file": str(dd.keys.path), "key_version": dd.keys.current.version,
                "url_prefix": dd.url_prefix, "created": not existing}
    if as_json:
        _emit(info)
    else:
        click.echo(f"{'already initialised' if existing else 'initialised'} {data}: key version {info['key_version']} in {info['key_file']}, "
                   f"URL prefix {info['url_prefix']}")


@cli.group()
def keys() -> None:
    """Key versions (rotation). Key material is never printed."""


@keys.command("rotate")
@data_option
@json_option
def keys_rotate(data: Path, as_json: bool) -> None:
    """Add a key version; new codes use it, all versions keep verifying."""
    with _open(data) as dd:
        kv = dd.rotate_key()
    if as_json:
        _emit({"key_version": kv.version, "created_at": kv.created_at})
    else:
        click.echo(f"key version {kv.version} added; new codes use it")


@keys.command("list")
@data_option
@json_option
def keys_list(data: Path, as_json: bool) -> None:
    """List key versions."""
    with _open(data) as dd:
        versions = dd.keys.versions()
        current = dd.keys.current.version
    for kv in versions:
        row = {"key_version": kv.version, "created_at": kv.created_at, "current": kv.version == current}
        if as_json:
            _emit(row)
        else:
            stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(kv.created_at))
            click.echo(f"{kv.version:>4}  {stamp} UTC{'  (current)' if row['current'] else ''}")


# ---------------------------------------------------------------------- issue
def _csv_rows(chunk: np.ndarray, first_seq: int, prefix: str) -> bytes:
    codes = chunk[:, :29].tobytes().decode("ascii")
    return "".join(
        f"{first_seq + i},{c},{prefix}{c}\n"
        for i, c in enumerate(codes[k : k + 29] for k in range(0, len(codes), 29))
    ).encode()


@cli.command()
@data_option
@click.option("--sku", required=True, help="Product SKU.")
@click.option("--level", type=click.Choice(["item", "case", "pallet"]), default="item", show_default=True)
@click.option("--count", type=click.IntRange(min=1), required=True, help="Number of codes.")
@click.option("--out", "out", required=True, type=click.Path(dir_okay=False, allow_dash=True),
              help="Output file, a FIFO or a character device ('-' for stdout). An existing file "
                   "is refused unless --force.")
@click.option("--force", is_flag=True, help="Replace an existing OUT file (and a killed run's OUT.part).")
@click.option("--batch", default="", help="Production batch / lot.")
@click.option("--gtin", default="", help="GTIN of the product line (checked).")
@click.option("--attr", multiple=True, metavar="KEY=VALUE", help="Free-form line attribute (repeatable).")
@click.option("--format", "fmt", type=click.Choice(["text", "url", "csv"]), default="text", show_default=True)
@json_option
def issue(data: Path, sku: str, level: str, count: int, out: str, force: bool, batch: str, gtin: str,
          attr: tuple[str, ...], fmt: str, as_json: bool) -> None:
    """Issue COUNT new codes to a file, one per line.

    The serial range is reserved durably before any code is written, so a crash
    never lets a serial be issued twice. A file is written as OUT.part and
    appears as OUT only when complete; an existing OUT is never replaced without
    --force. A FIFO, a character device or '-' is written as a stream; a symbolic
    link is followed and stays a link.
    """
    attributes = {}
    for item in attr:
        name, sep, value = item.partition("=")
        if not sep or not name:
            _fail(f"--attr {item!r}: expected KEY=VALUE")
        attributes[name] = value
    with _open(data) as dd:
        try:
            # the output first: a refused one must not cost a serial range
            output = open_codes_output(out, force=force)
        except ScangateError as exc:
            _fail(str(exc))
        try:
            line, rng, key = dd.reserve(sku, level, count, batch=batch, gtin=gtin, attributes=attributes)
            started = time.perf_counter()
            prefix = dd.url_prefix
            chunks = dd.iter_issue(line, rng, key, prefix=prefix if fmt == "url" else "")
            show_bar = not output.is_stream and not as_json and sys.stderr.isatty()
            with click.progressbar(length=count, label="issuing", file=sys.stderr,
                                   hidden=not show_bar) as bar:
                done = 0
                if fmt == "csv":
                    output.write(b"seq,code,url\n")
                for chunk in chunks:
                    output.write(_csv_rows(chunk, done + 1, prefix) if fmt == "csv" else chunk)
                    done += len(chunk)
                    bar.update(len(chunk))
            output.commit()
        except BaseException as exc:
            output.abort()
            if isinstance(exc, ScangateError):
                _fail(str(exc))
            raise
        rng = dd.store.complete_range(rng)
    elapsed = time.perf_counter() - started
    summary = {
        "line_id": line.line_id, "sku": line.sku, "batch": line.batch, "level": line.level.label,
        "first_serial": rng.first, "last_serial": rng.last, "count": rng.count,
        "key_version": rng.key_version, "format": fmt, "out": out,
        "seconds": round(elapsed, 3), "codes_per_second": int(count / elapsed) if elapsed > 0 else None,
    }
    if as_json:
        click.echo(json.dumps(summary), err=out == "-")
    else:
        click.echo(
            f"issued {count:,} {line.level.label} codes for {line.sku}"
            f"{' batch ' + line.batch if line.batch else ''} (line {line.line_id}), serials "
            f"{rng.first:,}..{rng.last:,}, key version {rng.key_version}, to {out} in {elapsed:.2f} s "
            f"({summary['codes_per_second'] or 0:,} codes/s)",
            err=out == "-",
        )


# ---------------------------------------------------------------------- verify
def _read_slices(stream: IO[bytes]) -> Iterator[bytes]:
    """Yield slices of whole lines, each about VERIFY_SLICE bytes."""
    rest = b""
    while True:
        block = stream.read(VERIFY_SLICE)
        if not block:
            if rest:
                yield rest
            return
        block = rest + block
        cut = block.rfind(b"\n")
        if cut < 0:
            rest = block
            continue
        yield block[: cut + 1]
        rest = block[cut + 1 :]


def _display(raw: bytes, limit: int = 64) -> str:
    text = raw.rstrip(b"\r").decode("utf-8", "backslashreplace")
    return text if len(text) <= limit else text[: limit - 1] + "…"


@cli.command()
@data_option
@click.argument("source", type=click.File("rb"), default="-")
@click.option("-q", "--quiet", is_flag=True, help="Print only the counts per status.")
@json_option
def verify(data: Path, source: IO[bytes], quiet: bool, as_json: bool) -> None:
    """Verify codes from SOURCE (a file, or '-' for stdin), one per line.

    Prints one result per input line, then the counts per status. A genuine code
    under a recall (`scangate recall`) is printed and counted as `revoked`. Exit
    status 0 when every line is genuine, 1 when any is not (revoked included).
    """
    totals = np.zeros(len(CodeStatus), np.int64)
    revoked_total = 0
    line_no = 0
    out = sys.stdout
    with _open(data) as dd:
        # read once: a recall made while verify runs shows from the next run on
        recalls = verdicts.RecallIndex(dd)
        for chunk in _read_slices(source):
            result = dd.verify_codes(chunk)
            totals += np.bincount(result.status, minlength=len(CodeStatus))
            revoked = None
            if recalls:
                revoked = recalls.revoked(result.status == CodeStatus.GENUINE, result.serial, result.line_id)
                revoked_total += int(revoked.sum())
            if not quiet:
                raws = chunk.split(b"\n")
                if chunk.endswith(b"\n"):
                    raws.pop()
                _print_results(out, raws, result, line_no, as_json, revoked)
            line_no += len(result)
    counts = {s.label: int(totals[s]) for s in CodeStatus}
    # a recalled code authenticates but must not pass: it is counted as revoked,
    # not genuine, and makes the exit status 1 like any code that is not genuine
    # (the key is there only when some were: the summary of a directory without
    # recalls keeps the shape it always had, one key per CodeStatus)
    if revoked_total:
        counts["genuine"] -= revoked_total
        counts = {"genuine": counts["genuine"], "revoked": revoked_total,
                  **{k: n for k, n in counts.items() if k != "genuine"}}
    if as_json:
        _emit({"summary": {"lines": line_no, **counts}})
    else:
        summary = ", ".join(f"{n:,} {name}" for name, n in counts.items() if n) or "no lines"
        click.echo(f"{line_no:,} lines: {summary}", err=not quiet)
    sys.exit(0 if counts["genuine"] == line_no else EXIT_NOT_GENUINE)


_REVOKED_ROW = -1   # the status a recalled genuine code is printed with (not a CodeStatus)


def _print_results(out: IO[str], raws: list[bytes], result: Any, first_line: int, as_json: bool,
                   revoked: np.ndarray | None = None) -> None:
    # Precompute the tail of each output line per (status, line id): the per-line
    # work is then one format call, which keeps 10 million lines in seconds.
    lines = result.lines
    status = result.status.astype(np.int16)
    if revoked is not None:
        status[revoked] = _REVOKED_ROW
    if as_json:
        tails = {lid: json.dumps({"status": "genuine", "sku": ln.sku, "batch": ln.batch,
                                  "level": ln.level.label})[1:] for lid, ln in lines.items()}
        rtails = {lid: json.dumps({"status": "revoked", "sku": ln.sku, "batch": ln.batch,
                                   "level": ln.level.label})[1:] for lid, ln in lines.items()}
        bad = {s.value: json.dumps({"status": s.label})[1:] for s in CodeStatus}
        parts = []
        for i, (raw, st, lid) in enumerate(zip(raws, status.tolist(), result.line_id.tolist())):
            tail = tails[lid] if st == 0 else rtails[lid] if st == _REVOKED_ROW else bad[st]
            parts.append(f'{{"line": {first_line + i + 1}, "code": {json.dumps(_display(raw, 256))}, {tail}\n')
        out.write("".join(parts))
        return
    tails = {lid: f"\tgenuine\t{ln.sku}\t{ln.batch or '-'}\t{ln.level.label}\n" for lid, ln in lines.items()}
    rtails = {lid: f"\trevoked\t{ln.sku}\t{ln.batch or '-'}\t{ln.level.label}\n" for lid, ln in lines.items()}
    bad = {s.value: f"\t{s.label}\n" for s in CodeStatus}
    out.write("".join(
        _display(raw) + (tails[lid] if st == 0 else rtails[lid] if st == _REVOKED_ROW else bad[st])
        for raw, st, lid in zip(raws, status.tolist(), result.line_id.tolist())
    ))


# ---------------------------------------------------------------------- ledger
@cli.command()
@data_option
@json_option
def ledger(data: Path, as_json: bool) -> None:
    """List product lines and the serial ranges issued to them."""
    with _open(data) as dd:
        lines = dd.store.list_lines()
        ranges = dd.store.list_ranges()
    by_line: dict[int, list[Any]] = {}
    for r in ranges:
        by_line.setdefault(r.line_id, []).append(r)
    for ln in lines:
        rs = by_line.get(ln.line_id, [])
        row = {**ln.to_json(), "issued": sum(r.count for r in rs),
               "ranges": [{"first": r.first, "last": r.last, "key_version": r.key_version,
                           "complete": r.complete} for r in rs]}
        if as_json:
            _emit(row)
        else:
            click.echo(f"line {ln.line_id}: {ln.sku} batch {ln.batch or '-'} {ln.level.label}"
                       f"{' GTIN ' + ln.gtin if ln.gtin else ''}: {row['issued']:,} codes in {len(rs)} ranges")


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
    from . import epcis

    try:
        return epcis.load_schema(path)
    except Exception as exc:  # a schema that does not load is a usage error
        _fail(f"--schema {path}: {exc}")


def _is_json(content: bytes) -> bool:
    return content.lstrip()[:1] in (b"{", b"[")


@cli.command()
@data_option
@click.argument("source", type=click.File("rb"))
@click.option("--schema", "schema_file", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Validate EPCIS documents against this EPCIS 2.0 JSON schema first.")
@json_option
def link(data: Path, source: IO[bytes], schema_file: str | None, as_json: bool) -> None:
    """Record bottle-case-pallet linkage from a parent,child CSV or an EPCIS 2.0
    document (AggregationEvents). All of the file or none of it."""
    content = source.read()
    started = time.perf_counter()
    stages = ["read", "verify", "check", "apply"]
    with _open(data) as dd, click.progressbar(
            length=len(stages), label="linking", file=sys.stderr,
            hidden=as_json or not sys.stderr.isatty(), item_show_func=lambda s: s) as bar:
        bar.update(1, "verify")

        def step(stage: str, rows: int) -> None:
            bar.update(1, f"{stage} {rows:,} rows")

        summary: dict[str, int | float]
        try:
            if _is_json(content):
                summary = dict(ingest.apply_epcis(dd, content, source.name, _schema(schema_file)).to_json())
            else:
                report = ingest.link_csv(dd, content, source.name, progress=step)
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


@cli.command()
@data_option
@click.argument("code")
@click.option("--actor", required=True, help="Who scanned (a user or store id).")
@click.option("--actor-type", type=click.Choice(["consumer", "store"]), default="consumer", show_default=True)
@click.option("--region", type=int, default=None, help="6-digit adcode of the scan.")
@click.option("--lat", type=float, default=None, help="Latitude (with --lon), resolved offline.")
@click.option("--lon", type=float, default=None)
@click.option("--config", "config_file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help=f"TOML config (default DIR/{CONFIG_FILE_NAME} if present).")
@click.option("--request-id", default=None, help="Idempotency key: a retry with it gets the same decision "
              "(default: a new random id).")
@json_option
def scan(data: Path, code: str, actor: str, actor_type: str, region: int | None, lat: float | None,
         lon: float | None, config_file: Path | None, request_id: str | None, as_json: bool) -> None:
    """Decide one scan: the verdict (genuine, counterfeit, revoked, clone, diverted)
    and the reward under the active campaigns, recorded in one transaction.
    Exit 0 when the code is genuine, 1 otherwise."""
    try:
        config = load_config(config_file, data_dir=data)
        plugins.configure(config.plugins.allow)
    except ScangateError as exc:
        _fail(str(exc))
    request = rewards.ScanRequest(request_id or uuid.uuid4().hex, code, actor, actor_type, region, lat, lon)
    with _open(data) as dd:
        try:
            d = rewards.decide_scans(dd, [request], config.verdicts)[0]
            if isinstance(d, rewards.RequestRefused):   # a refusal is the request's result, not a raise
                raise d
        except ScangateError as exc:
            _fail(str(exc))
    v = d.verdict
    if as_json:
        _emit({"code": code, **d.to_json()})
    else:
        click.echo(f"{code}: {v['verdict']} ({', '.join(v['reasons'])}), request {d.request_id}")
        click.echo(f"  {v['message']['zh-CN']}  {v['message']['en']}")
        if v.get("first_scan"):
            first = v["first_scan"]
            when = time.strftime("%Y-%m-%d %H:%M", time.gmtime(first["time_ms"] / 1000))
            click.echo(f"  first scanned {when} UTC in {first['region'] or 'unknown region'}; "
                       f"{v['scan_count']} scans")
        for name, ev in v["evidence"].items():
            click.echo(f"  {name}: {json.dumps(ev, ensure_ascii=False)}")
        if d.award is not None:
            a = d.award
            click.echo(f"  reward: {a.prize_id} ({a.kind}, {a.amount_fen} fen, {a.points} points) from "
                       f"{a.campaign_id} by {a.how}, ledger #{a.ledger_seq}")
        elif d.no_reward is not None:
            click.echo(f"  no reward: {d.no_reward.name.lower()} ({d.no_reward.value})")
        click.echo(f"  {d.message['zh-CN']}  {d.message['en']}")
    sys.exit(0 if v["verdict"] == "genuine" else EXIT_NOT_GENUINE)


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


@cli.group()
def campaign() -> None:
    """Reward campaigns (TOML or JSON files, see docs/campaigns.md)."""


@campaign.command("load")
@data_option
@click.argument("source", type=click.File("r", encoding="utf-8"))
@json_option
def campaign_load(data: Path, source: IO[str], as_json: bool) -> None:
    """Validate and store a campaign; a new one gets a secret and publishes its
    commitment (SHA-256 of the secret); reloading an id keeps budgets and counters.
    Its plugins must be installed entry points or allowed in DIR/scangate.toml
    ([plugins] allow) or SCANGATE_PLUGINS_ALLOW."""
    try:
        plugins.configure(load_config(data_dir=data).plugins.allow)
    except ScangateError as exc:
        _fail(str(exc))
    with _open(data) as dd:
        try:
            rec = rewards.put_campaign(dd, source.read(), source.name)
        except ScangateError as exc:
            _fail(str(exc))
    c = rec["campaign"]
    _emit({"id": c["id"], "revision": rec["revision"], "commitment": rec["commitment"]}) if as_json else \
        click.echo(f"campaign {c['id']} revision {rec['revision']} loaded; commitment {rec['commitment']}")


@campaign.command("list")
@data_option
@json_option
def campaign_list(data: Path, as_json: bool) -> None:
    """List campaigns."""
    with _open(data) as dd:
        for rec in rewards.list_campaigns(dd):
            c = rec["campaign"]
            row = {"id": c["id"], "name": c["name"], "status": c["status"], "start": c["start"], "end": c["end"],
                   "actor": c["actor"], "revision": rec["revision"]}
            _emit(row) if as_json else click.echo(
                f"{c['id']}\t{c['status']}\t{c['actor']}\t{c['start']} .. {c['end']}\t{c['name']}")


@campaign.command("show")
@data_option
@click.argument("campaign_id")
def campaign_show(data: Path, campaign_id: str) -> None:
    """Show a campaign as stored (JSON), with its commitment and budgets used."""
    with _open(data) as dd:
        try:
            rec = rewards.get_campaign(dd, campaign_id)
        except ScangateError as exc:
            _fail(str(exc))
        rec["budgets_used"] = rewards.budgets_used(dd, campaign_id)
    click.echo(json.dumps(rec, ensure_ascii=False, indent=1))


@campaign.command("pause")
@data_option
@click.argument("campaign_id")
@click.option("--resume", is_flag=True, help="Make it active again.")
def campaign_pause(data: Path, campaign_id: str, resume: bool) -> None:
    """Pause a campaign (scans win nothing, reason RW-N2), or resume it."""
    with _open(data) as dd:
        try:
            rewards.set_campaign_status(dd, campaign_id, "active" if resume else "paused")
        except ScangateError as exc:
            _fail(str(exc))
    click.echo(f"campaign {campaign_id} {'active' if resume else 'paused'}")


@campaign.command("reveal")
@data_option
@click.argument("campaign_id")
@json_option
def campaign_reveal(data: Path, campaign_id: str, as_json: bool) -> None:
    """Publish a campaign's secret once its window has ended (before: refused,
    exit 2), so that anyone can check its draws against the commitment published
    when it was loaded (docs/campaigns.md, "Verifying draws"). The campaign is
    closed from then on: no scan can win it, and it cannot be reloaded."""
    with _open(data) as dd:
        try:
            rec = rewards.reveal_secret(dd, campaign_id)
        except ScangateError as exc:
            _fail(str(exc))
    if as_json:
        _emit(rec)
    else:
        click.echo(f"secret {rec['secret']}\ncommitment {rec['commitment']}")
        click.echo(f"campaign {campaign_id} ended {rec['end']} ({rec['timezone']}); its secret "
                   f"{'matches' if rec['matches_commitment'] else 'DOES NOT MATCH'} its commitment", err=True)


@campaign.command("ledger")
@data_option
@click.argument("campaign_id")
def campaign_ledger(data: Path, campaign_id: str) -> None:
    """Print a campaign's reward ledger entries, one JSON object per line, as
    stored: with the revealed secret, what the verifier in docs/campaigns.md
    checks."""
    from .audit import export_ledger

    count = 0
    with _open(data) as dd:
        try:
            rewards.get_campaign(dd, campaign_id)
        except ScangateError as exc:
            _fail(str(exc))
        out = sys.stdout.buffer
        for raw in export_ledger(dd, campaign_id):
            out.write(raw + b"\n")
            count += 1
        out.flush()
    click.echo(f"{count:,} ledger entries of campaign {campaign_id}", err=True)


@cli.command()
@data_option
@click.argument("seqs", type=click.IntRange(min=1), nargs=-1)
@click.option("--all", "audit_all", is_flag=True, help="Every ledger entry; text output names the failures only.")
@click.option("--campaign", "campaign_id", default=None, help="With --all: only this campaign's entries.")
@json_option
def audit(data: Path, seqs: tuple[int, ...], audit_all: bool, campaign_id: str | None, as_json: bool) -> None:
    """Recompute reward decisions from the ledger (entries SEQ..., or --all): each
    draw's HMAC from the campaign secret (checked against its published
    commitment), the odds of its time slot under the campaign revision it names,
    the counters and budgets it read (from the entries before it), the prize,
    amount, points and payout key. Prints the fields that disagree; exit 1 if any
    entry fails."""
    from .audit import audit_entry, audit_ledger

    if bool(seqs) == audit_all:
        _fail("give ledger entry numbers (SEQ...) or --all")
    if campaign_id is not None and not audit_all:
        _fail("--campaign goes with --all")
    ok, count, failures = True, 0, 0
    with _open(data) as dd:
        try:
            results = audit_ledger(dd, campaign_id=campaign_id) if audit_all else (audit_entry(dd, s) for s in seqs)
            for entry in results:
                count += 1
                failures += not entry["verified"]
                ok &= entry["verified"]
                if as_json:
                    _emit(entry)
                elif not entry["verified"] or not audit_all:
                    failed = ", ".join(f"{k} (expected {json.dumps(entry['expected'][k], ensure_ascii=False)})"
                                       if entry["expected"].get(k) is not None else k for k in entry["failed"])
                    e = entry.get     # an edited entry may lack any field
                    click.echo(f"#{e('audited_seq')} {e('campaign_id')} {e('how')} roll {e('roll')} / odds "
                               f"{e('odds_ppm')} ppm -> {e('prize_id') or e('no_reward')}: "
                               f"{'verified' if not failed else 'FAILED ' + failed}")
        except ScangateError as exc:
            _fail(str(exc))
    if audit_all and not as_json:
        click.echo(f"{count:,} ledger entries audited, {failures:,} failed")
    sys.exit(0 if ok else EXIT_NOT_GENUINE)


@cli.group()
def points() -> None:
    """Points: balances and history, redemption, the monthly leaderboard."""


@points.command("show")
@data_option
@click.argument("actor")
@json_option
def points_show(data: Path, actor: str, as_json: bool) -> None:
    """An actor's balance and recent history."""
    with _open(data) as dd:
        bal, hist = points_mod.balance(dd, actor), points_mod.history(dd, actor)
    if as_json:
        _emit({"actor": actor, "balance": bal, "history": hist})
        return
    click.echo(f"{actor}: {bal:,} points")
    for h in hist[-10:]:
        click.echo(f"  {h['delta']:+,} ({h['reason']} {h['ref']}) -> {h['balance']:,}")


@points.command("redeem")
@data_option
@click.argument("actor")
@click.argument("amount", type=click.IntRange(min=1))
@click.option("--request-id", required=True, help="Idempotency key: a retry spends nothing more.")
@json_option
def points_redeem(data: Path, actor: str, amount: int, request_id: str, as_json: bool) -> None:
    """Spend points; refused (exit 1) when the balance is short: never overdraws."""
    with _open(data) as dd:
        try:
            r = points_mod.redeem(dd, actor, amount, request_id)
        except ScangateError as exc:
            _fail(str(exc))
    _emit(r.to_json()) if as_json else click.echo(
        f"{'redeemed' if r.ok else 'refused (' + str(r.reason) + ')'}: {amount:,} points; balance {r.balance:,}")
    sys.exit(0 if r.ok else EXIT_NOT_GENUINE)


@points.command("leaderboard")
@data_option
@click.option("--period", default=None, help="YYYY-MM (default: this month, Asia/Shanghai).")
@click.option("--top", type=click.IntRange(min=1), default=10, show_default=True)
@click.option("--actor", default=None, help="Also show this actor's rank.")
@json_option
def points_leaderboard(data: Path, period: str | None, top: int, actor: str | None, as_json: bool) -> None:
    """Actors (stores) ranked by points earned in a month."""
    period = period or points_mod.period_of(clock.now_ms())
    with _open(data) as dd:
        try:
            board = points_mod.leaderboard(dd, period, top, actor)
        except ScangateError as exc:
            _fail(str(exc))
    if as_json:
        _emit(board)
        return
    click.echo(f"leaderboard {period}")
    for row in board["top"]:
        click.echo(f"  {row['rank']:>3}. {row['actor']}  {row['points']:,}")
    if actor is not None:
        mine = board["actor"]
        click.echo(f"  {actor}: rank {mine['rank'] or '-'} of {mine['of']}, {mine['points']:,} points")


@cli.group()
def payouts() -> None:
    """The payout outbox: cash and coupon awards on their way to the payment rail."""


@payouts.command("run")
@data_option
@click.option("--rate", type=float, default=30.0, show_default=True, help="Payouts per second at most.")
@click.option("--out", "out_file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="The file adapter's JSON-lines file (default DIR/payouts.jsonl).")
@click.option("--max", "max_items", type=click.IntRange(min=1), default=None, help="Deliver at most this many.")
@click.option("--lease", "lease_s", type=click.FloatRange(min=0, min_open=True), default=60.0, show_default=True,
              help="Seconds a runner holds the payouts it takes; keep it above twice the rail's timeout.")
@json_option
def payouts_run(data: Path, rate: float, out_file: Path | None, max_items: int | None, lease_s: float,
                as_json: bool) -> None:
    """Deliver due payouts once through the file adapter, rate-limited; a request
    that fails is retried on a later run with the same idempotency key. Any number
    of runners may run at once: each leases what it sends, and a killed runner's
    payouts are sent again by the next runner once its lease expires."""
    with _open(data) as dd:
        try:
            counts = run_payouts(dd, FileAdapter(out_file or data / "payouts.jsonl"), rate_per_s=rate,
                                 max_items=max_items, lease_ms=int(lease_s * 1000))
        except ScangateError as exc:
            _fail(str(exc))
    _emit(counts) if as_json else click.echo(f"{counts['confirmed']:,} confirmed, {counts['failed']:,} failed")


@payouts.command("list")
@data_option
@click.option("--state", type=click.Choice(["pending", "sending", "failed", "confirmed"]), default=None)
@json_option
def payouts_list(data: Path, state: str | None, as_json: bool) -> None:
    """List payout requests (default: all), oldest key first."""
    with _open(data) as dd:
        rows = list_payouts(dd, state)
    for row in rows:
        _emit(row) if as_json else click.echo(
            f"{row['key']}\t{row['state']}\t{row['kind']}\t{row['amount_fen']} fen\t{row['actor']}"
            f"\tattempts {row['attempts']}")


@cli.command()
@data_option
@click.option("--port", type=int, default=None, help="gRPC port (default 50051; 0 picks a free one).")
@click.option("--host", default=None, help="Address to listen on (default 127.0.0.1; 0.0.0.0 for all).")
@click.option("--workers", type=int, default=None, help="Worker processes sharing the port (default 1).")
@click.option("--metrics-port", type=int, default=None, help="Prometheus /metrics port (default 9464; 0: off).")
@click.option("--config", "config_file", type=click.Path(dir_okay=False), default=None,
              help=f"TOML config file (default DIR/{CONFIG_FILE_NAME} if present).")
@click.option("--log-level", type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"]), default="INFO",
              show_default=True)
def serve(data: Path, port: int | None, host: str | None, workers: int | None, metrics_port: int | None,
          config_file: str | None, log_level: str) -> None:
    """Serve the gRPC API (scangate.v1) on DIR, creating it on first start.

    Runs until SIGTERM or Ctrl-C, then finishes in-flight calls and stops.
    """
    from scangate.server.main import resolve_config
    from scangate.server.main import serve as run_server

    try:
        cfg = resolve_config(data, config_file, port=port, host=host, workers=workers, metrics_port=metrics_port)
    except ScangateError as exc:
        _fail(str(exc))
    # run_server returns non-zero when a process could not start (a port in use, a
    # bad certificate): the reason is in its log, so exit as for bad input.
    sys.exit(EXIT_ERROR if run_server(data, cfg, log_level=log_level, announce=click.echo) else 0)


@cli.group()
def tokens() -> None:
    """API tokens for `scangate serve` (roles: scanner, line, admin)."""


@tokens.command("add")
@data_option
@click.argument("name")
@click.option("--role", type=click.Choice(["scanner", "line", "admin"]), required=True)
@click.option("--file", "tokens_file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Tokens file (default DIR/tokens.toml).")
def tokens_add(data: Path, name: str, role: str, tokens_file: Path | None) -> None:
    """Make a token for client NAME and print it (once: only its hash is stored)."""
    from scangate.server.auth import add_token

    path = tokens_file or data / "tokens.toml"
    try:
        token = add_token(path, name, role)
    except ScangateError as exc:
        _fail(str(exc))
    click.echo(token)
    click.echo(f"stored its hash for {name!r} ({role}) in {path}; the server reads it at start", err=True)


@tokens.command("list")
@data_option
@click.option("--file", "tokens_file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Tokens file (default DIR/tokens.toml).")
@json_option
def tokens_list(data: Path, tokens_file: Path | None, as_json: bool) -> None:
    """The clients that hold a token, with their roles (never a token or its hash)."""
    from scangate.server.auth import list_tokens

    path = tokens_file or data / "tokens.toml"
    try:
        entries = list_tokens(path)
    except ScangateError as exc:
        _fail(str(exc))
    for who in entries:
        _emit({"name": who.name, "role": who.role}) if as_json else click.echo(f"{who.name}\t{who.role}")
    if not as_json:
        click.echo(f"{len(entries)} tokens in {path}" + ("" if entries else ": the server runs open"), err=True)


@tokens.command("revoke")
@data_option
@click.argument("name")
@click.option("--file", "tokens_file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Tokens file (default DIR/tokens.toml).")
def tokens_revoke(data: Path, name: str, tokens_file: Path | None) -> None:
    """Remove client NAME's token(s) from the tokens file. A running server reads
    the file at start: the token stops working when the server next starts."""
    from scangate.server.auth import revoke_token

    path = tokens_file or data / "tokens.toml"
    try:
        n = revoke_token(path, name)
    except ScangateError as exc:
        _fail(str(exc))
    click.echo(f"revoked {n} token{'s' if n > 1 else ''} of {name!r} in {path}; "
               "a running server keeps accepting it until it is restarted")


def main(argv: list[str] | None = None) -> NoReturn:
    """Run the CLI and exit with one of the statuses of EXIT_HELP.

    click's standalone mode would exit 1 on a crash, on Ctrl-C and on a file it
    cannot open, which a script reads as "not genuine"; so errors are mapped here.
    """
    try:
        status = cli.main(args=argv, prog_name="scangate", standalone_mode=False)
    except click.exceptions.Abort:   # Ctrl-C or EOF at a prompt (click wraps KeyboardInterrupt)
        click.echo("interrupted", err=True)
        sys.exit(EXIT_INTERRUPTED)
    except click.ClickException as exc:   # usage errors, and files click could not open
        exc.show()
        sys.exit(EXIT_ERROR)
    except ScangateError as exc:  # misuse or corruption that a command did not catch
        _fail(str(exc))
    except OSError as exc:   # a file or directory the command could not read or write, a full disk
        _fail(f"{exc.filename or ''}: {exc.strerror or exc}".lstrip(": "))
    except Exception as exc:   # a bug: never let it look like a verdict (1) or a usage error (2)
        if _Options.verbose:
            traceback.print_exc()
        hint = "" if _Options.verbose else "; run with --verbose for the traceback"
        click.echo(f"internal error: {type(exc).__name__}: {exc}{hint}", err=True)
        sys.exit(EXIT_INTERNAL)
    # standalone_mode=False returns a command's ctx.exit() status (--help, --version:
    # 0); commands that return normally succeeded.
    sys.exit(status if isinstance(status, int) else 0)


if __name__ == "__main__":
    main()
