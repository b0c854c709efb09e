"""``import scangate`` is light, and ``scangate.Client`` needs no LMDB, numpy,
cryptography or native core (issue 13, item 5): each check runs in a fresh
interpreter, since this one has long loaded everything."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import scangate
from scangate import _core
from scangate.enums import CodeStatus

from serverproc import running

# What an app that only calls a server must not load.
HEAVY = ("lmdb", "numpy", "cryptography", "xxhash", "scangate._core", "scangate.datadir", "scangate.store",
         "scangate.rewards", "scangate.verdicts", "scangate.trace", "scangate.ingest", "scangate.points")

CAMPAIGN = ('id = "c"\nname = "c"\nstart = 2026-01-01\nend = 2030-01-01\nactor = "consumer"\n'
            'odds = "100%"\n[[prizes]]\nid = "cash"\nkind = "cash"\namount_fen = 150\n')


def run_python(script: str, cwd: Path, timeout: float = 300) -> Any:
    """Run ``script`` in a fresh interpreter (this venv's, environment inherited:
    SCANGATE_CLOCK included); it prints one JSON value last, which is returned."""
    r = subprocess.run([sys.executable, "-c", textwrap.dedent(script)], capture_output=True, text=True,
                       cwd=cwd, env=dict(os.environ), timeout=timeout, check=False)
    assert r.returncode == 0, r.stdout + r.stderr
    return json.loads(r.stdout.strip().splitlines()[-1])


def test_import_scangate_loads_no_heavy_module_nor_grpc(tmp_path: Path) -> None:
    loaded = run_python(f"""
        import json, sys
        import scangate
        print(json.dumps(sorted(m for m in {(*HEAVY, "grpc")!r} if m in sys.modules)))
    """, tmp_path)
    assert loaded == []


def test_the_client_and_what_it_returns_load_no_heavy_module(tmp_path: Path) -> None:
    out = run_python(f"""
        import json, sys
        import scangate
        names = ["Client", "AsyncClient", "ScanRequest", "Decision", "Award", "NoReward", "Verdict", "Reason",
                 "CodeStatus", "Level", "InvalidArgument", "Unavailable", "PermissionDenied", "NotFound"]
        got = {{n: getattr(scangate, n).__module__ for n in names}}
        from scangate.client import IssuedBatch
        from scangate.recalls import Recall, RecallReport
        from scangate import wire
        c = scangate.Client("127.0.0.1:1")      # a channel connects on the first call: none is made
        c.close()
        r = scangate.ScanRequest("r-1", "CODE", "alice", region=440106)
        msg = wire.scan_request_to_proto(r)
        assert wire.scan_request_from_proto(msg) == r
        print(json.dumps({{"modules": got, "grpc": "grpc" in sys.modules,
                          "heavy": sorted(m for m in {HEAVY!r} if m in sys.modules)}}))
    """, tmp_path)
    assert out["heavy"] == []
    assert out["grpc"] is True       # the client did load: the check above saw a real import
    assert out["modules"] == {
        "Client": "scangate.client", "AsyncClient": "scangate.client", "ScanRequest": "scangate.decision",
        "Decision": "scangate.decision", "Award": "scangate.decision", "NoReward": "scangate.decision",
        "Verdict": "scangate.enums", "Reason": "scangate.enums", "CodeStatus": "scangate.enums",
        "Level": "scangate.enums", "InvalidArgument": "scangate.errors", "Unavailable": "scangate.errors",
        "PermissionDenied": "scangate.errors", "NotFound": "scangate.errors"}


def test_the_data_directory_names_load_on_first_use(tmp_path: Path) -> None:
    out = run_python(f"""
        import json, sys
        import scangate
        before = "lmdb" in sys.modules
        with scangate.init_data_dir({str(tmp_path / "data")!r}) as dd:
            codes = scangate.issue_codes(dd, "BEER", "item", 3).as_strings()
            statuses = [int(s) for s in scangate.verify_codes(dd, codes + ["NOT-A-CODE"]).status]
        with scangate.open_data_dir({str(tmp_path / "data")!r}) as dd:
            one = scangate.verify_code(dd, codes[0]).status
        print(json.dumps({{"before": before, "after": "lmdb" in sys.modules, "statuses": statuses,
                          "one": int(one), "sub": scangate.rewards.__name__,
                          "same": scangate.open_data_dir is scangate.datadir.open_data_dir}}))
    """, tmp_path)
    genuine, malformed = int(CodeStatus.GENUINE), int(CodeStatus.MALFORMED)
    assert out == {"before": False, "after": True, "statuses": [genuine] * 3 + [malformed], "one": genuine,
                   "sub": "scangate.rewards", "same": True}


def test_every_public_name_resolves_and_old_homes_still_export_them() -> None:
    assert set(scangate.__all__) <= set(dir(scangate))
    for name in scangate.__all__:
        assert getattr(scangate, name) is not None, name
    from scangate import decision, enums, recalls, rewards, verdicts
    assert (rewards.Decision, rewards.Award, rewards.NoReward, rewards.ScanRequest) == (
        decision.Decision, decision.Award, decision.NoReward, decision.ScanRequest)
    assert rewards.NO_REWARD_MESSAGES is decision.NO_REWARD_MESSAGES
    assert (verdicts.Verdict, verdicts.Reason) == (enums.Verdict, enums.Reason)
    assert (verdicts.Recall, verdicts.RecallReport) == (recalls.Recall, recalls.RecallReport)
    assert scangate.Scan is verdicts.Scan and scangate.DataDir is scangate.datadir.DataDir
    try:
        scangate.no_such_name     # noqa: B018 - the attribute access is the test
    except AttributeError as exc:
        assert str(exc) == "module 'scangate' has no attribute 'no_such_name'"
    else:
        raise AssertionError("scangate.no_such_name resolved")


def test_code_status_values_are_the_core_status_codes() -> None:
    # enums.py writes them out so as not to load the core: they must stay equal
    assert [(s.name, int(s)) for s in CodeStatus] == [
        ("GENUINE", _core.OK), ("TYPO", _core.TYPO), ("MALFORMED", _core.MALFORMED),
        ("COUNTERFEIT", _core.COUNTERFEIT), ("UNKNOWN_KEY", _core.UNKNOWN_KEY), ("NOT_ISSUED", _core.NOT_ISSUED)]


def test_a_light_client_issues_verifies_scans_and_recalls_against_a_real_server(tmp_path: Path) -> None:
    with running(tmp_path / "data") as srv:
        out = run_python(f"""
            import json, sys
            import scangate
            from scangate import wire
            from scangate.enums import CodeStatus
            with scangate.Client({srv.target!r}, timeout=60) as c:
                campaign = c.put_campaign({CAMPAIGN!r}, "c.toml")
                [batch] = list(c.issue_codes("BEER", "item", 4))
                a, b, x, y = batch.codes
                checks = [(wire.enum_from_proto(CodeStatus, r.status).name, r.serial == batch.first_serial + i if i < 4 else None, r.sku)
                          for i, r in enumerate(c.verify_codes([a, b, x, y, "NOT-A-CODE"]))]
                first = c.scan(a, "alice", request_id="s-1", region=510107)
                again = c.scan(a, "bob", request_id="s-2", region=510107)
                retry = c.scan(a, "alice", request_id="s-1", region=510107)
                fake = c.scan("NOT-A-CODE", "carol", request_id="s-3")
                streamed = list(c.scan_stream([scangate.ScanRequest("s-4", b, "dave", region=510107)]))
                report = c.recall("batch damaged", serial_range=(batch.first_serial + 2, batch.first_serial + 2))
                recalled = c.scan(x, "erin", request_id="s-5", region=510107)
                try:
                    c.scan(y, "frank", request_id="s-1", region=510107)     # s-1 was alice's
                    refused = None
                except scangate.InvalidArgument as exc:
                    refused = [list(v) for v in exc.violations][:1]
                # the calls that return the package's other results: light too (scangate.results)
                [cases] = list(c.issue_codes("BEER", "case", 1))
                links = c.upload_links([(cases.codes[0], y)])
                dealers = c.put_dealers([scangate.results.Dealer("SC", "Sichuan", ("51",))])
                redeemed = c.redeem_points("alice", 5, "order-1")
            def show(d):
                return {{"type": type(d).__module__ + "." + type(d).__qualname__, "id": d.request_id,
                        "verdict": d.verdict.label, "reasons": [r.value for r in d.verdict.reasons],
                        "award": None if d.award is None else [d.award.kind, d.award.amount_fen, d.award.how],
                        "no_reward": None if d.no_reward is None else d.no_reward.name,
                        "first_actor": (d.verdict.first_scan or {{}}).get("actor"), "en": d.message["en"]}}
            print(json.dumps({{
                "campaign": campaign.campaign_id, "checks": checks,
                "first": show(first), "again": show(again), "same_on_retry": retry == first,
                "fake": show(fake), "streamed": [show(d) for d in streamed],
                "report": [type(report).__module__, report.added, report.codes, report.recalls[0].reason],
                "recalled": show(recalled), "refused": refused,
                "links": [type(links).__module__, links.rows, links.added], "dealers": dealers,
                "redeemed": [type(redeemed).__module__, redeemed.ok, redeemed.reason],
                "heavy": sorted(m for m in {HEAVY!r} if m in sys.modules)}}))
        """, tmp_path)
    assert out["heavy"] == []
    assert out["links"] == ["scangate.results", 1, 1] and out["dealers"] == 1
    assert out["redeemed"] == ["scangate.results", False, "insufficient_points"]
    assert out["campaign"] == "c"
    assert out["checks"] == [["GENUINE", True, "BEER"]] * 4 + [["MALFORMED", None, ""]]
    decision = "scangate.decision.Decision"
    assert out["first"] == {"type": decision, "id": "s-1", "verdict": "genuine", "reasons": ["SG-G1", "SG-G3"],
                            "award": ["cash", 150, "draw"], "no_reward": None, "first_actor": None,
                            "en": "Congratulations! You won a 1.50 CNY red packet."}
    assert out["again"]["verdict"] == "genuine" and out["again"]["reasons"] == ["SG-G2", "SG-G3"]
    assert out["again"]["award"] is None and out["again"]["no_reward"] == "ALREADY_CLAIMED"
    assert out["again"]["first_actor"] == "alice"
    assert out["same_on_retry"] is True
    assert out["fake"]["verdict"] == "counterfeit" and out["fake"]["reasons"] == ["SG-C1"]
    assert out["fake"]["award"] is None and out["fake"]["no_reward"] == "VERDICT_NOT_ELIGIBLE"
    assert [(d["id"], d["verdict"], d["award"]) for d in out["streamed"]] == [("s-4", "genuine", ["cash", 150, "draw"])]
    assert out["report"] == ["scangate.recalls", 1, 1, "batch damaged"]
    assert out["recalled"]["verdict"] == "revoked" and out["recalled"]["reasons"] == ["SG-G1", "SG-R2", "SG-G3"]
    assert out["recalled"]["award"] is None
    assert out["refused"] is not None and out["refused"][0][0] == "request_id"
