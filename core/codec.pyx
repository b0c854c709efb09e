# cython: language_level=3
"""Code format v1: pack/unpack plaintext blocks, text encode/decode with the check
symbol. Batch in, batch out, over numpy buffers; every loop runs without the GIL.

No I/O, no keys, no policy: AES runs in the caller (``scangate.codes``) through
``cryptography``. See docs/code-format.md for the format and its argument.
"""
cimport cython
from libc.stdint cimport uint8_t, uint16_t, uint64_t, int64_t
from libc.string cimport memcpy, memchr

import numpy as np

# ---------------------------------------------------------------- constants
cdef enum:
    _CODE_LEN = 29          # symbols in the text form
    _FORMAT_VERSION = 1
cdef uint64_t _MAX_SERIAL = (1ULL << 56) - 1

CODE_LEN = _CODE_LEN
BLOCK_SIZE = 16
FORMAT_VERSION = 1
MAX_SERIAL = (1 << 56) - 1
MAX_KEY_VERSION = 1023
REDUNDANCY = b"SCANGATE"
ALPHABET = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ"

# Status values shared with scangate.codes.CodeStatus. The core only ever sets
# OK (0), TYPO, MALFORMED, COUNTERFEIT and NOT_ISSUED.
OK = 0
TYPO = 1
MALFORMED = 2
COUNTERFEIT = 3
UNKNOWN_KEY = 4
NOT_ISSUED = 5

cdef enum:
    ST_OK = 0
    ST_TYPO = 1
    ST_MALFORMED = 2
    ST_COUNTERFEIT = 3
    ST_NOT_ISSUED = 5

# The redundancy field "SCANGATE" as a big-endian 64-bit integer.
cdef uint64_t _REDUNDANCY = 0x5343414E47415445ULL

# ---------------------------------------------------------------- tables
# Built once at import with the GIL; read-only afterwards, so nogil loops may read
# them freely.
cdef uint8_t _ENC[32]            # symbol value -> ASCII
cdef uint8_t _DEC[256]           # ASCII -> symbol value, 0xFF invalid, 0xFE hyphen
cdef uint8_t _GF_MUL[32][32]     # GF(32) multiplication, x^5 + x^2 + 1
cdef uint8_t _W[_CODE_LEN - 1][32]   # _W[p][s] = a^(28-p) * s
cdef uint8_t _BYTE_CHECK[16][256]    # contribution of byte j of C to the check

cdef uint8_t _gf_mul_slow(uint8_t a, uint8_t b):
    cdef uint8_t r = 0
    while b:
        if b & 1:
            r ^= a
        b >>= 1
        a <<= 1
        if a & 32:
            a ^= 0x25
    return r

