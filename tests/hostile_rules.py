"""Rule plugins that misbehave, for tests/test_plugins_hostile.py (and, through
PYTHONPATH, for a real server's writer process). Not a test module itself."""
from __future__ import annotations

import time
from typing import Any

from scangate.plugins import RuleResult

NOT_CALLABLE = 42


def exits(ctx: Any) -> None:
    raise SystemExit(3)


def interrupts(ctx: Any) -> None:
    raise KeyboardInterrupt


def generator_exit(ctx: Any) -> None:
    raise GeneratorExit


def raises(ctx: Any) -> None:
    raise RuntimeError("plugin bug")


class _Unprintable(Exception):
    def __str__(self) -> str:
        raise SystemExit("formatting me exits")


def unprintable(ctx: Any) -> None:
    raise _Unprintable()


def loops(ctx: Any) -> None:
    while True:             # past any time budget; never returns
        time.sleep(0.01)


def honest(ctx: Any) -> RuleResult:
    return RuleResult(note="honest")


def two_args(ctx: Any, other: Any) -> None:
    return None
