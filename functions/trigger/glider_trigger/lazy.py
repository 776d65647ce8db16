"""Built on first use, then reused: a cold start pays only for the clients its work needs (an
SQS-only invocation that succeeds never builds the DLQ writer's client, for instance)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, Generic, TypeVar

_T = TypeVar("_T")


class Lazy(Generic[_T]):
    def __init__(self, build: Callable[[], _T]) -> None:
        self._build = build
        self._value: _T | None = None
        self._lock = threading.Lock()

    def get(self) -> _T:
        value = self._value
        if value is None:
            with self._lock:  # workers may ask at the same time; build once
                if self._value is None:
                    self._value = self._build()
                value = self._value
        return value


class LazyClient:
    """Stands in for a boto3 client and builds the real one at its first method call."""

    def __init__(self, build: Callable[[], Any]) -> None:
        self._lazy: Lazy[Any] = Lazy(build)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._lazy.get(), name)
