"""The API key: read from Secrets Manager (moto over HTTP), cached, rotation-safe, never leaked;
and configuration that fails fast with the variable's name."""

from __future__ import annotations

import json
import time
from collections.abc import Callable

import pytest

from glider_trigger.domain.errors import ConfigurationError
from local.fixtures.delivery import Story
from local.fixtures.function import LocalFunction
from local.fixtures.glider_emulator import Fault, GliderEmulator
from local.fixtures.stack import Deployment, attribute_values
from tests.conftest import API_KEY

# Every receive of the work queue its last: a failure kept for redelivery (transient,
# systemic) is dead-lettered at once, so that its letter can be read within the test.
LAST_RECEIVE = {"MAX_RECEIVE_COUNT": "1"}


def sent_keys(emulator: GliderEmulator) -> list[str]:
    return [r.headers.get("x-api-key", "") for r in emulator.trigger_requests]


def answers(story: Story) -> str:
    """What the delivery's invocations returned (or raised), as text."""
    returned = [(batch.response, repr(batch.error)) for batch in story.batches]
    return json.dumps([story.answer, *returned], default=str)


def test_the_key_is_cached_across_warm_invocations(
    deliver: Callable[..., Story], emulator: GliderEmulator, deployment: Deployment
) -> None:
    deliver({"portfolioId": "port_abc123"})
    # Rotated in Secrets Manager, but both keys still valid at Glider (a rotation window):
    deployment.put_api_key("second-key")
    emulator.set_api_keys([API_KEY, "second-key"])

    deliver({"portfolioId": "port_def456"})

    assert sent_keys(emulator) == [API_KEY, API_KEY]  # served from the cache, not re-read


def test_the_cache_expires_after_secret_cache_seconds(
    start_function: Callable[..., LocalFunction],
    deliver: Callable[..., Story],
    emulator: GliderEmulator,
    deployment: Deployment,
) -> None:
    function = start_function(SECRET_CACHE_SECONDS="0")
    deliver({"portfolioId": "port_abc123"}, function=function)
    deployment.put_api_key("second-key")
    emulator.set_api_keys([API_KEY, "second-key"])

    deliver({"portfolioId": "port_def456"}, function=function)

    assert sent_keys(emulator) == [API_KEY, "second-key"]


def test_a_plain_string_secret_is_the_key(
    deliver: Callable[..., Story],
    function: LocalFunction,
    emulator: GliderEmulator,
    deployment: Deployment,
) -> None:
    deployment.put_api_key("  plain-string-key \n")
    emulator.set_api_keys(["plain-string-key"])
    fresh = LocalFunction(function.env)

    assert deliver({"portfolioId": "port_abc123"}, function=fresh).triggered == 1
    assert sent_keys(emulator) == ["plain-string-key"]


@pytest.mark.parametrize(
    ("secret", "detail"),
    [
        (json.dumps({"key": "zzz-canary-value"}), 'without a non-empty "apiKey" field'),
        ('{"apiKey": "zzz-canary-value"', "does not parse"),
        (json.dumps({"apiKey": "zzz canary value"}), "characters an HTTP header cannot carry"),
    ],
)
def test_an_unusable_secret_is_systemic_and_never_echoed(
    deliver: Callable[..., Story],
    function: LocalFunction,
    emulator: GliderEmulator,
    deployment: Deployment,
    secret: str,
    detail: str,
) -> None:
    deployment.put_api_key(secret)
    fresh = LocalFunction({**function.env, **LAST_RECEIVE})

    story = deliver({"portfolioId": "port_abc123"}, function=fresh)

    result = story.of("port_abc123")
    assert result["failure_class"] == "systemic"
    assert result["reason"] == "SECRET_UNAVAILABLE"
    assert detail in result["detail"]
    assert emulator.trigger_requests == []
    letters = deployment.dlq_messages()
    assert [attribute_values(letter)["reason"] for letter in letters] == ["SECRET_UNAVAILABLE"]
    everything = answers(story) + "\n".join(fresh.output.lines) + json.dumps(letters)
    assert "canary" not in everything


def test_a_missing_secret_names_the_secret_and_the_cause(
    start_function: Callable[..., LocalFunction],
    deliver: Callable[..., Story],
    emulator: GliderEmulator,
    deployment: Deployment,
) -> None:
    function = start_function(GLIDER_API_KEY_SECRET_ID="glider/does-not-exist", **LAST_RECEIVE)

    result = deliver({"portfolioId": "port_abc123"}, function=function).of("port_abc123")

    assert result["failure_class"] == "systemic"
    assert "glider/does-not-exist" in result["detail"]
    assert "ResourceNotFoundException" in result["detail"]
    assert emulator.trigger_requests == []
    [letter] = deployment.dlq_messages()
    assert attribute_values(letter)["reason"] == "SECRET_UNAVAILABLE"


