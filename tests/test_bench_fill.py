"""``python -m bench fill`` with tiny numbers: every record a decision writes is
there as often as the scans made it, and ``bench grpc --store`` takes genuine
bottles the fill left unscanned, never the same one twice."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import scangate
from scangate.state import raw

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def test_bench_fill_makes_a_full_store_and_a_pool_of_unscanned_bottles(tmp_path: Path) -> None:
    from bench.fill import take_pool

    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    out = tmp_path / "full"
    done = subprocess.run([sys.executable, "-m", "bench", "fill", "--out", str(out), "--bottles", "20000",
                           "--scanned", "1000", "--actors", "300", "--batch", "250"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    record = json.loads(done.stdout)
    assert (record["bottles"], record["scanned"], record["pool_used"]) == (20000, 1000, 0)
    dd = scangate.open_data_dir(out)
    try:
        assert raw.count(dd, "scans") == raw.count(dd, "claims") == raw.count(dd, "ledger") == 1000
        assert raw.count(dd, "requests") == 1000
        assert 0 < raw.count(dd, "counters") and 0 < raw.count(dd, "outbox") < 1000
        assert raw.count(dd, "children") > 0        # the cases' children arrays
    finally:
        dd.close()
    first = take_pool(out, 30)
    second = take_pool(out, 30)
    assert len(set(first + second)) == 60
    assert json.loads((out / "bench-fill.json").read_text())["pool_used"] == 60
    dd = scangate.open_data_dir(out)
    try:
        checks = dd.verify_codes(first + second)
        assert (checks.status == 0).all()                                  # genuine
        assert all(s % 10 == (record["first_serial"] + 5) % 10 for s in checks.serial.tolist())   # never scanned
        assert all(dd.store.env.begin().get(s.to_bytes(7, "big"), db=dd.store.db("scans")) is None
                   for s in checks.serial.tolist())
    finally:
        dd.close()
    with pytest.raises(SystemExit, match="used up"):
        take_pool(out, 2000)
