"""A server keeps its metrics files and writer socket in DATA/run/<pid>-*/ (or,
for a data directory too deep for a Unix socket path, the socket in a recorded
directory under the system temp dir). A graceful stop removes them; after a
kill -9 the next start does, and never those of a server still running."""
from __future__ import annotations

import fcntl
import json
import os
import shutil
import signal
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

import scangate

from serverproc import ServerProcess

MAX_SOCKET_PATH = 107


def run_dirs(data: Path) -> set[str]:
    return {p.name for p in (data / "run").iterdir()}


def run_dir_of(srv: ServerProcess, data: Path) -> str:
    (name,) = [n for n in run_dirs(data) if n.startswith(f"{srv.proc.pid}-")]
    return name


def writer_socket(srv: ServerProcess) -> Path:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        for line in list(srv.stderr):
            if line.startswith("{") and '"writer serving"' in line:
                return Path(json.loads(line)["socket"])
        time.sleep(0.05)
    raise AssertionError(srv.logs()[-3000:])


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"       # a zombie holds no locks
    except FileNotFoundError:
        return False


def descendants(pid: int) -> list[int]:
    parents: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat", encoding="ascii", errors="replace") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (FileNotFoundError, ProcessLookupError):
                continue
            parents.setdefault(ppid, []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def kill9(pids: list[int]) -> None:
    for pid in pids:
        if not alive(pid):
            continue
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + 30
    while any(alive(p) for p in pids):
        assert time.monotonic() < deadline, [p for p in pids if alive(p)]
        time.sleep(0.05)


def kill9_tree(srv: ServerProcess) -> None:
    """SIGKILL the supervisor and every process it started, then collect its output.
    Only while the supervisor is unreaped: its pid (and its children's) are still its."""
    if srv.proc.poll() is None:
        kill9([*descendants(srv.proc.pid), srv.proc.pid])
    srv.stop()


def kill9_supervisor(srv: ServerProcess) -> list[int]:
    """SIGKILL the supervisor alone; its children (writer, workers) are returned,
    still running. They hold its output pipes: srv.stop() only once they are dead."""
    children = descendants(srv.proc.pid)
    assert len(children) >= 2, children
    os.kill(srv.proc.pid, signal.SIGKILL)
    assert srv.proc.wait(30) == -signal.SIGKILL
    return children


def scrape(srv: ServerProcess, until: str = "scangate_commit_batch_size_count 1.0") -> str:
    """The server's /metrics, once it shows ``until`` (the writer updates them after its commit)."""
    deadline = time.monotonic() + 20
    while True:
        with urllib.request.urlopen(f"http://127.0.0.1:{srv.metrics_port}/metrics", timeout=10) as r:
            text = r.read().decode()
        if until in text or time.monotonic() > deadline:
            return text
        time.sleep(0.1)


@pytest.fixture
def systmp() -> Iterator[Path]:
    """The servers' system temp directory (TMPDIR): the test sees whatever they
    leave there. Short, under the real one: a socket path must fit in it."""
    d = Path(tempfile.mkdtemp(prefix="sg-"))
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


def start(data: Path, systmp: Path) -> ServerProcess:
    return ServerProcess(data, env={"TMPDIR": str(systmp)}, metrics=True)


def test_a_graceful_stop_leaves_nothing_behind(tmp_path: Path, systmp: Path) -> None:
    data = tmp_path / "data"
    srv = start(data, systmp)
    try:
        name = run_dir_of(srv, data)
        assert writer_socket(srv) == data.absolute() / "run" / name / "writer.sock"
        assert (data / "run" / name / "metrics").is_dir()
        assert list(systmp.iterdir()) == []                  # nothing in the system temp dir
    finally:
        assert srv.stop() == 0, srv.logs()[-3000:]
    assert run_dirs(data) == set()
    assert list(systmp.iterdir()) == []


def test_kill_9_leftovers_go_at_the_next_start_a_live_servers_never(tmp_path: Path, systmp: Path) -> None:
    data = tmp_path / "data"
    with scangate.init_data_dir(data) as dd:
        code = dd.issue_codes("SKU", "item", 1).as_strings()[0]
    run = data / "run"
    run.mkdir(mode=0o700)
    # hostile leftovers: a run dir named after a live pid that is not a server
    # (pid reuse), and one whose lock a live process holds
    reused = run / f"{os.getpid()}-reused"
    reused.mkdir()
    held = run / "1-held"
    held.mkdir()
    held_fd = os.open(held, os.O_RDONLY | os.O_DIRECTORY)
    fcntl.flock(held_fd, fcntl.LOCK_SH)
    servers: list[ServerProcess] = []
    try:
        a = start(data, systmp)
        servers.append(a)
        b = start(data, systmp)                               # a second live server, same data directory
        servers.append(b)
        a_dir, b_dir = run_dir_of(a, data), run_dir_of(b, data)
        assert not reused.exists()                            # swept by the first start already
        assert held.exists()

        kill9_tree(a)
        assert a_dir in run_dirs(data)                        # what a kill -9 leaves

        c = start(data, systmp)
        servers.append(c)
        assert run_dirs(data) == {b_dir, run_dir_of(c, data), "1-held"}
        with scangate.Client(b.target, timeout=20) as client:   # b's socket and metrics are intact
            assert client.scan(code, "u1", region=510104).verdict.label == "genuine"
        assert "scangate_commit_batch_size_count 1.0" in scrape(b)
        assert list(systmp.iterdir()) == []
        for srv in (c, b):
            assert srv.stop() == 0, srv.logs()[-3000:]
        assert run_dirs(data) == {"1-held"}
    finally:
        for srv in servers:
            kill9_tree(srv)                                   # no-op for those already stopped
        os.close(held_fd)
    d = start(data, systmp)                                   # its lock released: now it goes too
    try:
        assert run_dirs(data) == {run_dir_of(d, data)}
    finally:
        assert d.stop() == 0
    assert run_dirs(data) == set() and list(systmp.iterdir()) == []


def test_orphaned_children_keep_their_run_dir_until_they_die(tmp_path: Path, systmp: Path) -> None:
    data = tmp_path / "data"
    a = start(data, systmp)
    children: list[int] = []
    try:
        a_dir = run_dir_of(a, data)
        children = kill9_supervisor(a)
        assert all(alive(p) for p in children)
        b = start(data, systmp)                               # a's writer and worker still use a_dir
        try:
            assert a_dir in run_dirs(data)
        finally:
            assert b.stop() == 0
    finally:
        kill9(children)
        kill9_tree(a)
    c = start(data, systmp)
    try:
        assert run_dirs(data) == {run_dir_of(c, data)}
    finally:
        assert c.stop() == 0
    assert run_dirs(data) == set() and list(systmp.iterdir()) == []


def test_a_data_directory_too_deep_for_a_socket_path_falls_back_and_is_cleaned(tmp_path: Path,
                                                                               systmp: Path) -> None:
    # DATA/run/<pid>-xxxxxxxx/writer.sock must not fit in a Unix socket address
    data = tmp_path / ("d" * max(1, 100 - len(str(tmp_path.absolute()))))
    assert len(str(data.absolute())) + len("/run/4194304-xxxxxxxx/writer.sock") > MAX_SOCKET_PATH
    scangate.init_data_dir(data).close()
    victim = tmp_path / "victim"                              # a record pointing elsewhere is not followed
    victim.mkdir()
    (victim / "precious").write_text("x")
    decoy = systmp / "scangate-sock-decoy"                    # a link named like ours, not a directory
    decoy.symlink_to(victim)
    for name, target in (("2-forged", victim), ("3-forged", decoy)):
        (data / "run" / name).mkdir(parents=True)
        (data / "run" / name / "socket-dir").write_text(str(target))

    a = start(data, systmp)
    try:
        sock = writer_socket(a)
        assert sock.parent.parent == systmp and sock.parent.name.startswith("scangate-sock-")
        assert len(os.fsencode(sock)) <= MAX_SOCKET_PATH
        assert (sock.parent.stat().st_mode & 0o777, sock.stat().st_mode & 0o777) == (0o700, 0o600)
        a_dir = run_dir_of(a, data)
        assert (data / "run" / a_dir / "socket-dir").read_text() == str(sock.parent)
        assert run_dirs(data) == {a_dir}                      # the forged ones are gone, and only they
        assert (victim / "precious").exists() and decoy.is_symlink()
    finally:
        kill9_tree(a)
    assert sock.parent.exists()                               # what a kill -9 leaves

    b = start(data, systmp)
    try:
        assert not sock.parent.exists()
        assert run_dirs(data) == {run_dir_of(b, data)}
        b_sock = writer_socket(b)
        assert b_sock.parent.parent == systmp
    finally:
        assert b.stop() == 0
    assert run_dirs(data) == set()
    assert list(systmp.iterdir()) == [decoy]                  # nothing of ours
