"""Property tests: the Cython core (scangate._core), and scangate.codes's verify
on each of its paths, against the plain-Python reference of code format v1
(tests/reference_format.py, written from docs/code-format.md)."""
from __future__ import annotations

import itertools
import os
import random
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from scangate import CodeStatus, codes
from scangate import _core as core
from scangate.keys import Keyring, KeyVersion
from scangate.store import RangeTable
from verify_paths import verify_path  # noqa: F401  (the fixture)

try:
    import reference_format as ref
except ImportError:  # tests/ made a package
    from tests import reference_format as ref

SETTINGS = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.fixture(scope="module", autouse=True)
def on_each_verify_path(verify_path: str) -> str:
    """Every test here runs on each verify path of scangate.codes (tests/verify_paths.py):
    the tests of codes.verify_text and verify_spans take it; the core's own kernels
    have one path."""
    return verify_path

STATUS_NAME = {
    core.OK: ref.OK,
    core.TYPO: ref.TYPO,
    core.MALFORMED: ref.MALFORMED,
    core.COUNTERFEIT: ref.COUNTERFEIT,
}

# ---------------------------------------------------------------- strategies
serials = st.one_of(
    st.integers(1, ref.MAX_SERIAL),
    st.sampled_from([1, 2, 255, 256, 2**32, 2**48, ref.MAX_SERIAL - 1, ref.MAX_SERIAL]),
)
levels = st.sampled_from(ref.LEVELS)
key_versions = st.one_of(st.integers(1, ref.MAX_KEY_VERSION), st.sampled_from([1, 31, 32, 33, 1023]))
keys = st.binary(min_size=16, max_size=16)
blocks16 = st.binary(min_size=16, max_size=16)
symbol_values = st.integers(0, 31)


# ---------------------------------------------------------------- core helpers
def core_pack_serials(pairs):
    s = np.array([p[0] for p in pairs], dtype=np.uint64)
    lv = np.array([p[1] for p in pairs], dtype=np.uint8)
    out = np.zeros((len(pairs), 16), dtype=np.uint8)
    core.pack_serials(s, lv, out)
    return out


def core_encode(blocks: list[bytes], key_version: int) -> list[str]:
    arr = np.frombuffer(b"".join(blocks), dtype=np.uint8).reshape(len(blocks), 16).copy()
    out = np.zeros((len(blocks), core.CODE_LEN), dtype=np.uint8)
    core.encode_text(arr, key_version, out)
    return [bytes(row).decode("ascii") for row in out]


def core_decode(texts):
    """Decode each text (str or bytes) in one decode_spans call.

    The texts are laid out in one buffer separated by junk that would change the
    result if the core read outside a span ("Z/" before: a URL separator and a
    valid symbol; "Q?" after).
    """
    buf = bytearray()
    starts, ends = [], []
    for t in texts:
        b = t.encode("utf-8", "surrogatepass") if isinstance(t, str) else bytes(t)
        buf += b"Z/"
        starts.append(len(buf))
        buf += b
        ends.append(len(buf))
        buf += b"Q?"
    blocks, versions, status = core.decode_spans(
        np.frombuffer(bytes(buf), dtype=np.uint8),
        np.array(starts, dtype=np.int64),
        np.array(ends, dtype=np.int64),
    )
    return blocks, versions, status


def ecb_encrypt_many(key: bytes, plain: np.ndarray) -> np.ndarray:
    return np.frombuffer(
        b"".join(ref.aes_encrypt(key, bytes(row)) for row in plain), dtype=np.uint8
    ).reshape(-1, 16).copy()


def ecb_decrypt_many(key: bytes, blocks: np.ndarray) -> np.ndarray:
    return np.frombuffer(
        b"".join(ref.aes_decrypt(key, bytes(row)) for row in blocks), dtype=np.uint8
    ).reshape(-1, 16).copy()


def to_syms(text: str) -> list[int]:
    return [ref.ALPHABET.index(ch) for ch in text]


def from_syms(syms) -> str:
    return "".join(ref.ALPHABET[s] for s in syms)


@st.composite
def valid_texts(draw):
    """A genuine text: (text, ciphertext block, key version)."""
    block = draw(blocks16)
    version = draw(key_versions)
    return ref.encode_text(block, version), block, version


