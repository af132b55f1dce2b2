"""A hostile HTTP server on 127.0.0.1: one route per way a feed server can misbehave.

Routes are plain functions of the request handler, so a test can add its own; the
server records every request (path, headers, start time) and the most requests it
had in flight at once. `tls=True` serves HTTPS with a self-signed certificate.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import ssl
import struct
import threading
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import brotli

Handler = Callable[[BaseHTTPRequestHandler], None]
MB = 1024 * 1024
HOST = "127.0.0.1"


@dataclass(frozen=True)
class Hit:
    path: str
    headers: dict[str, str]  # names lowercased
    started: float  # time.monotonic()


def respond(
    h: BaseHTTPRequestHandler,
    status: int,
    body: bytes = b"",
    headers: dict[str, str] | None = None,
    content_length: int | None = -1,
) -> None:
    """Content-Length is the body's unless given (a lie) or None (none sent)."""
    h.send_response(status)
    for name, value in (headers or {}).items():
        h.send_header(name, value)
    if content_length is not None:
        h.send_header("Content-Length", str(len(body) if content_length < 0 else content_length))
    h.end_headers()
    h.wfile.write(body)


# --- compression bombs, built in a few hundred ms without ever holding the decoded bytes --------


def deflate_bomb(decoded_mb: int) -> tuple[bytes, int]:
    """Raw deflate of `decoded_mb` MiB of zeros (~1 KB per MiB), and its CRC-32."""
    zeros = bytes(MB)
    packer = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    block = packer.compress(zeros) + packer.flush(zlib.Z_FULL_FLUSH)  # self-contained: repeatable
    crc = 0
    for _ in range(decoded_mb):
        crc = zlib.crc32(zeros, crc)
    end = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS).flush()  # an empty final block
    return block * decoded_mb + end, crc


def gzip_bomb(decoded_mb: int) -> bytes:
    raw, crc = deflate_bomb(decoded_mb)
    header = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"
    return header + raw + struct.pack("<II", crc, (decoded_mb * MB) & 0xFFFFFFFF)


def brotli_bomb(decoded_mb: int) -> bytes:
    packer = brotli.Compressor(quality=1)
    zeros = bytes(MB)
    return b"".join(packer.process(zeros) for _ in range(decoded_mb)) + packer.finish()


# --- a self-signed certificate for 127.0.0.1 -----------------------------------------------------


def self_signed_cert(folder: Path) -> tuple[Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False
        )
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_path, key_path


class HostileServer:
    def __init__(self, tls_dir: Path | None = None) -> None:
        self.routes: dict[str, Handler] = {}
        self.hits: list[Hit] = []
        self.stop_event = threading.Event()
        self.in_flight = 0
        self.max_in_flight = 0
        self.waiting = 0  # for routes that count requests held before answering
        self.max_waiting = 0
        self._lock = threading.Lock()
        owner = self

        class _Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                headers = {k.lower(): v for k, v in self.headers.items()}
                with owner._lock:
                    owner.hits.append(Hit(self.path, headers, time.monotonic()))
                    owner.in_flight += 1
                    owner.max_in_flight = max(owner.max_in_flight, owner.in_flight)
                try:
                    route = owner.routes.get(self.path)
                    if route is None:
                        self.send_error(404)
                    else:
                        route(self)
                except OSError:
                    pass  # the client gave up, as the limits under test make it do
                finally:
                    with owner._lock:
                        owner.in_flight -= 1

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._server.daemon_threads = True
        self.scheme = "http"
        if tls_dir is not None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(*self_signed_cert(tls_dir))
            self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
            self.scheme = "https"
        threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()
        self.install_misbehaviours()

    @property
    def origin(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self._server.server_address[1]}"

    def url(self, path: str) -> str:
        return self.origin + path

    def hits_of(self, path: str) -> list[Hit]:
        return [h for h in self.hits if h.path == path]

    def headers_of(self, path: str) -> list[dict[str, str]]:
        return [h.headers for h in self.hits_of(path)]

    def close(self) -> None:
        self.stop_event.set()
        self._server.shutdown()
        self._server.server_close()

    # --- the routes -----------------------------------------------------------------------------

    def install_misbehaviours(self) -> None:
        r = self.routes
        r["/drip-headers"] = self._drip_headers
        r["/drip-body"] = self._drip_body
        r["/hang"] = lambda h: self.stop_event.wait(30) and None
        r["/length-lies-short"] = lambda h: respond(h, 200, b"<rss>" + b"x" * 995, content_length=10)
        r["/length-lies-long"] = lambda h: respond(h, 200, b"<rss>truncated", content_length=100_000)
        r["/no-length"] = lambda h: respond(h, 200, b"<rss>" + b"y" * 50_000, content_length=None)
        r["/redirect-no-location"] = lambda h: respond(h, 302)
        r["/loop-a"] = lambda h: respond(h, 302, headers={"Location": "/loop-b"})
        r["/loop-b"] = lambda h: respond(h, 307, headers={"Location": self.url("/loop-a")})
        r["/to-file"] = lambda h: respond(h, 302, headers={"Location": "file:///etc/passwd"})
        r["/gone"] = lambda h: respond(h, 410, b"gone")
        r["/retry-seconds"] = lambda h: respond(h, 429, headers={"Retry-After": "7200"})
        r["/retry-date"] = self._retry_date
        r["/retry-garbage"] = lambda h: respond(h, 429, headers={"Retry-After": "soon, maybe"})
        r["/retry-absurd"] = lambda h: respond(h, 503, headers={"Retry-After": "999999999"})
        r["/retry-past"] = lambda h: respond(h, 503, headers={"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"})
        r["/error-500"] = lambda h: respond(h, 500, b"oops")

    def _drip_headers(self, h: BaseHTTPRequestHandler) -> None:
        h.wfile.write(b"HTTP/1.1 200 OK\r\n")
        for byte in b"X-Slow: " + b"a" * 200 + b"\r\n":  # one header byte every 0.05 s: 10 s in all
            if self.stop_event.wait(0.05):
                return
            h.wfile.write(bytes([byte]))
            h.wfile.flush()

    def _drip_body(self, h: BaseHTTPRequestHandler) -> None:
        h.send_response(200)
        h.send_header("Content-Length", "200")
        h.end_headers()
        h.wfile.flush()
        for _ in range(200):  # one body byte every 0.05 s
            if self.stop_event.wait(0.05):
                return
            h.wfile.write(b"x")
            h.wfile.flush()

    def _retry_date(self, h: BaseHTTPRequestHandler) -> None:
        when = RETRY_DATE
        respond(h, 503, headers={"Retry-After": format_datetime(when, usegmt=True)})


# The HTTP-date the /retry-date route asks clients to come back at.
RETRY_DATE = dt.datetime(2024, 6, 19, 15, 0, tzinfo=dt.timezone.utc)
