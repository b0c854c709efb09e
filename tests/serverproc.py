"""A real `scangate serve` process for end-to-end tests, and TLS material for it."""
from __future__ import annotations

import datetime as dt
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import grpc

# The console script installed next to the interpreter that runs the tests.
SCANGATE_BIN = Path(sys.executable).parent / "scangate"
_SERVING = re.compile(r"serving (.+) on (?:tls://)?([\d.]+):(\d+) with (\d+) worker")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ServerProcess:
    """``scangate serve`` in its own process; ``target`` is host:port once it serves.
    ``new_session``: the leader of a process group of its own (see
    hostile_clients.KillableServer)."""

    def __init__(self, data: Path, *args: str, env: dict[str, str] | None = None, metrics: bool = False,
                 start_timeout: float = 90, new_session: bool = False):
        self.metrics_port = free_port() if metrics else 0
        cmd = [str(SCANGATE_BIN), "serve", "--data", str(data), "--port", "0",
               "--metrics-port", str(self.metrics_port), *args]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                     env={**os.environ, **(env or {})}, start_new_session=new_session)
        self.stdout: list[str] = []
        self.stderr: list[str] = []
        self._threads: list[threading.Thread] = []
        self._drain(self.proc.stderr, self.stderr)
        self.target = ""
        deadline = time.monotonic() + start_timeout
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.stdout.append(line)
            m = _SERVING.search(line)
            if m:
                self.target = f"{m.group(2)}:{m.group(3)}"
                break
            if time.monotonic() > deadline:
                break
        if not self.target:
            self.abort()
            raise RuntimeError(f"server did not start: {''.join(self.stdout)}{''.join(self.stderr)[-3000:]}")
        self._drain(self.proc.stdout, self.stdout)

    def abort(self) -> None:
        """Kill a server that did not start."""
        self.proc.kill()
        self.stop()

    def _drain(self, stream, sink: list[str]) -> None:  # type: ignore[no-untyped-def]
        def run() -> None:
            for line in stream:
                sink.append(line)

        t = threading.Thread(target=run, daemon=True)
        t.start()
        self._threads.append(t)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60) -> int:
        """Signal the server, wait for it to exit, collect its output; its exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        code = self.proc.wait(timeout)
        for t in self._threads:
            t.join(10)
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()
        return code

    def logs(self) -> str:
        return "".join(self.stdout) + "".join(self.stderr)


def violations(err: "grpc.RpcError") -> list[str]:
    """The fields named by a gRPC error's BadRequest details (as the client reads them)."""
    from scangate.client import _violations

    return [field for field, _ in _violations(err)]


@contextmanager
def running(data: Path, *args: str, **kwargs) -> Iterator[ServerProcess]:  # type: ignore[no-untyped-def]
    server = ServerProcess(data, *args, **kwargs)
    try:
        yield server
    finally:
        server.stop()


def make_tls(dirpath: Path) -> dict[str, Path]:
    """A CA, a server certificate for localhost/127.0.0.1 and a client certificate,
    as PEM files in ``dirpath``."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
    import ipaddress

    now = dt.datetime.now(dt.timezone.utc)

    def name(cn: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    def key() -> ec.EllipticCurvePrivateKey:
        return ec.generate_private_key(ec.SECP256R1())

    ca_key = key()
    ca = (x509.CertificateBuilder().subject_name(name("scangate test CA")).issuer_name(name("scangate test CA"))
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                       content_commitment=False, key_encipherment=False, data_encipherment=False,
                                       key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
          .sign(ca_key, hashes.SHA256()))

    def leaf(cn: str, usage: x509.ObjectIdentifier, san: list[x509.GeneralName]) -> tuple[bytes, bytes]:
        k = key()
        cert = (x509.CertificateBuilder().subject_name(name(cn)).issuer_name(ca.subject)
                .public_key(k.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=1))
                .add_extension(x509.SubjectAlternativeName(san), critical=False)
                .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
                .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                               critical=False)
                .sign(ca_key, hashes.SHA256()))
        return (cert.public_bytes(serialization.Encoding.PEM),
                k.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()))

    server_cert, server_key = leaf("localhost", ExtendedKeyUsageOID.SERVER_AUTH,
                                   [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))])
    client_cert, client_key = leaf("packaging-line-7", ExtendedKeyUsageOID.CLIENT_AUTH,
                                   [x509.DNSName("packaging-line-7")])
    files = {"ca": ca.public_bytes(serialization.Encoding.PEM), "server_cert": server_cert,
             "server_key": server_key, "client_cert": client_cert, "client_key": client_key}
    out = {}
    for k, v in files.items():
        p = dirpath / f"{k}.pem"
        p.write_bytes(v)
        out[k] = p
    return out