# ---------------------------------------------------------------- the oracle itself
def test_reference_field_axioms():
    """The reference GF(32): commutative, associative, distributive, a of order 31."""
    els = range(32)
    for x, y in itertools.product(els, els):
        assert ref.gf_mul(x, y) == ref.gf_mul(y, x)
    for x, y, z in itertools.product(els, els, els):
        assert ref.gf_mul(ref.gf_mul(x, y), z) == ref.gf_mul(x, ref.gf_mul(y, z))
        assert ref.gf_mul(x, y ^ z) == ref.gf_mul(x, y) ^ ref.gf_mul(x, z)
    powers = [ref.gf_pow(2, n) for n in range(31)]
    assert sorted(powers) == list(range(1, 32))  # a is primitive
    assert ref.gf_pow(2, 31) == 1
    assert ref.gf_pow(2, 5) == 0b00101  # x^5 = x^2 + 1
    assert sorted(ref.gf_pow(ref.GF_B, n) for n in range(31)) == list(range(1, 32))  # b too


@settings(max_examples=300, **SETTINGS)
@given(st.lists(st.integers(0, 31), min_size=28, max_size=28))
def test_check_symbol_is_crc5(symbols):
    """The spec's two definitions agree: weighted sum with b = x^5, and CRC-5."""
    assert ref.check_symbol(symbols) == ref.crc5(symbols)
    assert core.check_symbol(np.array(symbols, np.uint8)) == ref.crc5(symbols)


@settings(max_examples=100, **SETTINGS)
@given(valid_texts())
def test_reference_text_round_trip(code):
    text, block, version = code
    assert len(text) == 29 and set(text) <= set(ref.ALPHABET)
    assert ref.weighted_sum(to_syms(text)) == 0
    assert ref.parse_text(text) == ref.Parsed(ref.OK, version, block)


# ---------------------------------------------------------------- packing
@settings(max_examples=100, **SETTINGS)
@given(st.lists(st.tuples(serials, levels), min_size=1, max_size=40))
def test_pack_serials_matches_reference(pairs):
    out = core_pack_serials(pairs)
    assert [bytes(row) for row in out] == [ref.pack(s, lv) for s, lv in pairs]


@settings(max_examples=100, **SETTINGS)
@given(st.integers(1, 40), levels, st.data())
def test_pack_blocks_matches_reference(n, level, data):
    first = data.draw(st.one_of(st.integers(1, ref.MAX_SERIAL - n + 1),
                                st.just(ref.MAX_SERIAL - n + 1), st.just(1)))
    out = np.zeros((n, 16), dtype=np.uint8)
    core.pack_blocks(first, level, out)
    assert [bytes(row) for row in out] == [ref.pack(first + i, level) for i in range(n)]


@pytest.mark.parametrize("serial,level", [(0, 1), (2**56, 1), (2**64 - 1, 2), (5, 0), (5, 4), (5, 255)])
def test_pack_serials_rejects_out_of_range(serial, level):
    with pytest.raises(ValueError):
        core_pack_serials([(serial, level)])


@pytest.mark.parametrize("first,n", [(0, 1), (2**56, 1), (2**56 - 1, 2), (2**56 - 10, 11)])
def test_pack_blocks_rejects_out_of_range(first, n):
    with pytest.raises(ValueError):
        core.pack_blocks(first, 1, np.zeros((n, 16), dtype=np.uint8))


@pytest.mark.parametrize("first,n", [(2**64 - 1, 2), (2**64 - 5, 10)])
def test_pack_blocks_rejects_wrapping_first_serial(first, n):
    with pytest.raises(ValueError):
        core.pack_blocks(first, 1, np.zeros((n, 16), dtype=np.uint8))


@pytest.mark.parametrize("level", [0, 4, -1])
def test_pack_blocks_rejects_bad_level(level):
    with pytest.raises(ValueError):
        core.pack_blocks(1, level, np.zeros((1, 16), dtype=np.uint8))


# ---------------------------------------------------------------- text encoding
@settings(max_examples=100, **SETTINGS)
@given(keys, key_versions, st.lists(st.tuples(serials, levels), min_size=1, max_size=20))
def test_encode_text_matches_reference(key, version, pairs):
    cipher = ecb_encrypt_many(key, core_pack_serials(pairs))
    got = core_encode([bytes(row) for row in cipher], version)
    assert got == [ref.make_code(key, version, s, lv) for s, lv in pairs]


@settings(max_examples=200, **SETTINGS)
@given(st.lists(blocks16, min_size=1, max_size=20), key_versions)
def test_encode_text_arbitrary_blocks(blocks, version):
    assert core_encode(blocks, version) == [ref.encode_text(b, version) for b in blocks]


