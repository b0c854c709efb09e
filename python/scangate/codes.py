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


def _spans_from_input(codes: bytes | bytearray | memoryview | Sequence[str] | np.ndarray):
    """Return (buffer, starts, ends) for any accepted input form."""
    if isinstance(codes, (bytes, bytearray, memoryview)):
        buf = np.frombuffer(codes, np.uint8)
        starts, ends = _core.split_lines(buf)
        return buf, starts, ends
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
    cipher blocks. Returns (blocks, versions, status) as the core does."""
    buf, starts, ends = _spans_from_input(codes)
    return _core.decode_spans(buf, starts, ends)


def authenticate(
    blocks: np.ndarray, versions: np.ndarray, status: np.ndarray, keys: Keyring
) -> DecodedCodes:
    """Decrypt each OK block under its key version and check its redundancy."""
    ok = status == _core.OK
    present = np.unique(versions[ok]) if ok.any() else np.empty(0, np.uint16)
    plain = np.zeros_like(blocks)
    out = np.empty(blocks.size + 16, np.uint8)
    for v in present.tolist():
        kv = keys.get(v)
        rows = ok & (versions == v)
        if kv is None:
            status[rows] = CodeStatus.UNKNOWN_KEY
            continue
        dec = _ecb(kv.key, decrypt=True)
        if len(present) == 1:
            # One key version (the usual case): decrypt the whole buffer in one call;
            # rows that are not OK decrypt to noise and are ignored by unpack_blocks.
            dec.update_into(blocks, out)
            plain = out[: blocks.size].reshape(blocks.shape)
        else:
            sub = np.ascontiguousarray(blocks[rows])
            dec.update_into(sub, out)
            plain[rows] = out[: sub.size].reshape(sub.shape)
    serial, level = _core.unpack_blocks(plain, status)
    return DecodedCodes(status, versions, serial, level)
