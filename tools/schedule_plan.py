"""Schedules as code, decided without AWS: the schedules file read and checked (every problem
named file:schedule:field, all of them at once), and the plan that makes the stack's schedule
group match it (`glider-trigger schedules sync`)."""

from __future__ import annotations

import difflib
import json
from argparse import ArgumentTypeError
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Final, TypeVar

import yaml

from glider_trigger.domain.errors import InvalidPortfolioIdError
from glider_trigger.domain.trigger_input import (
    SKIP_SCHEDULE_VALIDATION,
    listed_ids,
    validate_portfolio_id,
)
from tools.common import MAX_PORTFOLIOS
from tools.schedule_spec import (
    DEFAULT_TIME_ZONE,
    MAX_WINDOW_MINUTES,
    RETRY_POLICY,
    expression,
    input_too_long,
    schedule_input,
    schedule_name,
    time_zone,
)

if TYPE_CHECKING:
    from mypy_boto3_scheduler.type_defs import GetScheduleOutputTypeDef

TOP: Final = "schedules"
# The file's fields, as the issue and docs/schedules.example.yaml spell them.
NAME: Final = "name"
EXPRESSION: Final = "expression"
TIMEZONE: Final = "timezone"
IDS: Final = "portfolioIds"
SKIP: Final = SKIP_SCHEDULE_VALIDATION
ENABLED: Final = "enabled"
WINDOW: Final = "flexibleWindowMinutes"
FIELDS: Final = (NAME, EXPRESSION, TIMEZONE, IDS, SKIP, ENABLED, WINDOW)
REQUIRED: Final = (NAME, EXPRESSION, IDS)
# What the plan compares beyond the file's fields: the target, as the stack defines it.
TARGET: Final = "target"
ROLE: Final = "role"
DEAD_LETTER: Final = "deadLetterQueue"
RETRIES: Final = "retryPolicy"
INPUT: Final = "input"
TEMPLATE_INPUT: Final = "the template's"  # the input's shape, beyond its ids and flag
OTHER_INPUT: Final = "another shape"

T = TypeVar("T")
Problem = Callable[[str, str], None]  # problem(field, message): one error of a schedule


class FileErrors(Exception):
    """Every problem of a schedules file, each naming file:schedule:field."""

    def __init__(self, errors: Sequence[str]) -> None:
        super().__init__("\n".join(errors))
        self.errors = list(errors)


class Action(StrEnum):
    CREATE = "create"
    UPDATE = "update"
    DELETE = "delete"
    UNCHANGED = "unchanged"
    KEEP = "keep"  # in the group, not in the file, and no --prune
    STACK = "stack"  # the template's RebalanceSchedule: CloudFormation's, never touched


CHANGING: Final = (Action.CREATE, Action.UPDATE, Action.DELETE)
DONE: Final = {Action.CREATE: "created", Action.UPDATE: "updated", Action.DELETE: "deleted"}


@dataclass(frozen=True)
class Desired:
    """One schedule the file declares, checked."""

    name: str
    expression: str
    timezone: str = DEFAULT_TIME_ZONE
    portfolio_ids: tuple[str, ...] = ()
    skip_schedule_validation: bool | None = None  # None: the stack's default at each run
    enabled: bool = True
    flexible_window_minutes: int = 0  # 0: off, as the template's

    @property
    def input(self) -> str:
        return schedule_input(self.portfolio_ids, skip=self.skip_schedule_validation)


@dataclass(frozen=True)
class Target:
    """Where the stack's schedules deliver: its function, with its role and DLQ."""

    function_arn: str
    role_arn: str
    dlq_arn: str


@dataclass(frozen=True)
class Change:
    field: str
    before: object  # None for a schedule to create
    after: object  # None for a schedule to delete


@dataclass(frozen=True)
class Step:
    action: Action
    name: str
    changes: tuple[Change, ...] = ()
    desired: Desired | None = None

    @property
    def done(self) -> str:
        """What applying it did, as the apply shows it."""
        return f"{DONE.get(self.action, self.action)} {self.name}"


