"""SIGTERM under load: every scan the server acknowledged is in the ledger, none
twice, and a retry after restart returns the acknowledged decision."""
from __future__ import annotations

import signal
import threading
import time
from pathlib import Path

import scangate
from scangate import rewards

from serverproc import running

CAMPAIGN = """
id = "load"
name = "Load"
start = 2026-01-01
end = 2030-01-01
actor = "consumer"
odds = "100%"

[[prizes]]
id = "pts-1"
kind = "points"
points = 1
"""
N_CODES = 6000
CLIENTS = 6


def test_sigterm_under_load_loses_nothing_acknowledged(tmp_path: Path) -> None:
    data = tmp_path / "d"
    with scangate.init_data_dir(data) as dd:
        rewards.put_campaign(dd, CAMPAIGN, "load.toml")
        codes = dd.issue_codes("BEER", "item", N_CODES).as_strings()
    acknowledged: dict[str, rewards.Decision] = {}
    refused: list[str] = []
    lock = threading.Lock()
    with running(data, "--workers", "2") as srv:
        target = srv.target

        def client(k: int) -> None:
            with scangate.Client(target, timeout=20) as c:
                for i in range(k, N_CODES, CLIENTS):
                    try:
                        d = c.scan(codes[i], f"user-{i % 50}", request_id=f"req-{i}", region=510104)
                    except scangate.ScangateError as exc:    # UNAVAILABLE once it shuts down
                        with lock:
                            refused.append(f"{type(exc).__name__}: {exc}")
                        if isinstance(exc, scangate.Unavailable):
                            return
                        continue
                    with lock:
                        acknowledged[d.request_id] = d

        threads = [threading.Thread(target=client, args=(k,)) for k in range(CLIENTS)]
        for t in threads:
            t.start()
        while len(acknowledged) < 300:                     # under load
            time.sleep(0.05)
        assert srv.stop(signal.SIGTERM) == 0
        for t in threads:
            t.join(60)
        logs = srv.logs()
    assert "worker stopped" in logs and "scangate: stopped" in logs
    assert 300 <= len(acknowledged) < N_CODES, (len(acknowledged), refused[:3])
    assert all(r.startswith("Unavailable") for r in refused), refused[:3]

    with scangate.open_data_dir(data) as dd:
        entries = []
        seq = 1
        while True:
            try:
                entries.append(rewards.audit_entry(dd, seq))
            except scangate.NotFound:
                break
            seq += 1
    by_request = {e["request_id"]: e for e in entries}
    assert len(by_request) == len(entries)                               # none twice
    assert len({e["serial"] for e in entries}) == len(entries)
    for rid, d in acknowledged.items():                                   # none lost
        assert d.award is not None and by_request[rid]["seq"] == d.award.ledger_seq
    assert all(e["verified"] for e in entries[::97])

    with running(data) as srv, scangate.Client(srv.target) as c:        # retries get the same answer
        for rid in list(acknowledged)[::50]:
            i = int(rid.split("-")[1])
            assert c.scan(codes[i], f"user-{i % 50}", request_id=rid, region=510104) == acknowledged[rid]


def test_a_killed_writer_is_restarted_and_retries_are_exact(tmp_path: Path) -> None:
    import json
    import os

    data = tmp_path / "d"
    with scangate.init_data_dir(data) as dd:
        rewards.put_campaign(dd, CAMPAIGN, "load.toml")
        codes = dd.issue_codes("BEER", "item", 20).as_strings()
    with running(data) as srv, scangate.Client(srv.target, timeout=10) as c:
        first = c.scan(codes[0], "u1", request_id="before", region=510104)
        writer_pid = next(json.loads(line)["pid"] for line in srv.stderr
                          if line.startswith("{") and '"writer serving"' in line)
        os.kill(writer_pid, signal.SIGKILL)
        deadline = time.monotonic() + 60
        while True:
            try:
                again = c.scan(codes[0], "u1", request_id="before", region=510104)
                break
            except scangate.Unavailable:
                assert time.monotonic() < deadline, srv.logs()[-3000:]
                time.sleep(0.2)
        assert again == first                                  # the committed decision, not a new one
        after = c.scan(codes[1], "u2", request_id="after", region=510104)
        assert after.award is not None and after.award.ledger_seq == first.award.ledger_seq + 1  # type: ignore[union-attr]
        assert "restarting" in srv.logs()
