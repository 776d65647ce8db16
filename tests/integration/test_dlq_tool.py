"""tools/dlq.py against a moto server: list without consuming, redrive by reason, the message move
task, status, and one-line errors. The DLQ is filled the way the function fills it (its own
dead_letter module), plus an on-failure destination record and a Scheduler dead letter.

moto 5.2.5 does not implement StartMessageMoveTask or ListMessageMoveTasks (it answers HTTP 500),
so those two calls alone are answered by a stub registered on that one operation; every other
call of those tests, and of every other test, goes to the moto server."""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from botocore.awsrequest import AWSResponse

import tools.dlq
from glider_trigger.domain import trigger_input
from glider_trigger.domain.errors import (
    ApiError,
    DeadLetterWriteError,
    InvalidInputError,
    TriggerError,
    classify,
)
from glider_trigger.domain.letters import for_failed_rebalance, for_failure, for_unparsable_input
from glider_trigger.domain.models import (
    Failed,
    FinalOutcome,
    FollowUp,
    InputSource,
    SourceKind,
    TriggerRequest,
)
from glider_trigger.domain.ports import OutcomeReport
from glider_trigger.outbound.glider.shared import api_error
from glider_trigger.outbound.queues import QueueWriter
from local.fixtures.delivery import deliver
from local.fixtures.event_source import SqsEventSource
from local.fixtures.stack import (
    FAKE_AWS_CREDENTIALS,
    REGION,
    Deployment,
    MotoServer,
    Queue,
    attribute_values,
    drain,
)
from tools.dlq import main

REPO = Path(__file__).resolve().parents[2]
SCHEDULE_ARN = "arn:aws:scheduler:us-east-1:123456789012:schedule/default/glider-daily"
FUNCTION_ARN = "arn:aws:lambda:us-east-1:123456789012:function:glider-rebalance-trigger"
HEADER = [
    "MESSAGE ID",
    "PORTFOLIO",
    "REASON",
    "CLASS",
    "HTTP",
    "API CODE",
    "ATTEMPTS",
    "RECEIVES",
    "AGE",
    "COUNT",
    "SOURCE",
    "DETAIL",
]


def failed(portfolio_id: str, error: TriggerError, attempts: int, source: InputSource) -> Failed:
    return Failed(TriggerRequest(portfolio_id, False, source), error, classify(error), attempts)


def portfolio_of(body: str) -> str:
    """The portfolio a letter of one portfolio names, or "(unparsable)"."""
    try:
        return str(json.loads(body)["portfolioId"])
    except ValueError:
        return "(unparsable)"


def sqs_source() -> InputSource:
    return InputSource(SourceKind.SQS, delivery_id=str(uuid.uuid4()))


def sqs_delivery() -> InputSource:
    """An SQS message's delivery as the function's inbound adapter names it (its key)."""
    message_id = str(uuid.uuid4())
    return InputSource(SourceKind.SQS, delivery_id=message_id, dedupe_key=f"sqs:{message_id}")


def rate_limited() -> ApiError:
    return api_error(
        "Too many requests",
        status=429,
        code="API_004",
        request_id="req_1",
        correlation_id="corr_1",
        retry_after_seconds=30,
    )


DESTINATION_RECORD = {
    "version": "1.0",
    "timestamp": "2026-11-24T06:00:09.512Z",
    "requestContext": {
        "requestId": "c6af9ac6-7b61-11e6-9a41-93e812345678",
        "functionArn": f"{FUNCTION_ARN}:$LATEST",
        "condition": "RetriesExhausted",
        "approximateInvokeCount": 3,
    },
    "requestPayload": {"portfolioIds": ["port_abc123", "port_def456"]},
    "responseContext": {
        "statusCode": 200,
        "executedVersion": "$LATEST",
        "functionError": "Unhandled",
    },
    "responsePayload": {"errorType": "DeadLetterWriteError", "errorMessage": "DLQ unavailable"},
}
SCHEDULER_INPUT = {"portfolioId": "port_sched01", "scheduleArn": SCHEDULE_ARN}


def string(value: str) -> dict[str, str]:
    return {"DataType": "String", "StringValue": value}


@pytest.fixture(autouse=True)
def short_polls(monkeypatch: pytest.MonkeyPatch) -> None:
    # moto answers a short poll with everything visible; the tool's 1 s long poll is for SQS,
    # whose short polls sample a subset of its servers.
    monkeypatch.setattr(tools.dlq, "RECEIVE_WAIT_SECONDS", 0)


@dataclass
class Stack:
    """The queues as the template makes them: the work and follow-up queues redrive to the
    DLQ."""

    sqs: Any
    work_queue: Queue
    dlq: Queue
    follow_up_queue: Queue

    def dlq_messages(self) -> list[dict[str, Any]]:
        return drain(self.sqs, self.dlq.url)


@pytest.fixture(scope="module")
def sqs(moto_server: MotoServer) -> Any:
    return moto_server.client("sqs")


@pytest.fixture
def aws(sqs: Any, monkeypatch: pytest.MonkeyPatch, aws_environment: None) -> Stack:
    """Fresh queues, and the standard AWS environment pointed at the moto server."""
    suffix = uuid.uuid4().hex[:8]
    dlq = create_queue(sqs, f"glider-dlq-{suffix}", {})
    redrive = {"deadLetterTargetArn": dlq.arn, "maxReceiveCount": "5"}
    work = create_queue(sqs, f"glider-work-{suffix}", {"RedrivePolicy": json.dumps(redrive)})
    follow_ups = create_queue(
        sqs, f"glider-follow-up-{suffix}", {"RedrivePolicy": json.dumps(redrive)}
    )
    monkeypatch.setenv("DLQ_URL", dlq.url)
    monkeypatch.setenv("WORK_QUEUE_URL", work.url)
    monkeypatch.setenv("FOLLOW_UP_QUEUE_URL", follow_ups.url)
    return Stack(sqs, work, dlq, follow_ups)


def create_queue(sqs: Any, name: str, attributes: dict[str, str]) -> Queue:
    url = sqs.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]
    return Queue(url, arn["QueueArn"])