@dataclass(frozen=True)
class Plan:
    steps: tuple[Step, ...]

    def enabling(self) -> list[str]:
        """The schedules applying this plan leaves enabled that it creates or changes."""
        return [
            step.name
            for step in self.steps
            if step.action in CHANGING and step.desired is not None and step.desired.enabled
        ]

    def count(self, action: Action) -> int:
        return sum(1 for step in self.steps if step.action is action)

    @property
    def nothing_to_do(self) -> bool:
        return not any(step.action in CHANGING for step in self.steps)


# --- the file --------------------------------------------------------------------------------


class _StrictLoader(yaml.SafeLoader):
    """yaml.safe_load's loader, refusing a key given twice in a mapping (PyYAML keeps the last
    one silently: a schedule's field must not be overwritten unseen)."""


def _mapping_without_duplicates(loader: yaml.SafeLoader, node: yaml.MappingNode) -> object:
    seen: set[object] = set()
    for key_node, _ in node.value:
        if isinstance(key_node, yaml.ScalarNode):
            key = loader.construct_object(key_node)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"the key {key!r} is given twice", key_node.start_mark
                )
            seen.add(key)
    return loader.construct_mapping(node)


_StrictLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping_without_duplicates
)


def load_file(path: Path, shown: str | None = None) -> list[Desired]:
    """The schedules `path` declares; FileErrors naming every problem."""
    label = shown or str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise FileErrors([f"{label}: cannot read it: {exc}"]) from exc
    return parse_schedules(text, label)


def parse_schedules(text: str, file: str) -> list[Desired]:
    try:
        document: object = yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader
    except yaml.YAMLError as exc:
        raise FileErrors([f"{file}: not valid YAML: {' '.join(str(exc).split())}"]) from exc
    if not isinstance(document, dict) or TOP not in document:
        raise FileErrors([f"{file}: expected a mapping with `{TOP}:` (a list of schedules)"])
    errors = [f"{file}:{key}: unknown top-level key" for key in document if key != TOP]
    entries = document[TOP]
    if not isinstance(entries, list):
        raise FileErrors([*errors, f"{file}:{TOP}: must be a list (`[]` for none)"])
    desired: list[Desired] = []
    first_seen: dict[str, int] = {}
    for number, entry in enumerate(entries, start=1):
        schedule = _schedule(entry, number, file, errors)
        if schedule is None:
            continue
        if (first := first_seen.get(schedule.name)) is not None:
            errors.append(
                f"{file}:{schedule.name}:{NAME}: named twice (schedules #{first} and #{number})"
            )
            continue
        first_seen[schedule.name] = number
        desired.append(schedule)
    if errors:
        raise FileErrors(errors)
    return desired


def _schedule(entry: object, number: int, file: str, errors: list[str]) -> Desired | None:
    """One entry checked, its problems added to `errors` (None when it has any)."""
    if not isinstance(entry, dict):
        errors.append(f"{file}:#{number}: a schedule is a mapping of {', '.join(FIELDS)}")
        return None
    raw_name = entry.get(NAME)
    label = raw_name if isinstance(raw_name, str) and raw_name else f"#{number}"
    before = len(errors)

    def problem(field: str, message: str) -> None:
        errors.append(f"{file}:{label}:{field}: {message}")

    for key in entry:
        if key not in FIELDS:
            close = difflib.get_close_matches(str(key), FIELDS, n=1)
            hint = f" (did you mean {close[0]}?)" if close else f" (one of: {', '.join(FIELDS)})"
            problem(str(key), f"unknown field{hint}")
    for key in REQUIRED:
        if key not in entry:
            problem(key, "missing (required)")
    name = _checked(entry, NAME, str, schedule_name, problem)
    expr = _checked(entry, EXPRESSION, str, expression, problem)
    zone = _checked(entry, TIMEZONE, str, time_zone, problem)
    skip = _typed(entry, SKIP, bool, problem)
    enabled = _typed(entry, ENABLED, bool, problem)
    window = _window(entry, problem)
    ids = _ids(entry, problem)
    if len(errors) > before or name is None or expr is None:
        return None
    schedule = Desired(
        name=name,
        expression=expr,
        timezone=zone or DEFAULT_TIME_ZONE,
        portfolio_ids=ids,
        skip_schedule_validation=skip,
        enabled=True if enabled is None else enabled,
        flexible_window_minutes=window or 0,
    )
    if too_long := input_too_long(schedule.input):
        problem(IDS, too_long)
        return None
    return schedule


