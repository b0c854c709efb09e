"""Code issue and verify throughput, against a naive Python loop and raw AES.

``python -m bench codes [--n N] [--repeat K] [--naive-n M] [--json]``

Everything runs in one process pinned to one core, on the same N, the same fixed-seed
16-byte key (key version 1) and level ``item``; each figure is the best of at least K
runs, more for fast figures until 1 s of runs (time.perf_counter, garbage collector
paused).

Figures (rates are per second of the best run):

issue/codec
    ``scangate.codes.render_codes_into`` writing N codes (serials 1..N) into a
    preallocated N x 29 uint8 array: plaintext packing, AES-ECB, base32 text and
    check symbol. No LMDB. This is the headline issue figure.
issue/datadir
    ``DataDir.issue_codes`` on a temporary data directory: the same work plus finding
    the product line, the durable (synced) LMDB range reservation, allocating the
    output and completing the range.
verify/datadir
    ``DataDir.verify_codes(buf)`` on the newline-separated text of N genuine codes
    issued into that data directory: line splitting, parsing, check symbol, AES
    decryption, authentication and the ledger (range) lookup. Headline verify figure.
verify/codec
    The same without LMDB: ``scangate.codes.verify_text`` against the ledger's range
    table held in memory (parse, check symbol, AES, authentication, range lookup).
issue/naive, verify/naive
    An honest per-code Python loop doing the same work (``naive_issue`` and
    ``naive_verify`` below), with one reused ECB encryptor/decryptor, base64's base32
    translated to Crockford's alphabet, the GF(32) check symbol from a precomputed
    table and bisect over the ledger's ranges. Timed on the first M = min(N, --naive-n)
    codes. The naive issue output is checked byte for byte against scangate's, and
    naive verify must find every code genuine with the serials scangate finds.
aes/encrypt, aes/decrypt
    Raw AES-128-ECB ``update_into`` over N blocks in one call (cryptography/OpenSSL):
    the ceiling for any AES-based codec on this machine.

Ratios: "x naive" is a scangate rate over the naive rate of the same operation;
"x raw AES" is codes/s over raw AES blocks/s (encrypt for issue, decrypt for verify).
Targets: issue >= 200x naive and >= 0.15x raw AES; verify >= 150x naive and >= 0.08x
raw AES. A FAIL is reported, never turned into a non-zero exit status.
"""

from __future__ import annotations

import argparse
import base64
import os
import random
import struct
import tempfile
from bisect import bisect_right
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

import scangate
from scangate.codes import render_codes_into, verify_text
from scangate.store import RangeTable
from scangate.datadir import DataDir
from scangate.enums import CodeStatus, Level
from scangate.keys import KEY_FILE_ENV, Keyring, KeyVersion

from . import _harness
from ._harness import Timing, best_of

DEFAULT_N = 1_000_000
DEFAULT_NAIVE_N = 100_000
LEVEL = Level.ITEM
CODE_LEN = 29

