"""`make bench`: the function against the local stack, with configurable API latency.

    python -m bench.run [--quick] [--latency-ms 20 100] [--aws-latency-ms 20] [--out bench/results]

The Glider emulator lives in this process; moto runs in a process of its own
(bench/moto_process.py: in AWS those services are other machines) and counts every AWS call the
function makes, by operation. Every measured invocation
runs in a child process (bench/case.py) that loads the handler fresh, so its wall time and peak
RSS are the function's. Sections: the inline path (ids x latency, with the speedup over
sequential), throughput against MAX_CONCURRENCY (the chart), the fan-out path end to end through
the moto work queue, and the cold start (handler import vs a bare `import boto3`, in the
development tree and on the built artifact, with and without its shipped bytecode). Prints the
tables and the goals' PASS/FAIL; writes latest.json, latest.md and throughput.png to --out.
Exits 1 when a goal or a check fails.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from bench.cold import cold_section, cold_tables
from bench.fanout import enqueue_only_run, fanout_run, fanout_tables
from bench.inline import inline_section, inline_table
from bench.machine import machine, machine_line
from bench.plan import Plan, parse_args
from bench.report import Table, throughput_chart, write_atomic
from bench.stack import local_stack
from bench.sweep import cost_table, sweep_section, sweep_table
from bench.verdicts import checks, goals, observations


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv, description=__doc__.split("\n\n")[0])
    plan = dataclasses.replace(
        Plan.build(args.quick, args.latency_ms), aws_latency_ms=args.aws_latency_ms
    )
    if args.fanout_ids:
        plan = dataclasses.replace(plan, fanout_ids=tuple(args.fanout_ids))
    sections = {s.strip() for s in args.only.split(",") if s.strip()}
    started = time.perf_counter()
    info = machine()
    results: dict[str, Any] = {"machine": info, "quick": plan.quick, "plan": plan.__dict__}
    tables: list[Table] = []
    with local_stack(aws_latency_ms=plan.aws_latency_ms) as stack:
        results["placement"] = stack.placement.describe()
        if "inline" in sections:
            results["inline"] = inline_section(stack, plan)
            tables.append(inline_table(results["inline"], plan))
        if "throughput" in sections:
            results["throughput"] = sweep_section(stack, plan)
            tables += [sweep_table(results["throughput"]), cost_table(results["throughput"])]
        if "fanout" in sections:
            results["fanout"] = [fanout_run(stack, plan, n) for n in plan.fanout_ids]
            results["fanout"] += [enqueue_only_run(stack, plan, n) for n in plan.enqueue_only_ids]
            tables += fanout_tables(results["fanout"], plan)
        if "cold" in sections:
            results["cold_start"] = cold_section(stack, plan)
            tables += cold_tables(results["cold_start"])
    verdicts = goals(plan, results)
    verdicts_checks = checks(results)
    results["goals"] = [v.__dict__ | {"status": v.status} for v in verdicts]
    results["checks"] = [v.__dict__ | {"status": v.status} for v in verdicts_checks]
    results["notes"] = observations(results)
    results["elapsed_s"] = time.perf_counter() - started

    args.out.mkdir(parents=True, exist_ok=True)
    line = machine_line(info)
    if "throughput" in results:
        chart(args.out / "throughput.png", results["throughput"], info)
    tags = ["--quick: reduced sizes"] if plan.quick else []
    tags += [f"AWS latency: {plan.aws_latency_ms:g} ms per call"] if plan.aws_latency_ms else []
    header = f"Machine: {line}" + "".join(f"  [{tag}]" for tag in tags)
    header += f"\nCPUs: {results['placement']}"
    verdict_lines = [v.line() for v in verdicts + verdicts_checks]
    print(header + "\n")
    for table in tables:
        print(table.text() + "\n")
    print("\n".join(verdict_lines))
    for note in results["notes"]:
        print(f"note: {note}")
    print(f"\nTotal {results['elapsed_s']:.0f} s; results in {args.out}/")

    markdown = [
        f"_Machine: {line}_" + "".join(f" ({tag})" for tag in tags),
        "",
        f"_CPUs: {results['placement']}_",
        "",
    ]
    for table in tables:
        markdown += [table.markdown(), ""]
    markdown += ["**Goals**", ""] + [f"- {v.line()}" for v in verdicts + verdicts_checks]
    write_atomic(args.out / "latest.md", "\n".join(markdown) + "\n")
    write_atomic(args.out / "latest.json", json.dumps(results, indent=2, default=str) + "\n")
    return 1 if any(v.ok is False for v in verdicts + verdicts_checks) else 0


def chart(path: Path, sweep: Mapping[str, Any], info: Mapping[str, Any]) -> None:
    """The throughput chart: the sweep as deployed, one environment beside it."""
    one = sweep["one_environment"]
    throughput_chart(
        path,
        workers=[p["workers"] for p in sweep["points"]],
        measured=[p["triggers_per_s"] for p in sweep["points"]],
        ideal=[p["ideal_per_s"] for p in sweep["points"]],
        title=(
            f"{sweep['ids']} portfolios at {sweep['latency_ms']:g} ms API latency:\nthe work "
            f"queue drained by {sweep['environments']} environments at once, batches of at "
            f"most {sweep['batch_size']}"
        ),
        machine=f"{info['cpu']}, {info['cores']} cores, Python {info['python']}",
        beside=(one["workers"], one["triggers_per_s"], "measured, one environment"),
    )


if __name__ == "__main__":
    raise SystemExit(main())
