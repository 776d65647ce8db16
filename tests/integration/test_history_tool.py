"""`glider-trigger history` (tools/history.py) reading what the real handler wrote: the moto
server's table made from template.yaml's own definition (its history index included), the Glider
emulator on loopback, follow-ups delivered as the event source would."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cfnlint.decode import cfn_yaml

import tools.base
import tools.history
from glider_trigger.outbound import history
from local.fixtures.delivery import deliver
from local.fixtures.event_source import SqsEventSource, sqs_event
from local.fixtures.function import LocalFunction
from local.fixtures.glider_emulator import Fault, GliderEmulator
from local.fixtures.stack import REGION, Deployment, MotoServer, drain
from tools.common import Aws

# The standard AWS environment pointed at the moto server (what --stack uses).
pytestmark = pytest.mark.usefixtures("aws_environment")

TEMPLATE = Path(__file__).resolve().parents[2] / "template.yaml"
TTL_SECONDS = 1_641_600  # the template's default: 19 days
HEADER = ["WHEN", "(UTC)", "SOURCE", "KIND", "OUTCOME", "REASON", "REBALANCE/OPERATION", "ID"]


@pytest.fixture
def stack(moto_server: MotoServer) -> tuple[str, str]:
    """A CloudFormation stack whose IdempotencyTable is template.yaml's, as written there (its
    index, TTL, encryption): moto creates it. Returns the stack's name and its table's."""
    loaded: dict[str, Any] = cfn_yaml.load(str(TEMPLATE))
    table = loaded["Resources"]["IdempotencyTable"]
    name = f"glider-history-{uuid.uuid4().hex[:8]}"
    cloudformation = moto_server.client("cloudformation")
    cloudformation.create_stack(
        StackName=name,
        TemplateBody=json.dumps(
            {
                "Parameters": {"IdempotencyTtlSeconds": {"Type": "Number"}},
                "Resources": {
                    "IdempotencyTable": {"Type": table["Type"], "Properties": table["Properties"]}
                },
            }
        ),
        Parameters=[{"ParameterKey": "IdempotencyTtlSeconds", "ParameterValue": str(TTL_SECONDS)}],
    )
    physical = cloudformation.describe_stack_resource(
        StackName=name, LogicalResourceId="IdempotencyTable"
    )["StackResourceDetail"]["PhysicalResourceId"]
    return name, physical


@pytest.fixture
def follow(start_function: Callable[..., LocalFunction], stack: tuple[str, str]) -> LocalFunction:
    """The function on the stack's table, following rebalances after 1 s."""
    return start_function(FOLLOW_FIRST_DELAY_SECONDS="1", IDEMPOTENCY_TABLE_NAME=stack[1])


def run_follow_ups(function: LocalFunction, deployment: Deployment) -> None:
    queue = deployment.follow_up_queue
    assert queue is not None
    for _ in range(20):
        messages = drain(deployment.sqs, queue.url, wait_seconds=3)
        if not messages:
            return
        response = function.invoke(sqs_event(messages, queue.arn, REGION))
        assert response == {"batchItemFailures": []}
    pytest.fail("the follow-ups did not end")


def delivered(function: LocalFunction, deployment: Deployment, portfolio_id: str) -> dict[str, Any]:
    """A direct invocation naming one portfolio, as the stack delivers it (queued, then
    triggered from the work queue): the portfolio's outcome line."""
    work_queue = SqsEventSource(deployment.sqs, deployment.work_queue)
    return deliver(function, work_queue, {"portfolioId": portfolio_id}).of(portfolio_id)


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    status = tools.history.main(list(argv))
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def rows(out: str) -> list[list[str]]:
    lines = out.splitlines()
    assert lines[0].split() == HEADER
    return [line.split() for line in lines[1:]]


def test_a_trigger_and_its_outcome_are_both_shown_with_the_rebalance_id(
    follow: LocalFunction,
    emulator: GliderEmulator,
    deployment: Deployment,
    stack: tuple[str, str],
    capsys: pytest.CaptureFixture[str],
) -> None:
    emulator.add_portfolio("port_hist1")
    emulator.set_workflow_seconds(1.0)
    result = delivered(follow, deployment, "port_hist1")
    run_follow_ups(follow, deployment)
    rebalance = result["rebalance_id"]

    status, out, err = run(capsys, "--stack", stack[0], "--portfolio", "port_hist1")

    assert (status, err) == (0, "")
    [trigger, outcome] = rows(out)
    # Triggered from the work-queue message a direct invocation queued: the history says where
    # the delivery began (the message's queuedBy), and its key names the invocation (lambda:...).
    assert trigger[1:] == ["direct", "trigger", "triggered", "-", rebalance]
    assert outcome[1:] == ["follow-up", "outcome", "completed", "-", rebalance]
    assert trigger[0] <= outcome[0]  # oldest first, in UTC
    assert outcome[0].endswith("Z")


