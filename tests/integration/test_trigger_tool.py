"""tools/trigger.py against the moto server, the Glider emulator and the real handler: the
requests it sends are work-queue messages the function accepts; with --wait it sees each
portfolio triggered (the guard's record), failed (its letter, left in the DLQ) and its final
outcome (the function's outcome event, through a temporary rule and queue it deletes).

Lambda's event source mappings are played between the tool's polls: the tool's sleep is replaced
by one that delivers the work queue and the follow-up queue to `LocalFunction.invoke`, as
local/fixtures/event_source.py does, in the same thread (the handler's stdout redirection and
environment stay out of the tool's way)."""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

import tools.dlq
import tools.trigger
from glider_trigger.domain.trigger_input import parse
from local.fixtures.event_source import SqsEventSource
from local.fixtures.function import LocalFunction
from local.fixtures.glider_emulator import GliderEmulator
from local.fixtures.stack import (
    Deployment,
    MotoServer,
    attribute_values,
    drain,
)
from tests.conftest import API_KEY
from tools.trigger import main

RUN_KEY = re.compile(r"manual:([0-9a-f-]{36}):(\S+)")
SENT_HEADER = ["PORTFOLIO", "MESSAGE ID", "IDEMPOTENCY KEY"]
WAITED_HEADER = ["PORTFOLIO", "TRIGGER", "REBALANCE", "OUTCOME", "DETAIL"]


@dataclass
class Result:
    status: int
    out: str
    err: str

    def rows(self, header: list[str]) -> dict[str, list[str]]:
        """portfolio -> its cells, from the table that starts with `header`."""
        lines = self.out.splitlines()
        start = next(i for i, line in enumerate(lines) if line.split() == " ".join(header).split())
        rows = {}
        for line in lines[start + 1 :]:
            if not line.strip():
                break
            cells = re.split(r" {2,}", line.strip())
            rows[cells[0]] = cells
        return rows


class Lambda:
    """The function's two SQS event sources (work queue, follow-up queue) on the deployment."""

    def __init__(self, function: LocalFunction, deployment: Deployment) -> None:
        assert deployment.follow_up_queue is not None
        self.function = function
        self.sources = [
            SqsEventSource(deployment.sqs, deployment.work_queue),
            SqsEventSource(deployment.sqs, deployment.follow_up_queue),
        ]
        self.deliveries = 0

    def deliver(self) -> None:
        """Everything visible now, batch by batch, as Lambda would."""
        for source in self.sources:
            while (result := source.poll(self.function.invoke)) is not None:
                assert result.error is None, result.error
                self.deliveries += 1

    def between_polls(self, seconds: float) -> None:
        """The tool's sleep: Lambda's turn, then a short real wait (follow-ups are delayed)."""
        self.deliver()
        time.sleep(min(seconds, 0.2))


@pytest.fixture(autouse=True)
def quick_looks(monkeypatch: pytest.MonkeyPatch) -> None:
    # moto answers a short poll with everything visible (SQS needs the 1 s long poll), and the
    # tests' DLQs are small enough to read on every look.
    monkeypatch.setattr(tools.dlq, "RECEIVE_WAIT_SECONDS", 0)
    monkeypatch.setattr(tools.trigger, "DLQ_LOOK_SECONDS", 0.0)
    monkeypatch.setattr(tools.trigger, "POLL_SECONDS", 0.2)


