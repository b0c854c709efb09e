"""The CLI's exit statuses, through real processes: 0 success, 1 "the answer is
no", 2 bad input or usage, 3 an unexpected failure (never 1: a script must not
read a crash as a verdict), 130 interrupted."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from conftest import RunCli


def test_success_not_genuine_and_bad_input(tmp_path: Path, run_cli: RunCli) -> None:
    data = tmp_path / "d"
    assert run_cli("init", "--data", data).returncode == 0
    assert run_cli("issue", "--data", data, "--sku", "S", "--count", "3", "--out", tmp_path / "c.txt").returncode == 0
    codes = (tmp_path / "c.txt").read_text()
    assert run_cli("verify", "--data", data, "-", input=codes).returncode == 0
    assert run_cli("verify", "--data", data, "-", input=codes + "not-a-code\n").returncode == 1
    # usage: an unknown command, a missing option, a file that does not exist, a bad value
    for args in (("nope",), ("issue", "--data", data, "--sku", "S"), ("verify", "--data", data, tmp_path / "none"),
                 ("issue", "--data", data, "--sku", "S", "--count", "0", "--out", tmp_path / "x")):
        r = run_cli(*args)
        assert r.returncode == 2, (args, r.stderr)
        assert "Traceback" not in r.stderr
    # bad input the command itself rejects: no data directory
    r = run_cli("verify", "--data", tmp_path / "missing", "-", input=codes)
    assert r.returncode == 2 and "no scangate data directory" in r.stderr


def test_help_and_version_exit_0_and_help_documents_the_statuses(run_cli: RunCli) -> None:
    r = run_cli("--help")
    assert r.returncode == 0
    for line in ("0  success", "1  the answer is no", "2  bad input or usage", "3  an unexpected failure",
                 "130  interrupted"):
        assert line in r.stdout
    assert run_cli("--version").returncode == 0
    assert run_cli("issue", "--help").returncode == 0


CRASH = textwrap.dedent("""
    import sys
    import scangate.datadir

    def broken(self, codes):
        raise RuntimeError("forced failure for the test")

    scangate.datadir.DataDir.verify_codes = broken
    from scangate.cli import main
    main(sys.argv[1:])
""")


def _crash(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    data = tmp_path / "d"
    if not data.exists():
        subprocess.run([sys.executable, "-m", "scangate.cli", "init", "--data", str(data)], check=True,
                       capture_output=True)
    return subprocess.run([sys.executable, "-c", CRASH, *args, "verify", "--data", str(data), "-"],
                          input="x\n", capture_output=True, text=True, timeout=60)


def test_an_internal_error_exits_3_with_one_line_and_no_traceback(tmp_path: Path) -> None:
    r = _crash(tmp_path)
    assert r.returncode == 3, r
    assert r.stderr.splitlines() == [
        "internal error: RuntimeError: forced failure for the test; run with --verbose for the traceback"]


def test_verbose_shows_the_traceback_of_an_internal_error(tmp_path: Path) -> None:
    r = _crash(tmp_path, "--verbose")
    assert r.returncode == 3
    assert "Traceback (most recent call last)" in r.stderr and ", in broken\n" in r.stderr
    assert r.stderr.rstrip().splitlines()[-1] == "internal error: RuntimeError: forced failure for the test"


def test_ctrl_c_exits_130_not_1(tmp_path: Path, run_cli: RunCli) -> None:
    data = tmp_path / "d"
    assert run_cli("init", "--data", data).returncode == 0
    fifo = tmp_path / "in"
    os.mkfifo(fifo)
    # verify waits on a FIFO nobody writes to; SIGINT then interrupts it
    proc = subprocess.Popen([str(Path(sys.executable).with_name("scangate")), "verify", "--data", str(data),
                             str(fifo)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    writer = -1
    try:
        # wait until verify has the FIFO open (a writer can then open it without
        # blocking), however long its start-up takes on a loaded machine
        deadline = time.monotonic() + 120
        while writer < 0 and time.monotonic() < deadline:
            try:
                writer = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
            except OSError:     # ENXIO: no reader yet
                time.sleep(0.05)
        assert writer >= 0, "verify never opened its input"
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
        if writer >= 0:
            os.close(writer)
    assert proc.returncode == 130, err
    assert "Traceback" not in err
