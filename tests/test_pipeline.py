"""DecisionPipeline: deciding a batch while the one before it commits gives the
decisions and the stored bytes that decide_scans gives batch after batch; a batch
whose reads changed before its commit (another writer, a failed batch before it)
is decided again inside the write transaction."""

from __future__ import annotations

import random
import shutil
from pathlib import Path
from typing import Any

import pytest
import scangate
from scangate import points, rewards
from scangate.pipeline import DecisionPipeline
from scangate.rewards import ScanRequest
from scangate.store import DATABASES

CAMPAIGN = """
id = "pipe"
name = "Pipeline test"
start = 2026-03-01
end = 2026-07-01
actor = "consumer"
odds = "40%"
consolation = "points-2"
win_on_nth_scan = [3]

[[prizes]]
id = "cny-1"
kind = "cash"
weight = 3
amount_fen = 100
budget_count = 40

[[prizes]]
id = "cny-5"
kind = "cash"
weight = 1
amount_fen = 500
budget_amount_fen = 3_000

[[prizes]]
id = "points-2"
kind = "points"
points = 2
budget_count = 150

[caps]
per_user_daily_count = 4
per_user_total_amount_fen = 1_500
"""
T0 = 1_775_000_000_000   # 2026-04-01, inside the window
NOW = 1_775_100_000_000


@pytest.fixture
def twin_dirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path, list[str]]:
    """Two identical data directories (one campaign secret), 300 codes issued."""
    monkeypatch.setattr(rewards, "now_ms", lambda: NOW)    # payout requests carry it
    a = tmp_path / "a"
    with scangate.init_data_dir(a, map_size=1 << 30) as dd:
        rewards.put_campaign(dd, CAMPAIGN, "pipe.toml")
        codes = dd.issue_codes("BEER", "item", 300).as_strings()
    b = tmp_path / "b"
    shutil.copytree(a, b)
    return a, b, codes


def workload(codes: list[str], seed: int) -> list[list[ScanRequest]]:
    """Batches of 1 to 25 scans: fresh codes, codes scanned again (by the same or
    another user), retries of earlier requests (also within one batch), forged
    codes; seven users, so caps and the Nth scan come into play; days change."""
    rng = random.Random(seed)
    sent: list[ScanRequest] = []
    fresh = iter(codes)
    batches = []
    t = T0
    for _ in range(40):
        batch = []
        for _ in range(rng.randint(1, 25)):
            t += rng.choice((1_000, 60_000, 3_600_000, 20 * 3_600_000))
            roll = rng.random()
            if roll < 0.12 and sent:
                batch.append(rng.choice(sent))                     # a retry
                continue
            if roll < 0.22 and sent:
                code = rng.choice(sent).code                       # scanned again
            elif roll < 0.26:
                code = "1" + "X" * 27                              # not a code
            else:
                code = next(fresh, codes[0])
            r = ScanRequest(f"req-{len(sent)}", code, f"user-{rng.randrange(7)}", region=510104, time_ms=t)
            sent.append(r)
            batch.append(r)
        batches.append(batch)
    return batches


def stored(path: Path) -> dict[str, list[tuple[bytes, bytes]]]:
    with scangate.open_data_dir(path, map_size=1 << 30) as dd, dd.store.env.begin() as txn:
        return {name: [(bytes(k), bytes(v)) for k, v in txn.cursor(db=dd.store.db(name))] for name in DATABASES}


def as_json(decisions: list[rewards.Decision]) -> list[dict[str, Any]]:
    return [d.to_json() for d in decisions]


