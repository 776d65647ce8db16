"""The handler loaded as Lambda loads it: a fresh module import in the function's environment
(its init), then invocations with a context that has a real deadline. Everything the function
writes to stdout (Powertools' JSON log lines and EMF metrics) is kept for inspection."""

from __future__ import annotations

import contextlib
import io
import json
from collections.abc import Mapping
from types import ModuleType
from typing import Any

from local.lambda_context import LocalLambdaContext
from local.stack import environment, load_function


class LineTap(io.TextIOBase):
    """A stdout stand-in that keeps every complete line written to it."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self._partial = ""

    def write(self, text: str) -> int:
        self._partial += text
        *complete, self._partial = self._partial.split("\n")
        self.lines.extend(line for line in complete if line.strip())
        return len(text)


class LocalFunction:
    def __init__(self, env: Mapping[str, str]) -> None:
        self.env = dict(env)
        self.output = LineTap()
        self._read = 0
        with environment(self.env), contextlib.redirect_stdout(self.output):
            self.module: ModuleType = load_function()

    def invoke(
        self, event: Any, *, timeout_seconds: float = 120.0, context: Any | None = None
    ) -> Any:
        """Call the handler as Lambda would; exceptions propagate as they would to Lambda."""
        context = context or LocalLambdaContext(timeout_seconds=timeout_seconds)
        with environment(self.env), contextlib.redirect_stdout(self.output):
            return self.module.lambda_handler(event, context)

    def new_lines(self) -> list[str]:
        """Output lines written since the last call."""
        lines = self.output.lines[self._read :]
        self._read = len(self.output.lines)
        return lines

    @property
    def logs(self) -> list[dict[str, Any]]:
        """Every JSON log line so far (EMF metric records excluded)."""
        return [r for r in json_records(self.output.lines) if "_aws" not in r]

    @property
    def metrics(self) -> list[dict[str, Any]]:
        """Every EMF metric record so far."""
        return [r for r in json_records(self.output.lines) if "_aws" in r]


def json_records(lines: list[str]) -> list[dict[str, Any]]:
    """The JSON objects among output lines (log records and EMF metric records)."""
    records = []
    for line in lines:
        with contextlib.suppress(ValueError):
            record = json.loads(line)
            if isinstance(record, dict):
                records.append(record)
    return records
