"""The event path: a direct invocation of ids queued, then drained from the work queue by the
execution environments its event source runs (ids x latency), against sequential; its table. An
event's invocation triggers nothing itself: every trigger runs from the work queue, so its figure
is the event queued then drained."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from bench.plan import Plan
from bench.report import Table, progress
from bench.stack import LAMBDA_TIMEOUT_SECONDS, SECRET_CALLS, WARMUP_PORTFOLIO, Stack

SEQUENTIAL_BUDGET_SECONDS = 25.0  # sequential runs predicted to take longer are estimated


def inline_event(ids: Sequence[str]) -> dict[str, Any]:
    """Scheduler-style constant input (a direct invocation: no de-duplication key)."""
    return {"portfolioIds": list(ids), "skipScheduleValidation": False}


def inline_run(
    stack: Stack,
    ids: int,
    latency_ms: float,
    workers: int,
    *,
    environments: int,
    batch_size: int,
    warm: bool = True,
) -> dict[str, Any]:
    """One direct invocation with `ids` portfolios, which queues one work-queue message each,
    then the work queue drained as its event source mapping drains it: `environments` execution
    environments at once (the invoked one among them), each a process of its own taking batches
    of at most `batch_size`, one invocation each. Each environment is warm (one earlier,
    unmeasured invocation of one portfolio, and its drain, built its clients and read the key),
    so the figures are the triggers' and not the cold start's (measured on its own, in the cold
    section). `warm=False` measures the environments' first invocations instead."""
    cold = "" if warm else ", cold environments"
    progress(
        f"event queued then drained: {ids} ids at {latency_ms:g} ms, "
        f"MAX_CONCURRENCY={workers}, {environments} environment(s){cold}"
    )
    env = stack.env(MAX_CONCURRENCY=str(workers))
    work = stack.deployment.work_queue
    if stack.queue_depth(work.url):
        raise RuntimeError("the work queue is not empty before the event")
    run = stack.run(
        {
            "mode": "invoke",
            "env": env,
            "event": inline_event(stack.portfolios(ids)),
            "timeout_seconds": LAMBDA_TIMEOUT_SECONDS,
            "warmup_event": inline_event([WARMUP_PORTFOLIO]) if warm else None,
            "work_queue": {
                "queue_url": work.url,
                "queue_arn": work.arn,
                "moto_url": stack.moto.endpoint_url,
                "batch_size": batch_size,
            },
        },
        latency_ms=latency_ms,
        copies=environments,
    )
    child = run.child  # the environment invoked with the event
    children = run.children
    errors = [str(c["error"]) for c in children if c.get("error")]
    sizes = [n for c in children for n in c.get("drain_batch_sizes", [])]
    row = {
        "ids": ids,
        "latency_ms": latency_ms,
        "workers": workers,
        "environments": environments,
        "batch_size": batch_size,
        "warm": warm,
        "estimated": False,
        "wall_s": run.wall_s,
        "triggers_per_s": ids / run.wall_s,
        "tcp_connections": run.connections,
        "aws_tcp_connections": run.aws_connections,
        # From the parent's "go" on, the warm-ups' reads left out: 0 warm, one per cold environment.
        "secrets_manager_calls": run.calls[SECRET_CALLS],
        "dynamodb_calls": run.dynamodb_calls,
        "sqs_sends": run.sqs_sends,
        "api_calls": run.api_calls,
        "rebalances": len(run.rebalances),
        "queued": child.get("queued"),
        "invocation_s": child.get("invocation_s"),  # the event's own, before any batch
        "triggered": run.total("triggered"),
        "dead_lettered": child.get("dead_lettered"),
        "drain_invocations": run.total("drain_invocations"),
        "drain_invocations_per_environment": [c.get("drain_invocations") for c in children],
        "largest_batch": max(sizes, default=0),
        "drain_redelivered": run.total("drain_redelivered"),
        "left_on_queue": stack.queue_depth(work.url),
        "error": "; ".join(errors[:3]),
        "peak_rss_mb": run.peak_rss_mb,
        "import_s": child.get("import_s"),
        "function_cpu_s": run.cpu_s,
        "stack_cpu_s": run.stack_cpu_s,
        "first_api_call_s": run.first_api_call_s,
        "listen_overflows": run.listen_overflows,
        "log_levels": run.log_levels,
        "log_notable": run.log_notable,
        "stderr": run.stderr[:5],
        "stderr_lines": len(run.stderr),
    }
    progress(
        f"  {run.wall_s:.2f} s, {row['triggers_per_s']:.1f}/s, {run.connections} conns, "
        f"{row['drain_invocations']} batches (largest {row['largest_batch']}), "
        f"{row['secrets_manager_calls']} GetSecretValue, {run.peak_rss_mb:.0f} MB"
    )
    return row


