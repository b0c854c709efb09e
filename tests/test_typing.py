"""The package type-checks (mypy, with pyproject.toml's [tool.mypy]) and
core/codec.pyi is true to the compiled core (mypy.stubtest).

The package is built from three source roots (setup.py's package_dir: python/scangate,
server as scangate.server, core as scangate._core), a layout mypy cannot map onto
module names. So each check runs on a tree of symbolic links laid out as the
installed package, in a temporary directory; mypy's messages are given back with
the repository's paths."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "pyproject.toml"
ALLOWLIST = ROOT / "tests" / "stubtest-allowlist.txt"
# cold runs take about 20 s on a loaded 2-core machine; generous for CI
TIMEOUT_S = 600


def _package_tree(into: Path, *, python_sources: bool) -> Path:
    """``into/scangate`` laid out as installed: python/scangate's entries (or, for
    stubtest, an empty package), scangate/server and scangate/_core."""
    pkg = into / "scangate"
    pkg.mkdir(parents=True)
    if python_sources:
        for entry in (ROOT / "python" / "scangate").iterdir():
            if entry.name != "__pycache__":
                (pkg / entry.name).symlink_to(entry)
        (pkg / "server").symlink_to(ROOT / "server")
    else:
        (pkg / "__init__.py").write_text("", encoding="utf-8")
    (pkg / "_core").symlink_to(ROOT / "core")
    return pkg


def _run(args: list[str], cwd: Path, tree: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "MYPYPATH": str(tree)}
    done = subprocess.run([sys.executable, "-m", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=TIMEOUT_S)
    # the messages name the links (relative to cwd, or absolute); give the files'
    # places in the repository instead
    for link, real in (("scangate/server/", "server/"), ("scangate/_core/", "core/"),
                       ("scangate/", "python/scangate/")):
        done.stdout = re.sub(rf"^(?:{re.escape(str(tree))}/)?{re.escape(link)}", real, done.stdout,
                             flags=re.MULTILINE)
    return done


def test_the_package_and_bench_type_check_clean(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    _package_tree(tree, python_sources=True)
    (tree / "bench").symlink_to(ROOT / "bench")
    done = _run(["mypy", "--config-file", str(CONFIG), "--cache-dir", str(tmp_path / "mypy-cache"),
                 "scangate", "bench"], cwd=tree, tree=tree)
    assert done.returncode == 0, f"mypy found errors:\n{done.stdout}{done.stderr}"
    assert "Success: no issues found" in done.stdout, done.stdout + done.stderr


def test_the_core_stub_matches_the_compiled_module(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    _package_tree(tree, python_sources=False)
    done = _run(["mypy.stubtest", "--mypy-config-file", str(CONFIG), "--allowlist", str(ALLOWLIST),
                 "scangate._core"], cwd=tree, tree=tree)
    assert done.returncode == 0, f"core/codec.pyi differs from the compiled core:\n{done.stdout}{done.stderr}"


def test_the_stub_check_fails_when_the_stub_lies(tmp_path: Path) -> None:
    """stubtest is really comparing: a stub with a wrong signature fails it."""
    tree = tmp_path / "tree"
    pkg = tmp_path / "tree" / "scangate"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("", encoding="utf-8")
    core = pkg / "_core"
    core.mkdir()
    for entry in (ROOT / "core").iterdir():
        if entry.name != "codec.pyi" and entry.name != "__pycache__":
            (core / entry.name).symlink_to(entry)
    stub = (ROOT / "core" / "codec.pyi").read_text(encoding="utf-8")
    lie = stub.replace("def check_symbol(symbols: npt.NDArray[np.uint8]) -> int: ...",
                       "def check_symbol(symbols: npt.NDArray[np.uint8], extra: int) -> int: ...")
    assert lie != stub
    (core / "codec.pyi").write_text(lie, encoding="utf-8")
    done = _run(["mypy.stubtest", "--mypy-config-file", str(CONFIG), "--allowlist", str(ALLOWLIST),
                 "scangate._core"], cwd=tree, tree=tree)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "scangate._core.codec.check_symbol is inconsistent" in done.stdout, done.stdout
