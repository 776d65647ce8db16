"""Judging the results: the goals (PASS/FAIL), the checks that hold at any size, the notes."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from bench.plan import Plan


@dataclass
class Verdict:
    name: str
    target: str
    measured: str
    ok: bool | None  # None: not evaluated (a quick run, or the section did not run)

    @property
    def status(self) -> str:
        return {True: "PASS", False: "FAIL", None: "INFO"}[self.ok]

    def line(self) -> str:
        return f"{self.status}  {self.name}: {self.measured} (target: {self.target})"


def goals(plan: Plan, results: Mapping[str, Any]) -> list[Verdict]:
    verdicts: list[Verdict] = []

    def judged(ok: bool) -> bool | None:
        return None if plan.quick else ok  # a quick run's sizes are not the goals'

    sweep = results.get("throughput")
    if sweep:
        by_workers = {p["workers"]: p for p in sweep["points"]}
        concurrent, sequential = by_workers[plan.workers], sweep["sequential"]
        one, cold = sweep["one_environment"], sweep["cold_environment"]
        speedup = sequential["wall_s"] / concurrent["wall_s"]
        conns = concurrent["tcp_connections"]
        envs = sweep["environments"]
        # The emulator cannot tell the environments' connections apart: their sum is judged
        # against every environment's pool at MAX_CONCURRENCY.
        ok = speedup >= plan.goal_speedup and conns <= envs * plan.workers
        verdicts.append(
            Verdict(
                f"{plan.goal_ids} portfolios at {plan.goal_latency_ms:g} ms, the work queue "
                f"drained by {envs} environments at once (SqsMaximumConcurrency), batches of at "
                f"most {sweep['batch_size']}, MAX_CONCURRENCY={plan.workers}, warm environments",
                f">= {plan.goal_speedup:g}x faster than sequential, <= {plan.workers} TCP "
                f"connections per environment ({envs * plan.workers} in all)",
                f"{speedup:.1f}x ({sequential['wall_s']:.2f} s -> {concurrent['wall_s']:.2f} s), "
                f"{conns} TCP connections in all; cold environments (each one's first "
                f"invocation): {cold['wall_s']:.2f} s, {cold['speedup']:.1f}x; one environment "
                f"(information): {one['wall_s']:.2f} s, {one['speedup']:.1f}x",
                judged(ok),
            )
        )
    cold = results.get("cold_start")
    if cold:
        verdicts.append(
            Verdict(
                "handler import vs bare import boto3",
                f"<= {plan.import_ratio_goal:g}x",
                f"{cold['ratio']:.2f}x ({cold['median_app_s'] * 1000:.0f} ms vs "
                f"{cold['median_boto3_s'] * 1000:.0f} ms, medians of {cold['runs']})",
                judged(cold["ratio"] <= plan.import_ratio_goal),
            )
        )
    artifact = (cold or {}).get("artifact")
    if artifact and "skipped" not in artifact:
        medians = artifact["median_s"]
        verdicts.append(
            Verdict(
                "cold import of the built artifact (its bytecode shipped) vs bare import boto3",
                f"<= {plan.artifact_ratio_goal:.2f}x",
                f"{artifact['ratio']:.2f}x ({medians['bytecode'] * 1000:.0f} ms vs "
                f"{medians['boto3'] * 1000:.0f} ms, medians of {artifact['runs']}; without the "
                f"bytecode {artifact['ratio_without_bytecode']:.2f}x, "
                f"{medians['source'] * 1000:.0f} ms; CPU time {artifact['cpu_ratio']:.2f}x)",
                judged(artifact["ratio"] <= plan.artifact_ratio_goal),
            )
        )
    inline = [r for r in results.get("inline", []) if r["ids"] == plan.rss_ids]
    if inline:
        peak = max(r["peak_rss_mb"] for r in inline)
        verdicts.append(
            Verdict(
                f"peak RSS of a {plan.rss_ids:,}-id invocation",
                f"< {plan.rss_goal_mb:g} MB",
                f"{peak:.0f} MB (max over the {len(inline)} inline run(s) of that size)",
                judged(peak < plan.rss_goal_mb),
            )
        )
    return verdicts


def sweep_runs(results: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Every run of the throughput sweep: its points, then sequential, one environment, cold."""
    sweep = results.get("throughput") or {}
    extra = ("sequential", "one_environment", "cold_environment")
    return [*sweep.get("points", []), *(sweep[k] for k in extra if k in sweep)]


