"""``python -m bench.instructions --phase NAME``: every phase names a function that
exists, and its wrapper runs the phase through sys.call_tracing (what callgrind
collects inside) only once deciding has started, with the same result."""

from __future__ import annotations

import importlib
import sys
from typing import Any

import pytest

from bench import instructions


def _owner(name: str) -> tuple[Any, str]:
    module_name, attribute = instructions.PHASES[name]
    owner: Any = importlib.import_module(module_name)
    *path, last = attribute.split(".")
    for part in path:
        owner = getattr(owner, part)
    return owner, last


@pytest.mark.parametrize("name", sorted(instructions.PHASES))
def test_every_phase_is_a_function_of_the_decision(name: str) -> None:
    owner, last = _owner(name)
    assert callable(getattr(owner, last)), name


def test_the_wrapper_traces_only_once_started(monkeypatch: pytest.MonkeyPatch) -> None:
    owner, last = _owner("fingerprints")
    monkeypatch.setattr(owner, last, getattr(owner, last))     # restored after the test
    traced: list[Any] = []
    real = sys.call_tracing

    def spy(func: Any, args: tuple[Any, ...]) -> Any:
        traced.append(func)
        return real(func, args)

    monkeypatch.setattr(sys, "call_tracing", spy)
    started = [False]
    instructions._trace_phase("fingerprints", started)
    from scangate.rewards import ScanRequest

    requests = [ScanRequest("r1", "CODE", "u1")]
    before = getattr(owner, last)(requests)
    assert traced == []
    started[0] = True
    assert getattr(owner, last)(requests) == before and len(traced) == 1