@pytest.fixture
def filled(aws: Stack) -> dict[str, str]:
    """Seven dead letters; returns portfolio -> body."""
    schedule = InputSource(SourceKind.SCHEDULE, metadata={"scheduleArn": SCHEDULE_ARN})
    letters = [
        for_failure(failed("port_busy01", rate_limited(), 3, sqs_source())),
        for_failure(failed("port_busy02", rate_limited(), 1, schedule)),
        for_failure(
            failed(
                "port_gone01",
                api_error("Not found", status=404, code="API_200"),
                1,
                sqs_source(),
            ),
        ),
        for_failure(
            failed(
                "port_down01",
                api_error("Unavailable", status=503, code="API_000"),
                4,
                sqs_source(),
            ),
        ),
        for_unparsable_input(
            "not json at all", InvalidInputError("body is not valid JSON"), sqs_source()
        ),
    ]
    QueueWriter(aws.dlq.url, client=lambda: aws.sqs, error_type=DeadLetterWriteError).send(letters)
    sqs = aws.sqs
    # Lambda's on-failure destination: an invocation record, no attributes.
    sqs.send_message(QueueUrl=aws.dlq.url, MessageBody=json.dumps(DESTINATION_RECORD))
    # Scheduler's own dead letter: the target input, with Scheduler's attributes.
    sqs.send_message(
        QueueUrl=aws.dlq.url,
        MessageBody=json.dumps(SCHEDULER_INPUT),
        MessageAttributes={
            "ERROR_CODE": string("Lambda.TooManyRequestsException"),
            "ERROR_MESSAGE": string("Rate exceeded"),
            "EXHAUSTED_RETRY_CONDITION": string("MaximumRetryAttempts"),
            "RETRY_ATTEMPTS": string("185"),
            "SCHEDULE_ARN": string(SCHEDULE_ARN),
            "TARGET_ARN": string(FUNCTION_ARN),
        },
    )
    bodies = {portfolio_of(letter.body): letter.body for letter in letters}
    bodies["port_abc123,port_def456"] = json.dumps(DESTINATION_RECORD)
    bodies["port_sched01"] = json.dumps(SCHEDULER_INPUT)
    return bodies


def visible(stack: Stack, url: str | None = None) -> int:
    attributes = stack.sqs.get_queue_attributes(
        QueueUrl=url or stack.dlq.url, AttributeNames=["ApproximateNumberOfMessages"]
    )["Attributes"]
    return int(attributes["ApproximateNumberOfMessages"])


