"""Crash test over the real server under honest and hostile load (issue 12, item 11).

``scangate serve --workers 2`` on a data directory with issued codes and a
campaign with budgets and per-user caps. Honest clients scan every code once (and
some again, under another user) and keep each decision the server acknowledged;
beside them, hostile clients reuse acknowledged request ids for other scans, send
out-of-range fields and bytes that are no protobuf on a raw channel, and scan
codes that were never issued. Meanwhile the whole server (supervisor, writer and
workers: its process group) or its writer alone is killed with SIGKILL at seeded
random moments, four times, and the server restarted on the same data directory;
the clients carry on, retrying what got no answer.

At the end every acknowledged request, retried, returns the identical decision;
no hostile request was ever decided; and the store holds up: one draw per code,
budgets never overspent and equal to the ledger's awards, per-user caps held, and
the payout outbox one to one with the cash and coupon awards.
"""
from __future__ import annotations

import datetime as dt
import random
import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import grpc

import scangate
from scangate import payouts, rewards
from scangate.rewards import Decision, ScanRequest
from scangate.state import reads
from scangate.v1 import scan_pb2_grpc

from hostile_clients import MALFORMED, NO_LIMITS, OUT_OF_RANGE, KillableServer, raw_scan, scan_message
from serverproc import violations

# The campaign's window: it holds the clock the server decides by.
WINDOW = ("2026-01-01", "2030-01-01")
SEED = 20261207
CHENGDU = 510104
# Sized so that under this load the cash budget runs out (its amount first: 20 red
# packets), every user reaches the total cap, and some user the daily amount cap;
# the coupons last.
CASH_BUDGET = (25, 2_000)          # awards, fen
COUPON_BUDGET = 60
CAPS = {"per_user_daily_count": 5, "per_user_total_count": 3, "per_user_daily_amount_fen": 200,
        "per_user_total_amount_fen": 300}
CAMPAIGN = f"""
id = "crash"
name = "Crash under hostile load"
start = {WINDOW[0]}
end = {WINDOW[1]}
actor = "consumer"
odds = "15%"
consolation = "pts"

[[prizes]]
id = "cny"
kind = "cash"
amount_fen = 100
weight = 4             # most wins pick cash: 16 users x 2 a day (the daily amount cap) outrun the budget
budget_count = {CASH_BUDGET[0]}
budget_amount_fen = {CASH_BUDGET[1]}

[[prizes]]
id = "cpn"
kind = "coupon"
budget_count = {COUPON_BUDGET}
coupon = {{ type = "gift", gift_sku = "BEER-330", valid_days = 30 }}

[[prizes]]
id = "pts"
kind = "points"
points = 2

[caps]
{chr(10).join(f"{k} = {v}" for k, v in CAPS.items())}
"""
KINDS = {"cny": "cash", "cpn": "coupon", "pts": "points"}
N_CODES = 640
USERS = 16
HONEST_CLIENTS = 4
KILLS = ["all", "all", "writer", "writer"]      # shuffled by SEED
MAX_RUN_S = 150                                  # a client gives up on a request after this


class Live:
    """The server the clients talk to: its target changes when it is restarted
    (a new port), its generation counts the restarts."""

    def __init__(self, server: KillableServer):
        self.server = server
        self.generation = 0
        self.changed = threading.Condition()

    def current(self) -> tuple[int, str]:
        with self.changed:
            return self.generation, self.server.target

    def replace(self, server: KillableServer) -> None:
        with self.changed:
            self.server = server
            self.generation += 1
            self.changed.notify_all()

    def wait_past(self, generation: int, timeout: float) -> None:
        with self.changed:
            self.changed.wait_for(lambda: self.generation != generation, timeout)


class Session:
    """A client that follows the live server: a new channel after a restart."""

    def __init__(self, live: Live):
        self.live = live
        self.generation, target = live.current()
        self.client = scangate.Client(target, timeout=20)
        self.channel = grpc.insecure_channel(target)

    def refresh(self) -> None:
        generation, target = self.live.current()
        if generation != self.generation:
            self.close()
            self.generation = generation
            self.client = scangate.Client(target, timeout=20)
            self.channel = grpc.insecure_channel(target)

    def pause(self) -> None:
        """After UNAVAILABLE: wait for a restart or a little while (a writer comes
        back on the same port), then follow the server."""
        self.live.wait_past(self.generation, 0.1)
        self.refresh()

    def close(self) -> None:
        self.client.close()
        self.channel.close()


