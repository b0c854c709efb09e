"""The key file: creation, rotation, where keys may never appear, SCANGATE_KEY_FILE,
and a damaged key file."""
from __future__ import annotations

import json
import logging
import os
import stat
from pathlib import Path

import numpy as np
import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

import scangate
from scangate import CodeStatus, CorruptionError, _core
from scangate.keys import KEY_FILE_ENV, Keyring


def key_file(dd: scangate.DataDir) -> Path:
    return dd.root / "keys.json"


def forms(key: bytes) -> list[bytes]:
    """Ways a key could leak into bytes: raw, and hex in either case."""
    return [key, key.hex().encode(), key.hex().upper().encode()]


def assert_no_key(blob: bytes | str, keys: list[bytes], where: str) -> None:
    data = blob.encode("utf-8", "surrogateescape") if isinstance(blob, str) else blob
    for key in keys:
        for form in forms(key):
            assert form not in data, f"key material found in {where}"


def test_init_creates_private_key_file_with_version_1(data_dir: scangate.DataDir) -> None:
    path = key_file(data_dir)
    assert data_dir.keys.path == path
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    doc = json.loads(path.read_text())
    assert [k["version"] for k in doc["keys"]] == [1]
    assert len(bytes.fromhex(doc["keys"][0]["key"])) == 16
    assert data_dir.keys.current.version == 1
    assert not path.with_name("keys.json.tmp").exists()
    codes = data_dir.issue_codes("SKU", "item", 10).as_strings()
    assert all(c.startswith("01") for c in codes)


def test_rotate_adds_version_and_old_codes_keep_verifying(data_dir: scangate.DataDir) -> None:
    v1_codes = data_dir.issue_codes("SKU", "item", 100).as_strings()
    kv2 = data_dir.rotate_key()
    assert kv2.version == 2 and data_dir.keys.current.version == 2
    assert kv2.key != data_dir.keys[1].key
    assert stat.S_IMODE(key_file(data_dir).stat().st_mode) == 0o600
    v2 = data_dir.issue_codes("SKU", "item", 100)
    assert v2.range.key_version == 2
    v2_codes = v2.as_strings()
    assert all(c.startswith("02") for c in v2_codes)
    result = data_dir.verify_codes(v1_codes + v2_codes)
    assert result.counts()[CodeStatus.GENUINE] == 200
    assert result.key_version.tolist() == [1] * 100 + [2] * 100
    # persisted: a fresh open sees both versions and still verifies both
    root = data_dir.root
    data_dir.close()
    with scangate.open_data_dir(root) as dd:
        assert [kv.version for kv in dd.keys.versions()] == [1, 2]
        assert dd.keys.current.version == 2
        assert dd.verify_codes(v1_codes + v2_codes).counts()[CodeStatus.GENUINE] == 200


