"""Everything scangate creates in a data directory is owner-only (directories
0700, files 0600), whatever the umask, and opening a directory that others can
read warns once, naming the paths and the fix."""
from __future__ import annotations

import logging
import os
import stat
import subprocess
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

import scangate
from scangate.server.auth import add_token

from conftest import RunCli
from serverproc import ServerProcess
from test_payouts import make_awards


@contextmanager
def umask(mask: int) -> Iterator[None]:
    """The test process's umask for the block: a child started inside inherits it."""
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


def not_private(root: Path) -> dict[str, str]:
    """What under ``root`` (itself included) is not a 0700 directory or a 0600
    file or socket: path -> 'mode type'."""
    bad = {}
    for path in [root, *sorted(root.rglob("*"))]:
        st = path.lstat()
        want = 0o700 if stat.S_ISDIR(st.st_mode) else 0o600
        if stat.S_ISLNK(st.st_mode) or stat.S_IMODE(st.st_mode) != want:
            bad[str(path)] = f"{stat.S_IMODE(st.st_mode):04o} {stat.filemode(st.st_mode)}"
    return bad


def warnings_in(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if "WARNING" in line]


# ---------------------------------------------------------------------- created private
@pytest.mark.parametrize("mask", [0o022, 0], ids=["umask022", "umask0"])
def test_cli_init_makes_everything_private(tmp_path: Path, run_cli: RunCli, mask: int) -> None:
    data = tmp_path / "new" / "data"                     # a missing parent too
    with umask(mask):
        proc = run_cli("init", "--data", data)
    assert proc.returncode == 0, proc.stderr
    assert {p.relative_to(tmp_path).as_posix() for p in data.rglob("*")} >= {
        "new/data/keys.json", "new/data/lmdb", "new/data/lmdb/data.mdb", "new/data/lmdb/lock.mdb"}
    assert not_private(tmp_path / "new") == {}
    assert warnings_in(proc.stderr) == []


@pytest.mark.parametrize("mask", [0o022, 0], ids=["umask022", "umask0"])
def test_python_init_makes_everything_private(tmp_path: Path, mask: int) -> None:
    data = tmp_path / "data"
    with umask(mask):
        with scangate.init_data_dir(data) as dd:
            dd.rotate_key()                              # the key file is written again
        with scangate.open_data_dir(data):               # lock.mdb is opened again
            pass
    assert not_private(data) == {}


def test_server_files_are_private_under_umask_0(tmp_path: Path) -> None:
    data = tmp_path / "data"                             # the server creates it
    with umask(0):
        srv = ServerProcess(data, metrics=True)
    try:
        with scangate.Client(srv.target) as c:           # counters and histograms get written
            c.verify_codes(["not-a-code"])
        with urllib.request.urlopen(f"http://127.0.0.1:{srv.metrics_port}/metrics", timeout=10) as r:
            scraped = r.read().decode()
        assert "scangate_requests_total" in scraped      # the owner-only metric files still add up
        run = data / "run"
        (live,) = run.iterdir()
        assert {p.name for p in live.iterdir()} >= {"writer.sock", "metrics"}
        assert {p.name.split("_")[0] for p in (live / "metrics").iterdir()} >= {"counter", "histogram"}
        assert not_private(data) == {}
    finally:
        assert srv.stop() == 0, srv.logs()[-3000:]
    assert list((data / "run").iterdir()) == []
    assert not_private(data) == {}


def test_payouts_file_is_private(tmp_path: Path, run_cli: RunCli) -> None:
    data = tmp_path / "data"
    with umask(0):
        make_awards(data, 3).close()
        proc = run_cli("payouts", "run", "--data", data, "--rate", "1000")
    assert proc.returncode == 0, proc.stderr
    assert len((data / "payouts.jsonl").read_text().splitlines()) == 3
    assert not_private(data) == {}


