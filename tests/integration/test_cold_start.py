"""A lean cold start: init calls nothing and loads only what every invocation needs; neither a
schedule nor an SQS batch loads Powertools' batch utility (the function answers SQS's partial
batch response itself, inbound/sqs_batch.py).

Each case runs the function in a fresh interpreter, as a new execution environment is one, so
that what init imported is not hidden by what this test process imported before.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from local.fixtures.fault_proxy import FaultProxy
from local.fixtures.glider_emulator import GliderEmulator
from local.fixtures.stack import Deployment, MotoServer
from tests.conftest import FAST_SETTINGS

REPO = Path(__file__).resolve().parents[2]

# Runs in the child: init, then the invocations named on the command line, reporting after each
# step whether the batch utility is loaded. Invocation outputs are reported as they came back. A
# step whose event is "work queue" is the work queue's batch as Lambda's event source mapping
# hands it over (its messages received straight from moto, not through the counting proxy).
CHILD = """
import json, sys
from local.fixtures.function import LocalFunction

BATCH_UTILITY = "aws_lambda_powertools.utilities.batch"
env, events, work = json.loads(sys.argv[1]), json.loads(sys.argv[2]), json.loads(sys.argv[3])
function = LocalFunction(env)
steps = [{"step": "init", "batch_loaded": BATCH_UTILITY in sys.modules}]
for name, event in events:
    if event == "work queue":
        import boto3
        from local.fixtures.event_source import SqsEventSource
        from local.fixtures.stack import Queue
        sqs = boto3.client("sqs", endpoint_url=work["endpoint"], region_name="us-east-1",
            aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"])
        batch = SqsEventSource(sqs, Queue(work["url"], work["arn"])).poll(function.invoke)
        response = batch and batch.response
    else:
        response = function.invoke(event)
    steps.append({"step": name, "batch_loaded": BATCH_UTILITY in sys.modules, "response": response})
print(json.dumps(steps))
"""


@pytest.fixture
def proxy(moto_server: MotoServer) -> Iterator[FaultProxy]:
    with FaultProxy(moto_server.endpoint_url) as counting_proxy:
        yield counting_proxy


def run_environment(
    deployment: Deployment, proxy: FaultProxy, events: list[tuple[str, object]]
) -> list[dict[str, object]]:
    env = deployment.environment(**FAST_SETTINGS, AWS_ENDPOINT_URL=proxy.endpoint_url)
    work = {
        "endpoint": deployment.moto.endpoint_url,
        "url": deployment.work_queue.url,
        "arn": deployment.work_queue.arn,
    }
    done = subprocess.run(  # noqa: S603 - our own interpreter and script
        [sys.executable, "-c", CHILD, json.dumps(env), json.dumps(events), json.dumps(work)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    last_line = done.stdout.strip().splitlines()[-1]
    steps: list[dict[str, object]] = json.loads(last_line)
    return steps


def test_init_makes_no_aws_call_and_loads_no_batch_utility(
    deployment: Deployment, proxy: FaultProxy
) -> None:
    [init] = run_environment(deployment, proxy, [])

    assert init["batch_loaded"] is False
    assert proxy.counts == {}  # no client call, no secret read: all on first use


def test_neither_schedules_nor_sqs_batches_load_the_batch_utility(
    deployment: Deployment, proxy: FaultProxy, emulator: GliderEmulator
) -> None:
    sqs_event = {
        "Records": [
            {
                "messageId": "m-cold-1",
                "receiptHandle": "h",
                "body": json.dumps({"portfolioId": "port_def456"}),
                "eventSource": "aws:sqs",
                "eventSourceARN": deployment.work_queue.arn,
            }
        ]
    }

    init, schedule, queued, batch = run_environment(
        deployment,
        proxy,
        [
            ("schedule", {"portfolioIds": ["port_abc123"]}),
            ("schedule's work", "work queue"),
            ("sqs", sqs_event),
        ],
    )

    assert init["batch_loaded"] is False
    assert schedule["batch_loaded"] is False
    assert schedule["response"]["queued"] == 1  # type: ignore[index]
    assert queued["batch_loaded"] is False
    assert queued["response"] == {"batchItemFailures": []}
    assert batch["batch_loaded"] is False
    assert batch["response"] == {"batchItemFailures": []}
    assert sorted(r.portfolio_id for r in emulator.rebalances) == ["port_abc123", "port_def456"]
