"""The function's settings: one typed object, validated once from the environment.

Every problem names the variable, so a misconfigured deployment fails at init with a message
that says what to fix instead of failing later on the first event.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Callable, Mapping
from dataclasses import MISSING, Field, dataclass, field, fields
from enum import StrEnum
from typing import Any, Final, TypeVar
from urllib.parse import SplitResult, urlsplit

from glider_trigger.domain.errors import ConfigurationError
from glider_trigger.inbound.queues import QueueId

DEFAULT_GLIDER_API_BASE_URL = "https://api.glider.fi"
# Beyond the queues' retention, the guard's memory covers Lambda's async event age (at most 6 h)
# and the time between a success and the last letter or redelivery that can name it.
GUARD_MARGIN_SECONDS = 86_400

_T = TypeVar("_T", int, float)


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


class Kind(StrEnum):
    """How a variable's text becomes a setting."""

    TEXT = "text"  # required unless it has a default; empty is unset
    INT = "int"
    FLOAT = "float"
    BOOL = "bool"
    CHOICE = "choice"  # one of an enum's values, case-insensitive
    QUEUE_URL = "queue url"  # an SQS queue URL; required unless it has a default
    API_BASE_URL = "api base url"


def _var(
    name: str,
    kind: Kind,
    *,
    low: float | None = None,
    high: float | None = None,
    choices: type[StrEnum] | None = None,
) -> dict[str, Any]:
    """A field's metadata: its variable, how it is read, and its range."""
    return {"env": name, "kind": kind, "low": low, "high": high, "choices": choices}


def _setting(default: Any, name: str, kind: Kind, **rules: Any) -> Any:
    return field(default=default, metadata=_var(name, kind, **rules))


def _required(name: str, kind: Kind, **rules: Any) -> Any:
    return field(metadata=_var(name, kind, **rules))


@dataclass(frozen=True, kw_only=True)
class Settings:
    """Each setting declared once: its variable, its default and its range (field metadata),
    read by `from_environment`; docs/configuration.md lists them (a test keeps it in step)."""

    glider_api_base_url: str = _setting(
        DEFAULT_GLIDER_API_BASE_URL, "GLIDER_API_BASE_URL", Kind.API_BASE_URL
    )
    api_key_secret_id: str = _required("GLIDER_API_KEY_SECRET_ID", Kind.TEXT)
    dlq_url: str = _required("DLQ_URL", Kind.QUEUE_URL)
    # Every trigger runs from the work queue: an event's portfolios are queued there.
    work_queue_url: str = _required("WORK_QUEUE_URL", Kind.QUEUE_URL)
    glider_api_version: ApiVersion = _setting(  # noqa: RUF009 - a dataclasses.field
        ApiVersion.V1, "GLIDER_API_VERSION", Kind.CHOICE, choices=ApiVersion
    )
    tracing: TracingMode = _setting(  # noqa: RUF009 - a dataclasses.field
        TracingMode.PASS_THROUGH, "TRACING", Kind.CHOICE, choices=TracingMode
    )
    connect_timeout_seconds: float = _setting(
        3.0, "GLIDER_CONNECT_TIMEOUT_SECONDS", Kind.FLOAT, low=0.1, high=60
    )
    read_timeout_seconds: float = _setting(
        10.0, "GLIDER_READ_TIMEOUT_SECONDS", Kind.FLOAT, low=0.1, high=300
    )
    max_attempts: int = _setting(4, "GLIDER_MAX_ATTEMPTS", Kind.INT, low=1, high=10)
    retry_base_delay_seconds: float = _setting(
        0.5, "RETRY_BASE_DELAY_SECONDS", Kind.FLOAT, low=0, high=60
    )
    retry_max_delay_seconds: float = _setting(
        8.0, "RETRY_MAX_DELAY_SECONDS", Kind.FLOAT, low=0, high=300
    )
    secret_cache_seconds: int = _setting(300, "SECRET_CACHE_SECONDS", Kind.INT, low=0, high=86_400)
    default_skip_schedule_validation: bool = _setting(
        False, "DEFAULT_SKIP_SCHEDULE_VALIDATION", Kind.BOOL
    )
    deadline_safety_margin_seconds: float = _setting(
        2.0, "DEADLINE_SAFETY_MARGIN_SECONDS", Kind.FLOAT, low=0, high=60
    )
    # The guard's ledger: without it a redelivery could trigger twice, so there is no default.
    idempotency_table_name: str = _required("IDEMPOTENCY_TABLE_NAME", Kind.TEXT)
    # 19 days: the work queue's 4 days of retention, the DLQ's 14, and GUARD_MARGIN_SECONDS.
    idempotency_ttl_seconds: int = _setting(
        1_641_600, "IDEMPOTENCY_TTL_SECONDS", Kind.INT, low=60, high=31_536_000
    )
    work_queue_retention_seconds: int = _setting(
        345_600, "WORK_QUEUE_RETENTION_SECONDS", Kind.INT, low=60, high=1_209_600
    )
    dlq_retention_seconds: int = _setting(
        1_209_600, "DLQ_RETENTION_SECONDS", Kind.INT, low=60, high=1_209_600
    )
    circuit_breaker_threshold: int = _setting(
        3, "CIRCUIT_BREAKER_THRESHOLD", Kind.INT, low=0, high=100
    )
    max_concurrency: int = _setting(16, "MAX_CONCURRENCY", Kind.INT, low=1, high=128)
    # Unset: no rate limit (not a default rate).
    rate_limit_per_second: float | None = _setting(
        None, "RATE_LIMIT_PER_SECOND", Kind.FLOAT, low=0.01, high=10_000
    )
    # The work queue's maxReceiveCount: on a record's last receive the function dead-letters
    # what is left itself (letters that name the delivery) instead of leaving the record to
    # the redrive, whose replay would be a new delivery. No default: it must be the queue's.
    max_receive_count: int = _required("MAX_RECEIVE_COUNT", Kind.INT, low=1, high=1000)
    # Follow every triggered rebalance to its outcome with delayed follow-up messages.
    follow_outcomes: bool = _setting(True, "FOLLOW_OUTCOMES", Kind.BOOL)
    # Required when follow_outcomes.
    follow_up_queue_url: str | None = _setting(None, "FOLLOW_UP_QUEUE_URL", Kind.QUEUE_URL)
    # Then the outcome is `unknown`.
    follow_max_seconds: int = _setting(7_200, "FOLLOW_MAX_SECONDS", Kind.INT, low=60, high=86_400)
    # Doubled each follow-up, at most 900.
    follow_first_delay_seconds: int = _setting(
        30, "FOLLOW_FIRST_DELAY_SECONDS", Kind.INT, low=1, high=900
    )
    # Unset: outcomes in logs and metrics only.
    outcome_event_bus_name: str | None = _setting(None, "OUTCOME_EVENT_BUS_NAME", Kind.TEXT)

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Every declared variable read; every problem reported at once, each naming its
        variable (a deployment is fixed in one round, not one variable per cold start)."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        problems: list[str] = []
        for declared in fields(cls):
            raw = env.get(declared.metadata["env"], "").strip()
            try:
                value = _read(declared, raw)
            except ConfigurationError as exc:
                problems.append(str(exc))
                continue
            if value is not _UNSET:
                values[declared.name] = value
        if problems:
            raise ConfigurationError("; ".join(problems))
        settings = cls(**values)
        problems = settings.inconsistencies()
        if problems:
            raise ConfigurationError("; ".join(problems))
        return settings

    @property
    def guard_window_seconds(self) -> int:
        """How long a copy of a delivery can still arrive: a message kept by the work queue to
        its last day, then its dead letter kept by the DLQ for a replay, plus the margin."""
        return self.work_queue_retention_seconds + self.dlq_retention_seconds + GUARD_MARGIN_SECONDS

    def inconsistencies(self) -> list[str]:
        """What the settings contradict in one another."""
        problems = []
        if self.idempotency_ttl_seconds < self.guard_window_seconds:
            problems.append(
                f"IDEMPOTENCY_TTL_SECONDS ({self.idempotency_ttl_seconds}) must be at least "
                "WORK_QUEUE_RETENTION_SECONDS + DLQ_RETENTION_SECONDS + "
                f"{GUARD_MARGIN_SECONDS} = {self.guard_window_seconds}: the guard must remember "
                "a delivery for as long as a redelivery or a replay of it can still arrive"
            )
        if self.follow_outcomes and self.follow_up_queue_url is None:
            problems.append(
                "FOLLOW_UP_QUEUE_URL is required when FOLLOW_OUTCOMES is true (the default): "
                "set it to the follow-up queue, or set FOLLOW_OUTCOMES=false"
            )
        return problems


