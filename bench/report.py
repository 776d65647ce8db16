"""Presentation of the benchmark: progress lines, text and Markdown tables, the chart, the files."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Table:
    title: str
    headers: list[str]
    rows: list[list[str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def text(self) -> str:
        widths = [len(h) for h in self.headers]
        for row in self.rows:
            widths = [max(w, len(cell)) for w, cell in zip(widths, row, strict=True)]

        def line(cells: Sequence[str]) -> str:
            # The first column (a label) is left-aligned, the figures right-aligned.
            parts = [
                cell.ljust(width) if i == 0 else cell.rjust(width)
                for i, (cell, width) in enumerate(zip(cells, widths, strict=True))
            ]
            return "  ".join(parts).rstrip()

        out = [self.title, line(self.headers), "  ".join("-" * w for w in widths)]
        out += [line(row) for row in self.rows]
        out += [f"  {note}" for note in self.notes]
        return "\n".join(out)

    def markdown(self) -> str:
        align = ["---"] + ["---:"] * (len(self.headers) - 1)
        out = [f"**{self.title}**", ""]
        out.append("| " + " | ".join(self.headers) + " |")
        out.append("| " + " | ".join(align) + " |")
        out += [
            "| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in self.rows
        ]
        if self.notes:
            out.append("")
            out += [f"- {note}" for note in self.notes]
        return "\n".join(out)


def throughput_chart(
    path: Path,
    *,
    workers: Sequence[int],
    measured: Sequence[float],
    ideal: Sequence[float],
    title: str,
    machine: str,
    beside: tuple[int, float, str] | None = None,
) -> None:
    """Triggers/s against MAX_CONCURRENCY (log2 x axis), with the latency-bound ideal, and one
    point beside (`beside`: MAX_CONCURRENCY, triggers/s, label)."""
    import matplotlib  # noqa: PLC0415 - only the chart needs it (installed by `make bench`)

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    fig, ax = plt.subplots(figsize=(8, 5), dpi=120)
    ax.plot(workers, ideal, linestyle="--", color="grey", marker="", label="ideal (latency-bound)")
    ax.plot(workers, measured, marker="o", color="tab:blue", label="measured")
    for x, y in zip(workers, measured, strict=True):
        ax.annotate(f"{y:.0f}/s", (x, y), textcoords="offset points", xytext=(6, -14), fontsize=9)
    if beside is not None:
        x, y, label = beside
        ax.plot([x], [y], marker="x", markersize=9, linestyle="", color="tab:orange", label=label)
        ax.annotate(f"{y:.0f}/s", (x, y), textcoords="offset points", xytext=(6, 4), fontsize=9)
    ax.set_xscale("log", base=2)
    ax.set_xticks(list(workers), [str(w) for w in workers])
    ax.set_xlim(min(workers) / 1.4, max(workers) * 1.6)  # room for the labels
    ax.set_yscale("log")
    lowest = min([*measured, *([beside[1]] if beside else [])])
    ax.set_ylim(bottom=lowest * 0.6, top=max(ideal) * 1.6)
    ax.set_xlabel("MAX_CONCURRENCY (triggers in flight per invocation)")
    ax.set_ylabel("triggers per second (log)")
    ax.set_title(f"{title}\n{machine}", fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def progress(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
