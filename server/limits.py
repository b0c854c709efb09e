"""Rate limits: guessing limits that hold across worker processes.

A client guessing codes (trying texts until one authenticates, or asking which
codes are genuine) must get no more than the configured rate however it spreads
its calls: over fresh actor ids, over ``Scan``, ``VerifyCodes`` and ``Trace``, and
over the worker processes (SO_REUSEPORT hashes each connection to one worker).

The limits (``[limits]``, docs/server.md; 0 turns one off):

- per actor: scans per minute; scans of codes that are not genuine per hour;
- per client (its token's name, or without tokens its peer address, an IPv6 peer
  by its /64): requests per second (every call); codes checked per second across
  Scan, VerifyCodes and Trace (a call costs its number of codes); codes that are
  not genuine per hour across the same three calls (so a fresh actor id per scan
  no longer escapes the guessing limit). Tokens of role ``admin`` and ``line`` are
  exempt from the two code limits: a line token can issue genuine codes, so it
  has nothing to guess, and lines verify codes in bulk.

``LimitTable`` keeps every bucket of one server in one file in its run directory,
``DIR/run/<pid>-<random>/limits``, that the supervisor creates before it starts
the workers and every worker maps (``mmap``, shared; the kernel writes dirty pages
back now and then, nothing ever reads them from disk): the buckets are the
server's, not a process's, so N workers give one rate, not N times it. A bucket
is a GCRA cell (the token bucket kept as one "theoretical arrival time" per
limit; a bucket whose time has passed is full and carries no information). Two
set-associative hash tables hold them, one for actors (a slot: a key hash and two
times, 24 bytes) and one for clients (a key hash and three times); a key's
slot is found by a keyed 64-bit BLAKE2b of the key (the key is random per server
start, so nobody can aim keys at one set). **Eviction**: a key not in its set of
``WAYS`` slots takes an empty slot, or one whose buckets are all full again, or
else the slot whose buckets are closest to full (the least debt, relative to each
limit's period). A flood of fresh keys therefore pushes out nearly-full buckets
first; a depleted bucket goes only when every other slot of its set is deeper in
debt, which costs the flooder as much as the limit he wants to escape, in sets he
cannot choose.

Every call's checks run in one critical section (all or nothing: a refused call
takes no token), under an exclusive ``flock`` on the file plus a thread lock. The
kernel drops a process's ``flock`` when it dies, however it dies, so a worker
killed while it holds the lock never stalls the others (a lock in shared memory
would stay taken). The critical section is a few microseconds; a call takes the
lock once (and once more only when it answered codes that are not genuine), a
``ScanStream`` batch once for all its scans.

Failure limits are checked when a call comes in (each bucket must hold as many
tokens as the call has codes) and charged when its answers are known, so a client
gets at most burst + rate x time non-genuine answers, plus what it had in flight
at once. ``RateLimiter`` below is the earlier in-process limiter, kept as the
obviously-correct reference of one bucket.
"""

from __future__ import annotations

import fcntl
import functools
import hashlib
import ipaddress
import mmap
import os
import secrets
import struct
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from scangate.config import LimitsConfig
from scangate.errors import CorruptionError
from scangate.trace import quote

__all__ = ["LimitTable", "Refusal", "RateLimiter", "client_of_peer", "limits_path", "EXEMPT_ROLES",
           "LIMITS_FILE_NAME"]

LIMITS_FILE_NAME = "limits"
# Roles the code limits do not apply to (docs/server.md): a line may issue codes,
# an admin may do anything; neither gains from guessing.
EXEMPT_ROLES = frozenset({"admin", "line"})
WAYS = 8                       # slots per set: one struct read finds a key or its victim
ACTOR_SETS = 1 << 15           # 262,144 actor slots, 6 MiB
CLIENT_SETS = 1 << 11          # 16,384 client slots, 512 KiB
_MAGIC = b"SGLIMIT1"
_HEADER = struct.Struct("<8sII16s")       # magic, actor sets, client sets, hash key
_HEADER_SIZE = 4096                        # the regions start on a page
_EPS = 1e-6                                # seconds: float sums of intervals stay exact to this

