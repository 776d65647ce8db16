"""Notices on the deployed stack (NotifyEachFailure, on by default): a rebalance Glider reports
failed, and a trigger the function dead-letters, each reach the alarm topic as one line naming
its portfolio, Glider's error and the command to see more. A queue of the test's own is
subscribed to the topic (MiniStack's SNS delivers to SQS), so what is checked is what a
subscriber of the topic receives, as MiniStack's EventBridge applies the rule's input
transformer."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.deployed.conftest import Deployed, wait_for
from tools.dlq import main as dlq

PORTFOLIO = "port_notice01"
UNKNOWN = "port_notice404"  # never added to the emulator: Glider answers 404
GLIDER_ERROR = "execution reverted: slippage too high"
# A triggered rebalance is followed 30 s later, then 60 s: its outcome within two follow-ups.
NOTICE_SECONDS = 150


@pytest.fixture
def subscriber(deployed: Deployed) -> Iterator[str]:
    """A queue of the test's own, subscribed to the alarm topic (raw: the notice as published)."""
    sqs, sns = deployed.client("sqs"), deployed.client("sns")
    url: str = sqs.create_queue(QueueName="notices-seen-by-the-test")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    topic = deployed.parameters["AlarmTopicArn"]
    subscription = sns.subscribe(
        TopicArn=topic,
        Protocol="sqs",
        Endpoint=arn,
        Attributes={"RawMessageDelivery": "true"},
        ReturnSubscriptionArn=True,
    )["SubscriptionArn"]
    try:
        yield url
    finally:
        sns.unsubscribe(SubscriptionArn=subscription)
        sqs.delete_queue(QueueUrl=url)


def notices(deployed: Deployed, url: str, seen: list[str], portfolio: str = PORTFOLIO) -> list[str]:
    for message in (
        deployed.client("sqs")
        .receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1)
        .get("Messages", [])
    ):
        seen.append(message["Body"])
    return [text for text in seen if portfolio in text]


def discard_letter(
    stack: str, portfolio: str, reason: str, archive: Path, out: Callable[[], str]
) -> None:
    """Put the DLQ back as it was: the portfolio's one letter, discarded (archived first)."""
    assert dlq(["list", "--json", "--stack", stack]) == 0
    letters = [json.loads(line) for line in out().splitlines()]
    [letter] = [row for row in letters if row["portfolio"] == portfolio]
    assert letter["reason"] == reason
    argv = ["discard", "--message-id", letter["messageId"], "--yes", "--archive", str(archive)]
    assert dlq([*argv, "--stack", stack]) == 0
    assert [json.loads(line)["messageId"] for line in archive.read_text().splitlines()] == [
        letter["messageId"]
    ]


def test_a_failed_rebalance_reaches_the_alarm_topic_naming_its_portfolio_and_the_command(
    deployed: Deployed,
    subscriber: str,
    local_stack_file: None,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    deployed.emulator.add_portfolio(PORTFOLIO)
    deployed.emulator.fail_next_rebalance(PORTFOLIO, GLIDER_ERROR)
    deployed.client("sqs").send_message(
        QueueUrl=deployed.outputs["WorkQueueUrl"],
        MessageBody=json.dumps({"portfolioId": PORTFOLIO}),
    )
    seen: list[str] = []

    [notice] = wait_for(
        lambda: notices(deployed, subscriber, seen),
        seconds=NOTICE_SECONDS,
        what=f"a notice of {PORTFOLIO}'s failed rebalance on the alarm topic",
    )

    [rebalance] = deployed.emulator.rebalances_for(PORTFOLIO)
    stack = deployed.stack
    assert notice.startswith(f"Rebalance of {PORTFOLIO} failed: {GLIDER_ERROR} (")
    assert f"rebalance {rebalance.rebalance_id}," in notice
    assert f"by stack {stack}." in notice
    assert f"See: glider-trigger history --stack {stack} --portfolio {PORTFOLIO};" in notice
    # Its own letter only: a redrive by reason alone would replay every portfolio's.
    redrive = f"glider-trigger dlq redrive --reason REBALANCE_FAILED --portfolio {PORTFOLIO}"
    assert f"{redrive} --stack {stack}." in notice
    assert "<" not in notice  # every placeholder filled
    capsys.readouterr()
    discard_letter(
        stack, PORTFOLIO, "REBALANCE_FAILED", tmp_path / "notice.jsonl",
        lambda: capsys.readouterr().out,
    )  # fmt: skip


def test_a_trigger_the_function_dead_letters_reaches_the_alarm_topic_naming_its_portfolio(
    deployed: Deployed,
    subscriber: str,
    local_stack_file: None,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    deployed.client("sqs").send_message(
        QueueUrl=deployed.outputs["WorkQueueUrl"],
        MessageBody=json.dumps({"portfolioId": UNKNOWN}),
    )
    seen: list[str] = []

    [notice] = wait_for(
        lambda: notices(deployed, subscriber, seen, UNKNOWN),
        seconds=60,
        what=f"a notice of {UNKNOWN}'s failed trigger on the alarm topic",
    )

    stack = deployed.stack
    assert notice.startswith(f"Trigger of {UNKNOWN} failed: NOT_FOUND (HTTP 404"), notice
    assert f"dead-lettered by stack {stack}." in notice
    assert f"See: glider-trigger history --stack {stack} --portfolio {UNKNOWN};" in notice
    assert f"glider-trigger dlq list --stack {stack} (reason NOT_FOUND)." in notice
    assert "<" not in notice  # every placeholder filled
    capsys.readouterr()
    discard_letter(
        stack, UNKNOWN, "NOT_FOUND", tmp_path / "notice.jsonl", lambda: capsys.readouterr().out
    )
