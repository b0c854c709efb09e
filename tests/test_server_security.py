"""Security of `scangate serve`: tokens and roles, TLS and mutual TLS, rate limits
against code guessing, and no key material in replies or logs."""
from __future__ import annotations

from pathlib import Path

import grpc
import pytest

import scangate
from scangate.server.auth import TokenTable, add_token, allowed
from scangate.trace import Dealer

from serverproc import make_tls, running


def _issue(data: Path, n: int = 5) -> list[str]:
    with scangate.init_data_dir(data) as dd:
        return dd.issue_codes("BEER", "item", n).as_strings()


def test_tokens_and_roles(tmp_path: Path, run_cli) -> None:  # type: ignore[no-untyped-def]
    data = tmp_path / "d"
    codes = _issue(data)
    tokens = {}
    for name, role in (("mini-program", "scanner"), ("line-7", "line"), ("ops", "admin")):
        r = run_cli("tokens", "add", name, "--role", role, "--data", data)
        assert r.returncode == 0, r.stderr
        tokens[role] = r.stdout.strip()
    stored = (data / "tokens.toml").read_text()
    assert all(t not in stored for t in tokens.values())          # only hashes are kept
    assert (data / "tokens.toml").stat().st_mode & 0o777 == 0o600
    with running(data) as srv:
        assert "auth on" in srv.logs()
        with scangate.Client(srv.target) as anonymous:
            with pytest.raises(scangate.PermissionDenied) as exc:
                anonymous.scan(codes[0], "u1")
            assert exc.value.code == "UNAUTHENTICATED"
        with scangate.Client(srv.target, token="sg_wrong") as wrong:
            with pytest.raises(scangate.PermissionDenied, match="unknown token"):
                wrong.scan(codes[0], "u1")
        with scangate.Client(srv.target, token=tokens["scanner"]) as app:
            assert app.scan(codes[0], "u1", region=510104).verdict.label == "genuine"
            assert app.trace([codes[0]])[0].found
            with pytest.raises(scangate.PermissionDenied) as exc:
                app.put_campaign('id = "x"')
            assert exc.value.code == "PERMISSION_DENIED"
            with pytest.raises(scangate.PermissionDenied):
                next(app.issue_codes("BEER", "item", 1))
        with scangate.Client(srv.target, token=tokens["line"]) as line:
            assert len(next(line.issue_codes("BEER", "item", 3)).codes) == 3
            with pytest.raises(scangate.PermissionDenied):
                line.scan(codes[1], "u1")
            with pytest.raises(scangate.PermissionDenied):
                line.put_dealers([Dealer("D", "", ("51",))])
        with scangate.Client(srv.target, token=tokens["admin"]) as admin:
            assert admin.put_dealers([Dealer("D", "", ("51",))]) == 1
            assert admin.list_campaigns() == []
        logs = srv.logs()
    assert all(t not in logs for t in tokens.values())


def test_role_table() -> None:
    assert allowed("scanner", "/scangate.v1.ScanService/Scan")
    assert not allowed("scanner", "/scangate.v1.CampaignService/PutCampaign")
    assert allowed("line", "/scangate.v1.TraceService/UploadEpcis")
    assert not allowed("line", "/scangate.v1.PointsService/RedeemPoints")
    assert allowed("admin", "/scangate.v1.PayoutService/ListPayouts")
    assert not allowed("nobody", "/scangate.v1.ScanService/Scan")


def test_tokens_file_errors_name_the_entry(tmp_path: Path) -> None:
    p = tmp_path / "tokens.toml"
    p.write_text('[[tokens]]\nname = "a"\nrole = "root"\nsha256 = "' + "0" * 64 + '"\n')
    with pytest.raises(scangate.InvalidArgument, match=r"tokens\[0\]\.role"):
        TokenTable.load(p)
    with pytest.raises(scangate.InvalidArgument, match=r"tokens\[0\]\.role"):
        add_token(p, "b", "scanner")            # never appends to a broken file
    with pytest.raises(scangate.InvalidArgument, match="role"):
        add_token(tmp_path / "t2.toml", "b", "superuser")


def test_require_auth_without_tokens_refuses_to_start(tmp_path: Path, run_cli) -> None:  # type: ignore[no-untyped-def]
    r = run_cli("serve", "--data", tmp_path / "d", "--port", "0", env={"SCANGATE_SERVER_REQUIRE_AUTH": "true"},
                timeout=60)
    assert r.returncode == 2 and "server.require_auth" in r.stderr


def test_bad_config_names_the_key(tmp_path: Path, run_cli) -> None:  # type: ignore[no-untyped-def]
    r = run_cli("serve", "--data", tmp_path / "d", env={"SCANGATE_SERVER_WORKERS": "many"}, timeout=60)
    assert r.returncode == 2 and "SCANGATE_SERVER_WORKERS" in r.stderr
    cfg = tmp_path / "s.toml"
    cfg.write_text("[server]\nport = 70000\n")
    r = run_cli("serve", "--data", tmp_path / "d", "--config", cfg, timeout=60)
    assert r.returncode == 2 and "server.port" in r.stderr
    cfg.write_text("[server]\ntls_cert = \"nope.pem\"\ntls_key = \"nope.key\"\n")
    r = run_cli("serve", "--data", tmp_path / "d", "--config", cfg, timeout=60)
    assert r.returncode == 2 and "server.tls_cert: no file nope.pem" in r.stderr
    cfg.write_text("[limits]\nactor_scans_per_minute = -1\n")
    r = run_cli("serve", "--data", tmp_path / "d", "--config", cfg, timeout=60)
    assert r.returncode == 2 and "limits.actor_scans_per_minute" in r.stderr
    r = run_cli("serve", "--data", tmp_path / "d", "--workers", "0", timeout=60)
    assert r.returncode == 2 and "--workers" in r.stderr
    assert not (tmp_path / "d").exists()          # nothing was created by a refused start


