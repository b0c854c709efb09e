"""A decision prepared in a read transaction and committed by the writer
(scangate.decide.prepared) commits exactly what deciding the batch whole would,
and a read that went stale before the commit is decided again after the change.

Each test runs a scenario on twin data directories (one copy of the same keys,
codes and campaign): the reference decides with ``decide_checked`` in order; the
other prepares first, lets the change happen, then commits. Decisions and every
database must come out the same.
"""
from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import scangate
from scangate import ingest, rewards, verdicts
from scangate.clock import ScanTimePolicy
from scangate.decide.prepared import Prepared, commit_prepared, prepare, prepare_many
from scangate.rewards import ScanRequest
from scangate.state import layout
from scangate.state import raw as state_raw
from scangate.state.batch import write_batch
from scangate.verdicts import VerdictConfig

from fixtures_campaigns import CASH_1, CHENGDU, GUANGZHOU, NOON, POINTS_10, campaign, typo

CONFIG = VerdictConfig()
NOW = NOON + 60_000


def clock() -> int:
    return NOW


class Twins:
    """Two data directories made equal: ``ref`` and ``dd``; ``codes`` issued in both."""

    def __init__(self, root: Path):
        first = scangate.init_data_dir(root / "a")
        rewards.put_campaign(first, campaign(odds="50%", prizes=CASH_1 + POINTS_10,
                                             tail="[caps]\nper_user_total_count = 3\n"), "c.toml")
        self.codes = first.issue_codes("BEER-500", "item", 40).as_strings()
        self.cases = first.issue_codes("BEER-500", "case", 4).as_strings()
        first.close()
        shutil.copytree(root / "a", root / "b")
        self.ref = scangate.open_data_dir(root / "a")
        self.dd = scangate.open_data_dir(root / "b")

    def both(self, change: Callable[[scangate.DataDir], object]) -> None:
        change(self.ref)
        change(self.dd)

    def assert_same(self, apart_from: tuple[str, ...] = ()) -> None:
        """Every database equal (but those named: a change made at each one's own
        clock reading, such as a recall's time)."""
        names = tuple(n for n in layout.DATABASES if n not in apart_from)
        assert state_raw.dump(self.dd, names) == state_raw.dump(self.ref, names)

    def close(self) -> None:
        self.ref.close()
        self.dd.close()


@pytest.fixture
def twins(tmp_path: Path) -> Iterator[Twins]:
    t = Twins(tmp_path)
    yield t
    t.close()


def req(rid: str, code: str, actor: str = "u1", region: int = CHENGDU, t: int = NOON) -> ScanRequest:
    return ScanRequest(rid, code, actor, region=region, time_ms=t)


def decide(dd: scangate.DataDir, requests: list[ScanRequest]) -> list[object]:
    return rewards.decide_checked(dd, requests, CONFIG, now_ms=clock)


def prepared(dd: scangate.DataDir, requests: list[ScanRequest]) -> Prepared:
    p = prepare(dd, requests, CONFIG, NOW)
    assert p is not None
    return p


def commit(dd: scangate.DataDir, parts: list[Prepared | list[ScanRequest]]) -> list[list[object]]:
    return rewards.decide_prepared(dd, parts, CONFIG, now_ms=clock)  # type: ignore[return-value]


def stale(dd: scangate.DataDir, parts: list[Prepared]) -> bool:
    with write_batch(dd.store) as batch:
        return commit_prepared(batch, parts, NOW) is None


def test_prepared_batches_commit_what_deciding_them_whole_commits(twins: Twins) -> None:
    c = twins.codes
    batches = [
        [req("a1", c[0]), req("a2", c[1], "u2"), req("a3", typo(c[2])), req("a4", c[3], "u3", GUANGZHOU)],
        [req("b1", c[0], "u2", t=NOON + 5), req("b2", c[4]), req("b3", c[5])],
        [req("c1", c[6]), req("c2", c[7], "u4"), req("c3", c[8], "u4"), req("c4", "NOT-A-CODE")],
        [req("d1", c[0], "u5", t=NOON + 9), req("d2", c[9], "u6")],
        [req("f1", c[11], "u7"), req("f2", c[11], "u8", t=NOON + 2), req("f3", c[11], "u7", t=NOON + 3)],  # one code thrice
    ]
    for b in batches:
        want = decide(twins.ref, b)
        assert commit(twins.dd, [prepared(twins.dd, b)]) == [want]
    twins.assert_same()
    # several prepared parts in one group: one transaction, decided in their order
    more = [[req(f"e{i}", c[10 + i], f"v{i % 3}")] for i in range(12)]
    want = decide(twins.ref, [r for b in more for r in b])
    got = commit(twins.dd, [prepared(twins.dd, b) for b in more])
    assert [d for part in got for d in part] == want
    twins.assert_same()


