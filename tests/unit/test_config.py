"""Settings.from_environment: defaults, and a message that names the variable to fix."""

from __future__ import annotations

import pytest

from glider_trigger.domain.errors import ConfigurationError
from glider_trigger.settings import DEFAULT_GLIDER_API_BASE_URL, ApiVersion, Settings

DLQ = "https://sqs.eu-west-1.amazonaws.com/123456789012/glider-trigger-dlq"
FOLLOW_UPS = "https://sqs.eu-west-1.amazonaws.com/123456789012/glider-trigger-follow-up"
WORK = "https://sqs.eu-west-1.amazonaws.com/123456789012/glider-trigger-work"
REQUIRED = {
    "GLIDER_API_KEY_SECRET_ID": "glider/api-key",
    "DLQ_URL": DLQ,
    "WORK_QUEUE_URL": WORK,
    "FOLLOW_UP_QUEUE_URL": FOLLOW_UPS,
    "IDEMPOTENCY_TABLE_NAME": "glider-trigger-idempotency",
    "MAX_RECEIVE_COUNT": "5",
}


def settings_with(**overrides: str) -> Settings:
    return Settings.from_environment({**REQUIRED, **overrides})


def test_defaults() -> None:
    settings = Settings.from_environment(REQUIRED)

    assert settings == Settings(
        glider_api_base_url="https://api.glider.fi",
        api_key_secret_id="glider/api-key",
        dlq_url=DLQ,
        work_queue_url=WORK,
        connect_timeout_seconds=3.0,
        read_timeout_seconds=10.0,
        max_attempts=4,
        retry_base_delay_seconds=0.5,
        retry_max_delay_seconds=8.0,
        secret_cache_seconds=300,
        default_skip_schedule_validation=False,
        deadline_safety_margin_seconds=2.0,
        follow_up_queue_url=FOLLOW_UPS,
        idempotency_table_name="glider-trigger-idempotency",
        max_receive_count=5,
    )
    assert DEFAULT_GLIDER_API_BASE_URL == "https://api.glider.fi"


def test_following_outcomes_needs_the_follow_up_queue() -> None:
    without = {name: value for name, value in REQUIRED.items() if name != "FOLLOW_UP_QUEUE_URL"}

    with pytest.raises(ConfigurationError, match="FOLLOW_UP_QUEUE_URL is required"):
        Settings.from_environment(without)
    assert not Settings.from_environment({**without, "FOLLOW_OUTCOMES": "false"}).follow_outcomes


def test_following_is_bounded_as_documented() -> None:
    settings = settings_with(FOLLOW_MAX_SECONDS="600", FOLLOW_FIRST_DELAY_SECONDS="1")

    assert (settings.follow_max_seconds, settings.follow_first_delay_seconds) == (600, 1)
    with pytest.raises(ConfigurationError, match="FOLLOW_MAX_SECONDS"):
        settings_with(FOLLOW_MAX_SECONDS="59")
    with pytest.raises(ConfigurationError, match="FOLLOW_FIRST_DELAY_SECONDS"):
        settings_with(FOLLOW_FIRST_DELAY_SECONDS="901")
    with pytest.raises(ConfigurationError, match="FOLLOW_FIRST_DELAY_SECONDS"):
        settings_with(FOLLOW_FIRST_DELAY_SECONDS="0")  # every follow-up at once: a busy loop


def test_the_api_version_is_v1_unless_v2_is_chosen() -> None:
    assert Settings.from_environment(REQUIRED).glider_api_version is ApiVersion.V1
    assert settings_with(GLIDER_API_VERSION=" V2 ").glider_api_version is ApiVersion.V2
    assert settings_with(GLIDER_API_VERSION="").glider_api_version is ApiVersion.V1


@pytest.mark.parametrize("value", ["v3", "2", "latest"])
def test_an_unknown_api_version_names_the_variable_and_the_choices(value: str) -> None:
    with pytest.raises(ConfigurationError, match=r"GLIDER_API_VERSION must be v1 or v2"):
        settings_with(GLIDER_API_VERSION=value)


def test_blank_base_url_means_the_default() -> None:
    assert settings_with(GLIDER_API_BASE_URL="  ").glider_api_base_url == "https://api.glider.fi"


