"""Docs that cannot drift: README.md and docs/*.md checked against what they describe.

- the configuration table against `Settings.from_environment` (which variables it reads, their
  defaults, the numeric ranges it accepts: both bounds in, just outside out), and the variables
  the template leaves at their defaults;
- the Parameters table against template.yaml's `Parameters` (names, defaults, ranges), and the
  outputs, alarms (each with its runbook entry), retained resources and `samconfig.toml`
  environments the pages describe;
- the metrics table, and the cost section's counts of alarms and metrics, against the template
  and the function's telemetry;
- every `make <target>` named in the docs against the Makefile, and every documented target
  (a `## help` comment) against the docs;
- every relative link and `#anchor` against the files and headings it points at (GitHub's slugs);
- the README's size, and that it links every page and every page links back.

Fast and offline: it reads files and calls `Settings.from_environment` on plain mappings.
"""

from __future__ import annotations

import dataclasses
import importlib
import re
import shlex
import tomllib
from collections.abc import Iterator, Mapping
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from cfnlint.decode import cfn_yaml

from glider_trigger.domain.errors import ConfigurationError
from glider_trigger.outbound import telemetry
from glider_trigger.settings import GUARD_MARGIN_SECONDS, Settings

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
DOCS = ROOT / "docs"
PAGES = [README, *sorted(DOCS.glob("*.md"))]
README_MAX_BYTES = 15_000

REQUIRED = {
    "GLIDER_API_KEY_SECRET_ID": "glider/api-key",
    "DLQ_URL": "https://sqs.us-east-1.amazonaws.com/123456789012/dlq",
    "WORK_QUEUE_URL": "https://sqs.us-east-1.amazonaws.com/123456789012/work",
    "IDEMPOTENCY_TABLE_NAME": "glider-trigger-idempotency",
    "MAX_RECEIVE_COUNT": "5",
    "FOLLOW_UP_QUEUE_URL": "https://sqs.us-east-1.amazonaws.com/123456789012/follow-up",
}
# Variables in the configuration table that Settings does not read: Powertools reads them
# (app.py passes the first two to Logger and Metrics; Logger reads the log level itself).
NOT_SETTINGS = {
    "POWERTOOLS_SERVICE_NAME": "Powertools Logger's service and the metrics' `service` dimension",
    "POWERTOOLS_METRICS_NAMESPACE": "Powertools Metrics' namespace",
    "POWERTOOLS_LOG_LEVEL": "Powertools Logger's level",
}
# Room for the guard's window (IDEMPOTENCY_TTL_SECONDS >= both retentions + a day), so that a
# value is judged by its own range: the smallest retentions and the largest TTL.
GUARD_ROOM = {
    "WORK_QUEUE_RETENTION_SECONDS": "60",
    "DLQ_RETENTION_SECONDS": "60",
    "IDEMPOTENCY_TTL_SECONDS": "31536000",
}
# A sample of each kind of value a variable without a default takes.
SAMPLE_URL = "https://sqs.us-east-1.amazonaws.com/123456789012/sample"
SAMPLE_NAME = "sample-name"

_RANGE = re.compile(r"(?P<low>\d+(?:\.\d+)?)-(?P<high>\d+(?:\.\d+)?)(?P<integer> \(integer\))?")
_NUMERIC = re.compile(r"must be a (?P<kind>int|float)\b")


# ---------------------------------------------------------------- Markdown, read as GitHub does


def page(name: str) -> str:
    return (ROOT / name).read_text(encoding="utf-8")


def prose_lines(text: str) -> Iterator[str]:
    """The lines outside fenced code blocks."""
    fenced = False
    for line in text.splitlines():
        if line.lstrip().startswith("```"):
            fenced = not fenced
            continue
        if not fenced:
            yield line


def code(text: str) -> Iterator[str]:
    """The contents of fenced code blocks and inline code spans."""
    fenced = False
    for line in text.splitlines():
        if line.lstrip().startswith("```"):
            fenced = not fenced
            continue
        if fenced:
            yield line
        else:
            yield from re.findall(r"`([^`]+)`", line)


