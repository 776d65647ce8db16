"""A large event end to end: its invocation queues one work-queue message per portfolio (every
trigger runs from the work queue), then the work queue is drained; its tables."""

from __future__ import annotations

import datetime as dt
import uuid
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from bench.case import MAX_NOTABLE
from bench.inline import inline_event
from bench.plan import Plan
from bench.report import Table, progress
from bench.stack import LAMBDA_TIMEOUT_SECONDS, SECRET_CALLS, Run, Stack

SEND_BATCH = "AmazonSQS.SendMessageBatch"


def eventbridge_event(ids: Sequence[str]) -> dict[str, Any]:
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "Glider rebalance requested",
        "source": "bench.glider",
        "account": "123456789012",
        "time": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": "us-east-1",
        "resources": [],
        "detail": {"portfolioIds": list(ids), "skipScheduleValidation": False},
    }


def fanout_run(stack: Stack, plan: Plan, ids: int) -> dict[str, Any]:
    work = stack.deployment.work_queue
    dlq = stack.deployment.dlq
    portfolio_ids = stack.portfolios(ids)
    if stack.queue_depth(work.url):
        raise RuntimeError("the work queue is not empty before the fan-out")
    dlq_before = stack.queue_depth(dlq.url)
    env = stack.env(MAX_CONCURRENCY=str(plan.workers))
    progress(f"fan-out: {ids} ids, enqueue")
    enqueue = stack.run(
        {
            "mode": "invoke",
            "env": env,
            "event": eventbridge_event(portfolio_ids),
            "timeout_seconds": LAMBDA_TIMEOUT_SECONDS,
        },
        latency_ms=plan.fanout_latency_ms,
    )
    depth = stack.queue_depth(work.url)
    progress(
        f"  enqueued {depth} in {enqueue.wall_s:.2f} s; "
        f"draining at {plan.fanout_latency_ms:g} ms latency"
    )
    drain = stack.run(
        {
            "mode": "drain",
            "env": env,
            "queue_url": work.url,
            "queue_arn": work.arn,
            "moto_url": stack.moto.endpoint_url,
            "batch_size": plan.batch_size,
            "timeout_seconds": LAMBDA_TIMEOUT_SECONDS,
            "idle_seconds": 1,
        },
        latency_ms=plan.fanout_latency_ms,
        copies=plan.drain_pollers,
    )
    errors: Counter[str] = Counter()
    for child in drain.children:
        errors.update(child.get("errors", {}))
    per_id = Counter(drain.rebalances)
    left = stack.queue_depth(work.url)
    row = {
        **enqueued(ids, enqueue, depth),
        "enqueue_latency_ms": plan.fanout_latency_ms,
        "enqueue_secrets_manager_calls": enqueue.calls[SECRET_CALLS],
        "drain_latency_ms": plan.fanout_latency_ms,
        "drain_s": drain.wall_s,
        "drain_pollers": plan.drain_pollers,
        "batch_size": plan.batch_size,
        "drain_invocations": drain.total("invocations"),
        "drain_errors": dict(errors),
        "drain_redelivered": drain.total("redelivered"),
        "drain_function_cpu_s": drain.cpu_s,
        "drain_stack_cpu_s": drain.stack_cpu_s,
        "drain_idle_s": drain.child.get("idle_s"),
        "drain_peak_rss_mb": drain.peak_rss_mb,
        "drain_secrets_manager_calls": drain.calls[SECRET_CALLS],
        "drain_dynamodb_calls": drain.dynamodb_calls,
        "drain_connections": drain.connections,
        "api_calls": drain.api_calls,
        "status_calls": drain.status_calls,
        "rebalances": len(drain.rebalances),
        "triggered_twice": sum(1 for n in per_id.values() if n > 1),
        "never_triggered": len(set(portfolio_ids) - set(per_id)),
        "left_on_queue": left,
        "dead_lettered": stack.queue_depth(dlq.url) - dlq_before,
        "log_levels": {"enqueue": enqueue.child.get("log_levels", {}), "drain": drain.log_levels},
        "log_notable": (enqueue.log_notable + drain.log_notable)[:MAX_NOTABLE],
        "stderr": (enqueue.stderr + drain.stderr)[:5],
        "stderr_lines": len(enqueue.stderr) + len(drain.stderr),
    }  # fmt: skip
    progress(
        f"  drained in {drain.wall_s:.1f} s: {drain.api_calls} API calls "
        f"(+{drain.status_calls} status), "
        f"{len(drain.rebalances)} rebalances, {row['triggered_twice']} twice"
    )
    return row


def enqueued(ids: int, enqueue: Run, depth: int) -> dict[str, Any]:
    """What a fan-out invocation did: its row's enqueue fields."""
    return {
        "ids": ids,
        "enqueue_s": enqueue.wall_s,
        "queued": enqueue.child.get("queued"),
        "enqueue_error": enqueue.child.get("error", ""),
        "send_message_batch_calls": enqueue.calls[SEND_BATCH],
        "messages_on_queue": depth,
        "api_calls_during_fanout": enqueue.api_calls,
        "enqueue_peak_rss_mb": enqueue.peak_rss_mb,
    }


