"""Shared fixtures: an initialised data directory, and the real `scangate` CLI."""
from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

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


def _fresh_data_dir(root: Path, store: str | None = None) -> Iterator[scangate.DataDir]:
    scangate.init_data_dir(root).close()
    dd = scangate.open_data_dir(root, store=store)
    try:
        yield dd
    finally:
        dd.close()


# The conformance suite (rewards, the model-based machines, crash, trust,
# concurrency) runs its decisions on both stores: a module says so with
# ``dd = on_both_stores`` (or asks for ``store_url``).
STORES = ("lmdb", "postgresql")
_TEMPLATE = "scangate_template"


class PgServer:
    """The session's PostgreSQL cluster (``cluster``); ``database()``: the URL of a
    new database holding this release's schema."""

    def __init__(self, cluster: Any):
        self.cluster = cluster

    def database(self) -> str:
        return str(self.cluster.new_database(_TEMPLATE))


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    """One real PostgreSQL cluster for the session (bench/_pgcluster.py: a free
    loopback port, run as the postgres user), holding a database with this
    release's schema that each test's database is copied from. Durability off:
    the tests that kill the server start clusters of their own."""
    from bench._pgcluster import pg_cluster
    from scangate.state.pg import PgStore

    with pg_cluster({"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"}) as cluster:
        url = cluster.url.rsplit("/", 1)[0] + "/postgres"
        with PgStore(url) as admin:
            admin.conn.autocommit = True
            admin.conn.execute(f"CREATE DATABASE {_TEMPLATE}")
        with PgStore(url.rsplit("/", 1)[0] + f"/{_TEMPLATE}") as store:
            store.migrate()
        yield PgServer(cluster)


@pytest.fixture(params=STORES)
def store_url(request: pytest.FixtureRequest) -> str | None:
    """None (the data directory's LMDB store), then the URL of a fresh PostgreSQL
    database with this release's schema."""
    if request.param == "lmdb":
        return None
    server: PgServer = request.getfixturevalue("pg_server")
    return server.database()


@pytest.fixture
def on_both_stores(tmp_path: Path, store_url: str | None) -> Iterator[scangate.DataDir]:
    """``dd`` of a conformance module: a fresh data directory whose decision state
    is in its own LMDB store, then in PostgreSQL."""
    yield from _fresh_data_dir(tmp_path / "d", store_url)


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
