"""The function's settings: one typed object, validated once from the environment.

Every problem names the variable, so a misconfigured deployment fails at init with a message
that says what to fix instead of failing later on the first event.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import TypeVar
from urllib.parse import SplitResult, urlsplit

from glider_trigger.domain.errors import ConfigurationError
from glider_trigger.inbound.queues import QueueId

DEFAULT_GLIDER_API_BASE_URL = "https://api.glider.fi"
# Beyond the queues' retention, the guard's memory covers Lambda's async event age (at most 6 h)
# and the time between a success and the last letter or redelivery that can name it.
GUARD_MARGIN_SECONDS = 86_400

_T = TypeVar("_T", int, float)
_E = TypeVar("_E", bound=StrEnum)


class ApiVersion(StrEnum):
    """Which Glider API the function calls (GLIDER_API_VERSION): the adapter adds its prefix."""

    V1 = "v1"  # the "legacy consumer endpoints": X-API-KEY keys
    V2 = "v2"  # the "integrator API": gldr_sk_ keys with scopes


class TracingMode(StrEnum):
    """The function's X-Ray tracing (TRACING, the template's Tracing): Active records
    subsegments of its own; PassThrough leaves the X-Ray SDK unimported."""

    ACTIVE = "Active"
    PASS_THROUGH = "PassThrough"  # noqa: S105  # nosec B105 - a tracing mode, not a password


_TRUE = frozenset({"true", "1", "yes"})
_FALSE = frozenset({"false", "0", "no"})


@dataclass(frozen=True, kw_only=True)
class Settings:
    glider_api_base_url: str
    api_key_secret_id: str
    dlq_url: str
    glider_api_version: ApiVersion = ApiVersion.V1
    tracing: TracingMode = TracingMode.PASS_THROUGH
    connect_timeout_seconds: float = 3.0
    read_timeout_seconds: float = 10.0
    max_attempts: int = 4
    retry_base_delay_seconds: float = 0.5
    retry_max_delay_seconds: float = 8.0
    secret_cache_seconds: int = 300
    default_skip_schedule_validation: bool = False
    deadline_safety_margin_seconds: float = 2.0
    idempotency_table_name: str | None = None
    # 19 days: the work queue's 4 days of retention, the DLQ's 14, and GUARD_MARGIN_SECONDS.
    idempotency_ttl_seconds: int = 1_641_600
    work_queue_retention_seconds: int = 345_600
    dlq_retention_seconds: int = 1_209_600
    circuit_breaker_threshold: int = 3
    max_concurrency: int = 16
    rate_limit_per_second: float | None = None
    fanout_threshold: int = 50
    work_queue_url: str | None = None
    # The work queue's maxReceiveCount: on a record's last receive the function dead-letters
    # what is left itself (letters that name the delivery) instead of leaving the record to
    # the redrive. None: the redrive has the last word.
    max_receive_count: int | None = None
    # Look among the portfolio's recent rebalances before sending a trigger again after an
    # answer that proves nothing (a lost answer, a 5xx): found, it is not sent twice.
    reconcile_lost_answers: bool = True
    # Follow every triggered rebalance to its outcome with delayed follow-up messages.
    follow_outcomes: bool = True
    follow_up_queue_url: str | None = None  # required when follow_outcomes
    follow_max_seconds: int = 7_200  # then the outcome is `unknown`
    follow_first_delay_seconds: int = 30  # doubled each follow-up, at most 900
    outcome_event_bus_name: str | None = None  # unset: outcomes in logs and metrics only

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        reader = _Reader(env)
        settings = cls(
            glider_api_base_url=api_base_url(
                env.get("GLIDER_API_BASE_URL", "").strip() or DEFAULT_GLIDER_API_BASE_URL
            ),
            api_key_secret_id=reader.required("GLIDER_API_KEY_SECRET_ID"),
            glider_api_version=reader.choice(
                "GLIDER_API_VERSION", ApiVersion, cls.glider_api_version
            ),
            tracing=reader.choice("TRACING", TracingMode, cls.tracing),
            dlq_url=_queue_url("DLQ_URL", reader.required("DLQ_URL")),
            connect_timeout_seconds=reader.number(
                "GLIDER_CONNECT_TIMEOUT_SECONDS",
                float,
                cls.connect_timeout_seconds,
                low=0.1,
                high=60,
            ),
            read_timeout_seconds=reader.number(
                "GLIDER_READ_TIMEOUT_SECONDS",
                float,
                cls.read_timeout_seconds,
                low=0.1,
                high=300,
            ),
            max_attempts=reader.number(
                "GLIDER_MAX_ATTEMPTS", int, cls.max_attempts, low=1, high=10
            ),
            retry_base_delay_seconds=reader.number(
                "RETRY_BASE_DELAY_SECONDS",
                float,
                cls.retry_base_delay_seconds,
                low=0,
                high=60,
            ),
            retry_max_delay_seconds=reader.number(
                "RETRY_MAX_DELAY_SECONDS",
                float,
                cls.retry_max_delay_seconds,
                low=0,
                high=300,
            ),
            secret_cache_seconds=reader.number(
                "SECRET_CACHE_SECONDS",
                int,
                cls.secret_cache_seconds,
                low=0,
                high=86_400,
            ),
            default_skip_schedule_validation=reader.boolean(
                "DEFAULT_SKIP_SCHEDULE_VALIDATION",
                cls.default_skip_schedule_validation,
            ),
            deadline_safety_margin_seconds=reader.number(
                "DEADLINE_SAFETY_MARGIN_SECONDS",
                float,
                cls.deadline_safety_margin_seconds,
                low=0,
                high=60,
            ),
            idempotency_table_name=env.get("IDEMPOTENCY_TABLE_NAME", "").strip() or None,
            idempotency_ttl_seconds=reader.number(
                "IDEMPOTENCY_TTL_SECONDS",
                int,
                cls.idempotency_ttl_seconds,
                low=60,
                high=31_536_000,
            ),
            work_queue_retention_seconds=reader.number(
                "WORK_QUEUE_RETENTION_SECONDS",
                int,
                cls.work_queue_retention_seconds,
                low=60,
                high=1_209_600,
            ),
            dlq_retention_seconds=reader.number(
                "DLQ_RETENTION_SECONDS", int, cls.dlq_retention_seconds, low=60, high=1_209_600
            ),
            circuit_breaker_threshold=reader.number(
                "CIRCUIT_BREAKER_THRESHOLD", int, cls.circuit_breaker_threshold, low=0, high=100
            ),
            max_concurrency=reader.number(
                "MAX_CONCURRENCY", int, cls.max_concurrency, low=1, high=128
            ),
            rate_limit_per_second=reader.optional_number(
                "RATE_LIMIT_PER_SECOND", float, low=0.01, high=10_000
            ),
            fanout_threshold=reader.number(
                "FANOUT_THRESHOLD", int, cls.fanout_threshold, low=1, high=100_000
            ),
            work_queue_url=reader.optional_queue_url("WORK_QUEUE_URL"),
            max_receive_count=reader.optional_number("MAX_RECEIVE_COUNT", int, low=1, high=1000),
            reconcile_lost_answers=reader.boolean(
                "RECONCILE_LOST_ANSWERS", cls.reconcile_lost_answers
            ),
            follow_outcomes=reader.boolean("FOLLOW_OUTCOMES", cls.follow_outcomes),
            follow_up_queue_url=reader.optional_queue_url("FOLLOW_UP_QUEUE_URL"),
            follow_max_seconds=reader.number(
                "FOLLOW_MAX_SECONDS", int, cls.follow_max_seconds, low=60, high=86_400
            ),
            follow_first_delay_seconds=reader.number(
                "FOLLOW_FIRST_DELAY_SECONDS", int, cls.follow_first_delay_seconds, low=1, high=900
            ),
            outcome_event_bus_name=env.get("OUTCOME_EVENT_BUS_NAME", "").strip() or None,
        )
        settings.check_guard_window()
        if settings.follow_outcomes and settings.follow_up_queue_url is None:
            raise ConfigurationError(
                "FOLLOW_UP_QUEUE_URL is required when FOLLOW_OUTCOMES is true (the default): "
                "set it to the follow-up queue, or set FOLLOW_OUTCOMES=false"
            )
        return settings

    @property
    def guard_window_seconds(self) -> int:
        """How long a copy of a delivery can still arrive: a message kept by the work queue to
        its last day, then its dead letter kept by the DLQ for a replay, plus the margin."""
        return self.work_queue_retention_seconds + self.dlq_retention_seconds + GUARD_MARGIN_SECONDS

    def check_guard_window(self) -> None:
        if self.idempotency_ttl_seconds < self.guard_window_seconds:
            raise ConfigurationError(
                f"IDEMPOTENCY_TTL_SECONDS ({self.idempotency_ttl_seconds}) must be at least "
                "WORK_QUEUE_RETENTION_SECONDS + DLQ_RETENTION_SECONDS + "
                f"{GUARD_MARGIN_SECONDS} = {self.guard_window_seconds}: the guard must remember "
                "a delivery for as long as a redelivery or a replay of it can still arrive"
            )


class _Reader:
    def __init__(self, env: Mapping[str, str]) -> None:
        self._env = env

    def required(self, name: str) -> str:
        value = self._env.get(name, "").strip()
        if not value:
            raise ConfigurationError(f"{name} is required but is not set")
        return value

    def number(self, name: str, kind: type[_T], default: _T, *, low: float, high: float) -> _T:
        raw = self._env.get(name, "").strip()
        if not raw:
            return default
        try:
            value = kind(raw)
        except ValueError:
            raise ConfigurationError(f"{name} must be a {kind.__name__}, got {raw!r}") from None
        if not low <= value <= high:
            raise ConfigurationError(f"{name} must be between {low:g} and {high:g}, got {raw}")
        return value

    def optional_number(self, name: str, kind: type[_T], *, low: float, high: float) -> _T | None:
        """Unset or empty means "no value" (e.g. no rate limit), not a default."""
        if not self._env.get(name, "").strip():
            return None
        return self.number(name, kind, kind(low), low=low, high=high)

    def optional_queue_url(self, name: str) -> str | None:
        """Unset or empty means "no such queue"."""
        value = self._env.get(name, "").strip()
        return _queue_url(name, value) if value else None

    def choice(self, name: str, kind: type[_E], default: _E) -> _E:
        raw = self._env.get(name, "").strip()
        if not raw:
            return default
        for member in kind:  # case-insensitive: "V2", "active"
            if member.value.lower() == raw.lower():
                return member
        allowed = " or ".join(member.value for member in kind)
        raise ConfigurationError(f"{name} must be {allowed}, got {raw!r}")

    def boolean(self, name: str, default: bool) -> bool:
        raw = self._env.get(name, "").strip().lower()
        if not raw:
            return default
        if raw in _TRUE:
            return True
        if raw in _FALSE:
            return False
        raise ConfigurationError(f"{name} must be true or false, got {raw!r}")


def _split(name: str, url: str) -> SplitResult:
    """urlsplit, with every malformation (bad IPv6 host, bad port) reported against `name`."""
    try:
        parts = urlsplit(url)
        _ = parts.port  # raises on a port that is not a number in 0-65535
    except ValueError as exc:
        raise ConfigurationError(f"{name} is not a valid URL ({exc}): {url!r}") from None
    return parts


def api_base_url(url: str) -> str:
    """GLIDER_API_BASE_URL checked: https (http only on loopback), no credentials, query,
    fragment or version; without its trailing slash. (make doctor checks a stack's with it.)"""
    parts = _split("GLIDER_API_BASE_URL", url)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise ConfigurationError(f"GLIDER_API_BASE_URL must be an https URL, got {url!r}")
    if parts.scheme == "http" and not _is_loopback(parts.hostname):
        # The API key travels in a header: plain http is only acceptable on this machine.
        raise ConfigurationError(
            f"GLIDER_API_BASE_URL must use https (http is allowed only for loopback), got {url!r}"
        )
    # "?" and "#" also count when empty: the request path is appended to this URL.
    if "?" in url or "#" in url or parts.username or parts.password:
        raise ConfigurationError(
            "GLIDER_API_BASE_URL must not carry credentials, a query or a fragment"
        )
    if parts.path.rstrip("/").rsplit("/", 1)[-1].lower() in {v.value for v in ApiVersion}:
        raise ConfigurationError(
            f"GLIDER_API_BASE_URL is the API's root, without a version ({url!r}): drop the "
            "trailing version and choose it with GLIDER_API_VERSION; the function adds the prefix"
        )
    return url.rstrip("/")


def _queue_url(name: str, url: str) -> str:
    parts = _split(name, url)
    # The path names the queue's account and name: how a record's queue ARN is matched to it.
    if parts.scheme not in ("https", "http") or not parts.hostname or QueueId.of_url(url) is None:
        raise ConfigurationError(
            f"{name} must be an SQS queue URL (.../<account id>/<queue name>), got {url!r}"
        )
    return url


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