def json_rows(capsys: pytest.CaptureFixture[str], *argv: str) -> dict[str, dict[str, Any]]:
    assert main(["list", "--json", *argv]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    return {row["portfolio"]: row for row in rows}


class OneCallStubs:
    """An SQS client on the moto server where only the operations given to `answer` are stubbed,
    through botocore's before-call event (the hook Stubber itself uses; Stubber would stub every
    call); each stubbed call's params are recorded, after botocore has validated them."""

    def __init__(self, moto_server: MotoServer) -> None:
        self.client = moto_server.client("sqs")  # its own: the handlers stay on this client
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def answer(self, operation: str, response: dict[str, Any]) -> None:
        def record(params: dict[str, Any], **_: Any) -> None:
            self.calls.append((operation, dict(params)))

        def respond(**_: Any) -> tuple[AWSResponse, dict[str, Any]]:
            return AWSResponse(None, 200, {}, None), {  # type: ignore[arg-type]
                **response,
                "ResponseMetadata": {"HTTPStatusCode": 200},
            }

        self.client.meta.events.register(f"before-parameter-build.sqs.{operation}", record)
        self.client.meta.events.register(f"before-call.sqs.{operation}", respond)


# --- list ------------------------------------------------------------------------------------


def read_table(out: str) -> list[dict[str, str]]:
    """The table `list` prints, read by its header's columns as a person reads it: a line whose
    MESSAGE ID is blank continues the DETAIL of the row above."""
    lines = out.split("\n\n", maxsplit=1)[0].splitlines()
    starts: list[int] = []
    for name in HEADER:  # each after the one before ("AGE" is also in "MESSAGE ID")
        starts.append(lines[0].index(name, starts[-1] + 1 if starts else 0))
    rows: list[dict[str, str]] = []
    for line in lines[1:]:
        cells = [
            line[start:end].strip() for start, end in zip(starts, [*starts[1:], None], strict=True)
        ]
        if cells[0]:
            rows.append(dict(zip(HEADER, cells, strict=True)))
        else:
            assert not any(cells[:-1]), line
            rows[-1]["DETAIL"] += " " + cells[-1]
    return rows


def listed(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[dict[str, dict[str, str]], str]:
    assert main(["list", *argv]) == 0
    out = capsys.readouterr().out
    return {row["PORTFOLIO"]: row for row in read_table(out)}, out


def test_list_shows_every_message_with_its_columns_and_a_count_per_reason(
    filled: dict[str, str], aws: Stack, capsys: pytest.CaptureFixture[str]
) -> None:
    rows, out = listed(capsys)

    assert set(rows) == set(filled)
    columns = HEADER[2:8]
    busy = rows["port_busy01"]
    assert [busy[c] for c in columns] == ["RATE_LIMITED", "transient", "429", "API_004", "3", "0"]
    assert all(re.fullmatch(r"\d+s", row["AGE"]) for row in rows.values())  # sent just now
    assert all(row["COUNT"] == "1" for row in rows.values())
    assert busy["SOURCE"].startswith("sqs:")
    assert busy["DETAIL"] == "Too many requests (gliderCorrelationId=corr_1)"
    assert rows["port_busy02"]["SOURCE"] == f"schedule:{SCHEDULE_ARN}"  # whole, never clipped
    assert [rows["port_gone01"][c] for c in columns] == [
        "NOT_FOUND",
        "permanent",
        "404",
        "API_200",
        "1",
        "0",
    ]
    assert [rows["port_down01"][c] for c in columns[:5]] == [
        "SERVER_ERROR",
        "transient",
        "503",
        "API_000",
        "4",
    ]
    assert [rows["(unparsable)"][c] for c in columns[:5]] == [
        "MALFORMED_INPUT",
        "permanent",
        "-",
        "-",
        "0",
    ]
    assert rows["(unparsable)"]["DETAIL"] == "body is not valid JSON"
    destination = rows["port_abc123,port_def456"]
    assert [destination[c] for c in columns[:5]] == ["-"] * 5
    assert destination["SOURCE"] == "lambda-destination:c6af9ac6-7b61-11e6-9a41-93e812345678"
    assert [rows["port_sched01"][c] for c in columns[:5]] == [
        "Lambda.TooManyRequestsException",
        "-",
        "-",
        "-",
        "185",
    ]
    assert rows["port_sched01"]["DETAIL"] == "Rate exceeded"
    assert "7 message(s) listed, ~7 in the DLQ." in out
    assert out.splitlines()[-1] == (
        "By reason: RATE_LIMITED 2, - 1, Lambda.TooManyRequestsException 1, MALFORMED_INPUT 1, "
        "NOT_FOUND 1, SERVER_ERROR 1"
    )
    # A second look: each letter was received once more (by the first look), none consumed.
    again, _ = listed(capsys)
    assert {row["RECEIVES"] for row in again.values()} == {"1"}
    assert {row["MESSAGE ID"] for row in rows.values()} == message_ids(aws)


def message_ids(stack: Stack) -> set[str]:
    """The ids of the DLQ's messages, received (held a while) and made visible again."""
    seen: dict[str, str] = {}
    while batch := stack.sqs.receive_message(
        QueueUrl=stack.dlq.url, MaxNumberOfMessages=10, VisibilityTimeout=30
    ).get("Messages", []):
        seen |= {m["MessageId"]: m["ReceiptHandle"] for m in batch}
    for handle in seen.values():
        stack.sqs.change_message_visibility(
            QueueUrl=stack.dlq.url, ReceiptHandle=handle, VisibilityTimeout=0
        )
    return set(seen)


def test_list_wraps_a_long_detail_to_the_terminal_and_never_clips_it(
    aws: Stack, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    words = " ".join(f"word{n:03d}" for n in range(120))  # 960 characters
    error = api_error(words, status=400, code="API_100")
    letter = for_failure(failed("port_long01", error, 1, sqs_source()))
    QueueWriter(aws.dlq.url, client=lambda: aws.sqs, error_type=DeadLetterWriteError).send([letter])
    monkeypatch.setenv("COLUMNS", "220")

    rows, out = listed(capsys)
    lines = out.split("\n\n")[0].splitlines()
    [json_row] = json_rows(capsys).values()

    assert words in rows["port_long01"]["DETAIL"]  # every word, in order
    assert len(lines) > 10  # header, the row and its continuation lines
    assert max(len(line) for line in lines) <= 220
    assert words in json_row["detail"]  # whole, on one line
    monkeypatch.setenv("COLUMNS", "60")  # narrower than the other columns: DETAIL keeps 40
    narrow, _ = listed(capsys)
    assert words in narrow["port_long01"]["DETAIL"]


def test_letters_of_one_delivery_collapse_into_one_row_with_a_count(
    aws: Stack, capsys: pytest.CaptureFixture[str]
) -> None:
    # A redelivery of one SQS message dead-letters the same portfolio again; another delivery of
    # that portfolio, or another reason, is a letter of its own.
    delivery, other = sqs_delivery(), sqs_delivery()
    gone = api_error("Not found", status=404, code="API_200")
    letters = [
        for_failure(failed("port_twice01", rate_limited(), 3, delivery)),
        for_failure(failed("port_twice01", rate_limited(), 3, delivery)),
        for_failure(failed("port_twice01", rate_limited(), 3, delivery)),
        for_failure(failed("port_twice01", rate_limited(), 3, other)),
        for_failure(failed("port_twice01", gone, 1, delivery)),
    ]
    writer = QueueWriter(aws.dlq.url, client=lambda: aws.sqs, error_type=DeadLetterWriteError)
    for letter in letters:
        writer.send([letter])

    assert main(["list"]) == 0
    out = capsys.readouterr().out
    rows = read_table(out)
    assert main(["list", "--json"]) == 0
    objects = [json.loads(line) for line in capsys.readouterr().out.splitlines()]

    assert sorted((row["REASON"], row["COUNT"]) for row in rows) == [
        ("NOT_FOUND", "1"),
        ("RATE_LIMITED", "1"),
        ("RATE_LIMITED", "3"),
    ]
    [three] = [row for row in rows if row["COUNT"] == "3"]
    assert three["SOURCE"] == f"sqs:{delivery.delivery_id}"
    assert "5 message(s) listed in 3 row(s), ~5 in the DLQ." in out
    assert "By reason: RATE_LIMITED 4, NOT_FOUND 1" in out
    # --json hides nothing: each letter, with the size of its group and its delivery.
    assert len(objects) == 5
    assert sorted(o["count"] for o in objects) == [1, 1, 3, 3, 3]
    assert {o["deliveryKey"] for o in objects if o["count"] == 3} == {delivery.dedupe_key}


def test_list_consumes_nothing_and_hides_nothing_once_done(
    filled: dict[str, str], aws: Stack, capsys: pytest.CaptureFixture[str]
) -> None:
    first = json_rows(capsys)
    # Every message is visible again at once, not only when the hold runs out.
    assert visible(aws) == 7
    second = json_rows(capsys)

    assert set(first) == set(second) == set(filled)
    assert {r["messageId"] for r in first.values()} == {r["messageId"] for r in second.values()}
    row = first["port_busy01"]
    assert row["body"] == filled["port_busy01"]
    assert (row["reason"], row["class"], row["httpStatus"], row["apiErrorCode"]) == (
        "RATE_LIMITED",
        "transient",
        429,
        "API_004",
    )
    assert row["attempts"] == 3
    assert row["age"] == f"{row['ageSeconds']}s"
    assert row["retryAt"]
    assert first["port_sched01"]["source"] == f"schedule:{SCHEDULE_ARN}"
    assert first["port_sched01"]["detail"] == "Rate exceeded"


def test_list_limit_reads_past_the_first_batch_and_releases_the_rest(
    aws: Stack, capsys: pytest.CaptureFixture[str]
) -> None:
    for n in range(23):
        aws.sqs.send_message(QueueUrl=aws.dlq.url, MessageBody=json.dumps({"portfolioId": f"p{n}"}))

    assert len(json_rows(capsys, "--limit", "15")) == 15
    assert len(json_rows(capsys)) == 23
    assert visible(aws) == 23


@pytest.mark.parametrize(
    ("seconds", "age"),
    [(None, "-"), (59.9, "59s"), (300, "5m"), (3 * 3600 + 59, "3h"), (2 * 86400, "2d")],
)
def test_ages_read_like_5m_3h_2d(seconds: float | None, age: str) -> None:
    assert tools.dlq.human_age(seconds) == age


def test_an_empty_dlq(aws: Stack, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["list"]) == 0
    assert capsys.readouterr().out.startswith("The DLQ is empty")


# --- redrive --reason --------------------------------------------------------------------------


def test_redrive_by_reason_moves_exactly_those_bodies_without_attributes(
    filled: dict[str, str],
    aws: Stack,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sleeps: list[float] = []

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        time.sleep(seconds)

    monkeypatch.setattr(tools.dlq, "_sleep", sleep)

    assert main(["redrive", "--reason", "RATE_LIMITED", "--rate", "5", "--yes"]) == 0

    last = capsys.readouterr().out.splitlines()[-1]
    assert last == "Moved 2, skipped 5 not of reason or class RATE_LIMITED."
    replayed = drain(aws.sqs, aws.work_queue.url)
    assert sorted(m["Body"] for m in replayed) == sorted(
        [filled["port_busy01"], filled["port_busy02"]]
    )
    assert all(attribute_values(m) == {} for m in replayed)
    left = {attribute_values(m).get("reason", m["Body"]) for m in aws.dlq_messages()}
    assert len(left) == 5
    assert "RATE_LIMITED" not in left
    # Two sends at 5 a second: the second waited about 0.2 s for its turn.
    assert len(sleeps) == 1
    assert 0.1 < sleeps[0] <= 0.2


def test_redrive_warns_about_letters_older_than_the_guard_remembers(
    filled: dict[str, str], aws: Stack, capsys: pytest.CaptureFixture[str]
) -> None:
    # The work queue keeps a replay 4 days (moto's default, as SQS's): with a guard of 5 days,
    # a letter older than 1 day could be processed after its delivery's record expired.
    time.sleep(1.1)
    day = "86400"

    assert main(["redrive", "--reason", "NOT_FOUND", "--yes", "--guard-seconds", "345601"]) == 0
    warned = capsys.readouterr().err
    assert "is 1s old, beyond the guard's memory" in warned
    assert "port_gone01" in warned

    assert main(["redrive", "--reason", "RATE_LIMITED", "--yes", "--guard-seconds", day]) == 0
    assert warned.count("beyond the guard's memory") == 1
    assert capsys.readouterr().err.count("beyond the guard's memory") == 2  # both letters

    # With the template's default memory (19 days) nothing in a 14-day DLQ is too old.
    assert main(["redrive", "--reason", "transient", "--yes"]) == 0
    assert "warning" not in capsys.readouterr().err


def test_a_move_task_warns_when_the_dlq_can_hold_letters_beyond_the_guards_memory(
    aws: Stack, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["redrive", "--dry-run", "--guard-seconds", "400000"]) == 0
    assert "letters older than 15h may trigger a portfolio twice" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("code", "moved"),
    [
        ("transient", {"port_busy01", "port_busy02", "port_down01"}),
        ("not_found", {"port_gone01"}),
        ("lambda.toomanyrequestsexception", {"port_sched01"}),
    ],
)
def test_reason_matches_the_reason_column_or_the_class_ignoring_case(
    filled: dict[str, str],
    aws: Stack,
    code: str,
    moved: set[str],
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["redrive", "--reason", code, "--yes"]) == 0

    bodies = sorted(m["Body"] for m in drain(aws.sqs, aws.work_queue.url))
    assert bodies == sorted(filled[p] for p in moved)
    assert visible(aws) == 7 - len(moved)


def test_redrive_of_one_portfolio_moves_its_letters_only(
    filled: dict[str, str], aws: Stack, capsys: pytest.CaptureFixture[str]
) -> None:
    # A notice names one portfolio: replaying it must not replay everyone else's of that reason.
    assert main(["redrive", "--reason", "RATE_LIMITED", "--portfolio", "port_busy01", "--yes"]) == 0

    bodies = [m["Body"] for m in drain(aws.sqs, aws.work_queue.url)]
    assert bodies == [filled["port_busy01"]]
    assert visible(aws) == 6
    assert (
        capsys.readouterr()
        .out.splitlines()[-1]
        .startswith(
            "Moved 1, skipped 6 not of reason or class RATE_LIMITED and portfolio port_busy01"
        )
    )


def test_dry_run_moves_nothing_and_says_what_would_move(
    filled: dict[str, str], aws: Stack, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["redrive", "--reason", "rate_limited", "--dry-run"]) == 0

    out = capsys.readouterr().out
    assert [line.split()[3] for line in out.splitlines() if line.startswith("would move")] == [
        "port_busy01",
        "port_busy02",
    ]
    assert out.splitlines()[-1] == "Would move 2, skipped 5 not of reason or class rate_limited."
    assert visible(aws, aws.work_queue.url) == 0
    assert visible(aws) == 7


@pytest.mark.parametrize(("answer", "moved"), [("n\n", 0), ("", 0), ("yes\n", 2)])
def test_redrive_asks_first_unless_yes(
    filled: dict[str, str],
    aws: Stack,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    answer: str,
    moved: int,
) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO(answer))

    status = main(["redrive", "--reason", "RATE_LIMITED"])

    out = capsys.readouterr().out
    assert "Each can trigger a real rebalance. [y/N]" in out
    assert status == (0 if moved else 1)
    assert visible(aws, aws.work_queue.url) == moved
    assert visible(aws) == 7 - moved


# --- discard ---------------------------------------------------------------------------------


def received(stack: Stack) -> dict[str, dict[str, Any]]:
    """The DLQ's messages by id, with every attribute, made visible again."""
    seen: dict[str, dict[str, Any]] = {}
    while batch := stack.sqs.receive_message(
        QueueUrl=stack.dlq.url,
        MaxNumberOfMessages=10,
        VisibilityTimeout=30,
        MessageAttributeNames=["All"],
        MessageSystemAttributeNames=["All"],
    ).get("Messages", []):
        seen |= {m["MessageId"]: m for m in batch}
    for message in seen.values():
        stack.sqs.change_message_visibility(
            QueueUrl=stack.dlq.url, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=0
        )
    return seen


def archived(path: Path) -> dict[str, dict[str, Any]]:
    lines = path.read_text(encoding="utf-8").splitlines()
    return {record["messageId"]: record for record in map(json.loads, lines)}


def test_discard_without_yes_is_a_dry_run_that_writes_nothing(
    filled: dict[str, str],
    aws: Stack,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    archive = tmp_path / "archive.jsonl"

    assert main(["discard", "--reason", "transient", "--archive", str(archive)]) == 0

    out = capsys.readouterr().out
    would = [line.split() for line in out.splitlines() if line.startswith("would discard")]
    assert sorted(words[3] for words in would) == ["port_busy01", "port_busy02", "port_down01"]
    assert out.splitlines()[-1] == (
        f"Dry run: would discard 3 letter(s) with reason or class transient, each archived first "
        f"to {archive}. Add --yes to discard them."
    )
    assert not archive.exists()
    assert visible(aws) == 7


def test_discard_archives_each_letter_whole_then_deletes_exactly_those(
    filled: dict[str, str],
    aws: Stack,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    before = received(aws)
    archive = tmp_path / "archive.jsonl"
    archive.write_text("")  # an existing archive is appended to, never truncated

    assert main(["discard", "--reason", "RATE_LIMITED", "--archive", str(archive), "--yes"]) == 0
    out = capsys.readouterr().out
    assert main(["discard", "--reason", "not_found", "--archive", str(archive), "--yes"]) == 0

    records = archived(archive)
    after = received(aws)
    gone = {
        message_id
        for message_id, message in before.items()
        if attribute_values(message).get("reason") in ("RATE_LIMITED", "NOT_FOUND")
    }
    assert len(gone) == 3
    assert set(records) == gone
    assert set(after) == set(before) - gone  # the other four are still there, untouched
    for message_id in gone:
        letter, record = before[message_id], records[message_id]
        assert record["body"] == letter["Body"]
        assert record["messageAttributes"] == letter["MessageAttributes"]
        assert record["sentTimestamp"] == letter["Attributes"]["SentTimestamp"]
        assert record["attributes"]["SentTimestamp"] == letter["Attributes"]["SentTimestamp"]
        assert record["queueUrl"] == aws.dlq.url
    assert out.splitlines()[-1] == (
        f"Discarded 2 letter(s) with reason or class RATE_LIMITED; archived to {archive}."
    )


def test_restore_puts_archived_letters_back_into_the_dlq_as_they_were(
    filled: dict[str, str],
    aws: Stack,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    archive = tmp_path / "archive.jsonl"
    before = json_rows(capsys)
    assert main(["discard", "--reason", "transient", "--archive", str(archive), "--yes"]) == 0
    assert visible(aws) == 4
    capsys.readouterr()

    assert main(["restore", str(archive)]) == 0

    assert "Restored 3 letter(s)" in capsys.readouterr().out
    after = json_rows(capsys)
    assert set(after) == set(before)
    for portfolio in ("port_busy01", "port_busy02", "port_down01"):
        was, now = before[portfolio], after[portfolio]
        assert now["messageId"] != was["messageId"]  # a new message
        unchanged = ("body", "reason", "class", "httpStatus", "detail", "source", "retryAt")
        assert {k: now[k] for k in unchanged} == {k: was[k] for k in unchanged}
    assert main(["restore", str(tmp_path / "missing.jsonl")]) == 1
    assert "archive" in capsys.readouterr().err


def test_a_restored_letter_older_than_the_guards_memory_is_named_at_once(
    filled: dict[str, str],
    aws: Stack,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Redrive warns about letters older than the guard's memory by their age; a restored letter
    # is a new message, so the restore says it while the first send is still known.
    archive = tmp_path / "archive.jsonl"
    assert main(["discard", "--reason", "transient", "--archive", str(archive), "--yes"]) == 0
    long_ago = int((time.time() - 18 * 86400) * 1000)  # the guard: 19 days less 4 of retention
    records = [json.loads(line) for line in archive.read_text().splitlines()]
    archive.write_text(
        "".join(json.dumps({**r, "sentTimestamp": str(long_ago)}) + "\n" for r in records)
    )
    capsys.readouterr()

    assert main(["restore", str(archive)]) == 0

    err = capsys.readouterr().err
    for record in records:
        assert f"{record['messageId']} was first sent 18d ago, beyond the guard's memory" in err


def test_discard_by_message_id_and_by_age(
    filled: dict[str, str],
    aws: Stack,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    before = received(aws)
    chosen = sorted(before)[:2]
    archive = tmp_path / "by-id.jsonl"
    by_id = [arg for message_id in chosen for arg in ("--message-id", message_id)]

    assert main(["discard", *by_id, "--archive", str(archive), "--yes"]) == 0

    assert set(archived(archive)) == set(chosen)
    assert set(received(aws)) == set(before) - set(chosen)
    # The five left are more than 2 s old by then; a letter sent now is younger.
    time.sleep(2.5)
    aws.sqs.send_message(QueueUrl=aws.dlq.url, MessageBody=json.dumps({"portfolioId": "p_new"}))
    old = tmp_path / "old.jsonl"
    assert main(["discard", "--older-than", "2s", "--archive", str(old), "--yes"]) == 0
    assert len(archived(old)) == 5
    [left] = received(aws).values()
    assert left["Body"] == json.dumps({"portfolioId": "p_new"})
    assert "older than 2s" in capsys.readouterr().out


def test_discard_names_a_dated_archive_in_the_current_directory(
    filled: dict[str, str],
    aws: Stack,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)

    assert main(["discard", "--reason", "MALFORMED_INPUT", "--yes"]) == 0

    [archive] = tmp_path.iterdir()
    queue_name = aws.dlq.url.rsplit("/", 1)[-1]
    assert re.fullmatch(rf"dlq-archive-{queue_name}-\d{{8}}T\d{{6}}\.jsonl", archive.name)
    [record] = archived(archive).values()
    assert record["body"] == "not json at all"
    assert f"archived to {archive.name}" in capsys.readouterr().out


def test_discard_deletes_nothing_it_could_not_archive(
    filled: dict[str, str], aws: Stack, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    archive = tmp_path / "no-such-directory" / "archive.jsonl"

    assert main(["discard", "--reason", "transient", "--archive", str(archive), "--yes"]) == 1

    err = capsys.readouterr().err
    assert err.startswith(f"glider-trigger dlq: error: archive {archive}: ")
    assert visible(aws) == 7


@pytest.mark.parametrize(
    ("argv", "said"),
    [
        (["discard", "--yes"], "say what to discard: --reason CODE, --message-id ID"),
        (["discard", "--older-than", "soon"], "not an age like 30m, 2h or 3d"),
        (["discard", "--older-than", "0d"], "not an age like 30m, 2h or 3d"),
    ],
)
def test_discard_needs_a_selection(
    filled: dict[str, str],
    aws: Stack,
    argv: list[str],
    said: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(argv) == 2
    assert said in capsys.readouterr().err
    assert visible(aws) == 7


# --- redrive (message move task) and status --------------------------------------------------


def test_redrive_without_reason_starts_a_message_move_task(
    filled: dict[str, str],
    aws: Stack,
    moto_server: MotoServer,
    capsys: pytest.CaptureFixture[str],
) -> None:
    stubs = OneCallStubs(moto_server)
    stubs.answer("StartMessageMoveTask", {"TaskHandle": "eyJ0YXNrSWQiOiIxIn0="})
    client, calls = stubs.client, stubs.calls

    assert main(["redrive", "--rate", "5", "--yes"], sqs=client) == 0

    assert calls == [
        (
            "StartMessageMoveTask",
            {
                "SourceArn": aws.dlq.arn,
                "DestinationArn": aws.work_queue.arn,
                "MaxNumberOfMessagesPerSecond": 5,
            },
        )
    ]
    assert "Started message move task eyJ0YXNrSWQiOiIxIn0=" in capsys.readouterr().out
    # Without --rate, SQS's own pace; a dry run starts nothing.
    assert main(["redrive", "--yes"], sqs=client) == 0
    assert "MaxNumberOfMessagesPerSecond" not in calls[1][1]
    assert main(["redrive", "--dry-run"], sqs=client) == 0
    assert len(calls) == 2
    assert "would start a message move task moving all ~7" in capsys.readouterr().out


def test_status_lists_the_move_tasks_of_the_dlq(
    filled: dict[str, str],
    aws: Stack,
    moto_server: MotoServer,
    capsys: pytest.CaptureFixture[str],
) -> None:
    stubs = OneCallStubs(moto_server)
    client, calls = stubs.client, stubs.calls
    started = int(datetime(2026, 11, 24, 7, 0, tzinfo=UTC).timestamp() * 1000)
    task = {
        "SourceArn": aws.dlq.arn,
        "DestinationArn": aws.work_queue.arn,
        "MaxNumberOfMessagesPerSecond": 5,
        "StartedTimestamp": started,
    }
    stubs.answer(
        "ListMessageMoveTasks",
        {
            "Results": [
                {
                    **task,
                    "TaskHandle": "h-1",
                    "Status": "RUNNING",
                    "ApproximateNumberOfMessagesMoved": 3,
                    "ApproximateNumberOfMessagesToMove": 7,
                },
                {
                    **task,
                    "Status": "FAILED",
                    "FailureReason": "AccessDenied",
                    "ApproximateNumberOfMessagesMoved": 0,
                },
            ]
        },
    )

    assert main(["status"], sqs=client) == 0

    assert calls == [("ListMessageMoveTasks", {"SourceArn": aws.dlq.arn, "MaxResults": 10})]
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == [
        "STATUS",
        "MOVED",
        "TO",
        "MOVE",
        "RATE",
        "STARTED",
        "DESTINATION",
        "FAILURE",
    ]
    work_queue_name = aws.work_queue.arn.rsplit(":", 1)[-1]
    assert lines[1].split() == [
        "RUNNING",
        "3",
        "7",
        "5",
        "2026-11-24",
        "07:00:00Z",
        work_queue_name,
        "-",
    ]
    assert lines[2].split()[:3] == ["FAILED", "0", "-"]
    assert lines[2].split()[-1] == "AccessDenied"
    assert "~7 message(s) in the DLQ" in lines[4]
    assert lines[5].startswith("Running: h-1 (cancel: aws sqs cancel-message-move-task")


def test_moto_without_move_tasks_gives_one_line_that_says_what_to_use(
    filled: dict[str, str],
    aws: Stack,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")  # moto's HTTP 500 is otherwise retried 4 times

    assert main(["status"]) == 1

    errors = [line for line in capsys.readouterr().err.splitlines() if "glider-trigger dlq" in line]
    assert len(errors) == 1
    assert errors[0].startswith("glider-trigger dlq: error: ListMessageMoveTasks: 500: HTTP 500")
    assert "use `redrive --reason CODE`" in errors[0]
    assert visible(aws) == 7


# --- queue selection and errors --------------------------------------------------------------


def test_stack_outputs_select_the_queues(
    aws: Stack, moto_server: MotoServer, capsys: pytest.CaptureFixture[str]
) -> None:
    name = f"glider-dlq-tool-{uuid.uuid4().hex[:8]}"
    queue = {"Type": "AWS::SQS::Queue"}
    template = {
        "Resources": {"WorkQueue": queue, "DeadLetterQueue": queue, "FollowUpQueue": queue},
        "Outputs": {
            "FollowUpQueueUrl": {"Value": {"Ref": "FollowUpQueue"}},
            "WorkQueueUrl": {"Value": {"Ref": "WorkQueue"}},
            "WorkQueueArn": {"Value": {"Fn::GetAtt": ["WorkQueue", "Arn"]}},
            "DeadLetterQueueUrl": {"Value": {"Ref": "DeadLetterQueue"}},
            "DeadLetterQueueArn": {"Value": {"Fn::GetAtt": ["DeadLetterQueue", "Arn"]}},
        },
    }
    cloudformation = moto_server.client("cloudformation")
    cloudformation.create_stack(StackName=name, TemplateBody=json.dumps(template))
    outputs = {
        o["OutputKey"]: o["OutputValue"]
        for o in cloudformation.describe_stacks(StackName=name)["Stacks"][0]["Outputs"]
    }
    letter = for_failure(failed("port_stack01", rate_limited(), 2, sqs_source()))
    dlq = outputs["DeadLetterQueueUrl"]
    QueueWriter(dlq, client=lambda: aws.sqs, error_type=DeadLetterWriteError).send([letter])

    # The stack wins over $DLQ_URL (the fixture's DLQ, empty here), before or after the command.
    assert list(json_rows(capsys, "--stack", name)) == ["port_stack01"]
    assert main(["--stack", name, "redrive", "--reason", "RATE_LIMITED", "--yes"]) == 0

    assert [m["Body"] for m in drain(aws.sqs, outputs["WorkQueueUrl"])] == [letter.body]
    # A follow-up goes back to the stack's follow-up queue (not $FOLLOW_UP_QUEUE_URL's).
    follow_up = follow_up_body("port_stack02", "rebal_st2")
    aws.sqs.send_message(QueueUrl=dlq, MessageBody=follow_up)
    assert main(["redrive", "--reason", "FOLLOW_UP_NOT_FINISHED", "--yes", "--stack", name]) == 0
    assert [m["Body"] for m in drain(aws.sqs, outputs["FollowUpQueueUrl"])] == [follow_up]
    assert visible(aws, aws.follow_up_queue.url) == 0
    assert main(["list", "--stack", "no-such-stack"]) == 1
    assert "error: stack no-such-stack: DescribeStacks: ValidationError" in capsys.readouterr().err


def test_a_missing_queue_is_one_line_and_exit_1(
    aws: Stack, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = aws.dlq.url.rsplit("/", 1)[0] + "/no-such-queue"
    for argv in (
        ["list", "--dlq-url", missing],
        ["redrive", "--reason", "RATE_LIMITED", "--yes", "--work-queue-url", missing],
        ["status", "--dlq-url", missing],
    ):
        assert main(argv) == 1
        err = capsys.readouterr().err
        assert err.count("\n") == 1
        assert err.startswith(f"glider-trigger dlq: error: queue {missing}: ")
        assert "NonExistentQueue" in err


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["purge"],
        ["redrive", "--rate", "0"],
        ["redrive", "--rate", "501"],
        ["list", "--limit", "x"],
    ],
)
def test_usage_errors_exit_2(
    aws: Stack, argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 2
    assert "usage:" in capsys.readouterr().err


def test_without_any_queue_it_says_how_to_name_one(
    aws: Stack, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("DLQ_URL")
    monkeypatch.delenv("WORK_QUEUE_URL")
    assert main(["list"]) == 2
    assert "pass --dlq-url URL or --stack NAME, or set DLQ_URL" in capsys.readouterr().err
    monkeypatch.setenv("DLQ_URL", aws.dlq.url)
    assert main(["redrive", "--reason", "RATE_LIMITED", "--yes"]) == 2
    assert "no work queue" in capsys.readouterr().err


def test_runs_as_a_module() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "tools.dlq", "--help"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0
    assert "redrive --reason RATE_LIMITED --rate 5" in result.stdout


def test_a_failed_rebalances_letter_is_listed_and_replayed_like_the_others(
    aws: Stack, capsys: pytest.CaptureFixture[str]
) -> None:
    follow_up = FollowUp("port_fail01", "rebal_f1", False, "sqs:m-1", time.time() - 90)
    report = OutcomeReport(follow_up, FinalOutcome.FAILED, None, "execution reverted")
    letter = for_failed_rebalance(report)
    QueueWriter(aws.dlq.url, client=lambda: aws.sqs, error_type=DeadLetterWriteError).send([letter])

    assert main(["list"]) == 0
    listed = capsys.readouterr().out
    assert main(["redrive", "--reason", "REBALANCE_FAILED", "--yes"]) == 0

    [row] = [row for row in read_table(listed) if row["PORTFOLIO"] == "port_fail01"]
    assert row["REASON"] == "REBALANCE_FAILED"
    assert row["SOURCE"] == "follow-up:rebal_f1"
    assert row["DETAIL"] == "rebalance rebal_f1 failed: execution reverted"
    [replayed] = drain(aws.sqs, aws.work_queue.url)
    assert replayed["Body"] == letter.body  # a fresh input of the portfolio, keyed once


# --- follow-ups in the DLQ -------------------------------------------------------------------


def follow_up_body(portfolio_id: str, rebalance_id: str, *, number: int = 3) -> str:
    """A follow-up as the function writes it (its own writer)."""
    triggered = time.time() - 120
    return trigger_input.follow_up_body(
        FollowUp(portfolio_id, rebalance_id, False, "sqs:m-1", triggered, number, "v1")
    )


def test_a_follow_up_the_follow_up_queue_redrove_is_listed_replayed_there_and_followed(
    start_function: Any,
    deployment: Deployment,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    function = start_function(FOLLOW_FIRST_DELAY_SECONDS="1")
    work_queue = SqsEventSource(deployment.sqs, deployment.work_queue)
    triggered = deliver(function, work_queue, {"portfolioId": "port_abc123"}).of("port_abc123")
    assert triggered["outcome"] == "triggered"
    queue = deployment.follow_up_queue
    assert queue is not None
    assert deployment.outcome_events is not None
    follow_ups = SqsEventSource(deployment.sqs, queue)
    # Every invocation it reaches has too little time left to look at the rebalance: after
    # maxReceiveCount receives, SQS's redrive moves it to the DLQ, without any attribute.
    for _ in range(deployment.max_receive_count):
        polled = follow_ups.poll(lambda e: function.invoke(e, timeout_seconds=1), wait_seconds=5)
        assert polled is not None
        assert polled.redelivered
    assert follow_ups.poll(function.invoke, wait_seconds=2) is None
    for name, value in {
        **FAKE_AWS_CREDENTIALS,
        "AWS_DEFAULT_REGION": REGION,
        "AWS_ENDPOINT_URL": deployment.moto.endpoint_url,
        "DLQ_URL": deployment.dlq.url,
        "WORK_QUEUE_URL": deployment.work_queue.url,
        "FOLLOW_UP_QUEUE_URL": queue.url,
    }.items():
        monkeypatch.setenv(name, value)

    [row] = json_rows(capsys).values()
    assert main(["list"]) == 0
    listed = capsys.readouterr().out
    assert main(["redrive", "--reason", "follow_up_not_finished", "--yes"]) == 0
    moved = capsys.readouterr().out

    rebalance_id = triggered["rebalance_id"]
    assert (row["portfolio"], row["reason"], row["source"]) == (
        "port_abc123",
        "FOLLOW_UP_NOT_FINISHED",
        f"follow-up:{rebalance_id}",
    )
    assert row["rebalanceId"] == rebalance_id
    assert "By reason: FOLLOW_UP_NOT_FINISHED 1" in listed
    assert "(unparsable)" not in listed
    assert "follow-up queue" in moved
    assert deployment.dlq_messages() == []
    assert drain(deployment.sqs, deployment.work_queue.url) == []
    # The function takes it from its own queue and follows it to the outcome.
    assert follow_ups.poll(function.invoke, wait_seconds=3) is not None
    [outcome] = [log for log in function.logs if "rebalance_outcome" in log]
    assert (outcome["rebalance_outcome"], outcome["rebalance_id"]) == ("completed", rebalance_id)
    events = drain(deployment.sqs, deployment.outcome_events.url, wait_seconds=1)
    assert [json.loads(e["Body"])["detail"]["rebalanceId"] for e in events] == [rebalance_id]


def test_a_follow_up_goes_back_to_the_follow_up_queue_whatever_reason_selects_it(
    filled: dict[str, str], aws: Stack, capsys: pytest.CaptureFixture[str]
) -> None:
    # One SQS redrove (no attributes), one the function dead-lettered from the work queue.
    redriven = follow_up_body("port_slow01", "rebal_s1")
    misplaced = follow_up_body("port_slow02", "rebal_s2")
    aws.sqs.send_message(QueueUrl=aws.dlq.url, MessageBody=redriven)
    letter = for_unparsable_input(
        misplaced, InvalidInputError("a follow-up body on a queue other than ..."), sqs_source()
    )
    QueueWriter(aws.dlq.url, client=lambda: aws.sqs, error_type=DeadLetterWriteError).send([letter])

    rows = json_rows(capsys)
    assert main(["redrive", "--reason", "MALFORMED_INPUT", "--yes"]) == 0
    assert main(["redrive", "--reason", "FOLLOW_UP_NOT_FINISHED", "--yes"]) == 0

    assert rows["port_slow01"]["reason"] == "FOLLOW_UP_NOT_FINISHED"
    assert rows["port_slow02"]["reason"] == "MALFORMED_INPUT"
    assert rows["port_slow02"]["source"].startswith("sqs:")  # the function's own attribute
    back = sorted(m["Body"] for m in drain(aws.sqs, aws.follow_up_queue.url))
    assert back == sorted([redriven, misplaced])
    # The other malformed letter, a trigger input's, went to the work queue as before.
    assert [m["Body"] for m in drain(aws.sqs, aws.work_queue.url)] == ["not json at all"]


def test_a_move_task_replays_the_follow_ups_to_their_queue_first(
    filled: dict[str, str],
    aws: Stack,
    moto_server: MotoServer,
    capsys: pytest.CaptureFixture[str],
) -> None:
    body = follow_up_body("port_slow01", "rebal_s1")
    aws.sqs.send_message(QueueUrl=aws.dlq.url, MessageBody=body)
    stubs = OneCallStubs(moto_server)
    stubs.answer("StartMessageMoveTask", {"TaskHandle": "h-1"})

    assert main(["redrive", "--dry-run"], sqs=stubs.client) == 0
    planned = capsys.readouterr().out
    assert visible(aws, aws.follow_up_queue.url) == 0
    assert main(["redrive", "--yes"], sqs=stubs.client) == 0

    assert "1 follow-up(s) to the follow-up queue" in planned
    assert [m["Body"] for m in drain(aws.sqs, aws.follow_up_queue.url)] == [body]
    assert stubs.calls == [
        ("StartMessageMoveTask", {"SourceArn": aws.dlq.arn, "DestinationArn": aws.work_queue.arn})
    ]
    assert visible(aws) == 7  # the rest, for the move task


def test_follow_ups_with_no_follow_up_queue_to_go_to_stay_put(
    aws: Stack, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("FOLLOW_UP_QUEUE_URL")
    aws.sqs.send_message(QueueUrl=aws.dlq.url, MessageBody=json.dumps({"portfolioId": "p1"}))
    aws.sqs.send_message(QueueUrl=aws.dlq.url, MessageBody=follow_up_body("p2", "rebal_2"))

    assert main(["redrive", "--reason", "FOLLOW_UP_NOT_FINISHED", "--yes"]) == 2
    assert "no follow-up queue" in capsys.readouterr().err
    assert main(["redrive", "--yes"]) == 2

    assert "pass --follow-up-queue-url URL or --stack NAME" in capsys.readouterr().err
    assert visible(aws) == 2
    assert visible(aws, aws.work_queue.url) == 0

    flag = ["--follow-up-queue-url", aws.follow_up_queue.url]
    assert main(["redrive", "--reason", "FOLLOW_UP_NOT_FINISHED", "--yes", *flag]) == 0
    assert visible(aws, aws.follow_up_queue.url) == 1


def test_a_redriven_follow_up_names_the_queue_sqs_moved_it_from() -> None:
    # SQS stamps DeadLetterQueueSourceArn on what a redrive moved; moto 5.2.5 does not, so the
    # received message is written here as SQS returns it.
    source = "arn:aws:sqs:us-east-1:123456789012:glider-rebalance-trigger-prod-follow-up"
    message: Any = {
        "MessageId": "m-1",
        "Body": follow_up_body("port_slow01", "rebal_s1", number=4),
        "Attributes": {"SentTimestamp": "1000", "DeadLetterQueueSourceArn": source},
    }

    row = tools.dlq.to_row(message, now=61.0).as_json()

    assert (row["portfolio"], row["reason"], row["rebalanceId"], row["sourceQueue"]) == (
        "port_slow01",
        "FOLLOW_UP_NOT_FINISHED",
        "rebal_s1",
        source,
    )
    assert row["destination"] == "follow-up queue"
    assert row["age"] == "1m"
    assert row["detail"].startswith("follow-up 4 of rebalance rebal_s1 (triggered ")
    assert "follow-up queue glider-rebalance-trigger-prod-follow-up" in row["detail"]
