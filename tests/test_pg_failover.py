"""Losing the primary (scangate.state.pg with a synchronous standby): a real
primary and a real streaming standby (bench/_pgcluster.py), the primary listing
the standby in synchronous_standby_names, so a commit returns only once the
standby has flushed it.

- kill -9 of the primary under a running decider, then promotion of the standby:
  the decider reconnects through a multi-host URL (target_session_attrs =
  read-write) and goes on; every decision it acknowledged is on the promoted
  standby as acknowledged, and every scan is decided once.
- the known hole: when a commit's wait for the standby is cancelled, PostgreSQL
  reports the commit done (with a warning) though the standby may not have it.
  scangate does not acknowledge such a batch (StandbyUnconfirmed), and its retry
  replays the stored decisions only after its own commit, which comes later in
  the WAL, has reached the standby."""
from __future__ import annotations

import multiprocessing
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import psycopg
import pytest

import scangate
from scangate import rewards
from scangate.rewards import Decision, ScanRequest
from scangate.state import layout
from scangate.state.pg import PgStore, StandbyUnconfirmed

from bench._pgcluster import PgCluster, pg_cluster
from fixtures_campaigns import NOON
from pg_deciders import acked, batch, check, decider, wait_for_acks, world

@pytest.fixture
def pair(tmp_path: Path) -> Iterator[tuple[PgCluster, PgCluster, str, str]]:
    """(primary, standby, the primary's URL of a fresh database, the multi-host
    URL of the pair that finds whichever one takes writes)."""
    with pg_cluster() as primary:
        standby = primary.standby(primary.root.parent / "standby")
        try:
            primary.synchronous("standby1")
            primary.wait_sync()
            url = primary.new_database()
            name = url.rsplit("/", 1)[1]
            both = (f"postgresql://postgres@127.0.0.1:{primary.port},127.0.0.1:{standby.port}/{name}"
                    "?target_session_attrs=read-write&connect_timeout=5")
            yield primary, standby, url, both
        finally:
            standby.stop()


def test_kill_9_of_the_primary_then_promotion_loses_nothing_acknowledged(
        pair: tuple[PgCluster, PgCluster, str, str], tmp_path: Path) -> None:
    primary, standby, url, both = pair
    data, codes = world(url, tmp_path)
    acks = tmp_path / "acks.jsonl"
    proc = multiprocessing.get_context("spawn").Process(target=decider, args=(both, str(data), codes, str(acks), 60))
    proc.start()
    wait_for_acks(acks, 15, proc)
    primary.kill()                               # the machine is gone: no shutdown, no last WAL sent
    before = len(acked(acks))
    standby.promote()
    proc.join(240)
    assert proc.exitcode == 0, "the decider did not finish its batches on the promoted standby"
    answered = acked(acks)
    assert len(answered) == 60 and before < 60
    standby_url = both.replace(f"127.0.0.1:{primary.port},", "")
    check(standby_url, data, codes, answered)


def test_a_cancelled_wait_for_the_standby_is_not_acknowledged_and_its_retry_waits(
        pair: tuple[PgCluster, PgCluster, str, str], tmp_path: Path) -> None:
    primary, standby, url, _both = pair
    data, codes = world(url, tmp_path)
    scans = batch(0, codes)
    standby.stop()                               # commits now wait for a standby that is not there
    assert _cancelled_while_waiting(url, data, scans)               # committed on the primary, not acknowledged
    with PgStore(url) as store:
        assert store.count("decisions") == len(scans)               # there it is, on the primary alone
    # a retry finds the stored decisions, but its own commit waits for the standby too:
    # the replay is not answered while the standby may lack what it would answer
    assert _cancelled_while_waiting(url, data, scans)
    with PgStore(url) as store:
        assert store.count("decisions") == len(scans)               # replayed, not decided again
    standby.start()
    primary.wait_sync()
    with scangate.open_data_dir(data) as dd, PgStore(url) as store:
        again = rewards.decide_scans_on(store, dd, scans, now_ms=lambda: NOON + 120_000)
    assert all(isinstance(d, Decision) for d in again)
    # what the retry answered is on the standby: a promotion now would keep it
    standby_url = url.replace(str(primary.port), str(standby.port))
    with PgStore(standby_url) as replica:
        index = replica.records("requests")
        assert all(layout.request_key("", r.request_id) in index for r in scans)
        assert replica.count("decisions") == len(scans)


def _cancelled_while_waiting(url: str, data: Path, scans: Sequence[ScanRequest]) -> bool:
    """Decide ``scans`` in a thread while the standby is down; once its commit
    waits for the standby, cancel that wait (pg_cancel_backend, as a statement
    timeout would). Whether deciding raised StandbyUnconfirmed (and returned
    nothing)."""
    outcome: dict[str, object] = {}

    def decide() -> None:
        with scangate.open_data_dir(data) as dd, PgStore(url) as store:
            try:
                outcome["decided"] = rewards.decide_scans_on(store, dd, scans, now_ms=lambda: NOON + 60_000)
            except StandbyUnconfirmed as exc:
                outcome["refused"] = exc

    worker = threading.Thread(target=decide)
    worker.start()
    with psycopg.connect(url, autocommit=True) as admin:
        deadline = time.monotonic() + 60
        waiting: list[tuple[int]] = []
        while not waiting and time.monotonic() < deadline:
            waiting = admin.execute("SELECT pid FROM pg_stat_activity WHERE wait_event = 'SyncRep'").fetchall()
            time.sleep(0.05)
        assert waiting, "the commit never waited for the standby"
        admin.execute("SELECT pg_cancel_backend(%s)", [waiting[0][0]])
    worker.join(60)
    assert not worker.is_alive()
    return "refused" in outcome and "decided" not in outcome
