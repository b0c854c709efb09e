"""The decision state on PostgreSQL (scangate.state.pg) against a real cluster
(bench/_pgcluster.py): its schema and migrations, the same decisions as on LMDB
for the same scans, and several decider processes racing on shared codes, users
and tiny budgets without paying anything twice or overspending."""
from __future__ import annotations

import json
import multiprocessing
import random
import threading
from collections import Counter, defaultdict
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest

import scangate
from scangate import audit, rewards
from scangate.errors import CorruptionError
from scangate.rewards import Decision, RequestRefused, ScanRequest
from scangate.state import layout, raw
from scangate.state.batch import Snapshot, request_pointer
from scangate.state.pg import MIGRATIONS, SCHEMA_VERSION, PgStore
from scangate.state.records import ACCOUNT, COUNTS, LogRecord, decode_claim, decode_ledger, decode_payout, unpack_counts

from fixtures_campaigns import CHENGDU, NOON, campaign
from bench._pgcluster import PgCluster, pg_cluster


@pytest.fixture(scope="module")
def cluster() -> Iterator[PgCluster]:
    with pg_cluster() as c:
        yield c


@pytest.fixture
def pg(cluster: PgCluster) -> Iterator[PgStore]:
    """The decision state's schema in a database of its own."""
    with PgStore(cluster.new_database()) as store:
        store.migrate()
        yield store


def test_migrate_makes_the_schema_once_and_refuses_a_newer_one(cluster: PgCluster) -> None:
    url = cluster.new_database()
    with PgStore(url) as store:
        assert store.version() == 0
        with pytest.raises(CorruptionError, match="schema 0"):
            store.check()
        assert store.migrate() == SCHEMA_VERSION
        assert store.migrate() == SCHEMA_VERSION         # again: nothing to do
        store.check()
        assert store.count("scans") == 0
        with store.conn.cursor() as cur:
            cur.execute("UPDATE public.scangate_schema SET version = %s", [SCHEMA_VERSION + 1])
        store.conn.commit()
        with pytest.raises(CorruptionError, match=f"schema {SCHEMA_VERSION + 1}; this release knows {SCHEMA_VERSION}"):
            store.migrate()


def test_a_schema_1_database_migrates_its_budgets_into_slots(cluster: PgCluster) -> None:
    """Schema 2 splits a budget's row into slots: a schema 1 database's budget
    becomes its slot 0, all it spent allowed to it, to be balanced on first use."""
    url = cluster.new_database()
    with PgStore(url) as store, store.conn.cursor() as cur:
        cur.execute("CREATE TABLE public.scangate_schema (version integer NOT NULL)")
        cur.execute(MIGRATIONS[0])
        cur.execute("INSERT INTO public.scangate_schema (version) VALUES (1)")
        cur.execute("INSERT INTO scangate.budgets (k, v) VALUES (%s, %s), (%s, '')",
                    [b"c1/cash", COUNTS[2].pack(3, 450), b"c1/pts"])
        store.conn.commit()
        assert store.version() == 1
        assert store.migrate() == SCHEMA_VERSION
        assert store.budgets_spent() == {b"c1/cash": (3, 450)}
        assert store.budget_slots(b"c1/cash") == {b"c1/cash\0\0": (3, 450, 3, 450, -2, -2)}


CAMPAIGN = campaign(prizes=('[[prizes]]\nid = "cash"\nkind = "cash"\namount_fen = 150\nbudget_count = 4\n'
                            'weight = 1\n'
                            '[[prizes]]\nid = "pts"\nkind = "points"\npoints = 7\nbudget_count = 6\nweight = 1\n'),
                    odds="70%", tail="[caps]\nper_user_daily_count = 2\n")


def _script(codes: list[str]) -> list[list[ScanRequest]]:
    """Batches of scans: first scans, repeats by other users, retries, a reused
    id with other content, one code twice in a batch, users past their cap."""
    t = NOON
    batches = [[ScanRequest(f"a{i}", codes[i], f"u{i % 3}", region=CHENGDU, time_ms=t + i) for i in range(6)],
               [ScanRequest("a0", codes[0], "u0", region=CHENGDU, time_ms=t),                 # a retry
                ScanRequest("a1", codes[5], "u1", region=CHENGDU, time_ms=t + 1),             # the id, other content
                ScanRequest("b0", codes[0], "u9", region=CHENGDU, time_ms=t + 10),            # claimed already
                ScanRequest("b1", codes[6], "u4", region=CHENGDU, time_ms=t + 11),
                ScanRequest("b2", codes[6], "u5", region=CHENGDU, time_ms=t + 12)],           # twice in the batch
               [ScanRequest(f"c{i}", codes[7 + i], f"u{i % 2}" if i < 3 else f"v{i}", region=CHENGDU,
                            time_ms=t + 20 + i) for i in range(13)]]
    return batches