@settings(max_examples=50, **SETTINGS)
@given(st.lists(blocks16, min_size=1, max_size=5), key_versions, st.integers(0, 20), st.integers(0, 20))
def test_encode_text_column_leaves_other_bytes(blocks, version, column, extra):
    arr = np.frombuffer(b"".join(blocks), dtype=np.uint8).reshape(-1, 16).copy()
    width = column + core.CODE_LEN + extra
    out = np.full((len(blocks), width), ord("#"), dtype=np.uint8)
    core.encode_text(arr, version, out, column)
    for row, b in zip(out, blocks):
        raw = bytes(row)
        assert raw[:column] == b"#" * column
        assert raw[column + 29:] == b"#" * extra
        assert raw[column:column + 29].decode() == ref.encode_text(b, version)


@pytest.mark.parametrize("version", [0, 1024, -1])
def test_encode_text_rejects_bad_version(version):
    with pytest.raises(ValueError):
        core.encode_text(np.zeros((1, 16), np.uint8), version, np.zeros((1, 29), np.uint8))


# ---------------------------------------------------------------- round trip
def assert_decodes_to(texts, block, version):
    blocks, versions, status = core_decode(texts)
    for i, t in enumerate(texts):
        assert status[i] == core.OK, t
        assert bytes(blocks[i]) == block, t
        assert versions[i] == version, t
        assert ref.parse_text(t) == ref.Parsed(ref.OK, version, block), t


@settings(max_examples=100, **SETTINGS)
@given(keys, key_versions, st.lists(st.tuples(serials, levels), min_size=1, max_size=20))
def test_round_trip_core(key, version, pairs):
    plain = core_pack_serials(pairs)
    cipher = ecb_encrypt_many(key, plain)
    texts = core_encode([bytes(row) for row in cipher], version)
    blocks, versions, status = core_decode(texts)
    assert (status == core.OK).all()
    assert (versions == version).all()
    assert np.array_equal(blocks, cipher)
    serials_out, levels_out = core.unpack_blocks(ecb_decrypt_many(key, blocks), status)
    assert (status == core.OK).all()
    assert [int(s) for s in serials_out] == [p[0] for p in pairs]
    assert [int(lv) for lv in levels_out] == [p[1] for p in pairs]
    for t, (s, lv) in zip(texts, pairs):
        assert ref.decode(t, {version: key}) == ref.Decoded(ref.OK, version, s, lv)


ALIASES = {"0": ["0", "O", "o"], "1": ["1", "I", "i", "L", "l"]}


SEPARATORS = ["", "", "", "-", "--"]
PREFIXES = ["HTTPS://SCN.EXAMPLE.COM/", "https://scn.example.com/", "http://x.y/a/b/c/",
            "HTTPS://SCN.EXAMPLE.COM/V/", "/"]
SUFFIXES = ["", "?", "?src=qr", "#top", "?a=1#frag", "#a?b"]


@st.composite
def mangled(draw, text: str):
    """The same code as a person or a scanner might present it: random case,
    Crockford aliases, hyphens, a URL around it, spaces and tabs outside."""
    forms = draw(st.lists(st.integers(0, 4), min_size=29, max_size=29))
    seps = draw(st.lists(st.sampled_from(SEPARATORS), min_size=30, max_size=30))
    out = [seps[29]]
    for ch, form, sep in zip(text, forms, seps):
        choices = ALIASES.get(ch, [ch, ch.lower()])
        out.append(choices[form % len(choices)] + sep)
    body = "".join(out)
    if draw(st.booleans()):
        body = draw(st.sampled_from(PREFIXES)) + body + draw(st.sampled_from(SUFFIXES))
    ws = st.text(alphabet=" \t", max_size=3)
    return draw(ws) + body + draw(ws)


@settings(max_examples=150, **SETTINGS)
@given(valid_texts(), st.data())
def test_round_trip_mangled(code, data):
    text, block, version = code
    variants = [data.draw(mangled(text)) for _ in range(4)]
    variants += [text.lower(), "-".join(text), f"  https://scn.example.com/{text}?x=1\t"]
    assert_decodes_to(variants, block, version)


# ---------------------------------------------------------------- decode status
def assert_same_decode(texts):
    blocks, versions, status = core_decode(texts)
    for i, t in enumerate(texts):
        want = ref.parse_text(t)
        assert STATUS_NAME[int(status[i])] == want.status, t
        if want.status in (ref.OK, ref.TYPO):
            assert versions[i] == want.version, t
        if want.status == ref.OK:
            assert bytes(blocks[i]) == want.block, t


@settings(max_examples=300, **SETTINGS)
@given(st.lists(st.text(max_size=40), min_size=1, max_size=10))
def test_decode_status_random_text(texts):
    assert_same_decode(texts)


