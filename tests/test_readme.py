"""The README's promises: `scangate serve` with no flags works, and the Python
walkthrough runs as printed against a real server."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import scangate

from serverproc import SCANGATE_BIN, running

README = Path(__file__).resolve().parents[1] / "README.md"


def test_serve_with_no_flags_creates_the_data_dir_and_listens_on_the_defaults(tmp_path: Path) -> None:
    proc = subprocess.Popen([str(SCANGATE_BIN), "serve"], cwd=tmp_path, stdout=subprocess.PIPE,
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
    text = README.read_text(encoding="utf-8")
    section = text[text.index("### Serving"):]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)  # type: ignore[union-attr]
    expected = [m.group(1).strip() for m in re.finditer(r"print\(.*?#\s*(.*)$", code, re.M)]
    with running(tmp_path / "d") as srv:
        r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                           env={**os.environ, "SCANGATE_TARGET": srv.target})
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == expected