def estimated_sequential(ids: int, latency_ms: float, per_call_s: float) -> dict[str, Any]:
    wall = ids * per_call_s
    return {
        "ids": ids,
        "latency_ms": latency_ms,
        "workers": 1,
        "environments": 1,
        "estimated": True,
        "wall_s": wall,
        "triggers_per_s": ids / wall,
        "basis": f"{ids} x {per_call_s * 1000:.1f} ms per call (the sequential 100-id run)",
    }


def inline_section(stack: Stack, plan: Plan) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for latency in plan.latencies_ms:
        per_call: float | None = None
        for ids in plan.inline_ids:
            concurrent = inline_run(
                stack,
                ids,
                latency,
                plan.workers,
                environments=plan.environments,
                batch_size=plan.batch_size,
            )
            predicted = ids * (per_call if per_call is not None else latency / 1000)
            if per_call is not None and predicted > SEQUENTIAL_BUDGET_SECONDS:
                progress(f"  sequential {ids} ids: predicted {predicted:.0f} s, estimated")
                sequential = estimated_sequential(ids, latency, per_call)
            else:
                # One trigger at a time: one environment, MAX_CONCURRENCY=1.
                sequential = inline_run(
                    stack, ids, latency, 1, environments=1, batch_size=plan.batch_size
                )
                if ids == max(i for i in plan.inline_ids if i <= 100):
                    per_call = sequential["wall_s"] / ids
            concurrent["sequential"] = sequential
            concurrent["speedup"] = sequential["wall_s"] / concurrent["wall_s"]
            rows.append(concurrent)
    return rows


def inline_table(rows: Sequence[Mapping[str, Any]], plan: Plan) -> Table:
    table = Table(
        f"Event queued then drained, as deployed (a direct invocation queues one message per "
        f"id; the work queue drained by {plan.environments} execution environments at once, "
        f"the template's SqsMaximumConcurrency, each a process of its own taking batches of at "
        f"most {plan.batch_size}, its BatchSize; MAX_CONCURRENCY={plan.workers}; sequential = "
        "one environment, MAX_CONCURRENCY=1)",
        [
            "ids",
            "latency",
            "wall",
            "triggers/s",
            "sequential",
            "speedup",
            "TCP conns",
            "AWS conns",
            "GetSecretValue",
            "DynamoDB calls",
            "SQS sends",
            "peak RSS",
        ],
    )
    for row in rows:
        seq = row["sequential"]
        est = " (est.)" if seq["estimated"] else ""
        table.rows.append(
            [
                f"{row['ids']:,}",
                f"{row['latency_ms']:g} ms",
                f"{row['wall_s']:.2f} s",
                f"{row['triggers_per_s']:.1f}",
                f"{seq['wall_s']:.2f} s{est}",
                f"{row['speedup']:.1f}x{est}",
                str(row["tcp_connections"]),
                str(row["aws_tcp_connections"]),
                str(row["secrets_manager_calls"]),
                str(row["dynamodb_calls"]),
                str(row.get("sqs_sends", "")),
                f"{row['peak_rss_mb']:.0f} MB",
            ]
        )
    table.notes.append(
        "wall: from the event's invocation (it queues one work-queue message per id and "
        "triggers nothing) to the last trigger's settlement: the work queue drained, once the "
        f"invocation has returned, by {plan.environments} execution environments at once, the "
        "invoked one among them (each a process of its own, as the event source mapping runs "
        f"them: batches of at most {plan.batch_size}, one invocation each, at most "
        "min(BatchSize, MAX_CONCURRENCY) triggers in flight per environment; AWS's pollers take "
        "the first messages while the invocation is still queuing the rest, so this errs long "
        "by up to the invocation's time, which 'first API call' below includes). Every "
        "environment warm (its clients built and the key read by "
        "one earlier invocation of one portfolio and its drain, not measured; the cold start is "
        "measured on its own below). The environments share this machine's CPUs with moto and "
        "the emulator, where each has a vCPU of its own in Lambda; "
        "TCP conns: connections the Glider emulator accepted in all the environments (the "
        "warm-ups' reused); AWS conns: connections moto accepted from the event's invocation on "
        "(kept alive, as AWS endpoints do); GetSecretValue: calls in the environments (one "
        "each, in its warm-up); DynamoDB: calls of the invocation and the drain; SQS sends: "
        "SendMessage(Batch) calls of the invocation and the drain (the event's queue writes, "
        "then each rebalance's first follow-up: following outcomes costs one each); "
        "peak RSS: the largest of the environments' processes (VmHWM; see bench/case.py)."
    )
    estimated = [row["sequential"] for row in rows if row["sequential"]["estimated"]]
    table.notes += [
        f"(est.) sequential {s['ids']:,} @ {s['latency_ms']:g} ms = {s['basis']}" for s in estimated
    ]
    return table