@settings(max_examples=300, **SETTINGS)
@given(st.lists(st.binary(max_size=40), min_size=1, max_size=10))
def test_decode_status_random_binary(texts):
    assert_same_decode(texts)


code_chars = ref.ALPHABET + ref.ALPHABET.lower() + "OoIiLlUu-/?# \t.:"


@settings(max_examples=300, **SETTINGS)
@given(st.lists(st.text(alphabet=code_chars, min_size=26, max_size=34), min_size=1, max_size=10))
def test_decode_status_near_shape(texts):
    assert_same_decode(texts)


@st.composite
def shaped_texts(draw):
    """29 symbols of the alphabet; half of them with a correct check symbol, so
    that padding bits and version 0 are reached."""
    syms = draw(st.lists(symbol_values, min_size=28, max_size=28))
    if draw(st.booleans()):
        syms[0] = syms[1] = 0                       # key version 0
    if draw(st.booleans()):
        syms[27] &= ~3                              # zero padding bits
    k = ref.check_symbol(syms) if draw(st.booleans()) else draw(symbol_values)
    return from_syms(syms + [k])


@settings(max_examples=200, **SETTINGS)
@given(st.lists(shaped_texts(), min_size=1, max_size=10))
def test_decode_status_shaped(texts):
    assert_same_decode(texts)
    assert_same_decode([t.lower() for t in texts])


@settings(max_examples=200, **SETTINGS)
@given(valid_texts(), st.lists(st.lists(st.sampled_from(
    ["CODE", "/", "/", "?", "#", "x", "-", " ", "\t", "HTTPS://H", "a=1", "CODE"]), max_size=6),
    min_size=1, max_size=8))
def test_decode_status_url_pieces(code, layouts):
    """A genuine text among URL separators: where the last '/' and the first '?'
    or '#' fall decides what is decoded, and the core must cut where the
    reference does."""
    text = code[0]
    texts = ["".join(text if piece == "CODE" else piece for piece in layout) for layout in layouts]
    assert_same_decode(texts)


@pytest.mark.parametrize("url,ok", [
    ("https://scn.example.com/{}", True),
    ("https://scn.example.com/p/{}?x=1#y", True),
    ("https://scn.example.com/{}#frag?x", True),
    ("/{}", True),
    ("{}?", True),
    ("{}/", False),                     # the last segment is empty
    ("https://scn.example.com/{}/x", False),
    # query and fragment are cut first, so a '/' inside them is not a separator
    ("https://scn.example.com/{}?next=/a", True),
    ("https://scn.example.com/{}#a/b", True),
])
def test_decode_url_forms(url, ok):
    text = ref.encode_text(bytes(range(16)), 5)
    line = url.format(text)
    want = ref.OK if ok else ref.MALFORMED
    assert ref.parse_text(line).status == want
    _, _, status = core_decode([line])
    assert STATUS_NAME[int(status[0])] == want


def test_decode_precedence_check_before_padding_and_version():
    """Check-symbol mismatch is reported as typo even when padding or version 0
    would also make the text malformed (the core tests the check first)."""
    good = ref.encode_text(bytes(range(16)), 1)
    syms = to_syms(good)
    pad = syms.copy()
    pad[27] |= 1
    pad_ok = pad[:28] + [ref.check_symbol(pad[:28])]
    pad_bad = pad[:28] + [ref.check_symbol(pad[:28]) ^ 1]
    v0 = [0, 0] + syms[2:28]
    v0_ok = v0 + [ref.check_symbol(v0)]
    v0_bad = v0 + [ref.check_symbol(v0) ^ 7]
    texts = [from_syms(t) for t in (pad_ok, pad_bad, v0_ok, v0_bad)]
    want = [ref.MALFORMED, ref.TYPO, ref.MALFORMED, ref.TYPO]
    assert [ref.parse_text(t).status for t in texts] == want
    _, _, status = core_decode(texts)
    assert [STATUS_NAME[int(s)] for s in status] == want


@pytest.mark.parametrize("text", ["", "-", "   ", "https://scn.example.com/", "?", "0" * 28, "0" * 30])
def test_decode_malformed_shapes(text):
    assert ref.parse_text(text).status == ref.MALFORMED
    _, _, status = core_decode([text])
    assert status[0] == core.MALFORMED


# ---------------------------------------------------------------- check symbol
@settings(max_examples=300, **SETTINGS)
@given(st.lists(symbol_values, min_size=28, max_size=28))
def test_check_symbol_matches_reference(syms):
    assert core.check_symbol(np.array(syms, dtype=np.uint8)) == ref.check_symbol(syms)


