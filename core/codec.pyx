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

# Compile-time constants (macros, so the compiler folds them into the hot loops
# instead of reloading globals after every byte store), and byte-order helpers.
cdef extern from *:
    """
    #define SG_REDUNDANCY 0x5343414E47415445ULL  /* "SCANGATE", big-endian */
    #define SG_MAX_SERIAL ((1ULL << 56) - 1)
    #define sg_bswap64(x) __builtin_bswap64(x)
    """
    const uint64_t _REDUNDANCY "SG_REDUNDANCY"
    const uint64_t _MAX_SERIAL "SG_MAX_SERIAL"
    uint64_t sg_bswap64(uint64_t) nogil

# ---------------------------------------------------------------- tables
# Built once at import with the GIL; read-only afterwards, so nogil loops may read
# them freely.
cdef uint8_t _ENC[32]            # symbol value -> ASCII
cdef uint8_t _DEC[256]           # ASCII -> symbol value, 0xFF invalid, 0xFE hyphen
cdef uint8_t _GF_MUL[32][32]     # GF(32) multiplication, x^5 + x^2 + 1
cdef uint8_t _W[_CODE_LEN - 1][32]   # _W[p][s] = b^(28-p) * s, b = x^5 = x^2 + 1
cdef uint16_t _DEC2[65536]       # two ASCII bytes (first in the low byte) -> 10-bit pair, 0xFFFF if not two symbols
cdef uint16_t _ENC2[1024]        # 10-bit symbol pair -> two ASCII bytes (first in the low byte)
# The check symbol is CRC-5 (x^5 + x^2 + 1) of the 140 bits of the first 28
# symbols: check = (V(x) x^135 + C(x) x^7 + pad(x) x^5) mod P(x) for version V,
# block C and the two padding bits. Since x^31 = 1 mod P, C(x) mod P only needs
# the XOR of C's 31-bit slices (_fold31), then one byte table per byte of it.
cdef uint8_t _CRC_FOLD[4][256]   # _CRC_FOLD[j][b] = (b(x) x^(8j + 7)) mod P
cdef uint8_t _CRC_VERSION[1024]  # (v(x) x^135) mod P
cdef uint8_t _CRC_PAD[4]         # (pad(x) x^5) mod P

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
            w = _GF_MUL[w][5]
        for i in range(32):
            _W[p][i] = _GF_MUL[w][i]
    # Pair tables: text positions (2k, 2k+1) hold 10 bits each; one lookup per
    # pair gives both characters.
    for i in range(65536):
        if _DEC[i & 255] < 32 and _DEC[i >> 8] < 32:
            _DEC2[i] = (<uint16_t>_DEC[i & 255] << 5) | _DEC[i >> 8]
        else:
            _DEC2[i] = 0xFFFF
    for i in range(1024):
        _ENC2[i] = _ENC[i >> 5] | (<uint16_t>_ENC[i & 31] << 8)
        _CRC_VERSION[i] = _poly_mod(i, 135)
    for j in range(4):
        for i in range(256):
            _CRC_FOLD[j][i] = _poly_mod(i, 8 * j + 7)
    for i in range(4):
        _CRC_PAD[i] = _poly_mod(i, 5)


cdef uint8_t _poly_mod(uint64_t value, int shift):
    """(value(x) * x^shift) mod x^5 + x^2 + 1, bit by bit (tables only)."""
    cdef uint8_t r = 0
    cdef int i, k
    for i in range(63, -1, -1):       # Horner over value's bits, high to low
        r = (r << 1) | ((value >> i) & 1)
        if r & 32:
            r ^= 0x25
    for k in range(shift):
        r <<= 1
        if r & 32:
            r ^= 0x25
    return r


_build_tables()


# ---------------------------------------------------------------- helpers
cdef inline uint64_t _load_be64(const uint8_t* p) noexcept nogil:
    cdef uint64_t v
    memcpy(&v, p, 8)
    return sg_bswap64(v)

cdef inline void _store_be64(uint8_t* p, uint64_t v) noexcept nogil:
    v = sg_bswap64(v)
    memcpy(p, &v, 8)


