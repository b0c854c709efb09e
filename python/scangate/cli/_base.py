"""What the command modules share: the `cli` group, the exit statuses, the --data
and --json options and the helpers that report through them. It imports no command
module, so each of them can import it without a cycle."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Any, NoReturn

import click

from .. import __version__
from ..config import STORE_ENV, store_url
from ..datadir import DataDir, open_data_dir
from ..errors import ScangateError

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

data_dir_option = click.option(
    "--data",
    "data",
    envvar=DATA_ENV,
    default=DEFAULT_DATA,
    show_default=True,
    type=click.Path(file_okay=False, path_type=Path),
    help=f"Data directory (LMDB environment and key file); env {DATA_ENV}.",
)
json_option = click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
STORE_META = "scangate.store"


def _remember_store(ctx: click.Context, _param: click.Parameter, value: str | None) -> None:
    ctx.meta[STORE_META] = value


store_option = click.option(
    "--store", metavar="URL", default=None, expose_value=False, callback=_remember_store,
    help=f"The decision state's PostgreSQL store (postgresql://user@host:port/db); env {STORE_ENV}, "
         "else [store] url in DIR/scangate.toml; none: the data directory's own (docs/scale-out.md).")


def data_option(f: Any) -> Any:
    """--data DIR, and --store URL (read by ``_open``)."""
    return data_dir_option(store_option(f))


def _fail(message: str) -> NoReturn:
    click.echo(f"error: {message}", err=True)
    sys.exit(EXIT_ERROR)


def _open(data: Path) -> DataDir:
    """The data directory of a command, with the decision state's store its
    --store, SCANGATESTORE_META or [store] url names (scangate.config.store_url)."""
    given = click.get_current_context().meta.get(STORE_META)
    try:
        return open_data_dir(data, store=store_url(given, data) or None)
    except ScangateError as exc:
        _fail(f"--store: {exc}" if given and "store" not in str(exc) else str(exc))


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
