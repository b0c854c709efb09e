"""Several payout runners at once: real processes on one LMDB data directory and
one adapter file. Each award must be paid exactly once whatever the number of
runners, a killed runner's leased rows must wait for the lease to run out and then
be paid (once) by the next runner, and a runner whose lease was taken over must
not overwrite the new owner's state.

Nothing here depends on the date or on timing: the lease clock (``now_ms``) is
injected, and the runners are held at chosen points by lines on their stdin.
Run as a script, this file is one runner process (see ``_child``).
"""

from __future__ import annotations

import json
import queue
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import scangate
from scangate.payouts import FileAdapter, list_payouts, run_payouts
from test_payouts import make_awards

T0 = 1_800_000_000_000      # the injected lease clock of the first runner: no relation to today
LATER = T0 + 10**9          # past any lease a runner could have taken at T0 (11 days)
WAIT_S = 120                # a guard against a hung child, never a timing assumption


# ---------------------------------------------------------------- the child process

class Scripted:
    """The child's adapter: the file adapter, held or cut short where the test says."""

    def __init__(self, inner: FileAdapter, cfg: dict[str, Any]):
        self.inner = inner
        self.cfg = cfg
        self.sends = 0

    def send(self, request: dict[str, Any]) -> str:
        self.sends += 1
        mode = self.cfg["mode"]
        if mode == "gate" and self.sends == 1:
            _say("ready")                           # holding a leased batch, about to send
            _hear()
        elif mode == "hang" and self.sends > self.cfg["deliver"]:
            self.inner.send(request)                # paid, not yet confirmed: the worst moment to die
            _say("sending", request["key"])
            threading.Event().wait()                # until kill -9
        elif mode == "stale":
            _say("sending", request["key"])
            if _hear() == "raises":
                raise ConnectionError("rail timeout")
            return "stale"                          # what the stale runner would record
        return self.inner.send(request)


def _say(*words: str) -> None:
    print(*words, flush=True)


def _hear() -> str:
    return sys.stdin.readline().strip()


def _child(cfg: dict[str, Any]) -> None:
    if cfg["mode"] == "adapter":                    # the file adapter alone, several processes on one file
        adapter = FileAdapter(cfg["out"])
        _say("ready")
        _hear()
        _say("confirmations", json.dumps({key: adapter.send(_request(key)) for key in cfg["keys"]}))
        return
    now = cfg.get("now_ms")
    with scangate.open_data_dir(cfg["data"]) as dd:
        counts = run_payouts(dd, Scripted(FileAdapter(cfg["out"]), cfg), rate_per_s=10_000,
                             now_ms=(lambda: now) if now is not None else None)
    _say("counts", json.dumps(counts))


def _request(key: str) -> dict[str, Any]:
    return {"key": key, "actor": "u", "kind": "cash", "amount_fen": 100, "prize_id": "p"}


# ---------------------------------------------------------------- the parent's side

