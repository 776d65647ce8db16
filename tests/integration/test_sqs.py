"""SQS input through a real moto queue, polled the way Lambda's event source mapping does:
partial batch responses, redelivery, the redrive policy, and replaying the DLQ."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest

from local.fixtures.delivery import Story
from local.fixtures.event_source import SqsEventSource
from local.fixtures.function import LocalFunction, json_records
from local.fixtures.glider_emulator import Fault, GliderEmulator
from local.fixtures.stack import Deployment, attribute_values

# Every input kind and failure class holds on both Glider API versions.
pytestmark = pytest.mark.both_api_versions


def send(deployment: Deployment, *bodies: str) -> list[str]:
    return [
        deployment.sqs.send_message(QueueUrl=deployment.work_queue.url, MessageBody=body)[
            "MessageId"
        ]
        for body in bodies
    ]


def work_queue_depth(deployment: Deployment) -> int:
    attributes = deployment.sqs.get_queue_attributes(
        QueueUrl=deployment.work_queue.url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return sum(int(value) for value in attributes.values())


def test_a_batch_with_every_outcome_reports_only_the_transient_failure(
    function: LocalFunction, emulator: GliderEmulator, deployment: Deployment
) -> None:
    emulator.script("port_def456", *[Fault.error(503, "API_000", "down")] * 4)
    ok, transient, permanent, malformed = send(
        deployment,
        json.dumps({"portfolioId": "port_abc123"}),
        json.dumps({"portfolioId": "port_def456"}),
        json.dumps({"portfolioId": "port_unknown"}),
        "not json at all",
    )
    source = SqsEventSource(deployment.sqs, deployment.work_queue)

    result = source.poll(function.invoke)

    assert result is not None
    assert result.response == {"batchItemFailures": [{"itemIdentifier": transient}]}
    assert sorted(result.deleted) == sorted([ok, permanent, malformed])
    assert [r.portfolio_id for r in emulator.rebalances] == ["port_abc123"]
    assert len([r for r in emulator.trigger_requests if r.portfolio_id == "port_def456"]) == 4
    letters = {m["Body"]: attribute_values(m) for m in deployment.dlq_messages()}
    # The permanent failure is dead-lettered at once (naming its delivery), the malformed body
    # verbatim; the transient one is not in the DLQ yet: SQS redelivers it.
    letter_body = json.dumps(
        {
            "portfolioId": "port_unknown",
            "skipScheduleValidation": False,
            "deliveryKey": f"sqs:{permanent}",
        }
    )
    assert set(letters) == {letter_body, "not json at all"}
    unknown = letters[letter_body]
    assert unknown["reason"] == "NOT_FOUND"
    assert unknown["httpStatus"] == "404"
    assert unknown["apiErrorCode"] == "API_200"
    assert unknown["source"] == f"sqs:{permanent}"
    assert letters["not json at all"]["source"] == f"sqs:{malformed}"


def test_a_record_the_function_cannot_letter_on_its_last_receive_is_redriven_whole(
    start_function, emulator: GliderEmulator, deployment: Deployment
) -> None:
    # The redrive is the safety net: on its last receive the function letters what is still
    # failing itself, and when that letter cannot be written (here its DLQ does not exist) it
    # keeps the record, which the queue's redrive then moves to the DLQ, body unchanged.
    unwritable = deployment.dlq.url.rsplit("/", 1)[0] + "/no-such-dlq"
    function = start_function(DLQ_URL=unwritable)
    emulator.script("port_def456", *[Fault.error(502, "API_000", "bad gateway")] * 20)
    [message_id] = send(deployment, json.dumps({"portfolioId": "port_def456"}))
    source = SqsEventSource(deployment.sqs, deployment.work_queue)

    deliveries = 0
    while (result := source.poll(function.invoke, wait_seconds=3)) is not None:
        deliveries += 1
        assert result.redelivered == [message_id]

    assert deliveries == 2  # maxReceiveCount of this deployment
    [letter] = deployment.dlq_messages()
    assert letter["MessageId"] == message_id
    assert json.loads(letter["Body"]) == {"portfolioId": "port_def456"}
    assert work_queue_depth(deployment) == 0
    errors = [log for log in function.logs if log["level"] == "ERROR"]
    assert any("no-such-dlq" in json.dumps(log) for log in errors)


def test_a_redelivered_record_succeeds_once_the_api_recovers(
    function: LocalFunction, emulator: GliderEmulator, deployment: Deployment
) -> None:
    emulator.script("port_ghi789", *[Fault.connection_reset()] * 4)
    [message_id] = send(deployment, json.dumps({"portfolioId": "port_ghi789"}))
    source = SqsEventSource(deployment.sqs, deployment.work_queue)

    first = source.poll(function.invoke)
    second = source.poll(function.invoke, wait_seconds=3)

    assert first is not None
    assert first.redelivered == [message_id]
    assert second is not None
    assert second.deleted == [message_id]
    assert [r.portfolio_id for r in emulator.rebalances] == ["port_ghi789"]
    assert deployment.dlq_messages() == []


def test_a_systemic_failure_keeps_the_record_for_retry_not_the_dlq(
    function: LocalFunction, emulator: GliderEmulator, deployment: Deployment
) -> None:
    emulator.set_api_keys(["a-key-we-do-not-have"])
    [message_id] = send(deployment, json.dumps({"portfolioId": "port_abc123"}))

    result = SqsEventSource(deployment.sqs, deployment.work_queue).poll(function.invoke)

    assert result is not None
    assert result.redelivered == [message_id]
    assert deployment.dlq_messages() == []


def test_dead_letters_replay_through_the_work_queue(
    deliver: Callable[..., Story],
    function: LocalFunction,
    emulator: GliderEmulator,
    deployment: Deployment,
) -> None:
    # A portfolio Glider does not know (yet) fails permanently ...
    assert deliver({"portfolioIds": ["port_new001"]}).of("port_new001")["reason"] == "NOT_FOUND"
    [letter] = deployment.dlq_messages()
    assert attribute_values(letter)["reason"] == "NOT_FOUND"
    # ... until it exists; then the DLQ message, moved as is, replays it.
    emulator.add_portfolio("port_new001")
    send(deployment, letter["Body"])

    result = SqsEventSource(deployment.sqs, deployment.work_queue).poll(function.invoke)

    assert result is not None
    assert result.response == {"batchItemFailures": []}
    assert [r.portfolio_id for r in emulator.rebalances] == ["port_new001"]


def test_an_unwritable_dlq_keeps_the_record_on_the_work_queue(
    start_function, emulator: GliderEmulator, deployment: Deployment
) -> None:
    missing = deployment.dlq.url.rsplit("/", 1)[0] + "/no-such-queue"
    function = start_function(DLQ_URL=missing)
    [message_id] = send(deployment, json.dumps({"portfolioId": "port_gone"}))

    result = SqsEventSource(deployment.sqs, deployment.work_queue).poll(function.invoke)

    assert result is not None
    assert result.redelivered == [message_id]


def test_a_large_input_queued_twice_triggers_each_id_once(
    function: LocalFunction, emulator: GliderEmulator, deployment: Deployment
) -> None:
    ids = [f"port_f{n:03d}" for n in range(120)]
    for portfolio_id in ids:
        emulator.add_portfolio(portfolio_id)
    event = {"id": "ev-big", "detail-type": "X", "detail": {"portfolioIds": [*ids, "../x"]}}

    response = function.invoke(event)
    again = function.invoke(event)  # EventBridge delivers the event a second time
    source = SqsEventSource(deployment.sqs, deployment.work_queue)
    results = source.drain(function.invoke, idle_seconds=3)

    assert response["queued"] == again["queued"] == 120
    assert response["deliveryKey"] == again["deliveryKey"]  # the event's id: one delivery
    assert sum(len(r.deleted) for r in results) == 240  # every message done
    assert sorted(r.portfolio_id for r in emulator.rebalances) == ids  # each exactly once
    # The invalid id, once per delivery of the input (no key to tell them apart in a body).
    letters = deployment.dlq_messages()
    assert [json.loads(m["Body"])["portfolioId"] for m in letters] == ["../x", "../x"]


def test_an_events_portfolios_are_triggered_from_the_work_queue_not_inline(
    function: LocalFunction, emulator: GliderEmulator, deployment: Deployment
) -> None:
    response = function.invoke({"portfolioIds": ["port_abc123", "port_def456"]})

    # The invocation only queued them: nothing was sent to Glider yet.
    assert response["queued"] == 2
    assert emulator.trigger_requests == []
    assert work_queue_depth(deployment) == 2
    results = SqsEventSource(deployment.sqs, deployment.work_queue).drain(
        function.invoke, idle_seconds=0
    )
    assert sorted(r.portfolio_id for r in emulator.rebalances) == ["port_abc123", "port_def456"]
    assert sum(len(r.deleted) for r in results) == 2
    assert work_queue_depth(deployment) == 0


def test_a_many_id_message_is_split_and_its_redelivery_triggers_nothing_twice(
    start_function: Callable[..., LocalFunction],
    emulator: GliderEmulator,
    deployment: Deployment,
) -> None:
    # An upstream's message naming several portfolios (and an id that cannot be one).
    function = start_function(MAX_CONCURRENCY="1")
    body = json.dumps({"portfolioIds": ["port_abc123", "port_def456", "../x"]})
    [message_id] = send(deployment, body)
    source = SqsEventSource(deployment.sqs, deployment.work_queue)

    split = source.poll(function.invoke)

    # Split, not triggered: one message per valid portfolio, the rejected id dead-lettered.
    assert split is not None
    assert split.deleted == [message_id]
    assert emulator.trigger_requests == []
    [rejected] = deployment.dlq_messages()
    assert attribute_values(rejected)["reason"] == "INVALID_PORTFOLIO_ID"
    triggered = source.drain(function.invoke, idle_seconds=0)
    bodies = [json.loads(r["body"]) for batch in triggered for r in batch.event["Records"]]
    assert sorted(b["portfolioId"] for b in bodies) == ["port_abc123", "port_def456"]
    assert {b["deliveryKey"] for b in bodies} == {f"sqs:{message_id}"}
    assert sorted(r.portfolio_id for r in emulator.rebalances) == ["port_abc123", "port_def456"]

    # SQS delivers the very message again (at-least-once): split again under the same key,
    # and each portfolio is found done.
    function.new_lines()
    replayed = {
        "Records": [{**split.event["Records"][0], "attributes": {"ApproximateReceiveCount": "2"}}]
    }
    assert function.invoke(replayed) == {"batchItemFailures": []}
    source.drain(function.invoke, idle_seconds=0)
    outcomes = [
        (r["portfolio_id"], r["outcome"])
        for r in json_records(function.new_lines())
        if "outcome" in r and "portfolio_id" in r
    ]
    assert sorted(outcomes) == [
        ("../x", "failed"),
        ("port_abc123", "already-triggered"),
        ("port_def456", "already-triggered"),
    ]
    # The rejected id once per receive, as for any input (no key to tell its letters apart).
    [again] = deployment.dlq_messages()
    assert json.loads(again["Body"])["portfolioId"] == "../x"
    assert sorted(r.portfolio_id for r in emulator.rebalances) == ["port_abc123", "port_def456"]
