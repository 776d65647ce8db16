"""TLS to the API is verified: a server whose certificate is not trusted gets no request (and so
never sees the key); the same server, once its certificate is trusted, works."""

from __future__ import annotations

import datetime
import ipaddress
import json
import ssl
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from local.fixtures.delivery import Story
from local.fixtures.function import LocalFunction

SUCCESS = {
    "success": True,
    "data": {"portfolioId": "port_abc123", "rebalanceId": "rebal_tls", "status": "triggered"},
    "requestId": "req_tls",
    "correlationId": "corr_tls",
}


class _Handler(BaseHTTPRequestHandler):
    keys_seen: list[str] = []  # noqa: RUF012 - one server per test

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.keys_seen.append(self.headers.get("X-API-KEY", ""))
        body = json.dumps(SUCCESS).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


def _self_signed(directory: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


@pytest.fixture
def tls_server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    cert_path, key_path = _self_signed(tmp_path)
    _Handler.keys_seen = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_path, key_path)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"https://127.0.0.1:{server.server_address[1]}", cert_path
    server.shutdown()
    server.server_close()
    thread.join()


def test_an_untrusted_certificate_is_refused_before_the_key_is_sent(
    start_function: Callable[..., LocalFunction],
    deliver: Callable[..., Story],
    tls_server: tuple[str, Path],
) -> None:
    url, _ = tls_server
    function = start_function(GLIDER_API_BASE_URL=url, GLIDER_MAX_ATTEMPTS="1")

    result = deliver({"portfolioId": "port_abc123"}, function=function).of("port_abc123")

    assert result["reason"] == "CONNECTION_ERROR"
    assert "SSLError" in result["detail"]
    assert _Handler.keys_seen == []


def test_a_trusted_certificate_is_accepted(
    start_function: Callable[..., LocalFunction],
    deliver: Callable[..., Story],
    tls_server: tuple[str, Path],
) -> None:
    url, cert_path = tls_server
    function = start_function(GLIDER_API_BASE_URL=url, SSL_CERT_FILE=str(cert_path))

    result = deliver({"portfolioId": "port_abc123"}, function=function).of("port_abc123")

    assert result["outcome"] == "triggered"
    assert result["rebalance_id"] == "rebal_tls"
    assert len(_Handler.keys_seen) == 1