def test_the_key_never_appears_in_logs_metrics_responses_or_the_dlq(
    start_function: Callable[..., LocalFunction],
    deliver: Callable[..., Story],
    emulator: GliderEmulator,
    deployment: Deployment,
) -> None:
    function = start_function(POWERTOOLS_LOG_LEVEL="DEBUG", GLIDER_MAX_ATTEMPTS="2", **LAST_RECEIVE)
    emulator.add_portfolio("port_nosched", has_schedule=False)
    emulator.script("port_abc123", Fault.error(503, "API_000", "down"), Fault.slow(1.5))
    emulator.script("port_def456", Fault.malformed(status=200, body=b"<html>"))
    emulator.script("port_ghi789", Fault.connection_reset(), Fault.rate_limited(retry_after=60))
    stories = [
        deliver(
            {"portfolioIds": ["port_abc123", "port_def456", "port_ghi789", "port_nosched", "x/y"]},
            function=function,
        ),
        deliver({"unknown": "shape"}, function=function),
    ]
    emulator.set_api_keys(["some-other-key"])  # 401, refetch, 401 again: systemic
    stories.append(deliver({"portfolioId": "port_abc123"}, function=function))

    output = "\n".join(function.output.lines)
    assert "Rebalance trigger failed" in output  # the failure paths were really logged
    assert API_KEY not in output
    assert API_KEY not in "".join(answers(story) for story in stories)
    letters = deployment.dlq_messages()
    assert len(letters) >= 5
    assert API_KEY not in json.dumps(letters)


@pytest.mark.both_api_versions
def test_a_key_glider_quotes_back_stays_out_of_logs_letters_and_answers(
    start_function: Callable[..., LocalFunction],
    deliver: Callable[..., Story],
    emulator: GliderEmulator,
    deployment: Deployment,
    api_version: str,
) -> None:
    # One worker: the id after the systemic failure is not attempted, and its letter quotes
    # the cause's message ("not attempted after a systemic failure: FORBIDDEN: ...").
    function = start_function(POWERTOOLS_LOG_LEVEL="DEBUG", MAX_CONCURRENCY="1", **LAST_RECEIVE)
    emulator.script("port_def456", Fault.quoting_key(400, "API_002", "Invalid request for key"))
    emulator.script("port_abc123", Fault.quoting_key(403, "API_104"))
    # An SQS record on its last receive: an answer lost, the lookup for its rebalance (a 500
    # quoting the key), then a key refused twice (refetched once between), quoting it each time.
    emulator.script_status("port_ghi789", Fault.quoting_key(500, "API_000", "Upstream down, key"))
    emulator.script(
        "port_ghi789",
        Fault.lost_response(),
        *[Fault.quoting_key(401, "API_102", "Invalid API key")] * 2,
    )
    record = {
        "messageId": "m-quoted",
        "receiptHandle": "h",
        "body": '{"portfolioId": "port_ghi789"}',
        "attributes": {
            "ApproximateReceiveCount": str(deployment.max_receive_count),
            "ApproximateFirstReceiveTimestamp": str(int(time.time() * 1000) - 60_000),
        },
        "eventSource": "aws:sqs",
        "eventSourceARN": deployment.work_queue.arn,
    }

    responses = [
        answers(deliver({"portfolioId": "port_def456"}, function=function)),
        answers(deliver({"portfolioIds": ["port_abc123", "port_ghi789"]}, function=function)),
        json.dumps(function.invoke({"Records": [record]})),
    ]

    answered = [r.status for r in emulator.requests]
    # None: the lost answer.
    assert sorted(status for status in answered if status not in (200, None)) == [
        400,
        401,
        401,
        403,
        500,
    ]
    letters = deployment.dlq_messages()
    reasons = sorted(attribute_values(letter)["reason"] for letter in letters)
    assert reasons == ["BAD_REQUEST", "FORBIDDEN", "FORBIDDEN", "UNAUTHORIZED"]
    output = "\n".join(function.output.lines)
    assert "Rebalance trigger failed" in output
    assert "Could not read the portfolio's recent rebalances" in output
    everything = "\n".join([*responses, output, json.dumps(letters)])
    assert API_KEY not in everything
    # What Glider said is still there, with the key in its place.
    assert "Permission denied for API key <redacted>" in everything
    assert "Invalid request for key <redacted>" in everything


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("DLQ_URL", "", "DLQ_URL is required"),
        ("GLIDER_API_KEY_SECRET_ID", "", "GLIDER_API_KEY_SECRET_ID is required"),
        # No running unguarded: a redelivery would trigger twice.
        ("IDEMPOTENCY_TABLE_NAME", "", "IDEMPOTENCY_TABLE_NAME is required"),
        # The queue's own: without it a redriven original would be replayed as a new delivery.
        ("MAX_RECEIVE_COUNT", "", "MAX_RECEIVE_COUNT is required"),
        ("GLIDER_API_BASE_URL", "http://api.glider.fi", "GLIDER_API_BASE_URL must use https"),
        ("GLIDER_MAX_ATTEMPTS", "0", "GLIDER_MAX_ATTEMPTS must be between 1 and 10"),
        ("GLIDER_READ_TIMEOUT_SECONDS", "soon", "GLIDER_READ_TIMEOUT_SECONDS must be a float"),
    ],
)
def test_invalid_configuration_fails_at_init_naming_the_variable(
    start_function, variable: str, value: str, message: str
) -> None:
    with pytest.raises(ConfigurationError, match=message):
        start_function(**{variable: value})