def without_code_spans(line: str) -> str:
    return re.sub(r"`[^`]*`", "", line)


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: its text lower-case, punctuation dropped except '-' and
    '_', spaces to '-'. (Markdown marks such as backticks are punctuation: dropped too.)"""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


@cache
def anchors(path: Path) -> frozenset[str]:
    """The anchors of a Markdown file: one per heading, a repeated one suffixed -1, -2, ...;
    and any explicit <a id/name="...">."""
    text = path.read_text(encoding="utf-8")
    found: set[str] = set()
    seen: dict[str, int] = {}
    for line in prose_lines(text):
        if heading := re.match(r"#{1,6} (.+?)\s*#*\s*$", line):
            base = slug(heading.group(1))
            count = seen.get(base, 0)
            seen[base] = count + 1
            found.add(base if count == 0 else f"{base}-{count}")
    found.update(re.findall(r"<a (?:id|name)=\"([^\"]+)\"", text))
    return frozenset(found)


def links(text: str) -> Iterator[str]:
    """The targets of inline links and images outside code."""
    for line in prose_lines(text):
        yield from re.findall(
            r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)", without_code_spans(line)
        )


def section(text: str, heading: str) -> list[str]:
    """The lines under `heading` (outside code) up to the next heading of the same or a higher
    level."""
    lines = list(prose_lines(text))
    for index, line in enumerate(lines):
        match = re.match(r"(#{1,6}) (.+)$", line)
        if match and match.group(2).strip() == heading:
            level = len(match.group(1))
            body = []
            for following in lines[index + 1 :]:
                nested = re.match(r"(#{1,6}) ", following)
                if nested and len(nested.group(1)) <= level:
                    break
                body.append(following)
            return body
    raise AssertionError(f"no heading {heading!r}")


def cells(row: str) -> list[str]:
    """A table row's cells; a '|' inside a code span does not split."""
    parts, current, in_code = [], "", False
    for char in row.strip().strip("|"):
        if char == "`":
            in_code = not in_code
        if char == "|" and not in_code:
            parts.append(current.strip())
            current = ""
        else:
            current += char
    parts.append(current.strip())
    return parts


def table(text: str, heading: str) -> list[dict[str, str]]:
    """The first table under `heading`, one dict per row keyed by the header's cells."""
    lines = section(text, heading)
    start = next((i for i, line in enumerate(lines) if line.startswith("|")), None)
    assert start is not None, f"no table under {heading!r}"
    block = []
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        block.append(line)
    header, _separator, *body = block
    names = cells(header)
    return [dict(zip(names, cells(row), strict=True)) for row in body]


def plain(cell: str) -> str:
    """A cell's value without the code span around it."""
    return cell.strip().strip("`")


def first_code(cell: str) -> str:
    """The first code span of a cell (a name), else the cell."""
    match = re.search(r"`([^`]+)`", cell)
    return match.group(1) if match else cell.strip()


# ---------------------------------------------------------------- what the docs describe


@cache
def template() -> dict[str, Any]:
    loaded: dict[str, Any] = cfn_yaml.load(str(ROOT / "template.yaml"))
    return loaded


@cache
def makefile_targets() -> tuple[frozenset[str], frozenset[str]]:
    """(every target the Makefile defines, the targets with a `## help` comment)."""
    targets, documented = set(), set()
    for line in (ROOT / "Makefile").read_text(encoding="utf-8").splitlines():
        if match := re.match(r"([a-z][a-z0-9_-]*):(?!=)", line):
            targets.add(match.group(1))
            if "## " in line:
                documented.add(match.group(1))
    return frozenset(targets), frozenset(documented)


class RecordingEnvironment(Mapping[str, str]):
    """An environment that records every variable asked for."""

    def __init__(self, values: Mapping[str, str]) -> None:
        self._values = dict(values)
        self.asked: set[str] = set()

    def __getitem__(self, name: str) -> str:
        self.asked.add(name)
        return self._values[name]

    def get(self, name: str, default: Any = None) -> Any:
        self.asked.add(name)
        return self._values.get(name, default)

    def __contains__(self, name: object) -> bool:
        self.asked.add(str(name))
        return name in self._values

    def __iter__(self) -> Iterator[str]:
        raise AssertionError("Settings must ask for each variable by name, or this cannot tell")

    def __len__(self) -> int:
        return len(self._values)


def variables_the_function_reads() -> set[str]:
    environment = RecordingEnvironment(REQUIRED)
    Settings.from_environment(environment)
    return environment.asked


def refusal(environment: Mapping[str, str]) -> str | None:
    """Why Settings refuses this environment, or None."""
    try:
        Settings.from_environment(environment)
    except ConfigurationError as exc:
        return str(exc)
    return None


