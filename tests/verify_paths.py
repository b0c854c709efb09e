"""The verify paths of scangate.codes, for the test files that run every test on
each (as py-lmdb runs its suite on both of its bindings).

``verify_path`` is a parametrized fixture: each test that uses it (a file makes it
autouse) runs once with every batch forced onto _verify_small ("small") and once
with every batch in chunks ("chunked": a buffer line by line, a list or array by
spans); see codes.VERIFY_PATH. It is module-scoped, so that hypothesis's tests
(which refuse function-scoped fixtures) take it too: pytest runs a module's tests
on one path, then on the other. Processes a test starts (the CLI) take the same path
through SCANGATE_VERIFY_PATH.
"""
from __future__ import annotations

from collections.abc import Iterator

import pytest

from scangate import codes

PATHS = codes.VERIFY_PATHS


@pytest.fixture(scope="module", params=PATHS)
def verify_path(request: pytest.FixtureRequest) -> Iterator[str]:
    """The verify path (codes.VERIFY_PATHS) the test runs on."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(codes, "VERIFY_PATH", request.param)
        mp.setenv(codes.VERIFY_PATH_ENV, request.param)
        yield request.param
