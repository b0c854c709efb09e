"""Crash test of reward decisions: scans in flight in a real process, `kill -9` at
random points, restart; the ledger, budgets, points and outbox agree, nothing that
was acknowledged is lost, and a retry of an acknowledged request gets the same
decision. And a batch the store cannot hold (a full LMDB map) writes nothing: its
retry, once there is room, decides as if it had never been tried."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import lmdb     # only its MapFullError: what the store raises when its map fills, the point of the last test
import scangate
from scangate import clock, rewards
from scangate.rewards import Decision, ScanRequest
from scangate.state import raw as state_raw
from scangate.state import reads

CAMPAIGN = """
id = "crash"
name = "Crash test"
start = 2026-03-01
end = 2026-07-01
actor = "consumer"
odds = "50%"
consolation = "points-3"

[[prizes]]
id = "cny-2"
kind = "cash"
amount_fen = 200
budget_count = 150

[[prizes]]
id = "points-3"
kind = "points"
points = 3

[caps]
per_user_daily_count = 10
"""
T0 = 1_775_000_000_000  # 2026-04-01, inside the window
N = 1500

# The driver decides the scans in batches of 15 and prints each decision only
# after decide_scans returned, i.e. after its transaction committed.
DRIVER = textwrap.dedent("""
    import json, sys
    import scangate
    from scangate import rewards
    codes = open(sys.argv[2]).read().split()
    with scangate.open_data_dir(sys.argv[1], store=sys.argv[3] or None) as dd:
        for start in range(0, len(codes), 15):
            batch = [rewards.ScanRequest(f"r{i}", codes[i], f"u{i % 97}", region=510104, time_ms={t0} + i)
                     for i in range(start, min(start + 15, len(codes)))]
            for d in rewards.decide_scans(dd, batch):
                print(json.dumps(d.to_json()), flush=True)
