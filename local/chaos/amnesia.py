"""A guard that forgets (`--guard-forgets`): the doubles the ledger prevents, made visible.

The function always runs under its guard; this thread deletes every trigger record no invocation
holds, as soon as it sees one, so that a redelivery finds no settled outcome and no recorded
window. What the run then counts as doubled or repeated unflagged is what the ledger prevents.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from botocore.exceptions import ClientError

from glider_trigger.outbound.guard import KEY_PREFIX, Status

if TYPE_CHECKING:
    from collections.abc import Callable

    from mypy_boto3_dynamodb import DynamoDBClient

SWEEP_SECONDS = 0.1


def forget_released_records(dynamodb: DynamoDBClient, table: str) -> Callable[[], None]:
    """Start the sweeper; returns its stop."""
    stopped = threading.Event()

    def sweep() -> None:
        while not stopped.wait(SWEEP_SECONDS):
            for page in dynamodb.get_paginator("scan").paginate(TableName=table):
                for item in page["Items"]:
                    if item["id"]["S"].startswith(f"{KEY_PREFIX}#"):
                        _forget(dynamodb, table, item["id"]["S"])

    thread = threading.Thread(target=sweep, name="guard-amnesia", daemon=True)
    thread.start()

    def stop() -> None:
        stopped.set()
        thread.join(timeout=5)

    return stop


def _forget(dynamodb: DynamoDBClient, table: str, record_id: str) -> None:
    try:
        dynamodb.delete_item(
            TableName=table,
            Key={"id": {"S": record_id}},
            # A record an invocation holds stays: its holder's own writes must still land.
            ConditionExpression="#status <> :held",
            ExpressionAttributeNames={"#status": "status"},
            ExpressionAttributeValues={":held": {"S": Status.HELD.value}},
        )
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
            raise