def _same_but_numbers(d: Decision | RequestRefused) -> object:
    """A decision with its award's ledger number left out (each store numbers its
    ledger its own way); a refusal as its type and text."""
    if isinstance(d, RequestRefused):
        return (type(d).__name__, str(d))
    if d.award is not None:
        d = msgspec.structs.replace(d, award=msgspec.structs.replace(d.award, ledger_seq=0))
    return d


def test_the_same_scans_decide_the_same_on_postgresql_as_on_lmdb(pg: PgStore, dd: scangate.DataDir) -> None:
    rewards.put_campaign(dd, CAMPAIGN, "c.toml")
    codes = dd.issue_codes("SKU-1", "item", 20).as_strings()
    script = _script(codes)     # about 15 wins at 70%, each cash or points by weight: both all but surely
    on_pg = [rewards.decide_scans_on(pg, dd, batch, now_ms=lambda: NOON + 60_000) for batch in script]
    assert raw.count(dd, "scans") == 0 and raw.count(dd, "ledger") == 0       # the data directory kept none
    on_lmdb = [rewards.decide_scans(dd, batch, now_ms=lambda: NOON + 60_000) for batch in script]
    assert [[_same_but_numbers(d) for d in b] for b in on_pg] == [[_same_but_numbers(d) for d in b] for b in on_lmdb]
    flat = [d for b in on_pg for d in b if isinstance(d, Decision)]
    assert any(d.award is not None and d.award.kind == "cash" for d in flat)
    assert any(d.award is not None and d.award.kind == "points" for d in flat)
    assert any(isinstance(d, RequestRefused) for b in on_pg for d in b)
    # what each store holds: the same records, the numbers aside
    assert pg.budgets_spent() == {bytes(k): unpack_counts(bytes(v)) for k, v in raw.items(dd, "budgets")}
    for table in ("scans", "claims", "counters", "outbox"):
        lm = {bytes(k): bytes(v) for k, v in raw.items(dd, table)}
        got = pg.records(table)
        if table == "claims":       # a claim names its ledger entry
            got = {k: msgspec.structs.replace(decode_claim(v), ledger_seq=0) for k, v in got.items()}
            lm = {k: msgspec.structs.replace(decode_claim(v), ledger_seq=0) for k, v in lm.items()}
        if table == "outbox":
            got = {k: msgspec.structs.replace(decode_payout(v), ledger_seq=0) for k, v in got.items()}
            lm = {k: msgspec.structs.replace(decode_payout(v), ledger_seq=0) for k, v in lm.items()}
        assert got == lm, table
    assert pg.count("ledger") == raw.count(dd, "ledger") > 0
    # a retry now, on PostgreSQL, gets the decision it got then
    again = rewards.decide_scans_on(pg, dd, script[0], now_ms=lambda: NOON + 3_600_000)
    assert again == on_pg[0]


# ---------------------------------------------------------------------- deciders racing
RACE = campaign(prizes=('[[prizes]]\nid = "cash"\nkind = "cash"\namount_fen = 150\nbudget_count = 5\n'
                        'budget_amount_fen = 600\nweight = 1\n'
                        '[[prizes]]\nid = "pts"\nkind = "points"\npoints = 7\nbudget_count = 9\nweight = 1\n'),
                odds="100%", tail="[caps]\nper_user_daily_count = 3\n")
USERS = [f"racer-{i}" for i in range(7)]


def _decider(url: str, data: str, codes: list[str], me: int, batches: int, out: multiprocessing.Queue) -> None:
    """One decider process: batches of five scans drawn from the shared codes by
    the shared users, each decided in a PostgreSQL transaction of its own; what
    it was answered goes back to the test (the acknowledged decisions)."""
    rnd = random.Random(me)
    acknowledged: list[tuple[ScanRequest, Decision]] = []
    with scangate.open_data_dir(data) as dd, PgStore(url) as store:
        for b in range(batches):
            batch = [ScanRequest(f"d{me}-{b}-{i}", rnd.choice(codes), rnd.choice(USERS), region=CHENGDU,
                                 time_ms=NOON + b) for i in range(5)]
            for r, d in zip(batch, rewards.decide_scans_on(store, dd, batch, now_ms=lambda: NOON + 60_000)):
                assert isinstance(d, Decision), d
                acknowledged.append((r, d))
    out.put(msgspec.msgpack.encode([(r.request_id, r.code, r.actor, msgspec.msgpack.encode(d)) for r, d in acknowledged]))


