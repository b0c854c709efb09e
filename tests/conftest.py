"""Shared fixtures: an initialised data directory, and the real `scangate` CLI."""
from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

# Every test, and every process a test starts (servers, the CLI), runs on a clock
# that starts at TEST_NOW and runs at real speed (scangate.clock): nothing here
# depends on today's date. Set before scangate is imported, which reads it.
TEST_NOW = "2026-06-01T12:00:00+08:00"   # mid-day in UTC and in China: no day turns during a run
os.environ["SCANGATE_CLOCK"] = TEST_NOW
os.environ.pop("SCANGATE_CLOCK_ANCHOR_MS", None)
# Every server a test starts has its workers prepare each call's read-only half
# (scangate.decide.prepared), the more involved of the two paths: "auto" would
# pick it only on a machine with more processors than CI's two. The writer-only
# path is what the library's decide_checked runs, and tests/test_server.py runs
# it in a real server too (prepare = "writer").
os.environ["SCANGATE_SERVER_PREPARE"] = "workers"

import scangate  # noqa: E402

from serverproc import SCANGATE_BIN  # the console script next to the interpreter that runs the tests


def _fresh_data_dir(root: Path) -> Iterator[scangate.DataDir]:
    dd = scangate.init_data_dir(root)
    try:
        yield dd
    finally:
        dd.close()


@pytest.fixture
def data_dir(tmp_path: Path) -> Iterator[scangate.DataDir]:
    """A freshly initialised data directory at tmp_path/"data", closed afterwards."""
    yield from _fresh_data_dir(tmp_path / "data")


@pytest.fixture
def dd(tmp_path: Path) -> Iterator[scangate.DataDir]:
    """The same at tmp_path/"d", the name the decision tests use; a module whose
    tests all want a campaign in it overrides ``dd`` with a fixture taking this one."""
    yield from _fresh_data_dir(tmp_path / "d")


RunCli = Callable[..., "subprocess.CompletedProcess[bytes] | subprocess.CompletedProcess[str]"]


@pytest.fixture
def run_cli() -> RunCli:
    """Run the installed `scangate` console script as a subprocess.

    run_cli(*args, input=None, text=True, env=None, timeout=120) -> CompletedProcess.
    ``input`` is str or bytes (matching ``text``); stdout and stderr are captured;
    the exit status is not checked. ``env`` adds to (does not replace) os.environ.
    """
    assert SCANGATE_BIN.exists(), f"console script not found at {SCANGATE_BIN}"

    def run(*args: object, input: str | bytes | None = None, text: bool = True,
            env: dict[str, str] | None = None, timeout: float = 120):  # type: ignore[no-untyped-def]
        full_env = {**os.environ, **(env or {})}
        kwargs = {"encoding": "utf-8", "errors": "backslashreplace"} if text else {}
        return subprocess.run(
            [str(SCANGATE_BIN), *map(str, args)],
            input=input,
            capture_output=True,
            env=full_env,
            timeout=timeout,
            check=False,
            **kwargs,
        )

    return run
