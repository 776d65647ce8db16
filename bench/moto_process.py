"""moto in a process of its own, counting AWS calls: `python -m bench.moto_process`.

In AWS, DynamoDB, SQS and Secrets Manager are other machines: their work costs the function
nothing but latency. Served from the harness process, moto shared one GIL with the Glider
emulator and a counting proxy, and at 16 concurrent triggers (two DynamoDB calls each) that GIL,
not the function, set the pace. Here moto has an interpreter of its own (with
bench/moto_speedups.py applied) and counts the calls itself, so no proxy hop sits in front of it.

The child prints its port on one line, then serves until its stdin closes (the parent stops it,
or exits), so it never outlives the benchmark. `GET /_bench/calls` answers the counts so far
as JSON: {"calls": {operation: n}, "connections": n}.

AWS's latency: with BENCH_AWS_LATENCY_MS in its environment (`python -m bench.run
--aws-latency-ms N`), every AWS call waits N ms before moto serves it, as a call to an AWS
endpoint takes its round trip and the service's time. The wait holds no lock and no GIL, and
waitress then serves with LATENCY_THREADS threads, so that calls AWS would serve in parallel
wait in parallel here too.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from bench import moto_speedups
from bench.moto_calls import CALLS_PATH, read_calls
from local.fixtures.stack import MotoServer

REPO = Path(__file__).resolve().parent.parent
LATENCY_ENV = "BENCH_AWS_LATENCY_MS"
CONNECTION_LIMIT = 2000
THREADS = 4  # without AWS latency: moto is one GIL, more threads only contend for it
# With AWS latency: each of the function's concurrent calls (16 workers, a few calls each, plus
# fan-out's parallel sends) holds a thread while it waits, as AWS would serve them in parallel.
LATENCY_THREADS = 64

Environ = dict[str, Any]
StartResponse = Callable[..., Any]
WsgiApp = Callable[[Environ, StartResponse], Iterable[bytes]]


def cpu_seconds_of(pid: int) -> float:
    """User + system CPU of process `pid` so far (from /proc; 0.0 where it is not readable)."""
    with contextlib.suppress(OSError, ValueError, IndexError):
        # The fields after the command name (which may hold spaces): utime and stime in ticks.
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return 0.0


class CallCounter:
    """WSGI middleware: counts each request by AWS operation (X-Amz-Target, else the Action
    query parameter; every service the function uses speaks a JSON protocol, so the target is
    there) and answers CALLS_PATH itself. Each AWS call first waits `latency_ms` (AWS's round
    trip), outside the lock."""

    def __init__(self, app: WsgiApp, *, latency_ms: float = 0.0) -> None:
        self._app = app
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()
        self._connections = 0
        self._latency_s = latency_ms / 1000

    def connection_opened(self) -> None:
        with self._lock:
            self._connections += 1

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        if environ.get("PATH_INFO") == CALLS_PATH:
            with self._lock:
                body = json.dumps(
                    {"calls": dict(self._counts), "connections": self._connections}
                ).encode()
            start_response("200 OK", [("Content-Type", "application/json")])
            return [body]
        operation = str(environ.get("HTTP_X_AMZ_TARGET") or "").strip()
        if not operation:
            query = str(environ.get("QUERY_STRING") or "")
            operation = next(
                (part[7:] for part in query.split("&") if part.startswith("Action=")), ""
            )
        with self._lock:
            self._counts[operation] += 1
        if self._latency_s > 0:
            time.sleep(self._latency_s)
        return self._app(environ, start_response)


def serve(threads: int = THREADS, latency_ms: float = 0.0) -> Any:
    """moto's WSGI app behind a CallCounter, served by waitress on a free loopback port.

    Not by werkzeug, as local/fixtures/stack.py's MotoServer is: werkzeug's server answers every
    request with `Connection: close`, so each AWS call would open a TCP connection (and a server
    thread), where the real endpoints keep the SDK's connections alive. waitress keeps them
    alive, as AWS does, and counts the connections it accepts."""
    import waitress.channel  # noqa: PLC0415 - only in the child
    import waitress.server  # noqa: PLC0415
    from moto.moto_server.werkzeug_app import (  # noqa: PLC0415
        DomainDispatcherApplication,
        create_backend_app,
    )

    counter = CallCounter(DomainDispatcherApplication(create_backend_app), latency_ms=latency_ms)

    class CountedChannel(waitress.channel.HTTPChannel):  # type: ignore[misc]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            counter.connection_opened()
            super().__init__(*args, **kwargs)

    server = waitress.server.create_server(
        counter,
        host="127.0.0.1",
        port=0,
        threads=threads,
        # AWS's endpoints take every connection: waitress's default limit (100) stops accepting
        # when the work queue's environments (each with its own pools) hold more at once.
        connection_limit=CONNECTION_LIMIT,
        asyncore_use_poll=True,  # select() cannot watch descriptors above 1024
    )
    server.channel_class = CountedChannel
    return server


class MotoProcess(MotoServer):
    """local.stack.MotoServer's interface (endpoint_url, client(), stop()), served by a child
    process; plus its call counts and CPU time. `latency_ms`: AWS's latency per call (see the
    module's docstring)."""

    def __init__(self, *, latency_ms: float = 0.0) -> None:
        # No in-process server (MotoServer.__init__ would build one): the child is the server.
        self.endpoint_url = ""
        self._process: subprocess.Popen[str] | None = None
        self._latency_ms = latency_ms

    def start(self) -> MotoProcess:
        env = os.environ | {LATENCY_ENV: f"{self._latency_ms:g}"}
        self._process = subprocess.Popen(
            [sys.executable, "-m", "bench.moto_process"],
            cwd=REPO,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self._process.stdout is not None  # noqa: S101 - PIPE above
        line = self._process.stdout.readline().strip()
        if not line.isdigit():
            self.stop()
            raise RuntimeError(f"bench.moto_process did not start (it printed {line!r})")
        self.endpoint_url = f"http://127.0.0.1:{line}"
        return self

    def served(self) -> tuple[Counter[str], int]:
        """AWS calls served so far, by operation, and TCP connections accepted so far."""
        return read_calls(self.endpoint_url + CALLS_PATH)

    def cpu_seconds(self) -> float:
        return cpu_seconds_of(self._process.pid) if self._process is not None else 0.0

    def stop(self) -> None:
        if self._process is None:
            return
        process, self._process = self._process, None
        with contextlib.suppress(OSError):
            if process.stdin is not None:
                process.stdin.close()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def main() -> int:
    # waitress warns whenever requests wait for a thread: moto is one GIL, they will.
    logging.getLogger("waitress.queue").setLevel(logging.ERROR)
    if not moto_speedups.apply():
        print("moto's internals changed: serving unpatched", file=sys.stderr, flush=True)
    latency_ms = float(os.environ.get(LATENCY_ENV) or 0)
    server = serve(threads=LATENCY_THREADS if latency_ms > 0 else THREADS, latency_ms=latency_ms)
    threading.Thread(target=server.run, name="waitress", daemon=True).start()
    print(server.effective_port, flush=True)
    try:
        sys.stdin.read()  # until the parent closes our stdin (or exits)
    finally:
        server.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