@pytest.mark.parametrize("deciders", [4, 8])
def test_deciders_racing_on_shared_codes_users_and_tiny_budgets_pay_nothing_twice(
        pg: PgStore, dd: scangate.DataDir, tmp_path: Path, deciders: int) -> None:
    """Four (eight) processes decide 40 (20) batches of five scans each at once
    over 24 codes, 7 users and budgets of 5 cash awards (600 fen) and 9 points
    awards: every promise of the decision holds over the acknowledged decisions
    and the tables."""
    batches = 160 // deciders
    rewards.put_campaign(dd, RACE, "race.toml")
    codes = dd.issue_codes("SKU-R", "item", 24).as_strings()
    serial_of = dict(zip(codes, dd.verify_codes(codes).serial.tolist()))
    dd.close()
    ctx = multiprocessing.get_context("spawn")
    out: multiprocessing.Queue = ctx.Queue()
    procs = [ctx.Process(target=_decider, args=(pg.url, str(tmp_path / "d"), codes, me, batches, out))
             for me in range(deciders)]
    for p in procs:
        p.start()
    results = [out.get(timeout=300) for _ in procs]
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    acked = [(rid, code, actor, msgspec.msgpack.decode(raw, type=Decision))
             for blob in results for rid, code, actor, raw in msgspec.msgpack.decode(blob)]
    assert len(acked) == deciders * batches * 5
    awards = [(code, actor, d.award) for _rid, code, actor, d in acked if d.award is not None]
    # one award per code, whoever scanned it and wherever it was decided
    assert len({code for code, _a, _w in awards}) == len(awards) > 0
    cash = [w for _c, _a, w in awards if w.kind == "cash"]
    pts = [w for _c, _a, w in awards if w.kind == "points"]
    assert len(cash) <= 5 and sum(w.amount_fen for w in cash) <= 600 and len(pts) <= 9
    assert len(cash) == 4 and len(pts) == 9          # 600 fen buys four of 150; the rest of the 24 codes got points
    # caps: three awards a user a day
    assert max(Counter(actor for _c, actor, _w in awards).values()) <= 3
    # every scan counted once in its code's history, in the order the store decided them
    per_code = Counter(code for _rid, code, _a, _d in acked)
    for code, n in per_code.items():
        counts = sorted(d.verdict.scan_count for _rid, c, _a, d in acked if c == code)
        assert counts == list(range(1, n + 1)), (code, counts)
    # the tables agree with what was acknowledged
    # a code's draw is claimed whether it won or not: one claim and one ledger entry per drawn code
    claims = {layout.serial_key(serial_of[code]): w for code, _a, w in awards}
    stored_claims = {k: decode_claim(v) for k, v in pg.records("claims").items()}
    assert claims.keys() <= stored_claims.keys()
    assert all(stored_claims[k].ledger_seq == w.ledger_seq for k, w in claims.items())
    ledger = {e.seq: e for e in (decode_ledger(v) for v in pg.records("ledger").values())}
    assert sorted(ledger) == sorted(c.ledger_seq for c in stored_claims.values())
    assert {layout.serial_key(e.serial) for e in ledger.values()} == stored_claims.keys()
    assert all(stored_claims[layout.serial_key(e.serial)].ledger_seq == seq for seq, e in ledger.items())
    outbox = {decode_payout(v).key for v in pg.records("outbox").values()}
    assert outbox == {w.payout_key for w in cash}
    # the budgets' slots: what they spent is what was awarded, none spent past what it
    # was allowed, and the allowances add up to the limits (budget slots conserved)
    assert pg.budgets_spent() == {b"c1/cash": (len(cash), 150 * len(cash)), b"c1/pts": (len(pts), 0)}
    for key, (count_max, fen_max) in ((b"c1/cash", (5, 600)), (b"c1/pts", (9, None))):
        slots = pg.budget_slots(key).values()
        assert all(s[0] <= s[2] for s in slots) and sum(s[2] for s in slots) == count_max
        if fen_max is not None:
            assert all(s[1] <= s[3] for s in slots) and sum(s[3] for s in slots) == fen_max
    points_of: dict[str, int] = defaultdict(int)
    for _c, actor, w in awards:
        points_of[actor] += w.points
    accounts = {k[2:].decode(): ACCOUNT.unpack(v) for k, v in pg.records("points").items() if k.startswith(b"b/")}
    assert {a: balance for a, (balance, _earned) in accounts.items() if balance} == {a: p for a, p in points_of.items() if p}
    # every acknowledged decision is the one the store holds for its request
    index = pg.records("requests")
    log = pg.records("decisions")
    for rid, _code, _actor, d in acked:
        number, _fp = request_pointer(layout.request_key("", rid), index[layout.request_key("", rid)])
        assert LogRecord(number, log[number]).decision(number) == d
    # the audit explains every entry, each deciding from its budget slot's share
    with scangate.open_data_dir(tmp_path / "d", store=pg.url) as data:
        audited = list(audit.audit_ledger(data))
    assert len(audited) == len(ledger) and [a["failed"] for a in audited if not a["verified"]] == []
    assert len(pg.budget_slots(b"c1/cash")) > 1, "the race never split the budget: the audit's slot case is untested"


