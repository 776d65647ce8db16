"""One measured run of the function, in a process of its own: an execution environment.

    python -m bench.case SPEC OUT [COPY]

The parent (bench/run.py; bench/stack.py starts this process) owns the local stack; this process
only loads the handler fresh (a cold start, as a new execution environment does) and invokes it,
so that its peak RSS is the function's and not the harness's. SPEC is a JSON file:

    {"mode": "invoke", "env": {...}, "event": {...}, "timeout_seconds": 900,
     "warmup_event": {...} or null,
     "work_queue": {"queue_url": ..., "queue_arn": ..., "moto_url": ..., "batch_size": 10}
     or null, "invoked_flag": a path or null}
    {"mode": "drain", "env": {...}, "queue_url": ..., "queue_arn": ..., "moto_url": ...,
     "batch_size": 10}

and OUT receives a JSON object with the wall time of the invocation (or of the drain), the time
the import took, the peak RSS and what the function answered. An event's invocation triggers
nothing itself: it queues one work-queue message per portfolio. With a work_queue, the parent
starts several copies of this process at once (COPY 0, 1, ...), the execution environments the
work queue's event source runs: each warms when the parent says "warm" (one at a time, each
draining what its own warm-up queued) and answers "ready"; on "go", copy 0 is invoked with the
event and touches `invoked_flag` when it returns, and from then every copy takes batches of at
most `batch_size` from the work queue until a receive finds nothing visible (the others wait for
the flag: their batches start once the invocation has returned, where AWS's pollers take the
first messages while it is still queuing the rest). The parent's figure is from copy 0's
invocation to the last batch settled in any copy. With a warmup_event, the measured work is the
environment's second (warm: clients built and the key read by the first, which is not measured,
nor the drain of what it queued). The parent counts a run's AWS calls itself (moto's process).

The handler is loaded as local/fixtures/function.py's LocalFunction loads it (the environment set,
stdout captured, `import app`), but without importing local.function: that module imports
local.stack, hence moto, which would add ~20 MB of the harness to the measured RSS.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import resource
import sys
import time
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import TYPE_CHECKING, Any, cast

from local.fixtures.lambda_context import LocalLambdaContext

if TYPE_CHECKING:
    from local.fixtures.stack import Queue

FUNCTION_DIR = Path(__file__).resolve().parent.parent / "functions" / "trigger"
MAX_NOTABLE = 20  # warning and error log records kept per run
FLAG_POLL_SECONDS = 0.001  # an environment waiting for the event's invocation to return


def peak_rss_kb() -> int:
    """This process's peak resident set size, in KB: VmHWM, the high-water mark of its own
    address space. Not ru_maxrss: Linux carries the parent's peak RSS over a fork (or vfork)
    and exec into the child's ru_maxrss, so a child of the ~120 MB harness would report at
    least that much whatever the function used."""
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)  # KB on Linux


def load_handler(env: Mapping[str, str]) -> ModuleType:
    """A new execution environment's init: the function's environment, then `import app`."""
    os.environ.update(env)
    if str(FUNCTION_DIR) not in sys.path:
        sys.path.insert(0, str(FUNCTION_DIR))
    return importlib.import_module("app")


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def read_log(path: Path) -> tuple[dict[str, int], list[dict[str, Any]]]:
    """The function's JSON log lines by level (EMF metric records skipped), and the first
    records above INFO, as they were logged (for the report)."""
    levels: Counter[str] = Counter()
    notable: list[dict[str, Any]] = []
    with path.open(encoding="utf-8", errors="replace") as lines:
        for line in lines:
            with contextlib.suppress(ValueError):
                record = json.loads(line)
                if isinstance(record, dict) and "_aws" not in record:
                    level = str(record.get("level", "?"))
                    levels[level] += 1
                    if level not in ("INFO", "DEBUG") and len(notable) < MAX_NOTABLE:
                        notable.append(record)
    return dict(levels), notable


def signal(line: str) -> None:
    """A line to the parent (bench/stack.py) on this process's own stdout, which the handler's
    output (redirected to the log) never reaches."""
    sys.__stdout__.write(line + "\n")  # type: ignore[union-attr]
    sys.__stdout__.flush()  # type: ignore[union-attr]


def await_parent(expected: str) -> None:
    line = sys.stdin.readline().strip()
    if line != expected:
        raise SystemExit(f"bench.case: expected {expected!r} from the parent, got {line!r}")


def drain_batches(source: Any, handler: Any) -> tuple[list[Any], float | None]:
    """The event source mapping's poller in this environment: batches until a receive finds
    nothing visible (another environment's batch in flight is not: it is that environment's to
    settle). Returns the batches and when the last one was settled (its messages deleted), on
    the monotonic clock every process shares."""
    batches: list[Any] = []
    settled: float | None = None
    while (batch := source.poll(handler, wait_seconds=0)) is not None:
        batches.append(batch)
        settled = time.monotonic()
    return batches, settled


def await_invocation(flag: Path) -> None:
    """Until the event's invocation (in copy 0) has returned: what it queued is then visible.
    A stat every millisecond, not a receive: ten environments polling an empty queue would
    take the CPUs the invocation and moto need (AWS's pollers long-poll, which moto's few
    server threads cannot serve to that many at once)."""
    while not flag.exists():
        time.sleep(FLAG_POLL_SECONDS)


def warm_up(
    spec: Mapping[str, Any], module: ModuleType, log: Any, work_queue: Any, handler: Any
) -> None:
    """Before the measured work: the warm-up invocation, if any, and its drain (with a work
    queue, when the parent says "warm"; then "ready", and the measured work starts on "go")."""
    if work_queue is not None:
        await_parent("warm")  # the environments warm one at a time: each drains its own
    if spec.get("warmup_event") is not None:
        with contextlib.redirect_stdout(log):
            module.lambda_handler(spec["warmup_event"], LocalLambdaContext(timeout_seconds=60))
        if work_queue is not None:
            work_queue.drain(handler, idle_seconds=0)  # what the warm-up queued: not measured
    if work_queue is not None:
        signal("ready")
        await_parent("go")


def invoke(spec: Mapping[str, Any], log: Any, copy: int) -> dict[str, Any]:
    started = time.perf_counter()
    with contextlib.redirect_stdout(log):
        module = load_handler(spec["env"])
        imported = time.perf_counter()
    work_queue = work_queue_source(spec.get("work_queue"))
    timeout = float(spec["timeout_seconds"])
    # Copy 0 is invoked with the event; with a work queue, every copy is one of the execution
    # environments its event source drains it with, started together by the parent.
    invoker = copy == 0
    invoked_flag = Path(spec["invoked_flag"]) if spec.get("invoked_flag") else None

    def handler(event: dict[str, Any]) -> Mapping[str, Any]:
        with contextlib.redirect_stdout(log):
            result: Mapping[str, Any] = module.lambda_handler(
                event, LocalLambdaContext(timeout_seconds=timeout)
            )
        return result

    warm_up(spec, module, log, work_queue, handler)
    outcomes_before = len(read_log_outcomes(log))
    started_at, cpu0, t0 = time.time(), cpu_seconds(), time.perf_counter()
    clock_started = time.monotonic()
    error = ""
    response: Mapping[str, Any] = {}
    batches: list[Any] = []
    settled: float | None = None
    invocation_s: float | None = None  # the event's (copy 0's)
    try:
        if invoker:
            response = handler(spec["event"])
            settled = time.monotonic()
            invocation_s = settled - clock_started
            if invoked_flag is not None:
                invoked_flag.touch()
        if work_queue is not None:
            if not invoker and invoked_flag is not None:
                await_invocation(invoked_flag)
            batches, last = drain_batches(work_queue, handler)
            if last is not None:
                settled = last if settled is None else max(settled, last)
    except Exception as exc:  # noqa: BLE001 - reported to the parent, which fails the case
        error = f"{type(exc).__name__}: {exc}"
        if invoked_flag is not None:
            invoked_flag.touch()  # the other environments must not wait for it
    wall = time.perf_counter() - t0
    cpu = cpu_seconds() - cpu0
    outcomes = Counter(read_log_outcomes(log)[outcomes_before:])
    batch_errors = [f"{type(b.error).__name__}: {b.error}" for b in batches if b.error]
    return {
        "wall_s": wall,
        "cpu_s": cpu,
        "warm": spec.get("warmup_event") is not None,
        "started_at": started_at,
        # The monotonic clock (one for every process on the machine): when the measured part
        # began (the parent's "go") and when this environment settled its last batch (or, for
        # the invoker, its invocation returned), None when it did neither.
        "clock_started": clock_started,
        "clock_settled": settled,
        "invocation_s": invocation_s,
        "import_s": imported - started,
        "error": error or "; ".join(batch_errors[:3]),
        # The event's answer (the invoker's): the portfolios it queued, the ids it
        # dead-lettered at once.
        "queued": response.get("queued"),
        "dead_lettered": response.get("deadLettered"),
        # This environment's drain (with a work_queue): the portfolios triggered (a repeat
        # found done included), and its invocations, their batch sizes and redeliveries.
        "triggered": outcomes["triggered"] + outcomes["already-triggered"]
        if work_queue is not None
        else None,
        "drain_invocations": len(batches),
        "drain_batch_sizes": [len(b.event["Records"]) for b in batches],
        "drain_redelivered": sum(len(b.redelivered) for b in batches),
    }


def work_queue_source(where: Mapping[str, Any] | None) -> Any:
    """The work queue's event source (batches of at most `batch_size`), or None."""
    if where is None:
        return None
    # Here, not at the top: the function's own import must load boto3 first.
    import boto3  # noqa: PLC0415 - the harness's SQS client (receive/delete), straight to moto

    from local.fixtures.event_source import SqsEventSource  # noqa: PLC0415

    sqs = boto3.session.Session().client(
        "sqs",
        endpoint_url=where["moto_url"],
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",  # noqa: S106 - moto's fake credentials
    )
    # local.stack.Queue's two fields, without importing local.stack (and moto with it).
    queue = cast("Queue", SimpleNamespace(url=where["queue_url"], arn=where["queue_arn"]))
    return SqsEventSource(sqs, queue, batch_size=int(where["batch_size"]))


