"""An HTTP proxy in front of the moto server that injects AWS faults by operation (stdlib only).

Every request is forwarded to the upstream endpoint as received (method, path and query,
headers, body) and the answer is relayed, except when a fault was injected for its operation:
the ``X-Amz-Target`` header for the JSON protocols (``secretsmanager.GetSecretValue``,
``AmazonSQS.SendMessageBatch``, ``DynamoDB_20120810.PutItem``) or the ``Action`` parameter, in
the query string or a form body, for the query protocol (``GetCallerIdentity``). Then the proxy
answers with the error an AWS service would send, in the request's protocol, so that botocore
parses it as that error code (and applies its own retry rules to it), or it resets the
connection without an answer. Nothing is forwarded for a faulted request.

    with FaultProxy(moto.endpoint_url, seed=7) as proxy:
        proxy.inject("secretsmanager.GetSecretValue", AwsFault.throttling(), rate=0.1)
        proxy.inject("AmazonSQS.SendMessageBatch", AwsFault.access_denied(), times=3)
        client = boto3.client("sqs", endpoint_url=proxy.endpoint_url, ...)

Which requests are faulted depends only on the seed and the order of the requests.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import random
import re
import socket
import struct
import threading
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler
from typing import Any, Literal, cast
from urllib.parse import parse_qs, urlsplit
from xml.sax.saxutils import escape

from local.loopback_server import BackgroundServer, StoppableHTTPServer

__all__ = ["AwsFault", "FaultProxy", "operation_of"]

AwsFaultKind = Literal[
    "throttling", "server_error", "access_denied", "connection_reset", "invalid_contents"
]

# Not forwarded either way: they describe one hop, not the message (the body is re-framed).
_HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "trailers",
        "transfer-encoding",
        "upgrade",
        "expect",
        "content-length",
    }
)
_MAX_BODY_BYTES = 16 * 1024 * 1024
_MAX_LINE_BYTES = 65536
# JSON-protocol services whose errors carry a namespaced __type (botocore keeps what follows "#").
_ERROR_NAMESPACES = {
    "AmazonSQS": "com.amazonaws.sqs#",
    "DynamoDB_20120810": "com.amazonaws.dynamodb.v20120810#",
}


@dataclass(frozen=True)
class AwsFault:
    """What the proxy answers instead of forwarding: an AWS error, or a reset connection."""

    kind: AwsFaultKind
    status: int = 0
    json_code: str = ""  # the JSON protocols' __type (and x-amzn-ErrorType)
    query_code: str = ""  # the query protocol's <Code>
    message: str = ""

    @classmethod
    def throttling(cls) -> AwsFault:
        """400 ThrottlingException (query protocol: Throttling): botocore backs off, retries."""
        return cls("throttling", 400, "ThrottlingException", "Throttling", "Rate exceeded")

    @classmethod
    def server_error(cls) -> AwsFault:
        """500 InternalFailure (query protocol: InternalError): botocore retries it."""
        return cls(
            "server_error",
            500,
            "InternalFailure",
            "InternalError",
            "The request processing has failed because of an unknown error.",
        )

    @classmethod
    def access_denied(cls) -> AwsFault:
        """400 AccessDeniedException (query protocol: AccessDenied): never retried by botocore."""
        return cls(
            "access_denied",
            400,
            "AccessDeniedException",
            "AccessDenied",
            "User is not authorized to perform this action",
        )

    @classmethod
    def connection_reset(cls) -> AwsFault:
        """Read the request, forward nothing, and close the connection with a TCP RST."""
        return cls("connection_reset")


@dataclass
class _Rule:
    operation: str
    fault: AwsFault
    rate: float
    remaining: int | None  # None: unlimited
    skip: int = 0  # matching requests let through before the rule starts to fire


# The characters SQS accepts in a message body and a String attribute value (XML 1.0's).
_SQS_INVALID = re.compile(r"[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
_SQS_SENDS = frozenset({"AmazonSQS.SendMessage", "AmazonSQS.SendMessageBatch"})
INVALID_MESSAGE_CONTENTS = AwsFault(
    "invalid_contents",
    400,
    "InvalidMessageContents",
    "InvalidMessageContents",
    "Invalid binary character was found in the message, the set of allowed characters is "
    "#x9 | #xA | #xD | #x20 to #xD7FF | #xE000 to #xFFFD | #x10000 to #x10FFFF",
)


def breaks_sqs_character_rule(operation: str, body: bytes) -> bool:
    """True when an SQS send carries a character SQS refuses (moto accepts them all)."""
    if operation not in _SQS_SENDS:
        return False
    try:
        request = json.loads(body)
    except ValueError:
        return False
    entries = request.get("Entries", [request]) if isinstance(request, dict) else []
    for entry in entries if isinstance(entries, list) else []:
        if not isinstance(entry, dict):
            continue
        texts = [entry.get("MessageBody")]
        attributes = entry.get("MessageAttributes")
        if isinstance(attributes, dict):
            texts += [a.get("StringValue") for a in attributes.values() if isinstance(a, dict)]
        if any(isinstance(t, str) and _SQS_INVALID.search(t) for t in texts):
            return True
    return False


def operation_of(headers: Any, path: str, body: bytes) -> str:
    """The AWS operation of a request: X-Amz-Target, else the Action parameter, else ""."""
    target = headers.get("X-Amz-Target")
    if target:
        return str(target).strip()
    action = parse_qs(urlsplit(path).query).get("Action")
    if action:
        return action[0]
    content_type = str(headers.get("Content-Type") or "")
    if content_type.startswith("application/x-www-form-urlencoded"):
        action = parse_qs(body.decode("utf-8", "replace")).get("Action")
        if action:
            return action[0]
    return ""


class FaultProxy(BackgroundServer):
    """A fault-injecting HTTP proxy on 127.0.0.1 (a free port) in front of `upstream_url`. It
    keeps its clients' connections alive, as AWS endpoints do."""

    def __init__(self, upstream_url: str, *, seed: int = 0, upstream_timeout: float = 60.0) -> None:
        super().__init__("fault-proxy")
        parts = urlsplit(upstream_url)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"upstream_url must be an http URL, got {upstream_url!r}")
        self.upstream_host = parts.hostname
        self.upstream_port = parts.port or 80
        self.upstream_timeout = upstream_timeout
        self._lock = threading.Lock()
        self._rng = random.Random(seed)  # noqa: S311 - fault selection, not cryptography
        self._rules: list[_Rule] = []
        self._counts: Counter[str] = Counter()
        self._injected: Counter[str] = Counter()
        self._injected_by_fault: Counter[tuple[str, str]] = Counter()

    # ---- lifecycle (start, stop, context manager: BackgroundServer)

    def _make_server(self) -> _ProxyServer:
        return _ProxyServer(("127.0.0.1", 0), self)

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self._port()}"

    # ---- faults

    def inject(
        self,
        operation: str,
        fault: AwsFault,
        *,
        rate: float = 1.0,
        times: int | None = None,
        after: int = 0,
    ) -> None:
        """Fault a share `rate` of the requests for `operation`, `times` times at most (None: no
        limit), once `after` of them have gone through untouched (a DLQ write that fails after
        its first batch landed, say). The most recently injected rule that matches a request is
        tried first; a rule that does not fire (rate, after) lets the next older one try."""
        if not 0.0 <= rate <= 1.0:
            raise ValueError("rate must be between 0 and 1")
        if times is not None and times < 0:
            raise ValueError("times must be >= 0")
        if after < 0:
            raise ValueError("after must be >= 0")
        with self._lock:
            self._rules.insert(0, _Rule(operation, fault, rate, times, after))

    def clear(self, operation: str | None = None) -> None:
        """Remove every rule (or only those for `operation`); counters are kept."""
        with self._lock:
            self._rules = [
                r for r in self._rules if operation is not None and r.operation != operation
            ]

    @property
    def counts(self) -> dict[str, int]:
        """Requests seen per operation ("" for a request with no recognisable operation)."""
        with self._lock:
            return dict(self._counts)

    @property
    def injected(self) -> dict[str, int]:
        """Faults injected per operation."""
        with self._lock:
            return dict(self._injected)

    @property
    def injected_by_fault(self) -> dict[tuple[str, str], int]:
        """Faults injected per (operation, fault kind)."""
        with self._lock:
            return dict(self._injected_by_fault)

    def _decide(self, operation: str) -> AwsFault | None:
        with self._lock:
            self._counts[operation] += 1
            for rule in self._rules:
                if rule.operation != operation or rule.remaining == 0:
                    continue
                if rule.skip:
                    rule.skip -= 1
                    continue
                if rule.rate < 1.0 and self._rng.random() >= rule.rate:
                    continue
                if rule.remaining is not None:
                    rule.remaining -= 1
                self._rules = [r for r in self._rules if r.remaining != 0]
                self._injected[operation] += 1
                self._injected_by_fault[(operation, rule.fault.kind)] += 1
                return rule.fault
        return None


