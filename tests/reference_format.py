"""A slow, plain-Python reference for code format v1 (docs/code-format.md).

Used only as a test oracle for the Cython core (``scangate._core``). It is written
from the spec, one code at a time, favouring the obvious over the fast: integers
for bit fields, ``base64.b32encode`` for the data symbols, and a shift-and-xor
GF(32) multiply for the check symbol. Nothing here is imported by the package.
"""
from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Mapping, Optional, Sequence, Union

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

# ---------------------------------------------------------------- the block
FORMAT_VERSION = 1
LEVELS = (1, 2, 3)  # item, case, pallet
MAX_SERIAL = 2**56 - 1
MAX_KEY_VERSION = 1023
REDUNDANCY = b"SCANGATE"
BLOCK_SIZE = 16

# ---------------------------------------------------------------- the text
ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"  # Crockford base32, value = index
RFC4648_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
CODE_LEN = 29  # 2 version symbols + 26 data symbols + 1 check symbol
DATA_LEN = 26

# GF(32) = GF(2)[x] / (x^5 + x^2 + 1); the weight base b = x^5 = x^2 + 1 = 5, a
# primitive element (so is x = 2; b = x^5 makes the check a plain CRC-5).
GF_MODULUS = 0b100101  # x^5 + x^2 + 1
GF_B = 5

# Status names, as in the spec's status table.
OK = "ok"
TYPO = "typo"
MALFORMED = "malformed"
COUNTERFEIT = "counterfeit"
UNKNOWN_KEY = "unknown_key"


# ---------------------------------------------------------------- GF(32)
def gf_mul(x: int, y: int) -> int:
    """Multiply two GF(32) elements: carry-less product, then reduce mod x^5+x^2+1."""
    assert 0 <= x < 32 and 0 <= y < 32
    product = 0
    for bit in range(5):
        if (y >> bit) & 1:
            product ^= x << bit
    # reduce the (at most degree 8) product, highest degree first
    for deg in range(8, 4, -1):
        if (product >> deg) & 1:
            product ^= GF_MODULUS << (deg - 5)
    assert product < 32
    return product


def gf_pow(x: int, n: int) -> int:
    r = 1
    for _ in range(n):
        r = gf_mul(r, x)
    return r


# WEIGHTS[p] = b^(28 - p), the weight of text position p (p = 0..28).
WEIGHTS = [gf_pow(GF_B, CODE_LEN - 1 - p) for p in range(CODE_LEN)]


def check_symbol(symbols: Sequence[int]) -> int:
    """K = XOR over p = 0..27 of b^(28-p) * s_p, for the first 28 symbol values."""
    if len(symbols) != CODE_LEN - 1:
        raise ValueError("need 28 symbol values")
    k = 0
    for p, s in enumerate(symbols):
        if not 0 <= s < 32:
            raise ValueError("symbol values are 0..31")
        k ^= gf_mul(WEIGHTS[p], s)
    return k


def weighted_sum(symbols: Sequence[int]) -> int:
    """sum_{p=0}^{28} b^(28-p) * s_p over all 29 symbols: 0 for every valid text."""
    assert len(symbols) == CODE_LEN
    total = 0
    for p, s in enumerate(symbols):
        total ^= gf_mul(WEIGHTS[p], s)
    return total


def crc5(symbols: Sequence[int]) -> int:
    """The same check computed the spec's other way: CRC-5 with generator
    x^5 + x^2 + 1, zero initial value, no reflection, no final XOR, over the 140
    bits of the 28 symbols (5 bits each, most significant first), shifting a
    register bit by bit."""
    if len(symbols) != CODE_LEN - 1:
        raise ValueError("need 28 symbol values")
    reg = 0
    for s in symbols:
        for bit in range(4, -1, -1):
            feedback = ((reg >> 4) & 1) ^ ((s >> bit) & 1)
            reg = (reg << 1) & 31
            if feedback:
                reg ^= GF_MODULUS & 31
    return reg


# ---------------------------------------------------------------- plaintext
def pack(serial: int, level: int) -> bytes:
    """The 16-byte plaintext: version/level byte, 56-bit serial, b"SCANGATE"."""
    if not 1 <= serial <= MAX_SERIAL:
        raise ValueError("serial outside 1 .. 2^56-1")
    if level not in LEVELS:
        raise ValueError("level must be 1, 2 or 3")
    head = (FORMAT_VERSION << 4) | level
    block = bytes([head]) + serial.to_bytes(7, "big") + REDUNDANCY
    assert len(block) == BLOCK_SIZE
    return block


def unpack(plain: bytes) -> Optional[tuple[int, int]]:
    """(serial, level) of an authenticating plaintext, or None (counterfeit).

    A block authenticates when redundancy == b"SCANGATE", format version == 1 and
    level in 1..3 (the spec names no other condition; serial 0 authenticates here
    and is left to the ledger, where it lies in no range).
    """
    assert len(plain) == BLOCK_SIZE
    fmt, level = plain[0] >> 4, plain[0] & 0x0F
    if plain[8:16] != REDUNDANCY or fmt != FORMAT_VERSION or level not in LEVELS:
        return None
    return int.from_bytes(plain[1:8], "big"), level


