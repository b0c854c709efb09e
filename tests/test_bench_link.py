"""``python -m bench link`` end to end, with tiny numbers: a real ``scangate serve``
under paced Scan load, a real ``scangate link`` of a 3,000-row CSV beside it, and
the JSON report's figures."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.skipif(not hasattr(os, "wait4") or not os.path.isdir("/proc/self"),
                                reason="reaps the link process with os.wait4; reads /proc")


def test_bench_link_reports_both_phases_and_the_uploads_memory() -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    done = subprocess.run([sys.executable, "-m", "bench", "link", "--rows", "3000", "--seconds", "1",
                           "--rate", "50", "--json"], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(done.stdout)
    assert report["benchmark"] == "link"
    for name in ("baseline", "upload"):
        phase = report["phases"][name]
        assert phase["calls"] > 0, (name, phase)
        assert phase["errors"] == 0, (name, phase)
        assert phase["p99_ms"] > 0, (name, phase)
    assert report["link"]["rows"] == 3000
    assert report["link"]["summary"]["rows"] == 3000
    assert report["link"]["peak_rss_mib"] > 0
    assert report["link"]["csv_mib"] > 0
    ratio = report["p99_ratio"]
    assert isinstance(ratio, float) and ratio > 0
    assert report["targets"][1]["pass"] is True      # every call got a genuine decision
