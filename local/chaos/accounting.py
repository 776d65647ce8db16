"""The accounting: what happened (emulator, logs, queues) read into lost, doubled and replayed.

Each id is owed one rebalance per distinct delivery that requested it (one, or two for the
phase's shared portfolios), less the deliveries Glider joined to another's rebalance in flight
(v2). The other client's rebalances of the deep portfolios (phase.py) are nobody's delivery and
are left out. Beyond what is owed, an extra rebalance is a repeat no client can prevent as far
as rebalances the function never learned of are explained by served lost or too-slow answers
(it must then have said so: else it is an unflagged repeat), and a double otherwise.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from local.chaos.faults import (
    AWS_FAULTS,
    GLIDER_FAULTS,
    MAYBE_DELIVERED_FAULTS,
    RECONCILABLE_FAULTS,
    SCENARIO_FAULTS,
    STORE_FAULT,
)
from local.chaos.harness import Harness, Stack
from local.chaos.letters import DESTINATION, GUARDED_KINDS, REDRIVEN, body_ids, dlq_kind
from local.chaos.pacing import check_pacing
from local.chaos.phase import EXTERNAL_AGENT, Phase
from local.chaos.report import ChaosReport, sample
from local.fixtures.glider_emulator import Rebalance, RecordedRequest
from local.fixtures.stack import drain

CUT_OFF = "RECENT_LIST_CUT_OFF"  # the function's reason when a list does not reach back


@dataclass
class Repeats:
    """Extra rebalances, by what explains them (see Tally.repeats)."""

    doubled: list[str] = field(default_factory=list)
    extra: int = 0
    unpreventable: int = 0
    # ... of which the ids' only such faults were lost answers or 5xx after Glider acted: the
    # rebalance was listed before the function sent again, so reconciling should leave none.
    after_reconcilable: int = 0
    after_reconcilable_ids: list[str] = field(default_factory=list)
    flagged: int = 0
    unflagged: list[str] = field(default_factory=list)  # ids with a repeat it did not announce
    unflagged_extra: int = 0
    causes: Counter[str] = field(default_factory=Counter)
    replay_triggered: int = 0
    replay_doubled: list[str] = field(default_factory=list)
    replay_extra: int = 0
    replay_kinds: Counter[str] = field(default_factory=Counter)
    replay_guarded: int = 0
    replay_unpreventable: int = 0


class Tally:
    """Reads what happened (the emulator, the function's logs, the queues) into a report."""

    def __init__(self, stack: Stack, harness: Harness, phase: Phase) -> None:
        self.stack = stack
        self.harness = harness
        self.phase = phase
        self.plan = stack.plan
        # The function's requests to Glider (not the other client's).
        self.requests: list[RecordedRequest] = [
            r for r in stack.emulator.requests if r.headers.get("user-agent") != EXTERNAL_AGENT
        ]
        # Rebalances before the replay and during it (the emulator records them in order).
        everything = stack.emulator.rebalances
        split = harness.replay_rebalance_start
        split = len(everything) if split is None else split
        self.rebalances: dict[str, list[Rebalance]] = defaultdict(list)
        self.before: dict[str, list[Rebalance]] = defaultdict(list)
        self.during: dict[str, list[Rebalance]] = defaultdict(list)
        for number, rebalance in enumerate(everything):
            if rebalance.rebalance_id in phase.external:
                continue
            self.rebalances[rebalance.portfolio_id].append(rebalance)
            when = self.before if number < split else self.during
            when[rebalance.portfolio_id].append(rebalance)
        logs = stack.logs()  # every execution environment's
        # Successes the function saw, by rebalance id; "already-triggered" lines are not new.
        triggered = [r for r in logs if r.get("outcome") == "triggered"]
        self.observed = {str(r.get("rebalance_id")) for r in triggered}
        # Deliveries owed a rebalance each, per id; the shared ones that Glider joined (v2).
        self.deliveries = {s.portfolio_id: len(s.deliveries) for s in self.plan.shared}
        self.joined = joined_deliveries(
            self.deliveries,
            self.requests,
            triggered,
            {i: len(self.rebalances.get(i, [])) for i in self.deliveries},
        )
        self.announced = announced_repeats(logs)
        self.cut_off: Counter[str] = Counter(
            str(r.get("portfolio_id")) for r in logs if r.get("reason") == CUT_OFF
        )
        self.reconciled_ids = {str(r.get("portfolio_id")) for r in triggered if r.get("reconciled")}
        self.reconciled = sum(1 for r in triggered if r.get("reconciled") is True)
        # Each rebalance the function saw triggered, and the final outcomes it reported of it.
        finals = [r for r in logs if r.get("rebalance_outcome")]
        self.final_outcomes: Counter[str] = Counter(str(r["rebalance_outcome"]) for r in finals)
        self.finals_per_rebalance: Counter[str] = Counter(
            str(r["rebalance_id"]) for r in finals if r.get("rebalance_id")
        )
        # Triggered, but which rebalance is unknown (an answer cut off; on v2 also a lost
        # answer closed by the portfolio's lastRebalanceAt): `unknown` at once, not followed.
        self.unfollowable = sum(1 for r in finals if not r.get("rebalance_id"))
        # Followed: seen triggered, or reported final (triggered in an invocation that crashed
        # after it had sent the first follow-up, before its log line).
        self.followed = {str(r["rebalance_id"]) for r in triggered if r.get("rebalance_id")}
        self.followed |= set(self.finals_per_rebalance)
        # Where the function saw each id triggered: outside the replay, the input's source;
        # during it, the kind of the replayed DLQ message.
        self.trigger_sources: dict[str, set[str]] = defaultdict(set)
        self.replay_triggers: dict[str, set[str]] = defaultdict(set)
        for record in triggered:
            portfolio_id = str(record.get("portfolio_id"))
            replayed = harness.replayed.get(str(record.get("delivery_id")))
            if replayed is not None:
                self.replay_triggers[portfolio_id].add(replayed.kind)
            else:
                # Every trigger runs from the work queue: where its message came from is its
                # delivery key (an async event's, as its answer named it).
                key = harness.message_keys.get(str(record.get("delivery_id")), "")
                self.trigger_sources[portfolio_id].add(
                    "event" if key in harness.event_keys else str(record["source"])
                )
        self.final_failures = Counter(
            str(r.get("reason")) for r in logs if r.get("outcome") == "failed"
        )
        self.dlq_write_failures = sum(
            1 for r in logs if str(r.get("message", "")).startswith("Dead-letter queue write fail")
        )
        # Scripted faults served, per id, before the replay and during it.
        self.served_before: dict[str, Counter[str]] = defaultdict(Counter)
        self.served_during: dict[str, Counter[str]] = defaultdict(Counter)
        self.faults = self._faults()

    def seen(self, rebalance: Rebalance) -> bool:
        """Whether the function learned of this rebalance: its id is on a `triggered` line
        (the operation id for one a v2 trigger started: what the function calls it there)."""
        key = rebalance.operation_id if rebalance.api_version == "v2" else rebalance.rebalance_id
        return key in self.observed

    def owed(self, portfolio_id: str) -> int:
        """Rebalances owed to the id: one per delivery, less those Glider joined."""
        return self.deliveries.get(portfolio_id, 1) - self.joined.get(portfolio_id, 0)

    def _faults(self) -> dict[str, int]:
        """Scripted faults the emulator really served (each call to an id takes the next one,
        except the calls a Glider outage answered), 404s answered, what the proxy injected,
        and the scenarios the harness staged that really happened."""
        recorded = self.stack.emulator.requests  # indexes, as the outage windows count them
        replay_start = self.harness.replay_request_start
        replay_start = len(recorded) if replay_start is None else replay_start
        calls: Counter[str] = Counter()
        faults: Counter[str] = Counter(dict.fromkeys(GLIDER_FAULTS, 0))
        for index, request in enumerate(recorded):
            portfolio_id = request.portfolio_id
            if (
                not portfolio_id
                or request.method != "POST"
                or self.harness.outages.in_outage(index)
                or request.headers.get("user-agent") == EXTERNAL_AGENT
            ):
                continue
            script = self.plan.scripts.get(portfolio_id, [])
            served = calls[portfolio_id]
            calls[portfolio_id] += 1
            if served < len(script):
                kind = script[served][0]
                faults[kind] += 1
                phase = self.served_during if index >= replay_start else self.served_before
                phase[portfolio_id][kind] += 1
        faults["glider.not_found"] = sum(
            1 for r in recorded if r.portfolio_id in self.plan.not_found and r.status == 404
        )
        injected = self.stack.proxy.injected_by_fault
        keys = [*AWS_FAULTS, *([STORE_FAULT] if self.stack.config.store_fault_rate else [])]
        for key in keys:
            operation, kind = key.removeprefix("aws.").rsplit(".", 1)
            faults[key] = injected.get((operation, kind), 0)
        for key in SCENARIO_FAULTS:
            faults[key] = self.harness.scenarios[key]
        return dict(faults)

    def _dlq(self) -> tuple[dict[str, set[str]], dict[str, bool], Counter[str]]:
        """Id -> letter kinds naming it; id -> named only by whole-input records; kinds."""
        kinds: Counter[str] = Counter()
        named_by: dict[str, set[str]] = defaultdict(set)
        whole_only: dict[str, bool] = {}
        mentions: Counter[str] = Counter()
        for message in drain(self.stack.sqs, self.stack.deployment.dlq.url):
            kind = dlq_kind(message, self.harness.work_queue_message_ids)
            kinds[kind] += 1
            named = body_ids(message.get("Body", ""))
            if not named:
                kinds["bodies naming no id"] += 1
            whole = kind == DESTINATION or (kind == REDRIVEN and len(named) > 1)
            mentions.update(set(named))
            for portfolio_id in named:
                named_by[portfolio_id].add(kind)
                whole_only[portfolio_id] = whole_only.get(portfolio_id, True) and whole
        kinds["ids named by more than one DLQ message"] = sum(1 for n in mentions.values() if n > 1)
        return named_by, whole_only, kinds

    def _unknown(self, rebalances: list[Rebalance], served: Counter[str]) -> int:
        """How many of these rebalances the function may never have learned of: unseen (their
        rebalance id is in no log line), as far as served lost-response or too-slow faults
        explain them."""
        unseen = sum(1 for r in rebalances if not self.seen(r))
        return min(unseen, sum(served[kind] for kind in MAYBE_DELIVERED_FAULTS))

    def repeats(self, ids: set[str]) -> Repeats:
        """Doubled ids and extra rebalances; repeats no client can prevent; replay doubles.

        Each id is owed `owed(id)` rebalances. Before the replay (and, for an id still owed
        one when the replay came, within it beyond what it was owed), an id's extra rebalances
        are unpreventable as far as there were rebalances the function never saw that a served
        lost-response or too-slow fault explains; every other extra is a double by redelivery
        or retry. An id that had all it was owed before the replay and gets another from it is
        a replay double (the extras within the replay that a lost or too-slow answer during it
        explains excepted), unless the function learned of fewer than it was owed (the others
        unseen and explained so): no client could have known, so that one is a replay repeat
        no client can prevent. Every unpreventable repeat must have been announced by the
        function (_announced): the rest are unflagged repeats."""
        result = Repeats()
        for portfolio_id in sorted(ids):
            owed = self.owed(portfolio_id)
            before, during = self.before.get(portfolio_id, []), self.during.get(portfolio_id, [])
            unknown_before = self._unknown(before, self.served_before[portfolio_id])
            unknown_during = self._unknown(during, self.served_during[portfolio_id])
            extras = max(0, len(before) - owed)
            unpreventable = min(extras, unknown_before)
            doubles = extras - unpreventable
            room = max(0, owed - len(before))  # still owed when the replay came
            beyond = max(0, len(during) - room)  # the replay's rebalances beyond that
            if during:
                result.replay_triggered += 1
            if beyond and room:
                explained = min(beyond, unknown_during)
                unpreventable += explained
                doubles += beyond - explained
            elif beyond:  # it had all it was owed: the replay's first trigger is one again
                within = beyond - 1
                explained = min(within, unknown_during)
                unpreventable += explained
                again = 1 + within - explained
                if len(before) - unknown_before < owed:  # the function never learned of them
                    result.replay_unpreventable += 1
                    unpreventable += 1
                    doubles += again - 1
                else:
                    self._replay_double(portfolio_id, again, result)
            result.unpreventable += unpreventable
            if (
                unpreventable
                and portfolio_id not in self.plan.deep  # its rebalance is a page down: not found
                and self._only_reconcilable(portfolio_id)
            ):
                result.after_reconcilable += unpreventable
                result.after_reconcilable_ids.append(portfolio_id)
            unflagged = max(0, unpreventable - self.announced[portfolio_id])
            result.flagged += unpreventable - unflagged
            if unflagged:
                result.unflagged.append(portfolio_id)
                result.unflagged_extra += unflagged
            if doubles:
                result.doubled.append(portfolio_id)
                result.extra += doubles
                result.causes[self._cause(portfolio_id)] += 1
        return result

    def _only_reconcilable(self, portfolio_id: str) -> bool:
        served = self.served_before[portfolio_id] + self.served_during[portfolio_id]
        kinds = {kind for kind in MAYBE_DELIVERED_FAULTS if served[kind]}
        return bool(kinds) and kinds <= RECONCILABLE_FAULTS

    def _replay_double(self, portfolio_id: str, extra: int, result: Repeats) -> None:
        """By the kind of the replayed message whose invocation triggered the id (else every
        kind of replayed message that named it)."""
        kinds = self.replay_triggers.get(portfolio_id) or {
            replayed.kind
            for replayed in self.harness.replayed.values()
            if portfolio_id in replayed.ids
        }
        result.replay_doubled.append(portfolio_id)
        result.replay_extra += extra
        result.replay_kinds.update(kinds or {"unknown"})
        if kinds & set(GUARDED_KINDS):
            result.replay_guarded += 1

    def _cause(self, portfolio_id: str) -> str:
        truncated = self.served_before[portfolio_id]["glider.truncated"]
        truncated += self.served_during[portfolio_id]["glider.truncated"]
        sources = self.trigger_sources[portfolio_id]
        if truncated:
            return "tried again after a truncated 2xx"
        if self.during.get(portfolio_id) and not self.before.get(portfolio_id):
            return "redelivery within the replay"
        if sources == {"sqs"}:
            return "SQS redelivery"
        if sources:
            return "async retry"
        return "triggered unseen, no lost answer"

    def _pending(self) -> tuple[set[str], list[str]]:
        """Ids still on the work queue (visible messages) or in an abandoned async retry."""
        harness = self.harness
        depth = harness.queue_depth()
        messages = drain(self.stack.sqs, self.stack.deployment.work_queue.url)
        pending = {i for m in messages for i in body_ids(m["Body"])}
        for delivery in harness.abandoned:
            pending.update(delivery.ids)
        notes = []
        if depth > len(messages):
            notes.append(
                f"note: {depth - len(messages)} work-queue messages in flight or delayed "
                "could not be read: their ids count as lost"
            )
        return pending, notes

    def report(self) -> ChaosReport:
        ids_in = set(self.plan.ids)
        named_by, whole_only, dlq_kinds = self._dlq()
        pending_ids, notes = self._pending()
        triggered = {i for i in ids_in if self.rebalances.get(i)}
        dead_lettered = ids_in & set(named_by)
        # Owed more rebalances than it got: a delivery still in the DLQ, pending, or lost.
        short = {i: self.owed(i) - len(self.rebalances.get(i, [])) for i in ids_in}
        unsatisfied = {i for i, missing in short.items() if missing > 0}
        both: dict[str, list[str]] = {"lost": [], "whole": [], "other": []}
        for portfolio_id in sorted(triggered & dead_lettered):
            if portfolio_id in unsatisfied:
                continue  # a shared id: one delivery triggered, the other's letter is there
            seen = any(self.seen(r) for r in self.rebalances[portfolio_id])
            which = (
                "other" if seen and not whole_only[portfolio_id] else "whole" if seen else "lost"
            )
            both[which].append(portfolio_id)
        pending = pending_ids & unsatisfied - dead_lettered
        lost = sorted(unsatisfied - dead_lettered - pending)
        repeats = self.repeats(ids_in)
        pacing = check_pacing(
            [r.received_at for r in self.requests],
            self.stack.environment_started,
            rate=self.stack.config.rate_limit_per_second,
            allowance_seconds=self.stack.config.pacing_allowance_seconds,
        )
        shared = {s.portfolio_id for s in self.plan.shared}
        deep = self.plan.deep
        invocations = dict(self.harness.invocations)
        invocations["handler raised"] = sum(self.harness.handler_errors.values())
        invocations["function's DLQ writes that failed"] = self.dlq_write_failures
        invocations["execution environments (cold starts)"] = len(self.stack.functions)
        strangers = (set(named_by) | set(self.rebalances)) - ids_in
        if strangers:
            notes.append(f"note: ids the harness never sent: {sample(sorted(strangers))}")
        return ChaosReport(
            seed=self.stack.config.seed,
            api_version=self.stack.config.api_version,
            joined_in_flight=self.stack.emulator.collapsed_triggers(),
            ids_in=len(ids_in),
            ids_via_sqs=sum(len(m) for m in self.plan.messages),
            ids_via_events=sum(len(e) for e in self.plan.event_ids),
            triggered=len(triggered),
            dead_lettered=len(dead_lettered),
            dead_lettered_only=len(dead_lettered - triggered),
            pending=len(pending),
            lost=sum(short[i] for i in lost),
            doubled_by_redelivery=len(repeats.doubled),
            doubled_extra_rebalances=repeats.extra,
            unpreventable_repeats=repeats.unpreventable,
            unpreventable_flagged=repeats.flagged,
            unpreventable_after_reconcilable=repeats.after_reconcilable,
            after_reconcilable_ids=repeats.after_reconcilable_ids,
            unflagged_repeats=repeats.unflagged_extra,
            unflagged_ids=repeats.unflagged,
            over_rate_ceiling=pacing.over,
            pacing=pacing,
            paced=self.stack.config.pacing,
            joined_deliveries=sum(self.joined.values()),
            shared_portfolios=len(shared),
            shared_deliveries=sum(self.deliveries.values()),
            shared_spacings=dict(Counter(s.spacing for s in self.plan.shared)),
            shared_refused=sum(
                1
                for r in self.requests
                if r.method == "POST" and r.portfolio_id in shared and r.status == 429
            ),
            shared_rebalances=sum(len(self.rebalances.get(i, [])) for i in shared),
            deep_portfolios=len(deep),
            deep_other_rebalances=len(self.phase.external),
            deep_cut_off=sum(self.cut_off[i] for i in deep),
            deep_found=sum(1 for i in deep if i in self.reconciled_ids),
            deep_resent=sum(1 for i in deep if len(self.rebalances.get(i, [])) > 1),
            clock_offsets=list(self.plan.clock_offsets),
            reconciled=self.reconciled,
            followed=len(self.followed),
            unfollowable=self.unfollowable,
            followed_without_outcome=sum(
                1 for r in self.followed if not self.finals_per_rebalance[r]
            ),
            followed_with_outcomes_twice=sum(
                1 for r in self.followed if self.finals_per_rebalance[r] > 1
            ),
            final_outcomes=dict(self.final_outcomes.most_common()),
            rebalances=sum(len(v) for v in self.rebalances.values()),
            crash_retries_in_window=self.harness.crash_retries_in_window,
            replayed=dict(Counter(r.kind for r in self.harness.replayed.values()).most_common()),
            replay_triggered=repeats.replay_triggered,
            replay_doubled=len(repeats.replay_doubled),
            replay_doubled_extra_rebalances=repeats.replay_extra,
            replay_doubled_guarded=repeats.replay_guarded,
            replay_doubled_by_kind=dict(repeats.replay_kinds.most_common()),
            replay_doubled_ids=repeats.replay_doubled,
            replay_unpreventable=repeats.replay_unpreventable,
            both_response_lost=both["lost"],
            both_whole_input=both["whole"],
            both_other=both["other"],
            lost_ids=lost,
            pending_ids=sorted(pending),
            doubled_ids=repeats.doubled,
            doubled_by_cause=dict(repeats.causes),
            faults=self.faults,
            invocations=invocations,
            final_failures=dict(self.final_failures.most_common()),
            dlq_messages=dict(dlq_kinds),
            notes=notes,
        )


def joined_deliveries(
    deliveries: Mapping[str, int],
    requests: Iterable[RecordedRequest],
    triggered: Iterable[Mapping[str, Any]],
    rebalances: Mapping[str, int],
) -> dict[str, int]:
    """Deliveries of a shared portfolio that Glider joined to another's rebalance in flight.

    v2 answers a trigger while the portfolio's rebalance is in flight with that rebalance's
    operation: satisfied, nothing new started. A delivery counts as joined only when both sides
    say so: the emulator accepted more triggers of the portfolio than it started rebalances
    (its collapses: each accepted trigger request, 2xx, of a portfolio with no scripted faults
    either started one or was collapsed), and the function's `triggered` lines give one
    rebalance id to more than one delivery, each line sent, not reconciled (a delivery that
    only looked and took another's rebalance for its own is case 1's loss, not a join). The
    fewer of the two, and at most all the portfolio's deliveries but one. On v1 there are no
    collapses: a second trigger starts a second rebalance (or meets the cooldown).

    `deliveries`: id -> deliveries; `rebalances`: id -> rebalances started (the function's)."""
    accepted: Counter[str] = Counter(
        str(r.portfolio_id)
        for r in requests
        if r.method == "POST"
        and r.portfolio_id in deliveries
        and r.status is not None
        and 200 <= r.status < 300
    )
    holders: dict[tuple[str, str], set[str]] = defaultdict(set)
    for line in triggered:
        portfolio_id = str(line.get("portfolio_id"))
        if portfolio_id in deliveries and not line.get("reconciled"):
            holders[portfolio_id, str(line.get("rebalance_id"))].add(str(line.get("delivery_id")))
    shared: Counter[str] = Counter()
    for (portfolio_id, _), delivery_ids in holders.items():
        shared[portfolio_id] += len(delivery_ids) - 1
    joined = {}
    for portfolio_id, count in deliveries.items():
        collapsed = accepted[portfolio_id] - rebalances.get(portfolio_id, 0)
        both = min(collapsed, shared[portfolio_id], count - 1)
        if both > 0:
            joined[portfolio_id] = both
    return joined


def announced_repeats(logs: Iterable[Mapping[str, Any]]) -> Counter[str]:
    """Repeats the function announced, per id: a repeat must be flagged by the outcome of the
    delivery that sent it. A `triggered` line's maybe_delivered_attempts counts earlier attempts
    (of this holder, or windows it inherited and could not settle) that may have started a
    rebalance besides the one it reports: each a possible repeat. A `failed` line's counts this
    holder's attempts that may have started one, and one of those would be the delivery's own
    rebalance, not a repeat: it announces one less. So the failure line of a lost attempt does
    not cover a silent repeat sent later for it (case 2: a list cut off taken as "nothing
    started"), nor does a WARNING that a trigger joined a rebalance in flight (case 5: a real
    repeat made to look joined by a clock)."""
    announced: Counter[str] = Counter()
    for line in logs:
        attempts = int(line.get("maybe_delivered_attempts") or 0)
        if line.get("outcome") == "triggered":
            announced[str(line.get("portfolio_id"))] += attempts
        elif line.get("outcome") == "failed":
            announced[str(line.get("portfolio_id"))] += max(0, attempts - 1)
    return announced
