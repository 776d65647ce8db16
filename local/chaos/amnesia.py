"""A guard that forgets (`--guard-forgets`): the doubles the ledger prevents, made visible.

The function always runs under its guard; this thread deletes every trigger record no invocation
holds, as soon as it sees one, so that a redelivery finds no settled outcome and no recorded
window. What the run then counts as doubled or repeated unflagged is what the ledger prevents.
`once` records (letters, outcome lines) and history records are kept: only the triggers' memory
goes.
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
# Trigger records only: `once` records are "<KEY_PREFIX>-once#...", history "history#...".
TRIGGER_RECORD_PREFIX = f"{KEY_PREFIX}#"


def sweep(dynamodb: DynamoDBClient, table: str) -> int:
    """One pass: every trigger record no invocation holds, deleted; returns how many."""
    forgotten = 0
    for page in dynamodb.get_paginator("scan").paginate(TableName=table):
        for item in page["Items"]:
            record_id = item["id"]["S"]
            if record_id.startswith(TRIGGER_RECORD_PREFIX) and _forget(dynamodb, table, record_id):
                forgotten += 1
    return forgotten


def forget_released_records(dynamodb: DynamoDBClient, table: str) -> Callable[[], None]:
    """Start the sweeper; returns its stop, which raises what stopped the sweeper early (a run
    whose guard silently stopped forgetting would under-report the doubles)."""
    stopped = threading.Event()
    failures: list[Exception] = []

    def run() -> None:
        while not stopped.wait(SWEEP_SECONDS):
            try:
                sweep(dynamodb, table)
            except Exception as exc:
                failures.append(exc)
                return

    thread = threading.Thread(target=run, name="guard-amnesia", daemon=True)
    thread.start()

    def stop() -> None:
        stopped.set()
        thread.join(timeout=5)
        if failures:
            raise RuntimeError(f"the guard stopped forgetting: {failures[0]!r}") from failures[0]

    return stop


def _forget(dynamodb: DynamoDBClient, table: str, record_id: str) -> bool:
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
        return False
    return True
