"""The clock decisions read, and the window a client's scan time must fall in.

A decision's time is the server's: a scan is stamped with the clock of the
process that decides it. A client may still say when a scan happened (an app
that queued scans while offline), but only inside ``ScanTimePolicy``'s window:
at most ``late_ms`` before now and ``ahead_ms`` after it (a phone's clock may
run a little fast; such a time counts as now). Campaign windows, local days
(daily caps) and time slots (odds) all use that one decided time, and so does
the draw, so a client cannot choose a day, a slot or a draw input outside the
window (docs/campaigns.md, "Time").

Every process reads one clock, ``now_ms()``: the system clock, unless
``SCANGATE_CLOCK`` names a start time (RFC 3339), when the clock starts there
and runs at real speed (``SCANGATE_CLOCK_ANCHOR_MS``, the system time it started
at, is passed on to child processes so they all agree). That is for tests, benchmarks and rehearsals of a
campaign before its dates; a server started with it says so in its log. Code
and tests can also install a clock of their own (``use``), such as a
``ManualClock`` that moves only when told.
"""

from __future__ import annotations

import datetime as dt
import os
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass

from .errors import InvalidArgument

__all__ = ["Clock", "ManualClock", "ScanTimePolicy", "clock_from_env", "now_ms", "system_ms", "use",
           "CLOCK_ENV", "ANCHOR_ENV"]

Clock = Callable[[], int]
"""Epoch milliseconds (UTC) now."""

CLOCK_ENV = "SCANGATE_CLOCK"
ANCHOR_ENV = "SCANGATE_CLOCK_ANCHOR_MS"


def system_ms() -> int:
    return time.time_ns() // 1_000_000


class ManualClock:
    """A clock that moves only when told: ``set`` and ``advance``."""

    def __init__(self, start_ms: int):
        self.ms = int(start_ms)

    def __call__(self) -> int:
        return self.ms

    def set(self, ms: int) -> None:
        self.ms = int(ms)

    def advance(self, ms: int) -> None:
        self.ms += int(ms)


class _Shifted:
    """The system clock shifted so that it read ``start_ms`` at system time
    ``anchor_ms``: it runs at real speed, and every process given the same two
    numbers reads the same time (a server's writer and workers, a restarted
    writer, a CLI beside them)."""

    def __init__(self, start_ms: int, anchor_ms: int):
        self.start_ms, self.anchor_ms = start_ms, anchor_ms

    def __call__(self) -> int:
        return self.start_ms + system_ms() - self.anchor_ms

    def __repr__(self) -> str:
        return f"clock started at {dt.datetime.fromtimestamp(self.start_ms / 1000, dt.UTC).isoformat()}"


def parse_start(text: str, where: str = CLOCK_ENV) -> int:
    """An RFC 3339 time with a zone (``2026-06-01T08:00:00+08:00``) as epoch ms."""
    try:
        stamp = dt.datetime.fromisoformat(text.strip().replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise InvalidArgument(f"{where}: {text[:40]!r} is not an RFC 3339 time such as 2026-06-01T00:00:00Z") \
            from None
    if stamp.tzinfo is None:
        raise InvalidArgument(f"{where}: {text[:40]!r} has no time zone (add Z or +08:00)")
    return int(stamp.timestamp() * 1000)


def clock_from_env(env: Mapping[str, str] | None = None) -> Clock:
    """The system clock, or one that read ``SCANGATE_CLOCK`` at system time
    ``SCANGATE_CLOCK_ANCHOR_MS``. Reading ``os.environ`` without an anchor sets
    one (now), so that the processes this one starts share its clock."""
    environ = os.environ if env is None else env
    value = environ.get(CLOCK_ENV, "")
    if not value:
        return system_ms
    start = parse_start(value)
    anchor_text = environ.get(ANCHOR_ENV, "")
    if anchor_text:
        try:
            anchor = int(anchor_text)
        except ValueError:
            raise InvalidArgument(f"{ANCHOR_ENV}: {anchor_text[:40]!r} is not epoch milliseconds") from None
    else:
        anchor = system_ms()
        if env is None:
            os.environ[ANCHOR_ENV] = str(anchor)
    return _Shifted(start, anchor)


_current: Clock = clock_from_env()


def now_ms() -> int:
    """Epoch milliseconds on this process's clock."""
    return _current()


def current() -> Clock:
    return _current


def install(clock: Clock) -> Clock:
    """Make ``clock`` this process's clock; returns the one it replaces."""
    global _current
    old, _current = _current, clock
    return old


@contextmanager
def use(clock: Clock) -> Iterator[Clock]:
    """``with use(ManualClock(t)) as c:``: the process's clock for the block."""
    old = install(clock)
    try:
        yield clock
    finally:
        install(old)


@dataclass(frozen=True)
class ScanTimePolicy:
    """How far a client's scan time may be from the deciding clock. ``None``
    for either bound trusts the caller that way (the library's default: its
    caller is the operator's own code, such as an import of offline scans; the
    server always passes its configured window)."""

    late_ms: int | None = None
    ahead_ms: int | None = None

    def __post_init__(self) -> None:
        for name in ("late_ms", "ahead_ms"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise InvalidArgument(f"{name}: must be 0 or more, not {value}")

    def problem(self, time_ms: int, now: int) -> str | None:
        """Why a client's ``time_ms`` is refused at ``now``, or None."""
        if self.late_ms is not None and time_ms < now - self.late_ms:
            return (f"{time_ms} is {_span(now - time_ms)} before the server's clock; a scan's time may be at most "
                    f"{_span(self.late_ms)} in the past (send 0 for now)")
        if self.ahead_ms is not None and time_ms > now + self.ahead_ms:
            return (f"{time_ms} is {_span(time_ms - now)} after the server's clock; at most "
                    f"{_span(self.ahead_ms)} ahead is accepted (send 0 for now)")
        return None

    def decided(self, time_ms: int | None, now: int) -> int:
        """The time a decision uses: now, or the client's time (one ahead of now
        counts as now, unless ``ahead_ms`` is None). Call after ``problem``."""
        if time_ms is None:
            return now
        return now if time_ms > now and self.ahead_ms is not None else time_ms


def _span(ms: int) -> str:
    s = ms / 1000
    if s < 120:
        return f"{s:g} s"
    if s < 7200:
        return f"{s / 60:.1f} min"
    if s < 172800:
        return f"{s / 3600:.1f} h"
    return f"{s / 86400:.1f} days"
