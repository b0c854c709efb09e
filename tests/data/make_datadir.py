"""Make tests/data/datadir-vN.tar.gz: a data directory written by the code of
the commit it runs at (the record formats of that commit's SCHEMA_VERSION N), and
datadir-vN.json, what it holds and the answers it gave.
tests/test_datadir_fixture.py opens a copy of each with today's code and expects
the same answers: the migration test of every schema since.

Run from the repository root at the release whose schema the fixture keeps, only
to make a new fixture (a committed one is what the test holds the code to;
remaking it at a later commit proves nothing):

    .venv/bin/python tests/data/make_datadir.py [OUT_DIR]

The committed fixtures: datadir-v1 made at cb9210a (schema 1, JSON records),
datadir-v2 at da6ddf3 (schema 2: typed msgpack records, one decision log record
per decision). Everything is stamped by a ManualClock, so the records say
2026-06-01.
"""
from __future__ import annotations

import json
import shutil
import sys
import tarfile
import tempfile
from pathlib import Path

import scangate
from scangate import clock, ingest, points, rewards, verdicts
from scangate.rewards import Decision, ScanRequest

HERE = Path(__file__).resolve().parent
NOON = 1_780_286_400_000          # 2026-06-01 12:00 Beijing time
CHENGDU, GUANGZHOU, SHANGHAI = 510104, 440106, 310101

CONSUMER = """
id = "caps-2026"
name = "Bottle caps 2026"
timezone = "Asia/Shanghai"
start = 2026-05-01
end = 2026-07-01
actor = "consumer"
odds = "50%"
hotline = "400-800-1234"
consolation = "pts"
regions_exclude = ["31"]

[caps]
per_user_daily_count = 3
per_user_daily_amount_fen = 1000

[[slots]]
start = "20:00"
end = "22:00"
odds = "100%"

[[prizes]]
id = "cny-188"
kind = "cash"
amount_fen = 188
weight = 1
budget_count = 40
budget_amount_fen = 7520

[[prizes]]
id = "zk-12"
kind = "coupon"
weight = 1
budget_count = 20
coupon = { type = "full_reduction", threshold_fen = 5000, value_fen = 1200, valid_days = 30 }

[[prizes]]
id = "pts"
kind = "points"
points = 10
"""

STORES = """
id = "stores-2026"
name = "Store cases 2026"
timezone = "Asia/Shanghai"
start = 2026-05-01
end = 2026-07-01
actor = "store"
odds = "100%"

[products]
levels = ["case"]

[[prizes]]
id = "sp"
kind = "points"
points = 100

[[store_tiers]]
name = "bronze"
min_points = 0
multiplier_pct = 100

[[store_tiers]]
name = "silver"
min_points = 200
multiplier_pct = 150
"""


def schema_version() -> int:
    try:
        from scangate.state.migrate import SCHEMA_VERSION    # schema 2 and later
    except ImportError:
        return 1
    return SCHEMA_VERSION