cdef inline uint8_t _crc_block(uint64_t hi, uint64_t lo) noexcept nogil:
    """(C(x) x^7) mod P for the block C = hi:lo (bit i of C = coefficient of x^i)."""
    cdef uint64_t f = ((lo & 0x7FFFFFFF) ^ ((lo >> 31) & 0x7FFFFFFF)
                       ^ (((lo >> 62) | (hi << 2)) & 0x7FFFFFFF)
                       ^ ((hi >> 29) & 0x7FFFFFFF) ^ (hi >> 60))
    return (_CRC_FOLD[0][f & 255] ^ _CRC_FOLD[1][(f >> 8) & 255]
            ^ _CRC_FOLD[2][(f >> 16) & 255] ^ _CRC_FOLD[3][f >> 24])


cdef inline uint64_t _group_text(uint64_t g) noexcept nogil:
    """8 characters (as little-endian bytes of a uint64) for the 40-bit group g."""
    return (<uint64_t>_ENC2[(g >> 30) & 1023] | (<uint64_t>_ENC2[(g >> 20) & 1023] << 16)
            | (<uint64_t>_ENC2[(g >> 10) & 1023] << 32) | (<uint64_t>_ENC2[g & 1023] << 48))


cdef inline void _encode_one(const uint8_t* c, uint16_t vtext, uint8_t vcheck,
                             uint8_t* out) noexcept nogil:
    """Write the 29 characters of block ``c``; ``vtext`` and ``vcheck`` are the
    version pair's two characters and its CRC contribution.

    Three 40-bit groups (bytes 0-4, 5-9, 10-14) give 8 characters each; byte 15
    gives the last pair, its second symbol padded with two zero bits. Every table
    load happens before the first store: a store through a uint8_t pointer may
    alias anything, so the compiler could not move loads above it.
    """
    cdef uint64_t hi = _load_be64(c), lo = _load_be64(c + 8)
    cdef uint64_t w0 = _group_text(hi >> 24)
    cdef uint64_t w1 = _group_text(((hi & 0xFFFFFF) << 16) | (lo >> 48))
    cdef uint64_t w2 = _group_text((lo >> 8) & <uint64_t>0xFFFFFFFFFFULL)
    cdef uint16_t t = _ENC2[(lo & 0xFF) << 2]
    cdef uint8_t chk = _ENC[_crc_block(hi, lo) ^ vcheck]
    memcpy(out, &vtext, 2)
    memcpy(out + 2, &w0, 8)
    memcpy(out + 10, &w1, 8)
    memcpy(out + 18, &w2, 8)
    memcpy(out + 26, &t, 2)
    out[28] = chk


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
    # written so that nothing can wrap around in uint64 arithmetic
    if n and (first_serial < 1 or first_serial > _MAX_SERIAL
              or <uint64_t>(n - 1) > _MAX_SERIAL - first_serial):
        raise ValueError("serial range outside 1 .. 2^56-1")
    # byte 0 is the header; serials stay under 2^56, so OR-ing the header into the
    # top byte of the big-endian 64-bit word packs header and serial in one store.
    cdef uint64_t head = (<uint64_t>((_FORMAT_VERSION << 4) | level)) << 56
    if n == 0:
        return
    # Raw pointer arithmetic: out is C-contiguous N x 16 (checked by the
    # memoryview type), and a local pointer cannot be aliased by the stores.
    cdef uint8_t* row = &out[0, 0]
    with nogil:
        for i in range(n):
            _store_be64(row, head | (first_serial + <uint64_t>i))
            _store_be64(row + 8, _REDUNDANCY)
            row += 16


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
            _store_be64(&out[i, 0], ((<uint64_t>((_FORMAT_VERSION << 4) | levels[i])) << 56) | serials[i])
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
    cdef uint16_t vtext = _ENC2[key_version]
    cdef uint8_t vcheck = _CRC_VERSION[key_version]
    if n == 0:
        return
    cdef const uint8_t* src = &blocks[0, 0]
    cdef uint8_t* dst = &out[0, column]
    cdef Py_ssize_t stride = out.strides[0]
    with nogil:
        for i in range(n):
            _encode_one(src, vtext, vcheck, dst)
            src += 16
            dst += stride


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


cdef enum:
    _NOT_PLAIN = 0xFF


