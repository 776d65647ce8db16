"""What a DLQ message is, and the portfolio ids its body names, read by the input contract."""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping
from typing import Any

from glider_trigger.domain.trigger_input import EnvelopeKind, listed_ids, unwrap

DESTINATION = "on-failure destination records"
REDRIVEN = "redriven work-queue messages"
OWN_LETTERS = "function's own letters"
OTHER = "other"
# The replay doubles that must be 0: the function can recognise these messages' deliveries.
GUARDED_KINDS = (OWN_LETTERS, DESTINATION)


def dlq_kind(message: Mapping[str, Any], work_queue_message_ids: Collection[str] = ()) -> str:
    """What put a DLQ message there: the queue's redrive (a work-queue message id), Lambda's
    on-failure destination, the function itself (its attributes), or something else."""
    envelopes = unwrap(_json(str(message.get("Body", "")))).envelopes
    if message.get("MessageId") in work_queue_message_ids:
        return REDRIVEN
    if envelopes and envelopes[0].kind is EnvelopeKind.LAMBDA_DESTINATION:
        return DESTINATION
    if "failureClass" in message.get("MessageAttributes", {}):
        return OWN_LETTERS
    return OTHER


def body_ids(body: str) -> list[str]:
    """The portfolio ids a message body names, as the function reads them (portfolioId, then
    portfolioIds, inside an EventBridge envelope's detail or a destination record's
    requestPayload); string ids only."""
    return [i for i in listed_ids(_json(body)) if isinstance(i, str)]


def _json(text: str) -> object:
    try:
        return json.loads(text)
    except ValueError:
        return None
