"""`make bench`: the function against the local stack, with configurable API latency.

    python -m bench.run [--quick] [--latency-ms 20 100] [--out bench/results]

The Glider emulator lives in this process; moto runs in a process of its own
(bench/moto_process.py: in AWS those services are other machines) and counts every AWS call the
function makes, by operation. Every measured invocation
runs in a child process (bench/case.py) that loads the handler fresh, so its wall time and peak
RSS are the function's. Sections: the inline path (ids x latency, with the speedup over
sequential), throughput against MAX_CONCURRENCY (the chart), the fan-out path end to end through
the moto work queue, and the cold start (handler import vs a bare `import boto3`). Prints the
tables and the goals' PASS/FAIL; writes latest.json, latest.md and throughput.png to --out.
Exits 1 when a goal or a check fails.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime as dt
import json
import math
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.moto_calls import CALLS_PATH
from bench.moto_process import MotoProcess
from bench.report import Table, throughput_chart
from local.glider_emulator import GliderEmulator
from local.stack import FUNCTION_DIR, Deployment, deploy

REPO = Path(__file__).resolve().parent.parent
API_KEY = "glider-bench-key"  # the emulator's key; not a real credential
SECRET_CALLS = "secretsmanager.GetSecretValue"  # noqa: S105 - an operation name
SEND_BATCH = "AmazonSQS.SendMessageBatch"
DYNAMODB_PREFIX = "DynamoDB_20120810."
LAMBDA_TIMEOUT_SECONDS = 900  # Lambda's maximum: no case should be cut short by its deadline
SEQUENTIAL_BUDGET_SECONDS = 25.0  # sequential runs predicted to take longer are estimated
MB = 1024  # peak RSS is reported in KB
GOAL_REPEATS = 3  # runs of the goal's concurrent case; the median is reported
# The warm-up invocation's portfolio: left out of the emulator's counts of a measured run.
WARMUP_PORTFOLIO = "bench_warmup"


# --------------------------------------------------------------------------- configuration


@dataclass(frozen=True)
class Plan:
    """The full run's sizes and goals (the defaults); `--quick` shrinks the sizes."""

    quick: bool = False
    inline_ids: tuple[int, ...] = (10, 100, 1000)
    latencies_ms: tuple[float, ...] = (20, 100)
    goal_ids: int = 200
    goal_latency_ms: float = 100
    goal_speedup: float = 12
    workers: int = 16
    sweep_workers: tuple[int, ...] = (1, 4, 16, 64)
    fanout_ids: tuple[int, ...] = (1000, 10000)
    # Fanned out, counted, then purged: too many to drain here.
    enqueue_only_ids: tuple[int, ...] = (100_000,)
    fanout_latency_ms: float = 20  # also the drain's
    drain_pollers: int = 2
    cold_runs: int = 15
    import_ratio_goal: float = 1.3
    rss_ids: int = 1000
    rss_goal_mb: float = 128

    @classmethod
    def build(cls, quick: bool, latencies: Sequence[float] | None) -> Plan:
        plan = (
            cls(
                quick=True,
                inline_ids=(5, 20),
                latencies_ms=(20,),
                goal_ids=40,
                goal_latency_ms=20,
                fanout_ids=(60, 120),
                enqueue_only_ids=(1000,),
                fanout_latency_ms=5,
                cold_runs=3,
                rss_ids=20,
            )
            if quick
            else cls()
        )
        return dataclasses.replace(plan, latencies_ms=tuple(latencies)) if latencies else plan


# --------------------------------------------------------------------------- the local stack


@dataclass
class Run:
    """What the child process(es) measured, and what the stack saw meanwhile."""

    children: list[dict[str, Any]]
    calls: Counter[str]  # AWS operations of the measured invocation(s)
    environment_calls: Counter[str]  # ... and of the whole run, a warm-up invocation included
    api_calls: int
    connections: int  # TCP connections the Glider emulator accepted
    aws_connections: int  # TCP connections moto accepted
    rebalances: list[str]  # portfolio ids, one per rebalance the emulator triggered
    stderr: list[str]
    stack_cpu_s: float  # CPU moto's process and this one (the emulator) spent meanwhile
    first_api_call_s: float | None  # from the start of the invocation to the first API request
    listen_overflows: int | None  # SYNs dropped by a full listen queue meanwhile (1 s stalls)

    @property
    def child(self) -> dict[str, Any]:
        return self.children[0]

    @property
    def wall_s(self) -> float:
        return max(float(child["wall_s"]) for child in self.children)

    @property
    def peak_rss_mb(self) -> float:
        return max(float(child["peak_rss_kb"]) for child in self.children) / MB

    def total(self, name: str) -> int:
        return sum(int(child.get(name) or 0) for child in self.children)

    @property
    def dynamodb_calls(self) -> int:
        return sum(n for op, n in self.calls.items() if op.startswith(DYNAMODB_PREFIX))