def test_tokens_add_into_a_data_directory_is_private(tmp_path: Path, run_cli: RunCli) -> None:
    data = tmp_path / "data"
    with umask(0):
        assert run_cli("init", "--data", data).returncode == 0
        proc = run_cli("tokens", "add", "app", "--role", "scanner", "--data", data)
    assert proc.returncode == 0, proc.stderr
    assert (data / "tokens.toml").exists()
    assert not_private(data) == {}


def test_add_token_creates_a_missing_directory_private(tmp_path: Path) -> None:
    path = tmp_path / "etc" / "scangate" / "tokens.toml"
    with umask(0):
        add_token(path, "app", "scanner")
    assert not_private(tmp_path / "etc") == {}


def test_cli_tokens_add_creates_a_missing_data_directory_private(tmp_path: Path, run_cli: RunCli) -> None:
    data = tmp_path / "data"
    with umask(0):
        proc = run_cli("tokens", "add", "app", "--role", "scanner", "--data", data)
    assert proc.returncode == 0, proc.stderr
    assert not_private(data) == {}


# ---------------------------------------------------------------------- existing, too open
def test_cli_warns_once_about_a_data_directory_others_can_read(tmp_path: Path, run_cli: RunCli) -> None:
    data = tmp_path / "data"
    with scangate.init_data_dir(data) as dd:
        code = dd.issue_codes("SKU", "item", 1).as_strings()[0]
    proc = run_cli("verify", "--data", data, "-", input=code + "\n")
    assert proc.returncode == 0 and warnings_in(proc.stderr) == [], proc.stderr     # private: silent

    os.chmod(data, 0o755)                                # what scangate made before this check existed
    os.chmod(data / "lmdb", 0o755)
    os.chmod(data / "lmdb" / "data.mdb", 0o644)
    proc = run_cli("verify", "--data", data, "-", input=code + "\n")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(f"{code}\tgenuine")   # a warning, not a refusal
    (line,) = warnings_in(proc.stderr)                   # exactly one line for all of them
    assert "scangate.datadir" in line
    for path in (data, data / "lmdb", data / "lmdb" / "data.mdb"):
        assert f"{path} (0" in line, (path, line)
    assert str(data / "keys.json") not in line and "lock.mdb" not in line          # those are private
    assert f"chmod -R go= {data}" in line

    subprocess.run(["chmod", "-R", "go=", str(data)], check=True)      # the fix it names silences it
    proc = run_cli("verify", "--data", data, "-", input=code + "\n")
    assert warnings_in(proc.stderr) == [], proc.stderr


def test_a_key_file_kept_elsewhere_is_checked_too(tmp_path: Path, run_cli: RunCli) -> None:
    data, key_file = tmp_path / "data", tmp_path / "secrets" / "keys.json"
    key_file.parent.mkdir()
    env = {"SCANGATE_KEY_FILE": str(key_file)}
    assert run_cli("init", "--data", data, env=env).returncode == 0
    os.chmod(key_file, 0o640)
    proc = run_cli("keys", "list", "--data", data, env=env)
    assert proc.returncode == 0, proc.stderr
    (line,) = warnings_in(proc.stderr)
    assert f"{key_file} (0640)" in line and f"chmod go= {key_file}" in line
    assert "chmod -R" not in line                        # the data directory itself is private


def test_warns_once_per_process_and_path(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    data = tmp_path / "data"
    scangate.init_data_dir(data).close()
    os.chmod(data / "lmdb" / "data.mdb", 0o644)
    with caplog.at_level(logging.WARNING, logger="scangate.datadir"):
        for _ in range(3):
            scangate.open_data_dir(data).close()
        assert len(caplog.records) == 1 and "data.mdb (0644)" in caplog.records[0].getMessage()
        os.chmod(data / "keys.json", 0o644)              # a new path: one more warning, naming it alone
        scangate.open_data_dir(data).close()
        scangate.open_data_dir(data).close()
    assert len(caplog.records) == 2
    second = caplog.records[1].getMessage()
    assert "keys.json (0644)" in second and "data.mdb" not in second
    assert all(r.levelno == logging.WARNING and r.name == "scangate.datadir" for r in caplog.records)
