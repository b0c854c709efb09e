"""Crashes of a decider and of the database (scangate.state.pg): every decision a
decider acknowledged is stored as acknowledged, a batch is stored whole or not at
all, and deciding the unacknowledged ones again decides each scan once.

A decider process decides numbered batches (``_batch``: the test knows each
one's requests) on a real cluster and appends each batch's decisions to an
acknowledgement file after ``decide_scans_on`` returned: what a server would have
answered. The test kills it with SIGKILL mid-run, or kills the postmaster under
it (the decider reconnects and sends the same batch again, as a client retries
with the same request ids), then decides every batch up to the one in flight
again and checks the store."""
from __future__ import annotations

import json
import multiprocessing
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest

import scangate
from scangate import rewards
from scangate.rewards import Decision, ScanRequest
from scangate.state import layout
from scangate.state.pg import PgStore
from scangate.state.records import History

from fixtures_campaigns import CHENGDU, NOON, campaign
from bench._pgcluster import PgCluster, pg_cluster

CAMPAIGN = campaign(prizes='[[prizes]]\nid = "cash"\nkind = "cash"\namount_fen = 100\nbudget_count = 150\n',
                    odds="50%", tail="[caps]\nper_user_daily_count = 10\n")
CODES = 300
PER_BATCH = 10


def _batch(k: int, codes: list[str]) -> list[ScanRequest]:
    """Batch ``k``: ten scans of codes that come round again every 30 batches,
    by users that come round every 13 scans."""
    return [ScanRequest(f"k{k}-{i}", codes[(k * PER_BATCH + i * 7) % CODES], f"u{(k + i) % 13}",
                        region=CHENGDU, time_ms=NOON + k) for i in range(PER_BATCH)]


def _decider(url: str, data: str, codes: list[str], acks: str, batches: int) -> None:
    """Decide batches 0, 1, ... in order; after each, append its decisions to
    ``acks`` (one JSON line, flushed). A lost connection: reconnect and send the
    same batch again."""
    import psycopg

    with scangate.open_data_dir(data) as dd, open(acks, "a", encoding="utf-8") as out:
        store = PgStore(url)
        k = 0
        while k < batches:
            try:
                decided = rewards.decide_scans_on(store, dd, _batch(k, codes), now_ms=lambda: NOON + 60_000)
            except psycopg.OperationalError:
                time.sleep(0.2)
                try:
                    store.close()
                    store = PgStore(url)
                except psycopg.OperationalError:
                    pass
                continue
            out.write(json.dumps([k, [msgspec.json.encode(d).decode() for d in decided]]) + "\n")
            out.flush()
            k += 1
        store.close()


def _acked(acks: Path) -> dict[int, list[Decision]]:
    out = {}
    for line in acks.read_text(encoding="utf-8").splitlines():
        try:
            k, decided = json.loads(line)
        except ValueError:
            break       # a line cut short by the kill: not acknowledged
        out[k] = [msgspec.json.decode(d, type=Decision) for d in decided]
    return out


def _wait_for_acks(acks: Path, at_least: int, proc: multiprocessing.process.BaseProcess, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if acks.exists() and len(_acked(acks)) >= at_least:
            return
        assert proc.is_alive(), "the decider died"
        time.sleep(0.02)
    raise AssertionError(f"fewer than {at_least} batches acknowledged in {timeout} s")


def _check(url: str, data: Path, codes: list[str], acked: dict[int, list[Decision]]) -> None:
    """Every acknowledged batch is stored as acknowledged; deciding every batch up
    to two past the last acknowledged one again (the in-flight batch: committed
    or not) decides each scan once: each code's history counts its scans."""
    last = max(acked)
    assert sorted(acked) == list(range(last + 1))
    with scangate.open_data_dir(data) as dd, PgStore(url) as store:
        again = {k: rewards.decide_scans_on(store, dd, _batch(k, codes), now_ms=lambda: NOON + 7_200_000)
                 for k in range(last + 3)}
        for k, decided in acked.items():
            assert again[k] == decided, k     # a retry gets what was acknowledged
        scans: dict[str, int] = {}
        for k in range(last + 3):
            for r in _batch(k, codes):
                scans[r.code] = scans.get(r.code, 0) + 1
        serials = dict(zip(codes, dd.verify_codes(codes).serial.tolist()))
        histories = store.records("scans")
        for code, n in scans.items():
            assert History.unpack(histories[layout.serial_key(serials[code])]).count == n, code
        paid = [d.award.payout_key for decided in again.values() for d in decided if isinstance(d, Decision) and d.award]
        assert len(paid) == len(set(paid)) == store.count("outbox")


@pytest.fixture(scope="module")
def cluster() -> Iterator[PgCluster]:
    with pg_cluster() as c:
        yield c


@pytest.fixture
def world(cluster: PgCluster, tmp_path: Path) -> tuple[str, Path, list[str]]:
    url = cluster.new_database()
    with PgStore(url) as store:
        store.migrate()
    data = tmp_path / "d"
    with scangate.init_data_dir(data) as dd:
        rewards.put_campaign(dd, CAMPAIGN, "c.toml")
        codes = dd.issue_codes("SKU-K", "item", CODES).as_strings()
    return url, data, codes


def _start(world: tuple[str, Path, list[str]], acks: Path, batches: int = 400) -> multiprocessing.process.BaseProcess:
    url, data, codes = world
    proc = multiprocessing.get_context("spawn").Process(target=_decider, args=(url, str(data), codes, str(acks),
                                                                                  batches))
    proc.start()
    return proc


@pytest.mark.parametrize("after", [15, 40])
def test_kill_9_of_a_decider_mid_batch_loses_nothing_acknowledged(world: tuple[str, Path, list[str]],
                                                                   tmp_path: Path, after: int) -> None:
    acks = tmp_path / "acks.jsonl"
    proc = _start(world, acks)
    _wait_for_acks(acks, after, proc)
    time.sleep(0.013 * (after % 7))             # somewhere inside a batch
    assert proc.pid is not None
    os.kill(proc.pid, signal.SIGKILL)
    proc.join(30)
    assert proc.exitcode == -signal.SIGKILL
    _check(world[0], world[1], world[2], _acked(acks))


def test_kill_9_of_the_postmaster_under_a_decider_loses_nothing_acknowledged(
        cluster: PgCluster, world: tuple[str, Path, list[str]], tmp_path: Path) -> None:
    acks = tmp_path / "acks.jsonl"
    proc = _start(world, acks, batches=80)
    _wait_for_acks(acks, 20, proc)
    cluster.kill()                              # every backend gone, mid-batch or between batches
    before = len(_acked(acks))
    time.sleep(0.5)
    cluster.start()                             # crash recovery from the WAL
    proc.join(240)
    assert proc.exitcode == 0, "the decider did not finish its batches after the restart"
    acked = _acked(acks)
    assert len(acked) == 80 and before < 80
    _check(world[0], world[1], world[2], acked)
