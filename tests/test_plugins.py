"""Rule plugins: the example plugins change decisions as documented; a plugin
that raises, times out or returns garbage never grants a reward, and its failure
is counted; plugins are found by entry point, by the module:attr an entry point
names, and by a module:attr the operator allowed (hostile plugins:
test_plugins_hostile.py)."""

from __future__ import annotations

import datetime as dt
import sys
import time
import types
from pathlib import Path

import pytest

import scangate
from scangate import plugins, rewards
from scangate.plugins import RuleResult
from scangate.rewards import NoReward, ScanRequest
from scangate.state import raw as state_raw
from scangate.state import reads

SHANGHAI = dt.timezone(dt.timedelta(hours=8))
MEMBER_DAY = int(dt.datetime(2026, 4, 8, 12, 0, tzinfo=SHANGHAI).timestamp() * 1000)
OTHER_DAY = int(dt.datetime(2026, 4, 9, 12, 0, tzinfo=SHANGHAI).timestamp() * 1000)


def campaign(plugin_refs: list[str], odds: str = "100%") -> str:
    refs = ", ".join(f'"{r}"' for r in plugin_refs)
    return f"""
id = "plug"
name = "Plugin campaign"
start = 2026-03-01
end = 2026-07-01
actor = "consumer"
odds = "{odds}"
plugins = [{refs}]

[[prizes]]
id = "points-10"
kind = "points"
weight = 100
points = 10

[[prizes]]
id = "cny-20"
kind = "cash"
weight = 1
amount_fen = 2000
budget_count = 1

[caps]
per_user_daily_count = 10
"""


@pytest.fixture(autouse=True)
def clean_policy():  # type: ignore[no-untyped-def]
    plugins.configure(None, verify=False)
    yield
    plugins.configure(None, verify=False)


@pytest.fixture()
def dd(tmp_path: Path):  # type: ignore[no-untyped-def]
    d = scangate.init_data_dir(tmp_path / "d")
    yield d
    d.close()


def decide(dd, code: str, rid: str, at: int, tags: tuple[str, ...] = (), actor: str = "u1"):  # type: ignore[no-untyped-def]
    return rewards.decide_scans(dd, [ScanRequest(rid, code, actor, region=510104, time_ms=at,
                                                 actor_tags=tags)])[0]


def failures(dd, ref: str) -> int:  # type: ignore[no-untyped-def]
    return reads.plugin_failures(dd, "plug", ref)


def test_member_day_doubles_points_for_members(dd) -> None:  # type: ignore[no-untyped-def]
    # points only: with the cash prize a draw picks it one time in 101 (the secret is
    # random), and a cash award has no points to double
    text = campaign(["scangate.rules_examples:member_day"]).replace(
        '[[prizes]]\nid = "cny-20"\nkind = "cash"\nweight = 1\namount_fen = 2000\nbudget_count = 1\n\n', "")
    assert "cny-20" not in text
    rewards.put_campaign(dd, text, "c.toml")
    codes = dd.issue_codes("BEER", "item", 3).as_strings()
    assert decide(dd, codes[0], "a", MEMBER_DAY, ("member",)).award.points == 20  # type: ignore[union-attr]
    assert decide(dd, codes[1], "b", MEMBER_DAY, ()).award.points == 10  # type: ignore[union-attr]
    assert decide(dd, codes[2], "c", OTHER_DAY, ("member",)).award.points == 10  # type: ignore[union-attr]


def test_vip_prize_by_entry_point_within_budget(dd) -> None:  # type: ignore[no-untyped-def]
    assert plugins.available_plugins()["vip-prize"] == "scangate.rules_examples:vip_prize"
    rewards.put_campaign(dd, campaign(["vip-prize"]), "c.toml")
    codes = dd.issue_codes("BEER", "item", 3).as_strings()
    first = decide(dd, codes[0], "a", OTHER_DAY, ("vip",), actor="v1")
    assert first.award is not None and first.award.prize_id == "cny-20" and first.award.payout_key
    # the cny-20 budget (1) is spent: the plugin cannot overspend it
    second = decide(dd, codes[1], "b", OTHER_DAY, ("vip",), actor="v2")
    assert second.award is not None and second.award.prize_id == "points-10"


def _install(name: str, fn) -> str:  # type: ignore[no-untyped-def]
    module = types.ModuleType(name)
    module.rule = fn  # type: ignore[attr-defined]
    sys.modules[name] = module
    ref = f"{name}:rule"
    plugins.configure(sorted(plugins.allowed_refs() | {ref}))   # the operator allows it
    return ref


def _raises(ctx):  # type: ignore[no-untyped-def]
    raise RuntimeError("plugin bug")


def _hangs(ctx):  # type: ignore[no-untyped-def]
    time.sleep(1.0)
    return RuleResult(odds_ppm=1_000_000)


@pytest.mark.parametrize("fn", [_raises, _hangs, lambda ctx: "not a result",
                                lambda ctx: RuleResult(odds_ppm=2_000_000)],
                         ids=["raises", "times-out", "wrong-type", "bad-odds"])
def test_a_failing_plugin_never_grants_a_reward(dd, fn) -> None:  # type: ignore[no-untyped-def]
    ref = _install(f"scangate_test_plugin_{id(fn)}", fn)
    rewards.put_campaign(dd, campaign([ref]), "c.toml")
    code = dd.issue_codes("BEER", "item", 1).as_strings()[0]
    d = decide(dd, code, "f1", OTHER_DAY)
    assert d.award is None and d.no_reward is NoReward.PLUGIN_FAILED
    assert d.message["zh-CN"] and d.message["en"]
    counted = failures(dd, ref) or failures(dd, "odds")
    assert counted == 1
    # nothing was paid or claimed
    assert state_raw.count(dd, "ledger") == 0
    assert state_raw.count(dd, "outbox") == 0


def test_veto_and_odds(dd) -> None:  # type: ignore[no-untyped-def]
    veto = _install("scangate_test_veto", lambda ctx: RuleResult(veto=ctx.actor == "blocked"))
    zero = _install("scangate_test_zero", lambda ctx: RuleResult(odds_ppm=0))
    rewards.put_campaign(dd, campaign([veto, zero]), "c.toml")
    codes = dd.issue_codes("BEER", "item", 2).as_strings()
    assert decide(dd, codes[0], "v", OTHER_DAY, actor="blocked").no_reward is NoReward.PLUGIN_VETO
    assert decide(dd, codes[1], "w", OTHER_DAY, actor="fine").no_reward is NoReward.LOST_DRAW   # odds 0


def test_context_is_read_only(dd) -> None:  # type: ignore[no-untyped-def]
    seen = []

    def mutate(ctx):  # type: ignore[no-untyped-def]
        seen.append(ctx)
        ctx.verdict["verdict"] = "counterfeit"

    ref = _install("scangate_test_mutate", mutate)
    rewards.put_campaign(dd, campaign([ref]), "c.toml")
    code = dd.issue_codes("BEER", "item", 1).as_strings()[0]
    d = decide(dd, code, "m", OTHER_DAY)
    assert d.no_reward is NoReward.PLUGIN_FAILED          # TypeError: read-only mapping
    assert d.verdict.label == "genuine" and seen[0].sku == "BEER"


def test_unknown_plugin_reference_is_refused_at_load(dd) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(scangate.InvalidArgument, match=r"^c\.toml: plugins\[0\]: 'no_such_module_xyz:rule' is not"):
        rewards.put_campaign(dd, campaign(["no_such_module_xyz:rule"]), "c.toml")
    assert rewards.list_campaigns(dd) == []