@dataclass(frozen=True)
class Placement:
    """Which CPUs a measured invocation runs on, and which the local stack (moto's process and
    this one, the emulator's) runs on.

    In Lambda the function has its own share of CPU (one vCPU at the template's MemorySize of
    1769 MB) and AWS's services run on other machines. Here all share one machine: left to the
    scheduler, moto and the function take turns on the same core. So an invocation gets the
    first CPU, and the stack the others. A fan-out drain runs several invocations at once (one
    per poller, as concurrent execution environments) and keeps every CPU."""

    function: frozenset[int] | None  # None: not pinned (fewer than 2 CPUs, or no affinity API)
    stack: frozenset[int] | None

    @classmethod
    def choose(cls) -> Placement:
        if not hasattr(os, "sched_setaffinity"):
            return cls(None, None)
        cpus = sorted(os.sched_getaffinity(0))
        if len(cpus) < 2:  # one for the function, the rest for the stack
            return cls(None, None)
        return cls(frozenset(cpus[:1]), frozenset(cpus[1:]))

    def cpus_for(self, mode: str) -> frozenset[int] | None:
        """An invocation's CPUs; a drain's (several environments at once): all of them."""
        if self.function is None or mode == "invoke":
            return self.function
        return self.function | (self.stack or frozenset())

    def describe(self) -> str:
        if self.function is None or self.stack is None:
            return "not pinned (fewer than 2 CPUs or no CPU affinity here)"
        return (
            f"each measured invocation on CPU {_cpus(self.function)}, moto and the emulator on "
            f"CPU {_cpus(self.stack)}; fan-out drains on all"
        )


def _cpus(cpus: frozenset[int]) -> str:
    return ",".join(str(cpu) for cpu in sorted(cpus))


def pin(pid: int, cpus: frozenset[int] | None) -> None:
    if cpus is not None:
        os.sched_setaffinity(pid, cpus)