def test_a_code_scanned_after_its_read_is_decided_again_as_a_repeat(twins: Twins) -> None:
    code = twins.codes[0]
    p = prepared(twins.dd, [req("late", code, "u1", t=NOON + 10)])
    assert p.verdicts[0].scan_count == 1        # read before the other scan: a first scan
    twins.both(lambda dd: decide(dd, [req("first", code, "u2")]))
    assert stale(twins.dd, [p])
    want = decide(twins.ref, [req("late", code, "u1", t=NOON + 10)])
    assert commit(twins.dd, [p]) == [want]
    assert want[0].verdict.scan_count == 2 and want[0].no_reward is rewards.NoReward.ALREADY_CLAIMED
    twins.assert_same()


def test_one_code_in_two_prepared_parts_of_a_group_is_decided_in_turn(twins: Twins) -> None:
    code = twins.codes[1]
    parts: list[Prepared | list[ScanRequest]] = [prepared(twins.dd, [req("x", code, "u1")]),
                                                 prepared(twins.dd, [req("y", code, "u2", t=NOON + 1)])]
    assert stale(twins.dd, parts)     # type: ignore[arg-type]
    want = decide(twins.ref, [req("x", code, "u1"), req("y", code, "u2", t=NOON + 1)])
    assert [d for part in commit(twins.dd, parts) for d in part] == want
    twins.assert_same()


@pytest.mark.parametrize("change", ["pause", "recall", "issue", "link"])
def test_a_change_of_rules_ranges_or_trace_after_the_read_is_seen(twins: Twins, change: str) -> None:
    code = twins.codes[2]
    p = prepared(twins.dd, [req("r", code)])
    assert p.verdicts[0].label == "genuine" and p.choices[0].__class__.__name__ == "Chosen"
    if change == "pause":
        twins.both(lambda dd: rewards.set_campaign_status(dd, "c1", "paused"))
    elif change == "recall":
        twins.both(lambda dd: verdicts.recall_codes(dd, [code], "bad batch"))
    elif change == "issue":
        twins.both(lambda dd: dd.issue_codes("BEER-500", "item", 1))
    else:
        twins.both(lambda dd: ingest.link_csv(dd, f"{twins.cases[0]},{code}\n".encode(), "l.csv"))
    assert stale(twins.dd, [p])
    want = decide(twins.ref, [req("r", code)])
    assert commit(twins.dd, [p]) == [want]
    if change == "pause":
        assert want[0].no_reward is rewards.NoReward.CAMPAIGN_PAUSED
    if change == "recall":
        assert want[0].verdict.label == "revoked"
    twins.assert_same(apart_from={"recall": ("revoked",), "issue": ("ranges",)}.get(change, ()))


def test_a_request_id_decided_after_the_read_gets_that_decision(twins: Twins) -> None:
    r = req("same-id", twins.codes[3])
    p = prepared(twins.dd, [r])
    first = decide(twins.dd, [r])
    assert stale(twins.dd, [p])
    assert commit(twins.dd, [p]) == [first]
    other = prepared(twins.dd, [req("id-2", twins.codes[4])])
    reused = req("id-2", twins.codes[5])
    decide(twins.dd, [reused])
    (out,) = commit(twins.dd, [other])
    assert isinstance(out[0], rewards.RequestIdReused)


