"""Crashes of a decider and of the database (scangate.state.pg): every decision a
decider acknowledged is stored as acknowledged, a batch is stored whole or not at
all, and deciding the unacknowledged ones again decides each scan once.

A decider process (tests/pg_deciders.py) decides numbered batches on a real
cluster and acknowledges each after ``decide_scans_on`` returned. The test kills
it with SIGKILL mid-run, or kills the postmaster under it (the decider reconnects
and sends the same batch again, as a client retries with the same request ids),
then decides every batch up to the one in flight again and checks the store."""
from __future__ import annotations

import multiprocessing
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import pg_deciders
from bench._pgcluster import PgCluster, pg_cluster
from pg_deciders import acked, check, decider, wait_for_acks

@pytest.fixture(scope="module")
def cluster() -> Iterator[PgCluster]:
    with pg_cluster() as c:
        yield c


@pytest.fixture
def world(cluster: PgCluster, tmp_path: Path) -> tuple[str, Path, list[str]]:
    url = cluster.new_database()
    return (url, *pg_deciders.world(url, tmp_path))


def _start(world: tuple[str, Path, list[str]], acks: Path, batches: int = 400) -> multiprocessing.process.BaseProcess:
    url, data, codes = world
    proc = multiprocessing.get_context("spawn").Process(target=decider, args=(url, str(data), codes, str(acks),
                                                                                  batches))
    proc.start()
    return proc


@pytest.mark.parametrize("after", [15, 40])
def test_kill_9_of_a_decider_mid_batch_loses_nothing_acknowledged(world: tuple[str, Path, list[str]],
                                                                   tmp_path: Path, after: int) -> None:
    acks = tmp_path / "acks.jsonl"
    proc = _start(world, acks)
    wait_for_acks(acks, after, proc)
    time.sleep(0.013 * (after % 7))             # somewhere inside a batch
    assert proc.pid is not None
    os.kill(proc.pid, signal.SIGKILL)
    proc.join(30)
    assert proc.exitcode == -signal.SIGKILL
    check(world[0], world[1], world[2], acked(acks))


def test_kill_9_of_the_postmaster_under_a_decider_loses_nothing_acknowledged(
        cluster: PgCluster, world: tuple[str, Path, list[str]], tmp_path: Path) -> None:
    acks = tmp_path / "acks.jsonl"
    proc = _start(world, acks, batches=80)
    wait_for_acks(acks, 20, proc)
    cluster.kill()                              # every backend gone, mid-batch or between batches
    before = len(acked(acks))
    time.sleep(0.5)
    cluster.start()                             # crash recovery from the WAL
    proc.join(240)
    assert proc.exitcode == 0, "the decider did not finish its batches after the restart"
    answered = acked(acks)
    assert len(answered) == 80 and before < 80
    check(world[0], world[1], world[2], answered)
