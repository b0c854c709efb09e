"""`scangate issue --out` never replaces what it did not create.

Each case runs the real CLI: an existing file (refused, nothing reserved), --force,
a FIFO and a character device (streamed, still what they were), a symbolic link
(followed, still a link), '-', a directory, a killed run's .part left behind.
"""
from __future__ import annotations

import json
import os
import stat
import threading
from pathlib import Path

import pytest

import scangate
from conftest import RunCli


@pytest.fixture
def data(tmp_path: Path, run_cli: RunCli) -> Path:
    d = tmp_path / "d"
    assert run_cli("init", "--data", d).returncode == 0
    return d


def issued(data: Path) -> int:
    """Serials reserved so far: a refused output must not cost any."""
    with scangate.open_data_dir(data) as dd:
        return sum(r.count for r in dd.store.list_ranges())


def genuine(data: Path, text: bytes, count: int) -> None:
    with scangate.open_data_dir(data) as dd:
        result = dd.verify_codes(text)
    assert len(result) == count
    assert result.counts()[scangate.CodeStatus.GENUINE] == count


def issue(run_cli: RunCli, data: Path, out: Path | str, count: int, *extra: str):  # type: ignore[no-untyped-def]
    return run_cli("issue", "--data", data, "--sku", "S", "--count", count, "--out", out, *extra)


def test_an_existing_file_is_refused_and_costs_no_serials(tmp_path: Path, data: Path, run_cli: RunCli) -> None:
    out = tmp_path / "codes.txt"
    assert issue(run_cli, data, out, 5).returncode == 0
    before, reserved = out.read_bytes(), issued(data)
    r = issue(run_cli, data, out, 7)
    assert r.returncode == 2
    assert r.stderr.strip() == (f"error: --out {out}: exists; issued codes are never overwritten by accident "
                                "(pass --force to replace it, or choose another file)")
    assert out.read_bytes() == before and issued(data) == reserved
    assert not out.with_name("codes.txt.part").exists()


def test_force_replaces_an_existing_file_atomically(tmp_path: Path, data: Path, run_cli: RunCli) -> None:
    out = tmp_path / "codes.txt"
    out.write_bytes(b"old content\n")
    inode = out.stat().st_ino
    assert issue(run_cli, data, out, 9, "--force").returncode == 0
    text = out.read_bytes()
    assert b"old" not in text and out.stat().st_ino != inode   # a new file renamed over it, not rewritten
    genuine(data, text, 9)


def test_a_fifo_is_written_as_a_stream_and_stays_a_fifo(tmp_path: Path, data: Path, run_cli: RunCli) -> None:
    fifo = tmp_path / "printer"
    os.mkfifo(fifo)
    got: list[bytes] = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_bytes()))
    reader.start()
    r = issue(run_cli, data, fifo, 1000)
    reader.join(30)
    assert r.returncode == 0, r.stderr
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)
    assert not (tmp_path / "printer.part").exists()
    genuine(data, got[0], 1000)


def test_a_character_device_is_written_as_a_stream(tmp_path: Path, data: Path, run_cli: RunCli) -> None:
    # a pseudo-terminal of this test's own (never /dev/null or another shared device)
    master, slave = os.openpty()
    try:
        path = os.ttyname(slave)
        assert stat.S_ISCHR(os.stat(path).st_mode)
        import tty

        tty.setraw(slave)        # no newline translation: the bytes arrive as written
        r = issue(run_cli, data, path, 20, "--json")
        assert r.returncode == 0, r.stderr
        received = b""
        while len(received) < 20 * 30:
            received += os.read(master, 4096)
        assert stat.S_ISCHR(os.stat(path).st_mode)
    finally:
        os.close(master)
        os.close(slave)
    assert json.loads(r.stdout)["out"] == path
    genuine(data, received, 20)


def test_a_symlink_is_followed_and_stays_a_link(tmp_path: Path, data: Path, run_cli: RunCli) -> None:
    (tmp_path / "print").mkdir()
    link = tmp_path / "latest.txt"
    link.symlink_to("print/job1.txt")                       # dangling: the target is created
    assert issue(run_cli, data, link, 4).returncode == 0
    assert link.is_symlink() and os.readlink(link) == "print/job1.txt"
    genuine(data, (tmp_path / "print" / "job1.txt").read_bytes(), 4)

    reserved = issued(data)
    r = issue(run_cli, data, link, 4)                       # the target now exists: refused
    assert r.returncode == 2 and "exists" in r.stderr and str(tmp_path / "print" / "job1.txt") in r.stderr
    assert issued(data) == reserved

    assert issue(run_cli, data, link, 6, "--force").returncode == 0
    assert link.is_symlink() and os.readlink(link) == "print/job1.txt"
    genuine(data, (tmp_path / "print" / "job1.txt").read_bytes(), 6)

    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    to_fifo = tmp_path / "to-pipe"
    to_fifo.symlink_to(fifo)
    got: list[bytes] = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_bytes()))
    reader.start()
    assert issue(run_cli, data, to_fifo, 3).returncode == 0
    reader.join(30)
    assert to_fifo.is_symlink() and stat.S_ISFIFO(os.lstat(fifo).st_mode)
    genuine(data, got[0], 3)


def test_dash_writes_to_stdout_and_the_summary_to_stderr(data: Path, run_cli: RunCli) -> None:
    r = issue(run_cli, data, "-", 12, "--json")
    assert r.returncode == 0
    genuine(data, r.stdout.encode(), 12)
    assert json.loads(r.stderr)["count"] == 12


def test_a_directory_is_refused(tmp_path: Path, data: Path, run_cli: RunCli) -> None:
    (tmp_path / "dir").mkdir()
    (tmp_path / "link-to-dir").symlink_to(tmp_path / "dir")
    for out in (tmp_path / "dir", tmp_path / "link-to-dir"):
        r = issue(run_cli, data, out, 3)
        assert r.returncode == 2 and "directory" in r.stderr, r.stderr
    assert issued(data) == 0


def test_a_missing_directory_is_refused(tmp_path: Path, data: Path, run_cli: RunCli) -> None:
    r = issue(run_cli, data, tmp_path / "no" / "such" / "codes.txt", 3)
    assert r.returncode == 2 and "does not exist" in r.stderr
    assert issued(data) == 0


def test_a_part_file_left_by_a_killed_run_is_never_reused_silently(tmp_path: Path, data: Path,
                                                                     run_cli: RunCli) -> None:
    out = tmp_path / "codes.txt"
    part = tmp_path / "codes.txt.part"
    part.write_bytes(b"half a run\n")
    r = issue(run_cli, data, out, 3)
    assert r.returncode == 2 and "codes.txt.part exists" in r.stderr
    assert part.read_bytes() == b"half a run\n" and not out.exists() and issued(data) == 0
    assert issue(run_cli, data, out, 3, "--force").returncode == 0
    assert not part.exists()
    genuine(data, out.read_bytes(), 3)