def _type_name(kind: type) -> str:
    return {str: "a string", bool: "true or false", int: "a whole number", list: "a list"}[kind]


def _found(value: object) -> str:
    return "nothing" if value is None else f"{type(value).__name__} {value!r}"


def _typed(entry: dict[object, object], key: str, kind: type[T], problem: Problem) -> T | None:
    """entry[key] when it has this type (bool is no int here), else None (and a problem)."""
    if key not in entry:
        return None
    value = entry[key]
    if isinstance(value, kind) and not (kind is int and isinstance(value, bool)):
        return value
    problem(key, f"must be {_type_name(kind)}, got {_found(value)}")
    return None


def _checked(
    entry: dict[object, object],
    key: str,
    kind: type[str],
    check: Callable[[str], str],
    problem: Problem,
) -> str | None:
    value = _typed(entry, key, kind, problem)
    if value is None:
        return None
    try:
        return check(value)
    except ArgumentTypeError as exc:
        problem(key, str(exc))
        return None


def _window(entry: dict[object, object], problem: Problem) -> int | None:
    minutes = _typed(entry, WINDOW, int, problem)
    if minutes is not None and not 0 <= minutes <= MAX_WINDOW_MINUTES:
        problem(WINDOW, f"must be 0 (off) to {MAX_WINDOW_MINUTES}, got {minutes}")
        return None
    return minutes


def _ids(entry: dict[object, object], problem: Problem) -> tuple[str, ...]:
    values = _typed(entry, IDS, list, problem)
    if values is None:
        return ()
    if not values:
        problem(IDS, "names no portfolio")
    if len(values) > MAX_PORTFOLIOS:
        problem(IDS, f"at most {MAX_PORTFOLIOS} portfolios, got {len(values)}")
    ids: list[str] = []
    for value in values:
        try:
            validate_portfolio_id(value)
        except InvalidPortfolioIdError as exc:
            hint = " (quote it)" if isinstance(value, int | float) else ""
            problem(IDS, f"{exc}{hint}")
            continue
        if value in ids:
            problem(IDS, f"{value!r} is listed twice")
            continue
        ids.append(value)
    return tuple(ids)


# --- the plan --------------------------------------------------------------------------------


def plan(
    desired: Sequence[Desired],
    live: Mapping[str, GetScheduleOutputTypeDef],
    *,
    target: Target,
    own: str | None,
    prune: bool,
    file: str,
) -> Plan:
    """What makes the group (`live`: its schedules by name) match the file: the file's
    schedules in its order, then the group's others by name. The template's own schedule
    (`own`) is never changed: a file that names it is refused."""
    if own is not None and any(schedule.name == own for schedule in desired):
        raise FileErrors(
            [
                f"{file}:{own}:{NAME}: is the template's own schedule (RebalanceSchedule), "
                "managed by the stack: change its parameters (ScheduleExpression, "
                "ScheduleTimezone, SchedulePortfolioIds, ScheduleState) instead"
            ]
        )
    steps = [_step(schedule, live.get(schedule.name), target) for schedule in desired]
    named = {schedule.name for schedule in desired}
    for name in sorted(set(live) - named):
        if name == own:
            steps.append(Step(Action.STACK, name))
        elif prune:
            gone = view_of_live(live[name])
            changes = [Change(key, gone[key], None) for key in (EXPRESSION, TIMEZONE, IDS)]
            steps.append(Step(Action.DELETE, name, tuple(changes)))
        else:
            steps.append(Step(Action.KEEP, name))
    return Plan(tuple(steps))


def _step(schedule: Desired, found: GetScheduleOutputTypeDef | None, target: Target) -> Step:
    wanted = view_of_desired(schedule, target)
    if found is None:
        changes = [Change(key, None, wanted[key]) for key in FIELDS[1:] if key in wanted]
        return Step(Action.CREATE, schedule.name, tuple(changes), schedule)
    current = view_of_live(found)
    changes = [
        Change(key, current.get(key), value)
        for key, value in wanted.items()
        if current.get(key) != value
    ]
    action = Action.UPDATE if changes else Action.UNCHANGED
    return Step(action, schedule.name, tuple(changes), schedule)