@pytest.mark.parametrize(("seed", "hold"), [(1, False), (2, False), (3, True), (4, True)])
def test_pipeline_decides_and_stores_what_decide_scans_does(twin_dirs: tuple[Path, Path, list[str]],
                                                           seed: int, hold: bool) -> None:
    """``hold``: the write lock is held while every batch is submitted, so each is
    decided on the writes of all the batches before it, none committed yet."""
    a, b, codes = twin_dirs
    batches = workload(codes, seed)
    with scangate.open_data_dir(a, map_size=1 << 30) as dd:
        expected = [as_json(rewards.decide_scans(dd, batch)) for batch in batches]
    with scangate.open_data_dir(b, map_size=1 << 30) as dd, \
            DecisionPipeline(dd, depth=len(batches) if hold else 3) as pipeline:
        if hold:
            with dd.store.env.begin(write=True):
                futures = [pipeline.submit(batch) for batch in batches]
                assert not any(f.done() for f in futures)
        else:
            futures = [pipeline.submit(batch) for batch in batches]
        got = [as_json(f.result()) for f in futures]
        assert pipeline.batches == len(batches)
        assert pipeline.redecided == 0      # nobody else wrote: every speculation held
        assert pipeline.checked == 0        # ... as the transaction ids showed
    assert got == expected
    sa, sb = stored(a), stored(b)
    for name in DATABASES:
        assert sb[name] == sa[name], name
    assert sa["ledger"] and sa["outbox"] and sa["points"]     # the workload reached them


def test_a_write_between_decision_and_commit_is_not_lost(twin_dirs: tuple[Path, Path, list[str]]) -> None:
    """Points credited by another writer while a batch is in flight: the batch's
    reads no longer hold, so it is decided again; the credit and the award both count."""
    _a, b, codes = twin_dirs
    with scangate.open_data_dir(b, map_size=1 << 30) as dd, DecisionPipeline(dd) as pipeline:
        env, db = dd.store.env, dd.store.db("points")
        # the first scan of each user: lost draws get the consolation points
        batch = [ScanRequest(f"r{i}", codes[i], f"u{i}", region=510104, time_ms=T0 + i) for i in range(20)]
        winners_of_points = None
        with env.begin(write=True) as txn:          # holds the write lock: the batch waits to commit
            future = pipeline.submit(batch)         # decided now, against the state before this write
            for i in range(20):
                points.add_points(txn, db, f"u{i}", 1_000, "manual", "test", T0)
        decisions = future.result()
        assert pipeline.checked == pipeline.redecided == 1
        winners_of_points = {d.request_id for d in decisions if d.award and d.award.kind == "points"}
        assert winners_of_points
        for i in range(20):
            expected = 1_000 + (2 if f"r{i}" in winners_of_points else 0)
            assert points.balance(dd, f"u{i}") == expected


def test_a_claim_made_elsewhere_while_in_flight_is_respected(twin_dirs: tuple[Path, Path, list[str]]) -> None:
    _a, b, codes = twin_dirs
    with scangate.open_data_dir(b, map_size=1 << 30) as dd, DecisionPipeline(dd) as pipeline:
        with dd.store.env.begin(write=True) as txn:
            future = pipeline.submit([ScanRequest("late", codes[5], "u1", region=510104, time_ms=T0)])
            # the same code decided by another writer first
            rewards._decide_in(dd, [ScanRequest("early", codes[5], "u2", region=510104, time_ms=T0)],
                               dd.verify_codes([codes[5]]), None, txn, T0)
        (late,) = future.result()
        assert late.no_reward is rewards.NoReward.ALREADY_CLAIMED
        assert pipeline.checked == pipeline.redecided == 1


