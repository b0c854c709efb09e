"""serve, tokens, payouts: running the gRPC server, its API tokens, and the payout
outbox."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from ..config import CONFIG_FILE_NAME
from ..payouts import FileAdapter, list_payouts, run_payouts
from ..errors import ScangateError
from ._base import EXIT_ERROR, STORE_META, _emit, _fail, _open, cli, data_option, json_option


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
        cfg = resolve_config(data, config_file, store=click.get_current_context().meta.get(STORE_META),
                             port=port, host=host, workers=workers, metrics_port=metrics_port)
    except ScangateError as exc:
        _fail(str(exc))
    # run_server returns non-zero when a process could not start (a port in use, a
    # bad certificate): the reason is in its log, so exit as for bad input.
    try:
        code = run_server(data, cfg, log_level=log_level, announce=click.echo)
    except ScangateError as exc:     # the data directory or the store it names cannot be opened
        _fail(str(exc))
    sys.exit(EXIT_ERROR if code else 0)


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
