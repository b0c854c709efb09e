"""A data directory written by an earlier release opens and answers as it did.

tests/data/datadir-v1.tar.gz was made by tests/data/make_datadir_v1.py with the
code of its commit (SCHEMA_VERSION 1: the record formats before the typed state
layer of issue 13); datadir-v1.json says what it holds and the answers it gave.
A copy is opened with today's code: every stored decision comes back byte for
byte on retry, the ledger audits, budgets and points are as recorded, and new
scans decide on top of it. When the formats change, this is the migration test:
the fixture stays, the code upgrades it.
"""
from __future__ import annotations

import json
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import scangate
from scangate import audit, points, rewards, verdicts
from scangate.enums import CodeStatus
from scangate.rewards import Decision, NoReward, ScanRequest

DATA = Path(__file__).resolve().parent / "data"
MANIFEST: dict[str, Any] = json.loads((DATA / "datadir-v1.json").read_text(encoding="utf-8"))
NOON = 1_780_286_400_000
CHENGDU, GUANGZHOU = 510104, 440106


@pytest.fixture
def dd(tmp_path: Path) -> Iterator[scangate.DataDir]:
    with tarfile.open(DATA / "datadir-v1.tar.gz") as tar:
        # the "data" filter (no links out, no device files) where this Python has it (3.11.4+)
        tar.extractall(tmp_path, **({"filter": "data"} if hasattr(tarfile, "data_filter") else {}))  # noqa: S202
    d = scangate.open_data_dir(tmp_path / "datadir-v1")
    try:
        yield d
    finally:
        d.close()


def test_every_stored_decision_comes_back_on_retry(dd: scangate.DataDir) -> None:
    requests = [ScanRequest(**r) for r in MANIFEST["requests"]]
    again = rewards.decide_scans(dd, requests)
    assert [d.to_json() if isinstance(d, Decision) else repr(d) for d in again] == MANIFEST["decisions"]
    # and changed nothing: the same budgets and points as recorded
    assert {c: rewards.budgets_used(dd, c) for c in MANIFEST["budgets_used"]} == MANIFEST["budgets_used"]
    assert {a: points.balance(dd, a) for a in MANIFEST["points"]} == MANIFEST["points"]


def test_the_ledger_audits(dd: scangate.DataDir) -> None:
    entries = list(audit.audit_ledger(dd))
    assert [e["seq"] for e in entries] == list(range(1, MANIFEST["ledger_last"] + 1))
    assert [e["seq"] for e in entries if not e["verified"]] == []


def test_codes_recalls_and_trace_read_as_written(dd: scangate.DataDir) -> None:
    codes = MANIFEST["items"] + MANIFEST["cases"] + MANIFEST["pallets"] + MANIFEST["recalled"]
    result = dd.verify_codes(codes)
    assert set(result.status.tolist()) == {int(CodeStatus.GENUINE)}
    assert len(verdicts.list_recalls(dd)) == MANIFEST["recalls"]
    # items 36..47 went in pallet 1, shipped to GD (Guangdong): in Chengdu they are diverted
    (d,) = verdicts.decide_verdicts(dd, [verdicts.Scan(MANIFEST["items"][46], "new", region=CHENGDU,
                                                        time_ms=NOON)])
    assert d.verdict is verdicts.Verdict.DIVERTED
    assert d.evidence["trace"]["dealer_id"] == "GD"
    (r,) = verdicts.decide_verdicts(dd, [verdicts.Scan(MANIFEST["recalled"][0], "new", time_ms=NOON)])
    assert r.verdict is verdicts.Verdict.REVOKED


def test_new_scans_decide_on_top_of_it(dd: scangate.DataDir) -> None:
    last = MANIFEST["ledger_last"]
    # store-1 earned 200 points: silver tier, 100 points x 150 %
    (store,) = rewards.decide_scans(dd, [ScanRequest("new-s", MANIFEST["cases"][6], "store-1", actor_type="store",
                                                     region=GUANGZHOU, time_ms=NOON + 3_600_000)])
    assert isinstance(store, Decision) and store.award is not None
    assert (store.award.points, store.award.ledger_seq) == (150, last + 1)
    assert points.balance(dd, "store-1") == MANIFEST["points"]["store-1"] + 150
    # a code scanned before is a repeat scan, with its first scan's time
    (repeat,) = rewards.decide_scans(dd, [ScanRequest("new-r", MANIFEST["items"][2], "someone", region=CHENGDU,
                                                      time_ms=NOON + 2 * 86_400_000)])
    assert isinstance(repeat, Decision) and repeat.no_reward is NoReward.ALREADY_CLAIMED
    assert repeat.verdict["first_scan"]["time_ms"] == MANIFEST["requests"][2]["time_ms"]
    assert [e["verified"] for e in audit.audit_ledger(dd, last + 1)] == [True]