@dataclass
class Stack:
    moto: MotoProcess
    emulator: GliderEmulator
    deployment: Deployment
    workdir: Path
    placement: Placement
    ids: list[str] = field(default_factory=list)
    runs: int = 0

    def env(self, **overrides: str) -> dict[str, str]:
        """The function's environment, its AWS calls to moto's process."""
        return self.deployment.environment(**overrides)

    def portfolios(self, count: int) -> list[str]:
        while len(self.ids) < count:
            portfolio_id = f"bench_{len(self.ids):05d}"
            self.emulator.add_portfolio(portfolio_id)
            self.ids.append(portfolio_id)
        return self.ids[:count]

    def queue_depth(self, url: str) -> int:
        attributes = self.deployment.sqs.get_queue_attributes(
            QueueUrl=url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        return sum(int(value) for value in attributes.values())

    def run(self, spec: Mapping[str, Any], *, latency_ms: float, copies: int = 1) -> Run:
        """Child processes (`copies` of them at once, each its own execution environment); the
        emulator's and moto's counters are read around them."""
        self.runs += 1
        spec_path = self.workdir / f"case-{self.runs}.json"
        spec_path.write_text(json.dumps(spec))
        outs = [self.workdir / f"case-{self.runs}-{n}.out.json" for n in range(copies)]
        errs = [out.with_suffix(".stderr") for out in outs]
        self.emulator.set_latency(latency_ms / 1000)
        self.emulator.reset()
        calls_before, aws_connections_before = self.moto.served()
        overflows = listen_overflows()
        stack_cpu = cpu_seconds() + self.moto.cpu_seconds()
        cpus = self.placement.cpus_for(spec["mode"])
        processes = []
        for out, err in zip(outs, errs, strict=True):
            with err.open("w") as stderr:
                processes.append(
                    subprocess.Popen(  # noqa: S603 - our own interpreter and module
                        [sys.executable, "-m", "bench.case", str(spec_path), str(out)],
                        cwd=REPO,
                        stdin=subprocess.DEVNULL,
                        stdout=subprocess.DEVNULL,
                        stderr=stderr,
                    )
                )
                pin(processes[-1].pid, cpus)  # at once: before it has imported anything
        codes = [process.wait(timeout=1200) for process in processes]
        stack_cpu = cpu_seconds() + self.moto.cpu_seconds() - stack_cpu
        overflows_after = listen_overflows()
        served, aws_connections = self.moto.served()
        calls = Counter(served)
        calls.subtract(calls_before)
        stderr_lines = [
            line for err in errs for line in err.read_text().splitlines() if line.strip()
        ]
        if any(codes) or not all(out.exists() for out in outs):
            raise RuntimeError(
                f"bench.case failed (exit {codes}):\n" + "\n".join(stderr_lines[-40:])
            )
        children = [json.loads(out.read_text()) for out in outs]
        # (less the one connection the served() call above opened)
        aws_connections = aws_connections - aws_connections_before - 1
        environment_calls = +calls
        if copies == 1 and children[0].get("aws_calls") is not None:
            # The measured invocation's own calls, counted by the child around it: a warm-up
            # invocation before it made calls of its own.
            calls = Counter(children[0]["aws_calls"])
            aws_connections = int(children[0]["aws_connections"])
        requests = [r for r in self.emulator.requests if r.portfolio_id != WARMUP_PORTFOLIO]
        first = min((r.received_at for r in requests), default=None)
        started_at = children[0].get("started_at")
        return Run(
            children=children,
            calls=+calls,
            environment_calls=environment_calls,
            api_calls=len(requests),
            # The warm-up's connection included: the measured invocation reuses it.
            connections=self.emulator.connections_opened,
            aws_connections=aws_connections,
            rebalances=[
                r.portfolio_id
                for r in self.emulator.rebalances
                if r.portfolio_id != WARMUP_PORTFOLIO
            ],
            stderr=stderr_lines,
            stack_cpu_s=stack_cpu,
            listen_overflows=(
                None
                if overflows is None or overflows_after is None
                else overflows_after - overflows
            ),
            first_api_call_s=None if first is None or started_at is None else first - started_at,
        )


@contextlib.contextmanager
def local_stack() -> Iterator[Stack]:
    # (local/glider_emulator.py listens with a backlog of 128.)
    placement = Placement.choose()
    pin(0, placement.stack)  # this process (the emulator); moto's inherits it
    moto = MotoProcess().start()
    emulator = GliderEmulator(api_keys=[API_KEY]).start()
    try:
        with tempfile.TemporaryDirectory(prefix="glider-bench-") as workdir:
            deployment = deploy(moto, emulator, api_key=API_KEY)
            emulator.add_portfolio(WARMUP_PORTFOLIO)
            yield Stack(moto, emulator, deployment, Path(workdir), placement)
    finally:
        emulator.stop()
        moto.stop()


def listen_overflows() -> int | None:
    """The kernel's count of connections dropped because a listen queue was full (all sockets:
    on loopback, our servers); None where /proc/net/netstat is not readable."""
    with contextlib.suppress(OSError, ValueError, IndexError):
        lines = Path("/proc/net/netstat").read_text().splitlines()
        for names, values in zip(lines[::2], lines[1::2], strict=False):
            if names.startswith("TcpExt:"):
                fields = dict(zip(names.split()[1:], values.split()[1:], strict=True))
                return int(fields["ListenOverflows"])
    return None


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def progress(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- machine


def machine() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    memory_gib = None
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory_gib = round(int(line.split()[1]) / 1024 / 1024, 1)
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": memory_gib,
        "python": platform.python_version(),
        "os": f"{platform.system()} {platform.release()}",
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
    }


def machine_line(info: Mapping[str, Any]) -> str:
    memory = f", {info['memory_gib']} GiB" if info.get("memory_gib") else ""
    return (
        f"{info['cpu']}, {info['cores']} cores{memory}, Python {info['python']}, "
        f"{info['os']}, {info['date']}"
    )


# --------------------------------------------------------------------------- inline path


def inline_event(ids: Sequence[str]) -> dict[str, Any]:
    """Scheduler-style constant input (a direct invocation: no de-duplication key)."""
    return {"portfolioIds": list(ids), "skipScheduleValidation": False}


def inline_run(
    stack: Stack,
    ids: int,
    latency_ms: float,
    workers: int,
    *,
    guard: bool = True,
    warm: bool = True,
) -> dict[str, Any]:
    """One direct invocation with `ids` portfolios, in a warm execution environment: one
    earlier, unmeasured invocation (one portfolio) built its clients and read the key, so the
    figures are the triggers' and not the cold start's (measured on its own, in the cold
    section). `warm=False` measures the environment's first invocation instead; `guard=False`
    leaves IDEMPOTENCY_TABLE_NAME unset (a diagnosis: what the DynamoDB guard costs here)."""
    unguarded = "" if guard else ", no idempotency table"
    cold = "" if warm else ", cold environment"
    progress(f"inline: {ids} ids at {latency_ms:g} ms, MAX_CONCURRENCY={workers}{unguarded}{cold}")
    env = stack.env(MAX_CONCURRENCY=str(workers), FANOUT_THRESHOLD="100000")
    if not guard:
        del env["IDEMPOTENCY_TABLE_NAME"]
    run = stack.run(
        {
            "mode": "invoke",
            "env": env,
            "event": inline_event(stack.portfolios(ids)),
            "timeout_seconds": LAMBDA_TIMEOUT_SECONDS,
            "warmup_event": inline_event([WARMUP_PORTFOLIO]) if warm else None,
            "calls_url": stack.moto.endpoint_url + CALLS_PATH,
        },
        latency_ms=latency_ms,
    )
    child = run.child
    row = {
        "ids": ids,
        "latency_ms": latency_ms,
        "workers": workers,
        "idempotency_guard": guard,
        "warm": warm,
        "estimated": False,
        "wall_s": run.wall_s,
        "triggers_per_s": ids / run.wall_s,
        "tcp_connections": run.connections,
        "aws_tcp_connections": run.aws_connections,
        # Per execution environment (the warm-up's read included): the key is read once.
        "secrets_manager_calls": run.environment_calls[SECRET_CALLS],
        "invocation_secrets_manager_calls": run.calls[SECRET_CALLS],
        "dynamodb_calls": run.dynamodb_calls,
        "api_calls": run.api_calls,
        "rebalances": len(run.rebalances),
        "triggered": child.get("triggered"),
        "dead_lettered": child.get("dead_lettered"),
        "error": child.get("error", ""),
        "peak_rss_mb": run.peak_rss_mb,
        "import_s": child.get("import_s"),
        "function_cpu_s": child.get("cpu_s"),
        "stack_cpu_s": run.stack_cpu_s,
        "first_api_call_s": run.first_api_call_s,
        "listen_overflows": run.listen_overflows,
        "log_levels": child.get("log_levels", {}),
        "log_notable": child.get("log_notable", []),
        "stderr": run.stderr[:5],
        "stderr_lines": len(run.stderr),
    }
    progress(
        f"  {run.wall_s:.2f} s, {row['triggers_per_s']:.1f}/s, {run.connections} conns, "
        f"{row['secrets_manager_calls']} GetSecretValue, {run.peak_rss_mb:.0f} MB"
    )
    return row


def estimated_sequential(ids: int, latency_ms: float, per_call_s: float) -> dict[str, Any]:
    wall = ids * per_call_s
    return {
        "ids": ids,
        "latency_ms": latency_ms,
        "workers": 1,
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
            concurrent = inline_run(stack, ids, latency, plan.workers)
            predicted = ids * (per_call if per_call is not None else latency / 1000)
            if per_call is not None and predicted > SEQUENTIAL_BUDGET_SECONDS:
                progress(f"  sequential {ids} ids: predicted {predicted:.0f} s, estimated")
                sequential = estimated_sequential(ids, latency, per_call)
            else:
                sequential = inline_run(stack, ids, latency, 1)
                if ids == max(i for i in plan.inline_ids if i <= 100):
                    per_call = sequential["wall_s"] / ids
            concurrent["sequential"] = sequential
            concurrent["speedup"] = sequential["wall_s"] / concurrent["wall_s"]
            rows.append(concurrent)
    return rows


def inline_table(rows: Sequence[Mapping[str, Any]], workers: int) -> Table:
    table = Table(
        f"Inline path (direct invocation, MAX_CONCURRENCY={workers}; sequential = 1)",
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
                f"{row['peak_rss_mb']:.0f} MB",
            ]
        )
    table.notes.append(
        "wall: the invocation in a warm execution environment (its clients built and the key "
        "read by one earlier invocation of one portfolio, not measured; the cold start is "
        "measured on its own below); TCP conns: connections the Glider emulator accepted in "
        "the environment (the warm-up's one reused); AWS conns: connections moto accepted "
        "during the invocation (kept alive, as AWS endpoints do); GetSecretValue: calls in the "
        "environment; DynamoDB: calls of the invocation; peak RSS: the function's process "
        "(VmHWM; see bench/case.py)."
    )
    estimated = [row["sequential"] for row in rows if row["sequential"]["estimated"]]
    table.notes += [
        f"(est.) sequential {s['ids']:,} @ {s['latency_ms']:g} ms = {s['basis']}" for s in estimated
    ]
    return table


# --------------------------------------------------------------------------- throughput


def sweep_section(stack: Stack, plan: Plan) -> dict[str, Any]:
    """The goal case (ids at the goal latency, sequential and MAX_CONCURRENCY) and the sweep."""
    points: dict[int, dict[str, Any]] = {}
    for workers in (1, plan.workers, *plan.sweep_workers):
        if workers in points:
            continue
        # The goal's concurrent case takes ~2 s, where a scheduling hiccup shows: the median
        # of GOAL_REPEATS runs is reported (every run's wall time is kept in the JSON).
        repeats = GOAL_REPEATS if workers == plan.workers else 1
        runs = [
            inline_run(stack, plan.goal_ids, plan.goal_latency_ms, workers) for _ in range(repeats)
        ]
        point = sorted(runs, key=lambda r: r["wall_s"])[len(runs) // 2]
        point["repeats_wall_s"] = [r["wall_s"] for r in runs]
        points[workers] = point
    unguarded = inline_run(stack, plan.goal_ids, plan.goal_latency_ms, plan.workers, guard=False)
    cold = inline_run(stack, plan.goal_ids, plan.goal_latency_ms, plan.workers, warm=False)
    ordered = [points[w] for w in sorted(points)]
    latency = plan.goal_latency_ms / 1000
    for point in [*ordered, unguarded, cold]:
        w = point["workers"]
        point["ideal_per_s"] = plan.goal_ids / (math.ceil(plan.goal_ids / w) * latency)
        point["speedup"] = points[1]["wall_s"] / point["wall_s"]
    return {
        "ids": plan.goal_ids,
        "latency_ms": plan.goal_latency_ms,
        "points": ordered,
        "goal_workers": plan.workers,
        "without_idempotency_table": unguarded,
        "cold_environment": cold,
    }


def sweep_table(sweep: Mapping[str, Any]) -> Table:
    table = Table(
        f"Throughput against MAX_CONCURRENCY ({sweep['ids']} ids at {sweep['latency_ms']:g} ms)",
        ["workers", "wall", "triggers/s", "ideal/s", "of ideal", "speedup", "TCP conns",
         "GetSecretValue", "peak RSS"],
    )  # fmt: skip
    for p in sweep["points"]:
        table.rows.append(
            [
                str(p["workers"]),
                f"{p['wall_s']:.2f} s",
                f"{p['triggers_per_s']:.1f}",
                f"{p['ideal_per_s']:.1f}",
                f"{100 * p['triggers_per_s'] / p['ideal_per_s']:.0f}%",
                f"{p['speedup']:.1f}x",
                str(p["tcp_connections"]),
                str(p["secrets_manager_calls"]),
                f"{p['peak_rss_mb']:.0f} MB",
            ]
        )
    table.notes.append(
        "ideal: ids / (ceil(ids / workers) x latency), the latency-bound best; speedup over 1 "
        "worker. Chart: throughput.png."
    )
    goal = next(p for p in sweep["points"] if p["workers"] == sweep["goal_workers"])
    walls = ", ".join(f"{w:.2f}" for w in goal["repeats_wall_s"])
    table.notes.append(
        f"{goal['workers']} workers: the median of {len(goal['repeats_wall_s'])} runs ({walls} s)."
    )
    return table


def cost_table(sweep: Mapping[str, Any]) -> Table:
    """Where the goal case's time goes: CPU per trigger, in the function and in the stack."""
    by_workers = {p["workers"]: p for p in sweep["points"]}
    goal = sweep["goal_workers"]
    table = Table(
        f"Where the time goes ({sweep['ids']} ids at {sweep['latency_ms']:g} ms; CPU per trigger)",
        ["run", "wall", "speedup", "function CPU", "stack CPU", "first API call",
         "GetSecretValue", "DynamoDB calls"],
    )  # fmt: skip
    runs = [
        ("sequential (1 worker)", by_workers[1]),
        (f"{goal} workers", by_workers[goal]),
        (f"{goal} workers, cold environment", sweep["cold_environment"]),
        (f"{goal} workers, IDEMPOTENCY_TABLE_NAME unset", sweep["without_idempotency_table"]),
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
                str(p["invocation_secrets_manager_calls"]),
                str(p["dynamodb_calls"]),
            ]
        )
    table.notes.append(
        "function CPU: the function's process during the invocation; stack CPU: moto's process "
        "and the emulator's during the run; GetSecretValue / DynamoDB: calls of the invocation. "
        "Cold environment: the environment's first invocation, which builds its AWS clients and "
        "reads the key before its first trigger (see 'first API call'). The last row is a "
        "diagnosis, not a deployment (the guard is what keeps a redelivery from triggering "
        "twice)."
    )
    return table


# --------------------------------------------------------------------------- fan-out


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
    env = stack.env(MAX_CONCURRENCY=str(plan.workers))  # the default FANOUT_THRESHOLD (50)
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
        "drain_invocations": drain.total("invocations"),
        "drain_errors": dict(errors),
        "drain_redelivered": drain.total("redelivered"),
        "drain_function_cpu_s": sum(float(c.get("cpu_s") or 0) for c in drain.children),
        "drain_stack_cpu_s": drain.stack_cpu_s,
        "drain_idle_s": drain.child.get("idle_s"),
        "drain_peak_rss_mb": drain.peak_rss_mb,
        "drain_secrets_manager_calls": drain.calls[SECRET_CALLS],
        "drain_dynamodb_calls": drain.dynamodb_calls,
        "drain_connections": drain.connections,
        "api_calls": drain.api_calls,
        "rebalances": len(drain.rebalances),
        "triggered_twice": sum(1 for n in per_id.values() if n > 1),
        "never_triggered": len(set(portfolio_ids) - set(per_id)),
        "left_on_queue": left,
        "dead_lettered": stack.queue_depth(dlq.url) - dlq_before,
        "log_levels": {"enqueue": enqueue.child.get("log_levels", {}),
                       "drain": dict(sum((Counter(c.get("log_levels", {}))
                                          for c in drain.children), Counter()))},
        "log_notable": [r for c in [enqueue.child, *drain.children]
                        for r in c.get("log_notable", [])][:20],
        "stderr": (enqueue.stderr + drain.stderr)[:5],
        "stderr_lines": len(enqueue.stderr) + len(drain.stderr),
    }  # fmt: skip
    progress(
        f"  drained in {drain.wall_s:.1f} s: {drain.api_calls} API calls, "
        f"{len(drain.rebalances)} rebalances, {row['triggered_twice']} twice"
    )
    return row


