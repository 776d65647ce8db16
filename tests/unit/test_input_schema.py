"""The JSON Schema of the input (docs/schemas/) and the function's contract agree: an input is
valid by the schema exactly when the function triggers all of it, on the sample events, the
function's own DLQ and work-queue bodies, and generated inputs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from glider_trigger.domain.errors import InvalidInputError, classify
from glider_trigger.domain.letters import for_failure, for_rejected_id
from glider_trigger.domain.models import Failed, InputSource, SourceKind, TriggerRequest, Window
from glider_trigger.domain.trigger_input import (
    DELIVERY_KEY_FIELD,
    IDEMPOTENCY_KEY,
    MAX_ENVELOPE_DEPTH,
    MAY_HAVE_STARTED,
    PORTFOLIO_ID,
    PORTFOLIO_IDS,
    SCHEDULE_ARN,
    SCHEDULED_TIME,
    SKIP_SCHEDULE_VALIDATION,
    parse,
    trigger_input,
)
from glider_trigger.inbound.events import is_sqs_event, parse_event
from tests.fakes.api import refused

REPO = Path(__file__).resolve().parents[2]
SCHEMA = json.loads((REPO / "docs/schemas/trigger-input.schema.json").read_text())
VALIDATOR = Draft202012Validator(SCHEMA)


def function_takes_all_of(payload: object) -> bool:
    """Parsed, and no id rejected: the function triggers everything the input names."""
    try:
        parsed = parse(payload, default_skip=False, transport=None)
    except InvalidInputError:
        return False
    return not parsed.rejected


def schema_accepts(payload: object) -> bool:
    return VALIDATOR.is_valid(payload)


def test_the_schema_is_a_valid_json_schema() -> None:
    Draft202012Validator.check_schema(SCHEMA)


def sample_inputs() -> list[tuple[str, object]]:
    """Every sample event's inputs: an SQS event's JSON bodies (a body that is not JSON is no
    input at all), any other event itself."""
    found: list[tuple[str, object]] = []
    for path in sorted((REPO / "events").glob("*.json")):
        event = json.loads(path.read_text())
        if not is_sqs_event(event):
            found.append((path.name, event))
            continue
        for number, record in enumerate(event["Records"]):
            try:
                found.append((f"{path.name}#{number}", json.loads(record["body"])))
            except ValueError:
                continue
    return found


@pytest.mark.parametrize(("name", "payload"), sample_inputs())
def test_the_sample_events_are_valid_exactly_when_the_function_takes_them(
    name: str, payload: object
) -> None:
    assert schema_accepts(payload) is function_takes_all_of(payload), name


def test_the_samples_include_inputs_the_schema_refuses() -> None:
    assert any(not schema_accepts(payload) for _, payload in sample_inputs())


def test_the_functions_own_dlq_and_work_queue_bodies_are_valid_inputs() -> None:
    source = InputSource(SourceKind.SQS, delivery_id="m-1", dedupe_key="sqs:m-1")
    error = refused("NOT_FOUND", classify(InvalidInputError("x")))
    request = TriggerRequest("port_1", True, source)
    failure = for_failure(
        Failed(
            request, error, classify(error), 1, uncertain=(Window(1_764_655_200.5, 1_764_655_201),)
        )
    )
    fanned = trigger_input("port_2", False, idempotency_key="key:k")

    assert schema_accepts(json.loads(failure.body))
    assert schema_accepts(json.loads(fanned))


def test_a_rejected_ids_letter_is_refused_by_both() -> None:
    parsed = parse_event({"portfolioIds": ["ok_1", "not/ok"]}, default_skip=False)
    [rejected] = parsed.rejected
    body = json.loads(for_rejected_id(rejected, parsed.source).body)

    assert not schema_accepts(body)
    assert not function_takes_all_of(body)


@pytest.mark.parametrize(
    "payload",
    [
        {PORTFOLIO_ID: "p1", PORTFOLIO_IDS: []},
        {PORTFOLIO_IDS: []},
        {PORTFOLIO_ID: "p1", SKIP_SCHEDULE_VALIDATION: "false"},
        {PORTFOLIO_ID: "p1", IDEMPOTENCY_KEY: 0},
        {PORTFOLIO_ID: "p1", IDEMPOTENCY_KEY: True},
        {PORTFOLIO_ID: "p1", IDEMPOTENCY_KEY: ""},
        {PORTFOLIO_ID: "p1", DELIVERY_KEY_FIELD: "k" * 256},
        {PORTFOLIO_ID: "p1", DELIVERY_KEY_FIELD: "k" * 257},
        {PORTFOLIO_ID: "p1", SCHEDULE_ARN: True, SCHEDULED_TIME: None},
        {PORTFOLIO_ID: "p1", MAY_HAVE_STARTED: {"after": "2026-12-02T06:00:00.123Z"}},
        {PORTFOLIO_ID: "p1", MAY_HAVE_STARTED: {"after": "2026-12-02T06:00:00+01:00"}},
        {PORTFOLIO_ID: "p1", MAY_HAVE_STARTED: {"after": "2026-12-02T06:00:00"}},
        {PORTFOLIO_ID: "p1", MAY_HAVE_STARTED: {"before": "2026-12-02T06:00:00Z"}},
        {PORTFOLIO_ID: "p1", MAY_HAVE_STARTED: {"after": "2026-12-02T06:00:00Z", "before": 5}},
        {PORTFOLIO_ID: "p1", MAY_HAVE_STARTED: "2026-12-02T06:00:00Z"},
        {"detail-type": "x", "detail": {PORTFOLIO_ID: "p1"}},
        {"detail-type": "x", "detail": "not an object", PORTFOLIO_ID: "p1"},
        {"requestContext": {}, "requestPayload": {PORTFOLIO_IDS: ["p1"]}},
        {"requestContext": "not an object", "requestPayload": {}, PORTFOLIO_ID: "p1"},
        {"requestContext": {}, "requestPayload": [1]},
        [PORTFOLIO_ID],
    ],
)
def test_edge_inputs_are_judged_alike(payload: Any) -> None:
    assert schema_accepts(payload) is function_takes_all_of(payload)


IDS = st.sampled_from(["p1", "port_abc123", "A-b_9", "a/b", "", "-x", "x" * 129, 7, None])
VALUES = st.one_of(
    IDS,
    st.lists(IDS, max_size=3),
    st.booleans(),
    st.integers(-2, 2),
    st.text(max_size=3),
    st.none(),
    st.dictionaries(st.sampled_from(["a", PORTFOLIO_ID]), IDS, max_size=2),
    st.dictionaries(
        st.sampled_from(["after", "before"]),
        st.sampled_from(["2026-12-02T06:00:00.123Z", "2026-12-02T06:00:00", "soon", 7]),
        max_size=2,
    ),
)
FIELDS = st.sampled_from(
    [
        PORTFOLIO_ID,
        PORTFOLIO_IDS,
        SKIP_SCHEDULE_VALIDATION,
        IDEMPOTENCY_KEY,
        DELIVERY_KEY_FIELD,
        MAY_HAVE_STARTED,
        SCHEDULE_ARN,
        SCHEDULED_TIME,
        "unknown",
    ]
)
SHAPES = st.dictionaries(FIELDS, VALUES, max_size=4)


def wrapped(inner: object, kinds: list[str]) -> object:
    for kind in reversed(kinds):
        if kind == "eventbridge":
            inner = {"id": "e-1", "detail-type": "t", "source": "s", "detail": inner}
        else:
            inner = {"requestContext": {"requestId": "r-1"}, "requestPayload": inner}
    return inner


@settings(max_examples=400, deadline=None)
@given(
    SHAPES,
    st.lists(st.sampled_from(["eventbridge", "destination"]), max_size=MAX_ENVELOPE_DEPTH),
)
def test_generated_inputs_are_judged_alike(shape: dict[str, Any], envelopes: list[str]) -> None:
    payload = wrapped(shape, envelopes)
    assert schema_accepts(payload) is function_takes_all_of(payload)