def make(out_dir: Path) -> dict[str, object]:
    name = f"datadir-v{schema_version()}"
    work = Path(tempfile.mkdtemp())
    with clock.use(clock.ManualClock(NOON - 86_400_000)) as now:
        dd = scangate.init_data_dir(work / "data")
        items = dd.issue_codes("BEER-500", "item", 48, batch="B2605").as_strings()
        cases = dd.issue_codes("BEER-500", "case", 8, batch="B2605").as_strings()
        pallets = dd.issue_codes("BEER-500", "pallet", 2, batch="B2605").as_strings()
        recalled = dd.issue_codes("BEER-330", "item", 4, batch="B2604").as_strings()
        rows = [f"{cases[i // 6]},{items[i]}" for i in range(48)] + \
               [f"{pallets[i // 4]},{cases[i]}" for i in range(8)]
        ingest.link_csv(dd, ("parent,child\n" + "\n".join(rows) + "\n").encode(), "pack.csv")
        ingest.load_dealers_csv(dd, "dealer_id,name,territory\nSC,四川经销商,51\nGD,Guangdong Dealer,44\n".encode())
        ingest.ship_csv(dd, (f"unit,dealer_id,shipped_at,shipment_id\n{pallets[0]},SC,2026-05-20T08:00:00+08:00,S1\n"
                             f"{pallets[1]},GD,2026-05-21T08:00:00+08:00,S2\n").encode())
        rewards.put_campaign(dd, CONSUMER, "caps.toml")
        rewards.put_campaign(dd, STORES, "stores.toml")
        verdicts.recall_codes(dd, recalled[:2], "fixture: a bad batch")
        now.set(NOON)
        requests: list[ScanRequest] = []
        for i in range(36):        # users 0..8, Chengdu (pallet 0: SC, genuine) and Guangzhou (diverted)
            region = CHENGDU if i % 3 else GUANGZHOU
            requests.append(ScanRequest(f"c{i}", items[i], f"wx-{i % 9}", region=region,
                                        time_ms=NOON + i * 600_000))   # every 10 min: some in the 20:00 slot
        requests += [
            ScanRequest("again-1", items[1], "wx-1", region=CHENGDU, time_ms=NOON + 86_400_000),   # a repeat
            ScanRequest("sh-1", items[40], "wx-sh", region=SHANGHAI, time_ms=NOON),               # excluded region
            ScanRequest("rc-1", recalled[0], "wx-r", region=CHENGDU, time_ms=NOON),               # revoked
            ScanRequest("fake-1", "01" + "0" * 27, "wx-f", region=CHENGDU, time_ms=NOON),         # malformed
            *[ScanRequest(f"s{j}", cases[j], f"store-{j % 2}", actor_type="store", region=CHENGDU,
                          time_ms=NOON + j) for j in range(6)],
        ]
        decisions = []
        for k in range(0, len(requests), 16):
            for d in rewards.decide_scans(dd, requests[k:k + 16]):
                assert isinstance(d, Decision), d
                decisions.append(d.to_json())
        redemption = points.redeem(dd, "store-0", 50, "order-1", "fixture")
        ledger_last = rewards_ledger_last(dd)
        manifest = {
            "made_by": f"scangate {scangate.__version__}, tests/data/make_datadir.py",
            "schema_version": schema_version(),
            "items": items, "cases": cases, "pallets": pallets, "recalled": recalled,
            "requests": [{"request_id": r.request_id, "code": r.code, "actor": r.actor, "actor_type": r.actor_type,
                          "region": r.region, "time_ms": r.time_ms} for r in requests],
            "decisions": decisions,
            "budgets_used": {c: rewards.budgets_used(dd, c) for c in ("caps-2026", "stores-2026")},
            "points": {a: points.balance(dd, a) for a in ("store-0", "store-1", *{f"wx-{i}" for i in range(9)})},
            "redemption": {"balance": redemption.balance},
            "ledger_last": ledger_last,
            "recalls": len(verdicts.list_recalls(dd)),
        }
        dd.close()
    out_dir.mkdir(parents=True, exist_ok=True)
    with tarfile.open(out_dir / f"{name}.tar.gz", "w:gz") as tar:
        tar.add(work / "data", arcname=name, filter=_portable)
    (out_dir / f"{name}.json").write_text(json.dumps(manifest, ensure_ascii=False, indent=1, sort_keys=True)
                                             + "\n", encoding="utf-8")
    shutil.rmtree(work)
    return manifest


def rewards_ledger_last(dd: scangate.DataDir) -> int:
    from scangate import audit

    entries = list(audit.audit_ledger(dd))
    assert all(e["verified"] for e in entries), [e for e in entries if not e["verified"]][:1]
    return max(e["seq"] for e in entries)


def _portable(info: tarfile.TarInfo) -> tarfile.TarInfo | None:
    if info.name.endswith("lock.mdb"):
        return None              # LMDB's reader table: made again on open
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    info.mtime = 1_780_286_400
    return info


if __name__ == "__main__":
    m = make(HERE if len(sys.argv) < 2 else Path(sys.argv[1]))
    print(f"{len(m['decisions'])} decisions, ledger to #{m['ledger_last']}")