def test_deciding_against_a_database_without_the_schema_names_the_fix(cluster: PgCluster,
                                                                     dd: scangate.DataDir) -> None:
    rewards.put_campaign(dd, CAMPAIGN, "c.toml")
    code = dd.issue_codes("SKU-1", "item", 1).as_strings()[0]
    with PgStore(cluster.new_database()) as bare:
        with pytest.raises(CorruptionError, match=rf"holds schema 0, not {SCHEMA_VERSION}: make it with .*PgStore\(url\)\.migrate"):
            rewards.decide_scans_on(bare, dd, [ScanRequest("x1", code, "u1", region=CHENGDU)])
        assert bare.version() == 0


def test_a_budget_in_use_is_split_into_slots_that_batches_take_without_waiting(pg: PgStore,
                                                                               dd: scangate.DataDir) -> None:
    """Batch A holds a slot of a prize's budget; batch B takes a new one, which
    balances the budget (every slot locked: B waits for A); then each batch gets a
    slot of its own, no one waits, and the allowances add up to the limits. A
    batch whose slot cannot cover its need balances again and gets all that is
    left: a budget is exhausted for a batch only when all of it is spent."""
    key, limits = b"c1/cash", (5, 600, 150)       # 5 awards, 600 fen, 150 fen an award
    other = PgStore(pg.url)
    views: dict[str, tuple[int, ...] | None] = {}
    held = threading.Event()
    release = threading.Event()

    def batch_a() -> None:
        with pg.batch(dd) as a:
            snap = Snapshot()
            a.read(snap, claims=[b"x"], budgets={key: limits})
            views["a"] = snap.budgets[key]
            held.set()
            release.wait(30)

    def batch_b() -> None:
        with other.batch(dd) as b:
            snap = Snapshot()
            b.read(snap, claims=[b"y"], budgets={key: limits})
            views["b"] = snap.budgets[key]

    with pg.batch(dd) as first:                 # the budget's first use: its slot 0, balanced
        first.read(Snapshot(), claims=[b"w"], budgets={key: limits})
    ta = threading.Thread(target=batch_a)
    ta.start()
    assert held.wait(30)
    assert views["a"] == (0, 0)                  # the one slot: all 5 awards and 600 fen left
    tb = threading.Thread(target=batch_b)
    tb.start()
    tb.join(1.0)
    assert tb.is_alive()                         # B balances the budget: it waits for A's slot
    release.set()
    ta.join(30)
    tb.join(30)
    # B's new slot got an even share (3 of 5 awards, 300 of 600 fen: what is left is
    # what B sees), the first slot the rest
    assert views["b"] == (2, 300)
    assert sorted(pg.budget_slots(key).values()) == [(0, 0, 2, 300, 5, 600), (0, 0, 3, 300, 5, 600)]
    # both slots free now: a batch takes the first without balancing
    with pg.batch(dd) as c:
        snap = Snapshot()
        c.read(snap, claims=[b"z"], budgets={key: limits})
        assert snap.budgets[key] == (3, 300)     # its slot's 2 awards and 300 fen left
    # a batch needing 4 awards: its slot has 2, so it balances and gets 4 of the 5
    with other.batch(dd) as d:
        snap = Snapshot()
        d.read(snap, claims=[b"1", b"2", b"3", b"4"], budgets={key: limits})
        assert snap.budgets[key] == (1, 0)       # 4 awards and all 600 fen left to it
    assert sum(s[2] for s in pg.budget_slots(key).values()) == 5
    other.close()