def enqueue_only_run(stack: Stack, plan: Plan, ids: int) -> dict[str, Any]:
    """The top of the supported range, fanned out and counted but not drained (at ~100 ids/s
    here that would take a quarter of an hour); the queue is purged after. A direct invocation:
    an EventBridge event holds at most 256 KB, a synchronous invocation 6 MB."""
    work = stack.deployment.work_queue
    if stack.queue_depth(work.url):
        raise RuntimeError("the work queue is not empty before the fan-out")
    portfolio_ids = [f"bench_big_{n:06d}" for n in range(ids)]  # enqueued only: no portfolio
    progress(f"fan-out: {ids} ids, enqueue only")
    enqueue = stack.run(
        {
            "mode": "invoke",
            "env": stack.env(MAX_CONCURRENCY=str(plan.workers)),
            "event": inline_event(portfolio_ids),
            "timeout_seconds": LAMBDA_TIMEOUT_SECONDS,
        },
        latency_ms=plan.fanout_latency_ms,
    )
    depth = stack.queue_depth(work.url)
    stack.deployment.sqs.purge_queue(QueueUrl=work.url)
    progress(f"  enqueued {depth} in {enqueue.wall_s:.2f} s, {enqueue.peak_rss_mb:.0f} MB; purged")
    return {
        **enqueued(ids, enqueue, depth),
        "enqueue_only": True,
        "log_levels": {"enqueue": enqueue.child.get("log_levels", {})},
        "log_notable": enqueue.child.get("log_notable", [])[:20],
        "stderr": enqueue.stderr[:5],
        "stderr_lines": len(enqueue.stderr),
    }


def reasons(rows: Sequence[Mapping[str, Any]]) -> str:
    """The failure reasons in the function's warning and error log records, counted."""
    counted: Counter[str] = Counter()
    for row in rows:
        for record in row.get("log_notable", []):
            counted[str(record.get("reason") or record.get("message", "?"))] += 1
    return ", ".join(f"{reason} x{n}" for reason, n in counted.most_common())


def fanout_tables(rows: Sequence[Mapping[str, Any]], plan: Plan) -> list[Table]:
    enqueue = Table(
        "Large event: queued (one EventBridge event; one work-queue message per portfolio, "
        "MAX_CONCURRENCY=16)",
        ["ids", "enqueue time", "ids/s", "SendMessageBatch", "messages sent", "API calls",
         "peak RSS"],
    )  # fmt: skip
    drained = [r for r in rows if not r.get("enqueue_only")]
    drain = Table(
        f"Large event: end to end (work queue drained in batches of at most {plan.batch_size}, one "
        "invocation each)",
        ["ids", "API latency", "drain time", "ids/s", "invocations", "API calls", "status calls",
         "rebalances", "triggered twice", "retried", "left / DLQ"],
    )  # fmt: skip
    for row in rows:
        enqueue.rows.append(
            [
                f"{row['ids']:,}",
                f"{row['enqueue_s']:.2f} s",
                f"{row['ids'] / row['enqueue_s']:.0f}",
                f"{row['send_message_batch_calls']:,}",
                f"{row['messages_on_queue']:,}",
                str(row["api_calls_during_fanout"]),
                f"{row['enqueue_peak_rss_mb']:.0f} MB",
            ]
        )
        if row.get("enqueue_only"):
            continue
        drain.rows.append(
            [
                f"{row['ids']:,}",
                f"{row['drain_latency_ms']:g} ms",
                f"{row['drain_s']:.1f} s",
                f"{row['ids'] / row['drain_s']:.0f}",
                f"{row['drain_invocations']:,}",
                f"{row['api_calls']:,}",
                f"{row.get('status_calls', 0):,}",
                f"{row['rebalances']:,}",
                str(row["triggered_twice"]),
                str(row["drain_redelivered"]),
                f"{row['left_on_queue']} / {row['dead_lettered']}",
            ]
        )
    enqueue.notes.append(
        "enqueue time: the invocation's wall time; messages sent: the work queue's depth after; "
        "API calls: Glider requests during the event's invocation (must be 0: it only queues)."
    )
    drain.notes.append(
        "API calls: trigger requests; status calls: lookups of a redelivered record's earlier "
        "rebalance (reconciling) before it is sent again."
    )
    enqueue.notes += [
        f"{r['ids']:,} ids: a direct invocation (an EventBridge event holds at most 256 KB), "
        "counted and purged, not drained."
        for r in rows
        if r.get("enqueue_only")
    ]
    pollers = drained[0]["drain_pollers"] if drained else 1
    drain.notes.append(
        f"drain time: {pollers} pollers at once (local/fixtures/event_source.py, each in a "
        "process with its own warm function, as concurrent Lambda environments), receive and "
        "per-message "
        "delete included, plus the final 1 s idle poll."
    )
    drain.notes.append(
        "retried: records the function reported in batchItemFailures (SQS redelivers them); "
        "why, from its own log: " + (reasons(drained) or "none")
    )
    return [enqueue, drain]