def test_cli_rotate(data_dir: scangate.DataDir, run_cli, tmp_path: Path) -> None:
    v1_codes = data_dir.issue_codes("SKU", "item", 5).as_strings()
    root = data_dir.root
    data_dir.close()
    proc = run_cli("keys", "rotate", "--data", root, "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["key_version"] == 2
    out = tmp_path / "v2.txt"
    proc = run_cli("issue", "--data", root, "--sku", "SKU", "--count", 5, "--out", out)
    assert proc.returncode == 0, proc.stderr
    v2_codes = out.read_text().split()
    assert len(v2_codes) == 5 and all(c.startswith("02") for c in v2_codes)
    proc = run_cli("keys", "list", "--data", root, "--json")
    rows = [json.loads(r) for r in proc.stdout.splitlines()]
    assert [(r["key_version"], r["current"]) for r in rows] == [(1, False), (2, True)]
    with scangate.open_data_dir(root) as dd:
        assert dd.verify_codes(v1_codes + v2_codes).counts()[CodeStatus.GENUINE] == 10


def test_keys_never_in_lmdb(data_dir: scangate.DataDir) -> None:
    data_dir.issue_codes("SKU", "item", 1000, batch="B")
    data_dir.rotate_key()
    codes = data_dir.issue_codes("SKU", "case", 1000, batch="B").as_strings()
    assert data_dir.verify_codes(codes).counts()[CodeStatus.GENUINE] == 1000
    keys = [kv.key for kv in data_dir.keys.versions()]
    assert len(keys) == 2
    root = data_dir.root
    data_dir.close()
    lmdb_files = sorted(p for p in (root / "lmdb").rglob("*") if p.is_file())    # the trace's environment too
    assert {str(p.relative_to(root / "lmdb")) for p in lmdb_files} >= {"data.mdb", "trace/data.mdb"}
    for path in lmdb_files:
        assert_no_key(path.read_bytes(), keys, str(path))


def test_keys_never_in_cli_output(run_cli, tmp_path: Path) -> None:
    root = tmp_path / "data"
    outputs: list[tuple[str, bytes]] = []

    def run(*args: object, expect: int = 0) -> None:
        proc = run_cli(*args, text=False)
        assert proc.returncode == expect, (args, proc.stderr)
        outputs.append((" ".join(map(str, args)), proc.stdout + proc.stderr))

    run("-vv", "init", "--data", root)
    for i, flags in enumerate([(), ("--json",), ("-vv",), ("-vv", "--json")]):
        verbose = [f for f in flags if f == "-vv"]
        rest = [f for f in flags if f != "-vv"]
        txt = tmp_path / f"codes{i}.txt"
        run(*verbose, "issue", "--data", root, "--sku", "S", "--count", 20, "--out", txt, *rest)
        run(*verbose, "issue", "--data", root, "--sku", "S", "--count", 5, "--out", "-",
            "--format", "csv", *rest)
        run(*verbose, "verify", "--data", root, txt, *rest)
        txt.write_text(txt.read_text() + "01" + "0" * 27 + "\n")  # a typo line too
        run(*verbose, "verify", "--data", root, txt, *rest, expect=1)
        run(*verbose, "keys", "list", "--data", root, *rest)
        run(*verbose, "keys", "rotate", "--data", root, *rest)
        run(*verbose, "ledger", "--data", root, *rest)
    run("init", "--data", tmp_path / "other", "--json")
    run("-vv", "init", "--data", tmp_path / "other", expect=2)  # already exists
    with scangate.open_data_dir(root) as dd:
        keys = [kv.key for kv in dd.keys.versions()]
    with scangate.open_data_dir(tmp_path / "other") as dd:
        keys += [kv.key for kv in dd.keys.versions()]
    assert len(keys) == 6  # 1 + 4 rotations, and the other directory's key
    assert any(b"DEBUG" in out or b"INFO" in out for _, out in outputs)  # -vv took effect
    for where, out in outputs:
        assert_no_key(out, keys, where)


def test_key_version_repr_hides_key(data_dir: scangate.DataDir, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG, logger="scangate"):
        data_dir.rotate_key()
        data_dir.issue_codes("SKU", "item", 3)
    keys = [kv.key for kv in data_dir.keys.versions()]
    for kv in data_dir.keys.versions():
        for text in (repr(kv), str(kv), repr(data_dir.keys.versions())):
            assert_no_key(text, keys, "repr")
            assert str(kv.version) in text
    assert_no_key(caplog.text, keys, "log records")


def test_unknown_key_version(data_dir: scangate.DataDir) -> None:
    issued = data_dir.issue_codes("SKU", "item", 2)
    code = issued.as_strings()[0]
    plain = np.zeros((1, 16), np.uint8)
    _core.pack_serials(np.array([issued.range.first], np.uint64), np.array([1], np.uint8), plain)
    enc = Cipher(algorithms.AES(data_dir.keys.current.key), modes.ECB()).encryptor()
    block = np.frombuffer(enc.update(plain.tobytes()) + enc.finalize(), np.uint8).reshape(1, 16).copy()
    # the real cipher block of a genuine code, under version numbers not in the file
    texts = []
    for version in (2, 33, 1023):
        out = np.zeros((1, _core.CODE_LEN), np.uint8)
        _core.encode_text(block, version, out)
        texts.append(bytes(out[0]).decode())
    assert texts[0][2:28] == code[2:28]  # same block, other version symbols
    result = data_dir.verify_codes(texts + [code])
    assert [CodeStatus(int(s)) for s in result.status] == [CodeStatus.UNKNOWN_KEY] * 3 + [CodeStatus.GENUINE]
    assert result.key_version.tolist() == [2, 33, 1023, 1]


def test_key_file_env_is_honoured(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, run_cli) -> None:
    elsewhere = tmp_path / "secrets" / "scangate-keys.json"
    elsewhere.parent.mkdir()
    monkeypatch.setenv(KEY_FILE_ENV, str(elsewhere))
    root = tmp_path / "data"
    with scangate.init_data_dir(root) as dd:
        assert dd.keys.path == elsewhere
        codes = dd.issue_codes("SKU", "item", 5).as_strings()
    assert elsewhere.exists() and stat.S_IMODE(elsewhere.stat().st_mode) == 0o600
    assert not (root / "keys.json").exists()
    with scangate.open_data_dir(root) as dd:
        assert dd.verify_codes(codes).counts()[CodeStatus.GENUINE] == 5
        dd.rotate_key()
    assert [k["version"] for k in json.loads(elsewhere.read_text())["keys"]] == [1, 2]
    assert not (root / "keys.json").exists()
    # the CLI (a subprocess inheriting the environment) uses it too
    proc = run_cli("keys", "list", "--data", root, "--json")
    assert proc.returncode == 0, proc.stderr
    assert len(proc.stdout.splitlines()) == 2
    root2 = tmp_path / "data2"
    other = tmp_path / "secrets" / "k2.json"
    proc = run_cli("init", "--data", root2, "--json", env={KEY_FILE_ENV: str(other)})
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["key_file"] == str(other)
    assert other.exists() and not (root2 / "keys.json").exists()
    # without the variable, the directory has no key file of its own
    monkeypatch.delenv(KEY_FILE_ENV)
    with pytest.raises(scangate.NotFound):
        scangate.open_data_dir(root)


def corruptions(doc: dict, raw: str) -> dict[str, str]:
    key_hex = doc["keys"][0]["key"]
    bad_len = json.loads(raw)
    bad_len["keys"].append({"version": 2, "created_at": 0, "key": key_hex + "ab"})
    bad_hex = json.loads(raw)
    bad_hex["keys"][0]["key"] = key_hex[:-1] + "z"
    bad_version = json.loads(raw)
    bad_version["keys"][0]["version"] = 0
    no_field = json.loads(raw)
    del no_field["keys"][0]["created_at"]
    return {
        "truncated": raw[: raw.index(key_hex) + 20],
        "not json": "key=" + key_hex,
        "empty": "",
        "no keys": json.dumps({"format": 1, "keys": []}),
        "long key": json.dumps(bad_len),
        "bad hex": json.dumps(bad_hex),
        "version 0": json.dumps(bad_version),
        "missing field": json.dumps(no_field),
        "keys not a list": json.dumps({"format": 1, "keys": key_hex}),
    }


def test_corrupt_key_file(data_dir: scangate.DataDir, run_cli) -> None:
    path = key_file(data_dir)
    raw = path.read_text()
    doc = json.loads(raw)
    key = data_dir.keys.current.key
    root = data_dir.root
    data_dir.close()
    leaks = [key[:8], key.hex()[:8].encode(), key.hex()[-8:].encode()]
    for name, text in corruptions(doc, raw).items():
        path.write_text(text)
        os.chmod(path, 0o600)
        with pytest.raises(CorruptionError) as info:
            scangate.open_data_dir(root)
        message = str(info.value) + repr(info.value) + "".join(map(str, info.value.args))
        assert_no_key(message, [key], name)
        for part in leaks:
            assert part.decode("latin-1") not in message, name
        exc = info.value
        assert exc.__cause__ is None and (exc.__context__ is None or exc.__suppress_context__), name
        with pytest.raises(CorruptionError):
            Keyring.load(path)
        proc = run_cli("keys", "list", "--data", root, text=False)
        assert proc.returncode == 2, name
        assert proc.stderr.startswith(b"error: ") and proc.stderr.count(b"\n") == 1, (name, proc.stderr)
        assert_no_key(proc.stdout + proc.stderr, [key], f"CLI output ({name})")
        for part in leaks:
            assert part not in proc.stderr, name


def test_key_file_not_utf8_is_corruption_without_key_material(data_dir: scangate.DataDir) -> None:
    path = key_file(data_dir)
    key = data_dir.keys.current.key
    root = data_dir.root
    data_dir.close()
    raw = path.read_bytes()
    path.write_bytes(raw.replace(b'"format"', b'"f\xffrmat"'))  # one damaged byte, keys intact
    try:
        scangate.open_data_dir(root)
    except Exception as exc:  # noqa: BLE001 - the type is what is tested
        assert_no_key(repr(exc) + str(exc) + repr(exc.args), [key], "exception")
        assert isinstance(exc, CorruptionError), type(exc)
    else:
        pytest.fail("a damaged key file opened")


def test_cli_key_file_not_utf8_exits_2(data_dir: scangate.DataDir, run_cli) -> None:
    path = key_file(data_dir)
    root = data_dir.root
    data_dir.close()
    path.write_bytes(b"\xff" + path.read_bytes())
    proc = run_cli("keys", "list", "--data", root)
    assert proc.returncode == 2 and proc.stderr.startswith("error: "), proc.stderr[-300:]
    assert "Traceback" not in proc.stderr