def test_a_failed_trigger_shows_its_reason_and_json_tells_what_was_said(
    deployment: Deployment,
    start_function: Callable[..., LocalFunction],
    emulator: GliderEmulator,
    stack: tuple[str, str],
    capsys: pytest.CaptureFixture[str],
) -> None:
    emulator.add_portfolio("port_hist2")
    emulator.script("port_hist2", Fault.error(404, "API_200", "Portfolio not found"))
    on_stack = start_function(IDEMPOTENCY_TABLE_NAME=stack[1])
    result = delivered(on_stack, deployment, "port_hist2")
    assert (result["outcome"], result["action"]) == ("failed", "dead-lettered")

    status, out, _ = run(capsys, "--stack", stack[0], "--portfolio", "port_hist2")
    [row] = rows(out)
    assert status == 0
    assert row[1:] == ["direct", "trigger", "failed", result["reason"], "-"]

    status, out, _ = run(capsys, "--stack", stack[0], "--portfolio", "port_hist2", "--json")
    document = json.loads(out)
    [entry] = document["entries"]
    assert status == 0
    assert document["windowSeconds"] == TTL_SECONDS
    assert (entry["outcome"], entry["reason"]) == ("failed", result["reason"])
    assert "Portfolio not found" in entry["detail"]
    assert entry["deliveryKey"].startswith("lambda:")


def test_a_portfolio_without_records_says_so_and_exits_0(
    stack: tuple[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    status, out, _ = run(capsys, "--stack", stack[0], "--portfolio", "port_none")
    assert (status, out) == (
        0,
        "no record of port_none in the last 19 days (the guard's window)\n",
    )

    status, out, _ = run(capsys, "--stack", stack[0], "--portfolio", "port_none", "--since", "24h")
    assert (
        out == "no record of port_none in the last 1d (of the last 19 days, the guard's window)\n"
    )


def test_a_bad_portfolio_id_or_duration_is_a_usage_error(
    stack: tuple[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    status, _, err = run(capsys, "--stack", stack[0], "--portfolio", "not an id!")
    assert status == 2
    assert "--portfolio: portfolio id 'not an id!'" in err

    status, _, err = run(capsys, "--stack", stack[0], "--portfolio", "p1", "--since", "yesterday")
    assert status == 2
    assert "not a duration like 30m, 24h or 7d" in err


def test_since_leaves_out_what_is_older(
    moto_server: MotoServer, stack: tuple[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    client = moto_server.client("dynamodb")
    now = time.time()
    for hours_ago in (30, 2):
        entry = history.HistoryEntry(
            now - hours_ago * 3600, "port_hist3", history.Kind.TRIGGER, "schedule", "triggered"
        )
        history.write(client, stack[1], entry, keep_seconds=TTL_SECONDS)

    _, everything, _ = run(capsys, "--stack", stack[0], "--portfolio", "port_hist3")
    _, recent, _ = run(capsys, "--stack", stack[0], "--portfolio", "port_hist3", "--since", "24h")

    assert len(rows(everything)) == 2
    assert len(rows(recent)) == 1


def test_recent_entries_are_the_latest_across_portfolios_newest_first(
    moto_server: MotoServer, stack: tuple[str, str]
) -> None:
    client = moto_server.client("dynamodb")
    now = time.time()
    # Three portfolios, the oldest entries first; one of them twice, a day apart.
    written = [
        ("port_a", now - 26 * 3600),
        ("port_b", now - 3600),
        ("port_a", now - 60),
        ("port_c", now - 30),
    ]
    for portfolio, at in written:
        entry = history.HistoryEntry(at, portfolio, history.Kind.TRIGGER, "sqs", "triggered")
        history.write(client, stack[1], entry, keep_seconds=TTL_SECONDS)
    aws = Aws({})

    latest = tools.history.recent_entries(aws, stack[0], 3)
    everything = tools.history.recent_entries(aws, stack[0], 10)

    assert [(e.portfolio_id, round(e.at)) for e in latest] == [
        ("port_c", round(now - 30)),
        ("port_a", round(now - 60)),
        ("port_b", round(now - 3600)),
    ]
    assert [e.portfolio_id for e in everything] == ["port_c", "port_a", "port_b", "port_a"]


def test_a_table_without_the_index_yet_is_named_for_status(moto_server: MotoServer) -> None:
    """A stack deployed before the history: its portfolios' records are read by key all the
    same, and `status` is told what is missing rather than an AWS error."""
    name = f"glider-history-old-{uuid.uuid4().hex[:8]}"
    old_table = {
        "Type": "AWS::DynamoDB::Table",
        "Properties": {
            "BillingMode": "PAY_PER_REQUEST",
            "AttributeDefinitions": [{"AttributeName": "id", "AttributeType": "S"}],
            "KeySchema": [{"AttributeName": "id", "KeyType": "HASH"}],
        },
    }
    moto_server.client("cloudformation").create_stack(
        StackName=name,
        TemplateBody=json.dumps({"Resources": {"IdempotencyTable": old_table}}),
    )

    with pytest.raises(tools.base.ToolError, match="has no ByDay index yet: deploy this version"):
        tools.history.recent_entries(Aws({}), name, 5)
    assert tools.history.main(["--stack", name, "--portfolio", "p1"]) == 0
