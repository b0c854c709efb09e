"""The payout worker: rate limit, retries with the same key, and crashes that
neither lose nor duplicate a payout (a real `kill -9` of `scangate payouts run`)."""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import msgspec
import pytest

import scangate
from scangate import clock, rewards
from scangate.errors import CorruptionError
from scangate.state import outbox, records
from scangate.payouts import DEFAULT_LEASE_MS, FileAdapter, list_payouts, run_payouts
from scangate.rewards import ScanRequest

from fixtures_campaigns import CASH_1, campaign

SCANGATE = str(Path(sys.executable).with_name("scangate"))
SHANGHAI = dt.timezone(dt.timedelta(hours=8))
T0 = int(dt.datetime(2026, 4, 2, 10, 0, tzinfo=SHANGHAI).timestamp() * 1000)

CAMPAIGN = campaign(cid="cash-all", name="Every scan wins 1 CNY", prizes=CASH_1,
                    tail="[caps]\nper_user_daily_count = 10\n")


def make_awards(root: Path, n: int) -> scangate.DataDir:
    dd = scangate.init_data_dir(root)
    rewards.put_campaign(dd, CAMPAIGN, "cash.toml")
    codes = dd.issue_codes("BEER-500", "item", n).as_strings()
    # one scan per user so the daily cap never bites: n awards of 100 fen
    decisions = rewards.decide_scans(dd, [ScanRequest(f"r{i}", c, f"user-{i}", region=510104, time_ms=T0 + i)
                                          for i, c in enumerate(codes)])
    assert all(d.award is not None and d.award.payout_key for d in decisions)
    return dd


class FakeClock:
    def __init__(self) -> None:
        self.t = 0.0
        self.slept = 0.0

    def clock(self) -> float:
        return self.t

    def sleep(self, s: float) -> None:
        self.slept += s
        self.t += s


