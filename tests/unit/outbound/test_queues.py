"""The SQS writer of the DLQ and the work queue: batches, retries, SQS-safe attributes."""

from __future__ import annotations

from typing import Any

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError

from glider_trigger.domain.errors import DeadLetterWriteError, classify
from glider_trigger.domain.letters import for_failure
from glider_trigger.domain.models import (
    Failed,
    InputSource,
    OutgoingMessage,
    SourceKind,
    TriggerRequest,
)
from glider_trigger.outbound.glider import shared
from glider_trigger.outbound.queues import (
    MAX_BATCH_BYTES,
    MAX_BATCH_ENTRIES,
    QueueWriter,
    _batches,
    _entry,
    sqs_safe,
)

QUEUE_URL = "https://sqs.eu-west-1.amazonaws.com/123456789012/glider-trigger-dlq"


# --- batching ------------------------------------------------------------------------------


def letter(body: str = '{"portfolioId": "p1"}', **attributes: str | int) -> OutgoingMessage:
    return OutgoingMessage(body=body, attributes=dict(attributes))


@pytest.mark.parametrize(
    ("count", "sizes"),
    [(0, []), (1, [1]), (10, [10]), (11, [10, 1]), (25, [10, 10, 5]), (30, [10, 10, 10])],
)
def test_batches_hold_at_most_ten_entries(count: int, sizes: list[int]) -> None:
    letters = [letter(f'{{"portfolioId": "p{i}"}}') for i in range(count)]

    batches = list(_batches(letters))

    assert [len(batch) for batch in batches] == sizes
    assert [item for batch in batches for item in batch] == letters  # order kept, none lost
    assert MAX_BATCH_ENTRIES == 10


def test_batches_are_split_by_size() -> None:
    big = ["x" * 100_000 for _ in range(5)]
    letters = [letter(body, reason="MALFORMED_INPUT") for body in big]

    batches = list(_batches(letters))

    assert [len(batch) for batch in batches] == [2, 2, 1]
    for batch in batches:
        size = sum(
            len(item.body.encode()) + sum(len(k) + len(str(v)) for k, v in item.attributes.items())
            for item in batch
        )
        assert size <= MAX_BATCH_BYTES


def test_batch_size_counts_bytes_not_characters() -> None:
    # 60,000 three-byte characters: 180,000 bytes each; two of them exceed 256 KiB.
    letters = [letter("\u6f22" * 60_000), letter("\u5b57" * 60_000)]

    assert [len(batch) for batch in _batches(letters)] == [1, 1]


def test_a_single_oversized_letter_still_gets_its_own_batch() -> None:
    letters = [letter("a"), letter("x" * (MAX_BATCH_BYTES + 1)), letter("b")]

    assert [len(batch) for batch in _batches(letters)] == [1, 1, 1]


# --- the DLQ writer against a fake SQS client ----------------------------------------


class FakeSqs:
    """`send_message_batch` answers with scripted responses (a dict, a callable taking the
    entries, or an exception to raise); every call is recorded."""

    def __init__(self, *responses: Any) -> None:
        self._responses = list(responses)
        self.calls: list[dict[str, Any]] = []

    def send_message_batch(self, *, QueueUrl: str, Entries: list[dict[str, Any]]) -> Any:
        self.calls.append({"QueueUrl": QueueUrl, "Entries": Entries})
        if not self._responses:
            pytest.fail("send_message_batch called more often than scripted")
        response = self._responses.pop(0)
        if isinstance(response, Exception):
            raise response
        if callable(response):
            return response(Entries)
        return response


def all_ok(entries: list[dict[str, Any]]) -> dict[str, Any]:
    return {"Successful": [{"Id": e["Id"], "MessageId": f"m-{e['Id']}"} for e in entries]}


def fail_ids(*ids: str, sender_fault: bool = False, code: str = "InternalError") -> Any:
    def respond(entries: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "Successful": [
                {"Id": e["Id"], "MessageId": "m"} for e in entries if e["Id"] not in ids
            ],
            "Failed": [
                {"Id": i, "SenderFault": sender_fault, "Code": code, "Message": "try later"}
                for i in ids
            ],
        }

    return respond


def client_error(code: str = "ServiceUnavailable") -> ClientError:
    return ClientError(
        {"Error": {"Code": code, "Message": "SQS is unavailable"}}, "SendMessageBatch"
    )


class RecordingSleep:
    def __init__(self) -> None:
        self.delays: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


def queue(client: FakeSqs, sleep: RecordingSleep) -> QueueWriter:
    return QueueWriter(
        QUEUE_URL,
        client=lambda: client,  # type: ignore[arg-type,return-value]
        error_type=DeadLetterWriteError,
        sleep=sleep,
    )


def _letter_of(portfolio_id: str) -> OutgoingMessage:
    error = shared.api_error("Portfolio not found", status=404, code="API_200")
    request = TriggerRequest(portfolio_id, False, InputSource(SourceKind.SQS, delivery_id="m-1"))
    return for_failure(Failed(request, error, classify(error), 3))


LETTERS = [_letter_of(f"port_{i}") for i in range(3)]


def test_send_writes_every_letter_with_typed_attributes() -> None:
    client, sleep = FakeSqs(all_ok), RecordingSleep()

    queue(client, sleep).send(LETTERS)

    assert len(client.calls) == 1
    call = client.calls[0]
    assert call["QueueUrl"] == QUEUE_URL
    assert [e["MessageBody"] for e in call["Entries"]] == [x.body for x in LETTERS]
    assert len({e["Id"] for e in call["Entries"]}) == 3
    attributes = call["Entries"][0]["MessageAttributes"]
    assert attributes["reason"] == {"DataType": "String", "StringValue": "NOT_FOUND"}
    assert attributes["httpStatus"] == {"DataType": "Number", "StringValue": "404"}
    assert attributes["attempts"] == {"DataType": "Number", "StringValue": "3"}
    assert sleep.delays == []


