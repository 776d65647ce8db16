"""A threaded HTTP/1.1 server for loopback test peers (the Glider emulator, the AWS fault
proxy) that stops at once, even with clients holding keep-alive connections open."""

from __future__ import annotations

import contextlib
import selectors
import socket
import socketserver
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class StoppableHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    # socketserver listens with a backlog of 5: more workers connecting at once would see
    # their SYNs dropped and retried a second later.
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler]) -> None:
        self._conn_lock = threading.Lock()
        self._conns: set[socket.socket] = set()
        self._accepted = 0
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
            self._accepted += 1
        return conn, addr

    @property
    def connections_accepted(self) -> int:
        """TCP connections accepted since the server started."""
        with self._conn_lock:
            return self._accepted

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
