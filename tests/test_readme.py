"""The README's promises: its serve command ("Two commands") works in an empty
directory and listens on the defaults it names, and the Python walkthrough
("Serving") runs as printed against a real server. The shell blocks are
tests/test_docs_commands.py's."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import scangate

from docblocks import README, readme_serve_command, section_blocks
from serverproc import SCANGATE_BIN, running


def test_serve_with_no_flags_creates_the_data_dir_and_listens_on_the_defaults(tmp_path: Path) -> None:
    # The README's command after its install steps, run with the console script of
    # the venv these tests run in (the README's own .venv on a CI run).
    _venv, args = readme_serve_command()
    assert args == ["serve"], f"the README's serve command now passes {args}: update what this test expects"
    proc = subprocess.Popen([str(SCANGATE_BIN), *args], cwd=tmp_path, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert "serving scangate-data on 127.0.0.1:50051 with 1 worker(s) (created it)" in line, \
            line + (proc.stderr.read() if proc.poll() is not None and proc.stderr else "")
        assert "metrics on http://127.0.0.1:9464/metrics" in line
        with scangate.Client() as c:
            assert c.list_campaigns() == []
    finally:
        proc.terminate()
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "scangate: stopped" in out
    assert (tmp_path / "scangate-data" / "lmdb" / "data.mdb").exists()


def test_walkthrough_runs_as_printed(tmp_path: Path) -> None:
    found = section_blocks(README, "Serving", "python")
    assert found, "README.md: no python block under the Serving heading"
    code = found[0].text
    expected = [m.group(1).strip() for m in re.finditer(r"print\(.*?#\s*(.*)$", code, re.M)]
    with running(tmp_path / "d") as srv:
        r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                           env={**os.environ, "SCANGATE_TARGET": srv.target})
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == expected