def test_tls_and_mutual_tls(tmp_path: Path) -> None:
    tls = make_tls(tmp_path)
    data = tmp_path / "d"
    codes = _issue(data)
    cfg = tmp_path / "tls.toml"
    cfg.write_text(f'[server]\ntls_cert = "{tls["server_cert"]}"\ntls_key = "{tls["server_key"]}"\n')
    with running(data, "--config", str(cfg)) as srv:
        assert "tls://" in srv.logs()
        with scangate.Client(srv.target, root_certificates=tls["ca"], server_name="localhost", timeout=5) as c:
            assert c.scan(codes[0], "u1", region=510104).verdict.label == "genuine"
        with scangate.Client(srv.target, timeout=3) as plain:       # plaintext to a TLS port
            with pytest.raises(scangate.Unavailable):
                plain.scan(codes[1], "u1")
    cfg.write_text(f'[server]\ntls_cert = "{tls["server_cert"]}"\ntls_key = "{tls["server_key"]}"\n'
                   f'tls_client_ca = "{tls["ca"]}"\n')
    with running(data, "--config", str(cfg)) as srv:
        with scangate.Client(srv.target, root_certificates=tls["ca"], server_name="localhost", timeout=3) as c:
            with pytest.raises(scangate.Unavailable):                # no client certificate
                c.scan(codes[1], "u1")
        with scangate.Client(srv.target, root_certificates=tls["ca"], certificate_chain=tls["client_cert"],
                             private_key=tls["client_key"], server_name="localhost", timeout=5) as c:
            d = c.scan(codes[1], "u1", region=510104)
            assert d.verdict.label == "genuine"


def test_guessing_codes_is_rate_limited_and_keys_never_leak(tmp_path: Path) -> None:
    data = tmp_path / "d"
    codes = _issue(data)
    env = {"SCANGATE_LIMITS_ACTOR_FAILURES_PER_HOUR": "5", "SCANGATE_LIMITS_ACTOR_SCANS_PER_MINUTE": "1000"}
    with running(data, env=env) as srv, scangate.Client(srv.target) as c:
        guesses = [codes[0][:-8] + f"{i:08d}".translate(str.maketrans("01", "AB")) for i in range(5)]
        for g in guesses:
            assert c.scan(g, "guesser").verdict.label == "counterfeit"
        with pytest.raises(scangate.RateLimited, match="not genuine"):
            c.scan(codes[0], "guesser")
        assert c.scan(codes[0], "honest-user", region=510104).verdict.label == "genuine"
        replies = [str(c.verify_codes(codes)), str(c.scan(codes[1], "u2")), str(c.trace(codes))]
        logs = srv.logs()
    keys = scangate.open_data_dir(data)
    try:
        material = [kv.key.hex() for kv in keys.keys.versions()]
    finally:
        keys.close()
    for secret in material:
        assert secret.lower() not in logs.lower() and secret.upper() not in logs
        assert all(secret not in r for r in replies)


def test_scans_per_minute_limit(tmp_path: Path) -> None:
    data = tmp_path / "d"
    codes = _issue(data)
    with running(data, env={"SCANGATE_LIMITS_ACTOR_SCANS_PER_MINUTE": "3"}) as srv, \
            scangate.Client(srv.target) as c:
        for code in codes[:3]:
            c.scan(code, "busy", region=510104)
        with pytest.raises(scangate.RateLimited, match="scan rate limit"):
            c.scan(codes[3], "busy", region=510104)
        c.scan(codes[3], "calm", region=510104)


def test_per_client_request_limit(tmp_path: Path) -> None:
    data = tmp_path / "d"
    codes = _issue(data)
    with running(data, env={"SCANGATE_LIMITS_CLIENT_REQUESTS_PER_SECOND": "3"}) as srv, \
            scangate.Client(srv.target) as c:
        outcomes = []
        for _ in range(8):           # well inside one second: 3 pass, the rest are refused
            try:
                c.verify_codes(codes[:1])
                outcomes.append("ok")
            except scangate.RateLimited as exc:
                assert "request rate limit" in str(exc)
                outcomes.append("limited")
        assert outcomes[:3] == ["ok"] * 3 and "limited" in outcomes[3:]
        with grpc.insecure_channel(srv.target) as ch:      # health checks are never limited
            from grpc_health.v1 import health_pb2, health_pb2_grpc

            stub = health_pb2_grpc.HealthStub(ch)
            assert all(stub.Check(health_pb2.HealthCheckRequest(), timeout=5).status == 1 for _ in range(10))
