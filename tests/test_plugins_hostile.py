"""Hostile and broken rule plugins (issue 12, item 4): a campaign may name only
plugins the operator installed or allowed, checked when the campaign is loaded;
whatever an allowed plugin does (SystemExit, KeyboardInterrupt, garbage, an
endless loop), its scan wins nothing, the failure is counted and logged once per
LOG_EVERY, and every other scan of the batch is decided as if it were not there."""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
import types
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

import hostile_rules
import scangate
from scangate import plugins, rewards
from scangate.config import load_config
from scangate.plugins import RuleResult
from scangate.rewards import NoReward, ScanRequest
from scangate.state import reads

AT = 1_776_000_000_000          # 2026-04-12, inside both campaigns
HOSTILE = "hostile_rules"


def campaign(cid: str, sku: str, refs: list[str]) -> str:
    quoted = ", ".join(f'"{r}"' for r in refs)
    return f"""
id = "{cid}"
name = "{cid}"
start = 2026-03-01
end = 2030-01-01
actor = "consumer"
odds = "100%"
plugins = [{quoted}]

[products]
skus = ["{sku}"]

[[prizes]]
id = "points-10"
kind = "points"
points = 10
"""


@pytest.fixture(autouse=True)
def clean_policy() -> Iterator[None]:
    plugins.configure(None, verify=False)
    plugins.reset_failure_counts()
    yield
    plugins.configure(None, verify=False)
    plugins.reset_failure_counts()


@pytest.fixture()
def dd(tmp_path: Path) -> Iterator[scangate.DataDir]:
    d = scangate.init_data_dir(tmp_path / "d")
    yield d
    d.close()


def allow(*refs: str) -> None:
    """Allow ``refs`` without importing them (some are meant not to load)."""
    plugins.configure(sorted(plugins.allowed_refs() | set(refs)), verify=False)


def stored(dd: scangate.DataDir) -> list[str]:
    return [r["campaign"]["id"] for r in rewards.list_campaigns(dd)]


def counted(dd: scangate.DataDir, cid: str, ref: str) -> int:
    return reads.plugin_failures(dd, cid, ref)


# ------------------------------------------------------------------ refused at load
@pytest.mark.parametrize("ref,why", [
    ("builtins:exit", "not an installed or allowed plugin"),
    ("os:system", "not an installed or allowed plugin"),
    ("no_such_module_xyz:rule", "not an installed or allowed plugin"),
    ("no-such-entry-point", "is not an installed plugin (entry points in group"),
], ids=["builtins-exit", "os-system", "missing-module", "missing-entry-point"])
def test_a_plugin_nobody_allowed_is_refused_at_load(dd: scangate.DataDir, ref: str, why: str) -> None:
    text = campaign("c", "BEER", ["member-day-double-points", ref])
    with pytest.raises(scangate.InvalidArgument) as info:
        rewards.put_campaign(dd, text, "c.toml")
    assert str(info.value).startswith("c.toml: plugins[1]: "), info.value
    assert why in str(info.value) and ref in str(info.value)
    assert stored(dd) == []


@pytest.mark.parametrize("ref,why", [
    ("no_such_module_xyz:rule", "cannot be loaded (ModuleNotFoundError"),
    (f"{HOSTILE}:no_such_attr", "cannot be loaded (AttributeError"),
    (f"{HOSTILE}:NOT_CALLABLE", "neither callable nor with an evaluate() method"),
    (f"{HOSTILE}:two_args", "cannot be called with one argument"),
], ids=["missing-module", "missing-attr", "not-callable", "wrong-signature"])
def test_an_allowed_plugin_that_cannot_load_is_refused_at_load(dd: scangate.DataDir, ref: str, why: str) -> None:
    allow(ref)
    with pytest.raises(scangate.InvalidArgument) as info:
        rewards.put_campaign(dd, campaign("c", "BEER", [ref]), "c.toml")
    assert str(info.value).startswith("c.toml: plugins[0]: "), info.value
    assert why in str(info.value)
    assert stored(dd) == []


