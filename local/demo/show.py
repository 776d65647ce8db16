"""What the demo prints: each portfolio's outcome from the function's logs, the DLQ, the stack."""

from __future__ import annotations

import textwrap
from collections.abc import Iterator, Mapping
from typing import Any

from local.fixtures.stack import Deployment, MotoServer
from tools import dlq


def outcome_rows(records: list[dict[str, Any]]) -> Iterator[str]:
    for record in records:
        if record.get("rebalance_outcome"):
            yield from _final_row(record, str(record.get("portfolio_id")))
            continue
        outcome = record.get("outcome")
        where = record.get("delivery_id", "")
        where = f"[{where[:8]}] " if record.get("source") == "sqs" and where else ""
        portfolio = str(record.get("portfolio_id", "(input)"))
        if outcome == "already-triggered":
            yield (
                f"   {where}{portfolio:<22} already triggered by an earlier delivery "
                f"(rebalanceId={record.get('rebalance_id')}); not triggered again"
            )
        elif outcome == "triggered":
            attempts = record.get("attempts", 1)
            unknown = " (answer cut off: id unknown)" if record.get("reason") else ""
            if record.get("reconciled") and record.get("rebalance_id"):
                unknown = " (answer lost: found among recent rebalances, not sent again)"
            elif record.get("reconciled"):
                unknown = (
                    " (answer lost: a rebalance ran in its window (lastRebalanceAt), not sent"
                    " again; which one is unknown)"
                )
            if record.get("joined_in_flight"):
                unknown = " (Glider joined it to the rebalance in flight: nothing new started)"
            yield (
                f"   {where}{portfolio:<22} triggered      rebalanceId={record.get('rebalance_id')}"
                f"  ({attempts} attempt{'s' if attempts != 1 else ''}){unknown}"
            )
        elif outcome == "already-failed":
            yield (
                f"   {where}{portfolio:<22} already failed for this delivery after a 2xx "
                f"({record.get('reason')}); not sent or dead-lettered again"
            )
        elif outcome == "failed":
            status = record.get("http_status")
            http = f" HTTP {status}" if status else ""
            code = f" {record['api_error_code']}" if record.get("api_error_code") else ""
            actions = {"dead-lettered": "to the DLQ", "retry": "retry (SQS)"}
            action = actions.get(str(record.get("action")), str(record.get("action")))
            klass = record.get("failure_class", "permanent")
            yield (
                f"   {where}{portfolio:<22} FAILED {klass} {record.get('reason')}{http}{code}"
                f" -> {action}: {textwrap.shorten(str(record.get('detail', '')), 70)}"
            )
        elif record.get("level") in ("ERROR", "CRITICAL"):
            yield f"   {record.get('level')}: {record.get('message')}"


def _final_row(record: dict[str, Any], portfolio: str) -> Iterator[str]:
    outcome, rebalance = record["rebalance_outcome"], record.get("rebalance_id")
    looks = record.get("follow_ups")
    if outcome == "completed":
        chain = (
            f" tx={str(record['transaction_hash'])[:14]}... block {record.get('block_number')},"
            if record.get("transaction_hash")
            else ""  # v2's operation names no transaction
        )
        yield (
            f"   {portfolio:<22} COMPLETED      rebalanceId={rebalance}{chain} "
            f"{record.get('duration_seconds')} s ({looks} status call(s))"
        )
    elif outcome == "failed":
        yield (
            f"   {portfolio:<22} REBALANCE FAILED rebalanceId={rebalance}: {record.get('reason')}"
            " -> to the DLQ (REBALANCE_FAILED), never triggered again by the function"
        )
    else:
        yield f"   {portfolio:<22} outcome unknown rebalanceId={rebalance} ({record.get('reason')})"


def describe_response(response: Mapping[str, Any] | None) -> str:
    if response is None:
        return "nothing"
    if "batchItemFailures" in response:
        failures = [f["itemIdentifier"][:8] for f in response["batchItemFailures"]]
        if not failures:
            return "batchItemFailures=[] (every record is done: SQS deletes them)"
        return f"batchItemFailures={failures} (SQS redelivers these)"
    return (
        f"{response.get('triggered')} triggered, {response.get('deadLettered')} dead-lettered "
        f"of {response.get('portfolios')} (source: {response.get('source')})"
    )


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