# columns of each region, in slot order
_ACTOR_SCANS, _ACTOR_FAILURES = 0, 1
_CLIENT_REQUESTS, _CLIENT_CODES, _CLIENT_FAILURES = 0, 1, 2


@dataclass(frozen=True)
class Refusal:
    """Why a call was refused: ``limit`` is the metric label, ``message`` quotes
    at most a short prefix of the actor or client."""

    limit: str
    message: str


@functools.lru_cache(maxsize=4096)          # one entry per connection: peers repeat on every call
def client_of_peer(peer: str) -> str:
    """The client key of a gRPC peer (``ipv4:1.2.3.4:5678``, ``ipv6:[::1]:5678``)
    without a token: its address without the port; an IPv6 address by its /64, the
    block one subscriber gets, so rotating addresses inside it does not make a new
    client."""
    kind, _, rest = peer.partition(":")
    if kind == "ipv6" and rest.startswith("["):
        try:
            addr = ipaddress.IPv6Address(rest[1 : rest.find("]")].split("%", 1)[0])
        except ValueError:
            return peer.rsplit(":", 1)[0]
        if addr.ipv4_mapped is not None:        # an IPv4 client of a dual-stack listener
            return f"ipv4:{addr.ipv4_mapped}"
        if addr.is_loopback:
            return f"ipv6:{addr}"
        return f"ipv6:{ipaddress.IPv6Network((addr, 64), strict=False)}"
    return peer.rsplit(":", 1)[0] if kind == "ipv4" else peer


class _Region:
    """One set-associative table. A set is ``WAYS`` key hashes (u64; 0: empty),
    then each slot's GCRA times (one f64 per limit): finding a key reads 64 bytes,
    its times only when it is there."""

    def __init__(self, mm: mmap.mmap, offset: int, sets: int, rates: Sequence[tuple[int, float]]):
        self.mm, self.offset, self.sets = mm, offset, sets
        self.k = len(rates)
        self.hashes = struct.Struct(f"<{WAYS}Q")
        self.one_hash = struct.Struct("<Q")
        self.times = struct.Struct(f"<{self.k}d")
        self.all_times = struct.Struct(f"<{WAYS * self.k}d")
        self.set_bytes = self.hashes.size + self.all_times.size
        # GCRA: a limit of ``rate`` per ``period_s`` lets one event through every
        # ``interval`` seconds, with a burst of ``rate`` (tolerance = the period)
        self.interval = [period / rate if rate else 0.0 for rate, period in rates]
        self.tau = [float(period) for _rate, period in rates]
        self.enabled = [rate > 0 for rate, _period in rates]

    @property
    def size(self) -> int:
        return self.sets * self.set_bytes

    def find(self, h: int) -> tuple[int, int, list[float], tuple[int, ...]]:
        """Where ``h`` is: its set's offset, its slot in the set (-1: absent), its
        times (absent: 0.0, every bucket full) and the set's hashes as read."""
        base = self.offset + (h % self.sets) * self.set_bytes
        hashes = self.hashes.unpack_from(self.mm, base)
        if h not in hashes:
            return base, -1, [0.0] * self.k, hashes
        j = hashes.index(h)
        return base, j, list(self.times.unpack_from(self.mm, base + self.hashes.size + j * self.times.size)), hashes

    def put(self, base: int, h: int, j: int, times: list[float], now: float, hashes: tuple[int, ...]) -> None:
        """Write ``times`` for ``h`` where ``find`` found it (``j``), or into a
        free slot or the victim of its set (module docstring, Eviction). The set
        must not have been written since ``find`` read ``hashes``."""
        if j < 0:
            j = hashes.index(0) if 0 in hashes else self._victim(base, now)
            self.one_hash.pack_into(self.mm, base + j * 8, h)
        self.times.pack_into(self.mm, base + self.hashes.size + j * self.times.size, *times)

    def write(self, h: int, times: list[float], now: float) -> None:
        """Write ``times`` for ``h``, finding its slot again (the call wrote other
        keys of this region since it read them)."""
        base, j, _, hashes = self.find(h)
        self.put(base, h, j, times, now, hashes)

    def _victim(self, base: int, now: float) -> int:
        """The slot whose buckets are closest to full: debt, relative to each
        limit's period, the least; a slot whose buckets are all full at once."""
        values = self.all_times.unpack_from(self.mm, base + self.hashes.size)
        best, best_debt, k = 0, float("inf"), self.k
        for i in range(WAYS):
            debt = -float("inf")
            for c in range(k):
                d = (values[i * k + c] - now) / self.tau[c]
                if d > debt:
                    debt = d
            if debt <= 0.0:          # every bucket full again: nothing to keep
                return i
            if debt < best_debt:
                best, best_debt = i, debt
        return best

    # GCRA on one time ``t`` of column ``c``, at ``now``
    def take(self, t: float, c: int, cost: float, now: float) -> float | None:
        """The new time if ``cost`` tokens are there, else None."""
        new = max(t, now) + cost * self.interval[c]
        return new if new - now <= self.tau[c] + _EPS else None

    def holds(self, t: float, c: int, tokens: float, now: float) -> bool:
        """Whether the bucket holds ``tokens`` now (without taking them)."""
        return max(t, now) - now + tokens * self.interval[c] <= self.tau[c] + _EPS

    def tokens(self, t: float, c: int, now: float) -> float:
        return (self.tau[c] - (max(t, now) - now)) / self.interval[c]

    def charge(self, t: float, c: int, cost: float, now: float) -> float:
        """Take ``cost`` tokens unconditionally (events that happened); the debt
        stops at one period below empty, so a bucket refills within two periods."""
        return min(max(t, now) + cost * self.interval[c], now + 2.0 * self.tau[c])


