"""Every supported input kind through the real handler, a moto server and the Glider emulator."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from local.fixtures.delivery import Story
from local.fixtures.function import LocalFunction
from local.fixtures.glider_emulator import GliderEmulator
from local.fixtures.lambda_context import LocalLambdaContext
from local.fixtures.stack import Deployment, attribute_values

# Every input kind and failure class holds on both Glider API versions.
pytestmark = pytest.mark.both_api_versions

EVENTS = Path(__file__).resolve().parents[2] / "events"


def trigger_bodies(emulator: GliderEmulator, portfolio_id: str) -> list[dict[str, object]]:
    return [json.loads(r.body) for r in emulator.trigger_requests if r.portfolio_id == portfolio_id]


def skip_ignored_lines(function: LocalFunction) -> list[dict[str, object]]:
    return [log for log in function.logs if log.get("option") == "skipScheduleValidation"]


def test_schedule_input_triggers_with_the_contract_request(
    deliver: Callable[..., Story], emulator: GliderEmulator, api_version: str
) -> None:
    event = json.loads((EVENTS / "schedule-single.json").read_text())

    story = deliver(event)

    assert (story.answer["source"], story.answer["queued"]) == ("schedule", 1)
    assert story.triggered == 1
    [request] = emulator.trigger_requests
    assert request.method == "POST"
    assert request.headers["x-api-key"] == "test-canary-key-7Hq2ZpXv9L"
    if api_version == "v1":
        assert request.path == "/v1/portfolio/port_abc123/rebalance/schedule/trigger"
        assert request.headers["content-type"] == "application/json"
        assert json.loads(request.body) == {"skipScheduleValidation": False}
    else:  # v2: no body is documented, none is sent
        assert request.path == "/v2/portfolios/port_abc123/rebalance"
        assert "content-type" not in request.headers
        assert request.body == b""
    [rebalance] = emulator.rebalances
    rebalance_id = rebalance.rebalance_id if api_version == "v1" else rebalance.operation_id
    line = story.of("port_abc123")
    assert (line["outcome"], line["rebalance_id"], line["attempts"]) == (
        "triggered",
        rebalance_id,
        1,
    )
    # The queued portfolio's line still names the schedule run it began with.
    assert line["source_metadata"]["scheduleArn"] == event["scheduleArn"]
    assert line["source_metadata"]["scheduledTime"] == event["scheduledTime"]


def test_duplicate_ids_in_one_input_are_triggered_once(
    deliver: Callable[..., Story], emulator: GliderEmulator
) -> None:
    story = deliver(
        {
            "portfolioIds": ["port_abc123", "port_def456", "port_abc123"],
            "portfolioId": "port_def456",
        }
    )

    assert story.answer["queued"] == 2
    assert story.triggered == 2
    assert sorted(r.portfolio_id for r in emulator.rebalances) == ["port_abc123", "port_def456"]


def test_eventbridge_envelope_uses_its_detail(
    deliver: Callable[..., Story],
    function: LocalFunction,
    emulator: GliderEmulator,
    api_version: str,
) -> None:
    event = json.loads((EVENTS / "eventbridge-rule.json").read_text())
    event["detail"] = {"portfolioIds": ["port_ghi789"], "skipScheduleValidation": True}

    story = deliver(event)

    assert story.answer["source"] == "eventbridge"
    assert story.answer["deliveryId"] == event["id"]
    assert story.answer["queued"] == 1
    assert story.of("port_ghi789")["outcome"] == "triggered"
    if api_version == "v1":
        assert trigger_bodies(emulator, "port_ghi789") == [{"skipScheduleValidation": True}]
    else:  # v2 has no such option: said in the log, never a failure
        assert [r.body for r in emulator.trigger_requests] == [b""]
        assert len(skip_ignored_lines(function)) == 1


def test_skip_schedule_validation_defaults_from_the_environment(
    start_function: Callable[..., LocalFunction],
    deliver: Callable[..., Story],
    emulator: GliderEmulator,
    api_version: str,
) -> None:
    emulator.add_portfolio("port_nosched", has_schedule=False)
    function = start_function(DEFAULT_SKIP_SCHEDULE_VALIDATION="true")

    story = deliver({"portfolioIds": ["port_nosched", "port_abc123"]}, function=function)

    assert story.triggered == 2
    story = deliver(
        {"portfolioId": "port_nosched", "skipScheduleValidation": False}, function=function
    )
    if api_version == "v1":
        assert trigger_bodies(emulator, "port_nosched")[0] == {"skipScheduleValidation": True}
        # An explicit false still wins over the default (carried in the queued message).
        assert trigger_bodies(emulator, "port_nosched")[1] == {"skipScheduleValidation": False}
        assert story.of("port_nosched")["reason"] == "BAD_REQUEST"
    else:
        # v2 triggers outside the schedule either way; the flag is said once per environment.
        assert story.of("port_nosched")["outcome"] == "triggered"
        assert len(skip_ignored_lines(function)) == 1


@pytest.mark.parametrize(
    "bad_id", ["../x", "a/b", "a?b=1", "a#b", "a b", "a\nb", "%2e%2e", "", "x" * 129, 42, None]
)
def test_an_id_that_could_bend_the_path_never_reaches_the_api(
    deliver: Callable[..., Story],
    emulator: GliderEmulator,
    deployment: Deployment,
    bad_id: object,
) -> None:
    story = deliver({"portfolioIds": [bad_id, "port_abc123"]})

    assert [r.portfolio_id for r in emulator.trigger_requests] == ["port_abc123"]
    assert (story.answer["queued"], story.answer["deadLettered"]) == (1, 1)
    assert story.triggered == 1
    [letter] = deployment.dlq_messages()
    assert json.loads(letter["Body"])["portfolioId"] == bad_id
    attributes = attribute_values(letter)
    assert attributes["reason"] == "INVALID_PORTFOLIO_ID"
    assert attributes["failureClass"] == "permanent"


def test_input_of_unknown_shape_is_dead_lettered_verbatim_without_raising(
    function: LocalFunction, emulator: GliderEmulator, deployment: Deployment
) -> None:
    event = json.loads((EVENTS / "direct-unknown-shape.json").read_text())

    response = function.invoke(event)

    assert response["deadLettered"] == 1
    assert response["results"][0]["reason"] == "MALFORMED_INPUT"
    assert emulator.trigger_requests == []
    [letter] = deployment.dlq_messages()
    assert json.loads(letter["Body"]) == event
    assert attribute_values(letter)["reason"] == "MALFORMED_INPUT"


@pytest.mark.parametrize(
    "detail",
    [{"portfolioIds": "not-a-list"}, {"portfolio": "port_abc123"}, "port_abc123", None],
    ids=["ids-not-a-list", "no-ids", "detail-a-string", "detail-null"],
)
def test_a_malformed_eventbridge_event_is_dead_lettered_under_its_event_id_not_as_direct(
    function: LocalFunction, deployment: Deployment, detail: object
) -> None:
    event = json.loads((EVENTS / "eventbridge-rule.json").read_text())
    event["detail"] = detail

    response = function.invoke(event)

    assert (response["source"], response["deliveryId"]) == ("eventbridge", event["id"])
    assert response["results"][0]["reason"] == "MALFORMED_INPUT"
    [letter] = deployment.dlq_messages()
    assert json.loads(letter["Body"]) == event  # verbatim, replayable once mended
    assert attribute_values(letter)["source"] == f"eventbridge:{event['id']}"
    [rejected] = [log for log in function.logs if log.get("message") == "Input rejected"]
    assert rejected["delivery_id"] == event["id"]
    assert rejected["source_metadata"]["eventSource"] == event["source"]


@pytest.mark.parametrize("event", [[], "port_abc123", {"portfolioIds": []}, {"portfolioIds": "x"}])
def test_inputs_without_ids_are_classified_not_crashes(
    function: LocalFunction, deployment: Deployment, event: object
) -> None:
    response = function.invoke(event)

    assert response["results"][0]["reason"] == "MALFORMED_INPUT"
    [letter] = deployment.dlq_messages()
    assert json.loads(letter["Body"]) == event


def test_an_on_failure_destination_record_replays_its_payload(
    deliver: Callable[..., Story], emulator: GliderEmulator
) -> None:
    record = {
        "version": "1.0",
        "timestamp": "2026-11-24T06:00:05.000Z",
        "requestContext": {
            "requestId": "c4a1c4b6-0000-4000-8000-000000000000",
            "functionArn": "arn:aws:lambda:us-east-1:123456789012:function:trigger:$LATEST",
            "condition": "RetriesExhausted",
            "approximateInvokeCount": 3,
        },
        "requestPayload": {"portfolioIds": ["port_def456"], "scheduleArn": "arn:x"},
        "responseContext": {"statusCode": 200, "functionError": "Unhandled"},
    }

    story = deliver(record)

    assert story.answer["source"] == "lambda-destination"
    assert story.of("port_def456")["outcome"] == "triggered"
    assert [r.portfolio_id for r in emulator.rebalances] == ["port_def456"]


def test_an_on_failure_record_finds_done_what_the_failed_invocation_triggered(
    deliver: Callable[..., Story],
    emulator: GliderEmulator,
    lambda_context: Callable[..., LocalLambdaContext],
) -> None:
    """Its invocation's portfolios were queued and triggered before it failed (Lambda then
    kept the event): the record, replayed, is the same delivery and triggers nothing again."""
    payload = {"portfolioIds": ["port_def456", "port_ghi789"]}
    context = lambda_context()
    first = deliver(payload, context=context)
    record = {
        "version": "1.0",
        "requestContext": {
            "requestId": context.aws_request_id,
            "condition": "RetriesExhausted",
            "approximateInvokeCount": 3,
        },
        "requestPayload": payload,
        "responseContext": {"statusCode": 200, "functionError": "Unhandled"},
    }

    replay = deliver(record)

    assert first.triggered == 2
    assert replay.answer["deliveryKey"] == first.answer["deliveryKey"]
    assert replay.answer["queued"] == 2
    assert [replay.of(p)["outcome"] for p in payload["portfolioIds"]] == ["already-triggered"] * 2
    assert sorted(r.portfolio_id for r in emulator.rebalances) == ["port_def456", "port_ghi789"]


def test_every_sample_event_runs_without_raising(
    deliver: Callable[..., Story], emulator: GliderEmulator
) -> None:
    emulator.add_portfolio("port_nosched", has_schedule=False)
    for path in sorted(EVENTS.glob("*.json")):
        story = deliver(json.loads(path.read_text()))
        assert isinstance(story.answer, dict), path.name
        assert all(batch.error is None for batch in story.batches), path.name
