"""Verification under hostile and sloppy input: random strings, single-symbol
changes, and a mixed bag of bad lines through the API (bytes, list of str, 'S'
array) and the CLI. Nothing but an issued code may ever come out genuine, bad input
never raises, and every input line gets exactly one status, in order."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import scangate
from scangate import CodeStatus, _core, codes
from scangate.errors import InvalidArgument
from verify_paths import verify_path  # noqa: F401  (the fixture)

try:
    import reference_format as ref
except ImportError:  # tests/ made a package
    from tests import reference_format as ref


@pytest.fixture(scope="module", autouse=True)
def on_each_verify_path(verify_path: str) -> str:
    """Every test here runs on each verify path of scangate.codes (tests/verify_paths.py)."""
    return verify_path


ALPHABET = ref.ALPHABET
ALPHA_U8 = np.frombuffer(ALPHABET.encode(), np.uint8)
# GF(32) multiplication table and position weights, from the reference.
GF_MUL = np.array([[ref.gf_mul(x, y) for y in range(32)] for x in range(32)], np.uint8)
WEIGHTS = np.array(ref.WEIGHTS, np.uint8)

G = CodeStatus.GENUINE
TY = CodeStatus.TYPO
MAL = CodeStatus.MALFORMED
CF = CodeStatus.COUNTERFEIT
UK = CodeStatus.UNKNOWN_KEY
NI = CodeStatus.NOT_ISSUED


def labels(result: scangate.VerifyResult) -> list[str]:
    return [CodeStatus(int(s)).label for s in result.status]


def check_symbols(values: np.ndarray) -> np.ndarray:
    """Vectorised K for rows of 28 symbol values (reference GF(32) table)."""
    k = np.zeros(values.shape[0], np.uint8)
    for p in range(ref.CODE_LEN - 1):
        k ^= GF_MUL[WEIGHTS[p]][values[:, p]]
    return k


def random_values(n: int, seed: int, *, version: int = 1) -> np.ndarray:
    """(n x 29) symbol values: key version ``version`` then 27 random symbols."""
    rng = np.random.default_rng(seed)
    values = np.empty((n, ref.CODE_LEN), np.uint8)
    values[:, 0], values[:, 1] = version >> 5, version & 31
    values[:, 2:] = rng.integers(0, 32, (n, ref.CODE_LEN - 2), dtype=np.uint8)
    return values


def to_buffer(values: np.ndarray) -> bytes:
    lines = np.empty((values.shape[0], ref.CODE_LEN + 1), np.uint8)
    lines[:, :-1] = ALPHA_U8[values]
    lines[:, -1] = ord("\n")
    return lines.tobytes()


def encode(block: bytes, version: int) -> str:
    """Text of a cipher block under ``version`` via the core's encoder."""
    out = np.zeros((1, _core.CODE_LEN), np.uint8)
    _core.encode_text(np.frombuffer(block, np.uint8).reshape(1, 16).copy(), version, out)
    return bytes(out[0]).decode("ascii")


def with_check(symbols: list[int]) -> str:
    """A 29-symbol text from 28 symbol values and their correct check symbol."""
    return "".join(ALPHABET[s] for s in symbols) + ALPHABET[ref.check_symbol(symbols)]


# ---------------------------------------------------------------- random strings
N_RANDOM = 1_000_000


def test_random_strings_are_never_genuine(data_dir: scangate.DataDir) -> None:
    data_dir.issue_codes("SKU-R", "item", 1000)  # a non-empty ledger to hit
    values = random_values(N_RANDOM, seed=20240601)
    result = data_dir.verify_codes(to_buffer(values))
    assert len(result) == N_RANDOM
    counts = result.counts()
    assert counts[G] == 0
    assert counts[NI] == 0
    assert counts[UK] == 0
    # A random check symbol is right 1 time in 32: those pass to the padding test
    # (3 in 4 have non-zero padding bits: malformed) and then to decryption
    # (counterfeit). sd(typo) is about 174; the bounds are ~10 sd.
    assert abs(counts[TY] - N_RANDOM * 31 / 32) < 2000, counts
    assert counts[TY] + counts[MAL] + counts[CF] == N_RANDOM
    assert abs(counts[CF] - N_RANDOM / 128) < 900, counts
    assert abs(counts[MAL] - N_RANDOM * 3 / 128) < 1500, counts
    # the typo rows are exactly the rows whose check symbol is wrong
    wrong_check = check_symbols(values[:, :28]) != values[:, 28]
    np.testing.assert_array_equal(result.status == TY, wrong_check)


