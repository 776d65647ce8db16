"""The API key: read from Secrets Manager (moto over HTTP), cached, rotation-safe, never leaked;
and configuration that fails fast with the variable's name."""

from __future__ import annotations

import json

import pytest

from glider_trigger.errors import ConfigurationError
from local.function import LocalFunction
from local.glider_emulator import Fault, GliderEmulator
from local.stack import Deployment, attribute_values
from tests.conftest import API_KEY


def sent_keys(emulator: GliderEmulator) -> list[str]:
    return [r.headers.get("x-api-key", "") for r in emulator.requests]


def test_the_key_is_cached_across_warm_invocations(
    function: LocalFunction, emulator: GliderEmulator, deployment: Deployment
) -> None:
    function.invoke({"portfolioId": "port_abc123"})
    # Rotated in Secrets Manager, but both keys still valid at Glider (a rotation window):
    deployment.put_api_key("second-key")
    emulator.set_api_keys([API_KEY, "second-key"])

    function.invoke({"portfolioId": "port_def456"})

    assert sent_keys(emulator) == [API_KEY, API_KEY]  # served from the cache, not re-read


def test_the_cache_expires_after_secret_cache_seconds(
    start_function, emulator: GliderEmulator, deployment: Deployment
) -> None:
    function = start_function(SECRET_CACHE_SECONDS="0")
    function.invoke({"portfolioId": "port_abc123"})
    deployment.put_api_key("second-key")
    emulator.set_api_keys([API_KEY, "second-key"])

    function.invoke({"portfolioId": "port_def456"})

    assert sent_keys(emulator) == [API_KEY, "second-key"]


def test_a_plain_string_secret_is_the_key(
    function: LocalFunction, emulator: GliderEmulator, deployment: Deployment
) -> None:
    deployment.put_api_key("  plain-string-key \n")
    emulator.set_api_keys(["plain-string-key"])
    fresh = LocalFunction(function.env)

    assert fresh.invoke({"portfolioId": "port_abc123"})["triggered"] == 1
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
    function: LocalFunction,
    emulator: GliderEmulator,
    deployment: Deployment,
    secret: str,
    detail: str,
) -> None:
    deployment.put_api_key(secret)
    fresh = LocalFunction(function.env)

    response = fresh.invoke({"portfolioId": "port_abc123"})

    [result] = response["results"]
    assert result["failureClass"] == "systemic"
    assert result["reason"] == "SECRET_UNAVAILABLE"
    assert detail in result["detail"]
    assert emulator.requests == []
    everything = json.dumps(response) + "\n".join(fresh.output.lines)
    everything += json.dumps(deployment.dlq_messages())
    assert "canary" not in everything


def test_a_missing_secret_names_the_secret_and_the_cause(
    start_function, emulator: GliderEmulator, deployment: Deployment
) -> None:
    function = start_function(GLIDER_API_KEY_SECRET_ID="glider/does-not-exist")

    response = function.invoke({"portfolioId": "port_abc123"})

    [result] = response["results"]
    assert result["failureClass"] == "systemic"
    assert "glider/does-not-exist" in result["detail"]
    assert "ResourceNotFoundException" in result["detail"]
    assert emulator.requests == []
    [letter] = deployment.dlq_messages()
    assert attribute_values(letter)["reason"] == "SECRET_UNAVAILABLE"


def test_the_key_never_appears_in_logs_metrics_responses_or_the_dlq(
    start_function, emulator: GliderEmulator, deployment: Deployment
) -> None:
    function = start_function(POWERTOOLS_LOG_LEVEL="DEBUG", GLIDER_MAX_ATTEMPTS="2")
    emulator.add_portfolio("port_nosched", has_schedule=False)
    emulator.script("port_abc123", Fault.error(503, "API_000", "down"), Fault.slow(1.5))
    emulator.script("port_def456", Fault.malformed(status=200, body=b"<html>"))
    emulator.script("port_ghi789", Fault.connection_reset(), Fault.rate_limited(retry_after=60))
    responses = [
        function.invoke(
            {"portfolioIds": ["port_abc123", "port_def456", "port_ghi789", "port_nosched", "x/y"]}
        ),
        function.invoke({"unknown": "shape"}),
    ]
    emulator.set_api_keys(["some-other-key"])  # 401, refetch, 401 again: systemic
    responses.append(function.invoke({"portfolioId": "port_abc123"}))

    output = "\n".join(function.output.lines)
    assert "Rebalance trigger failed" in output  # the failure paths were really logged
    assert API_KEY not in output
    assert API_KEY not in json.dumps(responses)
    letters = deployment.dlq_messages()
    assert len(letters) >= 5
    assert API_KEY not in json.dumps(letters)


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("DLQ_URL", "", "DLQ_URL is required"),
        ("GLIDER_API_KEY_SECRET_ID", "", "GLIDER_API_KEY_SECRET_ID is required"),
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
