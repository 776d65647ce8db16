"""A threaded HTTP/1.1 server for loopback test peers (the Glider emulator, the AWS fault
proxy) that stops at once, even with clients holding keep-alive connections open, and the
start/stop lifecycle both share."""

from __future__ import annotations

import contextlib
import selectors
import socket
import socketserver
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Self


class StoppableHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    # socketserver listens with a backlog of 5: more workers connecting at once would see
    # their SYNs dropped and retried a second later.
    request_queue_size = 128

    def __init__(
        self,
        address: tuple[str, int],
        handler: type[BaseHTTPRequestHandler],
        on_accept: Callable[[], None] = lambda: None,
    ) -> None:
        self._conn_lock = threading.Lock()
        self._conns: set[socket.socket] = set()
        self._on_accept = on_accept
        self._stop_requested = threading.Event()
        self._wake_reader, self._wake_writer = socket.socketpair()
        super().__init__(address, handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind resolves the host name (getfqdn), which can be slow; skip it.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name = str(host)
        self.server_port = int(port)

    def serve(self) -> None:
        """Like serve_forever(), but request_stop() wakes it at once instead of at the next poll."""
        with selectors.DefaultSelector() as selector:
            selector.register(self, selectors.EVENT_READ)
            selector.register(self._wake_reader, selectors.EVENT_READ)
            while not self._stop_requested.is_set():
                for key, _ in selector.select():
                    if key.fileobj is self and not self._stop_requested.is_set():
                        self.handle_request()

    def request_stop(self) -> None:
        self._stop_requested.set()
        with contextlib.suppress(OSError):
            self._wake_writer.send(b"x")

    def server_close(self) -> None:
        super().server_close()
        self._wake_reader.close()
        self._wake_writer.close()

    def get_request(self) -> tuple[socket.socket, Any]:
        conn, addr = super().get_request()
        with self._conn_lock:
            self._conns.add(conn)
        self._on_accept()
        return conn, addr

    def forget(self, conn: socket.socket) -> None:
        with self._conn_lock:
            self._conns.discard(conn)

    def shutdown_request(self, request: Any) -> None:
        self.forget(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        """Wake every handler blocked on a kept-alive connection; each then closes its own."""
        with self._conn_lock:
            for conn in self._conns:
                with contextlib.suppress(OSError):
                    conn.shutdown(socket.SHUT_RDWR)
            self._conns.clear()

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Client disconnects and the like: never print (a traceback could quote a request).
        pass


class BackgroundServer:
    """A StoppableHTTPServer served on a daemon thread: start() (port 0 picks a free port),
    stop() at once, a context manager, and a count of the TCP connections it accepted."""

    def __init__(self, name: str) -> None:
        self._name = name  # what it is, for the thread's name and errors
        self._server: StoppableHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._count_lock = threading.Lock()
        self._connections = 0

    def _make_server(self) -> StoppableHTTPServer:
        """A new server whose on_accept is self._connection_opened."""
        raise NotImplementedError

    def _before_start(self) -> None:
        """Called by start() before the server exists."""

    def _before_stop(self) -> None:
        """Called by stop() before the server stops (e.g. to wake sleeping handlers)."""

    def start(self) -> Self:
        if self._server is not None:
            return self
        self._before_start()
        server = self._make_server()
        thread = threading.Thread(
            target=server.serve, name=f"{self._name}-{server.server_port}", daemon=True
        )
        self._server, self._thread = server, thread
        thread.start()
        return self

    def stop(self) -> None:
        """Stop at once: no new connections, kept-alive ones closed, the serving thread joined."""
        server, thread = self._server, self._thread
        if server is None:
            return
        self._server = self._thread = None
        self._before_stop()
        server.request_stop()
        if thread is not None:
            thread.join(timeout=5)
        server.server_close()
        server.close_connections()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def connections_opened(self) -> int:
        """TCP connections clients opened (since the start, or the last reset)."""
        with self._count_lock:
            return self._connections

    def _connection_opened(self) -> None:
        with self._count_lock:
            self._connections += 1

    def _forget_connections(self) -> None:
        with self._count_lock:
            self._connections = 0

    def _port(self) -> int:
        server = self._server
        if server is None:
            raise RuntimeError(f"the {self._name} is not running; call start() first")
        return int(server.server_port)
