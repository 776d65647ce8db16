"""What the demo prints: each portfolio's outcome from the function's logs, the DLQ, the stack."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from glider_trigger.settings import ApiVersion
from local.fixtures.event_source import PollResult
from local.fixtures.stack import Deployment, MotoServer
from tools import dlq

# Glider's own word for the id a trigger answers with: v1 starts a workflow (its rebalanceId),
# v2 an operation (its operationId).
ID_NAMES = {ApiVersion.V1: "rebalanceId", ApiVersion.V2: "operationId"}


class OutcomeRows:
    """Each portfolio's outcome as one line, in the words of the API the function called; it
    remembers the ids it has shown, so that a v2 trigger Glider answered with an operation
    already shown is said to have joined it."""

    def __init__(self, api_version: ApiVersion) -> None:
        self._api = api_version
        self._shown: set[str] = set()

    def rows(self, records: list[dict[str, Any]]) -> Iterator[str]:
        for record in records:
            if record.get("rebalance_outcome"):
                yield self._final_row(record, str(record.get("portfolio_id")))
                continue
            row = self._row(record)
            if row is not None:
                yield row

    def _id(self, record: dict[str, Any]) -> str:
        rebalance_id = record.get("rebalance_id")
        name = ID_NAMES[self._api]
        return f"{name}={rebalance_id}" if rebalance_id else f"{name} unknown"

    def _row(self, record: dict[str, Any]) -> str | None:
        outcome = record.get("outcome")
        where = record.get("delivery_id", "")
        where = f"[{where[:8]}] " if record.get("source") == "sqs" and where else ""
        portfolio = f"{where}{record.get('portfolio_id', '(input)')!s:<22}"
        if outcome == "already-triggered":
            return (
                f"   {portfolio} already triggered by an earlier delivery ({self._id(record)});"
                " not triggered again"
            )
        if outcome == "triggered":
            attempts = record.get("attempts", 1)
            return (
                f"   {portfolio} triggered      {self._id(record)}"
                f"  ({attempts} attempt{'s' if attempts != 1 else ''}){self._note(record)}"
            )
        if outcome == "already-failed":
            return (
                f"   {portfolio} already failed for this delivery after a 2xx "
                f"({record.get('reason')}); not sent or dead-lettered again"
            )
        if outcome == "failed":
            status = record.get("http_status")
            http = f" HTTP {status}" if status else ""
            code = f" {record['api_error_code']}" if record.get("api_error_code") else ""
            actions = {"dead-lettered": "to the DLQ", "retry": "retry (SQS)"}
            action = actions.get(str(record.get("action")), str(record.get("action")))
            klass = record.get("failure_class", "permanent")
            # The whole detail: it is the hint that says what to do.
            return (
                f"   {portfolio} FAILED {klass} {record.get('reason')}{http}{code}"
                f" -> {action}: {record.get('detail', '')}"
            )
        if record.get("level") in ("ERROR", "CRITICAL"):
            return f"   {record.get('level')}: {record.get('message')}"
        return None

    def _note(self, record: dict[str, Any]) -> str:
        rebalance_id = record.get("rebalance_id")
        seen = rebalance_id in self._shown
        if rebalance_id:
            self._shown.add(str(rebalance_id))
        if record.get("joined_in_flight") or (seen and self._api is ApiVersion.V2):
            return " (Glider joined it to the operation in flight: nothing new started)"
        if record.get("reconciled") and rebalance_id:
            return " (answer lost: found among recent rebalances, not sent again)"
        if record.get("reconciled"):
            return (
                " (answer lost: a rebalance ran in its window (lastRebalanceAt), not sent"
                " again; which one is unknown)"
            )
        if record.get("reason"):
            return f" (answer cut off: {ID_NAMES[self._api]} unknown)"
        return ""

    def _final_row(self, record: dict[str, Any], portfolio: str) -> str:
        outcome = record["rebalance_outcome"]
        looks = record.get("follow_ups")
        if outcome == "completed":
            chain = (
                f" tx={str(record['transaction_hash'])[:14]}... block {record.get('block_number')},"
                if record.get("transaction_hash")
                else ""  # v2's operation names no transaction
            )
            return (
                f"   {portfolio:<22} COMPLETED      {self._id(record)}{chain} "
                f"{record.get('duration_seconds')} s ({looks} status call(s))"
            )
        if outcome == "failed":
            return (
                f"   {portfolio:<22} REBALANCE FAILED {self._id(record)}: {record.get('reason')}"
                " -> to the DLQ (REBALANCE_FAILED), never triggered again by the function"
            )
        if not record.get("rebalance_id"):
            return (
                f"   {portfolio:<22} outcome unknown ({record.get('reason')}): its"
                f" {ID_NAMES[self._api]} is unknown, so it cannot be followed"
            )
        return f"   {portfolio:<22} outcome unknown {self._id(record)} ({record.get('reason')})"


def describe_response(response: Mapping[str, Any] | None) -> str:
    if response is None:
        return "nothing"
    if "batchItemFailures" in response:
        failures = [f["itemIdentifier"][:8] for f in response["batchItemFailures"]]
        if not failures:
            return "batchItemFailures=[] (every record is done: SQS deletes them)"
        return f"batchItemFailures={failures} (SQS redelivers these)"
    # An event's invocation triggers nothing itself: it queues one work-queue message per
    # portfolio (triggered from the work queue, below) and dead-letters what it rejects.
    queued, dead_lettered = response.get("queued", 0), response.get("deadLettered", 0)
    return (
        f"queued {queued} (one work-queue message per portfolio), dead-lettered {dead_lettered}"
        f" (source: {response.get('source')})"
    )


def describe_batches(batches: list[PollResult]) -> str:
    """What the work queue's event source did with the batches it handed the function."""
    messages = sum(len(b.deleted) + len(b.redelivered) for b in batches)
    redelivered = [m[:8] for b in batches for m in b.redelivered]
    errors = [f"{type(b.error).__name__}: {b.error}" for b in batches if b.error is not None]
    said = f"{messages} message(s) in {len(batches)} batch(es) to the function"
    if redelivered:
        said += f"; SQS redelivers {redelivered} after their visibility timeout"
    else:
        said += ", every one done (SQS deletes them)"
    if errors:
        said += f"; the handler raised {'; '.join(errors)}"
    return said