@pytest.fixture
def local_stack(
    deployment: Deployment, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Callable[..., Path]:
    """local/.stack.json as `make run ARGS=--keep` writes it; the only way to the moto
    server (no AWS_* variables in the tool's environment)."""

    def write(**overrides: str) -> Path:
        stack_file = tmp_path / ".stack.json"
        stack_file.write_text(json.dumps({"environment": deployment.environment(**overrides)}))
        monkeypatch.setattr(tools.trigger, "LOCAL_STACK_FILE", stack_file)
        return stack_file

    for name in ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    write()
    return write


@pytest.fixture
def follow(start_function: Callable[..., LocalFunction]) -> LocalFunction:
    return start_function(FOLLOW_FIRST_DELAY_SECONDS="1")


@pytest.fixture
def aws_lambda(
    follow: LocalFunction, deployment: Deployment, monkeypatch: pytest.MonkeyPatch
) -> Lambda:
    driver = Lambda(follow, deployment)
    monkeypatch.setattr(tools.trigger, "_sleep", driver.between_polls)
    return driver


@pytest.fixture
def run(capsys: pytest.CaptureFixture[str]) -> Callable[..., Result]:
    """`main` in-process; every run is checked for the canary key."""

    def call(*argv: str) -> Result:
        status = main(list(argv))
        captured = capsys.readouterr()
        result = Result(status, captured.out, captured.err)
        assert API_KEY not in result.out
        assert API_KEY not in result.err
        return result

    return call


def temporary_resources(deployment: Deployment, out: str) -> tuple[list[str], list[str]]:
    """The temporary rule on the outcome bus and queue the run named, if they still exist."""
    [name] = re.findall(r"glider-trigger-wait-[0-9a-f]{12}", out)
    events = deployment.moto.client("events")
    rules = [r["Name"] for r in events.list_rules(EventBusName=deployment.outcome_bus)["Rules"]]
    queues = deployment.sqs.list_queues(QueueNamePrefix=name).get("QueueUrls", [])
    return [rule for rule in rules if rule == name], queues


def outcome_stack(moto_server: MotoServer, deployment: Deployment) -> tuple[str, str]:
    """A CloudFormation stack shaped like template.yaml where the tool reads it: the queue
    outputs (the deployment's queues), the IdempotencyTable resource, the parameters. Returns
    the stack name and its table's name."""
    name = f"glider-trigger-tool-{uuid.uuid4().hex[:8]}"
    template = {
        "Parameters": {
            "FollowOutcomes": {"Type": "String"},
            "OutcomeEventBusName": {"Type": "String"},
            "DefaultSkipScheduleValidation": {"Type": "String"},
        },
        "Resources": {
            "IdempotencyTable": {
                "Type": "AWS::DynamoDB::Table",
                "Properties": {
                    "BillingMode": "PAY_PER_REQUEST",
                    "AttributeDefinitions": [{"AttributeName": "id", "AttributeType": "S"}],
                    "KeySchema": [{"AttributeName": "id", "KeyType": "HASH"}],
                },
            }
        },
        "Outputs": {
            "WorkQueueUrl": {"Value": deployment.work_queue.url},
            "DeadLetterQueueUrl": {"Value": deployment.dlq.url},
        },
    }
    cloudformation = moto_server.client("cloudformation")
    cloudformation.create_stack(
        StackName=name,
        TemplateBody=json.dumps(template),
        Parameters=[
            {"ParameterKey": "FollowOutcomes", "ParameterValue": "true"},
            {"ParameterKey": "OutcomeEventBusName", "ParameterValue": deployment.outcome_bus},
            {"ParameterKey": "DefaultSkipScheduleValidation", "ParameterValue": "false"},
        ],
    )
    table = cloudformation.describe_stack_resource(
        StackName=name, LogicalResourceId="IdempotencyTable"
    )["StackResourceDetail"]["PhysicalResourceId"]
    return name, table


# --- sending ---------------------------------------------------------------------------------


def test_it_sends_one_message_per_portfolio_whose_body_the_function_accepts(
    local_stack: Callable[..., Path],
    deployment: Deployment,
    emulator: GliderEmulator,
    run: Callable[..., Result],
) -> None:
    result = run("--portfolio-ids", "port_abc123, port_def456,port_abc123")

    assert result.status == 0, result.err
    rows = result.rows(SENT_HEADER)
    assert list(rows) == ["port_abc123", "port_def456"]  # in order, the repeat dropped
    keys = [RUN_KEY.fullmatch(cells[2]) for cells in rows.values()]
    [run_id] = {key.group(1) for key in keys if key}
    assert [key.group(2) for key in keys if key] == list(rows)
    assert f"run {run_id}, skipScheduleValidation=false." in result.out
    assert "the function triggers each idempotency key once" in result.out
    assert "the local stack runs no event source" in result.out
    messages = {
        m["MessageId"]: json.loads(m["Body"])
        for m in drain(deployment.sqs, deployment.work_queue.url)
    }
    assert set(messages) == {cells[1] for cells in rows.values()}
    for portfolio_id, cells in rows.items():
        body = messages[cells[1]]
        assert body == {
            "portfolioId": portfolio_id,
            "skipScheduleValidation": False,
            "idempotencyKey": f"manual:{run_id}:{portfolio_id}",
        }
        # The function's own parser: one request, keyed by the idempotency key.
        [request] = parse(body, default_skip=False, transport=None).requests
        assert request.portfolio_id == portfolio_id
        assert request.source.dedupe_key == f"key:manual:{run_id}:{portfolio_id}"
    assert emulator.trigger_requests == []  # sent, not triggered: that is the function's job


# --- waiting ---------------------------------------------------------------------------------


def test_wait_follows_each_portfolio_to_triggered_and_completed(
    aws_environment: None,
    moto_server: MotoServer,
    deployment: Deployment,
    emulator: GliderEmulator,
    start_function: Callable[..., LocalFunction],
    monkeypatch: pytest.MonkeyPatch,
    run: Callable[..., Result],
) -> None:
    emulator.set_workflow_seconds(0.3)
    name, table = outcome_stack(moto_server, deployment)
    function = start_function(FOLLOW_FIRST_DELAY_SECONDS="1", IDEMPOTENCY_TABLE_NAME=table)
    driver = Lambda(function, deployment)
    monkeypatch.setattr(tools.trigger, "_sleep", driver.between_polls)

    result = run(
        "--stack", name, "--portfolio-ids", "port_abc123,port_def456", "--wait", "--timeout", "60"
    )

    assert result.status == 0, result.out + result.err
    rebalances = {r.portfolio_id: r.rebalance_id for r in emulator.rebalances}
    assert set(rebalances) == {"port_abc123", "port_def456"}
    for portfolio_id, rebalance_id in rebalances.items():
        assert re.search(
            rf"^  \+\S+ +{portfolio_id} +triggered  rebalanceId={rebalance_id}$",
            result.out,
            re.MULTILINE,
        )
        assert re.search(
            rf"^  \+\S+ +{portfolio_id} +completed +rebalanceId={rebalance_id} \(in 0\.3 s\)$",
            result.out,
            re.MULTILINE,
        )
    rows = result.rows(WAITED_HEADER)
    assert {p: cells[1:4] for p, cells in rows.items()} == {
        p: ["triggered", rebalance_id, "completed"] for p, rebalance_id in rebalances.items()
    }
    assert "\n2 of 2 triggered, 2 completed, 0 failed.\n" in result.out
    assert f"to the work queue {deployment.work_queue.url.rsplit('/', 1)[-1]} of stack {name};" in (
        result.out
    )
    # The temporary rule and queue are gone; the DLQ is empty; nothing was triggered twice.
    assert temporary_resources(deployment, result.out) == ([], [])
    assert deployment.dlq_messages() == []
    assert len(emulator.trigger_requests) == 2


def test_a_rebalance_glider_fails_is_reported_failed_with_its_letter(
    local_stack: Callable[..., Path],
    aws_lambda: Lambda,
    deployment: Deployment,
    emulator: GliderEmulator,
    run: Callable[..., Result],
) -> None:
    emulator.fail_next_rebalance("port_abc123", "execution reverted: slippage too high")

    result = run("--portfolio-ids", "port_abc123", "--wait", "--timeout", "60")

    assert result.status == 1
    [rebalance] = emulator.rebalances
    assert re.search(
        rf"port_abc123 +failed +rebalanceId={rebalance.rebalance_id} \(in 0\.0 s; execution "
        r"reverted: slippage too high; its REBALANCE_FAILED letter is in the DLQ\)",
        result.out,
    ), result.out
    assert "1 of 1 triggered, 0 completed, 1 failed." in result.out
    [letter] = deployment.dlq_messages()
    assert attribute_values(letter)["reason"] == "REBALANCE_FAILED"


def test_an_unknown_portfolio_fails_into_the_dlq_and_stays_there(
    local_stack: Callable[..., Path],
    aws_lambda: Lambda,
    deployment: Deployment,
    emulator: GliderEmulator,
    run: Callable[..., Result],
) -> None:
    result = run(
        "--portfolio-ids", "port_abc123,port_nope01", "--wait", "--no-outcome", "--timeout", "60"
    )

    assert result.status == 1
    assert re.search(
        r"port_nope01 +FAILED NOT_FOUND \(permanent HTTP 404 API_200\): .*Portfolio not found.* "
        r"-> in the DLQ$",
        result.out,
        re.MULTILINE,
    )
    rows = result.rows(WAITED_HEADER)
    assert rows["port_abc123"][1:4] == [
        "triggered",
        emulator.rebalances[0].rebalance_id,
        "not watched",
    ]
    assert rows["port_nope01"][1] == "FAILED"
    assert "1 of 2 triggered, 1 failed." in result.out
    # Seen, not stolen: the letter is still in the DLQ, as the function wrote it.
    [letter] = deployment.dlq_messages()
    body = json.loads(letter["Body"])
    assert body["portfolioId"] == "port_nope01"
    assert re.fullmatch(r"key:manual:[0-9a-f-]{36}:port_nope01", body["deliveryKey"])
    assert attribute_values(letter)["reason"] == "NOT_FOUND"


def test_a_message_the_redrive_moved_to_the_dlq_is_reported(
    local_stack: Callable[..., Path],
    deployment: Deployment,
    monkeypatch: pytest.MonkeyPatch,
    run: Callable[..., Result],
) -> None:
    def redrive(seconds: float) -> None:
        """SQS's redrive after MaxReceiveCount receives the function never settled (it timed out
        each time, say): the message, as sent, moves to the DLQ."""
        for message in drain(deployment.sqs, deployment.work_queue.url):
            deployment.sqs.send_message(QueueUrl=deployment.dlq.url, MessageBody=message["Body"])

    monkeypatch.setattr(tools.trigger, "_sleep", redrive)

    result = run("--portfolio-ids", "port_abc123", "--wait", "--timeout", "30")

    assert result.status == 1
    assert re.search(
        r"port_abc123 +FAILED moved to the DLQ by the work queue's redrive: the function never "
        r"settled it \(see its logs\) -> in the DLQ$",
        result.out,
        re.MULTILINE,
    ), result.out
    assert len(deployment.dlq_messages()) == 1


def test_sending_a_run_again_triggers_nothing_twice(
    local_stack: Callable[..., Path],
    aws_lambda: Lambda,
    emulator: GliderEmulator,
    run: Callable[..., Result],
) -> None:
    run_id = str(uuid.uuid4())
    first = run("--portfolio-ids", "port_abc123", "--run-id", run_id, "--wait", "--no-outcome")
    assert first.status == 0, first.out + first.err
    [rebalance] = emulator.rebalances

    again = run("--portfolio-ids", "port_abc123", "--run-id", run_id, "--wait", "--no-outcome")
    aws_lambda.deliver()  # the second message, too, reaches the function

    assert again.status == 0, again.out + again.err
    assert first.rows(SENT_HEADER)["port_abc123"][2] == f"manual:{run_id}:port_abc123"
    assert again.rows(SENT_HEADER)["port_abc123"][2] == f"manual:{run_id}:port_abc123"
    assert (
        f"port_abc123: triggered (rebalanceId={rebalance.rebalance_id}) by an earlier send of "
        "this run: not triggered again"
    ) in again.out
    assert again.rows(WAITED_HEADER)["port_abc123"][1:3] == ["earlier", rebalance.rebalance_id]
    assert len(emulator.trigger_requests) == 1  # the guard skipped the second delivery
    assert any(
        "already triggered by an earlier delivery" in log.get("message", "")
        for log in aws_lambda.function.logs
    )


def test_skip_schedule_validation_is_carried_to_glider(
    local_stack: Callable[..., Path],
    aws_lambda: Lambda,
    emulator: GliderEmulator,
    run: Callable[..., Result],
) -> None:
    emulator.add_portfolio("port_nosched", has_schedule=False)
    local_stack(OUTCOME_EVENT_BUS_NAME="")  # a stack without an outcome bus, too

    refused = run("--portfolio-ids", "port_nosched", "--wait")
    carried = run("--portfolio-ids", "port_nosched", "--skip-schedule-validation", "--wait")

    assert refused.status == 1
    assert "skipScheduleValidation=false." in refused.out
    assert "FAILED BAD_REQUEST (permanent HTTP 400 API_002)" in refused.out
    assert carried.status == 0, carried.out + carried.err
    assert "skipScheduleValidation=true." in carried.out
    assert "publishes no outcome events (OutcomeEventBusName is empty)" in carried.out
    [rebalance] = emulator.rebalances
    assert rebalance.skip_schedule_validation is True
    assert carried.rows(WAITED_HEADER)["port_nosched"][1:4] == [
        "triggered",
        rebalance.rebalance_id,
        "not watched",
    ]


def test_wait_times_out_saying_what_is_pending(
    local_stack: Callable[..., Path],
    deployment: Deployment,
    monkeypatch: pytest.MonkeyPatch,
    run: Callable[..., Result],
) -> None:
    monkeypatch.setattr(tools.trigger, "_sleep", lambda seconds: time.sleep(min(seconds, 0.1)))

    result = run("--portfolio-ids", "port_abc123", "--wait", "--timeout", "1")  # no Lambda

    assert result.status == 3
    assert "Timed out after 1 s; still pending:" in result.out
    assert "  port_abc123: not triggered yet: waiting in the work queue" in result.out
    assert result.rows(WAITED_HEADER)["port_abc123"][1] == "pending"
    assert temporary_resources(deployment, result.out) == ([], [])
    assert len(drain(deployment.sqs, deployment.work_queue.url)) == 1  # never received by it


# --- --json ----------------------------------------------------------------------------------


def test_json_is_one_document_of_what_was_sent(
    local_stack: Callable[..., Path], deployment: Deployment, run: Callable[..., Result]
) -> None:
    result = run("--portfolio-ids", "port_abc123,port_def456", "--json")

    assert result.status == 0, result.err
    document = json.loads(result.out)  # stdout is the document, and nothing else
    assert "Sent 2 of 2 trigger request(s)" in result.err  # what is said goes to stderr
    run_id = document["runId"]
    assert document["skipScheduleValidation"] is False
    assert document["sent"] == 2
    assert document["workQueueUrl"] == deployment.work_queue.url
    messages = {m["MessageId"] for m in drain(deployment.sqs, deployment.work_queue.url)}
    assert [p["portfolioId"] for p in document["portfolios"]] == ["port_abc123", "port_def456"]
    for portfolio in document["portfolios"]:
        assert portfolio["idempotencyKey"] == f"manual:{run_id}:{portfolio['portfolioId']}"
        assert portfolio["messageId"] in messages
        assert portfolio["sendError"] is None
        assert "outcome" not in portfolio  # not waited for
    assert "timedOut" not in document


def test_json_with_wait_gives_each_portfolios_outcome(
    local_stack: Callable[..., Path],
    aws_lambda: Lambda,
    emulator: GliderEmulator,
    run: Callable[..., Result],
) -> None:
    emulator.set_workflow_seconds(0.3)
    result = run(
        "--portfolio-ids", "port_abc123,port_nope01", "--wait", "--timeout", "60", "--json"
    )

    assert result.status == 1, result.err
    document = json.loads(result.out)
    [rebalance] = emulator.rebalances
    by_id = {p["portfolioId"]: p for p in document["portfolios"]}
    assert by_id["port_abc123"]["trigger"] == "triggered"
    assert by_id["port_abc123"]["rebalanceId"] == rebalance.rebalance_id
    assert by_id["port_abc123"]["outcome"] == "completed"
    assert by_id["port_abc123"]["pending"] is None
    assert by_id["port_nope01"]["trigger"] == "failed"
    assert by_id["port_nope01"]["failure"].startswith("NOT_FOUND (permanent HTTP 404 API_200)")
    assert (document["triggered"], document["completed"], document["failed"]) == (1, 1, 1)
    assert (document["outcomesWatched"], document["timedOut"]) == (True, False)


def test_json_wait_timed_out_exits_3_with_what_is_pending(
    local_stack: Callable[..., Path],
    monkeypatch: pytest.MonkeyPatch,
    run: Callable[..., Result],
) -> None:
    monkeypatch.setattr(tools.trigger, "_sleep", lambda seconds: time.sleep(min(seconds, 0.1)))

    result = run("--portfolio-ids", "port_abc123", "--wait", "--timeout", "1", "--json")

    assert result.status == 3  # tools.base.EXIT_TIMEOUT
    document = json.loads(result.out)
    assert document["timedOut"] is True
    [portfolio] = document["portfolios"]
    assert portfolio["trigger"] == "pending"
    assert portfolio["pending"].startswith("not triggered yet: waiting in the work queue")


# --- refusals --------------------------------------------------------------------------------


def test_usage_errors_and_a_missing_stack(
    aws_environment: None,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    run: Callable[..., Result],
) -> None:
    monkeypatch.setattr(tools.trigger, "LOCAL_STACK_FILE", tmp_path / "absent.json")

    bad_id = run("--portfolio-ids", "port_abc123,../admin")
    no_wait = run("--portfolio-ids", "port_abc123", "--timeout", "5")
    no_stack = run("--portfolio-ids", "port_abc123")
    bad_run = run("--portfolio-ids", "port_abc123", "--run-id", "a b")
    missing = run("--stack", "no-such-stack", "--portfolio-ids", "port_abc123")

    assert bad_id.status == 2
    assert "portfolio id '../admin' is not 1-128 letters, digits, '_' or '-'" in bad_id.err
    assert (no_wait.status, no_stack.status, bad_run.status) == (2, 2, 2)
    assert "--timeout and --no-outcome go with --wait" in no_wait.err
    assert "pass --stack NAME (a deployed stack), or start the local stack" in no_stack.err
    assert "a run id is 1-64 letters, digits and '-'" in bad_run.err
    assert missing.status == 1
    [line] = missing.err.splitlines()
    assert line.startswith(
        "glider-trigger trigger: error: stack no-such-stack: DescribeStacks: ValidationError"
    )