def test_random_strings_with_correct_check_symbol_are_never_genuine(data_dir: scangate.DataDir) -> None:
    data_dir.issue_codes("SKU-R", "item", 1000)
    values = random_values(N_RANDOM, seed=7)
    # every second row gets zero padding bits, so it reaches decryption
    values[::2, 27] &= 0b11100
    values[:, 28] = check_symbols(values[:, :28])
    # the vectorised table agrees with the reference's own check symbol
    for row in values[:200]:
        assert ref.check_symbol(row[:28].tolist()) == row[28]
    result = data_dir.verify_codes(to_buffer(values))
    counts = result.counts()
    assert len(result) == N_RANDOM
    assert counts[G] == 0 and counts[NI] == 0 and counts[TY] == 0 and counts[UK] == 0
    assert counts[CF] + counts[MAL] == N_RANDOM
    padded = (values[:, 27] & 0b11) != 0
    np.testing.assert_array_equal(result.status == MAL, padded)
    assert (result.status[::2] == CF).all()


# ---------------------------------------------------------------- single changes
@pytest.fixture
def genuine(data_dir: scangate.DataDir) -> list[str]:
    items = data_dir.issue_codes("SKU-G", "item", 3, batch="B1").as_strings()
    pallet = data_dir.issue_codes("SKU-G", "pallet", 1, batch="B1").as_strings()
    codes = items + pallet
    assert data_dir.verify_codes(codes).counts()[G] == len(codes)
    return codes


def test_every_single_symbol_substitution_is_a_typo(data_dir: scangate.DataDir, genuine: list[str]) -> None:
    variants = []
    for code in genuine:
        for p in range(ref.CODE_LEN):
            for ch in ALPHABET:
                if ch != code[p]:
                    variants.append(code[:p] + ch + code[p + 1 :])
    assert len(variants) == len(genuine) * 29 * 31
    result = data_dir.verify_codes(("\n".join(variants) + "\n").encode())
    assert len(result) == len(variants)
    counts = result.counts()
    assert counts[G] == 0
    # the spec guarantees the check symbol catches every single substitution
    assert counts[TY] == len(variants), counts


def test_every_adjacent_transposition_is_a_typo(data_dir: scangate.DataDir, genuine: list[str]) -> None:
    variants = [
        code[:p] + code[p + 1] + code[p] + code[p + 2 :]
        for code in genuine
        for p in range(ref.CODE_LEN - 1)
        if code[p] != code[p + 1]
    ]
    result = data_dir.verify_codes(variants)
    assert len(result) == len(variants) > 0
    assert result.counts()[TY] == len(variants)


OUTSIDE = ["U", "*", "!", "u", "\x00", "é", "ü", " ", "?", "/"]


def test_substitution_outside_the_alphabet_is_malformed(data_dir: scangate.DataDir, genuine: list[str]) -> None:
    variants = [
        code[:p] + ch + code[p + 1 :] for code in genuine for p in range(ref.CODE_LEN) for ch in OUTSIDE
    ]
    buf = ("\n".join(variants) + "\n").encode("utf-8")
    for codes in (buf, variants):
        result = data_dir.verify_codes(codes)
        assert len(result) == len(variants)
        bad = [(v, s) for v, s in zip(variants, labels(result)) if s != "malformed"]
        assert not bad, bad[:5]


def test_crockford_aliases_stay_genuine(data_dir: scangate.DataDir, genuine: list[str]) -> None:
    alias = {"0": "Oo", "1": "IiLl"}
    variants = [
        code[:p] + a + code[p + 1 :]
        for code in genuine
        for p, ch in enumerate(code)
        for a in alias.get(ch, "")
    ]
    assert variants, "no 0/1 symbol in the sample codes"
    result = data_dir.verify_codes(variants)
    assert result.counts()[G] == len(variants)