class LimitTable:
    """Every rate limit of one server, shared by its worker processes (module
    docstring). ``create`` makes the file (the supervisor), ``open`` maps it (each
    worker), ``private`` keeps one in this process only (tests, library use)."""

    def __init__(self, limits: LimitsConfig, mm: mmap.mmap, fd: int | None, *,
                 clock: Callable[[], float] = time.monotonic):
        self.config = limits
        self._mm, self._fd, self._clock = mm, fd, clock
        magic, actor_sets, client_sets, key = _HEADER.unpack_from(mm, 0)
        if magic != _MAGIC or len(mm) != _file_size(actor_sets, client_sets):
            raise CorruptionError("limits table: not a scangate limits file (or another version of one)")
        # keyed once: a copy of this state costs less than keying each hash
        self._hasher = hashlib.blake2b(digest_size=8, key=key)
        self._actors = _Region(mm, _HEADER_SIZE, actor_sets, [
            (limits.actor_scans_per_minute, 60.0), (limits.actor_failures_per_hour, 3600.0)])
        self._clients = _Region(mm, _HEADER_SIZE + self._actors.size, client_sets, [
            (limits.client_requests_per_second, 1.0), (limits.client_codes_per_second, 1.0),
            (limits.client_failures_per_hour, 3600.0)])
        self._lock = _TableLock(fd)
        self._client_hashes: dict[str, int] = {}
        a, c = self._actors.enabled, self._clients.enabled
        self.requests_enabled = c[_CLIENT_REQUESTS]
        self._actor_checks = a[_ACTOR_SCANS] or a[_ACTOR_FAILURES]
        self.client_checks = c[_CLIENT_CODES] or c[_CLIENT_FAILURES]

    # ------------------------------------------------------------------ making one
    @staticmethod
    def create(path: str | os.PathLike[str], *, actor_sets: int = ACTOR_SETS, client_sets: int = CLIENT_SETS) -> None:
        """Make the file (0600; it must not exist) with a fresh hash key: every
        bucket full. The supervisor does this before it starts a worker."""
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        try:
            # sparse: pages cost memory only once a key lands in them
            os.ftruncate(fd, _file_size(actor_sets, client_sets))
            os.pwrite(fd, _HEADER.pack(_MAGIC, actor_sets, client_sets, secrets.token_bytes(16)), 0)
        finally:
            os.close(fd)

    @classmethod
    def open(cls, path: str | os.PathLike[str], limits: LimitsConfig, *,
             clock: Callable[[], float] = time.monotonic) -> LimitTable:
        """Map the file ``create`` made (each worker, once)."""
        fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
        try:
            return cls(limits, mmap.mmap(fd, os.fstat(fd).st_size), fd, clock=clock)
        except BaseException:
            os.close(fd)
            raise

    @classmethod
    def private(cls, limits: LimitsConfig, *, actor_sets: int = ACTOR_SETS, client_sets: int = CLIENT_SETS,
                clock: Callable[[], float] = time.monotonic) -> LimitTable:
        """A table in anonymous memory of this process alone."""
        mm = mmap.mmap(-1, _file_size(actor_sets, client_sets))
        _HEADER.pack_into(mm, 0, _MAGIC, actor_sets, client_sets, secrets.token_bytes(16))
        return cls(limits, mm, None, clock=clock)

    def close(self) -> None:
        self._mm.close()
        if self._fd is not None:
            os.close(self._fd)
            self._fd = self._lock.fd = None

    # ------------------------------------------------------------------ the lock
    def locked(self) -> _TableLock:
        """``with table.locked():`` the table to this thread alone."""
        return self._lock

    # ------------------------------------------------------------------ keys
    def _hash(self, tag: bytes, key: str) -> int:
        state = self._hasher.copy()
        state.update(tag + key.encode("utf-8", "surrogatepass"))
        return int.from_bytes(state.digest(), "little") or 1          # 0 marks an empty slot

    def _client_hash(self, client: str) -> int:
        h = self._client_hashes.get(client)
        if h is None:
            if len(self._client_hashes) >= 4096:         # a few clients call all the time; peers may be many
                self._client_hashes.clear()
            h = self._client_hashes[client] = self._hash(b"c\0", client)
        return h

    # ------------------------------------------------------------------ the checks
    def allow_request(self, client: str) -> Refusal | None:
        """One request of ``client`` (``client_requests_per_second``)."""
        if not self.requests_enabled:
            return None
        h = self._client_hash(client)
        r = self._clients
        with self._lock:
            now = self._clock()
            base, j, times, hashes = r.find(h)
            new = r.take(times[_CLIENT_REQUESTS], _CLIENT_REQUESTS, 1.0, now)
            if new is None:
                return Refusal("client", f"client {quote(client)}: request rate limit "
                                         f"({self.config.client_requests_per_second} per second); try later")
            times[_CLIENT_REQUESTS] = new
            r.put(base, h, j, times, now, hashes)
        return None

    def admit(self, client: str | None, actors: Sequence[str], codes: int) -> Refusal | None:
        """A call that checks ``codes`` codes, scanned by ``actors`` (one per scan;
        none for VerifyCodes and Trace), from ``client`` (None: exempt from the code
        limits). All or nothing: a refused call takes no token."""
        check_actors = self._actor_checks and len(actors) > 0
        check_client = self.client_checks and client is not None
        if not (check_actors or check_client):
            return None
        ar, cr, cfg = self._actors, self._clients, self.config
        if len(actors) == 1 or not check_actors:
            per_actor = [(actors[0], 1)] if check_actors else []
        else:
            counts: dict[str, int] = {}
            for a in actors:
                counts[a] = counts.get(a, 0) + 1
            per_actor = list(counts.items())
        hashed = [(self._hash(b"a\0", a), a, n) for a, n in per_actor]      # outside the lock
        hc = self._client_hash(client) if check_client and client is not None else 0
        if check_client and cr.enabled[_CLIENT_CODES] and codes > cfg.client_codes_per_second:
            return Refusal("client_codes", f"client {quote(client or '')}: {codes} codes in one call exceed the "
                                           f"code-check limit of {cfg.client_codes_per_second} per second; "
                                           "send fewer per call")
        actor_writes: list[tuple[int, int, int, list[float], tuple[int, ...]]] = []
        with self._lock:
            now = self._clock()
            for h, actor, n in hashed:
                base, j, times, hashes = ar.find(h)
                if ar.enabled[_ACTOR_FAILURES] and not ar.holds(times[_ACTOR_FAILURES], _ACTOR_FAILURES, n, now):
                    return Refusal("actor_failures", f"actor {quote(actor)}: too many scans of codes that are not "
                                                     f"genuine ({cfg.actor_failures_per_hour} per hour); try later")
                if ar.enabled[_ACTOR_SCANS]:
                    new = ar.take(times[_ACTOR_SCANS], _ACTOR_SCANS, n, now)
                    if new is None:
                        return Refusal("actor_scans", f"actor {quote(actor)}: scan rate limit "
                                                      f"({cfg.actor_scans_per_minute} per minute); try later")
                    times[_ACTOR_SCANS] = new
                    actor_writes.append((base, h, j, times, hashes))
            if check_client:
                base, j, times, hashes = cr.find(hc)
                if cr.enabled[_CLIENT_FAILURES] and not cr.holds(times[_CLIENT_FAILURES], _CLIENT_FAILURES, codes,
                                                                 now):
                    return Refusal("client_failures", f"client {quote(client or '')}: too many codes that are not "
                                                      f"genuine ({cfg.client_failures_per_hour} per hour); "
                                                      "try later")
                if cr.enabled[_CLIENT_CODES]:
                    new = cr.take(times[_CLIENT_CODES], _CLIENT_CODES, codes, now)
                    if new is None:
                        return Refusal("client_codes", f"client {quote(client or '')}: code-check rate limit "
                                                       f"({cfg.client_codes_per_second} codes per second across "
                                                       "Scan, VerifyCodes and Trace); try later")
                    times[_CLIENT_CODES] = new
                    cr.put(base, hc, j, times, now, hashes)
            written: set[int] = set()
            for base, h, j, times, hashes in actor_writes:
                if base in written:              # a batch's keys may share a set: find this one again
                    ar.write(h, times, now)
                else:
                    ar.put(base, h, j, times, now, hashes)
                    written.add(base)
        return None

    def charge_failures(self, client: str | None, actors: Iterable[str], codes: int) -> None:
        """``codes`` answers that were not genuine: one per actor listed (scans)
        and all of them to ``client`` (None: exempt)."""
        ar, cr = self._actors, self._clients
        counts: dict[str, int] = {}
        if ar.enabled[_ACTOR_FAILURES]:
            for a in actors:
                counts[a] = counts.get(a, 0) + 1
        hashed = [(self._hash(b"a\0", a), n) for a, n in counts.items()]
        charge_client = client is not None and codes > 0 and cr.enabled[_CLIENT_FAILURES]
        if not hashed and not charge_client:
            return
        hc = self._client_hash(client) if charge_client and client is not None else 0
        with self._lock:
            now = self._clock()
            for h, n in hashed:
                base, j, times, hashes = ar.find(h)
                times[_ACTOR_FAILURES] = ar.charge(times[_ACTOR_FAILURES], _ACTOR_FAILURES, n, now)
                ar.put(base, h, j, times, now, hashes)
            if charge_client:
                base, j, times, hashes = cr.find(hc)
                times[_CLIENT_FAILURES] = cr.charge(times[_CLIENT_FAILURES], _CLIENT_FAILURES, codes, now)
                cr.put(base, hc, j, times, now, hashes)

    # ------------------------------------------------------------------ inspection (tests, operators)
    def tokens(self, kind: str, key: str) -> float:
        """Tokens left now in bucket ``kind`` (``actor_scans``, ``actor_failures``,
        ``client_requests``, ``client_codes``, ``client_failures``) of ``key``;
        a bucket that is off or was evicted reads full."""
        region, column, tag = {
            "actor_scans": (self._actors, _ACTOR_SCANS, b"a\0"),
            "actor_failures": (self._actors, _ACTOR_FAILURES, b"a\0"),
            "client_requests": (self._clients, _CLIENT_REQUESTS, b"c\0"),
            "client_codes": (self._clients, _CLIENT_CODES, b"c\0"),
            "client_failures": (self._clients, _CLIENT_FAILURES, b"c\0")}[kind]
        if not region.enabled[column]:
            return float("inf")
        with self._lock:
            now = self._clock()
            times = region.find(self._hash(tag, key))[2]
            return region.tokens(times[column], column, now)


