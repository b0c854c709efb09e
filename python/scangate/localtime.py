"""Local wall-clock parts of epoch milliseconds in one time zone, fast.

Reward decisions need, per scan, the campaign-local date (daily caps), the local
minute of the day (time-slot odds) and the Asia/Shanghai month (the points
leaderboard). ``datetime.fromtimestamp(ms / 1000, zone)`` gives them but costs a
few microseconds a call; ``LocalClock`` looks the UTC offset up once per UTC hour
and does the rest in integer arithmetic, with the same results:

    clock = LocalClock(ZoneInfo("Asia/Shanghai"))
    clock.day(ms)          # "2026-03-10", as dt.datetime(...).date().isoformat()
    clock.day_number(ms)   # that date as days since 1970-01-01; clock.iso_day(n) back
    clock.minute(ms)       # 0..1439, minutes since local midnight

An hour whose two ends have different offsets (a DST change inside it) is never
cached: each instant in it is converted exactly. Offsets only change at whole
seconds, and never twice within an hour, so a cached hour is exact.
"""

from __future__ import annotations

import datetime as dt
from datetime import tzinfo

__all__ = ["LocalClock"]

_HOUR_MS = 3_600_000
_DAY_MS = 86_400_000
_MS = dt.timedelta(milliseconds=1)
_EPOCH_ORDINAL = dt.date(1970, 1, 1).toordinal()
_MAX_CACHED = 100_000          # hours or days kept before a cache starts over


class LocalClock:
    """Offsets and dates of one time zone, cached (see the module docstring)."""

    __slots__ = ("_days", "_offsets", "zone")

    def __init__(self, zone: tzinfo):
        self.zone = zone
        self._offsets: dict[int, int] = {}   # UTC hour -> offset in ms
        self._days: dict[int, str] = {}      # local day number -> ISO date

    def offset_ms(self, time_ms: int) -> int:
        """The zone's UTC offset at the instant ``time_ms``, in milliseconds."""
        hour = time_ms // _HOUR_MS
        offset = self._offsets.get(hour)
        if offset is not None:
            return offset
        start = dt.datetime.fromtimestamp(hour * 3600, self.zone).utcoffset()
        end = dt.datetime.fromtimestamp(hour * 3600 + 3599, self.zone).utcoffset()
        if start is None or end is None:
            raise ValueError(f"{self.zone!r}: no UTC offset")
        if start != end:   # the offset changes inside this hour: this instant only
            exact = dt.datetime.fromtimestamp(time_ms // 1000, self.zone).utcoffset()
            assert exact is not None
            return exact // _MS
        if len(self._offsets) >= _MAX_CACHED:
            self._offsets.clear()
        offset = self._offsets[hour] = start // _MS
        return offset

    def local_ms(self, time_ms: int) -> int:
        """Milliseconds since 1970-01-01 00:00 local wall-clock time."""
        return time_ms + self.offset_ms(time_ms)

    def day(self, time_ms: int) -> str:
        """The local date of ``time_ms`` as YYYY-MM-DD."""
        return self.iso_day(self.day_number(time_ms))

    def day_number(self, time_ms: int) -> int:
        """The local date of ``time_ms`` as days since 1970-01-01."""
        offset = self._offsets.get(time_ms // _HOUR_MS)     # offset_ms's cache, read here: once a scan
        if offset is None:
            offset = self.offset_ms(time_ms)
        return (time_ms + offset) // _DAY_MS

    def iso_day(self, number: int) -> str:
        """The date ``number`` days after 1970-01-01 as YYYY-MM-DD."""
        text = self._days.get(number)
        if text is None:
            if len(self._days) >= _MAX_CACHED:
                self._days.clear()
            text = self._days[number] = dt.date.fromordinal(_EPOCH_ORDINAL + number).isoformat()
        return text

    def minute(self, time_ms: int) -> int:
        """Minutes since local midnight (0..1439)."""
        return self.local_ms(time_ms) % _DAY_MS // 60_000
