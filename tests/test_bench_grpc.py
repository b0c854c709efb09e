"""bench/grpc.py finds what it measures in a real ``scangate serve``: the writer
process (its CPU per decision is a figure of its own) and the workers, by the
sockets each process of the server's group holds."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

import scangate
from bench import grpc as grpc_bench

pytestmark = pytest.mark.skipif(not os.path.isdir("/proc/net"), reason="reads /proc")


def test_the_writer_is_the_one_process_on_the_writer_socket(tmp_path: Path) -> None:
    scangate.init_data_dir(tmp_path / "d").close()
    server = grpc_bench.start_scangate(tmp_path / "d", 2)
    try:
        group = server.proc.pid
        pid = grpc_bench.writer_pid(group)
        assert pid is not None and pid != group              # not the supervisor
        processes = grpc_bench._group_sockets(group)
        assert pid in processes     # beside the supervisor, two workers, multiprocessing's resource tracker
        port = int(server.target.rsplit(":", 1)[1])
        listening, _established = grpc_bench._tcp_sockets(port)
        workers = {p for p, inodes in processes.items() if inodes & listening}
        assert len(workers) == 2 and pid not in workers       # the writer serves no gRPC
        with scangate.Client(server.target) as c:             # and the bench reads its CPU time
            before = grpc_bench._cpu_seconds([pid])
            c.issue_codes("BEER", "item", 10)
            assert before is not None and grpc_bench._cpu_seconds([pid]) is not None
    finally:
        server.stop()
    assert grpc_bench.writer_pid(group) is None               # gone with its server
