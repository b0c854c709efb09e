"""The draw's HMAC (scangate.decide.campaign.Hmac: precomputed pad states over
CPython's own SHA-256 where the build has it) is HMAC-SHA256 as the standard
library computes it, for every key length (shorter than, equal to, longer than a
block) and message length; the audit and any outside verifier use the standard one."""

from __future__ import annotations

import hashlib
import hmac

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scangate.decide import campaign
from scangate.decide.campaign import Hmac


@settings(max_examples=300, deadline=None)
@given(key=st.binary(min_size=0, max_size=200), message=st.binary(min_size=0, max_size=300))
def test_hmac_is_the_standard_hmac_sha256(key: bytes, message: bytes) -> None:
    assert Hmac(key).digest(message) == hmac.new(key, message, hashlib.sha256).digest()


def test_one_hmac_serves_many_draws() -> None:
    h = Hmac(b"secret" * 5)
    for i in range(50):   # the padded states are copied, never consumed
        message = f"c1|{i}|user-{i}|1780000000000".encode()
        assert h.digest(message) == hmac.new(b"secret" * 5, message, hashlib.sha256).digest()


@pytest.mark.parametrize("name", ["_sha2", "_sha256", "hashlib"])
def test_the_builtin_sha256_or_hashlibs(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Whichever SHA-256 the build offers, the same digest."""
    real = campaign.importlib.import_module

    def only(module: str):  # type: ignore[no-untyped-def]
        if module != name:
            raise ImportError(module)
        return real(module)

    monkeypatch.setattr(campaign.importlib, "import_module", only)
    try:
        sha = campaign._builtin_sha256()
    except ImportError:
        pytest.skip(f"{name} is not in this build")
    if name == "hashlib":
        assert sha is hashlib.sha256
    assert sha(b"abc").digest() == hashlib.sha256(b"abc").digest()
