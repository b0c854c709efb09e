"""Payout runners on the PostgreSQL outbox (scangate.state.pg.PgOutbox): several
runners at once, each with its own connection, send every payout request once
and confirm it; a runner whose lease ran out leaves the row to the one that took
it over."""
from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest

import scangate
from scangate import rewards
from scangate.payouts import list_payouts, run_payouts
from scangate.rewards import ScanRequest
from scangate.state.pg import PgOutbox, PgStore

from bench._pgcluster import PgCluster, pg_cluster
from fixtures_campaigns import CHENGDU, NOON, campaign

CASH = campaign(prizes='[[prizes]]\nid = "cash"\nkind = "cash"\namount_fen = 100\nbudget_count = 100\n',
                odds="100%", tail="[caps]\nper_user_daily_count = 10\n")


class Rail:
    """A payment rail shared by the runners: every send recorded; a key sent again
    gets its first confirmation (the rail pays once)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.sends: list[str] = []
        self.paid: dict[str, str] = {}

    def send(self, request: dict[str, Any]) -> str:
        with self.lock:
            self.sends.append(request["key"])
            return self.paid.setdefault(request["key"], f"rail-{len(self.paid)}")


@pytest.fixture(scope="module")
def cluster() -> Iterator[PgCluster]:
    with pg_cluster() as c:
        yield c


@pytest.fixture
def awarded(cluster: PgCluster, dd: scangate.DataDir) -> tuple[str, int]:
    """60 cash awards decided on PostgreSQL: 60 payout requests in its outbox."""
    url = cluster.new_database()
    rewards.put_campaign(dd, CASH, "cash.toml")
    codes = dd.issue_codes("SKU-P", "item", 60).as_strings()
    with PgStore(url) as store:
        store.migrate()
        decided = rewards.decide_scans_on(store, dd, [ScanRequest(f"p{i}", code, f"payee-{i}", region=CHENGDU,
                                                                  time_ms=NOON) for i, code in enumerate(codes)])
    assert all(d.award is not None and d.award.kind == "cash" for d in decided)   # type: ignore[union-attr]
    return url, len(codes)


def test_four_runners_send_every_payout_once(awarded: tuple[str, int]) -> None:
    url, n = awarded
    rail = Rail()
    counts: list[dict[str, int]] = []
    start = threading.Barrier(4)

    def runner(i: int) -> None:
        with PgStore(url) as store:
            start.wait(30)
            counts.append(run_payouts(PgOutbox(store), rail, rate_per_s=10_000, runner_id=f"runner-{i}",
                                      now_ms=lambda: NOON))

    threads = [threading.Thread(target=runner, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert sum(c["confirmed"] for c in counts) == n and not any(c["failed"] for c in counts)
    assert len(rail.sends) == len(set(rail.sends)) == n                    # each sent once
    with PgStore(url) as store:
        rows = list_payouts(PgOutbox(store))
    assert len(rows) == n and {r["state"] for r in rows} == {"confirmed"}
    assert {r["key"] for r in rows} == set(rail.sends)
    assert all(r["confirmation"] == rail.paid[r["key"]] and r["attempts"] == 1 for r in rows)


def test_a_runner_whose_lease_ran_out_leaves_the_row_to_its_new_owner(awarded: tuple[str, int]) -> None:
    """Runner A leases rows and stalls past its lease; runner B takes them over and
    confirms them; A's late finish changes nothing. The rail saw the keys twice at
    most and paid each once."""
    url, n = awarded
    rail = Rail()
    with PgStore(url) as a_store, PgStore(url) as b_store:
        a, b = PgOutbox(a_store), PgOutbox(b_store)
        due = (lambda row: row.state in ("pending", "sending") and (row.lease_owner is None
                                                                   or (row.lease_expires_ms or 0) <= NOON + 5_000))
        keys, _last, _end = a.candidates(None, due, 5)
        leased = a.lease(keys, due, "runner-a", NOON, 1_000)                   # A's lease ends at NOON + 1 s
        assert [k for k, _row in leased] == keys and all(r.lease_owner == "runner-a" for _k, r in leased)
        assert b.lease(keys, lambda row: row.state == "pending", "runner-b", NOON, 1_000) == []   # A holds them
        done = run_payouts(b, rail, rate_per_s=10_000, runner_id="runner-b", now_ms=lambda: NOON + 5_000)
        assert done == {"confirmed": n, "failed": 0}
        assert not a.finish(keys[0], "runner-a", state="confirmed", confirmation="stale")   # taken over
        assert a.renew(keys, "runner-a", NOON + 6_000, 1_000) == set()
    with PgStore(url) as store:
        rows = {r["key"]: r for r in list_payouts(PgOutbox(store))}
    assert {r["state"] for r in rows.values()} == {"confirmed"}
    taken = [k.decode() for k in keys]
    assert all(rows[k]["lease_owner"] == "runner-b" and rows[k]["attempts"] == 2 for k in taken)
    assert Counter(rail.sends) == Counter({k: 1 for k in rows})