class _TableLock:
    """An exclusive ``flock`` on the table's file (one per open file, so one per
    process: each worker opens the file itself; the kernel drops it when the
    process dies), and a thread lock, since the threads of a process share its
    open file. A class, not a generator: this is entered on every limited call."""

    __slots__ = ("fd", "thread_lock")

    def __init__(self, fd: int | None):
        self.fd, self.thread_lock = fd, threading.Lock()

    def __enter__(self) -> None:
        self.thread_lock.acquire()
        if self.fd is not None:
            try:
                fcntl.flock(self.fd, fcntl.LOCK_EX)
            except BaseException:
                self.thread_lock.release()
                raise

    def __exit__(self, *exc: object) -> None:
        try:
            if self.fd is not None:
                fcntl.flock(self.fd, fcntl.LOCK_UN)
        finally:
            self.thread_lock.release()


def _file_size(actor_sets: int, client_sets: int) -> int:
    return _HEADER_SIZE + actor_sets * WAYS * 24 + client_sets * WAYS * 32


def limits_path(run_dir: str | os.PathLike[str]) -> Path:
    return Path(run_dir) / LIMITS_FILE_NAME


class RateLimiter:
    """At most ``rate`` events per ``per_s`` seconds per key, with a burst of
    ``rate``, in this process only; the least recently seen keys are forgotten
    past ``max_keys``. The reference a bucket of ``LimitTable`` is tested against."""

    def __init__(self, rate: int, per_s: float, *, max_keys: int = 100_000,
                 clock: Callable[[], float] = time.monotonic):
        self.rate, self.per_s = rate, per_s
        self._fill = rate / per_s if rate else 0.0
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()
        self._max_keys, self._clock = max_keys, clock

    @property
    def enabled(self) -> bool:
        return self.rate > 0

    def _level(self, key: str, now: float) -> float:
        tokens, at = self._buckets.get(key, (float(self.rate), now))
        return min(float(self.rate), tokens + (now - at) * self._fill)

    def allow(self, key: str, cost: float = 1.0) -> bool:
        """Take ``cost`` tokens if there are enough."""
        if not self.enabled:
            return True
        now = self._clock()
        tokens = self._level(key, now)
        if tokens < cost:
            return False
        self._put(key, tokens - cost, now)
        return True

    def blocked(self, key: str) -> bool:
        """True if ``key`` has no token left (without taking one)."""
        return self.enabled and self._level(key, self._clock()) < 1.0

    def charge(self, key: str, cost: float = 1.0) -> None:
        """Take tokens unconditionally (an event that already happened)."""
        if self.enabled:
            now = self._clock()
            self._put(key, max(self._level(key, now) - cost, -float(self.rate)), now)

    def _put(self, key: str, tokens: float, now: float) -> None:
        self._buckets[key] = (tokens, now)
        self._buckets.move_to_end(key)
        if len(self._buckets) > self._max_keys:
            self._buckets.popitem(last=False)