def view_of_desired(schedule: Desired, target: Target) -> dict[str, object]:
    """What the plan compares, as the file and the stack want it. Portfolio ids compare as a
    set (sorted): their order changes nothing a run triggers."""
    return {
        EXPRESSION: schedule.expression,
        TIMEZONE: schedule.timezone,
        IDS: sorted(schedule.portfolio_ids),
        SKIP: schedule.skip_schedule_validation,
        ENABLED: schedule.enabled,
        WINDOW: schedule.flexible_window_minutes,
        TARGET: target.function_arn,
        ROLE: target.role_arn,
        DEAD_LETTER: target.dlq_arn,
        RETRIES: dict(RETRY_POLICY),
        INPUT: TEMPLATE_INPUT,
    }


def view_of_live(schedule: GetScheduleOutputTypeDef) -> dict[str, object]:
    """The same view of a schedule as GetSchedule returns it."""
    found = schedule.get("Target", {})
    window = schedule.get("FlexibleTimeWindow", {})
    minutes = window.get("MaximumWindowInMinutes", 0) if window.get("Mode") == "FLEXIBLE" else 0
    ids, skip, shape = _read_input(found.get("Input", ""))
    policy = found.get("RetryPolicy", {})
    return {
        EXPRESSION: schedule.get("ScheduleExpression"),
        TIMEZONE: schedule.get("ScheduleExpressionTimezone") or DEFAULT_TIME_ZONE,
        IDS: ids,
        SKIP: skip,
        ENABLED: schedule.get("State") == "ENABLED",
        WINDOW: minutes,
        TARGET: found.get("Arn"),
        ROLE: found.get("RoleArn"),
        DEAD_LETTER: found.get("DeadLetterConfig", {}).get("Arn"),
        RETRIES: {key: policy.get(key) for key in RETRY_POLICY},
        INPUT: shape,
    }


def _read_input(text: str) -> tuple[object, object, str]:
    """The ids (sorted), the flag and whether the rest is the template's shape."""
    try:
        payload: object = json.loads(text)
    except (ValueError, RecursionError):
        return None, None, OTHER_INPUT
    ids = listed_ids(payload)
    if not all(isinstance(i, str) for i in ids):
        return ids, None, OTHER_INPUT
    texts = sorted(str(i) for i in ids)
    skip = payload.get(SKIP) if isinstance(payload, dict) else None
    flag = skip if isinstance(skip, bool) else None
    rebuilt = json.loads(schedule_input([str(i) for i in ids], skip=flag))
    return texts, skip, TEMPLATE_INPUT if rebuilt == payload else OTHER_INPUT


# --- showing it ------------------------------------------------------------------------------


def shown_value(value: object, field: str = "") -> str:
    if value is None and field == SKIP:
        return "default"  # the input leaves it to the stack's DefaultSkipScheduleValidation
    if value is None:
        return "-"
    if isinstance(value, list):
        return ",".join(str(item) for item in value) or "(none)"
    if isinstance(value, bool):
        return json.dumps(value)
    if isinstance(value, dict):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


def changes_cell(step: Step) -> str:
    """The CHANGES column: what a schedule gets, loses or changes."""
    if step.action is Action.STACK:
        return "managed by the stack (template.yaml's RebalanceSchedule): never changed here"
    if step.action is Action.KEEP:
        return "not in the file: kept (--prune deletes it)"
    if step.action is Action.CREATE:
        return "; ".join(
            f"{c.field}={shown_value(c.after, c.field)}"
            for c in step.changes
            if c.field != SKIP or c.after is not None
        )
    if step.action is Action.DELETE:
        return "; ".join(f"{c.field}={shown_value(c.before, c.field)}" for c in step.changes)
    return "; ".join(
        f"{c.field}: {shown_value(c.before, c.field)} -> {shown_value(c.after, c.field)}"
        for c in step.changes
    )


def plan_json(steps: Sequence[Step]) -> list[dict[str, object]]:
    return [
        {
            "action": step.action.value,
            "name": step.name,
            "changes": [{"field": c.field, "from": c.before, "to": c.after} for c in step.changes],
        }
        for step in steps
    ]