def test_a_failed_commit_fails_its_batch_only(twin_dirs: tuple[Path, Path, list[str]],
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """The batch after a failed one was decided on writes that never landed: it is
    decided again, and the failed batch's requests are decided anew when retried."""
    a, b, codes = twin_dirs
    first = [ScanRequest(f"r{i}", codes[i], "same-user", region=510104, time_ms=T0 + i) for i in range(3)]
    second = [ScanRequest(f"r{i}", codes[i], "same-user", region=510104, time_ms=T0 + i) for i in range(3, 6)]
    from scangate import pipeline as pipeline_mod

    real_apply = pipeline_mod._Speculative.apply
    calls = []

    def failing_once(self: Any, txn: Any) -> bool:
        calls.append(1)
        if len(calls) == 1:
            raise OSError("disk full")
        return real_apply(self, txn)

    monkeypatch.setattr(pipeline_mod._Speculative, "apply", failing_once)
    with scangate.open_data_dir(b, map_size=1 << 30) as dd, DecisionPipeline(dd) as pipeline:
        with dd.store.env.begin(write=True):        # both batches decided before either commits
            f1, f2 = pipeline.submit(first), pipeline.submit(second)
        with pytest.raises(OSError, match="disk full"):
            f1.result()
        got_second = as_json(f2.result())
        assert pipeline.redecided == 1
        got_first = as_json(pipeline.decide(first))      # the retry: decided now, after the second
    with scangate.open_data_dir(a, map_size=1 << 30) as dd:
        assert got_second == as_json(rewards.decide_scans(dd, second))
        assert got_first == as_json(rewards.decide_scans(dd, first))
    assert stored(a) == stored(b)


def test_bad_input_raises_at_submit_and_queues_nothing(twin_dirs: tuple[Path, Path, list[str]]) -> None:
    _a, b, codes = twin_dirs
    with scangate.open_data_dir(b, map_size=1 << 30) as dd, DecisionPipeline(dd) as pipeline:
        with pytest.raises(scangate.InvalidArgument, match=r"requests\[1\]\.request_id"):
            pipeline.submit([ScanRequest("ok", codes[0], "u"), ScanRequest("", codes[1], "u")])
        assert pipeline.batches == 0
    with pytest.raises(scangate.InvalidArgument, match="depth"):
        DecisionPipeline(dd, depth=0)
    assert stored(b)["requests"] == []


def test_an_append_refused_at_commit_is_reported(tmp_path: Path) -> None:
    """The commit replays the putmulti calls deciding made; an append LMDB refuses
    (a key not past the end) makes ``apply`` say so, since the last key the next
    batches took from this one's appends (``top``) is then not the real one."""
    from scangate import pipeline as pipeline_mod

    with scangate.init_data_dir(tmp_path / "d", map_size=1 << 30) as dd:
        env, ledger = dd.store.env, dd.store.db("ledger")
        written = frozenset(dd.store.db(name) for name in pipeline_mod.WRITTEN_DATABASES)
        specs = []
        for items in ([(b"\0" * 7 + b"\1", b"a"), (b"\0" * 7 + b"\2", b"b")],      # in order: lands
                      [(b"\0" * 7 + b"\4", b"c"), (b"\0" * 7 + b"\3", b"d")]):     # out of order: one refused
            with env.begin() as snapshot:
                spec = pipeline_mod._Speculative(snapshot, [], written)
                assert spec.cursor(db=ledger).putmulti(items, append=True) == (2, 2)
                assert spec.top(ledger) == items[-1][0]
                spec.decided()
            specs.append(spec)
        with env.begin(write=True) as txn:
            assert specs[0].apply(txn) is True
            assert specs[1].apply(txn) is False
            assert [bytes(k) for k, _ in txn.cursor(db=ledger)] == [b"\0" * 7 + bytes([i]) for i in (1, 2, 4)]


def test_a_batch_whose_append_is_refused_fails_and_the_next_are_decided_again(
        twin_dirs: tuple[Path, Path, list[str]], monkeypatch: pytest.MonkeyPatch) -> None:
    """A refused append (which the checks before the commit rule out) fails its
    batch: nothing of it is committed, its caller gets the error, and the batches
    decided on its writes are decided again: stored bytes equal deciding only
    those, one after the other."""
    a, b, codes = twin_dirs
    batches = workload(codes, 5)[:3]
    from scangate import pipeline as pipeline_mod

    real_apply = pipeline_mod._Speculative.apply
    landed: list[bool] = []

    def first_reported_refused(self: Any, txn: Any) -> bool:
        landed.append(real_apply(self, txn))
        return len(landed) > 1

    monkeypatch.setattr(pipeline_mod._Speculative, "apply", first_reported_refused)
    with scangate.open_data_dir(a, map_size=1 << 30) as dd:
        expected = [as_json(rewards.decide_scans(dd, batch)) for batch in batches[1:]]
    with scangate.open_data_dir(b, map_size=1 << 30) as dd, DecisionPipeline(dd, depth=3) as pipeline:
        with dd.store.env.begin(write=True):        # all three decided before the first commits
            futures = [pipeline.submit(batch) for batch in batches]
        with pytest.raises(scangate.CorruptionError, match="did not land"):
            futures[0].result()
        got = [as_json(f.result()) for f in futures[1:]]
        assert landed == [True]                      # the two after it were decided again, not applied
        assert pipeline.checked == 2 and pipeline.redecided == 2
    assert got == expected
    assert stored(a) == stored(b)