def test_send_nothing_makes_no_call() -> None:
    client = FakeSqs()

    queue(client, RecordingSleep()).send([])

    assert client.calls == []


def test_send_splits_into_batches_of_ten() -> None:
    letters = [letter(f'{{"portfolioId": "p{i}"}}') for i in range(23)]
    client = FakeSqs(all_ok, all_ok, all_ok)

    queue(client, RecordingSleep()).send(letters)

    assert [len(call["Entries"]) for call in client.calls] == [10, 10, 3]
    sent = [e["MessageBody"] for call in client.calls for e in call["Entries"]]
    assert sent == [x.body for x in letters]


def test_partially_failed_entries_are_retried_and_only_those() -> None:
    client, sleep = FakeSqs(fail_ids("1"), all_ok), RecordingSleep()

    queue(client, sleep).send(LETTERS)

    assert len(client.calls) == 2
    retried = client.calls[1]["Entries"]
    assert [e["MessageBody"] for e in retried] == [LETTERS[1].body]
    assert len(sleep.delays) == 1


def test_entries_still_failing_raise_naming_the_count() -> None:
    client = FakeSqs(fail_ids("0", "2"), fail_ids("0", "2"), fail_ids("2"))
    sleep = RecordingSleep()

    with pytest.raises(DeadLetterWriteError) as caught:
        queue(client, sleep).send(LETTERS)

    assert str(caught.value).startswith("1 message(s) could not be written")
    assert QUEUE_URL in str(caught.value)
    assert "InternalError" in str(caught.value)
    assert len(client.calls) == 3
    assert [[e["Id"] for e in call["Entries"]] for call in client.calls] == [
        ["0", "1", "2"],
        ["0", "2"],
        ["0", "2"],
    ]
    assert len(sleep.delays) == 2


def test_sender_fault_entries_are_not_retried() -> None:
    client = FakeSqs(fail_ids("0", "1", sender_fault=True, code="InvalidParameterValue"))
    sleep = RecordingSleep()

    with pytest.raises(DeadLetterWriteError) as caught:
        queue(client, sleep).send(LETTERS)

    assert str(caught.value).startswith("2 message(s)")
    assert "InvalidParameterValue" in str(caught.value)
    assert len(client.calls) == 1
    assert sleep.delays == []


@pytest.mark.parametrize("error", [client_error(), EndpointConnectionError(endpoint_url=QUEUE_URL)])
def test_failed_call_is_retried_then_succeeds(error: Exception) -> None:
    client, sleep = FakeSqs(error, all_ok), RecordingSleep()

    queue(client, sleep).send(LETTERS)

    assert len(client.calls) == 2
    assert len(client.calls[1]["Entries"]) == 3
    assert len(sleep.delays) == 1


def test_failed_call_is_retried_then_raises() -> None:
    client = FakeSqs(client_error(), client_error(), client_error("AccessDenied"))
    sleep = RecordingSleep()

    with pytest.raises(DeadLetterWriteError) as caught:
        queue(client, sleep).send(LETTERS)

    assert str(caught.value).startswith("3 message(s)")
    assert "ClientError" in str(caught.value)
    assert len(client.calls) == 3
    assert len(sleep.delays) == 2
    assert all(delay > 0 for delay in sleep.delays)


def test_a_failing_batch_stops_the_send() -> None:
    letters = [letter(f'{{"portfolioId": "p{i}"}}') for i in range(12)]
    client = FakeSqs(client_error(), client_error(), client_error())

    with pytest.raises(DeadLetterWriteError, match="10 message"):
        queue(client, RecordingSleep()).send(letters)


def test_outside_strings_become_sqs_safe_attribute_values() -> None:
    request = TriggerRequest(
        "p1", False, InputSource(SourceKind.EVENTBRIDGE, delivery_id="ev\x07\ud800", dedupe_key="k")
    )
    error = shared.api_error("bad\x00 thing \U0001f600", status=404, code="API_200\x1b")
    letter = for_failure(Failed(request, error, classify(error), attempts=1))

    entry = _entry("0", letter)
    values = {name: v["StringValue"] for name, v in entry["MessageAttributes"].items()}

    assert values["source"] == "eventbridge:ev\ufffd\ufffd"
    assert values["detail"] == "bad\ufffd thing \U0001f600"  # outside the BMP is allowed
    assert values["apiErrorCode"] == "API_200\ufffd"
    assert sqs_safe("tab\tline\ncr\r") == "tab\tline\ncr\r"
    assert len(list(_batches([letter]))) == 1  # sized without encoding a lone surrogate


def test_exactly_the_characters_outside_xml_1_0_are_replaced() -> None:
    def xml_char(code: int) -> bool:
        return (
            code in (0x9, 0xA, 0xD)
            or 0x20 <= code <= 0xD7FF
            or 0xE000 <= code <= 0xFFFD
            or (0x10000 <= code <= 0x10FFFF)
        )

    every = "".join(map(chr, range(0x110000)))
    expected = "".join(c if xml_char(ord(c)) else "\ufffd" for c in every)

    assert sqs_safe(every) == expected


def test_a_delay_is_passed_to_sqs_and_capped_at_its_limit() -> None:
    assert _entry("0", OutgoingMessage("{}", delay_seconds=125))["DelaySeconds"] == 125
    assert _entry("0", OutgoingMessage("{}", delay_seconds=5000))["DelaySeconds"] == 900
    assert "DelaySeconds" not in _entry("0", OutgoingMessage("{}"))
