"""Turns every supported input into trigger requests, or a classified error.

Supported shapes (see README "Event formats"):
- constant input from EventBridge Scheduler or a rule target: {"portfolioId": ...} or
  {"portfolioIds": [...]}, optional "skipScheduleValidation" and metadata;
- an EventBridge event envelope whose "detail" holds that shape;
- an SQS message body holding either of the above;
- an on-failure destination record of this function, whose "requestPayload" holds any of them.
Unknown fields are ignored; duplicate ids are triggered once; anything else is an
InvalidInputError (dead-lettered verbatim by the caller). Nothing here raises anything else.

Delivery keys (what makes a second delivery of the same work recognisable) are built from the
full values, never from the shortened copies kept for logs: a key longer than MAX_KEY_CHARS is
replaced by its SHA-256, so two different keys never become one.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from typing import Any

from glider_trigger.errors import InvalidInputError, InvalidPortfolioIdError
from glider_trigger.models import InputSource, ParsedInput, RejectedId, SourceKind, TriggerRequest

# Opaque ids seen so far look like `port_abc123` or `ao04x0r6`. Letters, digits, `_` and `-`
# cannot change a URL path; anything else is rejected before it reaches the HTTP client.
PORTFOLIO_ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,127}")
# Metadata is only echoed into logs: keep it short.
_METADATA_FIELDS = ("scheduleArn", "scheduledTime", "idempotencyKey")
_MAX_METADATA_CHARS = 256
# A delivery key at most this long is used as it is; a longer one is hashed (see delivery_key).
MAX_KEY_CHARS = 256
# The function's own continuation messages (dead letters, deferrals) name the delivery they
# belong to with this field: its value is that delivery's key, used verbatim.
DELIVERY_KEY_FIELD = "deliveryKey"
# An envelope inside an envelope is the most nesting any supported input has.
_MAX_UNWRAP_DEPTH = 3


def is_sqs_event(event: object) -> bool:
    """Lambda's SQS event: {"Records": [{"eventSource": "aws:sqs", ...}, ...]}."""
    if not isinstance(event, dict):
        return False
    records = event.get("Records")
    return (
        isinstance(records, list)
        and bool(records)
        and all(isinstance(r, dict) and r.get("eventSource") == "aws:sqs" for r in records)
    )


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


def parse_event(event: object, *, default_skip: bool) -> ParsedInput:
    """Parse a non-SQS invocation payload (schedule, rule, bus event, direct, destination)."""
    return _parse(event, default_skip=default_skip, delivery=None, depth=0)


def parse_sqs_body(body: object, *, message_id: str, default_skip: bool) -> ParsedInput:
    """Parse one SQS record's body (a JSON string holding any supported shape)."""
    if not isinstance(body, str):
        raise InvalidInputError("SQS message body is not a string")
    try:
        payload = json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise InvalidInputError(f"SQS message body is not valid JSON: {exc}") from exc
    source = InputSource(SourceKind.SQS, delivery_id=message_id, dedupe_key=f"sqs:{message_id}")
    return _parse(payload, default_skip=default_skip, delivery=source, depth=0)


def trigger_input(
    portfolio_id: object,
    skip_schedule_validation: bool,
    *,
    delivery_key: str | None = None,
    idempotency_key: str | None = None,
) -> str:
    """The body of one portfolio's input, as this module parses it: what the function writes
    to its DLQ and work queue. `delivery_key` names the very delivery the portfolio belongs to
    (a dead letter, a deferral: what that delivery triggered since stays done on replay);
    `idempotency_key` starts a new delivery derived from it (a fan-out's messages)."""
    body: dict[str, object] = {
        "portfolioId": portfolio_id,
        "skipScheduleValidation": skip_schedule_validation,
    }
    if delivery_key is not None:
        body[DELIVERY_KEY_FIELD] = delivery_key
    if idempotency_key is not None:
        body["idempotencyKey"] = idempotency_key
    return json.dumps(body, default=str)


def resumed_input(request: TriggerRequest) -> str:
    """One portfolio of a delivery, to be taken up again later as part of that same delivery
    (a dead letter, a deferral): it carries the delivery's key."""
    return trigger_input(
        request.portfolio_id,
        request.skip_schedule_validation,
        delivery_key=request.source.dedupe_key,
    )


def _parse(
    payload: object, *, default_skip: bool, delivery: InputSource | None, depth: int
) -> ParsedInput:
    if not isinstance(payload, dict):
        raise InvalidInputError(f"input must be a JSON object, got {_json_type(payload)}")
    if depth < _MAX_UNWRAP_DEPTH:
        if _is_eventbridge_envelope(payload):
            layer = InputSource(
                SourceKind.EVENTBRIDGE,
                delivery_id=_short(payload.get("id")),
                metadata=_metadata(payload, {"detailType": "detail-type", "eventSource": "source"}),
                dedupe_key=_keyed("event", payload.get("id")),
            )
            return _parse(
                payload["detail"],
                default_skip=default_skip,
                delivery=_nest(delivery, layer),
                depth=depth + 1,
            )
        if _is_destination_record(payload):
            context = payload["requestContext"]
            layer = InputSource(
                SourceKind.LAMBDA_DESTINATION,
                delivery_id=_short(context.get("requestId")),
                metadata=_metadata(context, {"condition": "condition"}),
                # The failed invocation's key: what it had triggered stays triggered on replay.
                dedupe_key=_keyed("lambda", context.get("requestId")),
            )
            return _parse(
                payload["requestPayload"],
                default_skip=default_skip,
                delivery=_nest(delivery, layer),
                depth=depth + 1,
            )
    return _parse_trigger_shape(payload, default_skip=default_skip, delivery=delivery)


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