def test_check_symbol_basis():
    """Every (position, value) pair on its own: the check is linear, so this pins
    down the whole function."""
    for p in range(28):
        for v in range(32):
            syms = [0] * 28
            syms[p] = v
            assert core.check_symbol(np.array(syms, dtype=np.uint8)) == ref.check_symbol(syms)


def test_check_symbol_rejects_bad_input():
    with pytest.raises(ValueError):
        core.check_symbol(np.zeros(27, dtype=np.uint8))
    with pytest.raises(ValueError):
        core.check_symbol(np.full(28, 32, dtype=np.uint8))


def assert_all_typo(texts):
    _, _, status = core_decode(texts)
    bad = [t for t, s in zip(texts, status) if s != core.TYPO]
    assert not bad, bad[:5]
    assert {ref.parse_text(t).status for t in texts} == {ref.TYPO}


@settings(max_examples=15, **SETTINGS)
@given(valid_texts())
def test_every_substitution_is_typo(code):
    text = code[0]
    syms = to_syms(text)
    texts = []
    for p in range(29):
        for v in range(32):
            if v != syms[p]:
                texts.append(from_syms(syms[:p] + [v] + syms[p + 1:]))
    assert len(texts) == 29 * 31
    assert_all_typo(texts)


@settings(max_examples=15, **SETTINGS)
@given(valid_texts())
def test_every_transposition_is_typo(code):
    """Adjacent transpositions and those at every distance up to 28."""
    syms = to_syms(code[0])
    texts = []
    for i, j in itertools.combinations(range(29), 2):
        if syms[i] != syms[j]:
            t = syms.copy()
            t[i], t[j] = t[j], t[i]
            texts.append(from_syms(t))
    assume(texts)
    assert_all_typo(texts)


def test_adjacent_transpositions_exhaustive_pairs():
    """All 32*31 ordered pairs of different symbols, placed at adjacent positions
    p, p+1 of a valid text (check symbol recomputed), then swapped."""
    base = to_syms(ref.encode_text(bytes(16), 1))
    texts = []
    for a, b in itertools.permutations(range(32), 2):
        for p in range(0, 27, 3):
            t = base[:28]
            t[p], t[p + 1] = a, b
            t.append(ref.check_symbol(t))
            assert ref.weighted_sum(t) == 0
            t[p], t[p + 1] = b, a
            texts.append(from_syms(t))
    _, _, status = core_decode(texts)
    assert len(texts) == 32 * 31 * 9
    assert (status == core.TYPO).all()


# ---------------------------------------------------------------- unpack
@settings(max_examples=100, **SETTINGS)
@given(keys, st.lists(st.tuples(serials, levels), min_size=1, max_size=30))
def test_unpack_genuine(key, pairs):
    cipher = ecb_encrypt_many(key, core_pack_serials(pairs))
    status = np.zeros(len(pairs), dtype=np.uint8)
    s_out, l_out = core.unpack_blocks(ecb_decrypt_many(key, cipher), status)
    assert (status == core.OK).all()
    assert [(int(s), int(lv)) for s, lv in zip(s_out, l_out)] == pairs


def test_unpack_random_blocks_are_counterfeit():
    n = 10_000
    plain = np.frombuffer(os.urandom(16 * n), dtype=np.uint8).reshape(n, 16).copy()
    status = np.zeros(n, dtype=np.uint8)
    s_out, l_out = core.unpack_blocks(plain, status)
    assert (status == core.COUNTERFEIT).all()
    assert not s_out.any() and not l_out.any()
    # the same under decryption with a wrong key: genuine ciphertext, other key
    key, other = os.urandom(16), os.urandom(16)
    pairs = [(random.randint(1, ref.MAX_SERIAL), random.choice(ref.LEVELS)) for _ in range(2000)]
    cipher = ecb_encrypt_many(key, core_pack_serials(pairs))
    status = np.zeros(len(pairs), dtype=np.uint8)
    core.unpack_blocks(ecb_decrypt_many(other, cipher), status)
    assert (status == core.COUNTERFEIT).all()


@st.composite
def near_plaintexts(draw):
    """Plaintexts close to valid: any head byte, redundancy right or one byte off."""
    head = draw(st.one_of(st.integers(0, 255), st.sampled_from([0x11, 0x12, 0x13, 0x10, 0x14, 0x21, 0x01])))
    serial = draw(st.one_of(st.just(0), st.integers(0, ref.MAX_SERIAL)))
    tail = bytearray(ref.REDUNDANCY)
    if draw(st.booleans()):
        i = draw(st.integers(0, 7))
        tail[i] ^= draw(st.integers(1, 255))
    return bytes([head]) + serial.to_bytes(7, "big") + bytes(tail)


