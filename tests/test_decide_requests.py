"""The fast path of request validation never accepts what the one definition of
the bounds refuses (scangate.decide.requests: plainly_valid implies scan_problem
is None), and check_requests refuses a batch exactly when a request in it has a
problem, naming the first."""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scangate.decide.requests import MAX_TIME_MS, check_requests, plainly_valid, scan_problem
from scangate.decision import ScanRequest
from scangate.errors import InvalidArgument

# text near every bound: empty, long, control characters, surrogates, NUL, non-ASCII, spaces
texts = st.one_of(
    st.text(max_size=8), st.text(min_size=120, max_size=600),
    st.sampled_from(["", "a", "req-1", "x" * 128, "x" * 129, "x" * 512, "x" * 513, "a\0b", "a\x7fb", "a\x85b",
                     "\ud800", "订单-1", "a b", "a\u00a0b", "é" * 200, "\t", "a\nb"]),
    st.integers(), st.none())
regions = st.one_of(st.none(), st.sampled_from([99999, 100000, 510104, 999999, 1000000, True, 510104.0, "510104"]),
                    st.integers())
coords = st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=True), st.integers(-200, 200), st.booleans())
times = st.one_of(st.none(), st.integers(-5, MAX_TIME_MS + 5), st.sampled_from([0, 1, MAX_TIME_MS, MAX_TIME_MS + 1,
                                                                                 True, 1.5, "1"]))
requests = st.builds(
    ScanRequest, request_id=texts, code=texts, actor=texts,
    actor_type=st.sampled_from(["consumer", "store", "", "Consumer", 1]), region=regions, lat=coords, lon=coords,
    time_ms=times, actor_tags=st.one_of(st.just(()), st.lists(texts, max_size=3).map(tuple), st.just([])),
    client=st.sampled_from(["", "app", "a\0"]))


@settings(max_examples=800, deadline=None)
@given(requests)
def test_the_fast_path_never_accepts_what_the_bounds_refuse(r: ScanRequest) -> None:
    if plainly_valid(r):
        assert scan_problem(r) is None


def test_the_fast_path_takes_the_usual_request() -> None:
    assert plainly_valid(ScanRequest("req-1", "1ABCDEFGHJKMNPQRSTVWXYZ0123", "user-1", region=510104,
                                     time_ms=1_780_286_400_000))
    # valid, but not plain: the full check decides
    for r in (ScanRequest("订单-1", "c", "u"), ScanRequest("r", "c", "u", lat=30.0, lon=104.0),
              ScanRequest("r", "c", "u", actor_tags=("vip",)), ScanRequest("r", "c", "u", client="app")):
        assert not plainly_valid(r) and scan_problem(r) is None


@settings(max_examples=300, deadline=None)
@given(st.lists(requests, min_size=1, max_size=4))
def test_check_requests_refuses_exactly_a_batch_with_a_problem(batch: list[ScanRequest]) -> None:
    problems = [(i, p) for i, r in enumerate(batch) if (p := scan_problem(r)) is not None]
    if not problems:
        check_requests(batch)
        return
    i, (field, why) = problems[0]
    with pytest.raises(InvalidArgument) as exc:
        check_requests(batch)
    assert str(exc.value) == f"requests[{i}].{field}: {why}"


def test_a_nan_coordinate_is_refused_by_both() -> None:
    r: Any = ScanRequest("r", "c", "u", lat=math.nan, lon=1.0)
    assert not plainly_valid(r) and scan_problem(r) == ("lat", "nan is not a finite number")
