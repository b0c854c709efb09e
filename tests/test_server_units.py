"""The server's parts in process: the group-commit writer, rate limits, config."""
from __future__ import annotations

import concurrent.futures
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


@pytest.mark.parametrize("checked", [False, True])
def test_the_servers_writer_validates_nothing_again(dd, monkeypatch: pytest.MonkeyPatch,  # type: ignore[no-untyped-def]
                                                    checked: bool) -> None:
    """The server's writer (``checked=True``) decides its workers' requests as they
    come: they passed ``check_scan`` (tests/test_fuzz_requests.py holds it to the
    library's bounds), so a request is validated once. Any other writer validates
    them with check_requests, the library's one validation (decide_scans's)."""
    from scangate.decide import requests as requests_mod
    from scangate.server import writer as writer_mod

    calls: list[int] = []
    real = requests_mod.check_requests
    monkeypatch.setattr(writer_mod, "check_requests", lambda requests: (calls.append(len(requests)), real(requests)))
    codes = dd.issue_codes("BEER", "item", 2).as_strings()
    w = GroupCommitWriter(dd, checked=checked)
    (d,) = w.submit([ScanRequest("a", codes[0], "u")]).result(10)
    w.close()
    assert d.verdict.label == "genuine"
    assert calls == ([] if checked else [1])


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


def test_who_prepares_a_scan_is_configured_and_checked(tmp_path: Path) -> None:
    """server.prepare: "workers" and "writer" whatever the machine; "auto" prepares
    in the workers only when several workers feed the writer and each of them and
    the writer can have a processor."""
    assert load_config(env={}).server.prepare == "auto"
    workers = load_config(env={"SCANGATE_SERVER_PREPARE": "workers"}).server
    writer = load_config(env={"SCANGATE_SERVER_PREPARE": "writer"}).server
    assert workers.prepares_in_workers(1) and not writer.prepares_in_workers(64)
    auto4 = load_config(env={"SCANGATE_SERVER_WORKERS": "4"}).server
    assert [auto4.prepares_in_workers(n) for n in (2, 5, 6, 16)] == [False, False, True, True]
    auto1 = load_config(env={}).server
    assert [auto1.prepares_in_workers(n) for n in (2, 3, 16)] == [False, False, False]
    p = tmp_path / "s.toml"
    p.write_text('[server]\nprepare = "both"\n')
    with pytest.raises(scangate.InvalidArgument, match="server.prepare: 'both' is not one of auto, workers, writer"):
        load_config(p, env={})


def test_a_group_commits_prepared_items_first_then_decides_the_rest(dd) -> None:  # type: ignore[no-untyped-def]
    """A group of a prepared item and a plain one scanning the same code: the
    prepared one commits first, the plain one is decided after it (a repeat scan)."""
    from scangate.decide.prepared import prepare
    from scangate.verdicts import VerdictConfig

    codes = dd.issue_codes("BEER", "item", 2).as_strings()
    gate, held = threading.Event(), threading.Event()

    def on_commit(n: int, s: float) -> None:
        held.set()
        gate.wait(10)

    w = GroupCommitWriter(dd, on_commit=on_commit)
    hold = w.submit([ScanRequest("hold", codes[1], "u")])      # holds the writer while the others queue
    assert held.wait(10)            # the writer is in the first group's commit: the next two queue together
    plain = w.submit([ScanRequest("plain", codes[0], "v")])
    first = [ScanRequest("prepared", codes[0], "u")]
    p = prepare(dd, first, VerdictConfig(), scangate.clock.current()())
    assert p is not None
    future: concurrent.futures.Future[list] = concurrent.futures.Future()
    w.submit_callback(first, None, lambda d, e: future.set_result(d) if e is None else future.set_exception(e),
                      prepared=p)
    gate.set()
    hold.result(10)
    (mine,) = future.result(10)
    (theirs,) = plain.result(10)
    w.close()
    assert (mine.verdict.scan_count, theirs.verdict.scan_count) == (1, 2)


def test_a_reply_that_raises_leaves_the_writer_deciding(dd) -> None:  # type: ignore[no-untyped-def]
    """A reply callback that raises (an answer that cannot be encoded or sent) must
    not end the writer thread: the other items of the group hear their decisions,
    its own waiter hears the error, and later scans are still decided."""
    codes = dd.issue_codes("BEER", "item", 4).as_strings()
    gate = threading.Event()
    w = GroupCommitWriter(dd, on_commit=lambda n, s: gate.wait(5))
    first = w.submit([ScanRequest("a", codes[0], "u")])      # holds the writer while the others queue
    told: list[BaseException | None] = []

    def broken(decisions, error) -> None:  # type: ignore[no-untyped-def]
        told.append(error)
        if error is None:
            raise RuntimeError("the reply could not be encoded")

    w.submit_callback([ScanRequest("b", codes[1], "u")], None, broken)
    neighbour = w.submit([ScanRequest("c", codes[2], "u")])
    gate.set()
    assert first.result(10)[0].request_id == "a"
    assert neighbour.result(10)[0].request_id == "c"        # same group as the broken reply
    later = w.submit([ScanRequest("d", codes[3], "u")])
    assert later.result(10)[0].verdict.label == "genuine"   # the writer is still deciding
    w.close()
    assert len(told) == 2 and told[0] is None and isinstance(told[1], RuntimeError)
    retry = GroupCommitWriter(dd)       # the broken reply's decision was committed: a retry gets it
    d = retry.submit([ScanRequest("b", codes[1], "u")]).result(10)[0]
    retry.close()
    assert d.request_id == "b" and d.verdict.scan_count == 1