cdef inline uint8_t _decode_pairs(const uint16_t* pair, uint8_t check, uint8_t* block,
                                  uint16_t* version) noexcept nogil:
    """14 symbol pairs (10 bits each) and the check symbol -> block and version.

    Returns ST_OK, ST_TYPO or ST_MALFORMED. The check is tested first, so a
    mistyped code is a typo whatever else it hits.
    """
    cdef uint64_t g0, g1, g2, hi, lo
    g0 = (<uint64_t>pair[1] << 30) | (<uint64_t>pair[2] << 20) | (<uint64_t>pair[3] << 10) | pair[4]
    g1 = (<uint64_t>pair[5] << 30) | (<uint64_t>pair[6] << 20) | (<uint64_t>pair[7] << 10) | pair[8]
    g2 = (<uint64_t>pair[9] << 30) | (<uint64_t>pair[10] << 20) | (<uint64_t>pair[11] << 10) | pair[12]
    # bytes 0-7: group 0 and the top 3 bytes of group 1; bytes 8-15: the low 2
    # bytes of group 1, group 2 and the last byte.
    hi = (g0 << 24) | (g1 >> 16)
    lo = ((g1 & 0xFFFF) << 48) | (g2 << 8) | (pair[13] >> 2)
    version[0] = pair[0]
    if (_crc_block(hi, lo) ^ _CRC_VERSION[pair[0]] ^ _CRC_PAD[pair[13] & 3]) != check:
        return ST_TYPO
    if (pair[13] & 3) or pair[0] == 0:
        return ST_MALFORMED
    _store_be64(block, hi)
    _store_be64(block + 8, lo)
    return ST_OK


cdef inline uint8_t _decode_symbols(const uint8_t* sym, uint8_t* block,
                                    uint16_t* version) noexcept nogil:
    """29 symbol values (0..31) -> block and version (the general path)."""
    cdef uint16_t pair[14]
    cdef int k
    for k in range(14):
        pair[k] = (<uint16_t>sym[2 * k] << 5) | sym[2 * k + 1]
    return _decode_pairs(pair, sym[28], block, version)


cdef inline uint8_t _decode_plain(const uint8_t* p, uint8_t* block,
                                  uint16_t* version) noexcept nogil:
    """Fast path: p[0:29] are 29 symbol characters (no hyphen, space or URL).

    Returns _NOT_PLAIN when any character is not a symbol, for the general path.
    """
    cdef uint16_t pair[14]
    cdef uint16_t two, bad = 0
    cdef uint8_t check
    cdef int k
    # One lookup per two characters: the pair table's live entries (digits and
    # letters only) span a few KB, so it stays in L1 in practice.
    for k in range(14):
        two = p[2 * k] | (<uint16_t>p[2 * k + 1] << 8)   # one 16-bit load on x86
        pair[k] = _DEC2[two]
        bad |= pair[k]
    check = _DEC[p[28]]
    if (bad & 0xFC00) or (check & 0xE0):   # a non-symbol character somewhere
        return _NOT_PLAIN
    return _decode_pairs(pair, check, block, version)


cdef uint8_t _decode_one(const uint8_t* p, Py_ssize_t s, Py_ssize_t e,
                         uint8_t* block, uint16_t* version) noexcept nogil:
    """Decode text p[s:e] into ``block``; return ST_OK, ST_TYPO or ST_MALFORMED.

    Reads only p[s:e]: the caller guarantees 0 <= s <= e <= len(buffer).
    """
    cdef uint8_t sym[_CODE_LEN]
    cdef Py_ssize_t i, k
    cdef uint8_t v, r
    if e - s == _CODE_LEN:
        r = _decode_plain(p + s, block, version)
        if r != _NOT_PLAIN:
            return r
    # Trim spaces and tabs, then reduce a URL to its last path segment.
    while s < e and (p[s] == 32 or p[s] == 9):
        s += 1
    # trailing NULs too: fixed-width numpy 'S' arrays pad with them
    while e > s and (p[e - 1] == 32 or p[e - 1] == 9 or p[e - 1] == 0):
        e -= 1
    # A URL: drop the query and fragment first, then keep the last path segment.
    i = s
    while i < e:
        if p[i] == 63 or p[i] == 35:   # '?' or '#'
            e = i
            break
        i += 1
    i = e - 1
    while i >= s:
        if p[i] == 47:       # '/'
            s = i + 1
            break
        i -= 1
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
    return _decode_symbols(sym, block, version)


