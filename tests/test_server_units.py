"""The server's parts in process: the group-commit writer, rate limits, config."""
from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

import scangate
from scangate.config import load_config
from scangate.rewards import ScanRequest
from scangate.server.limits import RateLimiter
from scangate.server.writer import DeadlineExpired, GroupCommitWriter, WriterClosed


@pytest.fixture
def dd(tmp_path: Path):  # type: ignore[no-untyped-def]
    d = scangate.init_data_dir(tmp_path / "d")
    yield d
    d.close()


def test_writer_groups_concurrent_scans_into_few_commits(dd) -> None:  # type: ignore[no-untyped-def]
    codes = dd.issue_codes("BEER", "item", 400).as_strings()
    sizes: list[int] = []
    w = GroupCommitWriter(dd, max_batch=128, on_commit=lambda n, s: sizes.append(n))
    futures = [w.submit([ScanRequest(f"r{i}", c, f"u{i}")]) for i, c in enumerate(codes)]
    results = [f.result(30)[0] for f in futures]
    w.close()
    assert [d.request_id for d in results] == [f"r{i}" for i in range(400)]
    assert all(d.verdict.label == "genuine" for d in results)
    assert sum(sizes) == 400 and max(sizes) <= 128 and len(sizes) < 400


def test_writer_isolates_a_bad_request(dd) -> None:  # type: ignore[no-untyped-def]
    codes = dd.issue_codes("BEER", "item", 3).as_strings()
    gate = threading.Event()
    w = GroupCommitWriter(dd, on_commit=lambda n, s: gate.wait(5))
    first = w.submit([ScanRequest("a", codes[0], "u")])      # holds the writer while the others queue
    bad = w.submit([ScanRequest("b", codes[1], "u", actor_type="robot")])
    good = w.submit([ScanRequest("c", codes[2], "u")])
    gate.set()
    assert first.result(10)[0].request_id == "a"
    with pytest.raises(scangate.InvalidArgument, match="actor_type"):
        bad.result(10)
    assert good.result(10)[0].verdict.label == "genuine"
    w.close()


def test_writer_skips_expired_work_and_drains_on_close(dd) -> None:  # type: ignore[no-untyped-def]
    codes = dd.issue_codes("BEER", "item", 50).as_strings()
    w = GroupCommitWriter(dd)
    expired = w.submit([ScanRequest("late", codes[0], "u")], deadline=time.monotonic() - 1)
    queued = [w.submit([ScanRequest(f"q{i}", codes[i], "u")]) for i in range(1, 50)]
    w.close()                               # returns after everything queued was committed
    with pytest.raises(DeadlineExpired):
        expired.result(0)
    assert all(f.done() and f.result(0)[0].verdict.label == "genuine" for f in queued)
    with pytest.raises(WriterClosed):
        w.submit([ScanRequest("after", codes[0], "u")])
    again = GroupCommitWriter(dd)           # the late scan was never written: it decides fresh
    d = again.submit([ScanRequest("late", codes[0], "u2")]).result(10)[0]
    again.close()
    assert d.verdict.scan_count == 1


def test_rate_limiter_refills_and_forgets() -> None:
    now = [0.0]
    lim = RateLimiter(3, 60.0, max_keys=2, clock=lambda: now[0])
    assert [lim.allow("a") for _ in range(4)] == [True, True, True, False]
    now[0] += 20                            # one token back after 20 s
    assert lim.allow("a") and not lim.allow("a")
    lim.charge("b", 5)
    assert lim.blocked("b")
    lim.allow("c")
    lim.allow("d")                          # "a" was least recently used: forgotten, full again
    assert [lim.allow("a") for _ in range(3)] == [True, True, True]
    off = RateLimiter(0, 60.0)
    assert all(off.allow("x") for _ in range(1000)) and not off.blocked("x")


def test_server_config_from_file_and_environment(tmp_path: Path) -> None:
    p = tmp_path / "s.toml"
    p.write_text('[server]\nport = 6000\nworkers = 4\nrequire_auth = true\n[limits]\nactor_scans_per_minute = 9\n')
    cfg = load_config(p, env={"SCANGATE_SERVER_PORT": "7000", "SCANGATE_SERVER_REQUIRE_AUTH": "off"})
    assert (cfg.server.port, cfg.server.workers, cfg.server.require_auth) == (7000, 4, False)
    assert cfg.limits.actor_scans_per_minute == 9
    with pytest.raises(scangate.InvalidArgument, match="SCANGATE_SERVER_REQUIRE_AUTH"):
        load_config(p, env={"SCANGATE_SERVER_REQUIRE_AUTH": "maybe"})
    p.write_text('[server]\nhost = 5\n')
    with pytest.raises(scangate.InvalidArgument, match="server.host"):
        load_config(p, env={})
    p.write_text('[server]\ntls_client_ca = "ca.pem"\n')
    with pytest.raises(scangate.InvalidArgument, match="tls_client_ca"):
        load_config(p, env={})
