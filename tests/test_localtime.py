"""LocalClock against datetime: the same local date, day number and minute of the
day for any instant, in zones with and without daylight saving time (including
Lord Howe's half-hour change), hours cached or not."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

from hypothesis import given, settings
from hypothesis import strategies as st

from scangate.localtime import LocalClock

ZONES = ["Asia/Shanghai", "America/New_York", "Europe/London", "Australia/Lord_Howe", "UTC"]
EPOCH = dt.date(1970, 1, 1)
# 1900..2100, and the hours around two 2026 changes in New York (spring forward, fall back)
INSTANTS = st.one_of(st.integers(-2_208_988_800_000, 4_102_444_800_000),
                     st.integers(1_772_946_000_000, 1_772_960_400_000),
                     st.integers(1_793_505_600_000, 1_793_520_000_000))


@settings(max_examples=400, deadline=None)
@given(zone=st.sampled_from(ZONES), times=st.lists(INSTANTS, min_size=1, max_size=8))
def test_clock_matches_datetime(zone: str, times: list[int]) -> None:
    tz = ZoneInfo(zone)
    clock = LocalClock(tz)
    for t in times * 2:        # the second pass reads the cached hours and days
        local = dt.datetime.fromtimestamp(t // 1000, tz)
        assert clock.day(t) == local.date().isoformat()
        assert clock.day_number(t) == (local.date() - EPOCH).days
        assert clock.iso_day(clock.day_number(t)) == local.date().isoformat()
        assert clock.minute(t) == local.hour * 60 + local.minute