# ---------------------------------------------------------------- a mixed bag
def build_mixed(dd: scangate.DataDir) -> tuple[list[bytes], list[bytes], list[CodeStatus], list[int]]:
    """Lines of a mixed input file.

    Returns (buffer lines, list/array lines, expected status, expected serial or 0).
    Buffer lines may end in CR (a CRLF file); the list form has no line endings.
    """
    issued = dd.issue_codes("SKU-M", "item", 12, batch="L7")
    codes = issued.as_strings()
    serial = {c: issued.range.first + i for i, c in enumerate(codes)}
    rng = np.random.default_rng(99)
    g = iter(codes)

    lines: list[tuple[bytes, bytes, CodeStatus, int]] = []

    def good(code: str, text: str | None = None, *, crlf: bool = False) -> None:
        raw = (text if text is not None else code).encode()
        lines.append((raw + (b"\r" if crlf else b""), raw, G, serial[code]))

    def bad(raw: bytes, status: CodeStatus) -> None:
        lines.append((raw, raw, status, 0))

    c = next(g)
    good(c)
    bad(b"", MAL)
    good(next(g))
    bad(c[:-1].encode(), MAL)  # 28 symbols
    bad(c.encode() + b"0", MAL)  # 30 symbols
    bad(b"HELLO, WORLD!", MAL)
    bad(c[:9].encode() + b"U" + c[10:].encode(), MAL)
    bad(b"\r", MAL)
    bad(b"\x00" * 29, MAL)
    good(next(g))
    bad(encode(rng.bytes(16), 7).encode(), UK)  # key version 7: not in the key file
    bad(encode(rng.bytes(16), 1).encode(), CF)  # random block under the real key
    bad(with_check([0, 0] + [ALPHABET.index(x) for x in c[2:28]]).encode(), MAL)  # version 0
    padded = [ALPHABET.index(x) for x in c[:28]]
    padded[27] |= 1
    bad(with_check(padded).encode(), MAL)  # non-zero padding bits, right check symbol
    garbage = bytearray(rng.integers(0, 256, 4096, dtype=np.uint8).tobytes().replace(b"\n", b""))
    garbage[10:14] = b"\x00\xff\r\x00"
    garbage[-1] = 0xFF
    bad(bytes(garbage), MAL)
    good(next(g))
    bad((ALPHABET * 40000).encode()[: 1 << 20], MAL)  # a 1 MB line
    good(next(g))
    good(c2 := next(g), crlf=True)
    good(c3 := next(g), crlf=True)
    good(c3, dd.url_prefix + c3)
    good(c2, "https://scn.example.com/" + c2 + "?src=qr#top")
    c4 = next(g)
    good(c4, c4.lower())
    good(c4, "-".join(c4[i : i + 5] for i in range(0, 29, 5)))
    good(c4, " \t" + c4 + "\t ")
    typo = c4[:20] + ALPHABET[(ALPHABET.index(c4[20]) + 1) % 32] + c4[21:]
    bad(typo.encode(), TY)
    bad((c4[:5] + c4[6] + c4[5] + c4[7:]).encode(), TY if c4[5] != c4[6] else G)
    for rest in g:
        good(rest)
    bad(b"\xff\xfe\x00garbage\x85", MAL)  # last line, no newline after it in the buffer
    buf_lines, list_lines, expected, serials = map(list, zip(*lines))
    return buf_lines, list_lines, expected, serials


def check_mixed(result: scangate.VerifyResult, expected: list[CodeStatus], serials: list[int],
                list_lines: list[bytes] | None = None) -> None:
    """``list_lines``: the lines, whose key versions the result must give (the
    reference's: read from a text of the right shape, 0 from any other)."""
    assert len(result) == len(expected)
    got = labels(result)
    want = [s.label for s in expected]
    mismatches = [(i, g, w) for i, (g, w) in enumerate(zip(got, want)) if g != w]
    assert not mismatches, mismatches
    if list_lines is not None:
        versions = [ref.parse_text(raw).version or 0 for raw in list_lines]
        assert result.key_version.tolist() == versions
    for i, s in enumerate(serials):
        if s:
            check = result[i]
            assert check.serial == s
            assert check.line is not None and (check.line.sku, check.line.batch) == ("SKU-M", "L7")


def test_mixed_buffer(data_dir: scangate.DataDir) -> None:
    buf_lines, list_lines, expected, serials = build_mixed(data_dir)
    # the last line has no terminating newline
    result = data_dir.verify_codes(b"\n".join(buf_lines))
    check_mixed(result, expected, serials, list_lines)
    # ... and the same with one
    check_mixed(data_dir.verify_codes(bytearray(b"\n".join(buf_lines) + b"\n")), expected, serials, list_lines)


def test_mixed_list_of_str(data_dir: scangate.DataDir) -> None:
    _, list_lines, expected, serials = build_mixed(data_dir)
    texts = [raw.decode("utf-8", "surrogateescape") for raw in list_lines]
    check_mixed(data_dir.verify_codes(texts), expected, serials, list_lines)


def test_mixed_bytes_array(data_dir: scangate.DataDir) -> None:
    _, list_lines, expected, serials = build_mixed(data_dir)
    arr = np.array(list_lines, dtype=f"S{max(map(len, list_lines))}")
    check_mixed(data_dir.verify_codes(arr), expected, serials, list_lines)