class _ProxyServer(StoppableHTTPServer):
    def __init__(self, address: tuple[str, int], proxy: FaultProxy) -> None:
        self.proxy = proxy
        super().__init__(address, _Handler, on_accept=proxy._connection_opened)


Headers = list[tuple[str, str]]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "FaultProxy/1.0"
    disable_nagle_algorithm = True

    @property
    def _proxy(self) -> FaultProxy:
        return cast(_ProxyServer, self.server).proxy

    # Every method goes to _dispatch.
    def __getattr__(self, name: str) -> Callable[[], None]:
        if name.startswith("do_"):
            return self._dispatch
        raise AttributeError(name)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # silent: requests carry credentials and secrets

    def _dispatch(self) -> None:
        try:
            body = self._read_body()
        except ValueError:
            self.close_connection = True
            self._respond(400, [("Content-Type", "text/plain")], b"bad request body")
            return
        operation = operation_of(self.headers, self.path, body)
        fault = self._proxy._decide(operation)
        if fault is None and breaks_sqs_character_rule(operation, body):
            fault = INVALID_MESSAGE_CONTENTS
        if fault is None:
            self._forward(body)
        elif fault.kind == "connection_reset":
            self._reset_connection()
        else:
            status, headers, payload = _error_response(fault, self.headers, self.path, operation)
            self._respond(status, headers, payload)

    def _read_body(self) -> bytes:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            return self._read_chunked()
        length = (self.headers.get("Content-Length") or "").strip()
        if not length:
            return b""
        if not length.isdigit() or int(length) > _MAX_BODY_BYTES:
            raise ValueError("invalid Content-Length")
        body = self.rfile.read(int(length))
        if len(body) != int(length):
            raise ValueError("truncated body")
        return body

    def _read_chunked(self) -> bytes:
        chunks: list[bytes] = []
        total = 0
        while True:
            size = int(self.rfile.readline(_MAX_LINE_BYTES).split(b";", 1)[0].strip(), 16)
            if size == 0:
                while self.rfile.readline(_MAX_LINE_BYTES) not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                return b"".join(chunks)
            total += size
            if size < 0 or total > _MAX_BODY_BYTES:
                raise ValueError("invalid chunk size")
            chunks.append(self.rfile.read(size))
            self.rfile.readline(_MAX_LINE_BYTES)

    def _forward(self, body: bytes) -> None:
        proxy = self._proxy
        connection = http.client.HTTPConnection(
            proxy.upstream_host, proxy.upstream_port, timeout=proxy.upstream_timeout
        )
        try:
            connection.putrequest(
                self.command, self.path, skip_host=True, skip_accept_encoding=True
            )
            if "Host" not in self.headers:
                connection.putheader("Host", f"{proxy.upstream_host}:{proxy.upstream_port}")
            for name, value in self.headers.items():
                if name.lower() not in _HOP_BY_HOP:
                    connection.putheader(name, value)
            if body or self.command not in ("GET", "HEAD", "DELETE", "OPTIONS"):
                connection.putheader("Content-Length", str(len(body)))
            connection.endheaders(body or None)
            response = connection.getresponse()
            payload = response.read()
            status, headers = response.status, response.getheaders()
        except (OSError, http.client.HTTPException) as exc:
            message = f"upstream request failed: {type(exc).__name__}".encode()
            self._respond(502, [("Content-Type", "text/plain")], message)
            return
        finally:
            connection.close()
        relayed = [(n, v) for n, v in headers if n.lower() not in _HOP_BY_HOP]
        if self.command == "HEAD":  # no body, but the length the upstream announced
            relayed += [(n, v) for n, v in headers if n.lower() == "content-length"]
        self._respond(status, relayed, payload, length=self.command != "HEAD")

    def _respond(self, status: int, headers: Headers, body: bytes, *, length: bool = True) -> None:
        try:
            reason = HTTPStatus(status).phrase
        except ValueError:
            reason = ""
        lines = [f"HTTP/1.1 {status} {reason}".rstrip()]
        lines += [f"{name}: {value}" for name, value in headers]
        if length:
            lines.append(f"Content-Length: {len(body)}")
        if self.close_connection:
            lines.append("Connection: close")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1", "replace")
        try:
            self.wfile.write(head + (b"" if self.command == "HEAD" else body))
            self.wfile.flush()
        except OSError:
            self.close_connection = True

    def _reset_connection(self) -> None:
        """Close the connection with a TCP RST and no response."""
        self.close_connection = True
        conn = self.connection
        cast(_ProxyServer, self.server).forget(conn)
        with contextlib.suppress(OSError):
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.rfile.close()  # drop the makefile reference so close() really closes the socket
        conn.close()


