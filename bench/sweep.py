"""Throughput against MAX_CONCURRENCY (the goal case and the sweep); its tables.

Every run but two is the deployed stack's: the event's invocation, then the work queue drained by
as many execution environments at once as the template's SqsMaximumConcurrency, each taking
batches of at most its BatchSize (bench/inline.py). The two others are one environment: the
sequential baseline (MAX_CONCURRENCY=1, one trigger at a time) and, for information, one
environment at the goal's MAX_CONCURRENCY (what one environment does on its own)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from bench.inline import inline_run
from bench.plan import Plan
from bench.report import Table
from bench.stack import Stack

GOAL_REPEATS = 3  # runs of the goal's concurrent case; the median is reported


def ideal_wall_s(
    ids: int, latency_s: float, *, workers: int, environments: int, batch_size: int
) -> float:
    """The latency-bound best: full batches shared evenly by the environments, each batch taking
    one API latency per round of min(BatchSize, MAX_CONCURRENCY) triggers in flight."""
    batches = math.ceil(ids / batch_size)
    rounds = math.ceil(batch_size / min(workers, batch_size))
    return math.ceil(batches / environments) * rounds * latency_s


def sweep_section(stack: Stack, plan: Plan) -> dict[str, Any]:
    """The goal case (ids at the goal latency, sequential and as deployed), the sweep against
    MAX_CONCURRENCY as deployed, and one environment at the goal's MAX_CONCURRENCY."""

    def run(workers: int, environments: int, **options: bool) -> dict[str, Any]:
        return inline_run(
            stack,
            plan.goal_ids,
            plan.goal_latency_ms,
            workers,
            environments=environments,
            batch_size=plan.batch_size,
            **options,
        )

    sequential = run(1, 1)
    points: dict[int, dict[str, Any]] = {}
    for workers in (plan.workers, *plan.sweep_workers):
        if workers in points:
            continue
        # The goal's case takes about a second, where a scheduling hiccup shows: the median
        # of GOAL_REPEATS runs is reported (every run's wall time is kept in the JSON).
        repeats = GOAL_REPEATS if workers == plan.workers else 1
        runs = [run(workers, plan.environments) for _ in range(repeats)]
        point = sorted(runs, key=lambda r: r["wall_s"])[len(runs) // 2]
        point["repeats_wall_s"] = [r["wall_s"] for r in runs]
        points[workers] = point
    one_environment = run(plan.workers, 1)
    cold = run(plan.workers, plan.environments, warm=False)
    ordered = [points[w] for w in sorted(points)]
    for point in [sequential, *ordered, one_environment, cold]:
        point["ideal_per_s"] = plan.goal_ids / ideal_wall_s(
            plan.goal_ids,
            plan.goal_latency_ms / 1000,
            workers=point["workers"],
            environments=point["environments"],
            batch_size=plan.batch_size,
        )
        point["speedup"] = sequential["wall_s"] / point["wall_s"]
    return {
        "ids": plan.goal_ids,
        "latency_ms": plan.goal_latency_ms,
        "environments": plan.environments,
        "batch_size": plan.batch_size,
        "sequential": sequential,
        "points": ordered,
        "goal_workers": plan.workers,
        "one_environment": one_environment,
        "cold_environment": cold,
    }


def modelled(sweep: Mapping[str, Any]) -> str:
    """What the deployed runs model, for the tables' titles."""
    return (
        f"the work queue drained by {sweep['environments']} execution environments at once (the "
        f"template's SqsMaximumConcurrency), batches of at most {sweep['batch_size']} (its "
        "BatchSize)"
    )


def sweep_table(sweep: Mapping[str, Any]) -> Table:
    table = Table(
        f"Throughput against MAX_CONCURRENCY ({sweep['ids']} ids at {sweep['latency_ms']:g} ms; "
        f"{modelled(sweep)}; sequential and the last row: one environment)",
        ["MAX_CONCURRENCY", "environments", "wall", "triggers/s", "ideal/s", "of ideal",
         "speedup", "batches", "TCP conns", "GetSecretValue", "peak RSS"],
    )  # fmt: skip
    labelled = [
        ("1 (sequential)", sweep["sequential"]),
        *((str(p["workers"]), p) for p in sweep["points"]),
        (f"{sweep['goal_workers']} (one environment)", sweep["one_environment"]),
    ]
    for label, p in labelled:
        table.rows.append(
            [
                label,
                str(p["environments"]),
                f"{p['wall_s']:.2f} s",
                f"{p['triggers_per_s']:.1f}",
                f"{p['ideal_per_s']:.1f}",
                f"{100 * p['triggers_per_s'] / p['ideal_per_s']:.0f}%",
                f"{p['speedup']:.1f}x",
                str(p["drain_invocations"]),
                str(p["tcp_connections"]),
                str(p["secrets_manager_calls"]),
                f"{p['peak_rss_mb']:.0f} MB",
            ]
        )
    batch = sweep["batch_size"]
    table.notes.append(
        "wall: from the event's invocation to the last trigger's settlement; ideal: full "
        "batches shared evenly by the environments, each taking one latency per round of "
        f"min({batch}, MAX_CONCURRENCY) triggers, the latency-bound best; speedup over "
        "sequential; batches: the drain's invocations; TCP conns: to Glider, summed over the "
        "environments. Chart: throughput.png."
    )
    table.notes.append(
        f"MAX_CONCURRENCY bounds the triggers in flight within one invocation, which holds at "
        f"most {batch} (BatchSize): above {batch} it changes nothing on this path, and the "
        f"concurrency that counts is the environments' (SqsMaximumConcurrency x {batch} "
        "triggers in flight at most)."
    )
    goal = next(p for p in sweep["points"] if p["workers"] == sweep["goal_workers"])
    walls = ", ".join(f"{w:.2f}" for w in goal["repeats_wall_s"])
    table.notes.append(
        f"MAX_CONCURRENCY={goal['workers']}: the median of {len(goal['repeats_wall_s'])} runs "
        f"({walls} s)."
    )
    return table


def cost_table(sweep: Mapping[str, Any]) -> Table:
    """Where the goal case's time goes: CPU per trigger, in the function and in the stack."""
    by_workers = {p["workers"]: p for p in sweep["points"]}
    goal = sweep["goal_workers"]
    envs = sweep["environments"]
    table = Table(
        f"Where the time goes ({sweep['ids']} ids at {sweep['latency_ms']:g} ms; CPU per "
        f"trigger; {modelled(sweep)} unless said)",
        ["run", "wall", "speedup", "function CPU", "stack CPU", "first API call",
         "GetSecretValue", "DynamoDB calls"],
    )  # fmt: skip
    runs = [
        ("sequential (one environment, MAX_CONCURRENCY=1)", sweep["sequential"]),
        (f"{envs} environments, MAX_CONCURRENCY={goal}", by_workers[goal]),
        (f"{envs} environments, cold", sweep["cold_environment"]),
        (f"one environment, MAX_CONCURRENCY={goal}", sweep["one_environment"]),
    ]
    for label, p in runs:
        table.rows.append(
            [
                label,
                f"{p['wall_s']:.2f} s",
                f"{p['speedup']:.1f}x",
                f"{1000 * p['function_cpu_s'] / p['ids']:.1f} ms",
                f"{1000 * p['stack_cpu_s'] / p['ids']:.1f} ms",
                f"{1000 * (p['first_api_call_s'] or 0):.0f} ms",
                str(p["secrets_manager_calls"]),
                str(p["dynamodb_calls"]),
            ]
        )
    table.notes.append(
        "function CPU: the environments' processes from the event's invocation on, summed; stack "
        "CPU: moto's process and the emulator's meanwhile; GetSecretValue / DynamoDB: calls from "
        "the event's invocation on. Cold: each environment's first invocation, which builds its "
        "AWS clients and reads the key before its first trigger (see 'first API call')."
    )
    return table
