"""A Lambda context with a real deadline, as the Lambda runtime hands to a handler.

It can also stand for an execution environment that dies in the middle of an invocation (an
out-of-memory kill, a runtime exit, a segfault in a native library): with `crash_after_calls=N`,
the N-th call of `get_remaining_time_in_millis` and every call after it raise `EnvironmentCrash`.

`EnvironmentCrash` is a `BaseException`, not an `Exception`, so that nothing the function or its
libraries do with `except Exception` catches it: the invocation ends where it stood, with no
summary, no dead letter and no cleanup. Powertools Idempotency in particular deletes the record
of a failed call only on an `Exception`, so the records the crashed invocation had claimed stay
"in progress" until its deadline (the expiry Powertools stored from this same context), as they
do when a real environment dies. What the function has in flight when the crash fires still
finishes (an HTTP call already sent, for one); the crash strikes at the next deadline check of
each worker. The call count is shared by every thread that reads the context.

A crashed environment is gone: a harness that plays Lambda must invoke the next event on a new
one (`local.function.LocalFunction(env)` again, a cold start), with a fresh context.
"""

from __future__ import annotations

import threading
import time
import uuid
from dataclasses import dataclass, field


class EnvironmentCrash(BaseException):
    """The execution environment died mid-invocation; nothing in the function may catch it."""


@dataclass
class LocalLambdaContext:
    timeout_seconds: float = 120.0
    function_name: str = "glider-rebalance-trigger"
    function_version: str = "$LATEST"
    memory_limit_in_mb: int = 256
    region: str = "us-east-1"
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    log_group_name: str = "/aws/lambda/glider-rebalance-trigger"
    log_stream_name: str = "local"
    # The environment dies on this call of get_remaining_time_in_millis (1: the first); None:
    # it never does.
    crash_after_calls: int | None = None
    calls: int = field(default=0, init=False)  # get_remaining_time_in_millis calls so far
    crashed: bool = field(default=False, init=False)
    _deadline: float = field(init=False)
    _lock: threading.Lock = field(
        default_factory=threading.Lock, init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        if self.crash_after_calls is not None and self.crash_after_calls < 1:
            raise ValueError("crash_after_calls must be at least 1")
        self._deadline = time.monotonic() + self.timeout_seconds

    @property
    def invoked_function_arn(self) -> str:
        return f"arn:aws:lambda:{self.region}:123456789012:function:{self.function_name}"

    @property
    def deadline(self) -> float:
        """The invocation's deadline on the `time.monotonic()` clock."""
        return self._deadline

    def get_remaining_time_in_millis(self) -> int:
        with self._lock:
            self.calls += 1
            if self.crash_after_calls is not None and self.calls >= self.crash_after_calls:
                self.crashed = True
                raise EnvironmentCrash(
                    f"execution environment crashed (call {self.calls} of the context, "
                    f"request {self.aws_request_id})"
                )
        return max(0, int((self._deadline - time.monotonic()) * 1000))