_UNSET: Final = object()  # the variable is unset: the field keeps its default


def _read(declared: Field[Any], raw: str) -> Any:
    """One variable's value by its declaration; ConfigurationError naming it."""
    rules = declared.metadata
    name, kind = rules["env"], rules["kind"]
    required = declared.default is MISSING
    if not raw:
        if required:
            raise ConfigurationError(f"{name} is required but is not set")
        return _UNSET
    return _PARSE[kind](name, raw, rules)


# How each kind of variable is read (names resolved at call time: the URL checks are below).
_PARSE: Final[dict[Kind, Callable[[str, str, Mapping[str, Any]], Any]]] = {
    Kind.TEXT: lambda _name, raw, _rules: raw,
    Kind.API_BASE_URL: lambda _name, raw, _rules: api_base_url(raw),
    Kind.QUEUE_URL: lambda name, raw, _rules: _queue_url(name, raw),
    Kind.BOOL: lambda name, raw, _rules: _boolean(name, raw),
    Kind.CHOICE: lambda name, raw, rules: _choice(name, raw, rules["choices"]),
    Kind.INT: lambda name, raw, rules: _number(name, raw, int, rules["low"], rules["high"]),
    Kind.FLOAT: lambda name, raw, rules: _number(name, raw, float, rules["low"], rules["high"]),
}


def _number(name: str, raw: str, kind: type[_T], low: float, high: float) -> _T:
    try:
        value = kind(raw)
    except ValueError:
        raise ConfigurationError(f"{name} must be a {kind.__name__}, got {raw!r}") from None
    if not low <= value <= high:
        raise ConfigurationError(f"{name} must be between {low:g} and {high:g}, got {raw}")
    return value


def _choice(name: str, raw: str, kind: type[StrEnum]) -> StrEnum:
    for member in kind:  # case-insensitive: "V2", "active"
        if member.value.lower() == raw.lower():
            return member
    allowed = " or ".join(member.value for member in kind)
    raise ConfigurationError(f"{name} must be {allowed}, got {raw!r}")


def _boolean(name: str, raw: str) -> bool:
    text = raw.lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ConfigurationError(f"{name} must be true or false, got {text!r}")


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