def configuration_table() -> dict[str, dict[str, str]]:
    rows = table(page("docs/configuration.md"), "Environment variables")
    return {plain(row["Variable"]): row for row in rows}


def parameters_table() -> dict[str, dict[str, str]]:
    rows = table(page("docs/configuration.md"), "Parameters")
    names = [plain(row["Parameter"]) for row in rows]
    assert len(names) == len(set(names)), "a parameter documented twice"
    return dict(zip(names, rows, strict=True))


# ---------------------------------------------------------------- the configuration table


def test_the_configuration_table_lists_exactly_the_variables_the_function_reads() -> None:
    documented = set(configuration_table())
    read = variables_the_function_reads()

    assert read - documented == set(), "read by Settings, missing from the table"
    assert documented - read - set(NOT_SETTINGS) == set(), "in the table, not read by Settings"
    assert set(NOT_SETTINGS) <= documented, "an exception that is no longer documented: drop it"
    assert not set(NOT_SETTINGS) & read, "Settings reads it now: drop it from the exceptions"


def test_a_documented_default_is_the_one_settings_uses() -> None:
    defaults = Settings.from_environment(REQUIRED)
    problems = []
    for variable, row in configuration_table().items():
        if variable in NOT_SETTINGS:
            continue
        default = plain(row["Default"])
        if default == "required":
            without = {k: v for k, v in REQUIRED.items() if k != variable}
            message = refusal(without)
            if message is None or variable not in message:
                problems.append(f"{variable}: documented required, but Settings starts without it")
        elif default == "unset":
            # Without it, the field it sets is None (FOLLOW_OUTCOMES off: its queue optional).
            base = {k: v for k, v in REQUIRED.items() if k != variable} | {"FOLLOW_OUTCOMES": "0"}
            sample = SAMPLE_URL if "URL" in row["Allowed"] else SAMPLE_NAME
            if match := _RANGE.match(plain(row["Allowed"])):
                sample = match.group("low")
            if (message := refusal(base | {variable: sample})) is not None:
                problems.append(f"{variable}: cannot tell whether it has a default: {message}")
                continue
            unset = dataclasses.asdict(Settings.from_environment(base))
            given = dataclasses.asdict(Settings.from_environment(base | {variable: sample}))
            changed = {field for field in unset if unset[field] != given[field]}
            if not changed or any(unset[field] is not None for field in changed):
                problems.append(f"{variable}: documented unset, but Settings has a default")
        elif (message := refusal(REQUIRED | {variable: default})) is not None:
            problems.append(f"{variable}: the documented default {default!r} is refused: {message}")
        elif Settings.from_environment(REQUIRED | {variable: default}) != defaults:
            problems.append(f"{variable}: documented default {default!r} is not Settings' default")
    assert not problems, "\n".join(problems)


def test_a_documented_range_is_the_one_settings_accepts() -> None:
    problems = []
    for variable, row in configuration_table().items():
        if variable in NOT_SETTINGS:
            continue
        room = {k: v for k, v in GUARD_ROOM.items() if k != variable}
        message = refusal(REQUIRED | room | {variable: "not-a-number"}) or ""
        numeric = _NUMERIC.search(message) if message.startswith(variable) else None
        documented = _RANGE.match(plain(row["Allowed"]))
        if numeric is None:
            if documented:
                problems.append(f"{variable}: a range is documented, but it is not a number")
            continue
        if documented is None:
            problems.append(f"{variable}: a number, but no range is documented")
            continue
        integer = numeric.group("kind") == "int"
        if integer != bool(documented.group("integer")):
            problems.append(f"{variable}: '(integer)' must be documented exactly for integers")
        kind = int if integer else float
        low, high = kind(documented.group("low")), kind(documented.group("high"))
        step_low = 1 if integer else max(abs(low) * 1e-3, 1e-12)
        step_high = 1 if integer else max(abs(high) * 1e-3, 1e-12)
        for accepted in (low, high):
            if refusal(REQUIRED | room | {variable: str(accepted)}) is not None:
                problems.append(f"{variable}: the documented bound {accepted} is refused")
        for refused in (low - step_low, high + step_high):
            if refusal(REQUIRED | room | {variable: str(refused)}) is None:
                problems.append(f"{variable}: {refused}, outside the documented range, is accepted")
    assert not problems, "\n".join(problems)