cdef void _build_tables():
    cdef int i, j, p, bit, pos
    cdef uint8_t w, acc
    for i in range(256):
        _DEC[i] = 0xFF
    for i in range(32):
        _ENC[i] = ALPHABET[i]
        _DEC[ALPHABET[i]] = i
        if ALPHABET[i] >= 65:
            _DEC[ALPHABET[i] + 32] = i   # lower case
    for c, v in ((b'O', 0), (b'o', 0), (b'I', 1), (b'i', 1), (b'L', 1), (b'l', 1)):
        _DEC[c[0]] = v
    _DEC[45] = 0xFE   # '-' is skipped
    for i in range(32):
        for j in range(32):
            _GF_MUL[i][j] = _gf_mul_slow(i, j)
    for p in range(_CODE_LEN - 1):
        w = 1
        for i in range(_CODE_LEN - 1 - p):
            w = _GF_MUL[w][2]
        for i in range(32):
            _W[p][i] = _GF_MUL[w][i]
    # The check is GF(2)-linear in the bits of C, so the check of the 26 data
    # symbols is the XOR of one table entry per byte of C. Bit b of byte j (bit 0 =
    # most significant) is bit (8j + b) of C; it falls in data symbol (8j+b)//5 at
    # weight 2^(4 - (8j+b)%5) within that symbol; data symbol d sits at text
    # position 2 + d.
    for j in range(16):
        for i in range(256):
            acc = 0
            for bit in range(8):
                if i & (0x80 >> bit):
                    pos = 8 * j + bit
                    acc ^= _W[2 + pos // 5][1 << (4 - pos % 5)]
            _BYTE_CHECK[j][i] = acc

_build_tables()


# ---------------------------------------------------------------- helpers
cdef inline uint64_t _load_be64(const uint8_t* p) noexcept nogil:
    return ((<uint64_t>p[0] << 56) | (<uint64_t>p[1] << 48) | (<uint64_t>p[2] << 40)
            | (<uint64_t>p[3] << 32) | (<uint64_t>p[4] << 24) | (<uint64_t>p[5] << 16)
            | (<uint64_t>p[6] << 8) | <uint64_t>p[7])

cdef inline void _store_be64(uint8_t* p, uint64_t v) noexcept nogil:
    p[0] = v >> 56; p[1] = v >> 48; p[2] = v >> 40; p[3] = v >> 32
    p[4] = v >> 24; p[5] = v >> 16; p[6] = v >> 8; p[7] = v

cdef inline void _encode_one(const uint8_t* c, uint8_t v0, uint8_t v1,
                             uint8_t vcheck, uint8_t* out) noexcept nogil:
    """Write the 29 symbols of block ``c`` under version symbols v0, v1."""
    cdef uint64_t g
    cdef uint8_t chk = vcheck
    cdef int j
    for j in range(16):
        chk ^= _BYTE_CHECK[j][c[j]]
    out[0] = _ENC[v0]
    out[1] = _ENC[v1]
    # Three 40-bit groups (bytes 0-4, 5-9, 10-14) give 8 symbols each; the last
    # byte gives 2 symbols, the second padded with two zero bits.
    for j in range(3):
        g = ((<uint64_t>c[5*j] << 32) | (<uint64_t>c[5*j+1] << 24)
             | (<uint64_t>c[5*j+2] << 16) | (<uint64_t>c[5*j+3] << 8)
             | <uint64_t>c[5*j+4])
        out[2 + 8*j + 0] = _ENC[(g >> 35) & 31]
        out[2 + 8*j + 1] = _ENC[(g >> 30) & 31]
        out[2 + 8*j + 2] = _ENC[(g >> 25) & 31]
        out[2 + 8*j + 3] = _ENC[(g >> 20) & 31]
        out[2 + 8*j + 4] = _ENC[(g >> 15) & 31]
        out[2 + 8*j + 5] = _ENC[(g >> 10) & 31]
        out[2 + 8*j + 6] = _ENC[(g >> 5) & 31]
        out[2 + 8*j + 7] = _ENC[g & 31]
    out[26] = _ENC[c[15] >> 3]
    out[27] = _ENC[(c[15] & 7) << 2]
    out[28] = _ENC[chk]


# ---------------------------------------------------------------- public API
@cython.boundscheck(False)
@cython.wraparound(False)
def pack_blocks(uint64_t first_serial, int level, uint8_t[:, ::1] out not None):
    """Fill ``out`` (N x 16) with plaintext blocks for serials first_serial + i."""
    if out.shape[1] != 16:
        raise ValueError("out must have 16 columns")
    if level < 1 or level > 3:
        raise ValueError(f"level must be 1, 2 or 3, not {level}")
    cdef Py_ssize_t n = out.shape[0], i
    if n and (first_serial < 1 or first_serial + <uint64_t>(n - 1) > _MAX_SERIAL):
        raise ValueError("serial range outside 1 .. 2^56-1")
    cdef uint8_t head = (_FORMAT_VERSION << 4) | level
    cdef uint8_t* row
    with nogil:
        for i in range(n):
            row = &out[i, 0]
            # serial occupies bytes 1..7: store the 64-bit value at byte 0, then
            # overwrite byte 0 (the top serial byte is always 0 under 2^56).
            _store_be64(row, first_serial + <uint64_t>i)
            row[0] = head
            _store_be64(row + 8, _REDUNDANCY)


@cython.boundscheck(False)
@cython.wraparound(False)
def pack_serials(const uint64_t[::1] serials not None, const uint8_t[::1] levels not None,
                 uint8_t[:, ::1] out not None):
    """Fill ``out`` (N x 16) with plaintext blocks for arbitrary serials/levels."""
    cdef Py_ssize_t n = serials.shape[0], i
    if levels.shape[0] != n or out.shape[0] != n or out.shape[1] != 16:
        raise ValueError("serials, levels and out must have N, N and N x 16 items")
    for i in range(n):
        if serials[i] < 1 or serials[i] > _MAX_SERIAL:
            raise ValueError(f"serial {serials[i]} outside 1 .. 2^56-1")
        if levels[i] < 1 or levels[i] > 3:
            raise ValueError(f"level {levels[i]} is not 1, 2 or 3")
    with nogil:
        for i in range(n):
            _store_be64(&out[i, 0], serials[i])
            out[i, 0] = (_FORMAT_VERSION << 4) | levels[i]
            _store_be64(&out[i, 8], _REDUNDANCY)


@cython.boundscheck(False)
@cython.wraparound(False)
def encode_text(const uint8_t[:, ::1] blocks not None, int key_version,
                uint8_t[:, ::1] out not None, Py_ssize_t column=0):
    """Write the 29-symbol text of each block into out[i, column:column+29].

    The other columns of ``out`` (a URL prefix, a newline) are left as they are,
    so a caller can pre-fill them once and write a file straight from ``out``.
    """
    if blocks.shape[1] != 16:
        raise ValueError("blocks must have 16 columns")
    if key_version < 1 or key_version > MAX_KEY_VERSION:
        raise ValueError(f"key version {key_version} outside 1 .. {MAX_KEY_VERSION}")
    if out.shape[0] != blocks.shape[0] or column < 0 or column + _CODE_LEN > out.shape[1]:
        raise ValueError("out must have N rows and room for 29 symbols at column")
    cdef Py_ssize_t n = blocks.shape[0], i
    cdef uint8_t v0 = key_version >> 5, v1 = key_version & 31
    cdef uint8_t vcheck = _W[0][v0] ^ _W[1][v1]
    with nogil:
        for i in range(n):
            _encode_one(&blocks[i, 0], v0, v1, vcheck, &out[i, column])


@cython.boundscheck(False)
@cython.wraparound(False)
def split_lines(const uint8_t[::1] buf not None):
    """Return (starts, ends) int64 arrays of the lines of ``buf``.

    Lines end at '\\n'; a '\\r' before it is excluded. A final line without a
    newline counts; an empty tail after the last newline does not.
    """
    cdef Py_ssize_t n = buf.shape[0], i, count = 0, s, e
    cdef const uint8_t* base = &buf[0] if n else NULL
    cdef const uint8_t* hit
    with nogil:
        i = 0
        while i < n:
            hit = <const uint8_t*>memchr(base + i, 10, n - i)
            count += 1
            if hit == NULL:
                break
            i = (hit - base) + 1
    starts_arr = np.empty(count, dtype=np.int64)
    ends_arr = np.empty(count, dtype=np.int64)
    cdef int64_t[::1] starts = starts_arr
    cdef int64_t[::1] ends = ends_arr
    cdef Py_ssize_t k = 0
    with nogil:
        i = 0
        while k < count:
            hit = <const uint8_t*>memchr(base + i, 10, n - i)
            e = (hit - base) if hit != NULL else n
            s = i
            if e > s and base[e - 1] == 13:
                starts[k] = s
                ends[k] = e - 1
            else:
                starts[k] = s
                ends[k] = e
            k += 1
            i = e + 1
    return starts_arr, ends_arr


cdef inline uint8_t _decode_one(const uint8_t* p, Py_ssize_t s, Py_ssize_t e,
                                uint8_t* block, uint16_t* version) noexcept nogil:
    """Decode text p[s:e] into ``block``; return ST_OK, ST_TYPO or ST_MALFORMED.

    Reads only p[s:e]: the caller guarantees 0 <= s <= e <= len(buffer).
    """
    cdef uint8_t sym[_CODE_LEN]
    cdef Py_ssize_t i, k
    cdef uint8_t v, chk
    cdef uint64_t g
    cdef int j
    # Trim spaces and tabs, then reduce a URL to its last path segment.
    while s < e and (p[s] == 32 or p[s] == 9):
        s += 1
    # trailing NULs too: fixed-width numpy 'S' arrays pad with them
    while e > s and (p[e - 1] == 32 or p[e - 1] == 9 or p[e - 1] == 0):
        e -= 1
    i = e - 1
    while i >= s:
        if p[i] == 47:       # '/'
            s = i + 1
            break
        i -= 1
    i = s
    while i < e:
        if p[i] == 63 or p[i] == 35:   # '?' or '#'
            e = i
            break
        i += 1
    k = 0
    for i in range(s, e):
        v = _DEC[p[i]]
        if v == 0xFE:
            continue
        if v == 0xFF or k == _CODE_LEN:
            return ST_MALFORMED
        sym[k] = v
        k += 1
    if k != _CODE_LEN:
        return ST_MALFORMED
    version[0] = (<uint16_t>sym[0] << 5) | sym[1]
    chk = 0
    for k in range(_CODE_LEN - 1):
        chk ^= _W[k][sym[k]]
    if chk != sym[_CODE_LEN - 1]:
        return ST_TYPO
    if (sym[27] & 3) or version[0] == 0:
        return ST_MALFORMED
    for j in range(3):
        g = ((<uint64_t>sym[2 + 8*j] << 35) | (<uint64_t>sym[3 + 8*j] << 30)
             | (<uint64_t>sym[4 + 8*j] << 25) | (<uint64_t>sym[5 + 8*j] << 20)
             | (<uint64_t>sym[6 + 8*j] << 15) | (<uint64_t>sym[7 + 8*j] << 10)
             | (<uint64_t>sym[8 + 8*j] << 5) | <uint64_t>sym[9 + 8*j])
        block[5*j] = g >> 32
        block[5*j + 1] = g >> 24
        block[5*j + 2] = g >> 16
        block[5*j + 3] = g >> 8
        block[5*j + 4] = g
    block[15] = (sym[26] << 3) | (sym[27] >> 2)
    return ST_OK


@cython.boundscheck(False)
@cython.wraparound(False)
def decode_spans(const uint8_t[::1] buf not None, const int64_t[::1] starts not None,
                 const int64_t[::1] ends not None):
    """Decode the texts buf[starts[i]:ends[i]].

    Returns (blocks uint8[N,16], versions uint16[N], status uint8[N]); status is
    OK, TYPO or MALFORMED; blocks and versions are meaningful only where OK.
    """
    cdef Py_ssize_t n = starts.shape[0], i, size = buf.shape[0]
    if ends.shape[0] != n:
        raise ValueError("starts and ends differ in length")
    for i in range(n):
        if starts[i] < 0 or ends[i] < starts[i] or ends[i] > size:
            raise ValueError(f"span {i} ({starts[i]}, {ends[i]}) outside the buffer")
    blocks_arr = np.zeros((n, 16), dtype=np.uint8)
    versions_arr = np.zeros(n, dtype=np.uint16)
    status_arr = np.empty(n, dtype=np.uint8)
    cdef uint8_t[:, ::1] blocks = blocks_arr
    cdef uint16_t[::1] versions = versions_arr
    cdef uint8_t[::1] status = status_arr
    cdef const uint8_t* base = &buf[0] if size else NULL
    with nogil:
        for i in range(n):
            status[i] = _decode_one(base, starts[i], ends[i], &blocks[i, 0], &versions[i])
    return blocks_arr, versions_arr, status_arr


@cython.boundscheck(False)
@cython.wraparound(False)
def unpack_blocks(const uint8_t[:, ::1] plain not None, uint8_t[::1] status not None):
    """Authenticate decrypted blocks and return (serials uint64[N], levels uint8[N]).

    Only rows whose status is OK are examined; a row that fails the redundancy,
    format-version or level check becomes COUNTERFEIT (in place).
    """
    cdef Py_ssize_t n = plain.shape[0], i
    if plain.shape[1] != 16 or status.shape[0] != n:
        raise ValueError("plain must be N x 16 and status N long")
    serials_arr = np.zeros(n, dtype=np.uint64)
    levels_arr = np.zeros(n, dtype=np.uint8)
    cdef uint64_t[::1] serials = serials_arr
    cdef uint8_t[::1] levels = levels_arr
    cdef const uint8_t* row
    cdef uint8_t lvl
    with nogil:
        for i in range(n):
            if status[i] != ST_OK:
                continue
            row = &plain[i, 0]
            lvl = row[0] & 15
            if (_load_be64(row + 8) != _REDUNDANCY or (row[0] >> 4) != _FORMAT_VERSION
                    or lvl < 1 or lvl > 3):
                status[i] = ST_COUNTERFEIT
                continue
            serials[i] = _load_be64(row) & _MAX_SERIAL
            levels[i] = lvl
    return serials_arr, levels_arr


@cython.boundscheck(False)
@cython.wraparound(False)
def lookup_ranges(const uint64_t[::1] serials not None, const uint16_t[::1] versions not None,
                  uint8_t[::1] status not None, const uint64_t[::1] firsts not None,
                  const uint64_t[::1] lasts not None, const uint16_t[::1] range_versions not None):
    """Find each OK serial's issued range; return int64[N] range index (-1: none).

    Ranges are sorted by ``firsts`` and disjoint. A serial in no range becomes
    NOT_ISSUED; one whose range was reserved under another key version becomes
    COUNTERFEIT. Codes usually arrive in issuance order, so the previous hit is
    tried before the binary search.
    """
    cdef Py_ssize_t n = serials.shape[0], m = firsts.shape[0], i, lo, hi, mid, last = -1
    if versions.shape[0] != n or status.shape[0] != n:
        raise ValueError("serials, versions and status must have the same length")
    if lasts.shape[0] != m or range_versions.shape[0] != m:
        raise ValueError("firsts, lasts and range_versions must have the same length")
    out_arr = np.full(n, -1, dtype=np.int64)
    cdef int64_t[::1] out = out_arr
    cdef uint64_t s
    with nogil:
        for i in range(n):
            if status[i] != ST_OK:
                continue
            s = serials[i]
            if not (last >= 0 and firsts[last] <= s and s <= lasts[last]):
                # greatest index with firsts[idx] <= s
                lo = 0
                hi = m
                while lo < hi:
                    mid = (lo + hi) >> 1
                    if firsts[mid] <= s:
                        lo = mid + 1
                    else:
                        hi = mid
                last = lo - 1
                if last < 0 or s > lasts[last]:
                    last = -1
                    status[i] = ST_NOT_ISSUED
                    continue
            if range_versions[last] != versions[i]:
                status[i] = ST_COUNTERFEIT
                continue
            out[i] = last
    return out_arr


def check_symbol(const uint8_t[::1] symbols not None):
    """Return the check symbol value for 28 symbol values (a test hook)."""
    if symbols.shape[0] != _CODE_LEN - 1:
        raise ValueError("need 28 symbol values")
    cdef uint8_t chk = 0
    cdef int k
    for k in range(_CODE_LEN - 1):
        if symbols[k] > 31:
            raise ValueError("symbol values are 0..31")
        chk ^= _W[k][symbols[k]]
    return chk
