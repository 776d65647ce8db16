"""X-Ray tracing through the real handler, in a child process (the X-Ray SDK patches botocore
for the whole process): with TRACING=Active, the segments it sends to the daemon address (a UDP
socket of this test) hold a subsegment per Glider call, annotated with the portfolio id, and
per AWS call, and never the key; without it, the X-Ray SDK is never imported."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from local.fixtures.event_source import SqsEventSource
from local.fixtures.stack import Deployment
from tests.conftest import API_KEY, FAST_SETTINGS

REPO = Path(__file__).resolve().parents[2]
# Lambda's own trace header for the invocation: the SDK hangs its subsegments off it.
TRACE_ID = "Root=1-6751c3a0-0123456789abcdef01234567;Parent=53995c3f42cd8ad8;Sampled=1"
INVOKE = """
import json, sys
from local.fixtures.function import LocalFunction
env, event = json.load(sys.stdin)
function = LocalFunction(env)
response = function.invoke(event)
print(json.dumps({
    "response": response, "xray": "aws_xray_sdk" in sys.modules, "logs": function.logs
}))
"""


class Daemon:
    """The X-Ray daemon's UDP port: keeps every document the SDK sends."""

    def __init__(self) -> None:
        self.socket = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.socket.bind(("127.0.0.1", 0))
        self.socket.settimeout(0.2)
        self.datagrams: list[bytes] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._receive, daemon=True)
        self._thread.start()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.socket.getsockname()[1]}"

    def _receive(self) -> None:
        while not self._stop.is_set():
            try:
                self.datagrams.append(self.socket.recv(65536))
            except TimeoutError:
                continue

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        self.socket.close()

    def documents(self) -> list[dict[str, Any]]:
        """Each datagram is a header line, then one segment or subsegment document."""
        return [json.loads(d.split(b"\n", 1)[1]) for d in self.datagrams]


@pytest.fixture
def daemon() -> Iterator[Daemon]:
    listening = Daemon()
    yield listening
    listening.stop()


def invoke_in_child(env: dict[str, str], event: object) -> dict[str, Any]:
    result = subprocess.run(  # noqa: S603 - this interpreter, this repo's script
        [sys.executable, "-c", INVOKE],
        input=json.dumps([env, event]),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": f"{REPO}:{REPO / 'functions/trigger'}"},
    )
    return json.loads(result.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def deliver_in_children(
    deployment: Deployment, env: dict[str, str], event: object
) -> list[dict[str, Any]]:
    """The event's invocation, then each work-queue batch it led to, each in its own child (a
    traced process patches botocore: this process's SQS client stays out of the trace)."""
    invocations = [invoke_in_child(env, event)]

    def invoke(sqs_event: dict[str, Any]) -> Any:
        invocations.append(invoke_in_child(env, sqs_event))
        return invocations[-1]["response"]

    SqsEventSource(deployment.sqs, deployment.work_queue).drain(invoke, idle_seconds=0)
    return invocations


def outcomes(invocations: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return sorted(
        (log["portfolio_id"], log["outcome"])
        for invocation in invocations
        for log in invocation["logs"]
        if "outcome" in log and "portfolio_id" in log
    )


def subsegments(documents: list[dict[str, Any]]) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []

    def walk(document: dict[str, Any]) -> None:
        found.append(document)
        for child in document.get("subsegments", []):
            walk(child)

    for document in documents:
        walk(document)
    return found


def test_active_tracing_records_the_glider_and_aws_calls_without_the_key(
    deployment: Deployment, daemon: Daemon
) -> None:
    env = deployment.environment(
        **FAST_SETTINGS,
        TRACING="Active",
        LAMBDA_TASK_ROOT=str(REPO / "functions/trigger"),  # Powertools traces inside Lambda only
        AWS_XRAY_DAEMON_ADDRESS=daemon.address,
        _X_AMZN_TRACE_ID=TRACE_ID,
        FOLLOW_OUTCOMES="false",
    )

    # Queued (an SQS call), then two triggered, one unknown to Glider: its dead letter too.
    invocations = deliver_in_children(
        deployment, env, {"portfolioIds": ["port_abc123", "port_def456", "port_gone01"]}
    )

    assert invocations[0]["response"]["queued"] == 3
    assert outcomes(invocations) == [
        ("port_abc123", "triggered"),
        ("port_def456", "triggered"),
        ("port_gone01", "failed"),
    ]
    assert len(deployment.dlq_messages()) == 1
    assert all(invocation["xray"] is True for invocation in invocations)
    recorded = subsegments(daemon.documents())
    glider = [s for s in recorded if s["name"] == "glider.trigger"]
    traced = sorted(s["annotations"]["portfolio_id"] for s in glider)
    assert traced == ["port_abc123", "port_def456", "port_gone01"]
    assert {s["annotations"]["glider_api_version"] for s in glider} == {"v1"}
    aws = {(s["name"], s["aws"].get("operation")) for s in recorded if s.get("namespace") == "aws"}
    names = {name for name, _ in aws}
    assert {"secretsmanager", "dynamodb", "sqs"} <= names
    assert ("sqs", "SendMessageBatch") in aws  # the queued portfolios and the dead letter
    assert API_KEY not in b"".join(daemon.datagrams).decode()


def test_without_tracing_the_xray_sdk_is_never_imported(
    deployment: Deployment, daemon: Daemon
) -> None:
    env = deployment.environment(
        **FAST_SETTINGS,
        LAMBDA_TASK_ROOT=str(REPO / "functions/trigger"),
        AWS_XRAY_DAEMON_ADDRESS=daemon.address,
        _X_AMZN_TRACE_ID=TRACE_ID,
        FOLLOW_OUTCOMES="false",
    )

    invocations = deliver_in_children(deployment, env, {"portfolioId": "port_abc123"})

    assert outcomes(invocations) == [("port_abc123", "triggered")]
    assert len(invocations) == 2  # the event's, then the work queue's
    assert all(invocation["xray"] is False for invocation in invocations)
    assert daemon.datagrams == []
