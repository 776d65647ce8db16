"""The trigger-input contract: what an input of this function looks like, in one place.

The function parses it, writes it (queued portfolios, dead letters, deferrals), and `tools/dlq.py`
and the chaos harness read it, all through this module; `docs/schemas/trigger-input.schema.json`
states it for upstream producers (a test keeps the two in step).

- The trigger shape: {"portfolioId": ...} and/or {"portfolioIds": [...]}, optional
  "skipScheduleValidation" (a boolean), "idempotencyKey" (an upstream's delivery key), the
  function's own "deliveryKey", and metadata echoed into logs. Unknown fields are ignored.
- Envelopes around it: an EventBridge event (its "detail") and an on-failure destination record
  of this function (its "requestPayload"), at most MAX_ENVELOPE_DEPTH of them, outermost first.

Delivery keys (what makes a second delivery of the same work recognisable) are built from the
full values, never from the shortened copies kept for logs: a key longer than MAX_KEY_CHARS is
replaced by its SHA-256, so two different keys never become one.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Final, TypeGuard

from glider_trigger.domain.errors import InvalidInputError, InvalidPortfolioIdError
from glider_trigger.domain.models import (
    MAX_KEY_CHARS,
    FollowUp,
    InputSource,
    ParsedInput,
    RejectedId,
    SourceKind,
    TriggerRequest,
    Window,
    delivery_key,
    hull,
)

PORTFOLIO_ID: Final = "portfolioId"
PORTFOLIO_IDS: Final = "portfolioIds"
SKIP_SCHEDULE_VALIDATION: Final = "skipScheduleValidation"
IDEMPOTENCY_KEY: Final = "idempotencyKey"
# The function's own continuation messages (dead letters, deferrals) name the delivery they
# belong to with this field: its value is that delivery's key, used verbatim.
DELIVERY_KEY_FIELD: Final = "deliveryKey"
# Also the function's own, on the messages it queues (never on a dead letter: a replay is a new
# transport): the transport that first carried the delivery in, `<kind>:<delivery id>` (its
# kind is what logs and the history show as the delivery's origin: "schedule", not "sqs").
QUEUED_BY: Final = "queuedBy"
# Also the function's own: when an earlier attempt of the delivery may have started a rebalance
# whose answer was lost ({"after": <ISO time>, "before": <ISO time, optional>}); looked for
# among the portfolio's recent rebalances before the first trigger is sent.
MAY_HAVE_STARTED: Final = "mayHaveStarted"
# A follow-up message's body: {"followUp": {"portfolioId", "rebalanceId", "triggeredAt",
# "number", "skipScheduleValidation", "deliveryKey"}}, taken only from the follow-up queue.
FOLLOW_UP: Final = "followUp"
SCHEDULE_ARN: Final = "scheduleArn"
SCHEDULED_TIME: Final = "scheduledTime"
# What a delivery's own messages carry of where it began, for the logs: a schedule's run.
CARRIED_METADATA: Final = (SCHEDULE_ARN, SCHEDULED_TIME)
# Metadata is only echoed into logs: keep it short.
METADATA_FIELDS: Final = (SCHEDULE_ARN, SCHEDULED_TIME, IDEMPOTENCY_KEY)
MAX_METADATA_CHARS: Final = 256

# Opaque ids seen so far look like `port_abc123` or `ao04x0r6`. Letters, digits, `_` and `-`
# cannot change a URL path; anything else is rejected before it reaches an HTTP client.
PORTFOLIO_ID_PATTERN: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,127}")
# An envelope inside an envelope is the most nesting any supported input has.
MAX_ENVELOPE_DEPTH: Final = 3
# The longest rebalance (or v2 operation) id the function follows: a follow-up names it in full,
# never shortened (a shortened id would be followed as another rebalance).
MAX_REBALANCE_ID_CHARS: Final = 256
# In a follow-up: the Glider API version its rebalance was started on.
API_VERSION_FIELD: Final = "apiVersion"
# A follow-up's triggeredAt was written by this function on another execution environment's
# clock, which may be ahead of the reader's by this much. A later time is none the function
# wrote: it is read as the time the follow-up was received, so that the chain it continues
# ends within FOLLOW_MAX_SECONDS of then, whatever the message says.
FOLLOW_UP_CLOCK_SKEW_SECONDS: Final = 5.0


class EnvelopeKind(StrEnum):
    EVENTBRIDGE = "eventbridge"  # {"detail-type", "detail": <input>, "id", "source", ...}
    LAMBDA_DESTINATION = "lambda-destination"  # {"requestContext", "requestPayload": <input>}


@dataclass(frozen=True)
class Envelope:
    kind: EnvelopeKind
    fields: Mapping[str, Any]  # the envelope object itself

    @property
    def delivery_id(self) -> object:
        """The event id or the failed invocation's request id, as the envelope gives it."""
        if self.kind is EnvelopeKind.EVENTBRIDGE:
            return self.fields.get("id")
        return self.fields["requestContext"].get("requestId")