def read_log_outcomes(log: Any) -> list[str]:
    """The portfolio outcomes (triggered, failed, ...) logged so far, in order."""
    log.flush()
    outcomes = []
    with Path(log.name).open(encoding="utf-8", errors="replace") as lines:
        for line in lines:
            with contextlib.suppress(ValueError):
                record = json.loads(line)
                if isinstance(record, dict) and "outcome" in record and "portfolio_id" in record:
                    outcomes.append(str(record["outcome"]))
    return outcomes


def drain(spec: Mapping[str, Any], log: Any) -> dict[str, Any]:
    """Lambda's SQS event source on the work queue: batches of at most `batch_size`, one warm
    invocation each."""
    with contextlib.redirect_stdout(log):
        module = load_handler(spec["env"])
    source = work_queue_source(spec)
    timeout = float(spec["timeout_seconds"])
    invocations = 0
    errors: Counter[str] = Counter()

    def handler(event: dict[str, Any]) -> Mapping[str, Any]:
        nonlocal invocations
        invocations += 1
        with contextlib.redirect_stdout(log):
            result: Mapping[str, Any] = module.lambda_handler(
                event, LocalLambdaContext(timeout_seconds=timeout)
            )
        return result

    cpu0, t0 = cpu_seconds(), time.perf_counter()
    results = source.drain(handler, idle_seconds=int(spec.get("idle_seconds", 1)))
    wall = time.perf_counter() - t0
    cpu = cpu_seconds() - cpu0
    for result in results:
        if result.error is not None:
            errors[type(result.error).__name__] += 1
    return {
        "wall_s": wall,
        "cpu_s": cpu,
        "invocations": invocations,
        "deleted": sum(len(r.deleted) for r in results),
        "redelivered": sum(len(r.redelivered) for r in results),
        "errors": dict(errors),
        "idle_s": int(spec.get("idle_seconds", 1)),
    }


def main(argv: list[str]) -> int:
    spec_path, out_path = Path(argv[0]), Path(argv[1])
    copy = int(argv[2]) if len(argv) > 2 else 0
    spec = json.loads(spec_path.read_text())
    log_path = out_path.with_suffix(".log")
    with log_path.open("w", encoding="utf-8") as log:
        result = drain(spec, log) if spec["mode"] == "drain" else invoke(spec, log, copy)
    result["peak_rss_kb"] = peak_rss_kb()
    result["ru_maxrss_kb"] = int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
    result["log_levels"], result["log_notable"] = read_log(log_path)
    out_path.write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
