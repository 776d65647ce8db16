"""Does coalescing the follow-ups pay? The goal case's inline invocation with the follow-up
writer coalesced (CoalescingWriter, as composition builds it) and not (each worker's follow-up a
SendMessageBatch call of its own: bench/case.py's bench-only seam), at several AWS latencies."""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from typing import Any

from bench.inline import inline_event
from bench.moto_calls import CALLS_PATH
from bench.plan import Plan
from bench.report import Table, progress
from bench.stack import LAMBDA_TIMEOUT_SECONDS, WARMUP_PORTFOLIO, Stack

SEND_MESSAGE = "AmazonSQS.SendMessage"
SEND_MESSAGE_BATCH = "AmazonSQS.SendMessageBatch"
WRITERS = {True: "coalesced", False: "uncoalesced"}


def coalescing_run(
    stack: Stack, plan: Plan, aws_latency_ms: float, *, coalesce: bool
) -> dict[str, Any]:
    """One warm invocation of `plan.coalescing_ids` at the goal case's Glider latency."""
    ids = plan.coalescing_ids
    progress(
        f"coalescing: {ids} ids, AWS {aws_latency_ms:g} ms, Glider {plan.goal_latency_ms:g} ms, "
        f"follow-ups {WRITERS[coalesce]}"
    )
    stack.moto.set_latency(aws_latency_ms)
    run = stack.run(
        {
            "mode": "invoke",
            "env": stack.env(MAX_CONCURRENCY=str(plan.workers), FANOUT_THRESHOLD="100000"),
            "event": inline_event(stack.portfolios(ids)),
            "timeout_seconds": LAMBDA_TIMEOUT_SECONDS,
            "warmup_event": inline_event([WARMUP_PORTFOLIO]),
            "calls_url": stack.moto.endpoint_url + CALLS_PATH,
            "coalesce_follow_ups": coalesce,
        },
        latency_ms=plan.goal_latency_ms,
    )
    child = run.child
    row = {
        "ids": ids,
        "aws_latency_ms": aws_latency_ms,
        "glider_latency_ms": plan.goal_latency_ms,
        "workers": plan.workers,
        "coalesced": coalesce,
        "wall_s": run.wall_s,
        "send_message": run.calls[SEND_MESSAGE],
        "send_message_batch": run.calls[SEND_MESSAGE_BATCH],
        "aws_calls": sum(run.calls.values()),
        "triggered": child.get("triggered"),
        "error": child.get("error", ""),
        "listen_overflows": run.listen_overflows,
        "log_levels": child.get("log_levels", {}),
        "stderr": run.stderr[:5],
    }
    progress(
        f"  {run.wall_s:.2f} s, {row['send_message_batch']} SendMessageBatch, "
        f"{row['aws_calls']} AWS calls"
    )
    return row


def coalescing_section(stack: Stack, plan: Plan) -> dict[str, Any]:
    """Each repeat runs every AWS latency, the two writers one after the other, their order
    swapped from one repeat to the next: on a shared machine, what the others do then falls on
    both alike."""
    runs: list[dict[str, Any]] = []
    try:
        for repeat in range(plan.coalescing_repeats):
            order = (True, False) if repeat % 2 == 0 else (False, True)
            for latency in plan.coalescing_aws_latencies_ms:
                runs += [coalescing_run(stack, plan, latency, coalesce=c) for c in order]
    finally:
        stack.moto.set_latency(plan.aws_latency_ms)  # the other sections' latency
    return {
        "ids": plan.coalescing_ids,
        "workers": plan.workers,
        "glider_latency_ms": plan.goal_latency_ms,
        "repeats": plan.coalescing_repeats,
        "runs": runs,
        "summary": summarize(runs, plan.coalescing_aws_latencies_ms),
    }


def summarize(
    runs: Sequence[Mapping[str, Any]], latencies: Sequence[float]
) -> list[dict[str, Any]]:
    """Per AWS latency: each writer's wall (median, min) and calls, and what coalescing saves."""
    summary = []
    for latency in latencies:
        row: dict[str, Any] = {"aws_latency_ms": latency}
        for coalesce, name in WRITERS.items():
            mine = [
                r for r in runs if r["aws_latency_ms"] == latency and r["coalesced"] is coalesce
            ]
            walls = [float(r["wall_s"]) for r in mine]
            row[name] = {
                "wall_median_s": statistics.median(walls),
                "wall_min_s": min(walls),
                "send_message": statistics.median(r["send_message"] for r in mine),
                "send_message_batch": statistics.median(r["send_message_batch"] for r in mine),
            }
        plain = row["uncoalesced"]["wall_median_s"]
        row["saved_median_s"] = plain - row["coalesced"]["wall_median_s"]
        row["saved_min_s"] = row["uncoalesced"]["wall_min_s"] - row["coalesced"]["wall_min_s"]
        row["saved_pct"] = 100 * row["saved_median_s"] / plain
        summary.append(row)
    return summary


def coalescing_table(section: Mapping[str, Any]) -> Table:
    table = Table(
        f"Follow-ups coalesced or not ({section['ids']} ids, MAX_CONCURRENCY="
        f"{section['workers']}, Glider {section['glider_latency_ms']:g} ms)",
        [
            "AWS latency",
            "coalesced wall",
            "uncoalesced wall",
            "saved",
            "SendMessageBatch",
            "SendMessage",
        ],
    )
    for row in section["summary"]:
        on, off = row["coalesced"], row["uncoalesced"]
        table.rows.append(
            [
                f"{row['aws_latency_ms']:g} ms",
                f"{on['wall_median_s']:.2f} s ({on['wall_min_s']:.2f})",
                f"{off['wall_median_s']:.2f} s ({off['wall_min_s']:.2f})",
                f"{row['saved_median_s'] * 1000:+.0f} ms ({row['saved_pct']:+.1f}%; "
                f"min {row['saved_min_s'] * 1000:+.0f} ms)",
                f"{on['send_message_batch']:g} vs {off['send_message_batch']:g}",
                f"{on['send_message']:g} vs {off['send_message']:g}",
            ]
        )
    table.notes.append(
        f"wall: median (min) of {section['repeats']} warm invocations each, the writers "
        "alternating; AWS latency: what moto's process waits before each AWS call (DynamoDB, "
        "SQS, Secrets Manager alike); saved: uncoalesced minus coalesced (positive: coalescing "
        "is faster), as a share of the uncoalesced median; calls: coalesced vs uncoalesced, "
        "of the invocation (median). Uncoalesced: bench/case.py's bench-only seam makes the "
        "follow-up writer the plain QueueWriter."
    )
    return table
