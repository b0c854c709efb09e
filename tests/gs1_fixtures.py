"""Where the GS1 EPCIS 2.0 fixtures are: shared/fixtures/epcis beside the clone.

Missing fixtures skip their tests on a developer's machine, and fail the run under
CI (CI=true): there, shared/ is always beside the clone, and a skip would hide that
the GS1 documents were never parsed.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "epcis"
PRESENT = FIXTURES.is_dir()
if not PRESENT and os.environ.get("CI"):
    raise RuntimeError(f"GS1 EPCIS fixtures missing at {FIXTURES}: CI runs with shared/ beside the clone")

needs_fixtures = pytest.mark.skipif(
    not PRESENT, reason=f"GS1 EPCIS fixtures not found at {FIXTURES} (shared/ beside the clone)"
)


def require_fixtures() -> None:
    if not PRESENT:
        pytest.skip(f"GS1 EPCIS fixtures not found at {FIXTURES}")
