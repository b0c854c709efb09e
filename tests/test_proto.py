"""The generated code matches server/proto (the drift check CI runs), the enums
of the wire protocol cover the package's, and decisions survive the wire."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import msgspec
import pytest

import scangate
from scangate import rewards, wire
from scangate.enums import CodeStatus, Level
from scangate.rewards import NoReward, ScanRequest
from scangate.verdicts import Reason, Verdict
from scangate.v1 import common_pb2

ROOT = Path(__file__).resolve().parents[1]


def test_generated_code_is_up_to_date() -> None:
    r = subprocess.run([sys.executable, str(ROOT / "server" / "proto" / "generate.py"), "--check"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr


def test_drift_check_fails_on_a_stale_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sys.path.insert(0, str(ROOT / "server" / "proto"))
    try:
        import generate
    finally:
        sys.path.pop(0)
    fake = tmp_path / "python"
    (fake / "scangate" / "v1").mkdir(parents=True)
    generate.generate(fake)
    (fake / "scangate" / "v1" / "scan_pb2.py").write_text("# edited by hand\n")
    (fake / "scangate" / "v1" / "old_pb2.py").write_text("")
    monkeypatch.setattr(generate, "OUT_ROOT", fake)
    stale = generate.check()
    assert stale == ["scangate/v1/scan_pb2.py", "scangate/v1/old_pb2.py (no .proto makes it)"]


@pytest.mark.parametrize("kind", [Verdict, Reason, NoReward, CodeStatus, Level])
def test_every_member_has_a_stable_wire_value(kind: type) -> None:
    values = [wire.enum_to_proto(m) for m in kind]
    assert 0 not in values and len(set(values)) == len(values)
    assert [wire.enum_from_proto(kind, v) for v in values] == list(kind)


def test_reason_numbers_follow_the_documented_codes() -> None:
    assert common_pb2.VerdictReason.Value("VERDICT_REASON_DIVERTED_OUTSIDE_TERRITORY") == 13
    assert wire.enum_to_proto(NoReward.DAILY_CAP_REACHED) == int(NoReward.DAILY_CAP_REACHED.value.split("N")[1])


def test_decisions_round_trip(tmp_path: Path) -> None:
    with scangate.init_data_dir(tmp_path / "d") as dd:
        rewards.put_campaign(dd, 'id = "c"\nname = "c"\nstart = 2026-01-01\nend = 2030-01-01\nactor = "consumer"\n'
                                 'odds = "100%"\n[[prizes]]\nid = "cash"\nkind = "cash"\namount_fen = 150\n', "c.toml")
        codes = dd.issue_codes("BEER", "item", 3).as_strings()
        t = 1_780_000_000_000
        decisions = rewards.decide_scans(dd, [
            ScanRequest("a", codes[0], "u1", region=510104, time_ms=t),
            ScanRequest("b", codes[0], "u2", lat=31.23, lon=121.47, time_ms=t + 60_000),
            ScanRequest("c", "garbage", "u3", time_ms=t),
            ScanRequest("d", codes[1], "u4", actor_type="store", time_ms=t, actor_tags=("vip",)),
        ])
    for d in decisions:
        back = wire.decision_from_proto(wire.decision_to_proto(d))
        # the same decision, its verdict's message now as the reply told it (``said``;
        # the brand's hotline in it: a reply carries no ``hotline``)
        told = msgspec.structs.replace(d.verdict, said=d.verdict.words(), hotline=None)
        assert back == msgspec.structs.replace(d, verdict=told)
        assert back.to_json() == d.to_json()
    assert decisions[0].award is not None and decisions[1].verdict.label == "suspect_clone"  # evidence: floats
    for r in (ScanRequest("x", "code", "u", "store", None, 1.5, 2.5, 7, ("a", "b")),
              ScanRequest("y", "code", "u", region=110101)):
        assert wire.scan_request_from_proto(wire.scan_request_to_proto(r)) == r