class Runner:
    """A child process, its stdout read line by line by a thread."""

    def __init__(self, tmp_path: Path, name: str, cfg: dict[str, Any]):
        self.err_path = tmp_path / f"{name}.stderr"
        self.err = open(self.err_path, "w")
        self.proc = subprocess.Popen([sys.executable, __file__, json.dumps(cfg)], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=self.err, text=True)
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line)
        self.lines.put(None)

    def expect(self, word: str) -> list[str]:
        line = self.lines.get(timeout=WAIT_S)
        assert line is not None and line.split()[0] == word, (line, self.err_path.read_text())
        return line.split()[1:]

    def tell(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def result(self, word: str) -> Any:
        """The JSON the child printed after ``word``, once it has exited cleanly."""
        rest = self.expect(word)
        assert self.proc.wait(timeout=WAIT_S) == 0, self.err_path.read_text()
        return json.loads(" ".join(rest))

    def kill_9(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        assert self.proc.wait(timeout=WAIT_S) == -signal.SIGKILL

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=WAIT_S)
        self.reader.join(timeout=WAIT_S)
        for f in (self.proc.stdin, self.proc.stdout, self.err):
            if f is not None:
                f.close()


@pytest.fixture
def runners(tmp_path: Path) -> Iterator[Callable[..., Runner]]:
    started: list[Runner] = []

    def start(name: str, **cfg: Any) -> Runner:
        started.append(Runner(tmp_path, name, cfg))
        return started[-1]

    yield start
    for r in started:
        r.close()


def _file(out: Path) -> list[dict[str, Any]]:
    return [json.loads(x) for x in out.read_text().splitlines()]


def _outbox(data: Path) -> dict[str, dict[str, Any]]:
    with scangate.open_data_dir(data) as dd:
        return {r["key"]: r for r in list_payouts(dd)}


def _paid_once(out: Path, data: Path, n: int) -> None:
    """Every award paid, none twice, and every row confirmed with the file's confirmation."""
    lines = _file(out)
    assert len(lines) == n and len({x["key"] for x in lines}) == n
    rows = _outbox(data)
    assert len(rows) == n and {r["state"] for r in rows.values()} == {"confirmed"}
    assert {x["key"]: x["confirmation"] for x in lines} == {k: r["confirmation"] for k, r in rows.items()}


# ---------------------------------------------------------------- the tests

def test_four_runner_processes_pay_each_award_once(tmp_path: Path, runners: Callable[..., Runner]) -> None:
    data, out = tmp_path / "d", tmp_path / "out.jsonl"
    make_awards(data, 200).close()
    procs = [runners(f"runner-{i}", mode="gate", data=str(data), out=str(out)) for i in range(4)]
    # all four are mid-run at once: each has taken its work and holds its first send
    for p in procs:
        p.expect("ready")
    for p in procs:
        p.tell("go")
    counts = [p.result("counts") for p in procs]
    assert sum(c["confirmed"] for c in counts) == 200, counts     # 200 sends in all, not 200 each
    assert all(c["failed"] == 0 and c["confirmed"] > 0 for c in counts), counts
    _paid_once(out, data, 200)


def test_a_killed_runners_leases_wait_for_expiry_then_are_paid_once(tmp_path: Path,
                                                                     runners: Callable[..., Runner]) -> None:
    data, out = tmp_path / "d", tmp_path / "out.jsonl"
    make_awards(data, 40).close()
    dead = runners("dead", mode="hang", deliver=3, data=str(data), out=str(out), now_ms=T0)
    [hung] = dead.expect("sending")
    row = _outbox(data)[hung]
    assert row["state"] == "sending" and row.get("lease_owner") and row.get("lease_expires_ms", 0) > T0 + 1, row
    dead.kill_9()                                   # while the row is sending, leased and already paid
    rows = _outbox(data)
    held = {k: r for k, r in rows.items() if r["state"] == "sending"}     # leased, not confirmed
    assert hung in held and all(r["lease_owner"] == row["lease_owner"] for r in held.values())
    assert sorted(r["state"] for r in rows.values() if r["key"] not in held) == \
        ["confirmed"] * 3 + ["pending"] * (40 - 3 - len(held))
    assert len(held) < 40 - 3, "leases are taken in small batches, not the whole outbox"

    # a runner whose clock is still inside the lease leaves the held rows alone
    early = runners("early", mode="file", data=str(data), out=str(out), now_ms=T0 + 1)
    assert early.result("counts") == {"confirmed": 40 - 3 - len(held), "failed": 0}
    rows = _outbox(data)
    assert {k: r for k, r in rows.items() if k in held} == held
    assert all(r["state"] == "confirmed" for k, r in rows.items() if k not in held)

    # past the lease, the next runner sends them again, with the same keys
    late = runners("late", mode="file", data=str(data), out=str(out), now_ms=LATER)
    assert late.result("counts") == {"confirmed": len(held), "failed": 0}
    _paid_once(out, data, 40)
    rows = _outbox(data)
    assert all(rows[k]["attempts"] == r["attempts"] + 1 and rows[k]["lease_owner"] != r["lease_owner"]
               for k, r in held.items())


class Rail:
    def __init__(self, confirmation: str):
        self.confirmation = confirmation

    def send(self, request: dict[str, Any]) -> str:
        return self.confirmation


@pytest.mark.parametrize("outcome", ["returns", "raises"])
def test_a_stale_runner_cannot_overwrite_the_new_owner(tmp_path: Path, runners: Callable[..., Runner],
                                                       outcome: str) -> None:
    data, out = tmp_path / "d", tmp_path / "out.jsonl"
    make_awards(data, 1).close()
    stale = runners("stale", mode="stale", data=str(data), out=str(out), now_ms=T0)
    [key] = stale.expect("sending")                 # the stale runner is mid-send ...
    with scangate.open_data_dir(data) as dd:        # ... when its lease runs out and another runner takes the row
        assert run_payouts(dd, Rail("new-owner"), now_ms=lambda: LATER) == {"confirmed": 1, "failed": 0}
    new = _outbox(data)[key]
    stale.tell(outcome)                             # then the stale send ends
    # it counts its send, but the row is the new owner's
    assert stale.result("counts") == ({"confirmed": 1, "failed": 0} if outcome == "returns"
                                      else {"confirmed": 0, "failed": 1})
    assert _outbox(data)[key] == new
    assert new["state"] == "confirmed" and new["confirmation"] == "new-owner" and "error" not in new



def test_a_runner_that_falls_behind_renews_its_leases_or_leaves_the_rows(tmp_path: Path) -> None:
    """A slow send (the lease clock jumps inside the adapter): the rest of the batch
    is renewed before the next send, and a row another runner took meanwhile is not
    sent by this runner at all."""
    dd = make_awards(tmp_path / "d", 3)
    now = [T0]
    sent: list[str] = []

    class Slow:
        def send(self, request: dict[str, Any]) -> str:
            sent.append(request["key"])
            if len(sent) == 1:
                now[0] = T0 + 600                   # past half of the 1 s lease
            elif len(sent) == 2:
                rows = list_payouts(dd)
                assert [r.get("lease_expires_ms") for r in rows[1:]] == [T0 + 1600] * 2    # renewed at T0 + 600
                now[0] = T0 + 1700                  # past the renewed lease: another runner takes rows 2 and 3
                assert run_payouts(dd, Rail("other"), now_ms=lambda: now[0]) == {"confirmed": 2, "failed": 0}
            return "slow"

    assert run_payouts(dd, Slow(), rate_per_s=10_000, lease_ms=1_000, now_ms=lambda: now[0]) == \
        {"confirmed": 2, "failed": 0}
    rows = list_payouts(dd)
    assert sent == [r["key"] for r in rows[:2]]     # the third row was the other runner's by then: not sent
    assert [(r["state"], r["confirmation"]) for r in rows] == [("confirmed", "slow")] + [("confirmed", "other")] * 2
    dd.close()

def test_file_adapter_writes_a_key_once_across_processes(tmp_path: Path, runners: Callable[..., Runner]) -> None:
    out = tmp_path / "out.jsonl"
    first = FileAdapter(out).send(_request("k:first"))
    keys = ["k:first"] + [f"k:{i}" for i in range(60)]
    # each process reads the file, then all append the same keys, each in its own order
    procs = [runners(f"writer-{i}", mode="adapter", out=str(out), keys=keys[i * 15:] + keys[:i * 15])
             for i in range(4)]
    for p in procs:
        p.expect("ready")
    for p in procs:
        p.tell("go")
    answers = [p.result("confirmations") for p in procs]
    lines = _file(out)
    assert [x["key"] for x in lines].count("k:first") == 1 and len(lines) == 61
    assert len({x["key"] for x in lines}) == 61 and len({x["confirmation"] for x in lines}) == 61
    written = {x["key"]: x["confirmation"] for x in lines}
    assert written["k:first"] == first and all(a == written for a in answers)


def test_file_adapter_drops_a_half_line_another_writer_left(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    mine = FileAdapter(out)
    c1 = mine.send(_request("c:1"))
    other = FileAdapter(out)                        # read the file before the crash below
    with open(out, "ab") as f:
        f.write(b'{"key": "c:2", "confirm')          # a writer died mid-line
    c3 = other.send(_request("c:3"))
    c2 = mine.send(_request("c:2"))
    assert [(x["key"], x["confirmation"]) for x in _file(out)] == [("c:1", c1), ("c:3", c3), ("c:2", c2)]
    assert len({c1, c2, c3}) == 3 and other.send(_request("c:2")) == c2


if __name__ == "__main__":
    _child(json.loads(sys.argv[1]))
