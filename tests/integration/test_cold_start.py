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
# step whether the batch utility is loaded. Invocation outputs are reported as they came back.
CHILD = """
import json, sys
from local.fixtures.function import LocalFunction

BATCH_UTILITY = "aws_lambda_powertools.utilities.batch"
env, events = json.loads(sys.argv[1]), json.loads(sys.argv[2])
function = LocalFunction(env)
steps = [{"step": "init", "batch_loaded": BATCH_UTILITY in sys.modules}]
for name, event in events:
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
    done = subprocess.run(  # noqa: S603 - our own interpreter and script
        [sys.executable, "-c", CHILD, json.dumps(env), json.dumps(events)],
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

    init, schedule, batch = run_environment(
        deployment,
        proxy,
        [("schedule", {"portfolioIds": ["port_abc123"]}), ("sqs", sqs_event)],
    )

    assert init["batch_loaded"] is False
    assert schedule["batch_loaded"] is False
    assert schedule["response"]["triggered"] == 1  # type: ignore[index]
    assert batch["batch_loaded"] is False
    assert batch["response"] == {"batchItemFailures": []}
    assert sorted(r.portfolio_id for r in emulator.rebalances) == ["port_abc123", "port_def456"]
