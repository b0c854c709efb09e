"""``python -m bench pg`` with tiny numbers: a cluster of its own, every decider's
scans decided and checked, raw PostgreSQL beside them at each decider count."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}


def test_bench_pg_reports_each_decider_count_beside_raw_postgresql() -> None:
    done = subprocess.run([sys.executable, "-m", "bench", "pg", "--n", "300", "--batch", "50", "--deciders", "1,3",
                           "--json"], cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report = json.loads(done.stdout)
    figures = report["figures"]
    for d in (1, 3):
        for kind in ("scangate", "raw"):
            f = figures[f"pg/{kind}/{d}"]
            assert f["count"] == 300 and f["rate"] > 0 and f["cpu_us_per_decision"] > 0
        assert report["ratios"][str(d)] == figures[f"pg/scangate/{d}"]["rate"] / figures[f"pg/raw/{d}"]["rate"]
    assert report["scaling"]["scangate"] == figures["pg/scangate/3"]["rate"] / figures["pg/scangate/1"]["rate"]
    assert [t["name"] for t in report["targets"]] == [
        "scangate vs raw set-based PostgreSQL, 1 decider(s)", "scangate vs raw set-based PostgreSQL, 3 decider(s)"]
