"""The ports: what the domain needs from the outside world, stated by the domain.

The outbound adapters implement them (outbound/), in-memory fakes implement them in tests
(tests/fakes/). A second rebalancing API (another Glider version) is one more RebalancingApi.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import KW_ONLY, dataclass
from typing import Final, Protocol

from glider_trigger.domain.errors import TriggerError
from glider_trigger.domain.models import (
    ApiKey,
    FinalOutcome,
    FollowUp,
    InputSource,
    Next,
    Outcome,
    OutgoingMessage,
    RebalanceState,
    Receipt,
    TriggerRequest,
)

# The longest a queue holds a message back before it becomes visible (SQS's DelaySeconds).
MAX_DELAY_SECONDS: Final = 900


@dataclass(frozen=True)
class StartedRebalance:
    """One of a portfolio's recent rebalances, as the API lists them."""

    rebalance_id: str | None  # None when the API tells when, not which (v2's lastRebalanceAt)
    started_at: float | None  # epoch seconds; None when the API gave none it could read
    _: KW_ONLY  # a value in the wrong place is refused, never read as "latest only"
    # The API shows only the portfolio's latest rebalance (v2): one at or after a lost
    # attempt's window opened means a rebalance has run since, whenever it ran (a later one
    # would hide the lost attempt's, and sending again could then start a second).
    latest_only: bool = False


@dataclass(frozen=True)
class RecentRebalances:
    """A portfolio's recent rebalances, newest first, as far back as the API showed them."""

    listed: tuple[StartedRebalance, ...]
    # Every rebalance started since the time asked for is listed. False when the list the API
    # gave was cut at its length before reaching back that far: one missing from it may have
    # started then, so it proves nothing about that time.
    complete: bool = True
    # Cut off, but the API can list further back when asked for a longer list (one more call).
    more: bool = False


class RebalancingApi(Protocol):
    """Triggers one portfolio's rebalance: a Receipt, or an ApiError its adapter classified."""

    @property
    def worst_case_seconds(self) -> float:
        """How long one call may take before it times out."""
        ...

    @property
    def version(self) -> str:
        """Which API this is (a follow-up records it: its rebalance is looked at through the
        API that started it, or not at all)."""
        ...

    def trigger(self, request: TriggerRequest, api_key: ApiKey) -> Receipt: ...

    def recent_rebalances(
        self, request: TriggerRequest, api_key: ApiKey, since: float, *, longer: bool = False
    ) -> RecentRebalances:
        """The portfolio's rebalances started since `since` (epoch seconds), newest first, as
        far as one call lists them; `longer` asks for the longest list the API gives (after
        an answer that said `more`). Raises an ApiError."""
        ...

    def rebalance_state(self, follow_up: FollowUp, api_key: ApiKey) -> RebalanceState:
        """Where one rebalance stands; raises an ApiError."""
        ...


@dataclass(frozen=True)
class OutcomeReport:
    """A followed rebalance's final outcome, with the facts its log line and event carry."""

    follow_up: FollowUp
    outcome: FinalOutcome
    state: RebalanceState | None  # None when it could not be read
    reason: str | None = None  # why the outcome is unknown, or Glider's error
    decided_at: float = 0.0  # epoch seconds

    @property
    def duration_seconds(self) -> float | None:
        state = self.state
        if state is None or state.started_at is None or state.closed_at is None:
            return None
        return max(0.0, state.closed_at - state.started_at)


@dataclass(frozen=True)
class FailedTriggerLetter:
    """The dead letter of one portfolio whose trigger failed (or whose id was rejected), with
    what its notice names beyond the letter's own attributes (reason, failureClass, Glider's
    answer, source, failedAt)."""

    portfolio_id: str
    delivery_key: str | None
    letter: OutgoingMessage


class OutcomeEvents(Protocol):
    def publish(self, report: OutcomeReport) -> None:
        """Put the outcome's event on the bus; raises OutcomeEventError when it was not put."""
        ...

    def trigger_failed(self, letters: Sequence[FailedTriggerLetter]) -> None:
        """One event per letter written (a notice naming its portfolio); raises
        OutcomeEventError naming how many were not put."""
        ...


class NoOutcomeEvents:
    """No outcome bus configured: nothing is announced (the letters and logs remain)."""

    def publish(self, report: OutcomeReport) -> None:
        pass

    def trigger_failed(self, letters: Sequence[FailedTriggerLetter]) -> None:
        pass


NO_OUTCOME_EVENTS: Final = NoOutcomeEvents()


class History(Protocol):
    """Each trigger and each final outcome written down for the operator (`glider-trigger
    history`): one write each. Never raises: a record that cannot be written is reported by
    the adapter and dropped, so that it never fails a trigger nor makes one happen twice."""

    def trigger(self, outcome: Outcome) -> None: ...

    def outcome(self, report: OutcomeReport) -> None: ...


class ApiKeySource(Protocol):
    def get(self, *, refresh: bool = False) -> ApiKey:
        """The key (cached); a fresh read when `refresh`. Raises SecretUnavailableError."""
        ...


class Pacing(Protocol):
    def acquire(self, *, budget_seconds: float = float("inf")) -> bool:
        """Wait for permission to send one request; False if that would take too long."""
        ...


class Clock(Protocol):
    """Time, as the domain reads and spends it: one port, so that a test sets every reading
    and records every wait in one place. Randomness (a retry's jitter) is not time: it stays a
    `random.Random`, which a test seeds."""

    def monotonic(self) -> float:
        """Seconds on a clock that never goes back, for durations (a call's latency)."""
        ...

    def now(self) -> float:
        """Epoch seconds on the wall clock: when something happened, as other invocations, the
        stored records and Glider's own times read it."""
        ...

    def sleep(self, seconds: float) -> None:
        """Wait (a retry's backoff)."""
        ...