def _parse_trigger_shape(
    payload: dict[str, Any], *, default_skip: bool, delivery: InputSource | None
) -> ParsedInput:
    skip = payload.get("skipScheduleValidation", default_skip)
    if not isinstance(skip, bool):
        # A consequential flag: "false" as a string must not silently mean anything.
        raise InvalidInputError(
            f"skipScheduleValidation must be true or false, got {_json_type(skip)}"
        )
    candidates = _candidate_ids(payload)
    metadata = _metadata(payload, {name: name for name in _METADATA_FIELDS})
    kind = SourceKind.SCHEDULE if "scheduleArn" in metadata else SourceKind.DIRECT
    source = _nest(delivery, InputSource(kind, metadata=metadata, dedupe_key=_content_key(payload)))
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
        requests.setdefault(portfolio_id, TriggerRequest(portfolio_id, skip, source))
    return ParsedInput(source, tuple(requests.values()), tuple(rejected))


def delivery_key(kind: str, value: str) -> str:
    """`kind:value`, or `kind:sha256:<hex of value>` when that would exceed MAX_KEY_CHARS:
    bounded (it travels in message bodies) and never shared by two different values."""
    key = f"{kind}:{value}"
    if len(key) <= MAX_KEY_CHARS:
        return key
    digest = hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()
    return f"{kind}:sha256:{digest}"


def _keyed(kind: str, value: object) -> str | None:
    text = _text(value)
    return delivery_key(kind, text) if text is not None else None


def _content_key(payload: Mapping[str, Any]) -> str | None:
    """The function's own deliveryKey (a dead letter or a deferral: the very delivery it came
    from), else an upstream's idempotencyKey, else a schedule occurrence (Scheduler stamps the
    same ARN and scheduled time on every retry of one run)."""
    if DELIVERY_KEY_FIELD in payload:
        own = payload[DELIVERY_KEY_FIELD]
        if not isinstance(own, str) or not own or len(own) > MAX_KEY_CHARS:
            raise InvalidInputError(
                f"{DELIVERY_KEY_FIELD} must be a string of 1-{MAX_KEY_CHARS} characters "
                "(it is the function's own field; upstream producers use idempotencyKey)"
            )
        return own
    if "idempotencyKey" in payload:
        key = _text(payload["idempotencyKey"])
        if key is None:
            raise InvalidInputError(
                "idempotencyKey must be a non-empty string or a number, got "
                f"{_json_type(payload['idempotencyKey'])}"
            )
        return delivery_key("key", key)
    arn, when = _text(payload.get("scheduleArn")), _text(payload.get("scheduledTime"))
    if arn is not None and when is not None:
        return delivery_key("schedule", f"{arn}@{when}")
    return None


def _candidate_ids(payload: Mapping[str, Any]) -> list[object]:
    has_one, has_many = "portfolioId" in payload, "portfolioIds" in payload
    if not (has_one or has_many):
        raise InvalidInputError(
            "input has no portfolioId or portfolioIds "
            f"(fields: {', '.join(sorted(map(str, payload))[:10]) or 'none'})"
        )
    candidates: list[object] = []
    if has_one:
        candidates.append(payload["portfolioId"])
    if has_many:
        many = payload["portfolioIds"]
        if not isinstance(many, list):
            raise InvalidInputError(f"portfolioIds must be a list, got {_json_type(many)}")
        candidates.extend(many)
    if not candidates:
        raise InvalidInputError("portfolioIds is empty: nothing to trigger")
    return candidates


def _is_eventbridge_envelope(payload: Mapping[str, Any]) -> bool:
    return "detail-type" in payload and isinstance(payload.get("detail"), dict)


def _is_destination_record(payload: Mapping[str, Any]) -> bool:
    return isinstance(payload.get("requestContext"), dict) and "requestPayload" in payload


def _metadata(payload: Mapping[str, Any], fields: Mapping[str, str]) -> dict[str, str]:
    kept = {}
    for name, source_field in fields.items():
        value = _short(payload.get(source_field))
        if value is not None:
            kept[name] = value
    return kept


def _short(value: object) -> str | None:
    text = _text(value)
    return text[:_MAX_METADATA_CHARS] if text is not None else None


def _text(value: object) -> str | None:
    """A string or number from the input as text, in full; None for anything else or ""."""
    if isinstance(value, str | int | float) and not isinstance(value, bool):
        return str(value) or None
    return None


def _json_type(value: object) -> str:
    names = {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}
    return names.get(type(value), "number" if isinstance(value, int | float) else "unknown")
