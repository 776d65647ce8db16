"""The local stack (moto's process, the Glider emulator) and a measured run on it."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import tempfile
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.case import MAX_NOTABLE, cpu_seconds
from bench.machine import Placement, pin
from bench.moto_process import MotoProcess
from local.fixtures.glider_emulator import GliderEmulator
from local.fixtures.stack import Deployment, deploy

REPO = Path(__file__).resolve().parent.parent
API_KEY = "glider-bench-key"  # the emulator's key; not a real credential
SECRET_CALLS = "secretsmanager.GetSecretValue"  # noqa: S105 - an operation name
DYNAMODB_PREFIX = "DynamoDB_20120810."
SQS_SEND_PREFIX = "AmazonSQS.SendMessage"  # SendMessage and SendMessageBatch
LAMBDA_TIMEOUT_SECONDS = 900  # Lambda's maximum: no case should be cut short by its deadline
MB = 1024  # peak RSS is reported in KB
# The warm-up invocation's portfolio: left out of the emulator's counts of a measured run.
WARMUP_PORTFOLIO = "bench_warmup"


@dataclass
class Run:
    """What the child process(es) measured, and what the stack saw meanwhile."""

    children: list[dict[str, Any]]
    calls: Counter[str]  # AWS operations of the measured invocation(s)
    api_calls: int  # trigger requests (the calls that can start a rebalance)
    status_calls: int  # status requests: lost answers reconciled before a trigger is sent again
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
        """From the measured work's start in the first child (an event's invocation) to the
        end of the last child's (its last batch settled, for the work queue's environments)."""
        settled = [c["clock_settled"] for c in self.children if c.get("clock_settled")]
        if settled and self.child.get("clock_started") is not None:
            return max(settled) - float(self.child["clock_started"])
        return max(float(child["wall_s"]) for child in self.children)

    @property
    def peak_rss_mb(self) -> float:
        return max(float(child["peak_rss_kb"]) for child in self.children) / MB

    def total(self, name: str) -> int:
        return sum(int(child.get(name) or 0) for child in self.children)

    @property
    def cpu_s(self) -> float:
        """The function's CPU time, every child's."""
        return sum(float(child.get("cpu_s") or 0) for child in self.children)

    @property
    def log_levels(self) -> dict[str, int]:
        """Log records per level, every child's."""
        levels: Counter[str] = Counter()
        for child in self.children:
            levels.update(child.get("log_levels", {}))
        return dict(levels)

    @property
    def log_notable(self) -> list[Any]:
        """The warning and error records, the first child's first, at most MAX_NOTABLE."""
        return [r for child in self.children for r in child.get("log_notable", [])][:MAX_NOTABLE]

    @property
    def dynamodb_calls(self) -> int:
        return sum(n for op, n in self.calls.items() if op.startswith(DYNAMODB_PREFIX))

    @property
    def sqs_sends(self) -> int:
        """SendMessage(Batch) calls: each rebalance's first follow-up, fan-out, dead letters."""
        return sum(n for op, n in self.calls.items() if op.startswith(SQS_SEND_PREFIX))


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
        emulator's and moto's counters are read around them.

        With a work queue in the spec (an event queued then drained), the copies are the
        environments the work queue's event source runs: each warms in turn (bench/case.py),
        then all start at once, copy 0 invoked with the event; the AWS calls are those moto
        served from that start to the last copy's end (the warm-ups' left out), and the wall
        time runs from copy 0's invocation to the last batch settled in any copy."""
        self.runs += 1
        spec = dict(spec)
        coordinated = spec.get("work_queue") is not None
        if coordinated:
            spec["invoked_flag"] = str(self.workdir / f"case-{self.runs}.invoked")
        spec_path = self.workdir / f"case-{self.runs}.json"
        spec_path.write_text(json.dumps(spec))
        outs = [self.workdir / f"case-{self.runs}-{n}.out.json" for n in range(copies)]
        errs = [out.with_suffix(".stderr") for out in outs]
        self.emulator.set_latency(latency_ms / 1000)
        self.emulator.reset()
        calls_before, aws_connections_before = self.moto.served()
        overflows = listen_overflows()
        stack_cpu = cpu_seconds() + self.moto.cpu_seconds()
        cpus = self.placement.cpus_for(spec["mode"], copies)
        pipe = subprocess.PIPE if coordinated else subprocess.DEVNULL
        processes = []
        for n, (out, err) in enumerate(zip(outs, errs, strict=True)):
            with err.open("w") as stderr:
                processes.append(
                    subprocess.Popen(  # noqa: S603 - our own interpreter and module
                        [sys.executable, "-m", "bench.case", str(spec_path), str(out), str(n)],
                        cwd=REPO,
                        stdin=pipe,
                        stdout=pipe,
                        stderr=stderr,
                    )
                )
                pin(processes[-1].pid, cpus)  # at once: before it has imported anything
        if coordinated and start_together(processes):
            # The measured window: from the "go" to the last copy's end.
            calls_before, aws_connections_before = self.moto.served()
            stack_cpu = cpu_seconds() + self.moto.cpu_seconds()
            for process in processes:
                tell(process, "go")
        for process in processes:
            if process.stdin is not None:
                with contextlib.suppress(OSError):
                    process.stdin.close()
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
        every = [r for r in self.emulator.requests if r.portfolio_id != WARMUP_PORTFOLIO]
        requests = [r for r in every if r.method == "POST"]
        first = min((r.received_at for r in requests), default=None)
        started_at = children[0].get("started_at")
        return Run(
            children=children,
            calls=+calls,
            api_calls=len(requests),
            status_calls=len(every) - len(requests),
            # The warm-ups' connections included: the measured work reuses them.
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


def start_together(processes: Sequence[subprocess.Popen[bytes]]) -> bool:
    """Each coordinated child warmed in turn (each drains its own warm-up's message); False
    when one exited instead of answering (the parent then reports its exit code)."""
    for process in processes:
        tell(process, "warm")
        if hear(process) != "ready":
            return False
    return True


def tell(process: subprocess.Popen[bytes], line: str) -> None:
    """A line to a coordinated child (bench/case.py waits for it on its stdin)."""
    if process.stdin is not None:
        with contextlib.suppress(OSError):  # a child that died: its exit code says why
            process.stdin.write(f"{line}\n".encode())
            process.stdin.flush()


def hear(process: subprocess.Popen[bytes]) -> str:
    """A coordinated child's next line ("" once it has exited)."""
    return process.stdout.readline().decode().strip() if process.stdout is not None else ""


@contextlib.contextmanager
def local_stack(*, aws_latency_ms: float = 0.0) -> Iterator[Stack]:
    """`aws_latency_ms`: what each AWS call waits in moto's process (bench/moto_process.py)."""
    # (local/fixtures/loopback_server.py listens with a backlog of 128.)
    placement = Placement.choose()
    pin(0, placement.stack)  # this process (the emulator); moto's inherits it
    moto = MotoProcess(latency_ms=aws_latency_ms).start()
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