def print_dlq(deployment: Deployment) -> None:
    """The DLQ as the operators' tool shows it (`make dlq`), without consuming it."""
    print("\n== Dead-letter queue (make dlq ARGS=list): each body is a replayable input")
    dlq.main(
        ["--dlq-url", deployment.dlq.url, "--work-queue-url", deployment.work_queue.url, "list"],
        sqs=deployment.sqs,
    )


def print_stack(moto: MotoServer, deployment: Deployment, *, real_api: bool) -> None:
    api = deployment.glider_api_url + (" (the REAL Glider API)" if real_api else " (emulator)")
    print("Local stack on loopback:")
    print(f"   moto server (Secrets Manager, SQS, DynamoDB)  {moto.endpoint_url}")
    print(f"   Glider API ({deployment.api_version})                               {api}")
    print(f"   secret                                        {deployment.secret_id}")
    print(f"   work queue                                    {deployment.work_queue.url}")
    print(f"   dead-letter queue                             {deployment.dlq.url}")
    print(f"   idempotency table                             {deployment.idempotency_table}")
    if deployment.follow_up_queue is not None:
        print(f"   follow-up queue                               {deployment.follow_up_queue.url}")
    if deployment.outcome_bus is not None:
        print(f"   outcome event bus                             {deployment.outcome_bus}")


def print_raw(lines: list[str], *, verbose: bool) -> None:
    if verbose:
        for line in lines:
            print(f"   | {line}")