class Deadline(Protocol):
    def seconds_left(self) -> float:
        """Time left for work, safety margin already taken off."""
        ...


class Attempts(Protocol):
    """The guard's record of one delivery's attempts at one portfolio, while it holds them."""

    def sending(self) -> None:
        """Recorded before the first request leaves: until this holder reports its outcome,
        Glider may act on what it sends (a holder that dies then leaves this window to look
        at). Raises IdempotencyUnavailableError when it cannot be recorded: nothing is sent."""
        ...


class TriggerGuard(Protocol):
    def run(
        self,
        key: str,
        request: TriggerRequest,
        trigger: Callable[[TriggerRequest, Attempts], Outcome],
    ) -> Outcome:
        """Run `trigger` unless `key` was settled before; then return that earlier outcome.
        `trigger` gets the request with what earlier holders of `key` recorded as possibly
        started (`may_have_started`), and records its own attempts; an outcome that does not
        settle the delivery is kept with the windows it leaves unresolved (`Failed.uncertain`).
        Another holder of `key` right now: a DuplicateInProgressError failure; a store that
        cannot tell: an IdempotencyUnavailableError failure (not triggering is the safe choice)."""
        ...

    def once(self, key: str, action: Callable[[], None]) -> None:
        """Run `action` unless it ran to completion under `key` before. When the store cannot
        tell, it runs anyway: a duplicate dead letter is noise, a missing one is a loss. When
        another invocation is running it right now, raises OnceInProgressError."""
        ...


class MessageQueue(Protocol):
    @property
    def queue_url(self) -> str: ...

    def send(self, messages: Sequence[OutgoingMessage], *, parallelism: int = 1) -> None:
        """Write every message, or raise a QueueWriteError naming how many were not written."""
        ...


# What the domain reports, split by concern: each use case takes the one it speaks to, and one
# adapter (outbound/telemetry.py) implements them all.


class DeliveryReports(Protocol):
    """The work queue's and the intake's: one line per portfolio outcome, and counts."""

    def received(self, count: int) -> None: ...

    def outcome(self, outcome: Outcome, *, action: Next) -> None: ...

    def queued(self, count: int, queue_url: str, source: InputSource) -> None: ...

    def deferred(self, count: int, delay_seconds: int, queue_url: str) -> None: ...

    # The two below are called while the QueueWriteError is handled (its traceback logged).
    def fan_out_failed(self, queue_url: str, messages: int) -> None: ...

    def deferral_failed(self, queue_url: str, messages: int) -> None: ...

    def unexpected_error(self, portfolio_id: str) -> None:
        """Called while an unforeseen exception is being handled (a bug)."""
        ...


class LetterReports(Protocol):
    """The dead letters': what was rejected, what was written, what could not be."""

    def received(self, count: int) -> None: ...

    def rejected(self, portfolio_id: object, error: TriggerError, source: InputSource) -> None: ...

    def unparsable(self, error: TriggerError, source: InputSource) -> None: ...

    def dead_lettered(self, count: int) -> None: ...

    def dead_letter_write_failed(self, queue_url: str, messages: int) -> None:
        """Called while the QueueWriteError is handled (its traceback logged)."""
        ...

    def letter_events_not_put(self, letters: Sequence[FailedTriggerLetter]) -> None:
        """Called while the error of failed-trigger events that could not be put is handled
        (their letters are written)."""
        ...


class BatchReports(Protocol):
    """An SQS batch's: a record postponed for a Retry-After, or failed by a bug."""

    def postponed(self, delivery_id: str, visibility_timeout_seconds: int) -> None: ...

    def postpone_failed(self, delivery_id: str, retry_after_seconds: float) -> None: ...

    def record_failed(self, delivery_id: str) -> None:
        """Called while the exception that failed a message's settlement is being handled."""
        ...


class ReconcileReports(Protocol):
    """Looking for a lost answer's rebalance."""

    def reconcile_failed(self, portfolio_id: str, error: TriggerError) -> None:
        """The API's list of recent rebalances could not be read: the trigger is sent again."""
        ...

    def reconcile_forbidden(self, error: TriggerError) -> None:
        """The key may not read the list: reconciling stops in this execution environment."""
        ...


class FollowReports(Protocol):
    """Following a rebalance to its outcome."""

    def rebalance_outcome(self, report: OutcomeReport) -> None:
        """A followed rebalance's final outcome: its one log line and metrics."""
        ...

    def event_not_put(self, report: OutcomeReport) -> None:
        """Called while the error of an outcome event that could not be put is handled."""
        ...

    def looked(self, follow_up: FollowUp) -> None:
        """One follow-up's status call (what following costs, counted)."""
        ...

    def still_running(self, follow_up: FollowUp, status: str | None, next_in: int) -> None: ...

    def awaiting_user(self, follow_up: FollowUp) -> None:
        """The rebalance waits for a person (not final): its warning and count, once."""
        ...

    def state_unreadable(self, follow_up: FollowUp, error: TriggerError) -> None: ...

    def follow_up_not_sent(self, queue_url: str, messages: int, *, again: bool = False) -> None:
        """Called while the QueueWriteError is handled: those rebalances are not followed, or
        (`again`) the follow-up that sent them is delivered again."""
        ...

    def dead_letter_write_failed(self, queue_url: str, messages: int) -> None:
        """Called while a failed rebalance's letter could not be written."""
        ...
