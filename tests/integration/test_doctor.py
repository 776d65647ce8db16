"""tools/doctor.py against the moto server and the Glider emulator (v1 and v2): each way a key,
its secret, a portfolio, the trigger route, a queue or the table can be wrong, reported as one
row; the canary key never printed; nothing sent to Glider but GETs and the one POST that proves
the trigger route, for a portfolio id that cannot exist; nothing ever triggered."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

import tools.doctor
from local.fixtures.glider_emulator import Fault, GliderEmulator
from local.fixtures.stack import Deployment, MotoServer, deploy
from tests.conftest import API_KEY
from tools.doctor import ROUTE_CHECK_ID, main

REPO = Path(__file__).resolve().parents[2]
PORTFOLIO = "port_abc123"
FULL_SCOPES = ("portfolios:read", "portfolios:write")
ROUTE_CHECK = {
    "v1": f"POST /v1/portfolio/{ROUTE_CHECK_ID}/rebalance/schedule/trigger",
    "v2": f"POST /v2/portfolios/{ROUTE_CHECK_ID}/rebalance",
}
MISSING_WRITE = (
    "ask Glider for portfolios:write (a standard, self-service scope): without it every "
    "trigger is refused with 403 API_104"
)
# The function's variables the doctor reads; each test sets them from its deployment.
FUNCTION_VARIABLES = (
    "GLIDER_API_KEY_SECRET_ID",
    "GLIDER_API_BASE_URL",
    "GLIDER_API_VERSION",
    "WORK_QUEUE_URL",
    "DLQ_URL",
    "FOLLOW_UP_QUEUE_URL",
    "FOLLOW_OUTCOMES",
    "IDEMPOTENCY_TABLE_NAME",
    "MAX_RECEIVE_COUNT",
)


@dataclass
class Report:
    status: int
    out: str
    err: str

    @property
    def rows(self) -> dict[str, tuple[str, str]]:
        """check -> (result, detail), from the --json document."""
        document = json.loads(self.out)
        return {c["check"]: (c["result"], c["detail"]) for c in document["checks"]}

    def result(self, check: str) -> str:
        return self.rows[check][0]

    def detail(self, check: str) -> str:
        return self.rows[check][1]


@pytest.fixture
def glider() -> Iterator[GliderEmulator]:
    """An emulator that accepts no key until the test adds one (v1-only or v2-only)."""
    with GliderEmulator() as emulator:
        emulator.add_portfolio(PORTFOLIO)
        yield emulator


@pytest.fixture
def stack(moto_server: MotoServer, glider: GliderEmulator) -> Deployment:
    return deploy(moto_server, glider, api_key=API_KEY)


class Doctor:
    """Runs `main` in-process with the deployment's environment; checks every run for the
    canary key in its output, for any request to Glider but a GET or the route check's POST for
    the id that cannot exist, and for any rebalance."""

    def __init__(
        self,
        stack: Deployment,
        glider: GliderEmulator,
        monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        self.stack = stack
        self.glider = glider
        self._monkeypatch = monkeypatch
        self._capsys = capsys

    def environment(self, version: str, **overrides: str) -> None:
        for name in FUNCTION_VARIABLES:
            self._monkeypatch.delenv(name, raising=False)
        for name, value in self.stack.environment(GLIDER_API_VERSION=version, **overrides).items():
            self._monkeypatch.setenv(name, value)

    def run(self, *argv: str) -> Report:
        status = main(list(argv))
        captured = self._capsys.readouterr()
        report = Report(status, captured.out, captured.err)
        assert API_KEY not in report.out
        assert API_KEY not in report.err
        for posted in (r for r in self.glider.requests if r.method != "GET"):
            assert posted.method == "POST"
            assert ROUTE_CHECK_ID in posted.path.split("/")  # never a real portfolio
        assert self.glider.rebalances == []
        return report

    def check(self, version: str, *argv: str, **overrides: str) -> Report:
        """--from-env --json with the deployment's environment on `version`."""
        self.environment(version, **overrides)
        return self.run("--from-env", "--json", *argv)