# ---------------------------------------------------------------- the verify paths
PATH_FUNCTIONS = ("_verify_lines", "_verify_small", "_verify_chunked")


def count_paths(monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    """Count the calls of each verify path of scangate.codes from now on (the
    module looks them up at each call)."""
    calls: Counter[str] = Counter()

    def counted(name: str, real: Callable[..., Any]) -> Callable[..., Any]:
        def call(*args: Any) -> Any:
            calls[name] += 1
            return real(*args)
        return call

    for name in PATH_FUNCTIONS:
        monkeypatch.setattr(codes, name, counted(name, getattr(codes, name)))
    return calls


def test_each_verify_path_is_taken(data_dir: scangate.DataDir, verify_path: str,
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """The switch the tests here run under is the path the batches take: a small
    list and a large one, a buffer, an 'S' array and spans (as ingestion gives them)."""
    issued = data_dir.issue_codes("SKU-P", "item", 3).as_strings()
    calls = count_paths(monkeypatch)
    large = issued * (codes.SMALL_BATCH // 3 + 1)
    assert len(large) > codes.SMALL_BATCH
    buf = np.frombuffer("".join(issued).encode(), np.uint8)
    spans = np.array([0, 29, 58], np.int64)
    for batch in (issued, large, ("\n".join(issued) + "\n").encode(), np.array(issued, "S29")):
        result = data_dir.verify_codes(batch)
        assert result.counts()[G] == len(result) == (3 if batch is not large else len(large))
    verified = codes.verify_spans(buf, spans, spans + 29, data_dir.keys, data_dir.store.range_table())
    assert verified.status.tolist() == [G, G, G]
    want = {"small": {"_verify_small": 5},
            "chunked": {"_verify_lines": 1, "_verify_chunked": 4}}[verify_path]
    assert calls == Counter(want)


def test_by_default_the_path_follows_the_input(data_dir: scangate.DataDir, monkeypatch: pytest.MonkeyPatch) -> None:
    """Unforced (None): a buffer line by line, a list of up to SMALL_BATCH codes in one
    call, a larger one or an empty one in chunks."""
    monkeypatch.setattr(codes, "VERIFY_PATH", None)
    code = data_dir.issue_codes("SKU-P", "item", 1).as_strings()[0]
    calls = count_paths(monkeypatch)
    for batch, path in (([code], "_verify_small"), ([code] * codes.SMALL_BATCH, "_verify_small"),
                        ([code] * (codes.SMALL_BATCH + 1), "_verify_chunked"), ([], "_verify_chunked"),
                        ((code + "\n").encode(), "_verify_lines"), (b"", "_verify_lines")):
        before = calls.copy()
        result = data_dir.verify_codes(batch)
        assert result.counts()[G] == len(result) == (len(batch) if isinstance(batch, list) else len(batch) // 30)
        assert calls - before == Counter({path: 1}), (len(batch), path)


def verified_fields(result: scangate.VerifyResult) -> dict[str, Any]:
    return {name: (getattr(result, name).dtype, getattr(result, name).tolist())
            for name in ("status", "key_version", "serial", "level", "line_id")} | {"lines": result.lines}


class PoisonedNumpy:
    """numpy, with ``empty`` filled with 0xA5 bytes: a result that reads memory
    the verify never wrote shows it (the values it would hold are whatever the
    allocator left, mostly zeros, so not reliably)."""

    def __getattr__(self, name: str) -> Any:
        return getattr(np, name)

    @staticmethod
    def empty(*args: Any, **kwargs: Any) -> np.ndarray:
        out = np.empty(*args, **kwargs)
        out.reshape(-1).view(np.uint8).fill(0xA5)
        return out


def test_the_paths_agree(data_dir: scangate.DataDir, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every input of the mixed bag gives one result on every path (unforced, and
    each forced), the same as the reference's key versions, with no value left
    unwritten (a poisoned np.empty): once, a line of the wrong shape in a buffer
    read back whatever the allocator held as its key version."""
    buf_lines, list_lines, expected, serials = build_mixed(data_dir)
    wrong_shape = [b"!" * 29] * 100 + [b"", b"x"]      # 29 bytes: the line decoder's fast path, then not
    monkeypatch.setattr(codes, "np", PoisonedNumpy())
    inputs: list[tuple[Any, list[bytes]]] = [
        (b"\n".join(buf_lines) + b"\n", list_lines),
        (b"\n".join(wrong_shape), wrong_shape),
        ([raw.decode("utf-8", "surrogateescape") for raw in list_lines], list_lines),
        (np.array(list_lines, dtype=f"S{max(map(len, list_lines))}"), list_lines),
    ]
    for batch, lines in inputs:
        results = {}
        for path in (None, *codes.VERIFY_PATHS):
            monkeypatch.setattr(codes, "VERIFY_PATH", path)
            results[path] = verified_fields(data_dir.verify_codes(batch))
        first = results[None]
        assert all(r == first for r in results.values()), [p for p, r in results.items() if r != first]
        assert first["key_version"][1] == [ref.parse_text(raw).version or 0 for raw in lines]
    monkeypatch.setattr(codes, "VERIFY_PATH", None)
    check_mixed(data_dir.verify_codes(b"\n".join(buf_lines)), expected, serials, list_lines)


def test_a_wrong_verify_path_is_refused(data_dir: scangate.DataDir, monkeypatch: pytest.MonkeyPatch) -> None:
    code = data_dir.issue_codes("SKU-P", "item", 1).as_strings()[0]
    monkeypatch.setattr(codes, "VERIFY_PATH", "fast")
    for batch in ([code], (code + "\n").encode()):
        with pytest.raises(InvalidArgument, match=r"^scangate\.codes\.VERIFY_PATH: 'fast' is not one of small, "
                                                  r"chunked or None$"):
            data_dir.verify_codes(batch)
    # and in the environment, when the module is imported
    proc = subprocess.run([sys.executable, "-c", "import scangate.codes"], capture_output=True, text=True,
                          env={**os.environ, codes.VERIFY_PATH_ENV: "fast"}, timeout=120,
                          check=False)
    assert proc.returncode == 1
    assert proc.stderr.splitlines()[-1] == ("scangate.errors.InvalidArgument: SCANGATE_VERIFY_PATH: 'fast' is not "
                                            "one of small, chunked (or unset)")


# ---------------------------------------------------------------- the CLI
def parse_json_lines(stdout: str) -> list[dict]:
    # split on "\n" only: ensure_ascii=False output may hold U+2028 and friends
    rows = stdout.split("\n")
    assert rows[-1] == ""
    return [json.loads(r) for r in rows[:-1]]


def test_cli_verify_mixed_file(data_dir: scangate.DataDir, run_cli, tmp_path: Path) -> None:
    buf_lines, _, expected, _ = build_mixed(data_dir)
    src = tmp_path / "mixed.txt"
    src.write_bytes(b"\n".join(buf_lines) + b"\n")
    proc = run_cli("verify", "--data", data_dir.root, src, "--json")
    assert proc.returncode == 1, proc.stderr
    rows = parse_json_lines(proc.stdout)
    assert len(rows) == len(expected) + 1
    *per_line, summary = rows
    assert [r["line"] for r in per_line] == list(range(1, len(expected) + 1))
    assert [r["status"] for r in per_line] == [s.label for s in expected]
    for r, s in zip(per_line, expected):
        if s is G:
            assert (r["sku"], r["batch"], r["level"]) == ("SKU-M", "L7", "item")
    want = {st.label: sum(1 for s in expected if s is st) for st in CodeStatus}
    assert summary == {"summary": {"lines": len(expected), **want}}


def test_cli_verify_genuine_only_exits_0(data_dir: scangate.DataDir, run_cli, tmp_path: Path) -> None:
    codes = data_dir.issue_codes("SKU-OK", "case", 50).as_strings()
    text = "\r\n".join(codes[:-2] + [data_dir.url_prefix + codes[-2], codes[-1].lower()]) + "\r\n"
    src = tmp_path / "good.txt"
    src.write_bytes(text.encode())
    proc = run_cli("verify", "--data", data_dir.root, src, "--json")
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr
    *per_line, summary = parse_json_lines(proc.stdout)
    assert len(per_line) == 50 and all(r["status"] == "genuine" for r in per_line)
    assert summary["summary"]["lines"] == 50 and summary["summary"]["genuine"] == 50
    # stdin, plain output
    proc = run_cli("verify", "--data", data_dir.root, "-", input=text)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("\tgenuine\t") == 50


def test_cli_verify_missing_data_dir(run_cli, tmp_path: Path) -> None:
    src = tmp_path / "codes.txt"
    src.write_text("01RFVM3PF6W5A62SJEQH3QMJ24VMG\n")
    proc = run_cli("verify", "--data", tmp_path / "nope", src, "--json")
    assert proc.returncode == 2
    assert proc.stdout == ""
    err = proc.stderr.splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), proc.stderr
    assert "Traceback" not in proc.stderr