def test_rate_limit_and_confirmation(tmp_path: Path) -> None:
    dd = make_awards(tmp_path / "d", 61)
    assert len(list_payouts(dd, "pending")) == 61
    fake = FakeClock()
    counts = run_payouts(dd, FileAdapter(tmp_path / "out.jsonl"), rate_per_s=30, clock=fake.clock, sleep=fake.sleep)
    assert counts == {"confirmed": 61, "failed": 0}
    assert fake.slept == pytest.approx(60 / 30)          # 61 sends at 30/s: 2 s of waiting
    assert {r["state"] for r in list_payouts(dd)} == {"confirmed"}
    lines = [json.loads(x) for x in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert len(lines) == 61 and len({x["key"] for x in lines}) == 61
    assert sum(x["amount_fen"] for x in lines) == 61 * 100
    # a second run has nothing due
    assert run_payouts(dd, FileAdapter(tmp_path / "out.jsonl"), clock=fake.clock, sleep=fake.sleep) == \
        {"confirmed": 0, "failed": 0}
    dd.close()


class Flaky:
    """Fails the first send of every key; records every key it saw."""

    def __init__(self, inner: FileAdapter):
        self.inner = inner
        self.calls: list[str] = []

    def send(self, request: dict[str, Any]) -> str:
        self.calls.append(request["key"])
        if self.calls.count(request["key"]) == 1:
            raise ConnectionError("rail timeout")
        return self.inner.send(request)


def test_failures_retry_with_the_same_key_after_backoff(tmp_path: Path) -> None:
    dd = make_awards(tmp_path / "d", 3)
    adapter = Flaky(FileAdapter(tmp_path / "out.jsonl"))
    now = [1_000_000]
    fake = FakeClock()
    first = run_payouts(dd, adapter, clock=fake.clock, sleep=fake.sleep, now_ms=lambda: now[0])
    assert first == {"confirmed": 0, "failed": 3}
    failed = list_payouts(dd, "failed")
    assert len(failed) == 3 and all("rail timeout" in r["error"] and r["attempts"] == 1 for r in failed)
    # not due before the back-off has passed
    assert run_payouts(dd, adapter, clock=fake.clock, sleep=fake.sleep, now_ms=lambda: now[0] + 10) == \
        {"confirmed": 0, "failed": 0}
    now[0] += 60_000
    assert run_payouts(dd, adapter, clock=fake.clock, sleep=fake.sleep, now_ms=lambda: now[0]) == \
        {"confirmed": 3, "failed": 0}
    assert sorted(adapter.calls) == sorted(k for r in failed for k in (r["key"], r["key"]))
    assert all(r["attempts"] == 2 for r in list_payouts(dd, "confirmed"))
    dd.close()


class Recording:
    """Confirms every send; records what the rail was sent."""

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []

    def send(self, request: dict[str, Any]) -> str:
        self.sent.append(dict(request))
        return f"conf-{request['key']}"


def test_outbox_rows_are_typed_records_and_the_edges_see_dicts(tmp_path: Path) -> None:
    """An outbox row is a records.Payout in msgpack; the rail and list_payouts see
    the dict of its fields (the lease fields only while set), as before."""
    dd = make_awards(tmp_path / "d", 2)
    pending = {r.key: r for r in outbox.payouts(dd)}
    assert len(pending) == 2
    base = {key: {"key": key, "ledger_seq": r.ledger_seq, "actor": r.actor, "prize_id": "cny-1", "kind": "cash",
                  "amount_fen": 100, "coupon": None, "created_ms": r.created_ms} for key, r in pending.items()}
    assert sorted(r.actor for r in pending.values()) == ["user-0", "user-1"]
    assert all(r.state == "pending" and r.attempts == 0 and r.lease_owner is None for r in pending.values())
    assert list_payouts(dd) == [{**base[k], "state": "pending", "attempts": 0} for k in sorted(base)]

    rail, fake = Recording(), FakeClock()
    counts = run_payouts(dd, rail, clock=fake.clock, sleep=fake.sleep, now_ms=lambda: 5_000, runner_id="runner-1")
    assert counts == {"confirmed": 2, "failed": 0}
    assert rail.sent == [{**base[k], "state": "sending", "attempts": 1, "lease_owner": "runner-1",
                          "lease_expires_ms": 5_000 + DEFAULT_LEASE_MS} for k in sorted(base)]
    done = {r.key: r for r in outbox.payouts(dd)}
    assert done == {k: msgspec.structs.replace(r, state="confirmed", attempts=1, lease_owner="runner-1",
                                               confirmation=f"conf-{k}", confirmed_ms=5_000)
                    for k, r in pending.items()}
    confirmed = [{**base[k], "state": "confirmed", "attempts": 1, "lease_owner": "runner-1",
                  "confirmation": f"conf-{k}", "confirmed_ms": 5_000} for k in sorted(base)]
    assert list_payouts(dd) == confirmed and list_payouts(dd, "confirmed") == confirmed
    assert list_payouts(dd, "pending") == []
    dd.close()


def test_the_outbox_changes_a_leased_row_only_for_the_runner_that_holds_it(tmp_path: Path) -> None:
    """scangate.state.outbox: the candidate scan pages through the rows a predicate
    picks; a lease is taken in one write transaction where the predicate still
    holds; renew and finish change a row only while it is sending under the
    runner's name (its lease run out or not); a leased row gone is corruption, and
    the transaction that met it writes nothing."""
    dd = make_awards(tmp_path / "d", 3)
    rows = outbox.payouts(dd)
    keys = [r.key.encode() for r in rows]
    assert keys == sorted(keys) and [r.state for r in rows] == ["pending"] * 3

    def every(row: records.Payout) -> bool:
        return True

    def not_the_middle(row: records.Payout) -> bool:
        return row.key != rows[1].key

    assert outbox.candidates(dd, None, every, 2) == (keys[:2], keys[1], False)
    assert outbox.candidates(dd, keys[1], every, 2) == (keys[2:], keys[2], True)
    assert outbox.candidates(dd, keys[2], every, 2) == ([], keys[2], True)
    assert outbox.candidates(dd, None, not_the_middle, 5) == ([keys[0], keys[2]], keys[2], True)

    replace = msgspec.structs.replace
    leased = outbox.lease(dd, [*keys, b"cash-all:999"], not_the_middle, "runner-1", 1_000, 500)
    assert leased == [(k, replace(r, state="sending", attempts=1, lease_owner="runner-1", lease_expires_ms=1_500))
                      for k, r in zip(keys, rows) if k != keys[1]]
    held = [leased[0][1], rows[1], leased[1][1]]
    assert outbox.payouts(dd) == held
    # another runner can neither renew nor finish them
    assert outbox.renew(dd, keys, "runner-2", 2_000, 500) == set()
    assert not outbox.finish(dd, keys[0], "runner-2", state="confirmed", confirmation="c-2")
    assert outbox.payouts(dd) == held
    # the holder can, after its lease ran out too (nobody took the rows over); a pending row is nobody's
    assert outbox.renew(dd, keys, "runner-1", 2_000, 500) == {keys[0], keys[2]}
    assert outbox.finish(dd, keys[0], "runner-1", state="confirmed", confirmation="c-1", confirmed_ms=2_100)
    after = [replace(held[0], state="confirmed", confirmation="c-1", confirmed_ms=2_100, lease_expires_ms=None),
             rows[1], replace(held[2], lease_expires_ms=2_500)]
    assert outbox.payouts(dd) == after
    # finished: no longer sending, so no longer the runner's
    assert outbox.renew(dd, [keys[0]], "runner-1", 3_000, 500) == set()
    assert not outbox.finish(dd, keys[0], "runner-1", state="failed", error="late")
    with pytest.raises(CorruptionError, match="outbox row 'cash-all:999' is missing"):
        outbox.finish(dd, b"cash-all:999", "runner-1", state="confirmed")
    with pytest.raises(CorruptionError, match="outbox row 'cash-all:999' is missing"):
        outbox.renew(dd, [keys[2], b"cash-all:999"], "runner-1", 3_000, 500)
    assert outbox.payouts(dd) == after          # keys[2]'s renewal went with the aborted transaction
    dd.close()


class PaysThenCrashes:
    """Pays (through the file) and then fails before the worker can record it:
    the worst moment for a crash."""

    def __init__(self, inner: FileAdapter):
        self.inner = inner

    def send(self, request: dict[str, Any]) -> str:
        self.inner.send(request)
        raise RuntimeError("crashed after paying")


def test_a_crash_after_paying_does_not_pay_twice(tmp_path: Path) -> None:
    dd = make_awards(tmp_path / "d", 4)
    out = tmp_path / "out.jsonl"
    fake = FakeClock()
    run_payouts(dd, PaysThenCrashes(FileAdapter(out)), clock=fake.clock, sleep=fake.sleep, now_ms=lambda: 0)
    assert len(list_payouts(dd, "failed")) == 4
    # the retry sends the same keys; the rail answers with the first confirmation
    counts = run_payouts(dd, FileAdapter(out), clock=fake.clock, sleep=fake.sleep, now_ms=lambda: 10**12)
    assert counts == {"confirmed": 4, "failed": 0}
    keys = [json.loads(x)["key"] for x in out.read_text().splitlines()]
    assert len(keys) == 4 and len(set(keys)) == 4
    dd.close()


def test_kill_9_during_payouts_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    data = tmp_path / "d"
    make_awards(data, 90).close()
    out = tmp_path / "out.jsonl"
    proc = subprocess.Popen([SCANGATE, "payouts", "run", "--data", str(data), "--out", str(out), "--rate", "60"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and (not out.exists() or len(out.read_text().splitlines()) < 20):
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    assert proc.wait(timeout=30) == -signal.SIGKILL
    delivered_before = len(out.read_text().splitlines())
    assert 20 <= delivered_before < 90, "the kill did not land mid-run"
    rerun = subprocess.run([SCANGATE, "payouts", "run", "--data", str(data), "--out", str(out), "--rate", "1000",
                            "--json"], capture_output=True, text=True, timeout=120)
    assert rerun.returncode == 0, rerun.stderr
    with scangate.open_data_dir(data) as dd:
        # the killed runner's leased batch waits for its lease to run out ...
        held = [r for r in list_payouts(dd) if r["state"] != "confirmed"]
        assert held and all(r["state"] == "sending" and r["lease_owner"] for r in held)
        # ... and then the next runner sends it again with the same key
        later = clock.now_ms() + DEFAULT_LEASE_MS + 1
        run_payouts(dd, FileAdapter(out), rate_per_s=1000, now_ms=lambda: later)
        rows = list_payouts(dd)
        assert {r["state"] for r in rows} == {"confirmed"} and len(rows) == 90
    keys = [json.loads(x)["key"] for x in out.read_text().splitlines()]
    assert len(keys) == 90 and len(set(keys)) == 90          # every award paid, none twice


def test_file_adapter_drops_a_line_cut_short_by_a_crash(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    first = FileAdapter(out)
    request = {"key": "c:1", "actor": "u", "kind": "cash", "amount_fen": 100, "prize_id": "p"}
    confirmation = first.send(request)
    with open(out, "ab") as f:
        f.write(b'{"key": "c:2", "confirm')          # the crash came mid-write
    again = FileAdapter(out)
    assert again.send(request) == confirmation       # the same key: the same payment
    again.send({**request, "key": "c:2"})
    keys = [json.loads(x)["key"] for x in out.read_text().splitlines()]
    assert keys == ["c:1", "c:2"]
