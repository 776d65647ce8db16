"""The machine the benchmark runs on: its description, and the CPUs the function and stack get."""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import platform
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Placement:
    """Which CPUs a measured invocation runs on, and which the local stack (moto's process and
    the harness's, the emulator's) runs on.

    In Lambda the function has its own share of CPU (one vCPU at the template's MemorySize of
    1769 MB) and AWS's services run on other machines. Here all share one machine: left to the
    scheduler, moto and the function take turns on the same core. So an invocation gets the
    first CPU, and the stack the others. Several environments at once (a work queue's drain, one
    per poller, as concurrent execution environments) keep every CPU, shared with the stack."""

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

    def cpus_for(self, mode: str, copies: int) -> frozenset[int] | None:
        """An invocation's CPUs; a drain's or several environments' at once: all of them."""
        if self.function is None or (mode == "invoke" and copies == 1):
            return self.function
        return self.function | (self.stack or frozenset())

    def describe(self) -> str:
        if self.function is None or self.stack is None:
            return "not pinned (fewer than 2 CPUs or no CPU affinity here)"
        return (
            f"each measured invocation on CPU {_cpus(self.function)}, moto and the emulator on "
            f"CPU {_cpus(self.stack)}; several environments at once on all"
        )


def _cpus(cpus: frozenset[int]) -> str:
    return ",".join(str(cpu) for cpu in sorted(cpus))


def pin(pid: int, cpus: frozenset[int] | None) -> None:
    if cpus is not None:
        os.sched_setaffinity(pid, cpus)


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
