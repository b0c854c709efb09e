"""`scangate tokens list` and `scangate tokens revoke` (issue 12, item 10): names
and roles, never a token or its hash; revocation rewrites the tokens file
atomically, keeps everything else in it, and a revoked token is refused once the
server restarts."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

import scangate
from scangate.server import auth
from scangate.server.auth import TokenTable

from serverproc import running


def _add(run_cli, data: Path, name: str, role: str) -> str:  # type: ignore[no-untyped-def]
    r = run_cli("tokens", "add", name, "--role", role, "--data", data)
    assert r.returncode == 0, r.stderr
    return r.stdout.strip()


def test_list_shows_names_and_roles_never_secrets(tmp_path: Path, run_cli) -> None:  # type: ignore[no-untyped-def]
    data = tmp_path / "d"
    scangate.init_data_dir(data).close()
    r = run_cli("tokens", "list", "--data", data, "--json")
    assert r.returncode == 0 and r.stdout == ""          # no file: no tokens
    tokens = {name: _add(run_cli, data, name, role) for name, role in (("app", "scanner"), ("ops", "admin"))}
    for args in ((), ("--json",)):
        r = run_cli("tokens", "list", "--data", data, *args)
        assert r.returncode == 0, r.stderr
        text = r.stdout + r.stderr
        assert all(t not in text for t in tokens.values())
        assert "sha256" not in text and not any(len(w) == 64 for w in text.replace('"', " ").split())
    r = run_cli("tokens", "list", "--data", data, "--json")
    assert [json.loads(x) for x in r.stdout.splitlines()] == [{"name": "app", "role": "scanner"},
                                                               {"name": "ops", "role": "admin"}]
    r = run_cli("tokens", "list", "--data", data)
    assert r.stdout.splitlines() == ["app\tscanner", "ops\tadmin"]


def test_revoke_removes_only_that_name_atomically(tmp_path: Path, run_cli) -> None:  # type: ignore[no-untyped-def]
    data = tmp_path / "d"
    scangate.init_data_dir(data).close()
    path = data / "tokens.toml"
    path.write_text("# tokens of the brand's apps; ask ops before editing\n")
    os.chmod(path, 0o600)
    t_app = _add(run_cli, data, "app", "scanner")
    t_line = _add(run_cli, data, "line-7", "line")
    t_app2 = _add(run_cli, data, "app", "scanner")        # a second token of the same client
    before_inode = path.stat().st_ino
    r = run_cli("tokens", "revoke", "--data", data, "app")
    assert r.returncode == 0, r.stderr
    assert "revoked 2 tokens of 'app'" in r.stdout and "restarted" in r.stdout
    assert path.stat().st_ino != before_inode                    # a new file renamed into place
    assert path.stat().st_mode & 0o777 == 0o600
    assert path.read_text().startswith("# tokens of the brand's apps")   # the rest kept as written
    table = TokenTable.load(path)
    assert len(table) == 1 and table.identify(t_line) is not None
    assert table.identify(t_app) is None and table.identify(t_app2) is None
    assert [p.name for p in auth.list_tokens(path)] == ["line-7"]
    assert [p.name for p in data.iterdir() if p.name.endswith(".tmp")] == []   # no temp file left
    # an unknown name: exit 2, naming the names there are; the file untouched
    text = path.read_text()
    r = run_cli("tokens", "revoke", "--data", data, "app")
    assert r.returncode == 2 and "no token named 'app'" in r.stderr and "line-7" in r.stderr
    assert path.read_text() == text
    r = run_cli("tokens", "revoke", "--data", tmp_path / "nowhere", "app")
    assert r.returncode == 2 and "no file" in r.stderr


def test_revoke_refuses_a_broken_file(tmp_path: Path) -> None:
    p = tmp_path / "tokens.toml"
    p.write_text('[[tokens]]\nname = "a"\nrole = "root"\nsha256 = "' + "0" * 64 + '"\n')
    with pytest.raises(scangate.InvalidArgument, match=r"tokens\[0\]\.role"):
        auth.revoke_token(p, "a")
    assert "root" in p.read_text()


def test_a_revoked_token_is_refused_after_restart(tmp_path: Path, run_cli) -> None:  # type: ignore[no-untyped-def]
    data = tmp_path / "d"
    with scangate.init_data_dir(data) as dd:
        code = dd.issue_codes("BEER", "item", 1).as_strings()[0]
    t_app = _add(run_cli, data, "app", "scanner")
    t_ops = _add(run_cli, data, "ops", "admin")
    with running(data) as srv:
        with scangate.Client(srv.target, token=t_app) as app:
            assert app.trace([code])[0].found
    assert run_cli("tokens", "revoke", "--data", data, "app").returncode == 0
    with running(data) as srv:
        with scangate.Client(srv.target, token=t_app) as app:
            with pytest.raises(scangate.PermissionDenied) as exc:
                app.trace([code])
            assert exc.value.code == "UNAUTHENTICATED"
        with scangate.Client(srv.target, token=t_ops) as ops:     # the other token still works
            assert ops.trace([code])[0].found