def enqueued(ids: int, enqueue: Run, depth: int) -> dict[str, Any]:
    """What a fan-out invocation did: its row's enqueue fields."""
    return {
        "ids": ids,
        "enqueue_s": enqueue.wall_s,
        "fanned_out": enqueue.child.get("fanned_out"),
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


def fanout_tables(rows: Sequence[Mapping[str, Any]]) -> list[Table]:
    enqueue = Table(
        "Fan-out: enqueue (one EventBridge event; FANOUT_THRESHOLD=50, MAX_CONCURRENCY=16)",
        ["ids", "enqueue time", "ids/s", "SendMessageBatch", "messages sent", "API calls",
         "peak RSS"],
    )  # fmt: skip
    drain = Table(
        "Fan-out: end to end (work queue drained in batches of 10, one invocation each)",
        ["ids", "API latency", "drain time", "ids/s", "invocations", "API calls", "rebalances",
         "triggered twice", "retried", "left / DLQ"],
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
                f"{row['rebalances']:,}",
                str(row["triggered_twice"]),
                str(row["drain_redelivered"]),
                f"{row['left_on_queue']} / {row['dead_lettered']}",
            ]
        )
    enqueue.notes.append(
        "enqueue time: the invocation's wall time; messages sent: the work queue's depth after; "
        "API calls: Glider requests during the fan-out (must be 0)."
    )
    enqueue.notes += [
        f"{r['ids']:,} ids: a direct invocation (an EventBridge event holds at most 256 KB), "
        "counted and purged, not drained."
        for r in rows
        if r.get("enqueue_only")
    ]
    drained = [r for r in rows if not r.get("enqueue_only")]
    pollers = drained[0]["drain_pollers"] if drained else 1
    drain.notes.append(
        f"drain time: {pollers} pollers at once (local/event_source.py, each in a process with "
        "its own warm function, as concurrent Lambda environments), receive and per-message "
        "delete included, plus the final 1 s idle poll."
    )
    drain.notes.append(
        "retried: records the function reported in batchItemFailures (SQS redelivers them); "
        "why, from its own log: " + (reasons(drained) or "none")
    )
    return [enqueue, drain]