def test_scangate_init_makes_the_schema_and_an_unreachable_store_changes_nothing(cluster: PgCluster, tmp_path: Path,
                                                                                 run_cli) -> None:  # type: ignore[no-untyped-def]
    url = cluster.new_database()
    done = run_cli("init", "--data", tmp_path / "d", "--store", url, "--json")
    assert done.returncode == 0, done.stderr
    info = json.loads(done.stdout)
    assert info["created"] and info["store"] == {"server": f"127.0.0.1:{cluster.port}/{url.rsplit('/', 1)[1]}",
                                                 "schema": SCHEMA_VERSION}
    with PgStore(url) as store:
        assert store.version() == SCHEMA_VERSION
    again = run_cli("init", "--data", tmp_path / "d", "--exist-ok", env={"SCANGATE_STORE": url})
    assert again.returncode == 0 and f"schema {SCHEMA_VERSION}" in again.stdout
    nowhere = f"postgresql://postgres@127.0.0.1:{_closed_port()}/scangate?connect_timeout=3"
    refused = run_cli("init", "--data", tmp_path / "e", "--store", nowhere)
    assert refused.returncode == 2 and "--store: cannot connect to the PostgreSQL store" in refused.stderr
    assert not (tmp_path / "e").exists()                # the data directory was not made either


def _closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_redemptions_racing_with_deciders_never_overdraw_and_pay_each_request_once(
        cluster: PgCluster, tmp_path: Path) -> None:
    """Four threads, each on a connection of its own, redeem points of one store
    account (ids of their own and ids they share, so retries race their first
    try) while a fifth decides scans that earn that account points: the balance
    never goes below zero, each redemption id is spent once, and the account
    ends at what the history says."""
    from scangate import points
    from scangate.state.pg import PgStore as Store
    from fixtures_campaigns import CASES_ONLY, points_prize

    url = cluster.new_database()
    with Store(url) as store:
        store.migrate()
    data = tmp_path / "d"
    with scangate.init_data_dir(data) as dd:
        rewards.put_campaign(dd, campaign(cid="st", actor="store", prizes=points_prize("p10", 10), tail=CASES_ONLY),
                             "st.toml")
        cases = dd.issue_codes("BEER", "case", 60).as_strings()
    shared = scangate.open_data_dir(data, store=url)
    rewards.decide_scans(shared, [ScanRequest("seed", cases[0], "shop", "store", region=CHENGDU, time_ms=NOON)])
    results: dict[int, list[points.Redemption]] = defaultdict(list)
    errors: list[BaseException] = []

    def connection() -> scangate.DataDir:
        # one LMDB environment per process (LMDB's rule), a PostgreSQL connection per thread
        return scangate.DataDir(shared.root, shared.store, shared.keys, Store(url))

    def redeem(me: int) -> None:
        try:
            mine = connection()
            with mine.decisions:            # type: ignore[union-attr]
                for i in range(40):
                    rid = f"shared-{i % 10}" if i % 2 else f"own-{me}-{i}"
                    results[me].append(points.redeem(mine, "shop", 3, rid))
        except BaseException as exc:     # noqa: BLE001 - reported below
            errors.append(exc)

    def earn() -> None:
        try:
            mine = connection()
            with mine.decisions:            # type: ignore[union-attr]
                for i, code in enumerate(cases[1:]):
                    rewards.decide_scans(mine, [ScanRequest(f"s{i}", code, "shop", "store", region=CHENGDU,
                                                            time_ms=NOON + i)])
        except BaseException as exc:     # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=redeem, args=(k,)) for k in range(4)] + [threading.Thread(target=earn)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    assert not errors, errors
    by_id: dict[str, set[points.Redemption]] = defaultdict(set)
    for rs in results.values():
        for r in rs:
            by_id[r.request_id].add(r)
    assert all(len(v) == 1 for v in by_id.values()), "a redemption id answered two ways"
    spent = sum(r.points for (r,) in by_id.values() if r.ok)
    with shared as dd:
        balance, earned = points.balance(dd, "shop"), points.earned_of(dd, "shop")
        history = points.history(dd, "shop", 10_000)
    assert earned == 10 * len(cases) and balance == earned - spent >= 0
    assert sum(h["delta"] for h in history) == balance and all(h["balance"] >= 0 for h in history)
    assert sorted(h["ref"] for h in history if h["delta"] < 0) == sorted(r.request_id for (r,) in by_id.values()
                                                                         if r.ok)
    assert any(not r.ok for (r,) in by_id.values())       # the account ran dry at some point: the race was real