@settings(max_examples=100, **SETTINGS)
@given(st.lists(near_plaintexts(), min_size=1, max_size=30), st.data())
def test_unpack_matches_reference(plains, data):
    n = len(plains)
    pre = data.draw(st.lists(st.sampled_from([core.OK, core.OK, core.TYPO, core.MALFORMED]),
                             min_size=n, max_size=n))
    arr = np.frombuffer(b"".join(plains), dtype=np.uint8).reshape(n, 16).copy()
    status = np.array(pre, dtype=np.uint8)
    s_out, l_out = core.unpack_blocks(arr, status)
    for i, p in enumerate(plains):
        if pre[i] != core.OK:               # non-OK rows are left alone
            assert status[i] == pre[i] and s_out[i] == 0 and l_out[i] == 0
            continue
        want = ref.unpack(p)
        if want is None:
            assert status[i] == core.COUNTERFEIT
        else:
            assert status[i] == core.OK
            assert (int(s_out[i]), int(l_out[i])) == want


# ---------------------------------------------------------------- ledger lookup
@st.composite
def ledgers(draw):
    """Sorted disjoint ranges [(first, last, version, level)], adjacent ones allowed."""
    parts = draw(st.lists(
        st.tuples(st.integers(0, 50), st.integers(0, 50), st.integers(1, 3), st.integers(1, 3)),
        max_size=15))
    big = draw(st.booleans())
    ranges, pos = [], 1
    for gap, length, version, level in parts:
        scale = draw(st.integers(1, 2**40)) if big else 1
        first = pos + gap * scale
        last = first + length * scale
        if last > ref.MAX_SERIAL:
            break
        ranges.append((first, last, version, level))
        pos = last + 1
    return ranges


def lookup_reference(serial, version, level, ranges):
    for idx, (first, last, rv, rl) in enumerate(ranges):
        if first <= serial <= last:
            return (idx, core.OK) if (rv, rl) == (version, level) else (-1, core.COUNTERFEIT)
    return -1, core.NOT_ISSUED


@settings(max_examples=200, **SETTINGS)
@given(ledgers(), st.data())
def test_lookup_ranges_matches_reference(ranges, data):
    near = [x + d for f, l, _, _ in ranges for x in (f, l) for d in (-1, 0, 1)]
    near = [x for x in near if 0 <= x <= ref.MAX_SERIAL]
    serial_st = st.one_of(st.integers(0, ref.MAX_SERIAL), st.integers(0, 2000),
                          *([st.sampled_from(near)] if near else []))
    queries = data.draw(st.lists(
        st.tuples(serial_st, st.integers(1, 3),
                  st.sampled_from([core.OK, core.OK, core.OK, core.TYPO, core.COUNTERFEIT]),
                  st.integers(1, 3)),
        max_size=60))
    if data.draw(st.booleans()):
        queries.sort()                      # issuance order: exercises the last-hit cache
    n = len(queries)
    s_arr = np.array([q[0] for q in queries], dtype=np.uint64)
    v_arr = np.array([q[1] for q in queries], dtype=np.uint16)
    status = np.array([q[2] for q in queries], dtype=np.uint8)
    l_arr = np.array([q[3] for q in queries], dtype=np.uint8)
    firsts = np.array([r[0] for r in ranges], dtype=np.uint64)
    lasts = np.array([r[1] for r in ranges], dtype=np.uint64)
    rvs = np.array([r[2] for r in ranges], dtype=np.uint16)
    rls = np.array([r[3] for r in ranges], dtype=np.uint8)
    idx = core.lookup_ranges(s_arr, v_arr, l_arr, status, firsts, lasts, rvs, rls)
    assert idx.shape == (n,)
    for i, (s, v, pre, lvl) in enumerate(queries):
        if pre != core.OK:
            assert (int(idx[i]), int(status[i])) == (-1, pre)
        else:
            assert (int(idx[i]), int(status[i])) == lookup_reference(s, v, lvl, ranges), (s, v, lvl)


