"""The `scangate` command line.

Every command prints for people on a terminal and, with ``--json``, one JSON object
per line for scripts. Exit statuses (EXIT_HELP says them to users): 0 success; 1 the
answer is no (a code that is not genuine, an audit that fails, a refused
redemption); 2 bad input or usage, with the reason on stderr; 3 an unexpected
failure (a bug), one line on stderr, the traceback with ``--verbose``; 130
interrupted. A script can tell a verdict from a crash by the status alone.
"""

from __future__ import annotations

import sys
import traceback
from typing import NoReturn

import click

from ..errors import ScangateError
from ._base import (
    DATA_ENV, DEFAULT_DATA, EXIT_ERROR, EXIT_HELP, EXIT_INTERNAL, EXIT_INTERRUPTED, EXIT_NOT_GENUINE, _fail,
    _Options, cli,
)
# each module adds its commands to `cli` as it is imported
from . import campaigns, codes, serve, trace  # noqa: F401

__all__ = ["DATA_ENV", "DEFAULT_DATA", "EXIT_ERROR", "EXIT_HELP", "EXIT_INTERNAL", "EXIT_INTERRUPTED",
           "EXIT_NOT_GENUINE", "cli", "main"]


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