def test_values_are_read_and_typed() -> None:
    settings = settings_with(
        GLIDER_API_BASE_URL="https://glider.example.com",
        GLIDER_CONNECT_TIMEOUT_SECONDS="1.5",
        GLIDER_READ_TIMEOUT_SECONDS="20",
        GLIDER_MAX_ATTEMPTS="10",
        RETRY_BASE_DELAY_SECONDS="0",
        RETRY_MAX_DELAY_SECONDS="30",
        SECRET_CACHE_SECONDS="0",
        DEFAULT_SKIP_SCHEDULE_VALIDATION="true",
        DEADLINE_SAFETY_MARGIN_SECONDS="5",
    )

    assert settings.glider_api_base_url == "https://glider.example.com"
    assert settings.connect_timeout_seconds == 1.5
    assert settings.read_timeout_seconds == 20.0
    assert settings.max_attempts == 10
    assert isinstance(settings.max_attempts, int)
    assert settings.retry_base_delay_seconds == 0.0
    assert settings.retry_max_delay_seconds == 30.0
    assert settings.secret_cache_seconds == 0
    assert isinstance(settings.secret_cache_seconds, int)
    assert settings.default_skip_schedule_validation is True
    assert settings.deadline_safety_margin_seconds == 5.0


# Every trigger runs from the work queue: without it an event's portfolios could go nowhere.
@pytest.mark.parametrize("name", ["GLIDER_API_KEY_SECRET_ID", "DLQ_URL", "WORK_QUEUE_URL"])
@pytest.mark.parametrize("value", [None, "", "   "])
def test_missing_required_variable_is_named(name: str, value: str | None) -> None:
    env = dict(REQUIRED)
    if value is None:
        del env[name]
    else:
        env[name] = value

    with pytest.raises(ConfigurationError, match=name):
        Settings.from_environment(env)


@pytest.mark.parametrize("url", ["sqs-queue", "https://sqs.eu-west-1.amazonaws.com/", "ftp://x/q"])
@pytest.mark.parametrize("name", ["DLQ_URL", "WORK_QUEUE_URL"])
def test_a_queue_url_that_is_not_one_is_named(name: str, url: str) -> None:
    with pytest.raises(ConfigurationError, match=name):
        settings_with(**{name: url})


def test_a_queue_url_without_its_account_is_refused_at_start() -> None:
    # A record's queue is matched to FOLLOW_UP_QUEUE_URL by account and name: without them,
    # every follow-up would be refused as malformed instead of the function not starting.
    with pytest.raises(
        ConfigurationError, match=r"FOLLOW_UP_QUEUE_URL .*<account id>/<queue name>"
    ):
        settings_with(FOLLOW_UP_QUEUE_URL="https://sqs.eu-west-1.amazonaws.com/glider-follow-up")


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://api.glider.fi", "https://api.glider.fi"),
        ("https://api.glider.fi/", "https://api.glider.fi"),
        ("https://api.glider.fi//", "https://api.glider.fi"),
        ("  https://api.glider.fi/  ", "https://api.glider.fi"),
        ("https://glider.example.com:8443/", "https://glider.example.com:8443"),
        ("http://127.0.0.1:8080", "http://127.0.0.1:8080"),
        ("http://127.0.0.1:8080/", "http://127.0.0.1:8080"),
        ("http://localhost:8080", "http://localhost:8080"),
        ("http://[::1]:8080", "http://[::1]:8080"),
    ],
)
def test_accepted_base_urls(url: str, expected: str) -> None:
    assert settings_with(GLIDER_API_BASE_URL=url).glider_api_base_url == expected


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://api.glider.fi", "https"),
        ("http://10.0.0.5:8080", "https"),
        ("http://localhost.evil.example", "https"),
        ("http://127.0.0.1.nip.io", "https"),
        ("ftp://api.glider.fi", "https"),
        ("api.glider.fi", "https"),
        ("https://", "https"),
        ("https://user:secret@api.glider.fi", "credentials"),
        ("https://token@api.glider.fi", "credentials"),
        ("https://api.glider.fi/?env=prod", "query"),
        ("https://api.glider.fi/#frag", "fragment"),
        ("https://api.glider.fi/v2", "without a version"),
        ("https://staging-api.glider.fi/V1/", "without a version"),
    ],
)
def test_rejected_base_urls_name_the_variable(url: str, message: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        settings_with(GLIDER_API_BASE_URL=url)

    assert "GLIDER_API_BASE_URL" in str(caught.value)
    assert message in str(caught.value)


def test_rejected_base_url_message_does_not_echo_credentials() -> None:
    with pytest.raises(ConfigurationError) as caught:
        settings_with(GLIDER_API_BASE_URL="https://user:hunter2@api.glider.fi")

    assert "hunter2" not in str(caught.value)


@pytest.mark.parametrize(
    "url",
    [
        "https://[::1",  # urlsplit raises ValueError
        "http://[not-an-ip]:8080",  # urlsplit raises ValueError
        "https://api.glider.fi:99999",  # accepted; every call then fails as a transport error
        "https://api.glider.fi:https",
        "https://api.glider.fi?",  # an empty query: requests would go to "/?/v1/portfolio/..."
        "https://api.glider.fi/#",
    ],
)
def test_malformed_base_url_is_a_configuration_error_naming_the_variable(url: str) -> None:
    # The module's promise: a misconfigured deployment fails at init, naming the variable.
    with pytest.raises(ConfigurationError, match="GLIDER_API_BASE_URL"):
        settings_with(GLIDER_API_BASE_URL=url)


@pytest.mark.parametrize("url", ["https://[sqs.eu-west-1.amazonaws.com/1/q", "http://[x]/1/q"])
def test_malformed_dlq_url_is_a_configuration_error_naming_the_variable(url: str) -> None:
    with pytest.raises(ConfigurationError, match="DLQ_URL"):
        settings_with(DLQ_URL=url)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("GLIDER_CONNECT_TIMEOUT_SECONDS", "0"),
        ("GLIDER_CONNECT_TIMEOUT_SECONDS", "61"),
        ("GLIDER_CONNECT_TIMEOUT_SECONDS", "three"),
        ("GLIDER_CONNECT_TIMEOUT_SECONDS", "nan"),
        ("GLIDER_READ_TIMEOUT_SECONDS", "0.05"),
        ("GLIDER_READ_TIMEOUT_SECONDS", "301"),
        ("GLIDER_READ_TIMEOUT_SECONDS", "inf"),
        ("GLIDER_MAX_ATTEMPTS", "0"),
        ("GLIDER_MAX_ATTEMPTS", "11"),
        ("GLIDER_MAX_ATTEMPTS", "2.5"),
        ("GLIDER_MAX_ATTEMPTS", "four"),
        ("RETRY_BASE_DELAY_SECONDS", "-0.5"),
        ("RETRY_BASE_DELAY_SECONDS", "61"),
        ("RETRY_MAX_DELAY_SECONDS", "301"),
        ("RETRY_MAX_DELAY_SECONDS", "1s"),
        ("SECRET_CACHE_SECONDS", "-1"),
        ("SECRET_CACHE_SECONDS", "86401"),
        ("SECRET_CACHE_SECONDS", "300.0"),
        ("DEADLINE_SAFETY_MARGIN_SECONDS", "61"),
        ("DEADLINE_SAFETY_MARGIN_SECONDS", "-inf"),
    ],
)
def test_bad_numbers_name_the_variable(name: str, value: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        settings_with(**{name: value})

    assert name in str(caught.value)
    assert value in str(caught.value)


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("GLIDER_CONNECT_TIMEOUT_SECONDS", "0.1", 0.1),
        ("GLIDER_CONNECT_TIMEOUT_SECONDS", "60", 60.0),
        ("GLIDER_MAX_ATTEMPTS", "1", 1),
        ("GLIDER_MAX_ATTEMPTS", " 10 ", 10),
        ("SECRET_CACHE_SECONDS", "86400", 86400),
    ],
)
def test_numbers_at_the_bounds_are_accepted(name: str, value: str, expected: float) -> None:
    field = name.lower().removeprefix("glider_")
    assert getattr(settings_with(**{name: value}), field) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("true", True),
        ("TRUE", True),
        (" True ", True),
        ("1", True),
        ("yes", True),
        ("false", False),
        ("False", False),
        ("0", False),
        ("no", False),
        ("", False),
    ],
)
def test_booleans(value: str, expected: bool) -> None:
    assert settings_with(
        DEFAULT_SKIP_SCHEDULE_VALIDATION=value
    ).default_skip_schedule_validation is (expected)


