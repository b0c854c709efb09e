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


ENV = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}


@pytest.fixture(scope="module")
def filled(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """A store ``bench fill`` made, tiny, and the fill's JSON record."""
    out = tmp_path_factory.mktemp("fill") / "full"
    done = subprocess.run([sys.executable, "-m", "bench", "fill", "--out", str(out), "--bottles", "20000",
                           "--scanned", "1000", "--actors", "300", "--batch", "250"], cwd=ROOT, env=ENV,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    return out, json.loads(done.stdout)


def test_bench_fill_makes_a_full_store_and_a_pool_of_unscanned_bottles(filled: tuple[Path, dict]) -> None:
    from bench.fill import take_pool

    out, record = filled
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


def test_bench_grpc_on_a_filled_store_prints_the_raw_lmdb_floor_of_the_same_sizes(filled: tuple[Path, dict]) -> None:
    """``bench grpc --store``: Scan and ScanStream on the filled store beside a
    fresh one, and raw LMDB's random puts in databases sized as each of them."""
    from bench.rewards import RANDOM_PUT_DATABASES

    out, _record = filled
    dd = scangate.open_data_dir(out)
    try:
        sizes = [raw.count(dd, name) for name in RANDOM_PUT_DATABASES]
    finally:
        dd.close()
    done = subprocess.run([sys.executable, "-m", "bench", "grpc", "--workers", "1", "--n", "200", "--warmup", "50",
                           "--batch", "50", "--streams", "2", "--store", str(out), "--json"],
                          cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report = json.loads(done.stdout)
    head = report["runs"][0]
    floor = head["store_raw"]
    assert floor["databases"] == list(RANDOM_PUT_DATABASES)
    # the bench's decisions added to the filled store after its sizes were read here:
    # at least as many as then, and the request index grew by the scans sent
    assert all(now >= then for now, then in zip(floor["filled"]["entries"], sizes))
    assert floor["filled"]["entries"][1] >= sizes[1] + 200 + 50
    assert floor["fresh"]["entries"][0] > 0 and floor["fresh"]["count"] == floor["filled"]["count"] == 200
    assert floor["filled_x_fresh"] == pytest.approx(floor["filled"]["rate"] / floor["fresh"]["rate"])
    names = [t["name"] for t in report["targets"]]
    assert any("ScanStream on the filled store vs a fresh store" in n for n in names)


def test_bench_phases_decides_on_both_stores_and_commits_every_scan(filled: tuple[Path, dict]) -> None:
    """``bench phases --store``: N scans in each store after two warm-up batches,
    every one committed (the filled store's histories grow by as many), each phase
    timed."""
    from bench.phases import PHASES

    out, _record = filled
    dd = scangate.open_data_dir(out)
    try:
        before = raw.count(dd, "scans")
    finally:
        dd.close()
    pool_before = json.loads((out / "bench-fill.json").read_text())["pool_used"]
    done = subprocess.run([sys.executable, "-m", "bench", "phases", "--n", "200", "--batch", "50", "--repeat", "2",
                           "--store", str(out), "--json"], cwd=ROOT, env=ENV, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report = json.loads(done.stdout)
    for store in ("fresh", "filled"):
        figures = report[store]
        assert figures["decisions"] == 200
        assert set(figures["us_per_decision"]) == set(PHASES)
        assert all(v["user"] >= 0 and v["system"] >= 0 for v in figures["us_per_decision"].values())
        assert sum(v["user"] + v["system"] for v in figures["us_per_decision"].values()) > 0
    assert report["filled_x_fresh"] == pytest.approx(report["filled"]["rate"] / report["fresh"]["rate"])
    used = 2 * 50 + 2 * 200
    assert json.loads((out / "bench-fill.json").read_text())["pool_used"] == pool_before + used
    dd = scangate.open_data_dir(out)
    try:
        assert raw.count(dd, "scans") == before + used
    finally:
        dd.close()
