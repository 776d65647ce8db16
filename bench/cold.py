"""The cold start: handler import against a bare `import boto3`, and what it imports; its tables."""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from bench.plan import Plan
from bench.report import Table, progress
from bench.stack import Stack
from local.fixtures.stack import FUNCTION_DIR

IMPORT_SNIPPET = "import time; t=time.perf_counter(); import {module}; print(time.perf_counter()-t)"


def import_env(stack: Stack) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "PYTHON"))}
    env.update(stack.env())
    return env


def python_in_function_dir(args: Sequence[str], env: Mapping[str, str]) -> str:
    """Run our interpreter with `args` where Lambda runs the function; its stdout, or stderr
    with -X importtime (where Python writes the tree)."""
    completed = subprocess.run(  # noqa: S603 - our own interpreter
        [sys.executable, *args],
        cwd=FUNCTION_DIR,
        env=dict(env),
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    return completed.stderr if "importtime" in args else completed.stdout


def time_import(module: str, env: Mapping[str, str]) -> float:
    output = python_in_function_dir(["-c", IMPORT_SNIPPET.format(module=module)], env)
    return float(output.strip().splitlines()[-1])


@dataclass
class ImportNode:
    name: str
    self_us: int
    children: list[ImportNode]


def import_tree(module: str, env: Mapping[str, str]) -> list[ImportNode]:
    """`python -X importtime -c 'import MODULE'`, parsed into its tree."""
    tree = python_in_function_dir(["-X", "importtime", "-c", f"import {module}"], env)
    pending: dict[int, list[ImportNode]] = {}
    for line in tree.splitlines():
        if not line.startswith("import time:") or "imported package" in line:
            continue
        parts = line.split("|", 2)  # "import time: SELF | CUMULATIVE | <indent>NAME"
        if len(parts) != 3:
            continue
        name = parts[2][1:]  # one separating space, then two per nesting level
        depth = (len(name) - len(name.lstrip(" "))) // 2
        self_us = int(parts[0].split(":", 1)[1])
        node = ImportNode(name.strip(), self_us, pending.pop(depth + 1, []))
        pending.setdefault(depth, []).append(node)
    return pending.get(0, [])


def beyond(nodes: Sequence[ImportNode], baseline: set[str]) -> dict[str, float]:
    """Per module not imported by the baseline: its cumulative time, less what the baseline
    would import anyway (in ms)."""
    extra: dict[str, float] = {}

    def visit(node: ImportNode) -> float:
        children = sum(visit(child) for child in node.children)
        if node.name in baseline:
            return 0.0
        total = node.self_us / 1000 + children
        extra[node.name] = total
        return total

    for node in nodes:
        visit(node)
    return extra


def names(nodes: Sequence[ImportNode]) -> set[str]:
    out: set[str] = set()
    stack = list(nodes)
    while stack:
        node = stack.pop()
        out.add(node.name)
        stack.extend(node.children)
    return out


def cold_section(stack: Stack, plan: Plan) -> dict[str, Any]:
    env = import_env(stack)
    # Tracing on, as Lambda runs it (Powertools traces only where LAMBDA_TASK_ROOT is set): the
    # X-Ray SDK imported and botocore patched, at init.
    traced = {**env, "TRACING": "Active", "LAMBDA_TASK_ROOT": str(FUNCTION_DIR)}
    progress(
        f"cold start: {plan.cold_runs} x (import boto3, import app, import app traced), alternating"
    )
    time_import("boto3", env)  # warm the bytecode caches and the page cache, not counted
    time_import("app", env)
    time_import("app", traced)
    boto3_s: list[float] = []
    app_s: list[float] = []
    traced_s: list[float] = []
    for _ in range(plan.cold_runs):
        boto3_s.append(time_import("boto3", env))
        app_s.append(time_import("app", env))
        traced_s.append(time_import("app", traced))
    runs = 3
    extras: dict[str, list[float]] = {}
    for _ in range(runs):
        baseline = names(import_tree("boto3", env))
        for module, ms in beyond(import_tree("app", env), baseline).items():
            extras.setdefault(module, []).append(ms)
    top = sorted(
        ((m, statistics.median(v)) for m, v in extras.items() if len(v) == runs),
        key=lambda item: -item[1],
    )[:10]
    median_boto3, median_app = statistics.median(boto3_s), statistics.median(app_s)
    median_traced = statistics.median(traced_s)
    result = {
        "runs": plan.cold_runs,
        "boto3_s": boto3_s,
        "app_s": app_s,
        "app_traced_s": traced_s,
        "median_boto3_s": median_boto3,
        "median_app_s": median_app,
        "median_app_traced_s": median_traced,
        "tracing_cost_ms": (median_traced - median_app) * 1000,
        "ratio": median_app / median_boto3,
        "beyond_boto3_ms": (median_app - median_boto3) * 1000,
        "top_beyond_boto3": [{"module": m, "cumulative_ms": ms} for m, ms in top],
    }
    progress(
        f"  boto3 {median_boto3 * 1000:.0f} ms, app {median_app * 1000:.0f} ms, "
        f"ratio {result['ratio']:.2f}; with TRACING=Active {median_traced * 1000:.0f} ms"
    )
    return result


def cold_tables(cold: Mapping[str, Any]) -> list[Table]:
    def spread(values: Sequence[float]) -> str:
        return f"{min(values) * 1000:.0f}-{max(values) * 1000:.0f} ms"

    side = Table(
        f"Cold start: import time, fresh interpreter each, {cold['runs']} runs alternating",
        ["import", "median", "min-max", "vs boto3"],
    )
    side.rows.append(["import boto3", f"{cold['median_boto3_s'] * 1000:.0f} ms",
                      spread(cold["boto3_s"]), "1.00x"])  # fmt: skip
    side.rows.append(["import app (the handler)", f"{cold['median_app_s'] * 1000:.0f} ms",
                      spread(cold["app_s"]), f"{cold['ratio']:.2f}x"])  # fmt: skip
    if "app_traced_s" in cold:
        traced = cold["median_app_traced_s"]
        side.rows.append(["import app, TRACING=Active", f"{traced * 1000:.0f} ms",
                          spread(cold["app_traced_s"]),
                          f"{traced / cold['median_boto3_s']:.2f}x"])  # fmt: skip
    side.notes.append(
        f"the handler costs {cold['beyond_boto3_ms']:.0f} ms beyond boto3 "
        "(cwd functions/trigger, the function's environment set; no network at import)."
    )
    if "tracing_cost_ms" in cold:
        side.notes.append(
            f"tracing (the X-Ray SDK imported, botocore patched) adds {cold['tracing_cost_ms']:.0f}"
            " ms to it; without it the SDK is never imported."
        )
    top = Table(
        "Handler import beyond boto3: top 10 by cumulative time (python -X importtime, "
        "median of 3; time boto3 imports anyway excluded)",
        ["module", "cumulative"],
    )
    top.rows += [[t["module"], f"{t['cumulative_ms']:.1f} ms"] for t in cold["top_beyond_boto3"]]
    return [side, top]