def test_lookup_ranges_fixed():
    ranges = [(1, 10, 1, 1), (11, 20, 2, 2), (100, 100, 1, 3)]
    queries = [(1, 1, 1), (10, 1, 1), (11, 1, 2), (11, 2, 2), (20, 2, 2), (21, 2, 2), (99, 1, 1),
               (100, 1, 3), (100, 2, 3), (101, 1, 1), (0, 1, 1), (5, 1, 1), (ref.MAX_SERIAL, 1, 1),
               (5, 1, 2), (100, 1, 1)]
    status = np.zeros(len(queries), dtype=np.uint8)
    idx = core.lookup_ranges(
        np.array([q[0] for q in queries], dtype=np.uint64),
        np.array([q[1] for q in queries], dtype=np.uint16),
        np.array([q[2] for q in queries], dtype=np.uint8),
        status,
        np.array([r[0] for r in ranges], dtype=np.uint64),
        np.array([r[1] for r in ranges], dtype=np.uint64),
        np.array([r[2] for r in ranges], dtype=np.uint16),
        np.array([r[3] for r in ranges], dtype=np.uint8),
    )
    O, C, N = core.OK, core.COUNTERFEIT, core.NOT_ISSUED
    assert list(zip(idx.tolist(), status.tolist())) == [
        (0, O), (0, O), (-1, C), (1, O), (1, O), (-1, N), (-1, N), (2, O),
        (-1, C), (-1, N), (-1, N), (0, O), (-1, N), (-1, C), (-1, C)]


# ---------------------------------------------------------------- split_lines
def split_lines_reference(buf: bytes):
    """(start, end) of each line: split at b"\\n"; an empty piece after the last
    newline is no line; one trailing b"\\r" is not part of a line."""
    pieces = buf.split(b"\n")
    if pieces and pieces[-1] == b"":
        pieces.pop()
    spans, pos = [], 0
    for piece in pieces:
        end = pos + len(piece) - (1 if piece.endswith(b"\r") else 0)
        spans.append((pos, end))
        pos += len(piece) + 1
    return spans


line_bytes = st.lists(st.sampled_from([b"\n", b"\r", b"\r\n", b"\n\n", b"a", b"bc", b" ", b""]),
                      max_size=30).map(b"".join)


@settings(max_examples=300, **SETTINGS)
@given(st.one_of(line_bytes, st.binary(max_size=50)))
def test_split_lines_matches_reference(buf):
    starts, ends = core.split_lines(np.frombuffer(buf, dtype=np.uint8))
    assert starts.dtype == np.int64 and ends.dtype == np.int64
    got = list(zip(starts.tolist(), ends.tolist()))
    assert got == split_lines_reference(buf)
    # and the lines read back as str.splitlines would give them for \n / \r\n text
    if b"\r" not in buf.replace(b"\r\n", b""):
        assert [buf[s:e] for s, e in got] == buf.splitlines()


@pytest.mark.parametrize("buf,want", [
    (b"", []), (b"\n", [b""]), (b"a", [b"a"]), (b"a\n", [b"a"]), (b"a\r\n", [b"a"]),
    (b"a\r\nb", [b"a", b"b"]), (b"\n\n", [b"", b""]), (b"a\n\nb\n", [b"a", b"", b"b"]),
    (b"\r\n", [b""]), (b"a\r\r\n", [b"a\r"]),
])
def test_split_lines_fixed(buf, want):
    starts, ends = core.split_lines(np.frombuffer(buf, dtype=np.uint8))
    assert [buf[s:e] for s, e in zip(starts.tolist(), ends.tolist())] == want


@settings(max_examples=50, **SETTINGS)
@given(st.lists(valid_texts(), min_size=1, max_size=10), st.sampled_from([b"\n", b"\r\n"]),
       st.booleans())
def test_split_then_decode_file(codes, newline, final_newline):
    body = newline.join(t.encode() for t, _, _ in codes) + (newline if final_newline else b"")
    buf = np.frombuffer(body, dtype=np.uint8)
    starts, ends = core.split_lines(buf)
    blocks, versions, status = core.decode_spans(buf, starts, ends)
    assert (status == core.OK).all()
    assert [bytes(b) for b in blocks] == [b for _, b, _ in codes]
    assert versions.tolist() == [v for _, _, v in codes]


# ---------------------------------------------------------------- verify, end to end
# scangate.codes.verify_text and verify_spans (the kernels joined: decode, decrypt
# per key version, authenticate, find the range) against the reference, on the
# path the module runs on (on_each_verify_path), in chunks of any size.
VERIFY_KEYS = {1: bytes(range(16)), 2: bytes(range(100, 116))}   # version 3: a key the keyring lacks
OTHER_KEY = bytes(range(200, 216))
REF_STATUS = {ref.TYPO: CodeStatus.TYPO, ref.MALFORMED: CodeStatus.MALFORMED,
              ref.COUNTERFEIT: CodeStatus.COUNTERFEIT, ref.UNKNOWN_KEY: CodeStatus.UNKNOWN_KEY}