""").replace("{t0}", str(T0))

def run_driver(data: Path, codes: Path, kill_after_lines: int | None, store: str | None = None) -> list[dict]:
    acked = []
    with subprocess.Popen([sys.executable, "-c", DRIVER, str(data), str(codes), store or ""],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as proc:
        assert proc.stdout is not None and proc.stderr is not None
        for line in proc.stdout:
            acked.append(json.loads(line))
            if kill_after_lines is not None and len(acked) >= kill_after_lines:
                os.kill(proc.pid, signal.SIGKILL)
                break
        errors = proc.stderr.read()
        proc.wait(timeout=120)
    if kill_after_lines is None:
        assert proc.returncode == 0, errors
    else:
        assert proc.returncode == -signal.SIGKILL, errors
    return acked


def test_kill_9_during_decisions(tmp_path: Path, store_url: str | None) -> None:
    """On both stores (conftest's ``store_url``): the LMDB store, PostgreSQL."""
    data = tmp_path / "d"
    with scangate.init_data_dir(data) as dd:
        rewards.put_campaign(dd, CAMPAIGN, "crash.toml")
        (tmp_path / "codes.txt").write_text("\n".join(dd.issue_codes("BEER", "item", N).as_strings()))
    codes = tmp_path / "codes.txt"
    rng = random.Random(20261122)
    acknowledged: dict[str, dict] = {}
    for _ in range(3):
        # well before the end: the pipe buffers ~60 decisions, the driver must still be running
        for d in run_driver(data, codes, kill_after_lines=rng.randrange(50, N - 300), store=store_url):
            first = acknowledged.setdefault(d["request_id"], d)
            assert first == d, "a retry got a different decision"
    for d in run_driver(data, codes, kill_after_lines=None, store=store_url):     # finish, retrying everything
        first = acknowledged.setdefault(d["request_id"], d)
        assert first == d, "a retry got a different decision"
    assert len(acknowledged) == N

    with scangate.open_data_dir(data, store=store_url) as dd:
        # the requests index points at each decision's entry in the decision log
        # (a record is the decision's number, then the request's fingerprint)
        request_ids = [k.decode() for k in reads.requests(dd)]
        assert len(reads.decision_log(dd)) == len(request_ids)
        budgets = reads.budgets(dd)
        # b/<actor>: balance and points earned (nothing is redeemed here: equal)
        accounts = reads.points_accounts(dd)
        # a stored decision has no message (it is derived from the rest): from_json().to_json() adds it
        found = {rid: reads.decision_of(dd, rid) for rid in request_ids}
        stored = {rid: Decision.from_json(r).to_json() for rid, r in found.items() if r is not None}
        assert len(stored) == len(request_ids)                          # every request has its decision
        ledger = list(reads.ledger(dd))
        outbox = list(reads.outbox(dd).values())
    assert all(b == e for b, e in accounts.values())
    balances = {actor: b for actor, (b, _e) in accounts.items()}
    # nothing acknowledged is lost, and what is stored is what was acknowledged
    assert {k: stored[k] for k in acknowledged} == acknowledged
    # one draw per code; ledger, budgets, outbox and points agree
    assert len({e["serial"] for e in ledger}) == len(ledger) == N
    seqs = [e["seq"] for e in ledger]
    if store_url is None:       # one writer: numbers without gaps
        assert seqs == list(range(1, N + 1))
    else:                       # a block of numbers per batch (scangate.state.pg): increasing, unique
        assert seqs == sorted(set(seqs))
    cash = [e for e in ledger if e["prize_id"] == "cny-2"]
    assert budgets["crash/cny-2"] == (len(cash), 200 * len(cash))
    assert len(cash) <= 150                                              # never overspent
    assert sorted(o["key"] for o in outbox) == sorted(e["payout_key"] for e in cash)
    points = {}
    for e in ledger:
        if e["points"]:
            points[e["actor"]] = points.get(e["actor"], 0) + e["points"]
    assert points == balances
    awards = [d["award"] for d in acknowledged.values() if d["award"]]
    assert sum(a["amount_fen"] for a in awards) == 200 * len(cash)
    with scangate.open_data_dir(data, store=store_url) as dd:         # every draw replays
        assert all(rewards.audit_entry(dd, e["seq"])["verified"] for e in ledger[::25])


def stored(dd: scangate.DataDir) -> dict[str, list[tuple[bytes, bytes]]]:
    return state_raw.dump(dd)


def test_a_batch_the_store_cannot_hold_writes_nothing_and_its_retry_decides_as_if_never_tried(
        tmp_path: Path) -> None:
    """The map fills inside a batch's transaction: decide_scans raises and nothing
    of the batch is stored. Reopened with room, that batch and the next get the
    decisions, and leave the bytes, that a store never full gives."""
    full, roomy = tmp_path / "full", tmp_path / "roomy"
    # payout requests carry the clock's time: one fixed clock makes both stores comparable byte for byte
    with clock.use(clock.ManualClock(T0)):
        with scangate.init_data_dir(full) as dd:
            rewards.put_campaign(dd, CAMPAIGN, "crash.toml")
            codes = dd.issue_codes("BEER", "item", 3000).as_strings()
        shutil.copytree(full, roomy)
        # 23 users a minute apart: daily caps and days come into play; each batch
        # also retries the first request of the batch before
        requests = [ScanRequest(f"r{i}", c, f"u{i % 23}", region=510104, time_ms=T0 + 60_000 * i)
                    for i, c in enumerate(codes)]
        batches = [requests[s:s + 15] + requests[max(s - 15, 0):max(s - 15, 0) + 1] for s in range(0, 3000, 15)]

        room = (full / "lmdb" / "data.mdb").stat().st_size + (1 << 20)
        failed = None
        with scangate.open_data_dir(full, map_size=room) as dd:
            for k, batch in enumerate(batches):
                before = stored(dd)
                try:
                    rewards.decide_scans(dd, batch)
                except lmdb.MapFullError:
                    failed = k
                    break
            assert failed is not None and failed > 2, "the map never filled, or filled at once"
            assert stored(dd) == before                          # not one write of the failed batch
        with scangate.open_data_dir(full) as dd:                 # room again (the default map)
            retried = [[d.to_json() for d in rewards.decide_scans(dd, b)] for b in batches[failed:failed + 3]]
            got = stored(dd)
        with scangate.open_data_dir(roomy) as dd:
            for b in batches[:failed]:
                rewards.decide_scans(dd, b)
            expected = [[d.to_json() for d in rewards.decide_scans(dd, b)] for b in batches[failed:failed + 3]]
            assert got == stored(dd)
    assert retried == expected
    assert any(d["award"] for ds in retried for d in ds)          # the retried batches drew prizes