def checks(results: Mapping[str, Any]) -> list[Verdict]:
    """What must hold whatever the sizes: every id triggered, once; nothing lost."""
    out: list[Verdict] = []
    runs = list(results.get("inline", []))
    runs += [r["sequential"] for r in runs if not r["sequential"]["estimated"]]
    runs += sweep_runs(results)
    incomplete = [
        r
        for r in runs
        if r.get("triggered") != r["ids"] or r.get("error") or r.get("left_on_queue")
    ]
    if runs:
        out.append(
            Verdict(
                "events queued then drained trigger every id",
                "triggered == ids, no error, nothing left on the work queue",
                f"{len(runs) - len(incomplete)}/{len(runs)} runs complete",
                not incomplete,
            )
        )
    for row in results.get("fanout", []):
        if row.get("enqueue_only"):
            queued = not row["enqueue_error"] and row["messages_on_queue"] == row["ids"]
            out.append(
                Verdict(
                    f"an event of {row['ids']:,} ids, queued",
                    "all queued, 0 API calls while queuing",
                    f"{row['messages_on_queue']:,} queued in {row['enqueue_s']:.1f} s, "
                    f"{row['api_calls_during_fanout']} API calls, "
                    f"{row['enqueue_peak_rss_mb']:.0f} MB peak RSS"
                    + (f", {row['enqueue_error']}" if row["enqueue_error"] else ""),
                    queued and not row["api_calls_during_fanout"],
                )
            )
            continue
        problems = []
        if row["enqueue_error"] or row["messages_on_queue"] != row["ids"]:
            problems.append(f"{row['messages_on_queue']} messages queued")
        if row["api_calls_during_fanout"]:
            problems.append(f"{row['api_calls_during_fanout']} API calls while queuing")
        if row["api_calls"] != row["ids"] or row["rebalances"] != row["ids"]:
            problems.append(f"{row['api_calls']} API calls, {row['rebalances']} rebalances")
        if row["triggered_twice"] or row["never_triggered"]:
            problems.append(
                f"{row['triggered_twice']} twice, {row['never_triggered']} never triggered"
            )
        if row["left_on_queue"] or row["dead_lettered"]:
            problems.append(f"{row['left_on_queue']} left, {row['dead_lettered']} dead-lettered")
        out.append(
            Verdict(
                f"an event of {row['ids']:,} ids end to end",
                "all queued, 0 API calls while queuing, each id triggered exactly once",
                "; ".join(problems)
                or f"{row['ids']:,} queued, {row['rebalances']:,} triggered once each",
                not problems,
            )
        )
    return out


def observations(results: Mapping[str, Any]) -> list[str]:
    """Warnings the function logged or printed during the runs, for the record."""
    notes: list[str] = []
    rows = list(results.get("inline", []))
    rows += sweep_runs(results)
    stderr: Counter[str] = Counter()
    for row in rows + list(results.get("fanout", [])):
        for line in row.get("stderr", []):
            stderr[line[:160]] += 1
    notes += [f"child stderr ({n} run(s)): {line}" for line, n in stderr.most_common(5)]
    overflows = sum(row.get("listen_overflows") or 0 for row in rows)
    if overflows:
        notes.append(
            f"{overflows} connection(s) dropped by a full listen queue during the runs (the "
            "client retries after 1 s): those runs' times include the stall"
        )
    levels: Counter[str] = Counter()
    for row in rows:
        levels.update(row.get("log_levels", {}))
    for row in results.get("fanout", []):
        for part in row.get("log_levels", {}).values():
            levels.update(part)
    unusual = {level: n for level, n in levels.items() if level not in ("INFO", "DEBUG")}
    if unusual:
        notes.append(f"the function logged {unusual} during the runs (see the JSON per run)")
    return notes