def verify_reference(text: str, ranges) -> tuple[int, int, int, int, int]:
    """(status, key version, serial, level, range index or -1) of one text, as
    codes.verify_text gives them (a text of the wrong shape has key version 0)."""
    found = ref.decode(text, VERIFY_KEYS)
    version = found.version or 0
    if found.status != ref.OK:
        return REF_STATUS[found.status], version, 0, 0, -1
    idx, status = lookup_reference(found.serial, version, found.level, ranges)
    if status != core.OK:
        return status, version, 0, 0, -1
    return CodeStatus.GENUINE, version, found.serial, found.level, idx


@st.composite
def verify_batches(draw):
    """(ranges, texts): issued ranges, and texts of codes in and near them under
    every key version (known, unknown, a wrong key), presented as people and
    scanners do, with others of any shape. No text holds a line break: each is
    also one line of a buffer."""
    ranges = draw(ledgers())
    near = [x + d for f, l, _, _ in ranges for x in (f, l) for d in (-1, 0, 1) if 1 <= x + d <= ref.MAX_SERIAL]
    serial = st.one_of(st.integers(1, ref.MAX_SERIAL), *([st.sampled_from(near)] if near else []))
    # under its version's key, or (a counterfeit, or version 3's) another
    code = st.builds(lambda s, lv, v, forged: ref.make_code(OTHER_KEY if forged else VERIFY_KEYS.get(v, OTHER_KEY),
                                                            v, s, lv),
                     serial, levels, st.sampled_from([1, 2, 3]), st.sampled_from([False, False, False, True]))
    # a code as issued: a serial in a range, under the range's version and level
    issued = [st.sampled_from(ranges).flatmap(lambda r: st.builds(
        lambda s: ref.make_code(VERIFY_KEYS.get(r[2], OTHER_KEY), r[2], s, r[3]), st.integers(r[0], r[1])))] \
        if ranges else []
    text = st.one_of(
        code, *issued, *issued, code.flatmap(mangled), *(i.flatmap(mangled) for i in issued),
        # any text a line of UTF-8 can hold (a lone surrogate cannot be one)
        st.text(st.characters(codec="utf-8", exclude_characters="\r\n"), max_size=40),
        st.sampled_from(["", " ", "-", "https://scn.example.com/", "\x00", "\t" * 29]),
    )
    return ranges, draw(st.lists(text, max_size=40))


@settings(max_examples=150, **SETTINGS)
@given(verify_batches(), st.sampled_from([1, 3, 16, codes.VERIFY_CHUNK]))
def test_verify_matches_reference(batch, chunk):
    """A list of str, a buffer of lines, an 'S' array and spans of a buffer give
    the reference's result, row by row, and the ranges hit."""
    ranges, texts = batch
    keys = Keyring(Path("property-test-keys"), {v: KeyVersion(v, 0, k) for v, k in VERIFY_KEYS.items()})
    table = RangeTable(
        0, np.array([r[0] for r in ranges], np.uint64), np.array([r[1] for r in ranges], np.uint64),
        np.array([r[2] for r in ranges], np.uint16), np.array([r[3] for r in ranges], np.uint8),
        np.arange(100, 100 + len(ranges), dtype=np.int64))
    want = [verify_reference(t, ranges) for t in texts]
    status, versions, serials, lvls, idx = (list(col) for col in zip(*want)) if want else ([],) * 5
    hits = [i in idx for i in range(len(ranges))]
    encoded = [t.encode() for t in texts]
    buf = np.frombuffer(b"".join(encoded), np.uint8)
    lengths = np.array([len(e) for e in encoded], np.int64)
    ends = np.cumsum(lengths)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(codes, "VERIFY_CHUNK", chunk)      # chunk boundaries anywhere in a batch
        got = {
            "list": codes.verify_text(texts, keys, table),
            "buffer": codes.verify_text(b"".join(e + b"\n" for e in encoded), keys, table),
            "spans": codes.verify_spans(buf, ends - lengths, ends, keys, table),
        }
        if encoded and not any(e.endswith(b"\x00") for e in encoded):   # an 'S' array holds no trailing NUL
            got["array"] = codes.verify_text(np.array(encoded, f"S{max(1, *map(len, encoded))}"), keys, table)
    for form, v in got.items():
        assert v.status.tolist() == status, form
        assert v.key_version.tolist() == versions, form
        assert v.serial.tolist() == serials, form
        assert v.level.tolist() == lvls, form
        assert v.line_id.tolist() == [i + 100 if i >= 0 else -1 for i in idx], form
        assert v.range_hits.tolist() == hits, form
