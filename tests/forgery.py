"""Code texts made by hand for tests: random well-formed texts (right shape and
check symbol, not authentic), and authentic codes for serials of our choosing,
made as a key holder would (pack, AES-ECB encrypt, encode)."""

from __future__ import annotations

import numpy as np
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from scangate import _core
from scangate.keys import KeyVersion


def texts_of_blocks(blocks: np.ndarray, version: int) -> list[str]:
    out = np.zeros((len(blocks), _core.CODE_LEN), np.uint8)
    _core.encode_text(np.ascontiguousarray(blocks, np.uint8), version, out)
    return [bytes(row).decode("ascii") for row in out]


def random_code_texts(n: int, version: int = 1, seed: int = 7) -> list[str]:
    """Well-formed texts of random blocks: they pass the check symbol, not AES."""
    return texts_of_blocks(np.random.default_rng(seed).integers(0, 256, (n, 16), dtype=np.uint8), version)


def forge(key: KeyVersion, serials: list[int], levels: list[int], *, version: int | None = None) -> list[str]:
    """Authentic codes for ``serials`` under ``key`` (text names ``version`` if given)."""
    plain = np.zeros((len(serials), 16), np.uint8)
    _core.pack_serials(np.array(serials, np.uint64), np.array(levels, np.uint8), plain)
    enc = Cipher(algorithms.AES(key.key), modes.ECB()).encryptor()
    blocks = np.frombuffer(enc.update(plain.tobytes()) + enc.finalize(), np.uint8).reshape(-1, 16)
    return texts_of_blocks(blocks, key.version if version is None else version)