def test_a_module_that_exits_on_import_is_refused_not_obeyed(dd: scangate.DataDir, tmp_path: Path) -> None:
    name = "scangate_test_exits_on_import"
    spec_dir = tmp_path / "mods"
    spec_dir.mkdir()
    (spec_dir / f"{name}.py").write_text("raise SystemExit('import-time exit')\n")
    sys.path.insert(0, str(spec_dir))
    try:
        allow(f"{name}:rule")
        with pytest.raises(scangate.InvalidArgument, match=r"plugins\[0\]: .*SystemExit"):
            rewards.put_campaign(dd, campaign("c", "BEER", [f"{name}:rule"]), "c.toml")
    finally:
        sys.path.remove(str(spec_dir))
        sys.modules.pop(name, None)
    assert stored(dd) == []


def test_cli_campaign_load_refuses_builtins_exit(tmp_path: Path, run_cli) -> None:  # type: ignore[no-untyped-def]
    data = tmp_path / "d"
    scangate.init_data_dir(data).close()
    f = tmp_path / "c.toml"
    f.write_text(campaign("c", "BEER", ["builtins:exit"]))
    r = run_cli("campaign", "load", "--data", data, f)
    assert r.returncode == 2 and "plugins[0]" in r.stderr and "builtins:exit" in r.stderr, r.stderr
    assert run_cli("campaign", "list", "--data", data).stdout == ""


# ------------------------------------------------------------------ allow-list
def test_allow_list_from_the_config_file(tmp_path: Path, dd: scangate.DataDir) -> None:
    (tmp_path / "scangate.toml").write_text(f'[plugins]\nallow = ["{HOSTILE}:honest"]\n')
    cfg = load_config(data_dir=tmp_path, env={})
    assert cfg.plugins.allow == (f"{HOSTILE}:honest",)
    plugins.configure(cfg.plugins.allow)
    rewards.put_campaign(dd, campaign("ok", "BEER", [f"{HOSTILE}:honest"]), "ok.toml")
    with pytest.raises(scangate.InvalidArgument, match=r"plugins\[0\]"):
        rewards.put_campaign(dd, campaign("no", "BEER", [f"{HOSTILE}:raises"]), "no.toml")
    assert stored(dd) == ["ok"]


def test_allow_list_from_the_environment(monkeypatch: pytest.MonkeyPatch, dd: scangate.DataDir) -> None:
    monkeypatch.setenv("SCANGATE_PLUGINS_ALLOW", f"{HOSTILE}:honest, {HOSTILE}:raises")
    assert load_config(env=os.environ).plugins.allow == (f"{HOSTILE}:honest", f"{HOSTILE}:raises")
    rewards.put_campaign(dd, campaign("ok", "BEER", [f"{HOSTILE}:honest", f"{HOSTILE}:raises"]), "ok.toml")
    with pytest.raises(scangate.InvalidArgument, match=r"plugins\[0\]"):
        rewards.put_campaign(dd, campaign("no", "BEER", [f"{HOSTILE}:loops"]), "no.toml")
    assert stored(dd) == ["ok"]


def test_a_malformed_allow_list_fails_at_start_naming_the_key(tmp_path: Path) -> None:
    with pytest.raises(scangate.InvalidArgument, match=r"^config: SCANGATE_PLUGINS_ALLOW: plugins\.allow\[1\]"):
        load_config(env={"SCANGATE_PLUGINS_ALLOW": "a.b:c,builtins"})
    (tmp_path / "scangate.toml").write_text('[plugins]\nallow = ["a.b:c", 5]\n')
    with pytest.raises(scangate.InvalidArgument, match=r"^config: plugins\.allow: expected an array of strings"):
        load_config(data_dir=tmp_path, env={})
    (tmp_path / "scangate.toml").write_text('[plugins]\nallow = ["nope"]\n')
    with pytest.raises(scangate.InvalidArgument, match=r"^config: plugins\.allow\[0\]: must be"):
        load_config(data_dir=tmp_path, env={})
    # applying it imports each allowed plugin: one that cannot load fails the start
    with pytest.raises(scangate.InvalidArgument, match=r"^plugins\.allow\[1\]: cannot be loaded"):
        plugins.configure([f"{HOSTILE}:honest", "no_such_module_xyz:rule"])


