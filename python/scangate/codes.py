"""Bulk issuance and verification of codes: the core's kernels around one AES-ECB
call per chunk. Nothing here touches LMDB; ``scangate.datadir`` joins the two.

Batch in, batch out: every function takes or returns numpy arrays; a single code is a
batch of one.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from . import _core
from .enums import CodeStatus, Level
from .keys import Keyring, KeyVersion

__all__ = [
    "CODE_LEN",
    "DecodedCodes",
    "render_codes_into",
    "iter_rendered_codes",
    "decode_codes",
    "authenticate",
    "QR_ALPHANUMERIC",
]

CODE_LEN = _core.CODE_LEN
# Characters QR's alphanumeric mode encodes at 5.5 bits each.
QR_ALPHANUMERIC = frozenset("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ $%*+-./:")
# Codes per chunk: plaintext, ciphertext and text of one chunk stay in L2 cache.
CHUNK = 8192


def _ecb(key: bytes, decrypt: bool):  # type: ignore[no-untyped-def]
    cipher = Cipher(algorithms.AES(key), modes.ECB())
    return cipher.decryptor() if decrypt else cipher.encryptor()


def render_codes_into(
    key: KeyVersion, first_serial: int, level: Level, out: np.ndarray, column: int = 0
) -> None:
    """Write the text of serials first_serial .. first_serial+len(out)-1 into
    out[:, column:column+29]; other columns are left alone (prefix, newline)."""
    n = out.shape[0]
    enc = _ecb(key.key, decrypt=False)
    plain = np.empty((min(n, CHUNK), 16), np.uint8)
    # update_into needs len(data) + 15 bytes of room.
    cipher_buf = np.empty(min(n, CHUNK) * 16 + 16, np.uint8)
    for start in range(0, n, CHUNK):
        m = min(CHUNK, n - start)
        p = plain[:m]
        _core.pack_blocks(first_serial + start, int(level), p)
        enc.update_into(p, cipher_buf)
        blocks = cipher_buf[: m * 16].reshape(m, 16)
        _core.encode_text(blocks, key.version, out[start : start + m], column)


def line_template(count: int, prefix: bytes, newline: bool) -> np.ndarray:
    """An (count x width) array with the prefix and newline columns filled in."""
    width = len(prefix) + CODE_LEN + (1 if newline else 0)
    out = np.empty((count, width), np.uint8)
    if prefix:
        out[:, : len(prefix)] = np.frombuffer(prefix, np.uint8)
    if newline:
        out[:, -1] = 10
    return out


def iter_rendered_codes(
    key: KeyVersion,
    first_serial: int,
    level: Level,
    count: int,
    *,
    prefix: bytes = b"",
    newline: bool = True,
    chunk: int = 1 << 20,
) -> Iterator[np.ndarray]:
    """Yield (n x width) uint8 arrays of ready-to-write lines, ``chunk`` codes each."""
    template = line_template(min(count, chunk), prefix, newline)
    for start in range(0, count, chunk):
        m = min(chunk, count - start)
        out = template[:m]
        render_codes_into(key, first_serial + start, level, out, len(prefix))
        yield out


def _decode_buffer(data: bytes | bytearray | memoryview):  # type: ignore[no-untyped-def]
    """Decode a newline-separated buffer in one pass (growing the arrays if the
    lines are shorter than a code, which only happens with bad input)."""
    buf = np.frombuffer(data, np.uint8)
    cap = len(buf) // (CODE_LEN + 1) + 64
    blocks = np.empty((cap, 16), np.uint8)
    versions = np.zeros(cap, np.uint16)
    status = np.empty(cap, np.uint8)
    seen = np.zeros(1024, np.uint8)
    done, offset = _core.decode_lines(buf, 0, blocks, versions, status, seen)
    while offset < len(buf):
        cap *= 2
        blocks = np.resize(blocks, (cap, 16))
        versions = np.resize(versions, cap)
        status = np.resize(status, cap)
        more, offset = _core.decode_lines(buf, offset, blocks[done:], versions[done:], status[done:], seen)
        done += more
    return blocks[:done], versions[:done], status[:done], np.flatnonzero(seen).astype(np.uint16)


def _spans_from_input(codes: Sequence[str] | np.ndarray):  # type: ignore[no-untyped-def]
    """Return (buffer, starts, ends) for a list of str or an 'S' array."""
    if isinstance(codes, np.ndarray) and codes.dtype.kind == "S":
        # fixed-width byte strings: trailing NULs are trimmed by the decoder
        width = codes.dtype.itemsize
        buf = np.frombuffer(np.ascontiguousarray(codes).tobytes(), np.uint8)
        starts = np.arange(len(codes), dtype=np.int64) * width
        return buf, starts, starts + width
    if isinstance(codes, str):
        raise TypeError("pass a list of codes, or use verify_code() for one code")
    encoded = [c.encode("utf-8", "replace") for c in codes]
    lengths = np.fromiter((len(e) for e in encoded), np.int64, len(encoded))
    ends = np.cumsum(lengths)
    return np.frombuffer(b"".join(encoded), np.uint8), ends - lengths, ends


@dataclass
class DecodedCodes:
    """Decrypted, authenticated codes (before the ledger lookup)."""

    status: np.ndarray  # uint8, CodeStatus values
    key_version: np.ndarray  # uint16
    serial: np.ndarray  # uint64, 0 where not authenticated
    level: np.ndarray  # uint8, 0 where not authenticated


def decode_codes(codes: bytes | bytearray | memoryview | Sequence[str] | np.ndarray):  # type: ignore[no-untyped-def]
    """Parse text (a newline-separated buffer, a list of str, or an 'S' array) into
    cipher blocks. Returns (blocks, versions, status, versions_seen)."""
    if isinstance(codes, (bytes, bytearray, memoryview)):
        return _decode_buffer(codes)
    buf, starts, ends = _spans_from_input(codes)
    blocks, versions, status = _core.decode_spans(buf, starts, ends)
    return blocks, versions, status, np.unique(versions[status == _core.OK])


def _decrypt_in_place(key: bytes, blocks: np.ndarray) -> None:
    """AES-ECB-decrypt the rows of ``blocks`` in place, a cache-sized chunk at a time."""
    dec = _ecb(key, decrypt=True)
    scratch = np.empty(CHUNK * 16 + 16, np.uint8)
    flat = blocks.reshape(-1)
    for start in range(0, len(flat), CHUNK * 16):
        part = flat[start : start + CHUNK * 16]
        dec.update_into(part, scratch)
        part[:] = scratch[: len(part)]


def decrypt_codes(
    blocks: np.ndarray, versions: np.ndarray, status: np.ndarray, seen: np.ndarray, keys: Keyring
) -> None:
    """Decrypt each OK block under its key version, in place; rows whose key
    version is not in ``keys`` become UNKNOWN_KEY. ``seen`` lists the key versions
    present among OK rows."""
    if len(seen) == 1:
        kv = keys.get(int(seen[0]))
        if kv is None:
            status[status == _core.OK] = CodeStatus.UNKNOWN_KEY
        else:
            # One key version (the usual case): decrypt every row in one pass;
            # rows that are not OK decrypt to noise that is never looked at.
            _decrypt_in_place(kv.key, blocks)
        return
    for v in seen.tolist():
        rows = np.flatnonzero((status == _core.OK) & (versions == v))
        kv = keys.get(v)
        if kv is None:
            status[rows] = CodeStatus.UNKNOWN_KEY
            continue
        sub = np.ascontiguousarray(blocks[rows])
        _decrypt_in_place(kv.key, sub)
        blocks[rows] = sub


def authenticate(
    blocks: np.ndarray, versions: np.ndarray, status: np.ndarray, seen: np.ndarray, keys: Keyring
) -> DecodedCodes:
    """Decrypt and check blocks without a ledger (in place; for tools and benches)."""
    decrypt_codes(blocks, versions, status, seen, keys)
    serial, level = _core.unpack_blocks(blocks, status)
    return DecodedCodes(status, versions, serial, level)