def test_batches_prepared_together_are_each_their_own_and_commit_as_in_turn(twins: Twins) -> None:
    """prepare_many: one verification and read for several calls; a call that
    shares a code or a request id with another, or repeats a decided id, is left
    to the writer (None), and the rest commit as if decided one after the other."""
    c = twins.codes
    decide(twins.ref, [req("seen", c[20])])
    decide(twins.dd, [req("seen", c[20])])
    calls = [
        [req("m1", c[21]), req("m2", typo(c[22]))],
        [req("m3", c[23], "u2"), req("m4", c[24], "u2")],
        [req("m5", c[25]), req("m6", c[21], "u3", t=NOON + 1)],     # c[21] again: the first call's code
        [req("seen", c[20])],                                          # a retry
        [req("m7", c[26])],
        [req("m3", c[27])],                                            # the second call's id
    ]
    parts = prepare_many(twins.dd, calls, CONFIG, NOW)
    assert [p is not None for p in parts] == [False, False, False, False, True, False]
    (alone,) = [p for p in parts if p is not None]
    assert alone.requests == calls[4] and len(alone.histories) == 1
    together = prepare_many(twins.dd, [calls[0], calls[4]], CONFIG, NOW)
    assert [p.requests if p else None for p in together] == [calls[0], calls[4]]
    assert [len(p.histories) for p in together if p] == [1, 1]      # the typo is no code: no history
    got = commit(twins.dd, [p if p is not None else b for p, b in zip(parts, calls)])
    # the prepared call first, then the rest in their order, decided whole in one batch
    first = decide(twins.ref, calls[4])
    rest = decide(twins.ref, [r for b in [*calls[:4], calls[5]] for r in b])
    want = [rest[0:2], rest[2:4], rest[4:6], rest[6:7], first, rest[7:8]]
    # (a refusal is an exception: compared by its words)
    assert [[d if isinstance(d, rewards.Decision) else repr(d) for d in part] for part in got] == \
        [[d if isinstance(d, rewards.Decision) else repr(d) for d in part] for part in want]
    twins.assert_same()


def test_only_the_usual_batch_is_prepared(twins: Twins) -> None:
    c = twins.codes
    dd = twins.dd
    decide(dd, [req("old", c[6])])
    assert prepare(dd, [req("dup", c[7]), req("dup", c[8])], CONFIG, NOW) is None      # an id twice
    assert prepare(dd, [req("old", c[6])], CONFIG, NOW) is None                         # a retry
    window = ScanTimePolicy(late_ms=3_600_000, ahead_ms=60_000)
    assert prepare(dd, [req("t", c[7], t=NOW - 7_200_000)], CONFIG, NOW, window) is None   # outside the window
    assert prepare(dd, [req("t", c[7], t=NOW - 60_000)], CONFIG, NOW, window) is not None
    assert prepare(dd, [], CONFIG, NOW) is None


def test_plugins_run_when_preparing_and_again_only_when_the_counts_moved(tmp_path: Path) -> None:
    """A campaign's plugins run in prepare (outside any write transaction); the
    writer uses their output when the user's counts are still those they saw, and
    runs them again on the counts it has when not."""
    import sys
    import types

    from scangate import plugins

    seen: list[int] = []

    def rule(ctx: plugins.RuleContext) -> plugins.RuleResult:
        n = ctx.actor_history["scan_number"]
        seen.append(n)
        return plugins.RuleResult(points_multiplier_pct=100 * n)

    module = types.ModuleType("prepared_test_rule")
    module.rule = rule  # type: ignore[attr-defined]
    sys.modules["prepared_test_rule"] = module
    plugins.configure(["prepared_test_rule:rule"], verify=False)
    dd = scangate.init_data_dir(tmp_path / "p")
    try:
        rewards.put_campaign(dd, campaign(cid="plug", prizes=POINTS_10, extra='plugins = ["prepared_test_rule:rule"]'),
                             "p.toml")
        c = dd.issue_codes("BEER-500", "item", 3).as_strings()
        p = prepared(dd, [req("a", c[0], "u1")])
        assert seen == [1]
        ((first,),) = commit(dd, [p])
        assert seen == [1]                      # its output used: not run again
        assert first.award is not None and first.award.points == 10
        late = prepared(dd, [req("b", c[1], "u1", t=NOON + 1)])     # read: u1's second scan
        assert seen == [1, 2]
        decide(dd, [req("c", c[2], "u1", t=NOON + 2)])               # decided meanwhile: now the second
        assert seen == [1, 2, 2]
        ((second,),) = commit(dd, [late])       # its history did not move; u1's counts did
        assert seen == [1, 2, 2, 3]             # run again in the writer, on the counts it has
        assert second.award is not None and second.award.points == 30
    finally:
        dd.close()
        plugins.configure(None, verify=False)
        del sys.modules["prepared_test_rule"]