@pytest.fixture
def doctor(
    stack: Deployment,
    glider: GliderEmulator,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> Doctor:
    return Doctor(stack, glider, monkeypatch, capsys)


def glider_paths(glider: GliderEmulator) -> list[str]:
    return [f"{r.method} {r.path}" for r in glider.requests]


# --- v2 --------------------------------------------------------------------------------------


def test_v2_with_a_full_key_passes_every_check(doctor: Doctor, glider: GliderEmulator) -> None:
    glider.add_v2_key(API_KEY, scopes=FULL_SCOPES, tenant_name="Acme Treasury")
    doctor.environment("v2")

    report = doctor.run("--from-env", "--portfolio-id", PORTFOLIO)

    assert report.status == 0
    lines = report.out.splitlines()
    assert lines[0].split() == ["CHECK", "RESULT", "DETAIL"]
    rows = {
        name: rest for name, *rest in (re.split(r" {2,}", line, maxsplit=2) for line in lines[1:-2])
    }
    assert list(rows) == [
        "configuration",
        "secret",
        "glider key",
        "scope portfolios:write",
        "scope portfolios:read",
        f"portfolio {PORTFOLIO}",
        "trigger route",
        "work queue",
        "dead-letter queue",
        "follow-up queue",
        "idempotency table",
    ]
    assert {result for result, _ in rows.values()} == {"OK"}
    assert lines[-2:] == ["", "all checks passed"]
    assert "Glider API v2 at http://127.0.0.1:" in rows["configuration"][1]
    assert re.fullmatch(
        r"accepted \(v2\): tenant Acme Treasury, apiKeyId key_[0-9a-f]{12}", rows["glider key"][1]
    )
    assert rows[f"portfolio {PORTFOLIO}"][1] == "schedule active, lastRebalanceAt never"
    assert rows["idempotency table"][1] == f"{doctor.stack.idempotency_table}: ACTIVE"
    assert rows["trigger route"][1] == (
        f"POST /v2/portfolios/{{portfolio_id}}/rebalance exists: Glider answered API_200 for "
        f"{ROUTE_CHECK_ID}, an id no portfolio has (nothing triggered)"
    )
    assert glider_paths(glider) == [
        "GET /v2/whoami",
        f"GET /v2/portfolios/{PORTFOLIO}",
        ROUTE_CHECK["v2"],
    ]
    assert all(r.headers.get("x-api-key") for r in glider.requests)


def test_a_v2_key_without_portfolios_write_fails_naming_the_scope(
    doctor: Doctor, glider: GliderEmulator
) -> None:
    glider.add_v2_key(API_KEY, scopes=["portfolios:read"])
    doctor.environment("v2")

    report = doctor.run("--from-env")

    assert report.status == 1
    [row] = [line for line in report.out.splitlines() if line.startswith("scope portfolios:write")]
    assert row.split(None, 3)[2:] == ["FAIL", MISSING_WRITE]
    assert re.search(r"^scope portfolios:read +OK +granted", report.out, re.MULTILINE)
    assert report.out.splitlines()[-1] == "1 check failed, 1 skipped"
    assert re.search(r"^trigger route +SKIP +the key lacks portfolios:write", report.out, re.M)
    assert doctor.check("v2").result("glider key") == "OK"
    assert "POST" not in " ".join(glider_paths(glider))  # Glider would refuse it unread


def test_a_legacy_key_on_v2_is_told_to_get_a_v2_key(doctor: Doctor, glider: GliderEmulator) -> None:
    glider.add_v1_key(API_KEY)

    report = doctor.check("v2", "--portfolio-id", PORTFOLIO)

    assert report.status == 1
    result, detail = report.rows["glider key"]
    assert result == "FAIL"
    assert detail.startswith("whoami refused the key (Glider answers so for a legacy v1 key")
    assert "request a v2 key (gldr_sk_...) or deploy with GliderApiVersion=v1" in detail
    assert "(requestId req_" in detail
    assert report.result("scope portfolios:write") == "SKIP"
    assert report.result(f"portfolio {PORTFOLIO}") == "SKIP"
    assert report.result("trigger route") == "SKIP"
    assert glider_paths(glider) == ["GET /v2/whoami"]


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_a_refused_key(doctor: Doctor, glider: GliderEmulator, version: str) -> None:
    glider.add_v2_key("some-other-key", scopes=FULL_SCOPES)
    glider.add_v1_key("some-other-legacy-key")

    report = doctor.check(version, "--portfolio-id", PORTFOLIO)

    assert report.status == 1
    result, detail = report.rows["glider key"]
    assert result == "FAIL"
    assert detail.startswith("key refused (invalid, expired or rotated)")
    assert report.result(f"portfolio {PORTFOLIO}") == "SKIP"
    assert report.result("trigger route") == "SKIP"


@pytest.mark.parametrize(
    ("version", "detail"),
    [
        ("v1", "portfolio not found (or another tenant's)"),
        ("v2", "not found or not this tenant's"),
    ],
)
def test_an_unknown_portfolio(
    doctor: Doctor, glider: GliderEmulator, version: str, detail: str
) -> None:
    glider.add_v1_key(API_KEY)
    glider.add_v2_key(API_KEY, scopes=FULL_SCOPES)

    report = doctor.check(version, "--portfolio-id", "port_gone01")

    assert report.status == 1
    result, shown = report.rows["portfolio port_gone01"]
    assert result == "FAIL"
    assert shown.startswith(detail)
    assert "requestId req_" in shown  # v1: from the body; v2: from X-Request-Id
    # v1's status call on an unknown portfolio does not prove the key (the docs do not say
    # whether Glider checks it first); v2's whoami does.
    assert report.result("glider key") == {"v1": "WARN", "v2": "OK"}[version]


def test_a_portfolio_id_is_one_percent_encoded_segment_or_refused(
    doctor: Doctor, glider: GliderEmulator
) -> None:
    glider.add_v2_key(API_KEY, scopes=FULL_SCOPES)

    report = doctor.check("v2", "--portfolio-id", "../admin")

    assert report.result("portfolio ../admin") == "FAIL"
    assert "the function refuses this id" in report.detail("portfolio ../admin")
    assert glider_paths(glider) == ["GET /v2/whoami", ROUTE_CHECK["v2"]]


# --- v1 --------------------------------------------------------------------------------------


def test_v1_with_a_portfolio_reads_its_status(doctor: Doctor, glider: GliderEmulator) -> None:
    glider.add_v1_key(API_KEY)

    report = doctor.check("v1", "--portfolio-id", PORTFOLIO)

    assert report.status == 0
    assert report.result("glider key") == "OK"
    assert report.rows[f"portfolio {PORTFOLIO}"] == ("OK", "schedule active")
    assert "scope portfolios:write" not in report.rows
    assert json.loads(report.out)["summary"] == "all checks passed"
    assert report.rows["trigger route"] == (
        "OK",
        "POST /v1/portfolio/{portfolio_id}/rebalance/schedule/trigger exists: Glider answered "
        f"API_200 for {ROUTE_CHECK_ID}, an id no portfolio has (nothing triggered)",
    )
    assert glider_paths(glider) == [
        f"GET /v1/portfolio/{PORTFOLIO}/rebalance/status?limit=1",
        ROUTE_CHECK["v1"],
    ]
    assert json.loads(glider.requests[1].body) == {"skipScheduleValidation": False}
    assert all(r.headers.get("x-api-key") for r in glider.requests)


def test_v1_without_a_portfolio_cannot_check_the_key_and_says_how(
    doctor: Doctor, glider: GliderEmulator
) -> None:
    glider.add_v1_key(API_KEY)

    report = doctor.check("v1", FOLLOW_OUTCOMES="false", FOLLOW_UP_QUEUE_URL="")

    assert report.status == 0
    assert report.rows["glider key"] == (
        "SKIP",
        "v1 has no read-only key check without a portfolio: pass --portfolio-id ID",
    )
    assert report.rows["follow-up queue"] == (
        "SKIP",
        "following outcomes is off: no follow-up queue needed",
    )
    assert report.result("trigger route") == "OK"  # the route, not the key: Glider's 404 only
    assert glider_paths(glider) == [ROUTE_CHECK["v1"]]
    # Two checks did not run: counted, and never "all checks passed".
    document = json.loads(report.out)
    passed = sum(row["result"] == "OK" for row in document["checks"])
    assert document["skipped"] == 2
    assert document["summary"] == f"{passed} passed, 2 skipped: not all checks ran"


def test_a_stack_without_the_version_parameter_is_v1(
    doctor: Doctor,
    glider: GliderEmulator,
    moto_server: MotoServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    glider.add_v1_key(API_KEY)
    doctor.environment("v1")
    for name in FUNCTION_VARIABLES:  # only the standard AWS variables: the stack has the rest
        monkeypatch.delenv(name)
    name = f"glider-doctor-{uuid.uuid4().hex[:8]}"
    queue = {"Type": "AWS::SQS::Queue"}
    template = {
        "Parameters": {
            "GliderApiKeySecretArn": {"Type": "String"},
            "GliderApiBaseUrl": {"Type": "String"},
        },
        "Resources": {
            "WorkQueue": queue,
            "DeadLetterQueue": queue,
            "FollowUpQueue": queue,
            "IdempotencyTable": {
                "Type": "AWS::DynamoDB::Table",
                "Properties": {
                    "BillingMode": "PAY_PER_REQUEST",
                    "AttributeDefinitions": [{"AttributeName": "id", "AttributeType": "S"}],
                    "KeySchema": [{"AttributeName": "id", "KeyType": "HASH"}],
                },
            },
        },
        "Outputs": {
            "WorkQueueUrl": {"Value": {"Ref": "WorkQueue"}},
            "DeadLetterQueueUrl": {"Value": {"Ref": "DeadLetterQueue"}},
            "FollowUpQueueUrl": {"Value": {"Ref": "FollowUpQueue"}},
        },
    }

    def create(stack_name: str) -> None:
        moto_server.client("cloudformation").create_stack(
            StackName=stack_name,
            TemplateBody=json.dumps(template),
            Parameters=[
                {"ParameterKey": "GliderApiKeySecretArn", "ParameterValue": doctor.stack.secret_id},
                {"ParameterKey": "GliderApiBaseUrl", "ParameterValue": glider.base_url},
            ],
        )

    create(name)
    report = doctor.run("--stack", name, "--portfolio-id", PORTFOLIO, "--json")

    assert report.status == 0, report.out
    assert report.rows["configuration"] == (
        "OK",
        f"stack {name}: Glider API v1 at {glider.base_url} (no GliderApiVersion parameter: v1)",
    )
    assert {result for result, _ in report.rows.values()} == {"OK"}
    assert report.detail("idempotency table").endswith(": ACTIVE")
    assert glider_paths(glider) == [
        f"GET /v1/portfolio/{PORTFOLIO}/rebalance/status?limit=1",
        ROUTE_CHECK["v1"],
    ]

    missing = doctor.run("--stack", "no-such-stack")
    assert missing.status == 1
    assert "configuration  FAIL    stack no-such-stack: DescribeStacks: ValidationError" in (
        missing.out
    )

    # A stack without the table (not this template's): the function would refuse to start.
    del template["Resources"]["IdempotencyTable"]
    create(f"{name}-tableless")
    tableless = doctor.run("--stack", f"{name}-tableless", "--json")
    assert tableless.status == 1
    result, detail = tableless.rows["idempotency table"]
    assert result == "FAIL"
    assert detail == (
        "not configured (resource IdempotencyTable): the function refuses to start without it"
    )


@pytest.mark.parametrize(
    ("version", "row", "called"),
    [
        ("v1", "trigger route", ROUTE_CHECK["v1"]),  # v1 without a portfolio: the only call
        ("v2", "glider key", "GET /v2/whoami"),  # v2's first call says it already
    ],
)
def test_a_base_url_glider_does_not_serve_fails_naming_the_path(
    doctor: Doctor, glider: GliderEmulator, version: str, row: str, called: str
) -> None:
    glider.add_v1_key(API_KEY)
    glider.add_v2_key(API_KEY, scopes=FULL_SCOPES)
    base_url = glider.base_url + "/api"  # a path Glider does not serve: a router's 404

    report = doctor.check(version, GLIDER_API_BASE_URL=base_url)

    assert report.status == 1
    result, detail = report.rows[row]
    assert result == "FAIL"
    method, path = called.split(" ")
    assert detail.startswith(f"{method} {base_url}{path} answered HTTP 404 without Glider's")
    assert "not a missing portfolio" in detail


def test_a_routers_404_on_the_v2_portfolio_is_no_such_route_not_a_missing_portfolio(
    doctor: Doctor, glider: GliderEmulator
) -> None:
    glider.add_v2_key(API_KEY, scopes=FULL_SCOPES)
    glider.script_status(PORTFOLIO, Fault.malformed(404, b"Not Found", "text/plain"))

    report = doctor.check("v2", "--portfolio-id", PORTFOLIO)

    result, detail = report.rows[f"portfolio {PORTFOLIO}"]
    assert result == "FAIL"
    assert detail.startswith(f"GET {glider.base_url}/v2/portfolios/{PORTFOLIO} answered HTTP 404")
    assert "not a missing portfolio" in detail


def test_the_v2_docs_other_trigger_path_is_caught_before_the_first_trigger(
    doctor: Doctor, glider: GliderEmulator
) -> None:
    # Glider's docs name the v2 trigger /rebalance and, on one page, /trigger.
    glider.add_v2_key(API_KEY, scopes=FULL_SCOPES)
    glider.set_v2_trigger_route("trigger")

    report = doctor.check("v2", "--portfolio-id", PORTFOLIO)

    assert report.status == 1
    assert report.result("glider key") == "OK"
    assert report.result(f"portfolio {PORTFOLIO}") == "OK"
    result, detail = report.rows["trigger route"]
    assert result == "FAIL"
    assert f"/v2/portfolios/{ROUTE_CHECK_ID}/rebalance answered HTTP 404 without" in detail
    assert json.loads(report.out)["failed"] == 1


@pytest.mark.parametrize(
    ("fault", "result", "detail"),
    [
        (Fault.error(403, "API_104", "Permission denied"), "FAIL", "the key may not trigger"),
        (Fault.error(404, "API_002", "Odd"), "WARN", "not proven: Glider answered 404 API_002"),
        (Fault.error(503, "API_000", "Upstream"), "FAIL", "Glider failed: HTTP 503"),
    ],
)
def test_the_route_check_on_other_answers(
    doctor: Doctor, glider: GliderEmulator, fault: Fault, result: str, detail: str
) -> None:
    glider.add_v1_key(API_KEY)
    glider.script(ROUTE_CHECK_ID, fault)

    report = doctor.check("v1")

    assert report.result("trigger route") == result
    assert report.detail("trigger route").startswith(detail)


# --- the secret ------------------------------------------------------------------------------


def test_a_missing_secret(doctor: Doctor, glider: GliderEmulator) -> None:
    glider.add_v2_key(API_KEY, scopes=FULL_SCOPES)
    secret_id = doctor.stack.secret_id.rsplit(":", 1)[0] + ":glider/no-such-key-AbCdEf"

    report = doctor.check("v2", GLIDER_API_KEY_SECRET_ID=secret_id)

    assert report.status == 1
    assert report.rows["secret"] == (
        "FAIL",
        f"{secret_id}: not found: check GLIDER_API_KEY_SECRET_ID (ResourceNotFoundException)",
    )
    assert report.rows["glider key"] == ("SKIP", "no key to check (see the secret check)")
    assert glider.requests == []


@pytest.mark.parametrize(
    ("secret", "detail"),
    [
        ('{"apiKey": "' + API_KEY, "looks like JSON but does not parse"),
        (json.dumps({"key": API_KEY}), 'a JSON object without a non-empty "apiKey" field'),
        (API_KEY + " \n" + API_KEY, "holds characters an HTTP header cannot carry"),
    ],
)
def test_an_unparsable_secret_is_reported_without_its_text(
    doctor: Doctor, glider: GliderEmulator, secret: str, detail: str
) -> None:
    glider.add_v2_key(API_KEY, scopes=FULL_SCOPES)
    doctor.stack.put_api_key(secret)

    report = doctor.check("v2")

    assert report.status == 1
    result, shown = report.rows["secret"]
    assert result == "FAIL"
    assert shown.startswith(f"not parsable: secret {doctor.stack.secret_id!r} ")
    assert detail in shown
    assert glider.requests == []


# --- Glider down, busy, failing --------------------------------------------------------------


def test_glider_unreachable(doctor: Doctor) -> None:
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{unused.getsockname()[1]}"

    report = doctor.check("v2", GLIDER_API_BASE_URL=closed)

    assert report.status == 1
    assert report.rows["glider key"] == (
        "FAIL",
        f"Glider unreachable at {closed}: could not connect to Glider: NewConnectionError",
    )
    assert report.result("scope portfolios:write") == "SKIP"


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_a_5xx_fails_with_gliders_ids_and_a_429_warns(
    doctor: Doctor, glider: GliderEmulator, version: str
) -> None:
    glider.add_v1_key(API_KEY)
    glider.add_v2_key(API_KEY, scopes=FULL_SCOPES)
    glider.script_status(PORTFOLIO, Fault.error(503, "API_000", "Upstream unavailable"))
    glider.script_status(PORTFOLIO, Fault.rate_limited(retry_after=7))
    row = "glider key" if version == "v1" else f"portfolio {PORTFOLIO}"

    failed = doctor.check(version, "--portfolio-id", PORTFOLIO)
    limited = doctor.check(version, "--portfolio-id", PORTFOLIO)

    assert failed.status == 1
    result, detail = failed.rows[row]
    assert result == "FAIL"
    assert re.fullmatch(
        r"Glider failed: HTTP 503: API_000 Upstream unavailable "
        r"\(requestId req_\w+, correlationId corr_\w+\)",
        detail,
    )
    assert limited.status == 0
    result, detail = limited.rows[row]
    assert result == "WARN"
    assert detail.startswith("Glider is rate limiting (HTTP 429, Retry-After 7 s)")
    assert "requestId req_" in detail
    # v1's key check is the portfolio's status: the portfolio row is skipped, and said.
    assert (
        json.loads(limited.out)["summary"]
        == {
            "v1": "8 passed, 1 skipped: not all checks ran (1 warning)",
            "v2": "all checks passed (1 warning)",
        }[version]
    )


def test_a_key_quoted_back_by_glider_is_redacted(doctor: Doctor, glider: GliderEmulator) -> None:
    glider.add_v1_key(API_KEY)
    body = json.dumps({"success": False, "error": {"code": "API_000", "message": API_KEY}})
    glider.script_status(PORTFOLIO, Fault.malformed(500, body.encode(), "application/json"))

    report = doctor.check("v1", "--portfolio-id", PORTFOLIO)

    assert report.detail("glider key") == "Glider failed: HTTP 500: API_000 <redacted>"


def test_a_v2_answer_quoting_the_key_or_another_glider_key_is_redacted(
    doctor: Doctor, glider: GliderEmulator
) -> None:
    glider.add_v2_key(API_KEY, scopes=FULL_SCOPES)
    glider.script_status(PORTFOLIO, Fault.quoting_key(500, "API_000", "gldr_sk_0ther9Key and"))

    report = doctor.check("v2", "--portfolio-id", PORTFOLIO)

    result, detail = report.rows[f"portfolio {PORTFOLIO}"]
    assert result == "FAIL"
    assert detail.startswith("Glider failed: HTTP 500: API_000 <redacted> and <redacted> (")
    assert "gldr_sk_0ther9Key" not in report.out


# --- the queues and the table ----------------------------------------------------------------


def test_a_missing_queue_or_table_fails_with_the_aws_error_code(
    doctor: Doctor, glider: GliderEmulator
) -> None:
    glider.add_v2_key(API_KEY, scopes=FULL_SCOPES)
    missing_queue = doctor.stack.work_queue.url.rsplit("/", 1)[0] + "/no-such-queue"

    report = doctor.check(
        "v2", WORK_QUEUE_URL=missing_queue, IDEMPOTENCY_TABLE_NAME="no-such-table"
    )

    assert report.status == 1
    assert json.loads(report.out)["failed"] == 2
    result, detail = report.rows["work queue"]
    assert result == "FAIL"
    assert detail.startswith(f"{missing_queue}: GetQueueAttributes: ")
    assert "NonExistentQueue" in detail
    result, detail = report.rows["idempotency table"]
    assert result == "FAIL"
    assert detail.startswith("no-such-table: DescribeTable: ResourceNotFoundException")
    assert report.result("dead-letter queue") == "OK"
    assert report.detail("dead-letter queue").endswith("~0 messages, ~0 in flight")


def test_unconfigured_resources_say_what_that_costs(doctor: Doctor, glider: GliderEmulator) -> None:
    glider.add_v2_key(API_KEY, scopes=FULL_SCOPES)

    report = doctor.check(
        "v2", WORK_QUEUE_URL="", IDEMPOTENCY_TABLE_NAME="", FOLLOW_UP_QUEUE_URL=""
    )

    # Without a work queue or a table the function would refuse to start: every trigger runs
    # from the queue, under the guard's ledger.
    assert report.status == 1
    assert report.result("configuration") == "FAIL"
    assert "WORK_QUEUE_URL is required" in report.detail("configuration")
    assert "IDEMPOTENCY_TABLE_NAME is required" in report.detail("configuration")
    assert report.result("follow-up queue") == "FAIL"
    assert report.result("work queue") == "FAIL"
    assert report.result("idempotency table") == "FAIL"
    assert "refuses to start" in report.detail("idempotency table")


# --- where the configuration comes from ------------------------------------------------------


def test_an_unknown_api_version_fails_the_configuration_and_calls_nobody(
    doctor: Doctor, glider: GliderEmulator
) -> None:
    report = doctor.check("v3", "--portfolio-id", PORTFOLIO)

    assert report.status == 1
    result, detail = report.rows["configuration"]
    assert result == "FAIL"
    assert detail.count("GLIDER_API_VERSION") == 1
    assert report.result("glider key") == "SKIP"
    assert glider.requests == []


def test_the_local_stack_file_configures_the_aws_clients(
    doctor: Doctor,
    glider: GliderEmulator,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    glider.add_v1_key(API_KEY)
    stack_file = tmp_path / ".stack.json"
    stack_file.write_text(json.dumps({"environment": doctor.stack.environment()}))
    monkeypatch.setattr(tools.doctor, "LOCAL_STACK_FILE", stack_file)
    doctor.environment("v1")
    for name in (*FUNCTION_VARIABLES, "AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID"):
        monkeypatch.delenv(name, raising=False)  # only the file can name the moto server

    report = doctor.run("--portfolio-id", PORTFOLIO, "--json")

    assert report.status == 0, report.out
    assert report.detail("configuration").startswith(
        f"local stack ({stack_file}, from make run ARGS=--keep): Glider API v1"
    )
    assert report.result("secret") == "OK"
    assert report.result("work queue") == "OK"

    monkeypatch.setattr(tools.doctor, "LOCAL_STACK_FILE", tmp_path / "absent.json")
    usage = doctor.run()
    assert usage.status == 2
    assert "pass --stack NAME (a deployed stack) or --from-env" in usage.err
    assert "make run ARGS=--keep" in usage.err


def test_stack_and_from_env_exclude_each_other(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--stack", "x", "--from-env"]) == 2
    assert "not allowed with argument" in capsys.readouterr().err


def test_runs_as_a_module() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "tools.doctor", "--help"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0
    assert "--portfolio-id ID" in result.stdout
    assert "nothing is triggered" in result.stdout
