"""`scangate serve` with the decision state on PostgreSQL: the README's second
serve command against a real cluster (conftest's pg_server), every way of
naming the store (--store, SCANGATE_STORE, [store] url), decisions that live in
PostgreSQL and nowhere else, and a store that cannot be reached refused at start.
(tests/test_server.py runs its whole suite on such a server too.)"""
from __future__ import annotations

import json
import os
import shlex
import subprocess
from pathlib import Path
from typing import Any

import pytest

import scangate
from scangate.state import reads
from scangate.state.pg import PgStore

from docblocks import README, logical_lines, section_blocks
from serverproc import SCANGATE_BIN, free_port, running

CAMPAIGN = """
id = "pg"
name = "PostgreSQL red packets"
start = 2026-01-01
end = 2030-01-01
actor = "consumer"
odds = "100%"

[[prizes]]
id = "cny-1"
kind = "cash"
amount_fen = 100
budget_count = 7
"""


def readme_pg_commands(url: str) -> list[list[str]]:
    """The scangate commands of the README's PostgreSQL serve command ("Two
    commands", third block), its URL replaced by ``url``."""
    block = section_blocks(README, "Two commands")[2]
    (line,) = logical_lines(block.text)
    commands = [shlex.split(part) for part in line.split("&&")]
    scangate_cmds = [c for c in commands if c[0].endswith("/bin/scangate")]
    assert [c[1] for c in scangate_cmds] == ["init", "serve"], block.where
    urls = {w for c in scangate_cmds for w in c if w.startswith("postgresql://")}
    assert len(urls) == 1, f"{block.where}: one store URL on every command, got {urls}"
    (readme_url,) = urls
    return [[url if w == readme_url else w for w in c[1:]] for c in scangate_cmds]


def scan_some(target: str, n: int) -> tuple[list[str], list[Any]]:
    """Issue ``n`` codes, load the campaign, scan each code once and retry it:
    (codes, decisions)."""
    with scangate.Client(target) as c:
        codes = [code for b in c.issue_codes("BEER", "item", n) for code in b.codes]
        c.put_campaign(CAMPAIGN, "pg.toml")
        decisions = [c.scan(code, f"u{i}", request_id=f"r{i}", region=510104) for i, code in enumerate(codes)]
        assert [c.scan(code, f"u{i}", request_id=f"r{i}", region=510104) for i, code in enumerate(codes)] \
            == decisions                            # retries: the stored decisions
    return codes, decisions