@pytest.mark.parametrize("value", ["maybe", "on", "off", "2", "y", "n", "truee", "-1"])
def test_garbage_boolean_names_the_variable(value: str) -> None:
    with pytest.raises(ConfigurationError, match="DEFAULT_SKIP_SCHEDULE_VALIDATION"):
        settings_with(DEFAULT_SKIP_SCHEDULE_VALIDATION=value)


def test_every_problem_is_reported_at_once_each_naming_its_variable() -> None:
    broken = {
        "DLQ_URL": "not-a-queue",
        "GLIDER_MAX_ATTEMPTS": "many",
        "TRACING": "Loud",
        "FOLLOW_OUTCOMES": "maybe",
    }  # and GLIDER_API_KEY_SECRET_ID missing

    with pytest.raises(ConfigurationError) as raised:
        Settings.from_environment(broken)

    message = str(raised.value)
    for name in ("GLIDER_API_KEY_SECRET_ID", "DLQ_URL", "GLIDER_MAX_ATTEMPTS", "TRACING"):
        assert name in message, name
    assert "FOLLOW_OUTCOMES must be true or false" in message


def test_contradictions_are_reported_together() -> None:
    environment = {k: v for k, v in REQUIRED.items() if k != "FOLLOW_UP_QUEUE_URL"}

    with pytest.raises(ConfigurationError) as raised:
        Settings.from_environment({**environment, "IDEMPOTENCY_TTL_SECONDS": "60"})

    assert "IDEMPOTENCY_TTL_SECONDS (60) must be at least" in str(raised.value)
    assert "FOLLOW_UP_QUEUE_URL is required" in str(raised.value)
