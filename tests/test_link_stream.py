"""A link upload streams: read, checked and written a chunk at a time into one
transaction of the trace environment, all of the file or none of it, while
decisions commit beside it (scangate.ingest.link_csv, scangate.state.store)."""
from __future__ import annotations

import contextlib
import io
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import numpy as np
import pytest

import scangate
from scangate import ingest, rewards
from scangate.errors import BatchRejected
from scangate.rewards import ScanRequest
from scangate.state import raw as state_raw
from scangate.trace import TraceStore

TRACE_DBS = ("links", "children", "dealers", "shipped", "ship_log")
SMALL = 300     # bytes per chunk: a few rows each, so every file here spans many chunks


class Counting:
    """A binary file that records the size of each read it answers."""

    def __init__(self, content: bytes):
        self._io = io.BytesIO(content)
        self.reads: list[int] = []

    def read(self, size: int = -1, /) -> bytes:
        self.reads.append(size)
        return self._io.read(size)


def packing(dd: scangate.DataDir, cases: int, per_case: int = 6) -> tuple[list[str], list[str]]:
    """(case codes, item codes) issued for ``cases`` cases of ``per_case`` items."""
    return (dd.issue_codes("SKU", "case", cases).as_strings(),
            dd.issue_codes("SKU", "item", cases * per_case).as_strings())


def rows_of(case_codes: list[str], items: list[str], per_case: int = 6) -> list[str]:
    return [f"{case_codes[i // per_case]},{item}" for i, item in enumerate(items)]


def test_a_file_in_many_chunks_links_exactly_what_one_chunk_does(tmp_path: Path) -> None:
    """A byte order mark, a header, CRLF and blank lines, cases split between
    chunks: the stored trace is byte for byte that of the file read whole, and no
    read asks for more than a chunk."""
    made = []
    for name, chunk in (("whole", 1 << 30), ("chunked", SMALL)):
        dd = scangate.open_data_dir(tmp_path / name, create=True)
        cases, items = packing(dd, 12)
        lines = rows_of(cases, items)
        lines[7:7] = ["", ""]
        content = b"\xef\xbb\xbf" + ("parent,child\r\n" + "\r\n".join(lines) + "\r\n").encode()
        reader = Counting(content)
        report = ingest.link_csv(dd, reader, "f.csv", chunk_bytes=chunk)
        assert (report.rows, report.added, report.removed, report.parents) == (72, 72, 0, 12)
        assert max(reader.reads) == chunk and (name == "whole" or len(reader.reads) > 10)
        made.append(state_raw.dump(dd, TRACE_DBS))
        kids = TraceStore(dd.store).children_of(dd.verify_code(cases[5]).serial)
        assert sorted(kids.tolist()) == [dd.verify_code(c).serial for c in items[30:36]]
        dd.close()
    assert made[0] == made[1]
    assert [list((tmp_path / name / "lmdb" / "trace" / "uploads").iterdir()) for name in ("whole", "chunked")] == [[], []]


def test_a_child_put_into_another_parent_chunks_later_is_named_and_nothing_is_written(
        data_dir: scangate.DataDir) -> None:
    cases, items = packing(data_dir, 10)
    lines = rows_of(cases, items)
    lines.append(f"{cases[9]},{items[2]}")             # line 61: items[2] went into cases[0] on line 3
    lines.append(f"{cases[0]},{items[3]}")             # the same parent again: fine, once
    before = state_raw.dump(data_dir, TRACE_DBS)
    with pytest.raises(BatchRejected) as info:
        ingest.link_csv(data_dir, ("\n".join(lines) + "\n").encode(), "f.csv", chunk_bytes=SMALL)
    assert [(p.where, p.field, p.message) for p in info.value.problems] == [
        ("f.csv:61", "child", "child already put into another parent on line 3")]
    assert state_raw.dump(data_dir, TRACE_DBS) == before
    # without the conflicting row the same file applies, the repeated row once
    del lines[60]
    report = ingest.link_csv(data_dir, ("\n".join(lines) + "\n").encode(), "f.csv", chunk_bytes=SMALL)
    assert (report.rows, report.added, report.parents) == (61, 60, 10)