def test_the_readme_postgresql_command_serves_decisions_kept_in_postgresql(tmp_path: Path, pg_server: Any) -> None:
    url = pg_server.database()
    with PgStore(url) as store:         # the README's database is made with createdb, no schema yet
        store.conn.execute("DROP SCHEMA scangate CASCADE")
        store.conn.execute("DROP TABLE public.scangate_schema")
        store.conn.commit()
    init, serve = readme_pg_commands(url)
    done = subprocess.run([str(SCANGATE_BIN), *init], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    with running(tmp_path / "scangate-data", *serve[1:], "--workers", "2") as srv:
        _codes, decisions = scan_some(srv.target, 12)
    assert sum(d.award is not None for d in decisions) == 7          # the budget, and no more
    with PgStore(url) as store:
        assert store.count("requests") == 12 and store.count("ledger") == 12
        assert store.budgets_spent() == {b"pg/cny-1": (7, 700)}
        assert store.count("outbox") == 7
    # the data directory's own decision state is untouched: nothing decided there
    with scangate.open_data_dir(tmp_path / "scangate-data") as dd:
        assert reads.requests(dd) == {} and list(reads.ledger(dd)) == []
    with scangate.open_data_dir(tmp_path / "scangate-data", store=url) as dd:
        assert len(reads.requests(dd)) == 12 and reads.budgets(dd) == {"pg/cny-1": (7, 700)}
    # the payout runner sends from the PostgreSQL outbox (the same --store)
    data = str(tmp_path / "scangate-data")
    sent = subprocess.run([str(SCANGATE_BIN), "payouts", "run", "--data", data, "--store", url, "--json"],
                          capture_output=True, text=True, timeout=120)
    assert sent.returncode == 0 and json.loads(sent.stdout)["confirmed"] == 7, sent.stderr
    listed = subprocess.run([str(SCANGATE_BIN), "payouts", "list", "--data", data, "--json"], capture_output=True,
                            text=True, timeout=120, env={**os.environ, "SCANGATE_STORE": url})
    assert [json.loads(line)["state"] for line in listed.stdout.splitlines()] == ["confirmed"] * 7
    assert len((tmp_path / "scangate-data" / "payouts.jsonl").read_text().splitlines()) == 7


@pytest.mark.parametrize("how", ["env", "toml"])
def test_the_store_named_by_env_or_config_is_the_one_served(tmp_path: Path, pg_server: Any, how: str) -> None:
    url = pg_server.database()
    data = tmp_path / "d"
    scangate.init_data_dir(data).close()
    env = {}
    if how == "env":
        env["SCANGATE_STORE"] = url
    else:
        (data / "scangate.toml").write_text(f'[store]\nurl = "{url}"\n')
    with running(data, env=env) as srv:
        codes, first = scan_some(srv.target, 3)
    with PgStore(url) as store:
        assert store.count("requests") == 3
    with scangate.open_data_dir(data) as dd:            # not one decision in the data directory itself
        assert reads.requests(dd) == {}
    with running(data, env=env) as srv, scangate.Client(srv.target) as c:    # a restart: the same state
        assert [c.scan(code, f"u{i}", request_id=f"r{i}", region=510104) for i, code in enumerate(codes)] == first
        assert c.scan(codes[0], "u9", region=510104).no_reward is not None     # claimed before the restart


def test_a_store_that_cannot_be_reached_or_has_no_schema_is_refused_at_start(tmp_path: Path,
                                                                              pg_server: Any) -> None:
    data = tmp_path / "d"
    scangate.init_data_dir(data).close()
    port = free_port()
    for url, why in ((f"postgresql://postgres@127.0.0.1:{port}/none", "cannot connect to the PostgreSQL store"),
                     (pg_server.cluster.url.rsplit("/", 1)[0] + "/postgres", "holds schema 0"),
                     ("mysql://127.0.0.1/x", "not a postgresql:// URL")):
        done = subprocess.run([str(SCANGATE_BIN), "serve", "--data", str(data), "--port", "0", "--metrics-port", "0",
                               "--store", url], capture_output=True, text=True, timeout=120)
        assert done.returncode == 2 and why in done.stderr, (url, done.stderr)
        done = subprocess.run([str(SCANGATE_BIN), "payouts", "list", "--data", str(data), "--store", url],
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 2 and why in done.stderr, (url, done.stderr)
    # several deciders commit concurrently: PostgreSQL's row locks, never LMDB's one writer
    done = subprocess.run([str(SCANGATE_BIN), "serve", "--data", str(data), "--port", "0", "--metrics-port", "0"],
                          capture_output=True, text=True, timeout=120, env={**os.environ, "SCANGATE_SERVER_DECIDERS": "2"})
    assert done.returncode == 2 and "server.deciders: 2 needs the PostgreSQL store" in done.stderr, done.stderr


def test_a_store_that_goes_down_answers_unavailable_and_the_retry_is_decided_once(tmp_path: Path) -> None:
    """The server's PostgreSQL stops under it (kill -9 of the postmaster): a scan
    gets UNAVAILABLE naming the store, nothing half done; once the database is back
    the server reconnects by itself and the same request (same request_id) is
    decided, once."""
    from bench._pgcluster import pg_cluster
    from scangate.errors import Unavailable

    with pg_cluster() as cluster:
        url = cluster.new_database()
        with PgStore(url) as store:
            store.migrate()
        data = tmp_path / "d"
        scangate.init_data_dir(data).close()
        with running(data, "--store", url) as srv, scangate.Client(srv.target) as c:
            codes = [code for b in c.issue_codes("BEER", "item", 3) for code in b.codes]
            c.put_campaign(CAMPAIGN, "pg.toml")
            assert c.scan(codes[0], "u0", request_id="before", region=510104).award is not None
            cluster.kill()
            with pytest.raises(Unavailable, match="decision store unavailable"):
                c.scan(codes[1], "u1", request_id="during", region=510104)
            cluster.start()
            decided = c.scan(codes[1], "u1", request_id="during", region=510104)
            assert decided.award is not None
            assert c.scan(codes[1], "u1", request_id="during", region=510104) == decided
        assert "decision store unavailable" in srv.logs()     # the operator's log says why (once a minute)
        with PgStore(url) as store:
            assert store.count("requests") == 2 and store.count("ledger") == 2