@dataclass(frozen=True)
class Unwrapped:
    envelopes: tuple[Envelope, ...]  # outermost first
    payload: object  # what the innermost envelope holds: the trigger shape, if it is valid


def unwrap(payload: object) -> Unwrapped:
    """Peel off at most MAX_ENVELOPE_DEPTH envelopes; the one depth rule for every reader."""
    envelopes: list[Envelope] = []
    while isinstance(payload, dict) and len(envelopes) < MAX_ENVELOPE_DEPTH:
        if "detail-type" in payload and isinstance(payload.get("detail"), dict):
            envelopes.append(Envelope(EnvelopeKind.EVENTBRIDGE, payload))
            payload = payload["detail"]
        elif isinstance(payload.get("requestContext"), dict) and "requestPayload" in payload:
            envelopes.append(Envelope(EnvelopeKind.LAMBDA_DESTINATION, payload))
            payload = payload["requestPayload"]
        else:
            break
    return Unwrapped(tuple(envelopes), payload)


def listed_ids(payload: object) -> list[object]:
    """The ids an input names, without judging them (for tools reading the DLQ): portfolioId
    first, then portfolioIds, after unwrapping its envelopes; [] for anything else."""
    inner = unwrap(payload).payload
    if not isinstance(inner, dict):
        return []
    ids: list[object] = [inner[PORTFOLIO_ID]] if PORTFOLIO_ID in inner else []
    many = inner.get(PORTFOLIO_IDS)
    if isinstance(many, list):
        ids.extend(many)
    return ids


def trigger_input(
    portfolio_id: object,
    skip_schedule_validation: bool,
    *,
    delivery_key: str | None = None,
    idempotency_key: str | None = None,
    may_have_started: Sequence[Window] = (),
    metadata: Mapping[str, str] | None = None,
    queued_by: str | None = None,
) -> str:
    """The body of one portfolio's input: what the function writes to its DLQ and work queue.
    `delivery_key` names the very delivery the portfolio belongs to (a dead letter, a deferral:
    what that delivery triggered since stays done on replay); `idempotency_key` starts a new
    delivery derived from it (a fan-out's messages)."""
    body: dict[str, object] = {
        PORTFOLIO_ID: portfolio_id,
        SKIP_SCHEDULE_VALIDATION: skip_schedule_validation,
    }
    if delivery_key is not None:
        body[DELIVERY_KEY_FIELD] = delivery_key
    if idempotency_key is not None:
        body[IDEMPOTENCY_KEY] = idempotency_key
    if queued_by is not None:
        body[QUEUED_BY] = queued_by
    # Where the delivery began (a schedule's run), carried for the logs of what it triggers.
    for name in CARRIED_METADATA:
        if metadata and name in metadata:
            body[name] = metadata[name]
    # One window holding them all: a body stays one simple shape (schemas/trigger-input).
    held = hull(may_have_started)
    if held is not None:
        window = {"after": iso_time(held.after)}
        if held.before is not None:
            window["before"] = iso_time(held.before)
        body[MAY_HAVE_STARTED] = window
    return json.dumps(body, default=str)


def resumed_input(
    request: TriggerRequest, *, may_have_started: Sequence[Window] = (), queued: bool = False
) -> str:
    """One portfolio of a delivery, to be taken up (again) as part of that same delivery: an
    event's portfolio queued, a message split, a dead letter, a deferral. It carries the
    delivery's key, the schedule run it began with, and when an attempt of it may have started
    a rebalance whose answer was lost; `queued` (the function's own queued message, not a
    letter), the transport that carried the delivery in."""
    return trigger_input(
        request.portfolio_id,
        request.skip_schedule_validation,
        delivery_key=request.source.dedupe_key,
        may_have_started=may_have_started,
        metadata=request.source.metadata,
        queued_by=request.source.transport if queued else None,
    )


