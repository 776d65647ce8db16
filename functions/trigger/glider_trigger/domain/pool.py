"""A bounded worker pool for one invocation's calls: a list of work, its results in order."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

_Item = TypeVar("_Item")
_Result = TypeVar("_Result")


def on_pool(
    work: Callable[[_Item], _Result], items: Sequence[_Item], *, workers: int
) -> list[_Result]:
    """Each item's work, on at most `workers` threads (inline for one worker or one item)."""
    if workers <= 1 or len(items) <= 1:
        return [work(item) for item in items]
    # Imported on first use: a cold start whose work is one item never pays for it.
    from concurrent.futures import ThreadPoolExecutor  # noqa: PLC0415

    with ThreadPoolExecutor(
        max_workers=min(workers, len(items)), thread_name_prefix="trigger"
    ) as pool:
        return list(pool.map(work, items))
