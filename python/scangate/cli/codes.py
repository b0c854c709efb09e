"""init, keys, issue, verify, ledger: data directories, key versions, issuing
codes and verifying them."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import click
import numpy as np

from ..config import STORE_ENV
from ..datadir import init_data_dir, open_data_dir
from ..enums import CodeStatus
from .. import verdicts
from ..errors import ScangateError
from ..outfile import open_codes_output
from ._base import EXIT_NOT_GENUINE, _emit, _fail, _open, cli, data_dir_option, data_option, json_option

# verify reads its input in slices of this many bytes (cut at a newline)
VERIFY_SLICE = 32 << 20


# ---------------------------------------------------------------------- init, keys
@cli.command()
@data_dir_option
@click.option("--url-prefix", default=None, help="Prefix of the URL form (default HTTPS://SCN.EXAMPLE.COM/).")
@click.option("--exist-ok", is_flag=True, help="Succeed without change if DIR is already a data directory.")
@click.option("--store", "store_url", default=None, envvar=STORE_ENV, metavar="URL",
              help="Also make (or upgrade) the decision state's schema in this PostgreSQL database "
                   "(postgresql://user@host:port/db; SCANGATE_STORE). See docs/scale-out.md.")
@json_option
def init(data: Path, url_prefix: str | None, exist_ok: bool, store_url: str | None, as_json: bool) -> None:
    """Create a data directory: LMDB environment and key version 1 (and, with
    --store, the PostgreSQL decision state's schema)."""
    schema = _init_store(store_url) if store_url else None
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
    if schema is not None:
        info["store"] = schema
    if as_json:
        _emit(info)
    else:
        click.echo(f"{'already initialised' if existing else 'initialised'} {data}: key version {info['key_version']} in {info['key_file']}, "
                   f"URL prefix {info['url_prefix']}")
        if schema is not None:
            click.echo(f"PostgreSQL decision state at {schema['server']}: schema {schema['schema']}")


@cli.group("store")
def store_group() -> None:
    """The decision state's PostgreSQL store (docs/scale-out.md)."""


@store_group.command("copy")
@data_dir_option
@click.option("--store", "store_url", required=True, envvar=STORE_ENV, metavar="URL",
              help="The PostgreSQL store to copy into (postgresql://...; SCANGATE_STORE): this release's schema "
                   "(scangate init --store), no decision yet.")
@json_option
def store_copy(data: Path, store_url: str, as_json: bool) -> None:
    """Copy DIR's decision state (scans, claims, caps, budgets, points, ledger,
    outbox, decisions) from its LMDB store into an empty PostgreSQL store, in one
    transaction. Stop the server first; afterwards name the store on every
    command (--store, SCANGATE_STORE or [store] url), or DIR's own, now stale,
    is read."""
    from ..state.pg import PgStore

    try:
        with open_data_dir(data) as dd, PgStore(store_url) as pg:
            copied = pg.copy_from(dd)
    except ScangateError as exc:
        _fail(f"--store: {exc}")
    if as_json:
        _emit({"data": str(data), "copied": copied})
    else:
        click.echo("copied " + (", ".join(f"{n:,} {table}" for table, n in copied.items()) or "nothing")
                   + f" from {data} into PostgreSQL; name the store on every command from now on")


def _init_store(url: str) -> dict[str, object]:
    """Make or upgrade the decision state's schema at ``url`` (idempotent), before
    the data directory is touched: a database that cannot be reached changes nothing."""
    from ..state.pg import PgStore

    try:
        with PgStore(url) as store:
            version = store.migrate()
            info = store.conn.info
            server = f"{info.host}:{info.port}/{info.dbname}"      # the URL less any password
    except ScangateError as exc:
        _fail(f"--store: {exc}")
    except Exception as exc:    # noqa: BLE001 - psycopg's errors: the server's own words
        _fail(f"--store: cannot make the schema in PostgreSQL: {type(exc).__name__}: {str(exc).strip()}")
    return {"server": server, "schema": version}


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