def iso_time(epoch: float) -> str:
    """Epoch seconds as ISO 8601 UTC with milliseconds, the way Glider writes times."""
    return (
        datetime.fromtimestamp(epoch, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    )


def epoch_of(value: object) -> float | None:
    """An ISO 8601 time with a zone ("2023-05-21T13:30:00.123Z") as epoch seconds; else None."""
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment.timestamp() if moment.tzinfo is not None else None


def follow_up_body(follow_up: FollowUp) -> str:
    """The body of a follow-up message."""
    body: dict[str, object] = {
        PORTFOLIO_ID: follow_up.portfolio_id,
        "rebalanceId": follow_up.rebalance_id,
        "triggeredAt": iso_time(follow_up.triggered_at),
        "number": follow_up.number,
        SKIP_SCHEDULE_VALIDATION: follow_up.skip_schedule_validation,
    }
    if follow_up.delivery_key is not None:
        body[DELIVERY_KEY_FIELD] = follow_up.delivery_key
    if follow_up.api_version is not None:
        body[API_VERSION_FIELD] = follow_up.api_version
    return json.dumps({FOLLOW_UP: body})


def is_follow_up(payload: object) -> TypeGuard[Mapping[str, Any]]:
    return isinstance(payload, dict) and FOLLOW_UP in payload


def parse_follow_up(payload: Mapping[str, Any], *, now: float | None = None) -> FollowUp:
    """A follow-up message's body, received `now` (epoch seconds; default: the clock's now);
    InvalidInputError when it is not a valid one. A triggeredAt later than `now` by more than
    FOLLOW_UP_CLOCK_SKEW_SECONDS is read as `now`."""
    received_at = time.time() if now is None else now
    inner = payload[FOLLOW_UP]
    fields = inner if isinstance(inner, dict) else {}
    triggered_at = epoch_of(fields.get("triggeredAt"))
    if triggered_at is None or not _valid_follow_up(fields):
        raise InvalidInputError(
            f"{FOLLOW_UP} must hold portfolioId, rebalanceId, triggeredAt (ISO 8601) and number "
            "(1 or more) (it is the function's own message)"
        )
    try:
        portfolio_id = validate_portfolio_id(fields.get(PORTFOLIO_ID))
    except InvalidPortfolioIdError as exc:
        raise InvalidInputError(f"{FOLLOW_UP}: {exc}") from exc
    if triggered_at > received_at + FOLLOW_UP_CLOCK_SKEW_SECONDS:
        triggered_at = received_at
    return FollowUp(
        portfolio_id,
        fields["rebalanceId"],
        fields.get(SKIP_SCHEDULE_VALIDATION, False),
        fields.get(DELIVERY_KEY_FIELD),
        triggered_at,
        fields["number"],
        fields.get(API_VERSION_FIELD),
    )


def _valid_follow_up(fields: Mapping[str, Any]) -> bool:
    """Every field of a follow-up but its portfolio id and time, of its type and range."""
    rebalance_id, number = fields.get("rebalanceId"), fields.get("number")
    return (
        isinstance(rebalance_id, str)
        and 0 < len(rebalance_id) <= MAX_REBALANCE_ID_CHARS
        and type(number) is int
        and number >= 1
        and isinstance(fields.get(SKIP_SCHEDULE_VALIDATION, False), bool)
        and _optional_text(fields.get(DELIVERY_KEY_FIELD))
        and _optional_text(fields.get(API_VERSION_FIELD))
    )


def _optional_text(value: object) -> bool:
    return value is None or (isinstance(value, str) and bool(value))


def validate_portfolio_id(portfolio_id: object) -> str:
    if not isinstance(portfolio_id, str):
        raise InvalidPortfolioIdError(
            f"portfolio id must be a string, got {type(portfolio_id).__name__}"
        )
    if not PORTFOLIO_ID_PATTERN.fullmatch(portfolio_id):
        raise InvalidPortfolioIdError(
            f"portfolio id {portfolio_id[:140]!r} is not 1-128 letters, digits, '_' or '-'"
        )
    return portfolio_id


def invocation_key(request_id: str) -> str:
    """The key of a Lambda invocation's delivery: Lambda keeps its request id across its own
    retries of an asynchronous invocation, and an on-failure record names it."""
    return delivery_key("lambda", request_id)


def keyed(kind: str, value: object) -> str | None:
    """delivery_key of an outside value, or None when it is not a non-empty string or number."""
    text = text_of(value)
    return delivery_key(kind, text) if text is not None else None


def parse(payload: object, *, default_skip: bool, transport: InputSource | None) -> ParsedInput:
    """An input as trigger requests (and the ids it rejected); InvalidInputError when it is not
    one. `transport` is what carried it (an SQS message), if anything did."""
    unwrapped = unwrap(payload)
    delivery = transport
    for envelope in unwrapped.envelopes:
        delivery = _nest(delivery, _source_of(envelope))
    inner = unwrapped.payload
    if not isinstance(inner, dict):
        raise InvalidInputError(f"input must be a JSON object, got {json_type(inner)}")
    skip = inner.get(SKIP_SCHEDULE_VALIDATION, default_skip)
    if not isinstance(skip, bool):
        # A consequential flag: "false" as a string must not silently mean anything.
        raise InvalidInputError(
            f"{SKIP_SCHEDULE_VALIDATION} must be true or false, got {json_type(skip)}"
        )
    candidates = _candidate_ids(inner)
    metadata = metadata_of(inner, {name: name for name in METADATA_FIELDS})
    kind = SourceKind.SCHEDULE if SCHEDULE_ARN in metadata else SourceKind.DIRECT
    source = _nest(delivery, InputSource(kind, metadata=metadata, dedupe_key=_content_key(inner)))
    source = replace(source, queued_by=_queued_by(inner))
    window = _window(inner)
    requests: dict[str, TriggerRequest] = {}
    rejected: list[RejectedId] = []
    seen_rejected: set[str] = set()
    for candidate in candidates:
        try:
            portfolio_id = validate_portfolio_id(candidate)
        except InvalidPortfolioIdError as exc:
            key = json.dumps(candidate, sort_keys=True, default=str)
            if key not in seen_rejected:
                seen_rejected.add(key)
                rejected.append(RejectedId(candidate, skip, exc))
            continue
        requests.setdefault(portfolio_id, TriggerRequest(portfolio_id, skip, source, window))
    return ParsedInput(source, tuple(requests.values()), tuple(rejected))


def source_of(payload: object) -> InputSource:
    """Where an input that is not one came from, as far as its envelopes say: an EventBridge
    event keeps its event id and source even when its detail is unreadable (its letter is
    then `eventbridge:<id>`, like any rule event's); anything else is a direct invocation."""
    unwrapped = unwrap(payload)
    envelopes = list(unwrapped.envelopes)
    inner = unwrapped.payload
    if _looks_like_event(inner) and len(envelopes) < MAX_ENVELOPE_DEPTH:
        envelopes.append(Envelope(EnvelopeKind.EVENTBRIDGE, inner))  # its detail is no object
    source: InputSource | None = None
    for envelope in envelopes:
        source = _nest(source, _source_of(envelope))
    return source or InputSource(SourceKind.DIRECT)


def _looks_like_event(payload: object) -> TypeGuard[Mapping[str, Any]]:
    """An EventBridge event whatever its detail: the fields every event has."""
    return isinstance(payload, dict) and {"detail-type", "source", "id"} <= payload.keys()


def _source_of(envelope: Envelope) -> InputSource:
    if envelope.kind is EnvelopeKind.EVENTBRIDGE:
        return InputSource(
            SourceKind.EVENTBRIDGE,
            delivery_id=short(envelope.delivery_id),
            metadata=metadata_of(
                envelope.fields, {"detailType": "detail-type", "eventSource": "source"}
            ),
            dedupe_key=keyed("event", envelope.delivery_id),
        )
    request_id = text_of(envelope.delivery_id)
    return InputSource(
        SourceKind.LAMBDA_DESTINATION,
        delivery_id=short(request_id),
        metadata=metadata_of(envelope.fields["requestContext"], {"condition": "condition"}),
        # The failed invocation's key: what it had triggered stays triggered on replay.
        dedupe_key=invocation_key(request_id) if request_id is not None else None,
    )


def _nest(outer: InputSource | None, inner: InputSource) -> InputSource:
    """The transport (kind, delivery id) is the outermost layer's; the de-duplication key is the
    innermost layer's that has one, because the content outlives its transport: an EventBridge
    event delivered twice through an SQS target arrives as two messages with one event id."""
    if outer is None:
        return inner
    return InputSource(
        outer.kind,
        outer.delivery_id,
        {**outer.metadata, **inner.metadata},
        inner.dedupe_key or outer.dedupe_key,
    )


def _content_key(payload: Mapping[str, Any]) -> str | None:
    """The function's own deliveryKey (a dead letter or a deferral: the very delivery it came
    from), else an upstream's idempotencyKey, else a schedule occurrence (Scheduler stamps the
    same ARN and scheduled time on every retry of one run). A key that cannot be a key is
    malformed input, whichever of them wins."""
    upstream = None
    if IDEMPOTENCY_KEY in payload:
        text = text_of(payload[IDEMPOTENCY_KEY])
        if text is None:
            raise InvalidInputError(
                f"{IDEMPOTENCY_KEY} must be a non-empty string or a number, got "
                f"{json_type(payload[IDEMPOTENCY_KEY])}"
            )
        upstream = delivery_key("key", text)
    if DELIVERY_KEY_FIELD in payload:
        own = payload[DELIVERY_KEY_FIELD]
        if not isinstance(own, str) or not own or len(own) > MAX_KEY_CHARS:
            raise InvalidInputError(
                f"{DELIVERY_KEY_FIELD} must be a string of 1-{MAX_KEY_CHARS} characters "
                f"(it is the function's own field; upstream producers use {IDEMPOTENCY_KEY})"
            )
        return own
    if upstream is not None:
        return upstream
    arn, when = text_of(payload.get(SCHEDULE_ARN)), text_of(payload.get(SCHEDULED_TIME))
    if arn is not None and when is not None:
        return delivery_key("schedule", f"{arn}@{when}")
    return None


def _queued_by(payload: Mapping[str, Any]) -> str | None:
    if QUEUED_BY not in payload:
        return None
    value = payload[QUEUED_BY]
    if not isinstance(value, str) or not value or len(value) > MAX_KEY_CHARS:
        raise InvalidInputError(
            f"{QUEUED_BY} must be a string of 1-{MAX_KEY_CHARS} characters (it is the "
            "function's own field)"
        )
    return value


def _window(payload: Mapping[str, Any]) -> tuple[Window, ...]:
    if MAY_HAVE_STARTED not in payload:
        return ()
    value = payload[MAY_HAVE_STARTED]
    after = epoch_of(value.get("after")) if isinstance(value, dict) else None
    before = epoch_of(value.get("before")) if isinstance(value, dict) else None
    if after is None or (isinstance(value, dict) and "before" in value and before is None):
        raise InvalidInputError(
            f'{MAY_HAVE_STARTED} must be {{"after": <ISO 8601 time>, "before": <optional>}} '
            "(it is the function's own field)"
        )
    return (Window(after, before),)


def _candidate_ids(payload: Mapping[str, Any]) -> list[object]:
    has_one, has_many = PORTFOLIO_ID in payload, PORTFOLIO_IDS in payload
    if not (has_one or has_many):
        raise InvalidInputError(
            f"input has no {PORTFOLIO_ID} or {PORTFOLIO_IDS} "
            f"(fields: {', '.join(sorted(map(str, payload))[:10]) or 'none'})"
        )
    candidates: list[object] = []
    if has_one:
        candidates.append(payload[PORTFOLIO_ID])
    if has_many:
        many = payload[PORTFOLIO_IDS]
        if not isinstance(many, list):
            raise InvalidInputError(f"{PORTFOLIO_IDS} must be a list, got {json_type(many)}")
        candidates.extend(many)
    if not candidates:
        raise InvalidInputError(f"{PORTFOLIO_IDS} is empty: nothing to trigger")
    return candidates


def metadata_of(payload: Mapping[str, Any], fields: Mapping[str, str]) -> dict[str, str]:
    """The named fields of `payload` (log name: field name), shortened for logs."""
    kept = {}
    for name, source_field in fields.items():
        value = short(payload.get(source_field))
        if value is not None:
            kept[name] = value
    return kept


def short(value: object) -> str | None:
    text = text_of(value)
    return text[:MAX_METADATA_CHARS] if text is not None else None


def text_of(value: object) -> str | None:
    """A string or number from the input as text, in full; None for anything else or ""."""
    if isinstance(value, str | int | float) and not isinstance(value, bool):
        return str(value) or None
    return None


def json_type(value: object) -> str:
    names = {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}
    return names.get(type(value), "number" if isinstance(value, int | float) else "unknown")