# --------------------------------------------------------------------------- cold start

IMPORT_SNIPPET = "import time; t=time.perf_counter(); import {module}; print(time.perf_counter()-t)"


def import_env(stack: Stack) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "PYTHON"))}
    env.update(stack.env())
    return env


def time_import(module: str, env: Mapping[str, str]) -> float:
    completed = subprocess.run(  # noqa: S603 - our own interpreter
        [sys.executable, "-c", IMPORT_SNIPPET.format(module=module)],
        cwd=FUNCTION_DIR,
        env=dict(env),
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    return float(completed.stdout.strip().splitlines()[-1])


@dataclass
class ImportNode:
    name: str
    self_us: int
    children: list[ImportNode]


def import_tree(module: str, env: Mapping[str, str]) -> list[ImportNode]:
    """`python -X importtime -c 'import MODULE'`, parsed into its tree."""
    completed = subprocess.run(  # noqa: S603 - our own interpreter
        [sys.executable, "-X", "importtime", "-c", f"import {module}"],
        cwd=FUNCTION_DIR,
        env=dict(env),
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    pending: dict[int, list[ImportNode]] = {}
    for line in completed.stderr.splitlines():
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
    progress(f"cold start: {plan.cold_runs} x (import boto3, import app), alternating")
    time_import("boto3", env)  # warm the bytecode caches and the page cache, not counted
    time_import("app", env)
    boto3_s: list[float] = []
    app_s: list[float] = []
    for _ in range(plan.cold_runs):
        boto3_s.append(time_import("boto3", env))
        app_s.append(time_import("app", env))
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
    result = {
        "runs": plan.cold_runs,
        "boto3_s": boto3_s,
        "app_s": app_s,
        "median_boto3_s": median_boto3,
        "median_app_s": median_app,
        "ratio": median_app / median_boto3,
        "beyond_boto3_ms": (median_app - median_boto3) * 1000,
        "top_beyond_boto3": [{"module": m, "cumulative_ms": ms} for m, ms in top],
    }
    progress(
        f"  boto3 {median_boto3 * 1000:.0f} ms, app {median_app * 1000:.0f} ms, "
        f"ratio {result['ratio']:.2f}"
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
    side.notes.append(
        f"the handler costs {cold['beyond_boto3_ms']:.0f} ms beyond boto3 "
        "(cwd functions/trigger, the function's environment set; no network at import)."
    )
    top = Table(
        "Handler import beyond boto3: top 10 by cumulative time (python -X importtime, "
        "median of 3; time boto3 imports anyway excluded)",
        ["module", "cumulative"],
    )
    top.rows += [[t["module"], f"{t['cumulative_ms']:.1f} ms"] for t in cold["top_beyond_boto3"]]
    return [side, top]


# --------------------------------------------------------------------------- goals


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
        concurrent, sequential = by_workers[plan.workers], by_workers[1]
        speedup = sequential["wall_s"] / concurrent["wall_s"]
        conns = concurrent["tcp_connections"]
        ok = speedup >= plan.goal_speedup and conns <= plan.workers
        cold = sweep["cold_environment"]
        verdicts.append(
            Verdict(
                f"{plan.goal_ids} portfolios at {plan.goal_latency_ms:g} ms, "
                f"MAX_CONCURRENCY={plan.workers}, warm environment",
                f">= {plan.goal_speedup:g}x faster than sequential, <= {plan.workers} TCP "
                "connections",
                f"{speedup:.1f}x ({sequential['wall_s']:.2f} s -> {concurrent['wall_s']:.2f} s), "
                f"{conns} TCP connections; the environment's first invocation (a cold start, "
                f"clients built and key read): {cold['wall_s']:.2f} s, {cold['speedup']:.1f}x",
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


def checks(results: Mapping[str, Any]) -> list[Verdict]:
    """What must hold whatever the sizes: every id triggered, once; nothing lost."""
    out: list[Verdict] = []
    runs = list(results.get("inline", []))
    runs += [r["sequential"] for r in runs if not r["sequential"]["estimated"]]
    runs += list((results.get("throughput") or {}).get("points", []))
    incomplete = [r for r in runs if r.get("triggered") != r["ids"] or r.get("error")]
    if runs:
        out.append(
            Verdict(
                "inline runs trigger every id",
                "triggered == ids, no error",
                f"{len(runs) - len(incomplete)}/{len(runs)} runs complete",
                not incomplete,
            )
        )
    for row in results.get("fanout", []):
        if row.get("enqueue_only"):
            queued = not row["enqueue_error"] and row["messages_on_queue"] == row["ids"]
            out.append(
                Verdict(
                    f"fan-out of {row['ids']:,} ids, enqueued",
                    "all queued, 0 API calls while fanning out",
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
            problems.append(f"{row['api_calls_during_fanout']} API calls while fanning out")
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
                f"fan-out of {row['ids']:,} ids end to end",
                "all queued, 0 API calls while fanning out, each id triggered exactly once",
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
    rows += list((results.get("throughput") or {}).get("points", []))
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


# --------------------------------------------------------------------------- main


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.run", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--quick", action="store_true", help="small sizes, seconds: to iterate")
    parser.add_argument(
        "--latency-ms", type=float, nargs="+", default=None, help="inline-path API latencies"
    )
    parser.add_argument(
        "--fanout-ids", type=int, nargs="+", default=None, help="fan-out sizes (ids)"
    )
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results")
    parser.add_argument(
        "--only",
        default="inline,throughput,fanout,cold",
        help="comma-separated sections to run (default: all)",
    )
    return parser.parse_args(argv)


def write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    plan = Plan.build(args.quick, args.latency_ms)
    if args.fanout_ids:
        plan = dataclasses.replace(plan, fanout_ids=tuple(args.fanout_ids))
    sections = {s.strip() for s in args.only.split(",") if s.strip()}
    started = time.perf_counter()
    info = machine()
    results: dict[str, Any] = {"machine": info, "quick": plan.quick, "plan": plan.__dict__}
    tables: list[Table] = []
    with local_stack() as stack:
        results["placement"] = stack.placement.describe()
        if "inline" in sections:
            results["inline"] = inline_section(stack, plan)
            tables.append(inline_table(results["inline"], plan.workers))
        if "throughput" in sections:
            results["throughput"] = sweep_section(stack, plan)
            tables += [sweep_table(results["throughput"]), cost_table(results["throughput"])]
        if "fanout" in sections:
            results["fanout"] = [fanout_run(stack, plan, n) for n in plan.fanout_ids]
            results["fanout"] += [enqueue_only_run(stack, plan, n) for n in plan.enqueue_only_ids]
            tables += fanout_tables(results["fanout"])
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
        sweep = results["throughput"]
        throughput_chart(
            args.out / "throughput.png",
            workers=[p["workers"] for p in sweep["points"]],
            measured=[p["triggers_per_s"] for p in sweep["points"]],
            ids=sweep["ids"],
            latency_ms=sweep["latency_ms"],
            machine=f"{info['cpu']}, {info['cores']} cores, Python {info['python']}",
            diagnosis=(
                sweep["without_idempotency_table"]["workers"],
                sweep["without_idempotency_table"]["triggers_per_s"],
                "measured, IDEMPOTENCY_TABLE_NAME unset (diagnosis)",
            ),
        )
    header = f"Machine: {line}" + ("  [--quick: reduced sizes]" if plan.quick else "")
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
        f"_Machine: {line}_" + (" (--quick: reduced sizes)" if plan.quick else ""),
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


if __name__ == "__main__":
    raise SystemExit(main())