@dataclass
class Record:
    """Everything the clients saw, under one lock."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    acked: dict[str, tuple[ScanRequest, Decision]] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)         # honest calls that failed other than UNAVAILABLE
    unavailable: int = 0                                        # honest calls answered UNAVAILABLE (retried)
    hostile: Counter[str] = field(default_factory=Counter)     # what hostile clients were answered, by kind
    wrong: list[str] = field(default_factory=list)             # hostile calls answered otherwise than they must be

    def ack(self, r: ScanRequest, d: Decision) -> None:
        with self.lock:
            first = self.acked.setdefault(r.request_id, (r, d))
            if first[1] != d:
                self.failures.append(f"{r.request_id}: acknowledged twice, differently")

    def acked_ids(self) -> list[str]:
        with self.lock:
            return list(self.acked)


def _scan(c: scangate.Client, r: ScanRequest) -> Decision:
    return c.scan(r.code, r.actor, request_id=r.request_id, region=r.region)


def honest_client(live: Live, rec: Record, requests: list[ScanRequest], deadline: float,
                  stop: threading.Event) -> None:
    s = Session(live)
    try:
        for r in requests:
            while True:
                try:
                    d = _scan(s.client, r)
                except scangate.Unavailable:
                    with rec.lock:
                        rec.unavailable += 1
                    if time.monotonic() > deadline or stop.is_set():
                        with rec.lock:
                            rec.failures.append(f"{r.request_id}: still unavailable at the deadline")
                        return
                    s.pause()
                    continue
                except Exception as exc:    # noqa: BLE001 - every other failure is a finding
                    with rec.lock:
                        rec.failures.append(f"{r.request_id}: {type(exc).__name__}: {str(exc)[:120]}")
                    break
                rec.ack(r, d)
                break
    finally:
        s.close()


def reuser(live: Live, rec: Record, own_codes: list[str], bait: list[str], stop: threading.Event, seed: int) -> None:
    """Reuses acknowledged request ids (the honest clients' and its own) for other
    scans: another code, another actor. Each must be refused naming request_id."""
    rng = random.Random(seed)
    s = Session(live)
    n = 0
    try:
        while not stop.is_set():
            n += 1
            ids = rec.acked_ids()
            if n % 3 == 0 and own_codes:        # its own id: first a scan of its own, then another under that id
                mine = ScanRequest(f"own-{seed}-{n}", own_codes.pop(), f"mallory-{seed}", region=CHENGDU)
                try:
                    rec.ack(mine, _scan(s.client, mine))
                except scangate.Unavailable:
                    s.pause()
                    continue
                target = mine.request_id
            elif ids:
                target = rng.choice(ids)
            else:
                time.sleep(0.02)
                continue
            code = rng.choice(bait)
            try:
                d = s.client.scan(code, f"mallory-{seed}", request_id=target, region=440106)
            except scangate.InvalidArgument as exc:
                got = [f for f, _ in getattr(exc, "violations", [])]
                with rec.lock:
                    rec.hostile["reused id refused"] += 1
                    if got != ["request_id"]:
                        rec.wrong.append(f"reused id {target!r}: violations {got}")
            except scangate.Unavailable:
                s.pause()
            except Exception as exc:   # noqa: BLE001
                with rec.lock:
                    rec.wrong.append(f"reused id {target!r}: {type(exc).__name__}: {str(exc)[:120]}")
            else:
                with rec.lock:
                    rec.wrong.append(f"reused id {target!r} was decided: {d.verdict.label}")
            time.sleep(0.005)
    finally:
        s.close()


def poisoner(live: Live, rec: Record, bait: list[str], stop: threading.Event, seed: int) -> None:
    """Out-of-range fields on a raw stub, and bytes that are no ScanRequest: each
    INVALID_ARGUMENT, the field named."""
    rng = random.Random(seed)
    s = Session(live)
    n = 0
    try:
        while not stop.is_set():
            n += 1
            malformed = n % 4 == 0
            try:
                if malformed:
                    kind, want = "malformed bytes", None
                    raw_scan(s.channel)(rng.choice(MALFORMED), timeout=20)
                else:
                    fields, want = OUT_OF_RANGE[(n - n // 4) % len(OUT_OF_RANGE)]    # each in turn
                    kind = f"out-of-range {want}"
                    m = scan_message({"request_id": f"poison-{seed}-{n}", "code": rng.choice(bait),
                                      "actor": f"mallory-{seed}", "region": CHENGDU, **fields})
                    scan_pb2_grpc.ScanServiceStub(s.channel).Scan(m, timeout=20)
            except grpc.RpcError as err:
                code = err.code()
                if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.CANCELLED):
                    s.pause()
                    continue
                with rec.lock:
                    rec.hostile[kind] += 1
                    if code != grpc.StatusCode.INVALID_ARGUMENT or (want is not None and violations(err) != [want]):
                        rec.wrong.append(f"{kind}: {code.name} {violations(err)} {str(err.details())[:80]}")
            except Exception as exc:   # noqa: BLE001 - the test's own mistake, reported, not a dead thread
                with rec.lock:
                    rec.wrong.append(f"{kind}: {type(exc).__name__}: {str(exc)[:120]}")
            else:
                with rec.lock:
                    rec.wrong.append(f"{kind} was decided")
            time.sleep(0.005)
    finally:
        s.close()


def guesser(live: Live, rec: Record, unknown: list[str], stop: threading.Event, seed: int) -> None:
    """Codes that were never issued (guesses, typos, another brand's codes), unary
    and in streams: decided, never genuine, never rewarded."""
    rng = random.Random(seed)
    s = Session(live)
    n = 0
    try:
        while not stop.is_set():
            n += 1
            batch = [ScanRequest(f"guess-{seed}-{n}-{i}", rng.choice(unknown), f"guesser-{rng.randrange(5)}",
                                 region=CHENGDU) for i in range(1 if n % 5 else 20)]
            try:
                got = [_scan(s.client, batch[0])] if len(batch) == 1 else list(s.client.scan_stream(batch))
            except scangate.Unavailable:
                s.pause()
                continue
            except Exception as exc:   # noqa: BLE001
                with rec.lock:
                    rec.wrong.append(f"guess: {type(exc).__name__}: {str(exc)[:120]}")
                continue
            with rec.lock:
                rec.hostile["unknown code decided"] += len(got)
                for d in got:
                    if d.award is not None or d.verdict.code_status.label == "genuine":
                        rec.wrong.append(f"unknown code: {d.verdict.label}, award {d.award}")
            time.sleep(0.005)
    finally:
        s.close()


def _unknown_codes(tmp_path: Path, issued: list[str], rng: random.Random) -> list[str]:
    """Codes no scan may find genuine: another data directory's (another key),
    issued codes with one symbol changed (typos), and random text in the codes'
    shape and not."""
    with scangate.init_data_dir(tmp_path / "other-brand") as other:
        foreign = other.issue_codes("BEER", "item", 20).as_strings()
    alphabet = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
    typos = []
    for code in rng.sample(issued, 20):
        i = rng.randrange(2, len(code))
        typos.append(code[:i] + rng.choice(alphabet.replace(code[i], "")) + code[i + 1:])
    shaped = ["01" + "".join(rng.choice(alphabet) for _ in range(27)) for _ in range(20)]
    return foreign + typos + shaped + ["x", "https://scn.example.com/", "01" + "Z" * 40]


def _ledger(dd: scangate.DataDir) -> list[dict[str, Any]]:
    return list(reads.ledger(dd))


def test_kill_9_under_hostile_load(tmp_path: Path) -> None:
    rng = random.Random(SEED)
    data = tmp_path / "data"
    with scangate.init_data_dir(data) as dd:
        rewards.put_campaign(dd, CAMPAIGN, "crash.toml")
        codes = dd.issue_codes("BEER", "item", N_CODES + 200).as_strings()
    honest_codes, own_codes, bait = codes[:N_CODES], codes[N_CODES:N_CODES + 100], codes[N_CODES + 100:]
    unknown = _unknown_codes(tmp_path, honest_codes, rng)
    # every code once, and one in eight again under another user (its claim is taken)
    honest = [ScanRequest(f"scan-{i}", c, f"user-{i % USERS}", region=CHENGDU) for i, c in enumerate(honest_codes)]
    honest += [ScanRequest(f"again-{i}", honest_codes[i], f"user-{(i + 5) % USERS}", region=CHENGDU)
               for i in range(0, N_CODES, 8)]
    rng.shuffle(honest)
    kills = list(KILLS)
    rng.shuffle(kills)

    rec = Record()
    live = Live(KillableServer(data, "--workers", "2", env=NO_LIMITS))
    stop = threading.Event()
    deadline = time.monotonic() + MAX_RUN_S
    # daemon threads, told to stop when the test fails: none outlives it
    honest_threads = [threading.Thread(target=honest_client, daemon=True,
                                       args=(live, rec, honest[k::HONEST_CLIENTS], deadline, stop))
                      for k in range(HONEST_CLIENTS)]
    hostile_threads = [
        threading.Thread(target=reuser, args=(live, rec, own_codes, bait, stop, 1), daemon=True),
        threading.Thread(target=poisoner, args=(live, rec, bait, stop, 2), daemon=True),
        threading.Thread(target=guesser, args=(live, rec, unknown, stop, 3), daemon=True),
    ]
    servers = [live.server]
    try:
        for t in honest_threads + hostile_threads:
            t.start()
        for kind in kills:
            # a random moment: after a random number of acknowledged scans, then a
            # random fraction of a group commit's time
            target = len(rec.acked) + rng.randint(50, 110)
            while len(rec.acked) < target and any(t.is_alive() for t in honest_threads):
                time.sleep(0.005)
            time.sleep(rng.uniform(0, 0.02))
            if kind == "writer":
                live.server.kill_writer()
            else:
                live.server.kill_all()
                live.replace(KillableServer(data, "--workers", "2", env=NO_LIMITS))
                servers.append(live.server)
        for t in honest_threads:
            t.join(MAX_RUN_S)
        stop.set()
        for t in hostile_threads:
            t.join(60)
        assert not any(t.is_alive() for t in honest_threads + hostile_threads)
        assert len(servers) == 1 + kills.count("all")
        assert rec.unavailable > 0           # the kills met scans in flight
        assert rec.failures == [], rec.failures[:5]
        assert rec.wrong == [], rec.wrong[:5]
        honest_ids = {r.request_id for r in honest}
        assert honest_ids <= set(rec.acked), f"{len(honest_ids - set(rec.acked))} honest scans never acknowledged"
        # the hostile clients did their work: every kind of refusal, many times
        kinds = {"reused id refused", "malformed bytes", "unknown code decided"} | {
            f"out-of-range {f}" for _, f in OUT_OF_RANGE}
        assert kinds <= set(rec.hostile), sorted(kinds - set(rec.hostile))
        assert rec.hostile["reused id refused"] >= 20, rec.hostile

        # every acknowledged request, retried: the identical decision
        retried = [r for r, _ in rec.acked.values()]
        with scangate.Client(live.server.target, timeout=60) as c:
            again = list(c.scan_stream(retried, batch_size=200))
            # no hostile request was decided: the codes only they carried were never scanned
            checks = list(c.scan_stream([ScanRequest(f"check-{i}", code, "auditor", region=CHENGDU)
                                         for i, code in enumerate(bait)]))
        assert again == [rec.acked[r.request_id][1] for r in retried]
        assert [d.verdict.scan_count for d in checks] == [1] * len(bait)
        logs = "".join(s.logs() for s in servers)
        assert "Traceback" not in logs, logs[logs.index("Traceback") - 500:][:3000]
        assert live.server.stop() == 0
    finally:
        stop.set()
        for s in servers:
            if s.proc.poll() is None:
                s.kill_all()

    with scangate.open_data_dir(data) as dd:
        ledger = _ledger(dd)
        used = rewards.budgets_used(dd, "crash")
        outbox = payouts.list_payouts(dd)
        audited = [rewards.audit_entry(dd, e["seq"]) for e in ledger[::15]]
    by_seq = {e["seq"]: e for e in ledger}

    # one draw per code, one entry per request, numbered without a gap
    assert sorted(by_seq) == list(range(1, len(ledger) + 1))
    assert len({e["serial"] for e in ledger}) == len(ledger)
    assert len({e["request_id"] for e in ledger}) == len(ledger)
    assert all(a["verified"] for a in audited), [a["checks"] for a in audited if not a["verified"]][:3]

    # budgets: what the store counts is what the ledger awarded, and never more than the campaign has
    awarded: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for e in ledger:
        if e["prize_id"] is not None:
            awarded[e["prize_id"]][0] += 1
            awarded[e["prize_id"]][1] += e["amount_fen"]
    assert {p: {"count": n, "amount_fen": fen} for p, (n, fen) in awarded.items()} == used
    assert used["cny"]["count"] <= CASH_BUDGET[0] and used["cny"]["amount_fen"] <= CASH_BUDGET[1]
    assert used["cpn"]["count"] <= COUPON_BUDGET
    assert used["cny"]["amount_fen"] == CASH_BUDGET[1]     # the load spent the cash: the budget was tested

    # per-user caps: awards (the consolation prize does not count) per user, per local day
    zone = ZoneInfo("Asia/Shanghai")
    counts: Counter[tuple[str, str]] = Counter()
    totals: Counter[str] = Counter()
    fen_day: Counter[tuple[str, str]] = Counter()
    fen_total: Counter[str] = Counter()
    for e in ledger:
        if e["prize_id"] is None or e["how"] == "consolation":
            continue
        day = dt.datetime.fromtimestamp(e["time_ms"] / 1000, zone).date().isoformat()
        counts[e["actor"], day] += 1
        totals[e["actor"]] += 1
        if KINDS[e["prize_id"]] == "cash":
            fen_day[e["actor"], day] += e["amount_fen"]
            fen_total[e["actor"]] += e["amount_fen"]
    assert max(counts.values()) <= CAPS["per_user_daily_count"]
    assert max(totals.values()) <= CAPS["per_user_total_count"]
    assert max(fen_day.values()) <= CAPS["per_user_daily_amount_fen"]
    assert max(fen_total.values()) <= CAPS["per_user_total_amount_fen"]
    # the load reached the caps, so they were tested: the total count (refusing
    # further awards) and the daily amount
    assert max(totals.values()) == CAPS["per_user_total_count"]
    assert any(d.no_reward == rewards.NoReward.TOTAL_CAP_REACHED for _, d in rec.acked.values())
    assert max(fen_day.values()) == CAPS["per_user_daily_amount_fen"]

    # the outbox: one payout per cash or coupon award, the same award, and nothing else
    paid = {e["payout_key"]: e for e in ledger if e["prize_id"] is not None and KINDS[e["prize_id"]] != "points"}
    assert len(paid) == awarded["cny"][0] + awarded["cpn"][0]
    assert sorted(p["key"] for p in outbox) == sorted(paid)
    for p in outbox:
        e = paid[p["key"]]
        assert (p["ledger_seq"], p["actor"], p["prize_id"], p["amount_fen"]) == \
            (e["seq"], e["actor"], e["prize_id"], e["amount_fen"]), (p, e)

    # every acknowledged award is the ledger's, and its payout is in the outbox
    for rid, (_r, d) in rec.acked.items():
        if d.award is not None:
            e = by_seq[d.award.ledger_seq]
            assert (e["request_id"], e["prize_id"], e["amount_fen"]) == (rid, d.award.prize_id, d.award.amount_fen)
            assert d.award.payout_key == e["payout_key"]
    # and no ledger entry is a hostile request's: a bait code was never drawn
    with scangate.open_data_dir(data) as dd:
        bait_serials = set(dd.verify_codes(bait).serial.tolist())
    assert not any(e["serial"] in bait_serials and not e["request_id"].startswith("check-") for e in ledger)
