"""One more call to the rebalancing API: time for it before the deadline, and its pacing slot.

Every request the function makes to the API (a trigger, a look at recent rebalances, a status
call) takes its slot here first, so the client-side rate limit and the API's own back-pressure
(the Pacing port) hold for all of them alike, and none waits for a slot past the point where
the call itself could still finish before the invocation's deadline.
"""

from __future__ import annotations

from glider_trigger.domain.errors import NotAttemptedError
from glider_trigger.domain.ports import Deadline, Pacing, RebalancingApi


class CallSlots:
    def __init__(self, api: RebalancingApi, pacing: Pacing | None) -> None:
        self._api = api
        self._pacing = pacing  # shared by every caller: one rate for all of the requests

    def late(self, deadline: Deadline) -> NotAttemptedError | None:
        """Too little time left for one more call, however soon it could start."""
        worst_case = self._api.worst_case_seconds
        if deadline.seconds_left() >= worst_case:
            return None
        return NotAttemptedError(
            f"{max(deadline.seconds_left(), 0):.1f}s left in the invocation; an attempt "
            f"may take {worst_case:.1f}s"
        )

    def take(self, deadline: Deadline) -> NotAttemptedError | None:
        """Wait for permission to make one call; why not when the wait would leave too little
        time for the call itself (then the call is not made)."""
        late = self.late(deadline)
        if late is not None:
            return late
        budget = deadline.seconds_left() - self._api.worst_case_seconds
        if self._pacing is not None and not self._pacing.acquire(budget_seconds=budget):
            return NotAttemptedError(
                "the client-side rate limit has no slot before the invocation's deadline"
            )
        return None
