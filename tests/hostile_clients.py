"""A real `scangate serve` that a test can kill -9 whole, and what hostile clients
send it: out-of-range fields on a raw stub, bytes that are no protobuf at all."""
from __future__ import annotations

import json
import math
import os
import signal
import time
from pathlib import Path
from typing import Any

import grpc

from scangate.v1 import scan_pb2

from serverproc import ServerProcess, violations

# Rate limits off (0), so that they never decide what a test sees: the guessing
# and flooding here would otherwise hit them first.
NO_LIMITS = {"SCANGATE_LIMITS_ACTOR_SCANS_PER_MINUTE": "0", "SCANGATE_LIMITS_ACTOR_FAILURES_PER_HOUR": "0",
             "SCANGATE_LIMITS_CLIENT_REQUESTS_PER_SECOND": "0"}


def _group_members(pgid: int) -> list[int]:
    """The live (not zombie) processes of a process group, from /proc: orphans of a
    killed supervisor stay zombies until init reaps them, which a container's
    init may never do, so ``killpg(pgid, 0)`` cannot tell."""
    members = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue                     # gone meanwhile
        # pid (comm) state ppid pgrp ...: comm may hold spaces and parentheses
        fields = stat[stat.rindex(b")") + 2:].split()
        if int(fields[2]) == pgid and fields[0] != b"Z":
            members.append(int(entry.name))
    return members


class KillableServer(ServerProcess):
    """``scangate serve`` as the leader of its own process group (a session of its
    own), so that ``kill_all`` reaches the supervisor, the writer and every worker
    in one signal, as a machine losing power or the OOM killer taking the cgroup
    would; ``target`` is host:port once it serves."""

    def __init__(self, data: Path, *args: str, env: dict[str, str] | None = None, start_timeout: float = 120):
        super().__init__(data, *args, env=env, start_timeout=start_timeout, new_session=True)

    def abort(self) -> None:
        self.kill_all()

    def kill_all(self) -> None:
        """SIGKILL to the whole process group, then wait until the supervisor is
        reaped and no process of the group is left."""
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.stop(signal.SIGKILL, 60)
        deadline = time.monotonic() + 30
        while _group_members(self.proc.pid):
            if time.monotonic() > deadline:
                raise RuntimeError(f"process group {self.proc.pid} outlived SIGKILL: {_group_members(self.proc.pid)}")
            time.sleep(0.05)

    def writer_pids(self) -> list[int]:
        """The pids of the writer processes this server started, in order (the
        supervisor starts a new one when one dies)."""
        pids = []
        for line in list(self.stderr):
            if line.startswith("{") and '"writer serving"' in line:
                pids.append(int(json.loads(line)["pid"]))
        return pids

    def kill_writer(self, timeout: float = 90) -> None:
        """SIGKILL the writer alone, then wait until the supervisor has started
        the next one."""
        before = self.writer_pids()
        os.kill(before[-1], signal.SIGKILL)
        deadline = time.monotonic() + timeout
        while len(self.writer_pids()) == len(before):
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise RuntimeError(f"no new writer after kill -9 of {before[-1]}: {self.logs()[-3000:]}")
            time.sleep(0.05)


# ---------------------------------------------------------------------- what hostile clients send
# A scan field out of range, and the field its refusal must name. Each reaches the
# server only through a raw stub (the client library refuses some itself).
OUT_OF_RANGE: list[tuple[dict[str, Any], str]] = [
    ({"time_ms": 2**62}, "time_ms"),
    ({"time_ms": -1}, "time_ms"),
    # times that can be, far outside the window around the server's clock a client's
    # time must fall in (config [server] late_scan_s, clock_skew_s): refused by the writer
    ({"time_ms": 978_307_200_000}, "time_ms"),        # 2001-01-01
    ({"time_ms": 4_070_908_800_000}, "time_ms"),      # 2099-01-01
    ({"lat": math.nan, "lon": 104.06}, "lat"),
    ({"lat": 30.66, "lon": math.inf}, "lon"),
    ({"lat": 91.0, "lon": 104.06}, "lat"),
    ({"region": 999999}, "region"),
    ({"region": 2**32 - 1}, "region"),
    ({"actor": "mallory\x00root"}, "actor"),
    ({"actor": ""}, "actor"),
    ({"actor_type": 7}, "actor_type"),
    ({"request_id": ""}, "request_id"),
    ({"request_id": "\U0001F600" * 128}, "request_id"),
    ({"actor_tags": ["x" * 10_000]}, "actor_tags[0]"),
    ({"code": ""}, "code"),
]

# Bytes that are no ScanRequest: a length past the end, a string that is not
# UTF-8, field number 0, a varint that never ends.
MALFORMED: list[bytes] = [b"\x0a\x05ab", b"\x0a\x02\xff\xfe", b"\x00\x01", b"\xff" * 11, b"\x12\x80\x80\x80\x80\x10"]


def scan_message(fields: dict[str, Any]) -> scan_pb2.ScanRequest:
    """A ScanRequest with ``fields`` set as given, however out of range."""
    m = scan_pb2.ScanRequest()
    for key, value in fields.items():
        if key == "actor_tags":
            m.actor_tags.extend(value)
        else:
            setattr(m, key, value)
    return m


def raw_scan(channel: grpc.Channel) -> Any:
    """Scan with the request's bytes as given: no serialiser in the way."""
    return channel.unary_unary("/scangate.v1.ScanService/Scan")