def test_the_variables_the_template_leaves_at_their_defaults_are_named() -> None:
    lines = section(page("docs/configuration.md"), "Environment variables")
    start = next(i for i, line in enumerate(lines) if line.startswith("Not set by the template"))
    paragraph = " ".join(lines[start : lines.index("", start)])
    named = set(re.findall(r"`([A-Z0-9_]+)`", paragraph))
    environment = template()["Resources"]["TriggerFunction"]["Properties"]["Environment"]
    assert named == set(configuration_table()) - set(environment["Variables"])


def test_the_guard_window_rule_is_documented_with_its_margin() -> None:
    allowed = configuration_table()["IDEMPOTENCY_TTL_SECONDS"]["Allowed"]
    assert f"WORK_QUEUE_RETENTION_SECONDS + DLQ_RETENTION_SECONDS + {GUARD_MARGIN_SECONDS}" in (
        allowed
    )


# ---------------------------------------------------------------- the template


def test_the_parameters_table_is_the_templates() -> None:
    parameters = template()["Parameters"]
    documented = parameters_table()
    assert set(documented) == set(parameters)

    problems = []
    for name, row in documented.items():
        parameter = parameters[name]
        default = plain(row["Default"])
        if "Default" not in parameter:
            expected = "(none, required)"
        elif parameter["Default"] == "":
            expected = "empty"
        else:
            expected = str(parameter["Default"])
        if default != expected:
            problems.append(f"{name}: documented default {default!r}, the template's {expected!r}")
        if "MinValue" in parameter:
            stated = re.search(r"\((\d+)-(\d+)\b", row["Meaning"])
            bounds = (parameter["MinValue"], parameter["MaxValue"])
            if stated is None or (int(stated.group(1)), int(stated.group(2))) != bounds:
                problems.append(f"{name}: the meaning must state its range as ({bounds[0]}-...)")
    assert not problems, "\n".join(problems)


def test_the_outputs_table_is_the_templates() -> None:
    rows = table(page("docs/configuration.md"), "Outputs")
    assert {plain(row["Output"]) for row in rows} == set(template()["Outputs"])


def test_the_samconfig_table_is_samconfig_toml() -> None:
    config = tomllib.loads((ROOT / "samconfig.toml").read_text(encoding="utf-8"))
    rows = table(page("docs/configuration.md"), "`samconfig.toml`: environments")
    documented = {plain(row["Environment"]): row for row in rows}
    environments = {name for name, value in config.items() if isinstance(value, dict)}
    assert set(documented) == environments

    for name, row in documented.items():
        deploy = config[name]["deploy"]["parameters"]
        assert plain(row["Stack"]) == config[name]["global"]["parameters"]["stack_name"], name
        assert plain(row["`parameter_overrides`"]) == deploy["parameter_overrides"], name
        expected = "confirmed" if deploy["confirm_changeset"] else "not asked"
        assert row["Changeset"] == expected, name


def alarms() -> dict[str, dict[str, Any]]:
    resources = template()["Resources"]
    return {
        name: resource
        for name, resource in resources.items()
        if resource["Type"] == "AWS::CloudWatch::Alarm"
    }


def test_every_alarm_is_described_and_has_a_runbook_entry() -> None:
    rows = table(page("docs/deployment.md"), "Alarms")
    described = {plain(row["Alarm"]): plain(row["Suffix"]) for row in rows}
    suffixes = {
        name: alarm["Properties"]["AlarmName"]["Fn::Sub"].removeprefix("${AWS::StackName}-")
        for name, alarm in alarms().items()
    }
    assert described == suffixes

    runbook = anchors(DOCS / "operations.md")
    missing = [name for name in alarms() if slug(name.removesuffix("Alarm")) not in runbook]
    assert missing == [], "an alarm without a runbook heading in docs/operations.md"


def metric_names() -> set[str]:
    """The metrics the function emits itself (Powertools adds ColdStart)."""
    return {
        value
        for name, value in vars(telemetry).items()
        if name.startswith("METRIC_") and isinstance(value, str)
    } | set(telemetry.METRIC_OUTCOMES.values())


def test_the_metrics_table_names_every_metric_the_function_emits() -> None:
    rows = table(page("docs/operations.md"), "Metrics")
    assert {plain(row["Metric"]) for row in rows} == metric_names() | {"ColdStart"}


def test_the_cost_counts_what_the_template_and_the_function_create() -> None:
    rows = table(page("docs/deployment.md"), "Before any traffic")
    counts = {row["Item"].split(" (")[0]: row["Count"] for row in rows}
    assert counts["CloudWatch alarms"] == str(len(alarms()))
    assert counts["CloudWatch custom metrics"].startswith(f"{len(metric_names())} names")


