"""Trace at full scale: 10 million bottles in 500,000 cases on 10,000 pallets,
linked from one CSV through the CLI, shipped to 100 dealers, every bottle traced
in vectorised form; then verdicts on a sample and an EPCIS re-pack. On both trace
paths (scangate.state.trace.TRACE_PATH): the small path then reads a 10,000-pallet
and a 2,000-scan batch, the array path a 500-bottle trace."""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest

import scangate
from scangate import ingest
from scangate.geo import default_index
from scangate.state import reads
from scangate.state import trace as trace_state
from scangate.trace import TraceStore
from scangate.verdicts import Reason, Scan, Verdict, decide_verdicts

N_BOTTLES = 10_000_000
N_CASES = 500_000
N_PALLETS = 10_000
PER_CASE = N_BOTTLES // N_CASES      # 20
PER_PALLET = N_CASES // N_PALLETS    # 50
N_DEALERS = 100
SAMPLE = 2_000
CODE = 29


@pytest.fixture(autouse=True, params=trace_state.TRACE_PATHS)
def trace_path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Each test here runs on both trace paths, in this process and in the CLI
    processes it starts (as in tests/test_trace.py)."""
    monkeypatch.setattr(trace_state, "TRACE_PATH", request.param)
    monkeypatch.setenv(trace_state.TRACE_PATH_ENV, request.param)
    return str(request.param)


def csv_rows(parents: np.ndarray, children: np.ndarray) -> np.ndarray:
    """(n x 60) uint8 rows "parent,child\\n" from two (n x 29) code text arrays."""
    n = parents.shape[0]
    rows = np.empty((n, 2 * CODE + 2), np.uint8)
    rows[:, :CODE] = parents
    rows[:, CODE] = ord(",")
    rows[:, CODE + 1 : 2 * CODE + 1] = children
    rows[:, -1] = ord("\n")
    return rows


def territories() -> list[str]:
    """100 territories: provinces ("44"), cities ("4401") and pairs ("51 4401"),
    from real district adcodes so that every one has districts inside it."""
    districts = np.asarray(default_index().adcodes, np.int64)
    provinces = sorted({f"{c // 10_000:02d}" for c in districts.tolist() if c // 10_000 != 71})
    cities = sorted({f"{c // 100:04d}" for c in districts.tolist() if c // 10_000 != 71})
    out = []
    for k in range(N_DEALERS):
        if k % 3 == 0:
            out.append(provinces[k % len(provinces)])
        elif k % 3 == 1:
            out.append(cities[(k * 7) % len(cities)])
        else:
            out.append(f"{provinces[(k + 5) % len(provinces)]} {cities[(k * 13) % len(cities)]}")
    return out


@pytest.mark.slow
def test_ten_million_bottles_trace_to_their_dealers(tmp_path: Path, run_cli, trace_path: str) -> None:
    t0 = time.perf_counter()
    root = tmp_path / "data"
    rng = np.random.default_rng(20240601)
    with scangate.init_data_dir(root) as dd:
        bottles = dd.issue_codes("BAIJIU-500ML", "item", N_BOTTLES, batch="L1")
        cases = dd.issue_codes("BAIJIU-500ML", "case", N_CASES, batch="L1")
        pallets = dd.issue_codes("BAIJIU-500ML", "pallet", N_PALLETS, batch="L1")
    b_first, c_first, p_first = bottles.range.first, cases.range.first, pallets.range.first
    assert (bottles.range.count, cases.range.count, pallets.range.count) == (N_BOTTLES, N_CASES, N_PALLETS)

    # ---- one CSV: case,bottle rows, then pallet,case rows, built with numpy
    csv_path = tmp_path / "links.csv"
    bottle_case = np.arange(N_BOTTLES) // PER_CASE          # case index of each bottle
    case_pallet = np.arange(N_CASES) // PER_PALLET          # pallet index of each case
    with open(csv_path, "wb") as f:
        f.write(b"parent,child\n")
        step = 1_000_000
        for s in range(0, N_BOTTLES, step):
            sl = slice(s, s + step)
            f.write(csv_rows(cases.text[bottle_case[sl]], bottles.text[sl]).tobytes())
        f.write(csv_rows(pallets.text[case_pallet], cases.text).tobytes())
    assert csv_path.stat().st_size == 13 + (N_BOTTLES + N_CASES) * (2 * CODE + 2)
    t_csv = time.perf_counter()

    proc = run_cli("link", "--data", root, csv_path, "--json", timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    summary = json.loads(proc.stdout)
    assert summary["added"] == N_BOTTLES + N_CASES == 10_500_000  # one row per child
    assert summary["rows"] == N_BOTTLES + N_CASES
    assert summary["removed"] == 0
    assert summary["parents"] == N_CASES + N_PALLETS
    csv_path.unlink()
    t_link = time.perf_counter()

    # bytes on disk per linked bottle (the whole LMDB file: ledger, links, children)
    mdb = root / "lmdb" / "data.mdb"
    per_bottle = mdb.stat().st_size / N_BOTTLES
    print(f"\ndata.mdb after linking {N_BOTTLES:,} bottles + {N_CASES:,} cases: "
          f"{mdb.stat().st_size:,} bytes = {per_bottle:.2f} bytes per linked bottle")
    assert per_bottle <= 32, per_bottle

    # ---- dealers and shipments of the 10,000 pallets
    terr = territories()
    dealers_csv = tmp_path / "dealers.csv"
    dealers_csv.write_text("dealer_id,name,territory\n" + "".join(
        f"D{k:03d},Dealer {k},{terr[k]}\n" for k in range(N_DEALERS)))
    proc = run_cli("dealers", "load", "--data", root, dealers_csv, "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == {"dealers": N_DEALERS}

    pallet_dealer = rng.integers(0, N_DEALERS, N_PALLETS)
    pallet_codes = pallets.as_strings()
    ship_path = tmp_path / "ship.csv"
    ship_path.write_text("unit,dealer_id,shipped_at,shipment_id\n" + "".join(
        f"{pallet_codes[p]},D{pallet_dealer[p]:03d},2024-05-01T08:00:00+08:00,SH{p // 20:04d}\n"
        for p in range(N_PALLETS)))
    proc = run_cli("ship", "--data", root, ship_path, "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == {"shipments": N_PALLETS}
    t_ship = time.perf_counter()

    with scangate.open_data_dir(root) as dd:
        ts = TraceStore(dd.store)
        # ---- every bottle: its case and its pallet, compared as arrays
        bottle_serials = np.arange(b_first, b_first + N_BOTTLES, dtype=np.uint64)
        anc = ts.ancestors(bottle_serials)
        assert anc.shape == (N_BOTTLES, 2)
        expected_case = np.uint64(c_first) + bottle_case.astype(np.uint64)
        expected_pallet = np.uint64(p_first) + (bottle_case // PER_PALLET).astype(np.uint64)
        assert np.array_equal(anc[:, 0], expected_case)
        assert np.array_equal(anc[:, 1], expected_pallet)
        del anc, bottle_serials, expected_case, expected_pallet
        # ... cases -> pallets, pallets -> nothing
        case_anc = ts.ancestors(np.arange(c_first, c_first + N_CASES, dtype=np.uint64))
        assert np.array_equal(case_anc[:, 0], np.uint64(p_first) + case_pallet.astype(np.uint64))
        assert not case_anc[:, 1].any()
        assert not ts.ancestors(np.arange(p_first, p_first + N_PALLETS, dtype=np.uint64)).any()
        # ... the children arrays of a few parents
        for c in (0, 1, N_CASES // 2, N_CASES - 1):
            assert np.array_equal(ts.children_of(c_first + c),
                                  np.arange(b_first + c * PER_CASE, b_first + (c + 1) * PER_CASE, dtype=np.uint64))
        for p in (0, N_PALLETS - 1):
            assert np.array_equal(ts.children_of(p_first + p),
                                  np.arange(c_first + p * PER_PALLET, c_first + (p + 1) * PER_PALLET,
                                            dtype=np.uint64))
        # ---- the pallets' shipments map to the expected dealers
        ships = reads.shipments_of(dd, np.arange(p_first, p_first + N_PALLETS, dtype=np.uint64))
        assert len(ships) == N_PALLETS
        got = np.array([int(ships[p_first + p].dealer_id[1:]) for p in range(N_PALLETS)])
        assert np.array_equal(got, pallet_dealer)
        # ... and a bottle's trace chain names its pallet's dealer
        probe = rng.choice(N_BOTTLES, 500, replace=False)
        chains = ts.trace(np.uint64(b_first) + probe.astype(np.uint64))
        for i, ch in zip(probe.tolist(), chains):
            p = i // (PER_CASE * PER_PALLET)
            assert ch.ancestors == (c_first + i // PER_CASE, p_first + p)
            assert ch.shipment is not None and ch.shipment.unit == p_first + p
            assert ch.dealer is not None and ch.dealer.dealer_id == f"D{pallet_dealer[p]:03d}"
        t_trace = time.perf_counter()

        # ---- verdicts for a sample: inside the territory genuine, outside diverted
        districts = np.asarray(default_index().adcodes, np.int64)
        sample = rng.choice(N_BOTTLES, SAMPLE, replace=False)
        inside = np.arange(SAMPLE) % 2 == 0
        scans, want = [], []
        for j, i in enumerate(sample.tolist()):
            p = i // (PER_CASE * PER_PALLET)
            prefixes = terr[pallet_dealer[p]].split()
            under = np.zeros(len(districts), bool)
            for pre in prefixes:
                under |= (districts // 10 ** (6 - len(pre))) == int(pre)
            pool = districts[under] if inside[j] else districts[~under]
            region = int(pool[(i * 31) % len(pool)])
            scans.append(Scan(bottles.text[i].tobytes().decode(), actor=f"consumer-{j}", region=region,
                              time_ms=1_714_550_400_000 + j))
            want.append((p, prefixes, region))
        verdicts = decide_verdicts(dd, scans)
        assert len(verdicts) == SAMPLE
        for j, (v, (p, prefixes, region)) in enumerate(zip(verdicts, want)):
            dealer_id = f"D{pallet_dealer[p]:03d}"
            assert v.reasons[0] is Reason.GENUINE_FIRST_SCAN
            assert Reason.NOT_SHIPPED not in v.reasons
            assert v.evidence["trace"]["dealer_id"] == dealer_id
            assert v.evidence["trace"]["shipped_unit"] == p_first + p
            if inside[j]:
                assert v.verdict is Verdict.GENUINE, (v, prefixes, region)
                assert Reason.DIVERTED_OUTSIDE_TERRITORY not in v.reasons
                assert "diversion" not in v.evidence
            else:
                assert v.verdict is Verdict.DIVERTED, (v, prefixes, region)
                assert Reason.DIVERTED_OUTSIDE_TERRITORY in v.reasons
                assert v.evidence["diversion"] == {"dealer_id": dealer_id, "territory": sorted(prefixes),
                                                   "scan_region": region, "region_source": "adcode"}
        t_verdicts = time.perf_counter()

        # ---- EPCIS: one bottle out of its case, into a case on a pallet of another dealer
        moved = 4_321_987
        old_case = moved // PER_CASE
        old_pallet = old_case // PER_PALLET
        new_pallet = next(p for p in range(N_PALLETS)
                          if pallet_dealer[p] != pallet_dealer[old_pallet]
                          and set(terr[pallet_dealer[p]].split()) != set(terr[pallet_dealer[old_pallet]].split()))
        new_case = new_pallet * PER_PALLET + 7
        url = "https://scn.example.com/{}".format
        doc = {
            "@context": ["https://ref.gs1.org/standards/epcis/2.0.0/epcis-context.jsonld"],
            "type": "EPCISDocument", "schemaVersion": "2.0", "creationDate": "2024-05-02T10:00:00Z",
            "epcisBody": {"eventList": [
                {"type": "AggregationEvent", "eventTime": "2024-05-02T10:00:00Z", "eventTimeZoneOffset": "+00:00",
                 "action": "DELETE", "bizStep": "unpacking",
                 "parentID": url(cases.text[old_case].tobytes().decode()),
                 "childEPCs": [url(bottles.text[moved].tobytes().decode())]},
                {"type": "AggregationEvent", "eventTime": "2024-05-02T10:01:00Z", "eventTimeZoneOffset": "+00:00",
                 "action": "ADD", "bizStep": "packing",
                 "parentID": url(cases.text[new_case].tobytes().decode()),
                 "childEPCs": [url(bottles.text[moved].tobytes().decode())]},
            ]},
        }
        report = ingest.apply_epcis(dd, json.dumps(doc), "repack.jsonld")
        assert (report.aggregations, report.added, report.removed) == (2, 1, 1)
        serial = b_first + moved
        chain = ts.trace(np.array([serial], np.uint64))[0]
        assert chain.ancestors == (c_first + new_case, p_first + new_pallet)
        assert chain.dealer is not None and chain.dealer.dealer_id == f"D{pallet_dealer[new_pallet]:03d}"
        assert serial not in ts.children_of(c_first + old_case).tolist()
        assert len(ts.children_of(c_first + old_case)) == PER_CASE - 1
        assert serial in ts.children_of(c_first + new_case).tolist()
        assert len(ts.children_of(c_first + new_case)) == PER_CASE + 1
        # its neighbours did not move
        near = ts.ancestors(np.array([serial - 1, serial + 1], np.uint64))
        assert near[:, 0].tolist() == [c_first + old_case] * 2
        # a scan in the new dealer's territory is genuine, in the old one's diverted
        new_terr = terr[pallet_dealer[new_pallet]].split()
        old_terr = terr[pallet_dealer[old_pallet]].split()

        def district_in(prefixes: list[str], outside: list[str]) -> int:
            for c in districts.tolist():
                t = f"{c:06d}"
                if any(t.startswith(x) for x in prefixes) and not any(t.startswith(x) for x in outside):
                    return int(c)
            raise AssertionError((prefixes, outside))

        code = bottles.text[moved].tobytes().decode()
        v_new, v_old = decide_verdicts(dd, [
            Scan(code, "mover-1", region=district_in(new_terr, old_terr), time_ms=1_714_700_000_000),
            Scan(code, "mover-1", region=district_in(old_terr, new_terr), time_ms=1_714_800_000_000),
        ])
        assert v_new.verdict is Verdict.GENUINE, v_new
        assert v_old.verdict is Verdict.DIVERTED, v_old
        assert v_old.evidence["diversion"]["dealer_id"] == f"D{pallet_dealer[new_pallet]:03d}"
    t_end = time.perf_counter()
    print(f"timings ({trace_path} trace path): issue+csv {t_csv - t0:.1f}s, link (CLI) {t_link - t_csv:.1f}s, "
          f"dealers+ship {t_ship - t_link:.1f}s, trace all {t_trace - t_ship:.1f}s, {SAMPLE} verdicts "
          f"{t_verdicts - t_trace:.1f}s, epcis+rest {t_end - t_verdicts:.1f}s, total {t_end - t0:.1f}s; "
          f"peak RSS here {_peak_rss_mb():.0f} MB, CLI {_peak_child_rss_mb():.0f} MB")


def _peak_rss_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _peak_child_rss_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