# ------------------------------------------------------------------ misbehaving at run time
def _world(dd: scangate.DataDir, ref: str) -> tuple[list[str], list[str]]:
    allow(ref)
    rewards.put_campaign(dd, campaign("bad", "BAD", [ref]), "bad.toml")
    rewards.put_campaign(dd, campaign("good", "GOOD", []), "good.toml")
    return dd.issue_codes("GOOD", "item", 4).as_strings(), dd.issue_codes("BAD", "item", 3).as_strings()


def _batch(good: list[str], bad: list[str]) -> list[ScanRequest]:
    order = [good[0], bad[0], good[1], bad[1], good[2], bad[2], good[3]]
    return [ScanRequest(f"r{i}", code, f"actor-{i}", region=510104, time_ms=AT) for i, code in enumerate(order)]


@pytest.mark.parametrize("attr,kind", [
    ("exits", "raised"), ("interrupts", "raised"), ("generator_exit", "raised"), ("raises", "raised"),
    ("unprintable", "raised"), ("loops", "timeout"),
])
def test_an_allowed_plugin_that_fails_costs_only_its_own_scans(dd: scangate.DataDir, attr: str, kind: str) -> None:
    ref = f"{HOSTILE}:{attr}"
    good, bad = _world(dd, ref)
    started = time.monotonic()
    decisions = rewards.decide_scans(dd, _batch(good, bad))
    elapsed = time.monotonic() - started
    honest = [d for d in decisions if d.campaign_id == "good"]
    hostile = [d for d in decisions if d.campaign_id == "bad"]
    assert len(honest) == 4 and all(d.award is not None and d.award.points == 10 for d in honest)
    assert len(hostile) == 3
    assert all(d.award is None and d.no_reward is NoReward.PLUGIN_FAILED for d in hostile)
    assert all(d.verdict.label == "genuine" for d in decisions)
    counts = plugins.failure_counts()
    assert sum(n for (r, _k), n in counts.items() if r == ref) == 3 and counts.get((ref, kind), 0) >= 1
    assert counted(dd, "bad", ref) == 3
    # a plugin that never returns costs the batch one time budget, not one per scan
    assert elapsed < 3 * plugins.PLUGIN_TIMEOUT_S + 1.0, elapsed
    # the hostile campaign's codes were not claimed: nothing was granted by accident
    assert [e["campaign_id"] for e in reads.ledger(dd)] == ["good"] * 4


@pytest.mark.parametrize("result", [
    "not a result", 1,
    RuleResult(veto="no"),  # type: ignore[arg-type]  # old code: a truthy veto, RW-N12 instead of a failure
    RuleResult(odds_ppm=0.5),  # type: ignore[arg-type]
    RuleResult(odds_ppm=2_000_000),
    RuleResult(prize_id=7),  # type: ignore[arg-type]
    RuleResult(points_multiplier_pct=10**9),       # old code: ten million times the points, granted
    RuleResult(points_multiplier_pct=True),  # type: ignore[arg-type]
    RuleResult(note=b"bytes"),  # type: ignore[arg-type]
], ids=["str", "int", "veto-str", "odds-float", "odds-range", "prize-int", "pct-huge", "pct-bool", "note-bytes"])
def test_garbage_results_grant_nothing(dd: scangate.DataDir, result: object) -> None:
    name = f"scangate_test_garbage_{abs(hash(repr(result)))}"
    module = types.ModuleType(name)
    module.rule = lambda ctx: result  # type: ignore[attr-defined]
    sys.modules[name] = module
    ref = f"{name}:rule"
    try:
        good, bad = _world(dd, ref)
        decisions = rewards.decide_scans(dd, _batch(good, bad))
    finally:
        sys.modules.pop(name, None)
    assert all(d.award is None and d.no_reward is NoReward.PLUGIN_FAILED for d in decisions if d.campaign_id == "bad")
    assert all(d.award is not None for d in decisions if d.campaign_id == "good")
    assert plugins.failure_counts()[(ref, "bad_result")] == 3