def _error_response(
    fault: AwsFault, headers: Any, path: str, operation: str
) -> tuple[int, Headers, bytes]:
    """The error an AWS service sends, in the protocol of the request."""
    request_id = str(uuid.uuid4())
    target = headers.get("X-Amz-Target")
    if not target and operation:  # the query protocol: an XML ErrorResponse
        kind = "Receiver" if fault.status >= 500 else "Sender"
        xml = (
            '<?xml version="1.0"?>\n<ErrorResponse><Error>'
            f"<Type>{kind}</Type><Code>{escape(fault.query_code)}</Code>"
            f"<Message>{escape(fault.message)}</Message>"
            f"</Error><RequestId>{request_id}</RequestId></ErrorResponse>"
        )
        return (
            fault.status,
            [("Content-Type", "text/xml"), ("x-amzn-RequestId", request_id)],
            (xml.encode()),
        )
    # The JSON protocols (and, with x-amzn-ErrorType, REST-JSON).
    prefix = str(target).split(".", 1)[0] if target else ""
    error_type = _ERROR_NAMESPACES.get(prefix, "") + fault.json_code
    content_type = str(headers.get("Content-Type") or "")
    if not content_type.startswith("application/x-amz-json"):
        content_type = "application/x-amz-json-1.1" if target else "application/json"
    payload = json.dumps({"__type": error_type, "message": fault.message}).encode()
    return (
        fault.status,
        [
            ("Content-Type", content_type),
            ("x-amzn-RequestId", request_id),
            ("x-amzn-ErrorType", fault.json_code),
        ],
        payload,
    )