def test_the_audit_explains_decisions_that_saw_their_budget_slot_and_names_an_edited_share(
        cluster: PgCluster, tmp_path: Path) -> None:
    """Once a budget is split into slots, each decision records its slot's share
    of what is left, not the whole: the audit accepts a share that decides the
    same and is no more than the whole, and still names one edited to more."""
    from scangate.state import raw, reads
    from scangate.state.records import encode

    url = cluster.new_database()
    with PgStore(url) as store:
        store.migrate()
    cash = '[[prizes]]\nid = "cash"\nkind = "cash"\namount_fen = 100\nbudget_count = 10\n'
    with scangate.init_data_dir(tmp_path / "d") as dd:
        rewards.put_campaign(dd, campaign(prizes=cash), "c.toml")
        codes = dd.issue_codes("B", "item", 8).as_strings()
    shared = scangate.open_data_dir(tmp_path / "d", store=url)
    other = scangate.DataDir(shared.root, shared.store, shared.keys, PgStore(url))    # a second decider

    def scan(data: scangate.DataDir, i: int) -> None:
        rewards.decide_scans(data, [ScanRequest(f"r{i}", codes[i], f"u{i}", region=CHENGDU, time_ms=NOON)])

    scan(shared, 0)
    held, release = threading.Event(), threading.Event()

    def hold_slot_0() -> None:
        assert shared.decisions is not None
        with shared.decisions.batch(shared) as b:
            b.read(Snapshot(), claims=[b"x"], budgets={b"c1/cash": (10, None, 100)})
            held.set()
            release.wait(30)

    holder = threading.Thread(target=hold_slot_0)
    holder.start()
    assert held.wait(30)
    second = threading.Thread(target=scan, args=(other, 1))    # slot 0 is held: a new slot, balanced
    second.start()
    second.join(1.0)
    release.set()
    holder.join(30)
    second.join(30)
    for i in range(2, 6):
        scan(shared if i % 2 else other, i)
    assert shared.decisions is not None and len(shared.decisions.budget_slots(b"c1/cash")) == 2
    entries = list(reads.ledger(shared))
    seen = [e["budgets"]["cash"][0] for e in entries]
    wholes = list(range(10, 10 - len(entries), -1))
    assert seen != wholes and all(s <= w for s, w in zip(seen, wholes))   # shares, not the whole
    assert [r["failed"] for r in audit.audit_ledger(shared)] == [[]] * len(entries)
    # a share edited to more than the whole is an edit, named as one
    last = entries[-1]
    edited = msgspec.structs.replace(decode_ledger(raw.get(shared, "ledger", layout.seq_key(last["seq"]))),
                                     budgets={"cash": [wholes[-1] + 1, None]})
    raw.put(shared, "ledger", layout.seq_key(last["seq"]), encode(edited))
    assert audit.audit_entry(shared, last["seq"])["failed"] == ["budgets"]
    assert other.decisions is not None
    other.decisions.close()
    shared.close()