# (name, measured ratio key, required minimum)
TARGETS: tuple[tuple[str, str, float], ...] = (
    ("issue vs naive", "issue_x_naive", 200.0),
    ("issue vs raw AES", "issue_x_raw_aes", 0.15),
    ("verify vs naive", "verify_x_naive", 150.0),
    ("verify vs raw AES", "verify_x_raw_aes", 0.08),
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    _harness.add_common_arguments(parser, default_n=DEFAULT_N)
    parser.add_argument("--naive-n", type=int, default=DEFAULT_NAIVE_N,
                        help=f"codes for the naive Python loops, at most N (default {DEFAULT_NAIVE_N:_})")


# ---------------------------------------------------------------- the naive baseline
ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
SYMBOL_VALUE = {ch: i for i, ch in enumerate(ALPHABET)}
RFC4648_TO_CROCKFORD = bytes.maketrans(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", ALPHABET.encode())
CROCKFORD_TO_RFC4648 = str.maketrans(ALPHABET, "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567")
CROCKFORD_ALIASES = str.maketrans({"O": "0", "I": "1", "L": "1", "-": None})
REDUNDANCY = int.from_bytes(b"SCANGATE", "big")
SERIAL_MASK = (1 << 56) - 1
BLOCK = struct.Struct(">QQ")


def _gf32_mul(a: int, b: int) -> int:
    """Multiply in GF(32) = GF(2)[x]/(x^5 + x^2 + 1)."""
    r = 0
    while b:
        if b & 1:
            r ^= a
        b >>= 1
        a <<= 1
        if a & 32:
            a ^= 0b100101
    return r


def _check_weights() -> list[list[int]]:
    """WEIGHTED[p][s] = b^(28-p) * s for text positions p = 0..28, b = x^5 (value 5)."""
    table = []
    for p in range(CODE_LEN):
        w = 1
        for _ in range(CODE_LEN - 1 - p):
            w = _gf32_mul(w, 5)
        table.append([_gf32_mul(w, s) for s in range(32)])
    return table


WEIGHTED = _check_weights()


def naive_issue(key: KeyVersion, first_serial: int, level: int, count: int) -> list[str]:
    """The codes of serials first_serial .. first_serial+count-1, one at a time."""
    encryptor = Cipher(algorithms.AES(key.key), modes.ECB()).encryptor()
    head = ((1 << 4) | level) << 56
    version = ALPHABET[key.version >> 5] + ALPHABET[key.version & 31]
    codes = []
    for serial in range(first_serial, first_serial + count):
        block = encryptor.update(BLOCK.pack(head | serial, REDUNDANCY))
        body = version + base64.b32encode(block)[:26].translate(RFC4648_TO_CROCKFORD).decode("ascii")
        check = 0
        for p in range(CODE_LEN - 1):
            check ^= WEIGHTED[p][SYMBOL_VALUE[body[p]]]
        codes.append(body + ALPHABET[check])
    return codes


@dataclass(frozen=True)
class NaiveLedger:
    """The issued ranges as sorted Python lists, for bisect."""

    firsts: list[int]
    lasts: list[int]
    key_versions: list[int]

    @classmethod
    def of(cls, data: DataDir) -> NaiveLedger:
        table = data.store.range_table()
        return cls(table.firsts.tolist(), table.lasts.tolist(), table.key_versions.tolist())


def naive_verify(text: bytes, keys: Keyring, ledger: NaiveLedger) -> list[tuple[int, int]]:
    """(status, serial) for each line of ``text``, one at a time; serial 0 unless genuine."""
    decryptors = {kv.version: Cipher(algorithms.AES(kv.key), modes.ECB()).decryptor()
                  for kv in keys.versions()}
    genuine, typo, malformed = int(CodeStatus.GENUINE), int(CodeStatus.TYPO), int(CodeStatus.MALFORMED)
    counterfeit, unknown_key = int(CodeStatus.COUNTERFEIT), int(CodeStatus.UNKNOWN_KEY)
    not_issued = int(CodeStatus.NOT_ISSUED)
    results: list[tuple[int, int]] = []
    for line in text.decode("utf-8", "replace").splitlines():
        code = line.strip().upper().translate(CROCKFORD_ALIASES)
        if len(code) != CODE_LEN:
            results.append((malformed, 0))
            continue
        try:
            values = [SYMBOL_VALUE[ch] for ch in code]
        except KeyError:
            results.append((malformed, 0))
            continue
        check = 0
        for p in range(CODE_LEN):
            check ^= WEIGHTED[p][values[p]]
        if check:
            results.append((typo, 0))
            continue
        version = (values[0] << 5) | values[1]
        if version == 0 or values[27] & 3:
            results.append((malformed, 0))
            continue
        decryptor = decryptors.get(version)
        if decryptor is None:
            results.append((unknown_key, 0))
            continue
        block = base64.b32decode(code[2:28].translate(CROCKFORD_TO_RFC4648) + "======")
        head, redundancy = BLOCK.unpack(decryptor.update(block))
        level = (head >> 56) & 15
        if redundancy != REDUNDANCY or head >> 60 != 1 or not 1 <= level <= 3:
            results.append((counterfeit, 0))
            continue
        serial = head & SERIAL_MASK
        i = bisect_right(ledger.firsts, serial) - 1
        if i < 0 or serial > ledger.lasts[i]:
            results.append((not_issued, 0))
        elif ledger.key_versions[i] != version:
            results.append((counterfeit, 0))
        else:
            results.append((genuine, serial))
    return results


# ---------------------------------------------------------------- measurements
def measure_codec_issue(key: KeyVersion, n: int, repeat: int) -> tuple[Timing, np.ndarray]:
    out = np.empty((n, CODE_LEN), np.uint8)
    timing, _ = best_of(lambda: render_codes_into(key, 1, LEVEL, out), n, repeat)
    return timing, out


def measure_datadir_issue(data: DataDir, n: int, repeat: int) -> Timing:
    timing, _ = best_of(lambda: data.issue_codes("BENCH-ISSUE", LEVEL, n, batch="B"), n, repeat)
    return timing


def measure_datadir_verify(data: DataDir, buf: bytes, n: int, repeat: int) -> tuple[Timing, np.ndarray]:
    timing, result = best_of(lambda: data.verify_codes(buf), n, repeat)
    _require(bool((result.status == CodeStatus.GENUINE).all()), "DataDir.verify_codes: not all genuine")
    return timing, result.serial


def measure_codec_verify(keys: Keyring, table: RangeTable, buf: bytes, n: int, repeat: int) -> Timing:
    """verify_text against an in-memory copy of the ledger's ranges: no LMDB."""
    timing, verified = best_of(lambda: verify_text(buf, keys, table), n, repeat)
    _require(bool((verified.status == CodeStatus.GENUINE).all()), "verify_text: not all genuine")
    return timing


def measure_naive_issue(key: KeyVersion, m: int, repeat: int, scangate_text: np.ndarray) -> Timing:
    timing, codes = best_of(lambda: naive_issue(key, 1, LEVEL, m), m, repeat)
    same = "".join(codes).encode("ascii") == scangate_text[:m].tobytes()
    _require(same, "naive issue output differs from scangate's for the same serials")
    return timing


def measure_naive_verify(data: DataDir, buf: bytes, m: int, repeat: int, serials: np.ndarray) -> Timing:
    text = buf[: m * (CODE_LEN + 1)]
    ledger = NaiveLedger.of(data)
    timing, results = best_of(lambda: naive_verify(text, data.keys, ledger), m, repeat)
    _require(len(results) == m and all(s == CodeStatus.GENUINE for s, _ in results),
             "naive verify: not all genuine")
    _require([serial for _, serial in results] == serials[:m].tolist(),
             "naive verify serials differ from scangate's")
    return timing


def measure_raw_aes(key: KeyVersion, blocks: np.ndarray, repeat: int, decrypt: bool) -> tuple[Timing, np.ndarray]:
    cipher = Cipher(algorithms.AES(key.key), modes.ECB())
    ctx = cipher.decryptor() if decrypt else cipher.encryptor()
    out = np.empty(blocks.size + 16, np.uint8)  # update_into wants 15 bytes of slack
    src, dst = blocks.data, out.data
    timing, _ = best_of(lambda: ctx.update_into(src, dst), blocks.size // 16, repeat)
    return timing, out[: blocks.size]


# ---------------------------------------------------------------- helpers
def _require(ok: bool, message: str) -> None:
    """A check that keeps the comparison honest (kept under python -O, unlike assert)."""
    if not ok:
        raise AssertionError(message)


def _bench_key(seed: int) -> KeyVersion:
    return KeyVersion(1, 0, random.Random(seed).randbytes(16))


def _open_data_dir(root: Path, key: KeyVersion) -> DataDir:
    """A fresh data directory whose (in-memory) keyring holds only ``key``, so the
    LMDB figures run under the same key as the codec figures."""
    data = scangate.init_data_dir(root)
    data.keys = Keyring(data.keys.path, {key.version: key})
    return data


def _text_lines(text: np.ndarray) -> bytes:
    lines = np.empty((text.shape[0], CODE_LEN + 1), np.uint8)
    lines[:, :CODE_LEN] = text
    lines[:, CODE_LEN] = ord("\n")
    return lines.tobytes()


def _ratio(a: Timing, b: Timing) -> float:
    return a.rate / b.rate


# ---------------------------------------------------------------- the run
def measure(n: int, naive_n: int, repeat: int, seed: int,
            progress: Callable[[str], None] = lambda _: None) -> dict[str, Any]:
    """Every figure and ratio as one JSON-ready dict."""
    key = _bench_key(seed)
    m = min(n, naive_n)
    t: dict[str, Timing] = {}
    progress("issue/codec")
    t["issue/codec"], text = measure_codec_issue(key, n, repeat)
    progress("aes/encrypt")
    plain = np.random.default_rng(seed).integers(0, 256, n * 16, dtype=np.uint8)
    t["aes/encrypt"], cipher_blocks = measure_raw_aes(key, plain, repeat, decrypt=False)
    progress("aes/decrypt")
    t["aes/decrypt"], _ = measure_raw_aes(key, cipher_blocks, repeat, decrypt=True)
    progress("issue/naive")
    t["issue/naive"] = measure_naive_issue(key, m, repeat, text)
    del text
    os.environ.pop(KEY_FILE_ENV, None)  # the temp data dir keeps its key file inside
    with tempfile.TemporaryDirectory(prefix="scangate-bench-") as tmp:
        with _open_data_dir(Path(tmp), key) as data:
            buf = _text_lines(data.issue_codes("BENCH-VERIFY", LEVEL, n, batch="B").text)
            progress("issue/datadir")
            t["issue/datadir"] = measure_datadir_issue(data, n, repeat)
            progress("verify/datadir")
            t["verify/datadir"], serials = measure_datadir_verify(data, buf, n, repeat)
            progress("verify/codec")
            t["verify/codec"] = measure_codec_verify(data.keys, data.store.range_table(), buf, n, repeat)
            progress("verify/naive")
            t["verify/naive"] = measure_naive_verify(data, buf, m, repeat, serials)
    ratios = {
        "issue_x_naive": _ratio(t["issue/codec"], t["issue/naive"]),
        "issue_x_raw_aes": _ratio(t["issue/codec"], t["aes/encrypt"]),
        "issue_datadir_x_naive": _ratio(t["issue/datadir"], t["issue/naive"]),
        "issue_datadir_x_raw_aes": _ratio(t["issue/datadir"], t["aes/encrypt"]),
        "verify_x_naive": _ratio(t["verify/datadir"], t["verify/naive"]),
        "verify_x_raw_aes": _ratio(t["verify/datadir"], t["aes/decrypt"]),
        "verify_codec_x_naive": _ratio(t["verify/codec"], t["verify/naive"]),
        "verify_codec_x_raw_aes": _ratio(t["verify/codec"], t["aes/decrypt"]),
    }
    targets = [{"name": name, "ratio": key_, "measured": ratios[key_], "required": required,
                "pass": ratios[key_] >= required} for name, key_, required in TARGETS]
    return {
        "params": {"n": n, "naive_n": m, "repeat": repeat, "seed": seed, "level": LEVEL.label},
        "figures": {name: timing.as_dict() for name, timing in t.items()},
        "ratios": ratios,
        "targets": targets,
    }


# (figure, label, unit, ratio key vs naive, ratio key vs raw AES)
ROWS: tuple[tuple[str, str, str, str | None, str | None], ...] = (
    ("issue/codec", "scangate issue: render_codes_into (memory)", "codes/s", "issue_x_naive", "issue_x_raw_aes"),
    ("issue/datadir", "scangate issue: DataDir.issue_codes (+LMDB)", "codes/s",
     "issue_datadir_x_naive", "issue_datadir_x_raw_aes"),
    ("issue/naive", "naive Python issue loop", "codes/s", None, None),
    ("verify/datadir", "scangate verify: DataDir.verify_codes (text)", "codes/s",
     "verify_x_naive", "verify_x_raw_aes"),
    ("verify/codec", "scangate verify: verify_text (no LMDB)", "codes/s",
     "verify_codec_x_naive", "verify_codec_x_raw_aes"),
    ("verify/naive", "naive Python verify loop", "codes/s", None, None),
    ("aes/encrypt", "raw AES-128-ECB encrypt update_into", "blocks/s", None, None),
    ("aes/decrypt", "raw AES-128-ECB decrypt update_into", "blocks/s", None, None),
)


def print_report(report: dict[str, Any]) -> None:
    _harness.print_machine_info(report["machine"])
    p = report["params"]
    print(f"N = {p['n']:_}, naive loops on {p['naive_n']:_}, best of >= {p['repeat']} runs, "
          f"seed {p['seed']}, level {p['level']}\n")
    figures, ratios = report["figures"], report["ratios"]
    rows = []
    for name, label, unit, vs_naive, vs_aes in ROWS:
        f = figures[name]
        rows.append([label, f"{f['count']:_}", str(f["runs"]), f"{f['best_s'] * 1e3:.2f}",
                     f"{_harness.format_rate(f['rate'])}{unit}",
                     f"{ratios[vs_naive]:.0f}x" if vs_naive else "",
                     f"{ratios[vs_aes]:.3f}x" if vs_aes else ""])
    _harness.print_table(["figure", "count", "runs", "best ms", "rate", "x naive", "x raw AES"], rows)
    print()
    _harness.print_table(
        ["target", "measured", "required", "verdict"],
        [[t["name"], f"{t['measured']:.3f}x", f">= {t['required']:g}x", "PASS" if t["pass"] else "FAIL"]
         for t in report["targets"]],
    )


def run(args: argparse.Namespace) -> int:
    if args.n < 1 or args.repeat < 1 or args.naive_n < 1:
        raise SystemExit("--n, --repeat and --naive-n must be at least 1")
    return _harness.run_benchmark(
        "codes", args, lambda progress: measure(args.n, args.naive_n, args.repeat, args.seed, progress), print_report)
