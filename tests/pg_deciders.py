"""A decider process for the PostgreSQL crash and failover tests, and the check
after it: numbered batches (``batch``: the tests know each one's requests),
each batch's decisions appended to an acknowledgement file after
``decide_scans_on`` returned (what a server would have answered); a lost
connection is retried with the same batch, as a client retries with the same
request ids. ``check`` then finds every acknowledged decision stored as
acknowledged and every scan decided once."""
from __future__ import annotations

import json
import multiprocessing
import time
from pathlib import Path

import msgspec

import scangate
from scangate import rewards
from scangate.rewards import Decision, ScanRequest
from scangate.state import layout
from scangate.state.pg import PgStore, StoreUnavailable
from scangate.state.records import History

from fixtures_campaigns import CHENGDU, NOON, campaign

CAMPAIGN = campaign(prizes='[[prizes]]\nid = "cash"\nkind = "cash"\namount_fen = 100\nbudget_count = 150\n',
                    odds="50%", tail="[caps]\nper_user_daily_count = 10\n")
CODES = 300
PER_BATCH = 10


def world(url: str, root: Path) -> tuple[Path, list[str]]:
    """The schema made at ``url``; a data directory under ``root`` holding the
    campaign and CODES codes (the data directory and the codes)."""
    with PgStore(url) as store:
        store.migrate()
    data = root / "d"
    with scangate.init_data_dir(data) as dd:
        rewards.put_campaign(dd, CAMPAIGN, "c.toml")
        codes = dd.issue_codes("SKU-K", "item", CODES).as_strings()
    return data, codes


def batch(k: int, codes: list[str]) -> list[ScanRequest]:
    """Batch ``k``: ten scans of codes that come round again every 30 batches,
    by users that come round every 13 scans."""
    return [ScanRequest(f"k{k}-{i}", codes[(k * PER_BATCH + i * 7) % CODES], f"u{(k + i) % 13}",
                        region=CHENGDU, time_ms=NOON + k) for i in range(PER_BATCH)]


def decider(url: str, data: str, codes: list[str], acks: str, batches: int) -> None:
    """Decide batches 0, 1, ... in order; after each, append its decisions to
    ``acks`` (one JSON line, flushed). A lost connection: reconnect and send the
    same batch again."""
    import psycopg

    with scangate.open_data_dir(data) as dd, open(acks, "a", encoding="utf-8") as out:
        store = PgStore(url)
        k = 0
        while k < batches:
            try:
                decided = rewards.decide_scans_on(store, dd, batch(k, codes), now_ms=lambda: NOON + 60_000)
            except (psycopg.OperationalError, StoreUnavailable):
                # down for longer than decide_scans_on waits: the client's retry
                time.sleep(0.2)
                continue
            out.write(json.dumps([k, [msgspec.json.encode(d).decode() for d in decided]]) + "\n")
            out.flush()
            k += 1
        store.close()


def acked(acks: Path) -> dict[int, list[Decision]]:
    out = {}
    for line in acks.read_text(encoding="utf-8").splitlines():
        try:
            k, decided = json.loads(line)
        except ValueError:
            break       # a line cut short by the kill: not acknowledged
        out[k] = [msgspec.json.decode(d, type=Decision) for d in decided]
    return out


def wait_for_acks(acks: Path, at_least: int, proc: multiprocessing.process.BaseProcess, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if acks.exists() and len(acked(acks)) >= at_least:
            return
        assert proc.is_alive(), "the decider died"
        time.sleep(0.02)
    raise AssertionError(f"fewer than {at_least} batches acknowledged in {timeout} s")


def check(url: str, data: Path, codes: list[str], acked: dict[int, list[Decision]]) -> None:
    """Every acknowledged batch is stored as acknowledged; deciding every batch up
    to two past the last acknowledged one again (the in-flight batch: committed
    or not) decides each scan once: each code's history counts its scans."""
    last = max(acked)
    assert sorted(acked) == list(range(last + 1))
    with scangate.open_data_dir(data) as dd, PgStore(url) as store:
        again = {k: rewards.decide_scans_on(store, dd, batch(k, codes), now_ms=lambda: NOON + 7_200_000)
                 for k in range(last + 3)}
        for k, decided in acked.items():
            assert again[k] == decided, k     # a retry gets what was acknowledged
        scans: dict[str, int] = {}
        for k in range(last + 3):
            for r in batch(k, codes):
                scans[r.code] = scans.get(r.code, 0) + 1
        serials = dict(zip(codes, dd.verify_codes(codes).serial.tolist()))
        histories = store.records("scans")
        for code, n in scans.items():
            assert History.unpack(histories[layout.serial_key(serials[code])]).count == n, code
        paid = [d.award.payout_key for decided in again.values() for d in decided if isinstance(d, Decision) and d.award]
        assert len(paid) == len(set(paid)) == store.count("outbox")
