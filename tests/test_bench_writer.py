"""``python -m bench writer`` end to end, with tiny numbers: a real writer process
fed by two feeder processes, prepared items and plain ones, and the JSON report."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="reads the writer's CPU from /proc")


def test_bench_writer_reports_both_kinds_of_item_beside_raw_lmdb() -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    done = subprocess.run([sys.executable, "-m", "bench", "writer", "--n", "400", "--feeders", "2", "--batch", "50",
                           "--window", "2", "--json"], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(done.stdout)
    assert report["benchmark"] == "writer"
    f = report["figures"]
    for name in ("writer/prepared", "writer/plain"):
        assert f[name]["count"] == 400, (name, f[name])      # every scan decided, none refused
        assert f[name]["rate"] > 0 and f[name]["x_raw"] > 0
        assert f[name]["writer_cpu_us_per_decision"] > 0
    assert f["writer/prepared"]["prepare_cpu_us_per_decision"] > 0
    assert f["writer/plain"]["prepare_cpu_us_per_decision"] is None
    assert f["raw"]["count"] == 400 and f["raw"]["rate"] > 0
    (target,) = report["targets"]
    assert target["measured"] == f["writer/prepared"]["writer_cpu_us_per_decision"]
