"""The trigger-input contract and Lambda's event shapes: every supported shape, every way an
input can be wrong."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from glider_trigger.domain.errors import InvalidInputError, InvalidPortfolioIdError
from glider_trigger.domain.models import ParsedInput, SourceKind
from glider_trigger.domain.trigger_input import (
    MAX_KEY_CHARS,
    PORTFOLIO_ID_PATTERN,
    delivery_key,
    resumed_input,
    trigger_input,
    validate_portfolio_id,
)
from glider_trigger.inbound.events import is_sqs_event, parse_event, parse_sqs_body

SCHEDULE_ARN = "arn:aws:scheduler:eu-west-1:123456789012:schedule/default/rebalance-daily"


def ids(parsed: ParsedInput) -> list[str]:
    return [request.portfolio_id for request in parsed.requests]


# --- the trigger shape ---------------------------------------------------------------------


def test_single_id_becomes_one_request() -> None:
    parsed = parse_event({"portfolioId": "port_abc123"}, default_skip=False)

    assert ids(parsed) == ["port_abc123"]
    assert parsed.rejected == ()
    assert parsed.requests[0].skip_schedule_validation is False
    assert parsed.source.kind is SourceKind.DIRECT
    assert parsed.requests[0].source == parsed.source


def test_list_of_ids_becomes_one_request_each_in_order() -> None:
    parsed = parse_event({"portfolioIds": ["b1", "a2", "c3"]}, default_skip=False)

    assert ids(parsed) == ["b1", "a2", "c3"]


def test_both_fields_are_a_union_single_id_first() -> None:
    parsed = parse_event(
        {"portfolioId": "port_one", "portfolioIds": ["port_two", "port_one", "port_three"]},
        default_skip=False,
    )

    assert ids(parsed) == ["port_one", "port_two", "port_three"]


def test_duplicates_are_triggered_once_and_first_order_is_kept() -> None:
    parsed = parse_event({"portfolioIds": ["z9", "a1", "z9", "m5", "a1", "z9"]}, default_skip=False)

    assert ids(parsed) == ["z9", "a1", "m5"]


def test_duplicate_invalid_ids_are_rejected_once() -> None:
    parsed = parse_event({"portfolioIds": ["a/b", "ok1", "a/b", 7, 7]}, default_skip=False)

    assert ids(parsed) == ["ok1"]
    assert [r.portfolio_id for r in parsed.rejected] == ["a/b", 7]


@pytest.mark.parametrize(
    ("payload", "default_skip", "expected"),
    [
        ({"skipScheduleValidation": True}, False, True),
        ({"skipScheduleValidation": False}, True, False),
        ({}, False, False),
        ({}, True, True),
    ],
)
def test_skip_schedule_validation_explicit_or_default(
    payload: dict[str, Any], default_skip: bool, expected: bool
) -> None:
    parsed = parse_event({"portfolioIds": ["p1", "p2"], **payload}, default_skip=default_skip)

    assert [r.skip_schedule_validation for r in parsed.requests] == [expected, expected]


@pytest.mark.parametrize("value", ["true", "false", 1, 0, None, [], {}])
def test_skip_schedule_validation_that_is_not_a_bool_is_invalid_input(value: object) -> None:
    with pytest.raises(InvalidInputError, match="skipScheduleValidation"):
        parse_event({"portfolioId": "p1", "skipScheduleValidation": value}, default_skip=False)


def test_rejected_ids_carry_the_skip_flag_of_their_input() -> None:
    parsed = parse_event(
        {"portfolioIds": ["a b"], "skipScheduleValidation": True}, default_skip=False
    )

    assert parsed.rejected[0].skip_schedule_validation is True


def test_unknown_fields_are_ignored() -> None:
    parsed = parse_event(
        {"portfolioId": "p1", "colour": "blue", "nested": {"x": [1, 2]}, "portfolio": "x/y"},
        default_skip=False,
    )

    assert ids(parsed) == ["p1"]
    assert parsed.rejected == ()


# --- envelopes -----------------------------------------------------------------------------


def test_eventbridge_envelope_is_unwrapped_and_keeps_its_identity() -> None:
    event = {
        "version": "0",
        "id": "6a7e8feb-b491-4cf7-a9f1-bf3703467718",
        "detail-type": "Rebalance Requested",
        "source": "com.example.portfolios",
        "account": "123456789012",
        "time": "2024-01-01T00:00:00Z",
        "region": "eu-west-1",
        "resources": [],
        "detail": {"portfolioIds": ["port_abc123"], "skipScheduleValidation": True},
    }

    parsed = parse_event(event, default_skip=False)

    assert ids(parsed) == ["port_abc123"]
    assert parsed.requests[0].skip_schedule_validation is True
    assert parsed.source.kind is SourceKind.EVENTBRIDGE
    assert parsed.source.delivery_id == "6a7e8feb-b491-4cf7-a9f1-bf3703467718"
    assert parsed.source.metadata["detailType"] == "Rebalance Requested"
    assert parsed.source.metadata["eventSource"] == "com.example.portfolios"
    assert parsed.requests[0].source.kind is SourceKind.EVENTBRIDGE


def test_eventbridge_envelope_whose_detail_lacks_ids_is_invalid_input() -> None:
    event = {"id": "e1", "detail-type": "Something", "source": "x", "detail": {"other": 1}}

    with pytest.raises(InvalidInputError, match="portfolioId"):
        parse_event(event, default_skip=False)


def test_scheduler_constant_input_is_a_schedule_with_its_metadata() -> None:
    event = {
        "portfolioId": "ao04x0r6",
        "scheduleArn": SCHEDULE_ARN,
        "scheduledTime": "2024-03-01T06:00:00Z",
    }

    parsed = parse_event(event, default_skip=False)

    assert ids(parsed) == ["ao04x0r6"]
    assert parsed.source.kind is SourceKind.SCHEDULE
    assert parsed.source.metadata["scheduleArn"] == SCHEDULE_ARN
    assert parsed.source.metadata["scheduledTime"] == "2024-03-01T06:00:00Z"


def test_on_failure_destination_record_is_unwrapped() -> None:
    record = {
        "version": "1.0",
        "timestamp": "2024-03-01T06:00:05.000Z",
        "requestContext": {
            "requestId": "c6af9ac6-7b61-11e6-9a41-93e812345678",
            "functionArn": "arn:aws:lambda:eu-west-1:123456789012:function:trigger:$LATEST",
            "condition": "RetriesExhausted",
            "approximateInvokeCount": 3,
        },
        "requestPayload": {"portfolioIds": ["port_abc123", "A-b_9"]},
        "responseContext": {"statusCode": 200, "functionError": "Unhandled"},
        "responsePayload": {"errorMessage": "DLQ write failed"},
    }

    parsed = parse_event(record, default_skip=False)

    assert ids(parsed) == ["port_abc123", "A-b_9"]
    assert parsed.source.kind is SourceKind.LAMBDA_DESTINATION
    assert parsed.source.delivery_id == "c6af9ac6-7b61-11e6-9a41-93e812345678"
    assert parsed.source.metadata["condition"] == "RetriesExhausted"


def test_destination_record_holding_an_eventbridge_envelope_is_unwrapped_twice() -> None:
    record = {
        "requestContext": {"requestId": "r1", "condition": "RetriesExhausted"},
        "requestPayload": {"id": "e1", "detail-type": "T", "detail": {"portfolioId": "p1"}},
    }

    parsed = parse_event(record, default_skip=False)

    assert ids(parsed) == ["p1"]
    assert parsed.source.kind is SourceKind.LAMBDA_DESTINATION


def test_sqs_body_with_plain_shape() -> None:
    body = json.dumps({"portfolioId": "port_abc123", "skipScheduleValidation": True})

    parsed = parse_sqs_body(body, message_id="msg-1", default_skip=False)

    assert ids(parsed) == ["port_abc123"]
    assert parsed.requests[0].skip_schedule_validation is True
    assert parsed.source.kind is SourceKind.SQS
    assert parsed.source.delivery_id == "msg-1"


def test_sqs_body_holding_an_envelope_stays_sqs_with_the_message_id() -> None:
    body = json.dumps(
        {
            "id": "event-id-1",
            "detail-type": "Rebalance Requested",
            "source": "com.example",
            "detail": {"portfolioIds": ["p1", "p2"]},
        }
    )

    parsed = parse_sqs_body(
        body, message_id="059f36b4-87a3-44ab-83d2-661975830a7d", default_skip=True
    )

    assert ids(parsed) == ["p1", "p2"]
    assert parsed.source.kind is SourceKind.SQS
    assert parsed.source.delivery_id == "059f36b4-87a3-44ab-83d2-661975830a7d"
    assert all(r.skip_schedule_validation for r in parsed.requests)
    assert all(r.source.kind is SourceKind.SQS for r in parsed.requests)


# --- malformed input -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("event", "message"),
    [
        ({}, "no portfolioId or portfolioIds"),
        ({"portfolio": "p1", "id": "x"}, "no portfolioId or portfolioIds"),
        ({"portfolioIds": []}, "empty"),
        ({"portfolioIds": "p1"}, "portfolioIds must be a list, got string"),
        ({"portfolioIds": {"a": "p1"}}, "portfolioIds must be a list, got object"),
        ({"portfolioIds": 5}, "portfolioIds must be a list, got number"),
        ({"portfolioIds": None}, "portfolioIds must be a list, got null"),
        (["p1"], "must be a JSON object, got array"),
        ("p1", "must be a JSON object, got string"),
        (None, "must be a JSON object, got null"),
        (42, "must be a JSON object, got number"),
        (True, "must be a JSON object, got boolean"),
        ({"id": "e", "detail-type": "T", "detail": {}}, "no portfolioId"),
        ({"requestContext": {"condition": "x"}, "requestPayload": "p1"}, "JSON object"),
    ],
)
def test_malformed_input_is_invalid_input_that_says_what_is_wrong(
    event: object, message: str
) -> None:
    with pytest.raises(InvalidInputError) as caught:
        parse_event(event, default_skip=False)

    assert message in str(caught.value)
    assert caught.value.reason == "MALFORMED_INPUT"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("not json", "not valid JSON"),
        ('{"portfolioId": ', "not valid JSON"),
        ("", "not valid JSON"),
        ('["p1"]', "must be a JSON object, got array"),
        ('"p1"', "must be a JSON object, got string"),
        ("null", "must be a JSON object, got null"),
        ("{}", "no portfolioId"),
        ('{"portfolioIds": []}', "empty"),
    ],
)
def test_malformed_sqs_body_is_invalid_input_that_says_what_is_wrong(
    body: str, message: str
) -> None:
    with pytest.raises(InvalidInputError) as caught:
        parse_sqs_body(body, message_id="m1", default_skip=False)

    assert message in str(caught.value)


@pytest.mark.parametrize("body", [None, b'{"portfolioId": "p1"}', 12, {"portfolioId": "p1"}])
def test_sqs_body_that_is_not_a_string_is_invalid_input(body: object) -> None:
    with pytest.raises(InvalidInputError, match="not a string"):
        parse_sqs_body(body, message_id="m1", default_skip=False)


def test_deeply_nested_sqs_body_is_invalid_input_not_a_crash() -> None:
    with pytest.raises(InvalidInputError):
        parse_sqs_body("[" * 100_000 + "]" * 100_000, message_id="m1", default_skip=False)


# --- portfolio ids -------------------------------------------------------------------------

INVALID_IDS: list[object] = [
    "../x",
    "a/b",
    "a?b",
    "a#b",
    "a b",
    "a\nb",
    "abc\n",
    "",
    "a" * 129,
    "%2e%2e",
    "portfölio",
    "ポートフォリオ",
    "-leading-dash",
    "_leading_underscore",
    123,
    None,
    True,
    ["p1"],
    {"id": "p1"},
]
VALID_IDS = ["port_abc123", "ao04x0r6", "A-b_9", "a", "9", "a" * 128]


@pytest.mark.parametrize("bad", INVALID_IDS, ids=repr)
def test_invalid_id_is_rejected_while_valid_ids_of_the_same_input_come_through(
    bad: object,
) -> None:
    parsed = parse_event({"portfolioIds": ["port_abc123", bad, "ao04x0r6"]}, default_skip=False)

    assert ids(parsed) == ["port_abc123", "ao04x0r6"]
    assert len(parsed.rejected) == 1
    assert parsed.rejected[0].portfolio_id == bad
    assert isinstance(parsed.rejected[0].error, InvalidPortfolioIdError)
    assert parsed.rejected[0].error.reason == "INVALID_PORTFOLIO_ID"


@pytest.mark.parametrize("bad", INVALID_IDS, ids=repr)
def test_validate_portfolio_id_refuses_invalid_ids(bad: object) -> None:
    with pytest.raises(InvalidPortfolioIdError):
        validate_portfolio_id(bad)


@pytest.mark.parametrize("good", VALID_IDS)
def test_validate_portfolio_id_accepts_valid_ids_unchanged(good: str) -> None:
    assert validate_portfolio_id(good) == good
    assert ids(parse_event({"portfolioId": good}, default_skip=False)) == [good]


def test_single_invalid_id_gives_no_requests_and_one_rejection() -> None:
    parsed = parse_event({"portfolioId": "../etc/passwd"}, default_skip=False)

    assert parsed.requests == ()
    assert [r.portfolio_id for r in parsed.rejected] == ["../etc/passwd"]


# --- SQS event detection -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("event", "expected"),
    [
        ({"Records": [{"eventSource": "aws:sqs", "body": "{}"}]}, True),
        ({"Records": [{"eventSource": "aws:sqs"}, {"eventSource": "aws:sqs"}]}, True),
        ({"Records": []}, False),
        ({"Records": [{"eventSource": "aws:sqs"}, {"eventSource": "aws:sns"}]}, False),
        ({"Records": [{"eventSource": "aws:s3"}]}, False),
        ({"Records": ["aws:sqs"]}, False),
        ({"Records": {"eventSource": "aws:sqs"}}, False),
        ({"portfolioId": "p1"}, False),
        ([{"eventSource": "aws:sqs"}], False),
        (None, False),
    ],
)
def test_is_sqs_event(event: object, expected: bool) -> None:
    assert is_sqs_event(event) is expected


# --- properties ----------------------------------------------------------------------------

_KEYS = st.sampled_from(
    [
        "portfolioId",
        "portfolioIds",
        "detail",
        "detail-type",
        "skipScheduleValidation",
        "requestContext",
        "requestPayload",
        "id",
        "scheduleArn",
    ]
) | st.text(max_size=10)
_IDS = st.from_regex(PORTFOLIO_ID_PATTERN, fullmatch=True)
_LEAVES = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20) | _IDS
JSON_VALUES = st.recursive(
    _LEAVES,
    lambda children: st.lists(children, max_size=5) | st.dictionaries(_KEYS, children, max_size=6),
    max_leaves=40,
)
# Trigger-shaped objects (optionally inside envelopes), so that many examples are accepted.
_ID_OR_ANY = _IDS | _LEAVES
_TRIGGER_SHAPES = st.fixed_dictionaries(
    {},
    optional={
        "portfolioId": _ID_OR_ANY,
        "portfolioIds": st.lists(_ID_OR_ANY, max_size=6) | _LEAVES,
        "skipScheduleValidation": st.booleans() | _LEAVES,
        "scheduleArn": _LEAVES,
        "extra": JSON_VALUES,
    },
)
SHAPED = st.recursive(
    _TRIGGER_SHAPES,
    lambda inner: (
        st.builds(
            lambda detail, event_id: {"id": event_id, "detail-type": "T", "detail": detail},
            inner,
            _LEAVES,
        )
        | st.builds(
            lambda payload, context: {"requestContext": context, "requestPayload": payload},
            inner | JSON_VALUES,
            st.dictionaries(_KEYS, _LEAVES, max_size=3),
        )
    ),
    max_leaves=4,
)
ANY_EVENT = JSON_VALUES | SHAPED


def _check_accepted(parsed: ParsedInput) -> None:
    assert isinstance(parsed, ParsedInput)
    for request in parsed.requests:
        assert PORTFOLIO_ID_PATTERN.fullmatch(request.portfolio_id)
    assert len({r.portfolio_id for r in parsed.requests}) == len(parsed.requests)
    for rejected in parsed.rejected:
        assert isinstance(rejected.error, InvalidPortfolioIdError)


@settings(max_examples=300, deadline=None)
@given(event=ANY_EVENT, default_skip=st.booleans())
def test_parse_event_returns_parsed_input_or_invalid_input_error(
    event: object, default_skip: bool
) -> None:
    try:
        parsed = parse_event(event, default_skip=default_skip)
    except InvalidInputError:
        return
    _check_accepted(parsed)


@settings(max_examples=300, deadline=None)
@given(body=st.text() | ANY_EVENT.map(json.dumps), default_skip=st.booleans())
def test_parse_sqs_body_returns_parsed_input_or_invalid_input_error(
    body: str, default_skip: bool
) -> None:
    try:
        parsed = parse_sqs_body(body, message_id="m1", default_skip=default_skip)
    except InvalidInputError:
        return
    _check_accepted(parsed)
    assert parsed.source.kind is SourceKind.SQS
    assert parsed.source.delivery_id == "m1"


# The de-duplication key of a delivery: the same work delivered again must produce the same key,
# a different delivery a different one.
SCHEDULE_ARN = "arn:aws:scheduler:us-east-1:123456789012:schedule/default/daily"


@pytest.mark.parametrize(
    ("event", "expected"),
    [
        ({"portfolioId": "p1"}, None),
        (
            {
                "portfolioId": "p1",
                "scheduleArn": SCHEDULE_ARN,
                "scheduledTime": "2026-11-24T06:00Z",
            },
            f"schedule:{SCHEDULE_ARN}@2026-11-24T06:00Z",
        ),
        ({"portfolioId": "p1", "scheduleArn": SCHEDULE_ARN}, None),
        ({"portfolioId": "p1", "idempotencyKey": "k-1", "scheduleArn": SCHEDULE_ARN}, "key:k-1"),
        ({"detail-type": "X", "id": "ev-1", "detail": {"portfolioId": "p1"}}, "event:ev-1"),
        (
            {
                "detail-type": "X",
                "id": "ev-1",
                "detail": {"portfolioId": "p1", "idempotencyKey": "k"},
            },
            "key:k",
        ),
        (
            {"requestContext": {"requestId": "req-1"}, "requestPayload": {"portfolioId": "p1"}},
            "lambda:req-1",
        ),
        (
            {
                "requestContext": {"requestId": "req-1"},
                "requestPayload": {
                    "detail-type": "X",
                    "id": "ev-9",
                    "detail": {"portfolioId": "p"},
                },
            },
            "event:ev-9",
        ),
    ],
)
def test_dedupe_key_of_an_invocation_payload(
    event: dict[str, object], expected: str | None
) -> None:
    assert parse_event(event, default_skip=False).source.dedupe_key == expected


def test_an_sqs_message_is_keyed_by_its_message_id_unless_its_content_has_a_key() -> None:
    plain = parse_sqs_body('{"portfolioId": "p1"}', message_id="m-1", default_skip=False)
    envelope = parse_sqs_body(
        '{"detail-type": "X", "id": "ev-1", "detail": {"portfolioId": "p1"}}',
        message_id="m-2",
        default_skip=False,
    )

    assert plain.source.dedupe_key == "sqs:m-1"
    # EventBridge delivers at least once: the same event twice is two messages, one event id.
    assert envelope.source.dedupe_key == "event:ev-1"
    assert envelope.source.kind.value == "sqs"


@pytest.mark.parametrize(
    "body",
    [
        "[" * 100_000,  # nesting deeper than the JSON decoder's recursion limit
        '{"portfolioId": ' * 50_000,
        "\x00",
        "",
        " " * 1_000_000,
    ],
    ids=["deep-array", "deep-object", "nul", "empty", "1MB-blank"],
)
def test_pathological_sqs_bodies_are_classified_not_crashes(body: str) -> None:
    with pytest.raises(InvalidInputError):
        parse_sqs_body(body, message_id="m", default_skip=False)


def test_an_envelope_nested_beyond_the_supported_depth_is_malformed() -> None:
    nested: dict[str, object] = {}
    level = nested
    for _ in range(5_000):
        inner: dict[str, object] = {}
        level.update({"detail-type": "x", "detail": inner})
        level = inner

    with pytest.raises(InvalidInputError, match="no portfolioId"):
        parse_event(nested, default_skip=False)


def test_unicode_and_lone_surrogate_ids_are_rejected_one_by_one() -> None:
    parsed = parse_sqs_body(
        '{"portfolioIds": ["port_ok1", "p\\u00e9", "\\u4e2d", "\\ud800"]}',
        message_id="m",
        default_skip=False,
    )

    assert [r.portfolio_id for r in parsed.requests] == ["port_ok1"]
    assert len(parsed.rejected) == 3


# Long keys: hashed from the full value, never cut (two keys with a common prefix stay two).
@pytest.mark.parametrize(
    "event",
    [
        {"portfolioId": "p1", "idempotencyKey": "{key}"},
        {"detail-type": "X", "id": "{key}", "detail": {"portfolioId": "p1"}},
        {"portfolioId": "p1", "scheduleArn": "{key}", "scheduledTime": "2026-11-24T06:00Z"},
        {"requestContext": {"requestId": "{key}"}, "requestPayload": {"portfolioId": "p1"}},
    ],
    ids=["idempotencyKey", "event id", "schedule ARN", "request id"],
)
def test_long_key_values_are_hashed_whole_never_cut(event: dict[str, Any]) -> None:
    def key_of(value: str) -> str | None:
        filled = json.loads(json.dumps(event).replace("{key}", value))
        return parse_event(filled, default_skip=False).source.dedupe_key

    first, second = key_of("x" * 300 + "1"), key_of("x" * 300 + "2")

    assert first is not None
    assert second is not None
    assert first != second
    assert len(first) <= MAX_KEY_CHARS
    assert "sha256:" in first
    assert key_of("x" * 300 + "1") == first  # the same delivery again: the same key
    short = key_of("short")
    assert short is not None
    assert ":short" in short  # short keys unchanged: existing records still match
    assert "sha256" not in short


def test_delivery_key_is_used_verbatim_and_outranks_an_idempotency_key() -> None:
    parsed = parse_sqs_body(
        json.dumps({"portfolioId": "p1", "deliveryKey": "sqs:m-1", "idempotencyKey": "k"}),
        message_id="m-2",
        default_skip=False,
    )
    assert parsed.source.dedupe_key == "sqs:m-1"
    assert delivery_key("key", "x" * 400) == delivery_key("key", "x" * 400)


@pytest.mark.parametrize(
    "payload",
    [
        {"portfolioId": "p1", "deliveryKey": ""},
        {"portfolioId": "p1", "deliveryKey": 5},
        {"portfolioId": "p1", "deliveryKey": "k" * 257},
        {"portfolioId": "p1", "idempotencyKey": {"nested": 1}},
        {"portfolioId": "p1", "idempotencyKey": ""},
        {"portfolioId": "p1", "idempotencyKey": None},
    ],
)
def test_a_key_that_cannot_be_a_key_is_malformed_input_not_ignored(
    payload: dict[str, Any],
) -> None:
    with pytest.raises(InvalidInputError, match=r"deliveryKey|idempotencyKey"):
        parse_event(payload, default_skip=False)


def test_trigger_input_round_trips_through_the_parser() -> None:
    body = trigger_input("p1", True, delivery_key="event:e-1")
    parsed = parse_sqs_body(body, message_id="m", default_skip=False)
    assert [(r.portfolio_id, r.skip_schedule_validation) for r in parsed.requests] == [("p1", True)]
    assert parsed.source.dedupe_key == "event:e-1"


@pytest.mark.parametrize(
    ("queued_by", "origin"),
    [
        ("schedule", SourceKind.SCHEDULE),
        ("eventbridge:ev-1", SourceKind.EVENTBRIDGE),
        ("sqs:m-0", SourceKind.SQS),
        (None, SourceKind.SQS),  # an upstream message, or a replayed letter: a delivery itself
        ("no-such-kind:1", SourceKind.SQS),  # not one the function writes: its own kind
    ],
)
def test_a_queued_portfolio_says_where_its_delivery_began(
    queued_by: str | None, origin: SourceKind
) -> None:
    body: dict[str, Any] = {"portfolioId": "p1", "deliveryKey": "schedule:arn@t"}
    if queued_by is not None:
        body["queuedBy"] = queued_by

    parsed = parse_sqs_body(json.dumps(body), message_id="m-9", default_skip=False)

    assert parsed.source.origin is origin
    assert parsed.source.kind is SourceKind.SQS  # the transport is still the message


def test_what_carried_a_delivery_in_names_its_letters_the_same_on_every_copy() -> None:
    # An upstream message M's settled failure is lettered once: its own receive and the copy
    # the function queued of it (a deferral) name the same transport, "sqs:M".
    body = json.dumps({"portfolioId": "p1"})
    [own] = parse_sqs_body(body, message_id="M", default_skip=False).requests
    copy_body = resumed_input(own, queued=True)
    [copy] = parse_sqs_body(copy_body, message_id="D", default_skip=False).requests

    assert json.loads(copy_body)["queuedBy"] == "sqs:M"
    assert copy.letter_key == own.letter_key


def test_an_event_id_too_long_for_a_key_is_carried_bounded_and_read_back() -> None:
    event = {
        "id": "e" * 300,
        "detail-type": "Rebalance",
        "source": "up",
        "detail": {"portfolioId": "p1"},
    }
    [request] = parse_event(event, default_skip=False).requests
    body = resumed_input(request, queued=True)

    [queued] = parse_sqs_body(body, message_id="m-1", default_skip=False).requests
    assert len(json.loads(body)["queuedBy"]) <= 256
    assert queued.source.origin is SourceKind.EVENTBRIDGE
    assert queued.guard_key == request.guard_key