def _scripted(*faults: Fault) -> Callable[[GliderEmulator, Deployment], dict[str, str]]:
    def arrange(emulator: GliderEmulator, deployment: Deployment) -> dict[str, str]:
        emulator.script("port_abc123", *faults)
        return {}

    return arrange


def _revoked(emulator: GliderEmulator, deployment: Deployment) -> dict[str, str]:
    emulator.set_api_keys(["another-key"])
    return {}


def _dlq_gone(emulator: GliderEmulator, deployment: Deployment) -> dict[str, str]:
    emulator.script("port_abc123", Fault.error(404, "API_200", "Portfolio not found"))
    return {"DLQ_URL": deployment.dlq.url.rsplit("/", 1)[0] + "/missing"}


def _table_gone(emulator: GliderEmulator, deployment: Deployment) -> dict[str, str]:
    return {"IDEMPOTENCY_TABLE_NAME": "missing-table"}


FAILURE_PATHS = {
    "server-error": _scripted(*[Fault.error(503, "API_000", "down")] * 4),
    "rate-limited": _scripted(Fault.rate_limited(retry_after=60)),
    "timeout": _scripted(*[Fault.slow(1.0)] * 4),
    "reset": _scripted(*[Fault.connection_reset()] * 4),
    "lost-response": _scripted(Fault.lost_response(), Fault.lost_response()),
    "not-found": _scripted(Fault.error(404, "API_200", "Portfolio not found")),
    "forbidden": _scripted(Fault.error(403, "API_104", "Permission denied")),
    "tenant": _scripted(Fault.error(403, "API_106", "Tenant disabled")),
    "unexpected-2xx": _scripted(Fault.malformed(status=200, body=b"<html>")),
    "unauthorized": _revoked,
    "dlq-unwritable": _dlq_gone,
    "idempotency-store-missing": _table_gone,
}


@pytest.mark.parametrize("arrange", FAILURE_PATHS.values(), ids=FAILURE_PATHS.keys())
def test_the_key_stays_out_of_every_failure_path(
    start_function: Callable[..., LocalFunction],
    deliver: Callable[..., Story],
    emulator: GliderEmulator,
    deployment: Deployment,
    arrange: Callable[[GliderEmulator, Deployment], dict[str, str]],
) -> None:
    overrides = arrange(emulator, deployment)
    function = start_function(POWERTOOLS_LOG_LEVEL="DEBUG", **overrides)
    outputs: list[str] = []
    # The event's portfolios through the work queue, as the stack delivers them.
    event = {"portfolioIds": ["port_abc123", "port_def456"]}
    try:
        outputs.append(answers(deliver(event, function=function)))
    except Exception as exc:  # the DLQ path raises, as it must
        outputs.append(f"{type(exc).__name__}: {exc!r} {exc.__cause__!r}")
    record = {
        "messageId": "m-1",
        "receiptHandle": "h",
        "body": '{"portfolioId": "port_abc123"}',
        "eventSource": "aws:sqs",
        "eventSourceARN": deployment.work_queue.arn,
    }
    try:
        outputs.append(json.dumps(function.invoke({"Records": [record]}), default=str))
    except Exception as exc:  # the DLQ path raises, as it must
        outputs.append(f"{type(exc).__name__}: {exc!r} {exc.__cause__!r}")

    everything = "\n".join(
        [*outputs, *function.output.lines, json.dumps(deployment.dlq_messages())]
    )
    assert any(log.get("outcome") or log.get("level") == "ERROR" for log in function.logs)
    assert API_KEY not in everything