def test_a_bad_row_in_the_last_chunk_undoes_every_chunk_before_it(data_dir: scangate.DataDir) -> None:
    cases, items = packing(data_dir, 20)
    lines = rows_of(cases, items)
    lines[-1] = f"{items[0]},{cases[1]}"                # a case into an item, on the last line
    before = state_raw.dump(data_dir, TRACE_DBS)
    progress: list[tuple[str, int]] = []
    with pytest.raises(BatchRejected) as info:
        ingest.link_csv(data_dir, ("\n".join(lines) + "\n").encode(), "f.csv",
                        progress=lambda stage, rows: progress.append((stage, rows)), chunk_bytes=SMALL)
    assert [(p.where, p.field) for p in info.value.problems] == [(f"f.csv:{len(lines)}", "child")]
    assert sum(stage == "apply" for stage, _rows in progress) > 10        # earlier chunks were written...
    assert state_raw.dump(data_dir, TRACE_DBS) == before                 # ...and none of it committed
    assert list((data_dir.root / "lmdb" / "trace" / "uploads").iterdir()) == []    # nor its scratch kept


def test_a_killed_uploads_scratch_is_deleted_by_the_next_upload(data_dir: scangate.DataDir) -> None:
    uploads = data_dir.root / "lmdb" / "trace" / "uploads"
    cases, items = packing(data_dir, 1)
    ingest.link_csv(data_dir, ("\n".join(rows_of(cases, items)) + "\n").encode(), "f.csv")
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                          check=True).stdout.strip()
    (uploads / f"{dead}-x1").mkdir()                              # as a killed upload leaves it
    (uploads / f"{dead}-x1" / "data.mdb").write_bytes(b"\0" * 4096)
    (uploads / f"{os.getpid()}-mine").mkdir()                     # a live process's: another upload's, kept
    ingest.link_csv(data_dir, ("\n".join(rows_of(cases, items)) + "\n").encode(), "f.csv")
    assert sorted(p.name for p in uploads.iterdir()) == [f"{os.getpid()}-mine"]


def test_an_overlong_line_is_refused_by_its_number_without_being_held(data_dir: scangate.DataDir) -> None:
    cases, items = packing(data_dir, 2)
    lines = rows_of(cases, items)
    lines[3] = "x" * (ingest.MAX_LINK_LINE * 5)                    # line 4: longer than any row can be
    lines[8] = f"{cases[0]},{items[8][:-1]}"                       # line 9: still named by its own number
    content = ("\n".join(lines) + "\n").encode()
    reader = Counting(content)
    with pytest.raises(BatchRejected) as info:
        ingest.link_csv(data_dir, reader, "f.csv", chunk_bytes=1024)
    assert [(p.where, p.field) for p in info.value.problems] == [("f.csv:4", "row"), ("f.csv:9", "child")]
    assert f"longer than {ingest.MAX_LINK_LINE} bytes" in info.value.problems[0].message
    assert state_raw.count(data_dir, "links") == 0
    # a file that is one endless line: refused once, read a chunk at a time
    with pytest.raises(BatchRejected) as info:
        ingest.link_csv(data_dir, b"y" * 100_000, "g.csv", chunk_bytes=1024)
    assert [(p.where, p.field) for p in info.value.problems] == [("g.csv:1", "row")]


LINKER = r"""
import sys
from pathlib import Path
import scangate
from scangate import ingest

class Fifo:
    def __init__(self, path):
        self.f = open(path, "rb")
    def read(self, size=-1):
        return self.f.read(size)

with scangate.open_data_dir(Path(sys.argv[1])) as dd:
    def progress(stage, rows):
        if stage == "apply":
            print(f"applying {rows}", flush=True)
    report = ingest.link_csv(dd, Fifo(sys.argv[2]), "fifo.csv", progress=progress, chunk_bytes=int(sys.argv[3]))
    print(f"linked {report.rows} {report.added}", flush=True)
"""