def test_a_programme_on_lmdb_moves_to_postgresql_with_store_copy(cluster: PgCluster, tmp_path: Path,
                                                                 run_cli) -> None:  # type: ignore[no-untyped-def]
    """Decided on LMDB (cash within a tiny budget, points, retries, several
    batches), copied with `scangate store copy`: every read of the decision
    state, every retry and the audit give the same on PostgreSQL, new decisions
    are numbered after the copied ones, and a second copy is refused."""
    from scangate import points
    from scangate.state import reads

    url = cluster.new_database()
    with PgStore(url) as store:
        store.migrate()
    root = tmp_path / "d"
    with scangate.init_data_dir(root) as dd:
        rewards.put_campaign(dd, RACE, "race.toml")
        codes = dd.issue_codes("SKU-R", "item", 30).as_strings()
        script = [[ScanRequest(f"r{i}", codes[i], f"u{i % 4}", region=CHENGDU, time_ms=NOON + 60_000 * i)
                   for i in range(start, start + 5)] for start in range(0, 25, 5)]
        decided = [rewards.decide_scans(dd, batch) for batch in script]

    def state(dd: scangate.DataDir) -> dict[str, object]:
        return {"ledger": list(reads.ledger(dd)), "outbox": reads.outbox(dd), "budgets": reads.budgets(dd),
                "claims": reads.claims(dd), "accounts": reads.points_accounts(dd),
                "histories": reads.points_histories(dd), "decisions": reads.decision_log(dd),
                "requests": reads.requests(dd), "history_number": reads.history_number(dd),
                "counters": [reads.counters(dd, "c1", f"u{k}") for k in range(4)],
                "scans": [reads.scan_history(dd, s) for s in dd.verify_codes(codes).serial.tolist()]}

    with scangate.open_data_dir(root) as dd:
        before = state(dd)
        assert any(e["prize_id"] == "cash" for e in before["ledger"]) and before["history_number"]
    done = run_cli("store", "copy", "--data", root, "--store", url, "--json")
    assert done.returncode == 0, done.stderr
    copied = json.loads(done.stdout)["copied"]
    assert copied["ledger"] == len(before["ledger"]) and copied["decisions"] == 25
    with scangate.open_data_dir(root, store=url) as dd:
        assert state(dd) == before
        assert [r["failed"] for r in audit.audit_ledger(dd)] == [[]] * len(before["ledger"])
        assert [rewards.decide_scans(dd, batch) for batch in script] == decided       # retries replay
        new = rewards.decide_scans(dd, [ScanRequest("new", codes[29], "u9", region=CHENGDU, time_ms=NOON)])[0]
        assert new.award is not None and new.award.ledger_seq > max(e["seq"] for e in before["ledger"])
        assert points.history(dd, "u9", 10)[-1]["balance"] == points.balance(dd, "u9")
        assert reads.budgets(dd)["c1/pts"][0] == before["budgets"]["c1/pts"][0] + (new.award.kind == "points")
    again = run_cli("store", "copy", "--data", root, "--store", url)
    assert again.returncode == 2 and "already holds decisions" in again.stderr


def test_threads_sharing_one_data_directory_each_get_a_connection(cluster: PgCluster, tmp_path: Path) -> None:
    """A server's worker decides, redeems and reads from several threads at once
    through one DataDir: each thread gets a connection of its own, so one thread's
    read-only snapshot never holds another's writes, nor its commit end another's
    read. (With one shared connection: "cannot execute INSERT in a read-only
    transaction", "SET TRANSACTION ... must be called before any query".)"""
    from scangate import payouts, points
    from fixtures_campaigns import CASES_ONLY, points_prize

    url = cluster.new_database()
    with PgStore(url) as store:
        store.migrate()
    with scangate.init_data_dir(tmp_path / "d") as dd:
        rewards.put_campaign(dd, campaign(cid="st", actor="store", prizes=points_prize("p10", 10), tail=CASES_ONLY),
                             "st.toml")
        cases = dd.issue_codes("B", "case", 120).as_strings()
    errors: list[BaseException] = []
    with scangate.open_data_dir(tmp_path / "d", store=url) as dd:
        def scan() -> None:
            try:
                for i, code in enumerate(cases):
                    rewards.decide_scans(dd, [ScanRequest(f"s{i}", code, "shop", "store", region=CHENGDU,
                                                          time_ms=NOON + i)])
            except BaseException as exc:     # noqa: BLE001 - reported below
                errors.append(exc)

        def redeem_and_read(me: int) -> None:
            try:
                for i in range(60):
                    points.redeem(dd, "shop", 5, f"x{me}-{i}")
                    balance, _earned, rows = points.statement(dd, "shop", 10_000)
                    assert balance == sum(r["delta"] for r in rows) >= 0
                    payouts.list_payouts(dd)
            except BaseException as exc:     # noqa: BLE001
                errors.append(exc)

        threads = [threading.Thread(target=scan)] + [threading.Thread(target=redeem_and_read, args=(k,))
                                                     for k in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(300)
        assert not errors, errors[:3]
        balance, earned, rows = points.statement(dd, "shop", 10_000)
        assert earned == 10 * len(cases) and balance == sum(r["delta"] for r in rows) >= 0