def aes_encrypt(key: bytes, block: bytes) -> bytes:
    assert len(key) == 16 and len(block) == 16
    enc = Cipher(algorithms.AES(key), modes.ECB()).encryptor()
    return enc.update(block) + enc.finalize()


def aes_decrypt(key: bytes, block: bytes) -> bytes:
    assert len(key) == 16 and len(block) == 16
    dec = Cipher(algorithms.AES(key), modes.ECB()).decryptor()
    return dec.update(block) + dec.finalize()


# ---------------------------------------------------------------- text encode
_TO_CROCKFORD = str.maketrans(RFC4648_ALPHABET, ALPHABET)


def encode_text(block: bytes, key_version: int) -> str:
    """The 29-symbol text of ciphertext ``block`` under ``key_version``."""
    assert len(block) == BLOCK_SIZE
    if not 1 <= key_version <= MAX_KEY_VERSION:
        raise ValueError("key version outside 1 .. 1023")
    version_syms = [key_version >> 5, key_version & 31]
    rfc = base64.b32encode(block).decode("ascii")
    assert rfc.endswith("======") and len(rfc) == 32
    data = rfc[:DATA_LEN].translate(_TO_CROCKFORD)
    data_syms = [ALPHABET.index(ch) for ch in data]
    k = check_symbol(version_syms + data_syms)
    return "".join(ALPHABET[s] for s in version_syms) + data + ALPHABET[k]


def make_code(key: bytes, key_version: int, serial: int, level: int) -> str:
    return encode_text(aes_encrypt(key, pack(serial, level)), key_version)


# ---------------------------------------------------------------- text decode
def _symbol_value(ch: str) -> Optional[int]:
    """Symbol value of one ASCII character (case-insensitive, Crockford aliases)."""
    assert len(ch) == 1 and ch.isascii()
    up = ch.upper()
    if up == "O":
        return 0
    if up in ("I", "L"):
        return 1
    idx = ALPHABET.find(up)
    return idx if idx >= 0 else None


def normalize(text: Union[str, bytes]) -> bytes:
    """Trim surrounding spaces/tabs (and trailing NULs), then reduce a URL to its
    last path segment: cut before the first "?" or "#", then keep what follows the
    last "/".
    """
    data = text.encode("utf-8", "surrogatepass") if isinstance(text, str) else bytes(text)
    data = data.lstrip(b" \t").rstrip(b" \t\0")
    cuts = [i for i in (data.find(b"?"), data.find(b"#")) if i >= 0]
    if cuts:
        data = data[:min(cuts)]
    slash = data.rfind(b"/")
    if slash >= 0:
        data = data[slash + 1:]
    return data


def parse_symbols(text: Union[str, bytes]) -> Optional[list[int]]:
    """The symbol values of a text (hyphens skipped), or None if a byte is invalid."""
    syms = []
    for byte in normalize(text):
        if byte == ord("-"):
            continue
        if byte >= 128:
            return None
        v = _symbol_value(chr(byte))
        if v is None:
            return None
        syms.append(v)
    return syms


@dataclass(frozen=True)
class Parsed:
    status: str                 # OK, TYPO or MALFORMED
    version: Optional[int]      # key version (when the shape is right)
    block: Optional[bytes]      # ciphertext, only when status is OK


def parse_text(text: Union[str, bytes]) -> Parsed:
    """Decode the text form up to (not including) decryption.

    Order of the tests, kept identical to the core: the shape (29 symbols, all in
    the alphabet) first, then the check symbol (mismatch -> typo), and only then
    the padding bits and key version 0 (-> malformed). A text with a wrong check
    symbol *and* non-zero padding or version 0 is therefore "typo", not
    "malformed".
    """
    syms = parse_symbols(text)
    if syms is None or len(syms) != CODE_LEN:
        return Parsed(MALFORMED, None, None)
    version = (syms[0] << 5) | syms[1]
    if check_symbol(syms[:CODE_LEN - 1]) != syms[CODE_LEN - 1]:
        return Parsed(TYPO, version, None)
    data = syms[2:2 + DATA_LEN]
    bits = 0
    for s in data:
        bits = (bits << 5) | s          # 130 bits: 128 of C, then 2 padding bits
    if bits & 0b11 or version == 0:
        return Parsed(MALFORMED, version, None)
    return Parsed(OK, version, (bits >> 2).to_bytes(BLOCK_SIZE, "big"))


@dataclass(frozen=True)
class Decoded:
    status: str                 # OK, TYPO, MALFORMED, COUNTERFEIT or UNKNOWN_KEY
    version: Optional[int]
    serial: Optional[int]
    level: Optional[int]


def decode(text: Union[str, bytes], keys: Mapping[int, bytes]) -> Decoded:
    """Full decode: parse, decrypt under keys[version], authenticate.

    Stops before the ledger (not_issued / version-mismatch counterfeit).
    """
    parsed = parse_text(text)
    if parsed.status != OK:
        return Decoded(parsed.status, parsed.version, None, None)
    key = keys.get(parsed.version)
    if key is None:
        return Decoded(UNKNOWN_KEY, parsed.version, None, None)
    assert parsed.block is not None
    found = unpack(aes_decrypt(key, parsed.block))
    if found is None:
        return Decoded(COUNTERFEIT, parsed.version, None, None)
    return Decoded(OK, parsed.version, found[0], found[1])