@cython.boundscheck(False)
@cython.wraparound(False)
def decode_lines(const uint8_t[::1] buf not None, Py_ssize_t offset,
                 uint8_t[:, ::1] blocks not None, uint16_t[::1] versions not None,
                 uint8_t[::1] status not None, uint8_t[::1] seen not None):
    """Split buf[offset:] into lines and decode them into the given arrays.

    Lines follow ``split_lines``. Fills at most len(status) lines and returns
    (lines_decoded, next_offset); next_offset == len(buf) when all were read, so a
    caller with too small arrays grows them and calls again from next_offset.
    ``seen[v]`` is set to 1 for the key version v of every line that decoded OK.
    One pass; a line of exactly 29 symbol characters takes the fast path.
    """
    cdef Py_ssize_t n = buf.shape[0], cap = status.shape[0], i = offset, k = 0, e, t
    if blocks.shape[0] < cap or blocks.shape[1] != 16 or versions.shape[0] < cap:
        raise ValueError("blocks (N x 16), versions (N) and status (N) disagree")
    if seen.shape[0] < 1024:
        raise ValueError("seen must have 1024 entries")
    if offset < 0 or offset > n:
        raise ValueError("offset outside the buffer")
    cdef const uint8_t* p = &buf[0] if n else NULL
    cdef const uint8_t* hit
    cdef uint8_t r
    if cap == 0:
        return 0, offset
    # Raw pointers (all three arrays are C-contiguous with >= cap rows, checked
    # above): locals the compiler knows no byte store can alias.
    cdef uint8_t* bl = &blocks[0, 0]
    cdef uint16_t* ver = &versions[0]
    cdef uint8_t* st = &status[0]
    cdef uint8_t* sn = &seen[0]
    with nogil:
        while i < n and k < cap:
            t = i + _CODE_LEN
            if t <= n and (t == n or p[t] == 10 or (p[t] == 13 and (t + 1 == n or p[t + 1] == 10))):
                r = _decode_plain(p + i, bl + 16 * k, ver + k)
                if r != _NOT_PLAIN:
                    st[k] = r
                    if r == ST_OK:
                        sn[ver[k]] = 1
                    k += 1
                    if t == n:
                        i = n
                    elif p[t] == 10:
                        i = t + 1
                    else:                       # '\r', then '\n' or the end
                        i = t + 2 if t + 1 < n else n
                    continue
            hit = <const uint8_t*>memchr(p + i, 10, n - i)
            e = (hit - p) if hit != NULL else n
            t = e - 1 if e > i and p[e - 1] == 13 else e
            r = _decode_one(p, i, t, bl + 16 * k, ver + k)
            st[k] = r
            if r == ST_OK:
                sn[ver[k]] = 1
            k += 1
            i = e + 1 if hit != NULL else n
    return k, i


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


cdef inline uint8_t _unpack_row(const uint8_t* row, uint64_t* serial,
                                uint8_t* level) noexcept nogil:
    """Authenticate one decrypted block: ST_OK (serial, level set) or ST_COUNTERFEIT."""
    cdef uint64_t head = _load_be64(row)
    cdef uint8_t lvl = (head >> 56) & 15
    if (_load_be64(row + 8) != _REDUNDANCY or (head >> 60) != _FORMAT_VERSION
            or lvl < 1 or lvl > 3):
        return ST_COUNTERFEIT
    serial[0] = head & _MAX_SERIAL
    level[0] = lvl
    return ST_OK


cdef struct Ranges:
    # The issued ranges, sorted by first serial and disjoint (from the ledger).
    const uint64_t* firsts
    const uint64_t* lasts
    const uint16_t* versions
    const uint8_t* levels
    Py_ssize_t m


cdef inline Py_ssize_t _find_range(uint64_t s, const Ranges* rg, Py_ssize_t hint) noexcept nogil:
    """Index of the range holding serial s, or -1. Codes usually arrive in
    issuance order, so ``hint`` (the last hit) is tried first."""
    cdef Py_ssize_t lo = 0, hi = rg.m, mid
    if hint >= 0 and rg.firsts[hint] <= s and s <= rg.lasts[hint]:
        return hint
    while lo < hi:                 # greatest index with firsts[idx] <= s
        mid = (lo + hi) >> 1
        if rg.firsts[mid] <= s:
            lo = mid + 1
        else:
            hi = mid
    lo -= 1
    return lo if lo >= 0 and s <= rg.lasts[lo] else -1


cdef inline uint8_t _match_range(uint64_t s, uint16_t version, uint8_t level, const Ranges* rg,
                                 Py_ssize_t* hint) noexcept nogil:
    """Status of an authentic block against the ledger; sets hint to its range.

    NOT_ISSUED when no range holds the serial; COUNTERFEIT when the range was
    reserved under another key version or for another level (only a holder of a
    key could have made such a block).
    """
    hint[0] = _find_range(s, rg, hint[0])
    if hint[0] < 0:
        return ST_NOT_ISSUED
    if rg.versions[hint[0]] != version or rg.levels[hint[0]] != level:
        return ST_COUNTERFEIT
    return ST_OK


