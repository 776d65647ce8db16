"""The cold start: handler import against a bare `import boto3`, and what it imports; its tables.

Measured twice: in the development tree (our interpreter, its cached bytecode), and on the built
artifact as Lambda runs it (the `sam build` output's function and layer directories, the runtime's
boto3 and Python, code directories read-only), with and without the bytecode the build ships.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.plan import Plan
from bench.report import Table, progress
from bench.stack import Stack
from local.fixtures.stack import FUNCTION_DIR

# The import's wall time, then its CPU time (this process's: on a shared machine, the figure
# other processes' load does not inflate; the import itself is CPU-bound, its files cached).
IMPORT_SNIPPET = (
    "import time; t, c = time.perf_counter(), time.process_time(); import {module}; "
    "print(time.perf_counter() - t, time.process_time() - c)"
)
# As Lambda runs the artifact: no site-packages, no PYTHON* variables, and (-B) nothing compiled
# written back, as Lambda's code directories are read-only.
ARTIFACT_FLAGS = ("-I", "-S", "-B")
# Where `make bench` says the artifact is (as `make artifact` does for tests/artifact).
ARTIFACT_VARIABLES = ("ARTIFACT_BUILD", "LAMBDA_RUNTIME_SITE", "LAMBDA_PYTHON")


@dataclass(frozen=True)
class Interpreter:
    """A fresh Python process per import: which Python, its flags, its working directory, and
    the directories put first on its sys.path before the import is timed."""

    python: str
    cwd: Path
    flags: tuple[str, ...] = ()
    path: tuple[str, ...] = ()

    def run(self, code: str, env: Mapping[str, str], *, importtime: bool = False) -> str:
        """Its stdout, or its stderr with -X importtime (where Python writes the tree)."""
        prefix = f"import sys; sys.path[:0] = {list(self.path)!r}; " if self.path else ""
        trace = ("-X", "importtime") if importtime else ()
        completed = subprocess.run(  # noqa: S603 - our own or the runtime's interpreter
            [self.python, *self.flags, *trace, "-c", prefix + code],
            cwd=self.cwd,
            env=dict(env),
            capture_output=True,
            text=True,
            check=True,
            timeout=120,
        )
        return completed.stderr if importtime else completed.stdout


# The development tree: our interpreter where Lambda runs the function (the handler from cwd).
DEVELOPMENT = Interpreter(sys.executable, FUNCTION_DIR)


def import_env(stack: Stack) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "PYTHON"))}
    env.update(stack.env())
    return env


def measure_import(
    module: str, env: Mapping[str, str], python: Interpreter = DEVELOPMENT
) -> tuple[float, float]:
    """(wall, CPU) seconds of `import MODULE` in a fresh process."""
    output = python.run(IMPORT_SNIPPET.format(module=module), env)
    wall, cpu = output.strip().splitlines()[-1].split()
    return float(wall), float(cpu)


def time_import(module: str, env: Mapping[str, str], python: Interpreter = DEVELOPMENT) -> float:
    return measure_import(module, env, python)[0]


@dataclass
class ImportNode:
    name: str
    self_us: int
    children: list[ImportNode]


def import_tree(
    module: str, env: Mapping[str, str], python: Interpreter = DEVELOPMENT
) -> list[ImportNode]:
    """`python -X importtime -c 'import MODULE'`, parsed into its tree."""
    tree = python.run(f"import {module}", env, importtime=True)
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


def top_beyond_boto3(
    env: Mapping[str, str], boto3: Interpreter, app: Interpreter, runs: int = 3
) -> list[dict[str, Any]]:
    """The ten modules that cost the handler's import most beyond what `import boto3` imports
    anyway (median of `runs` -X importtime trees)."""
    extras: dict[str, list[float]] = {}
    for _ in range(runs):
        baseline = names(import_tree("boto3", env, boto3))
        for module, ms in beyond(import_tree("app", env, app), baseline).items():
            extras.setdefault(module, []).append(ms)
    top = sorted(
        ((m, statistics.median(v)) for m, v in extras.items() if len(v) == runs),
        key=lambda item: -item[1],
    )[:10]
    return [{"module": m, "cumulative_ms": ms} for m, ms in top]


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
        "top_beyond_boto3": top_beyond_boto3(env, DEVELOPMENT, DEVELOPMENT),
    }
    progress(
        f"  boto3 {median_boto3 * 1000:.0f} ms, app {median_app * 1000:.0f} ms, "
        f"ratio {result['ratio']:.2f}; with TRACING=Active {median_traced * 1000:.0f} ms"
    )
    result["artifact"] = artifact_cold(env, plan)
    return result


@dataclass(frozen=True)
class Artifact:
    """What `sam build` made and the runtime it runs on: the function's directory (Lambda's
    /var/task), the layer's python/ (/opt/python), the runtime's boto3 and its Python."""

    function: Path
    layer: Path
    runtime: Path
    python: str

    @classmethod
    def from_environment(cls) -> Artifact | None:
        values = [os.environ.get(name) for name in ARTIFACT_VARIABLES]
        if not all(values):
            return None
        build, runtime, python = (str(value) for value in values)
        return cls(
            Path(build) / "TriggerFunction",
            Path(build) / "DependenciesLayer" / "python",
            Path(runtime),
            python,
        )

    def handler(self, function: Path, layer: Path) -> Interpreter:
        """The handler's import, Lambda's path order: the function, the layer, the runtime."""
        path = (str(function), str(layer), str(self.runtime))
        return Interpreter(self.python, function, ARTIFACT_FLAGS, path)

    def bare_boto3(self) -> Interpreter:
        """`import boto3` as a function without our code or layer would pay it."""
        return Interpreter(self.python, self.function, ARTIFACT_FLAGS, (str(self.runtime),))


def without_bytecode(source: Path, into: Path) -> Path:
    """A copy of a built directory with every __pycache__ left out: the build as it was before
    it shipped bytecode (nothing else differs)."""
    return Path(shutil.copytree(source, into, ignore=shutil.ignore_patterns("__pycache__")))


def artifact_cold(env: Mapping[str, str], plan: Plan) -> dict[str, Any]:
    """The built artifact's cold import against a bare `import boto3`, same Python, same boto3,
    a fresh process each, alternating: with the bytecode the build ships and without it."""
    artifact = Artifact.from_environment()
    if artifact is None:
        reason = f"{', '.join(ARTIFACT_VARIABLES)} not set (run through `make bench`)"
        progress(f"cold start of the artifact: SKIPPED, {reason}")
        return {"skipped": reason}
    # The runtime's SDK compiled, as the Lambda runtime ships it: only our code and layer differ
    # between the runs (compileall writes only what is missing or out of date).
    subprocess.run(  # noqa: S603 - the runtime's interpreter, the standard library's compileall
        [artifact.python, "-m", "compileall", "-q", str(artifact.runtime)],
        check=True,
        capture_output=True,
        timeout=600,
    )
    version = artifact.handler(artifact.function, artifact.layer).run(
        "import platform; print(platform.python_version())", env
    )
    with tempfile.TemporaryDirectory(prefix="bench-artifact-") as scratch:
        function = without_bytecode(artifact.function, Path(scratch) / "task")
        layer = without_bytecode(artifact.layer, Path(scratch) / "opt" / "python")
        variants = {
            "boto3": ("boto3", artifact.bare_boto3()),
            # What any handler on this layer pays before a line of ours: the part of the goal
            # (1.10x) that is not ours to spend (app.py imports the package for Logger, Metrics).
            "powertools": (
                "boto3, aws_lambda_powertools",
                artifact.handler(artifact.function, artifact.layer),
            ),
            "bytecode": ("app", artifact.handler(artifact.function, artifact.layer)),
            "source": ("app", artifact.handler(function, layer)),
        }
        progress(
            f"cold start of the artifact (Python {version.strip()}): {plan.artifact_runs} x "
            "(import boto3, boto3 and Powertools, app with the shipped bytecode, app without it), "
            "alternating"
        )
        for module, python in variants.values():  # the page cache warmed, not counted
            measure_import(module, env, python)
        times: dict[str, list[float]] = {name: [] for name in variants}
        cpu: dict[str, list[float]] = {name: [] for name in variants}
        for _ in range(plan.artifact_runs):
            for name, (module, python) in variants.items():
                wall, used = measure_import(module, env, python)
                times[name].append(wall)
                cpu[name].append(used)
        top = top_beyond_boto3(env, variants["boto3"][1], variants["bytecode"][1])
    medians = {name: statistics.median(values) for name, values in times.items()}
    cpu_medians = {name: statistics.median(values) for name, values in cpu.items()}
    # Each run (Powertools, app) against its round's boto3 run: a load that drifts during the
    # run (this machine is shared) moves both.
    paired = {
        name: statistics.median(a / b for a, b in zip(times[name], times["boto3"], strict=True))
        for name in ("powertools", "bytecode", "source")
    }
    result = {
        "python": version.strip(),
        "runs": plan.artifact_runs,
        "pycs_shipped": sum(
            1
            for root in (artifact.function, artifact.layer)
            for _ in root.rglob("__pycache__/*.pyc")
        ),
        "times_s": times,
        "median_s": medians,
        "cpu_s": cpu,
        "cpu_median_s": cpu_medians,
        "cpu_ratio": cpu_medians["bytecode"] / cpu_medians["boto3"],
        "cpu_ratio_without_bytecode": cpu_medians["source"] / cpu_medians["boto3"],
        "ratio": medians["bytecode"] / medians["boto3"],
        "ratio_without_bytecode": medians["source"] / medians["boto3"],
        "paired_ratio": paired,
        "bytecode_saves_ms": (medians["source"] - medians["bytecode"]) * 1000,
        "beyond_boto3_ms": (medians["bytecode"] - medians["boto3"]) * 1000,
        "beyond_powertools_ms": (medians["bytecode"] - medians["powertools"]) * 1000,
        "top_beyond_boto3": top,
    }
    progress(
        f"  boto3 {medians['boto3'] * 1000:.0f} ms, app {medians['bytecode'] * 1000:.0f} ms "
        f"({result['ratio']:.2f}x), without the bytecode {medians['source'] * 1000:.0f} ms "
        f"({result['ratio_without_bytecode']:.2f}x); CPU time {result['cpu_ratio']:.2f}x, "
        f"without the bytecode {result['cpu_ratio_without_bytecode']:.2f}x"
    )
    return result


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms"


def spread(values: Sequence[float]) -> str:
    return f"{min(values) * 1000:.0f}-{max(values) * 1000:.0f} ms"


def quartiles(values: Sequence[float]) -> str:
    low, _, high = statistics.quantiles(values, n=4) if len(values) > 1 else [values[0]] * 3
    return f"{low * 1000:.0f}-{high * 1000:.0f} ms"


def cold_tables(cold: Mapping[str, Any]) -> list[Table]:
    side = Table(
        f"Cold start: import time, fresh interpreter each, {cold['runs']} runs alternating",
        ["import", "median", "min-max", "vs boto3"],
    )
    side.rows.append(["import boto3", ms(cold["median_boto3_s"]), spread(cold["boto3_s"]),
                      "1.00x"])  # fmt: skip
    side.rows.append(["import app (the handler)", ms(cold["median_app_s"]), spread(cold["app_s"]),
                      f"{cold['ratio']:.2f}x"])  # fmt: skip
    if "app_traced_s" in cold:
        traced = cold["median_app_traced_s"]
        side.rows.append(["import app, TRACING=Active", ms(traced), spread(cold["app_traced_s"]),
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
    tables = [side, top]
    artifact = cold.get("artifact")
    if artifact and "skipped" not in artifact:
        tables += artifact_tables(artifact)
    return tables


def artifact_tables(artifact: Mapping[str, Any]) -> list[Table]:
    times, medians, paired = artifact["times_s"], artifact["median_s"], artifact["paired_ratio"]
    cpu = artifact["cpu_median_s"]
    side = Table(
        f"Cold start of the built artifact (sam build), Python {artifact['python']} -I -S -B, "
        f"fresh interpreter each, {artifact['runs']} runs alternating",
        ["import", "median", "middle half", "min-max", "vs boto3", "paired", "CPU", "CPU vs boto3"],
    )
    rows = [
        ("import boto3 (the runtime's, alone)", "boto3"),
        ("import boto3 and the layer's Powertools", "powertools"),
        ("import app, the bytecode shipped", "bytecode"),
        ("import app, sources only (before)", "source"),
    ]
    for label, name in rows:
        ratio = f"{medians[name] / medians['boto3']:.2f}x"
        pair = f"{paired[name]:.2f}x" if name in paired else ""
        cpu_ratio = f"{cpu[name] / cpu['boto3']:.2f}x"
        side.rows.append([label, ms(medians[name]), quartiles(times[name]), spread(times[name]),
                          ratio, pair, ms(cpu[name]), cpu_ratio])  # fmt: skip
    side.notes.append(
        "sys.path as Lambda's: the function's directory, the layer's python/, the runtime's "
        "boto3 (compiled, as the runtime ships it); cwd the function's directory; -B: nothing "
        "compiled is written back, as Lambda's code directories are read-only."
    )
    side.notes.append(
        f"the build ships {artifact['pycs_shipped']} pycs (function and layer); they save "
        f"{artifact['bytecode_saves_ms']:.0f} ms a cold start; the "
        f"handler still costs {artifact['beyond_boto3_ms']:.0f} ms beyond boto3, "
        f"{artifact['beyond_powertools_ms']:.0f} ms of it beyond boto3 and Powertools. vs boto3: "
        "ratio of the medians (wall time); paired: median of each run's ratio to the boto3 run "
        "before it; CPU: the process's CPU time during the import (medians), which other "
        "processes' load does not inflate."
    )
    top = Table(
        "Artifact import beyond boto3, the bytecode shipped: top 10 by cumulative time "
        "(python -X importtime, median of 3; time boto3 imports anyway excluded)",
        ["module", "cumulative"],
    )
    for t in artifact["top_beyond_boto3"]:
        top.rows.append([t["module"], f"{t['cumulative_ms']:.1f} ms"])
    return [side, top]