def test_failures_are_logged_once_per_log_every(dd: scangate.DataDir, caplog: pytest.LogCaptureFixture,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    ref = f"{HOSTILE}:raises"
    good, bad = _world(dd, ref)
    more = dd.issue_codes("BAD", "item", 4).as_strings()
    monkeypatch.setattr(plugins, "LOG_EVERY", 3)
    with caplog.at_level(logging.WARNING, logger="scangate.plugins"):
        rewards.decide_scans(dd, _batch(good, bad))
        rewards.decide_scans(dd, [ScanRequest(f"m{i}", c, f"m-{i}", time_ms=AT) for i, c in enumerate(more)])
    records = [r for r in caplog.records if ref in r.getMessage()]
    assert len(records) == 3                       # failures 1, 4 and 7 of 7
    assert "Traceback" in records[0].getMessage() and "Traceback" not in records[1].getMessage()
    assert plugins.failure_counts()[(ref, "raised")] == 7


def test_a_stored_campaign_whose_plugin_was_uninstalled_fails_safe(dd: scangate.DataDir,
                                                                   caplog: pytest.LogCaptureFixture) -> None:
    name = "scangate_test_uninstalled"
    module = types.ModuleType(name)
    module.rule = lambda ctx: RuleResult(points_multiplier_pct=200)  # type: ignore[attr-defined]
    sys.modules[name] = module
    ref = f"{name}:rule"
    good, bad = _world(dd, ref)
    # uninstalled, then the server restarted (its caches are empty): the import fails
    sys.modules[name] = None  # type: ignore[assignment]
    try:
        plugins.configure(plugins.allowed_refs(), verify=False)
        with caplog.at_level(logging.WARNING, logger="scangate.plugins"):
            first = rewards.decide_scans(dd, _batch(good, bad))
    finally:
        sys.modules.pop(name, None)
    assert stored(dd) == ["bad", "good"]           # still readable
    assert [d.no_reward for d in first if d.campaign_id == "bad"] == [NoReward.PLUGIN_FAILED] * 3
    assert all(d.award is not None for d in first if d.campaign_id == "good")
    assert plugins.failure_counts()[(ref, "unavailable")] == 3
    assert len([r for r in caplog.records if ref in r.getMessage()]) == 1


def test_a_campaign_stored_before_the_allow_list_cannot_run_builtins_exit(dd: scangate.DataDir,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    # stored by an older version, which checked only the shape: the policy applies when it runs
    with monkeypatch.context() as m:
        m.setattr(plugins, "check_refs", lambda refs: None, raising=False)
        rewards.put_campaign(dd, campaign("bad", "BAD", ["builtins:exit"]), "bad.toml")
    rewards.put_campaign(dd, campaign("good", "GOOD", []), "good.toml")
    good, bad = dd.issue_codes("GOOD", "item", 4).as_strings(), dd.issue_codes("BAD", "item", 3).as_strings()
    decisions = rewards.decide_scans(dd, _batch(good, bad))
    assert [d.no_reward for d in decisions if d.campaign_id == "bad"] == [NoReward.PLUGIN_FAILED] * 3
    assert all(d.award is not None for d in decisions if d.campaign_id == "good")
    assert plugins.failure_counts()[("builtins:exit", "unavailable")] == 3


def test_a_plugin_the_operator_stopped_allowing_no_longer_runs(dd: scangate.DataDir) -> None:
    ref = f"{HOSTILE}:honest"
    good, bad = _world(dd, ref)
    plugins.configure([])                          # the operator took it off the allow-list
    decisions = rewards.decide_scans(dd, _batch(good, bad))
    assert [d.no_reward for d in decisions if d.campaign_id == "bad"] == [NoReward.PLUGIN_FAILED] * 3
    assert plugins.failure_counts()[(ref, "unavailable")] == 3


def test_a_real_ctrl_c_still_stops_the_process(dd: scangate.DataDir) -> None:
    """Guard for the design, not a bug of the old code: catching the plugin's
    BaseException must not swallow a real SIGINT to the main thread."""
    name = "scangate_test_sigint"
    module = types.ModuleType(name)

    def rule(ctx):  # type: ignore[no-untyped-def]
        os.kill(os.getpid(), signal.SIGINT)       # a real signal, delivered to the main thread
        time.sleep(0.1)

    module.rule = rule  # type: ignore[attr-defined]
    sys.modules[name] = module
    try:
        good, bad = _world(dd, f"{name}:rule")
        assert threading.current_thread() is threading.main_thread()
        with pytest.raises(KeyboardInterrupt):
            rewards.decide_scans(dd, _batch(good, bad))
    finally:
        sys.modules.pop(name, None)
    time.sleep(0.2)
    assert stored(dd) == ["bad", "good"]


def test_concurrent_batches_with_a_looping_plugin_stay_fast(dd: scangate.DataDir) -> None:
    ref = f"{HOSTILE}:loops"
    allow(ref)
    rewards.put_campaign(dd, campaign("bad", "BAD", [ref]), "bad.toml")
    rewards.put_campaign(dd, campaign("good", "GOOD", []), "good.toml")
    good = dd.issue_codes("GOOD", "item", 40).as_strings()
    bad = dd.issue_codes("BAD", "item", 40).as_strings()
    started = time.monotonic()
    out = []
    for i in range(0, 40, 10):         # four batches, each mixing both campaigns
        reqs = [ScanRequest(f"g{j}", good[j], f"g-{j}", time_ms=AT) for j in range(i, i + 10)] + \
               [ScanRequest(f"b{j}", bad[j], f"b-{j}", time_ms=AT) for j in range(i, i + 10)]
        out += rewards.decide_scans(dd, reqs)
    elapsed = time.monotonic() - started
    assert sum(d.award is not None for d in out) == 40
    assert all(d.no_reward is NoReward.PLUGIN_FAILED for d in out if d.campaign_id == "bad")
    # old code: 40 waits of 0.2 s (8 s) and a pool of four threads stuck forever
    assert elapsed < 2.5, elapsed
    assert plugins.failure_counts()[(ref, "timeout")] <= 4


# ------------------------------------------------------------------ over a real server
def test_a_hostile_plugin_does_not_fail_honest_clients_over_grpc(tmp_path: Path) -> None:
    from serverproc import running

    data = tmp_path / "data"
    with scangate.init_data_dir(data) as d:
        good = d.issue_codes("GOOD", "item", 60).as_strings()
        bad = d.issue_codes("BAD", "item", 120).as_strings()
    tests_dir = str(Path(__file__).parent)
    env = {"SCANGATE_PLUGINS_ALLOW": f"{HOSTILE}:exits,{HOSTILE}:loops",
           "PYTHONPATH": os.pathsep.join([tests_dir, os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)}
    with running(data, "--workers", "2", env=env) as srv, scangate.Client(srv.target) as admin:
        with pytest.raises(scangate.InvalidArgument, match=r"plugins\[0\]") as info:
            admin.put_campaign(campaign("evil", "BAD", ["builtins:exit"]), "evil.toml")
        assert "not an installed or allowed plugin" in str(info.value)
        with pytest.raises(scangate.InvalidArgument, match=r"plugins\[0\]"):
            admin.put_campaign(campaign("evil", "BAD", ["no_such_module_xyz:rule"]), "evil.toml")
        assert [c.campaign_id for c in admin.list_campaigns()] == []
        admin.put_campaign(campaign("bad", "BAD", [f"{HOSTILE}:exits", f"{HOSTILE}:loops"]), "bad.toml")
        admin.put_campaign(campaign("good", "GOOD", []), "good.toml")

        def honest(k: int) -> list:
            with scangate.Client(srv.target) as c:
                return [c.scan(code, f"honest-{k}-{i}") for i, code in enumerate(good[k::3])]

        def attacker(k: int) -> list:
            with scangate.Client(srv.target) as c:
                return [c.scan(code, f"evil-{k}-{i}") for i, code in enumerate(bad[k::4])]

        with ThreadPoolExecutor(7) as pool:
            attacks = [pool.submit(attacker, k) for k in range(4)]
            honests = [pool.submit(honest, k) for k in range(3)]
            honest_decisions = [d for f in honests for d in f.result(timeout=120)]
            attack_decisions = [d for f in attacks for d in f.result(timeout=120)]
        assert len(honest_decisions) == 60
        assert all(d.award is not None and d.campaign_id == "good" for d in honest_decisions)
        assert len(attack_decisions) == 120
        assert all(d.award is None and d.no_reward is NoReward.PLUGIN_FAILED for d in attack_decisions)
    logs = srv.logs()
    assert "SystemExit" in logs and logs.count("rule plugin hostile_rules:exits failed") == 1