cdef Ranges _ranges(const uint64_t[::1] firsts, const uint64_t[::1] lasts,
                    const uint16_t[::1] versions, const uint8_t[::1] levels) except *:
    cdef Ranges rg
    rg.m = firsts.shape[0]
    if lasts.shape[0] != rg.m or versions.shape[0] != rg.m or levels.shape[0] != rg.m:
        raise ValueError("the range arrays must have the same length")
    rg.firsts = &firsts[0] if rg.m else NULL
    rg.lasts = &lasts[0] if rg.m else NULL
    rg.versions = &versions[0] if rg.m else NULL
    rg.levels = &levels[0] if rg.m else NULL
    return rg


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
    with nogil:
        for i in range(n):
            if status[i] == ST_OK:
                status[i] = _unpack_row(&plain[i, 0], &serials[i], &levels[i])
    return serials_arr, levels_arr


@cython.boundscheck(False)
@cython.wraparound(False)
def lookup_ranges(const uint64_t[::1] serials not None, const uint16_t[::1] versions not None,
                  const uint8_t[::1] levels not None, uint8_t[::1] status not None,
                  const uint64_t[::1] firsts not None, const uint64_t[::1] lasts not None,
                  const uint16_t[::1] range_versions not None,
                  const uint8_t[::1] range_levels not None):
    """Find each OK serial's issued range; return int64[N] range index (-1: none).

    A serial in no range becomes NOT_ISSUED; one whose range was reserved under
    another key version or for another level becomes COUNTERFEIT.
    """
    cdef Py_ssize_t n = serials.shape[0], i, r = -1
    if versions.shape[0] != n or levels.shape[0] != n or status.shape[0] != n:
        raise ValueError("serials, versions, levels and status must have the same length")
    cdef Ranges rg = _ranges(firsts, lasts, range_versions, range_levels)
    out_arr = np.full(n, -1, dtype=np.int64)
    cdef int64_t[::1] out = out_arr
    with nogil:
        for i in range(n):
            if status[i] != ST_OK:
                continue
            status[i] = _match_range(serials[i], versions[i], levels[i], &rg, &r)
            if status[i] == ST_OK:
                out[i] = r
    return out_arr


@cython.boundscheck(False)
@cython.wraparound(False)
def resolve_codes(const uint8_t[:, ::1] plain not None, const uint16_t[::1] versions not None,
                  uint8_t[::1] status not None, const uint64_t[::1] firsts not None,
                  const uint64_t[::1] lasts not None, const uint16_t[::1] range_versions not None,
                  const uint8_t[::1] range_levels not None, const int64_t[::1] range_lines not None,
                  uint64_t[::1] serials not None, uint8_t[::1] levels not None,
                  int64_t[::1] lines not None, uint8_t[::1] hits not None):
    """unpack_blocks and lookup_ranges in one pass, writing every row's outputs.

    For each of the N rows: serials, levels and lines get the serial, level and
    product line of a row that ends GENUINE (OK), and 0, 0, -1 for any other;
    hits[r] is set to 1 when a genuine code fell in range r (never cleared).
    """
    cdef Py_ssize_t n = plain.shape[0], i, r = -1
    if (plain.shape[1] != 16 or versions.shape[0] != n or status.shape[0] != n
            or serials.shape[0] != n or levels.shape[0] != n or lines.shape[0] != n):
        raise ValueError("plain (N x 16), versions, status and the outputs (N) disagree")
    cdef Ranges rg = _ranges(firsts, lasts, range_versions, range_levels)
    if range_lines.shape[0] != rg.m or hits.shape[0] != rg.m:
        raise ValueError("range_lines and hits must have one entry per range")
    cdef uint64_t serial
    cdef uint8_t level
    with nogil:
        for i in range(n):
            serials[i] = 0
            levels[i] = 0
            lines[i] = -1
            if status[i] != ST_OK:
                continue
            status[i] = _unpack_row(&plain[i, 0], &serial, &level)
            if status[i] != ST_OK:
                continue
            status[i] = _match_range(serial, versions[i], level, &rg, &r)
            if status[i] == ST_OK:
                serials[i] = serial
                levels[i] = level
                lines[i] = range_lines[r]
                hits[r] = 1


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