@contextlib.contextmanager
def upload_in_progress(tmp_path: Path, root: Path, first: bytes
                       ) -> Iterator[tuple[subprocess.Popen[str], BinaryIO]]:
    """A real ``link_csv`` process reading a FIFO, whose first chunk (``first``)
    it has written: its transaction is open. Yields the process and the FIFO's
    writing end, for the rest of the file."""
    fifo = tmp_path / "rows.fifo"
    os.mkfifo(fifo)
    with subprocess.Popen([sys.executable, "-c", LINKER, str(root), str(fifo), str(len(first))],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as proc:
        # read-write: opening does not wait for the reader (nor hang should it die first)
        with open(os.open(fifo, os.O_RDWR), "wb", buffering=0) as writer:
            writer.write(first)
            assert proc.stdout is not None and proc.stderr is not None
            line = proc.stdout.readline()
            assert line.startswith("applying"), proc.stderr.read()   # its write transaction is open
            yield proc, writer


def test_scans_commit_while_an_upload_holds_its_transaction_open(tmp_path: Path) -> None:
    """A real process uploads from a FIFO: after its first chunk is written its
    transaction stays open, waiting for the rest of the file. Meanwhile this
    process, which opened the data directory before (as a running server has),
    decides scans (each a durable write transaction of the main environment) and
    reads the trace as it was; once the upload commits, the next decision sees
    the new links."""
    root = tmp_path / "data"
    dd = scangate.open_data_dir(root, create=True)
    cases, items = packing(dd, 40)
    lines = [f"{line}\n".encode() for line in rows_of(cases, items)]
    first, rest = b"".join(lines[:120]), b"".join(lines[120:])
    with upload_in_progress(tmp_path, root, first) as (proc, writer):
        with dd:
            done = threading.Event()
            results: list[object] = []

            def scan() -> None:
                results.extend(rewards.decide_scans(dd, [
                    ScanRequest(f"during-{i}", items[i], f"u{i}", "consumer", region=440106) for i in range(3)]))
                done.set()

            started = time.monotonic()
            threading.Thread(target=scan, daemon=True).start()
            assert done.wait(30), "a decision waited for the upload"
            assert time.monotonic() - started < 10
            assert len(results) == 3 and all(isinstance(r, rewards.Decision) for r in results)
            assert TraceStore(dd.store).ancestors(np.array([dd.verify_code(items[0]).serial], np.uint64)
                                                  ).tolist() == [[0, 0]]     # not linked yet
            assert proc.poll() is None                                     # the upload still waits
            writer.write(rest)
        writer.close()      # the end of the file: the upload commits
        out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert out.splitlines()[-1] == f"linked {len(lines)} {len(lines)}"
    with scangate.open_data_dir(root) as dd:
        case = dd.verify_code(cases[0]).serial
        assert TraceStore(dd.store).ancestors(np.array([dd.verify_code(items[0]).serial], np.uint64)
                                              ).tolist() == [[case, 0]]
        # a retry of a scan decided during the upload gets its decision back, unchanged
        again = rewards.decide_scans(dd, [ScanRequest("during-0", items[0], "u0", "consumer", region=440106)])
        assert again[0] == results[0]


def test_kill_9_mid_upload_leaves_the_trace_as_it_was(tmp_path: Path) -> None:
    """kill -9 of an upload whose transaction has written chunks: nothing of it
    is in the trace, the next upload applies whole and deletes the killed one's
    scratch directory, and decisions went on meanwhile."""
    root = tmp_path / "data"
    dd = scangate.open_data_dir(root, create=True)
    cases, items = packing(dd, 40)
    before = state_raw.dump(dd, TRACE_DBS)
    lines = [f"{line}\n".encode() for line in rows_of(cases, items)]
    first = b"".join(lines[:120])
    uploads = root / "lmdb" / "trace" / "uploads"
    with upload_in_progress(tmp_path, root, first) as (proc, _writer):
        assert [p.name.partition("-")[0] for p in uploads.iterdir()] == [str(proc.pid)]
        proc.kill()
        proc.wait(30)
    with dd:
        assert state_raw.dump(dd, TRACE_DBS) == before
        (d,) = rewards.decide_scans(dd, [ScanRequest("after-kill", items[0], "u0", "consumer", region=440106)])
        assert isinstance(d, rewards.Decision)
        report = ingest.link_csv(dd, b"".join(lines), "again.csv", chunk_bytes=len(first))
        assert (report.rows, report.added) == (len(lines), len(lines))
        assert list(uploads.iterdir()) == []
