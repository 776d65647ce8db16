"""The guard's ledger (a moto DynamoDB table over HTTP): an action keyed `once` runs once, however
often its delivery comes back, and never twice at the same time; what earlier versions recorded
is honoured."""

from __future__ import annotations

import hashlib
import json
import time
from typing import Any

import pytest

from glider_trigger.domain.errors import OnceInProgressError
from glider_trigger.domain.models import InputSource, SourceKind, Triggered, TriggerRequest
from glider_trigger.outbound.guard import ONCE_KEY_PREFIX, IdempotencyGuard, record_id
from local.fixtures.stack import Deployment


def guard(deployment: Deployment) -> IdempotencyGuard:
    client: Any = deployment.moto.client("dynamodb")
    return IdempotencyGuard(
        deployment.idempotency_table,
        client=lambda: client,
        expires_after_seconds=3600,
        on_unrecorded=lambda *_: None,
    )


def test_an_action_runs_once_per_key_across_execution_environments(
    deployment: Deployment,
) -> None:
    done: list[str] = []
    guard(deployment).once("k1", lambda: done.append("first"))
    guard(deployment).once("k1", lambda: done.append("again"))  # a redelivery elsewhere
    guard(deployment).once("k2", lambda: done.append("other key"))

    assert done == ["first", "other key"]


def test_an_action_that_raised_is_done_by_the_next_delivery(deployment: Deployment) -> None:
    def fails() -> None:
        raise RuntimeError("the DLQ refused")

    with pytest.raises(RuntimeError):
        guard(deployment).once("k", fails)
    done: list[str] = []
    guard(deployment).once("k", lambda: done.append("retried"))

    assert done == ["retried"]


def test_an_action_running_elsewhere_is_not_run_twice_at_once(deployment: Deployment) -> None:
    ran: list[str] = []

    def inner() -> None:
        with pytest.raises(OnceInProgressError):
            guard(deployment).once("k", lambda: ran.append("inner"))
        ran.append("outer")

    guard(deployment).once("k", inner)

    assert ran == ["outer"]


def test_a_record_powertools_idempotency_completed_before_is_honoured(
    deployment: Deployment,
) -> None:
    # What Powertools' idempotent_function wrote for `once` before the ledger took it over: its
    # key prefix, the MD5 of the key as JSON, COMPLETED, an expiration in seconds.
    digest = hashlib.md5(json.dumps("k-old").encode(), usedforsecurity=False).hexdigest()
    client: Any = deployment.moto.client("dynamodb")
    client.put_item(
        TableName=deployment.idempotency_table,
        Item={
            "id": {"S": f"{ONCE_KEY_PREFIX}#{digest}"},
            "status": {"S": "COMPLETED"},
            "expiration": {"N": str(int(time.time()) + 3600)},
            "data": {"S": json.dumps({"done": True})},
        },
    )
    done: list[str] = []
    guard(deployment).once("k-old", lambda: done.append("again"))

    assert done == []


def test_a_trigger_an_earlier_version_settled_is_remembered_and_not_sent_again(
    deployment: Deployment,
) -> None:
    # A settled trigger's record written before dac91a7 also kept Glider's trigger "status"
    # (no longer written): such a record still settles its delivery.
    client: Any = deployment.moto.client("dynamodb")
    stored = {
        "rebalanceId": "rebal_old",
        "scheduleId": "sched_1",
        "requestId": "req_1",
        "correlationId": "corr_1",
        "status": "triggered",
        "unread": None,
        "reconciled": False,
    }
    client.put_item(
        TableName=deployment.idempotency_table,
        Item={
            "id": {"S": record_id("sqs:m-old#port_abc123")},
            "status": {"S": "COMPLETED"},
            "expiration": {"N": str(int(time.time()) + 3600)},
            "data": {"S": json.dumps(stored)},
        },
    )
    request = TriggerRequest("port_abc123", False, InputSource(SourceKind.SQS, delivery_id="m-old"))
    sent: list[TriggerRequest] = []

    def trigger(held: TriggerRequest, _attempts: object) -> Triggered:
        sent.append(held)
        raise AssertionError("a settled delivery is never sent again")

    outcome = guard(deployment).run("sqs:m-old#port_abc123", request, trigger)

    assert sent == []
    assert isinstance(outcome, Triggered)
    assert outcome.already_triggered
    assert (outcome.receipt.rebalance_id, outcome.receipt.request_id) == ("rebal_old", "req_1")