def test_teardown_names_what_the_stack_leaves_behind() -> None:
    rows = table(page("docs/deployment.md"), "What is left behind")
    resources = template()["Resources"]
    named = {
        first_code(row["Left behind"]): row
        for row in rows
        if first_code(row["Left behind"]) in resources
    }
    retained = {
        name for name, resource in resources.items() if resource.get("DeletionPolicy") == "Retain"
    }
    assert retained <= set(named), "a resource the stack retains is missing from the teardown"
    for name, row in named.items():
        resource = resources[name]
        if name in retained:
            continue
        assert resource["Type"] == "AWS::KMS::Key", f"{name} is deleted with the stack"
        days = resource["Properties"]["PendingWindowInDays"]
        assert f"{days} days" in row["Why"], f"{name}: its waiting period is {days} days"


# ---------------------------------------------------------------- make targets


def test_every_make_target_named_exists_and_every_documented_one_is_named() -> None:
    targets, documented = makefile_targets()
    named: dict[str, set[str]] = {}
    for path in PAGES:
        for snippet in code(path.read_text(encoding="utf-8")):
            for target in re.findall(r"(?:^|[\s;&|(])make\s+([a-z][a-z0-9_-]*)", snippet):
                named.setdefault(target, set()).add(path.name)

    unknown = {target: sorted(where) for target, where in named.items() if target not in targets}
    assert unknown == {}, "named in the docs, not a Makefile target"
    assert sorted(documented - set(named)) == [], "a target with a ## help comment nobody documents"


# ---------------------------------------------------------------- links


def test_github_slugs() -> None:
    assert slug("Nothing doubled: the idempotency guard") == "nothing-doubled-the-idempotency-guard"
    assert slug("`samconfig.toml`: environments") == "samconfigtoml-environments"
    assert slug("The guard's window") == "the-guards-window"
    assert slug("`make security` and `make audit`") == "make-security-and-make-audit"
    assert slug("Glider v1 and v2: what differs") == "glider-v1-and-v2-what-differs"


@pytest.mark.parametrize("path", PAGES, ids=lambda path: path.name)
def test_every_relative_link_and_anchor_resolves(path: Path) -> None:
    broken = []
    for target in links(path.read_text(encoding="utf-8")):
        if re.match(r"[a-z][a-z0-9+.-]*:", target):  # https:, mailto:
            continue
        file_part, _, anchor = target.partition("#")
        resolved = (path.parent / file_part).resolve() if file_part else path
        if not resolved.exists():
            broken.append(f"{target}: no such file")
        elif anchor and resolved.suffix == ".md" and anchor not in anchors(resolved):
            broken.append(f"{target}: no such heading in {resolved.relative_to(ROOT)}")
    assert not broken, "\n".join(broken)


# ---------------------------------------------------------------- the README and the pages


def test_the_readme_stays_short() -> None:
    assert README.stat().st_size <= README_MAX_BYTES


def test_the_readme_links_every_page_and_every_page_links_back() -> None:
    linked = {
        (README.parent / target.partition("#")[0]).resolve()
        for target in links(README.read_text(encoding="utf-8"))
    }
    assert [p.name for p in PAGES[1:] if p.resolve() not in linked] == [], "not linked by README"

    for path in PAGES[1:]:
        head = "\n".join(path.read_text(encoding="utf-8").splitlines()[:5])
        assert "](../README.md)" in head, f"{path.name}: no link back to the README at the top"


def recorded_commands() -> list[list[str]]:
    """Every `$ glider-trigger ...` line of the operations page's recorded session."""
    text = (DOCS / "operations.md").read_text(encoding="utf-8")
    return [shlex.split(line[2:]) for line in text.splitlines() if line.startswith("$ glider-")]


def test_every_command_of_the_recorded_session_parses_with_its_tools_own_parser() -> None:
    from tools import cli, pause

    commands = recorded_commands()
    assert {argv[1] for argv in commands} == set(cli.SUBCOMMANDS), "a command never shown"
    for argv in commands:
        assert argv[0] == "glider-trigger", argv
        command, rest = argv[1], argv[2:]
        module = importlib.import_module(cli.SUBCOMMANDS[command][0])
        parser = pause.build_parser(command) if module is pause else module.build_parser()
        parser.parse_args(rest)  # exits (a failure here) on an option the tool no longer takes
