"""Check the Glider key, its scopes and the stack's queues and table before the first run.

    glider-trigger doctor --stack NAME [--portfolio-id ID] [--json]
    glider-trigger doctor --from-env [--portfolio-id ID] [--json]
    glider-trigger doctor [--portfolio-id ID] [--json]     (make run ARGS=--keep's stack)

(`make doctor ARGS='--stack NAME'`, or `make doctor` alone for the local stack.)

The configuration comes from --stack NAME (the stack's parameters GliderApiKeySecretArn,
GliderApiBaseUrl and GliderApiVersion, its queue outputs and its IdempotencyTable resource), or
--from-env (the function's own variables: GLIDER_API_KEY_SECRET_ID, GLIDER_API_BASE_URL,
GLIDER_API_VERSION, WORK_QUEUE_URL, DLQ_URL, FOLLOW_UP_QUEUE_URL, IDEMPOTENCY_TABLE_NAME,
MAX_RECEIVE_COUNT), or
else local/.stack.json, which `make run ARGS=--keep` writes while its local stack is up (its
AWS_* values, the moto endpoint and fake credentials, are applied to the AWS clients). Otherwise
region, credentials and endpoint come from the standard AWS environment, as for tools/dlq.py.

It reads the secret exactly as the function does, asks Glider whether the key is accepted (and,
on v2, which scopes it carries), proves that the trigger route the function calls exists, and
looks at the work queue, the DLQ, the follow-up queue and the idempotency table. Every call to
Glider is a GET but one: the function's own trigger call (its adapter: path, header, body) for
ROUTE_CHECK_ID, a portfolio id that cannot exist (Glider's ids have no "-": v1's look like
`ao04x0r6`, v2's like `pf_<ULID>` or a bare ULID), which Glider must answer with its own
not-found envelope; a router's 404 there means the route is wrong. It never POSTs for a real
portfolio: nothing is ever triggered. The key itself is never printed, not even a part of it.

The last line counts the skipped checks: "all checks passed" only when every check ran. On v1 a
portfolio without a rebalance schedule fails its row unless the stack's
DefaultSkipScheduleValidation is true, as the function's triggers of it (and glider-trigger
trigger's) would then be refused.

exit status: 0 nothing failed (OK, SKIP or WARN only), 1 a check failed, 2 usage error.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Literal
from urllib.parse import quote

from botocore.config import Config as BotoConfig
from botocore.exceptions import BotoCoreError, ClientError, EndpointConnectionError

from glider_trigger.domain.errors import (
    ApiError,
    ConfigurationError,
    InvalidPortfolioIdError,
    SecretUnavailableError,
)
from glider_trigger.domain.models import ApiKey, InputSource, Receipt, SourceKind, TriggerRequest
from glider_trigger.domain.trigger_input import validate_portfolio_id
from glider_trigger.outbound.glider.http import (
    REDACTED,
    Answer,
    HttpSession,
    build_pool_manager,
    json_object,
    text,
)
from glider_trigger.outbound.glider.shared import (
    NOT_FOUND_CODES,
    TENANT_CODES,
    Reason,
    error_code_and_message,
    glider_envelope,
    no_such_route,
)
from glider_trigger.outbound.glider.v1 import TRIGGER_PATH as V1_TRIGGER_PATH
from glider_trigger.outbound.glider.v1 import GliderV1Client
from glider_trigger.outbound.glider.v2 import READ_SCOPE, WRITE_SCOPE, GliderV2Client
from glider_trigger.outbound.glider.v2 import TRIGGER_PATH as V2_TRIGGER_PATH
from glider_trigger.outbound.secrets import ApiKeyProvider
from glider_trigger.settings import (
    DEFAULT_GLIDER_API_BASE_URL,
    ApiVersion,
    Settings,
    api_base_url,
)
from tools.base import (
    EXIT_ERROR,
    EXIT_OK,
    ToolError,
    UsageError,
    describe,
    one_line,
    prog,
    run_main,
    table,
)
from tools.common import (
    LOCAL_HINT,
    LOCAL_STACK_FILE,
    TABLE_RESOURCE,
    UP_HINT,
    Aws,
    aws_values,
    describe_stack,
    error_code,
    local_aws,
    outputs_of,
    parameter_flag,
    parameters_of,
    read_local_stack,
    shown,
    stack_resource,
)

if TYPE_CHECKING:
    from mypy_boto3_cloudformation import CloudFormationClient
    from mypy_boto3_sqs import SQSClient

PROG: Final = prog("doctor")
# The only portfolio the doctor ever POSTs a trigger for: no Glider id has a "-" (see above).
ROUTE_CHECK_ID: Final = "doctor-route-check-no-such-portfolio"
ROUTE_ROW: Final = "trigger route"
# v1's status of a portfolio's schedule when it has none (its answer then names no schedule id).
NO_SCHEDULE_STATUS: Final = "inactive"

API_VERSIONS: Final = tuple(version.value for version in ApiVersion)
DEFAULT_API_VERSION: Final = Settings.glider_api_version.value
# Each scope the function needs on v2, and what its absence costs.
SCOPES: Final = {
    WRITE_SCOPE: (
        "ask Glider for portfolios:write (a standard, self-service scope): without it every "
        "trigger is refused with 403 API_104",
        "the function can trigger rebalances",
    ),
    READ_SCOPE: (
        "ask Glider for portfolios:read (a default scope, normally granted to every key): without "
        "it no outcome can be followed and no lost answer reconciled (403 API_104)",
        "the function can follow outcomes and reconcile lost answers",
    ),
}
_MAX_MESSAGE: Final = 160
# The function's AWS client settings, with fewer attempts: a check should answer quickly.
_AWS_CONFIG: Final = BotoConfig(
    connect_timeout=3, read_timeout=10, retries={"mode": "standard", "total_max_attempts": 2}
)

Result = Literal["OK", "FAIL", "SKIP", "WARN"]
HEADERS: Final = ["CHECK", "RESULT", "DETAIL"]

EXAMPLES = f"""\
examples:
  {PROG} --stack glider-rebalance-trigger
  {PROG} --stack glider-rebalance-trigger --portfolio-id port_abc123 --json
  {PROG}                          (the local stack of `make run ARGS=--keep`)
  GLIDER_API_VERSION=v2 GLIDER_API_KEY_SECRET_ID=... DLQ_URL=... {PROG} --from-env

Every call to Glider is a GET (whoami, a portfolio, its status) but one POST of the trigger,
for {ROUTE_CHECK_ID} (an id no portfolio has), which proves the
route exists: nothing is triggered.
exit status: 0 nothing failed, 1 a check failed, 2 usage error.
"""


@dataclass(frozen=True)
class Check:
    """One row of the report."""

    name: str
    result: Result
    detail: str

    def as_json(self) -> dict[str, str]:
        return {"check": self.name, "result": self.result, "detail": self.detail}


# --- configuration ---------------------------------------------------------------------------


@dataclass
class Configuration:
    """What the function is configured with, and where each value came from."""

    origin: str
    secret_id: str | None
    base_url: str
    api_version: str
    work_queue_url: str | None
    dlq_url: str | None
    follow_up_queue_url: str | None
    follow_outcomes: bool
    table_name: str | None
    # Where each value is set, for the messages: "DLQ_URL", "output DeadLetterQueueUrl"...
    names: dict[str, str]
    version_note: str = ""
    # Whether the function's triggers skip Glider's schedule validation (v1) by default.
    default_skip: bool = Settings.default_skip_schedule_validation
    problems: list[str] = field(default_factory=list)
    # AWS_* values for the clients (the local stack only); empty: the standard environment.
    aws: dict[str, str] = field(default_factory=dict)

    @property
    def local(self) -> bool:
        return bool(self.aws)


ENV_NAMES: Final = {
    "secret": "GLIDER_API_KEY_SECRET_ID",
    "version": "GLIDER_API_VERSION",
    "work": "WORK_QUEUE_URL",
    "dlq": "DLQ_URL",
    "follow": "FOLLOW_UP_QUEUE_URL",
    "table": "IDEMPOTENCY_TABLE_NAME",
    "skip": "DEFAULT_SKIP_SCHEDULE_VALIDATION",
}
STACK_NAMES: Final = {
    "secret": "parameter GliderApiKeySecretArn",
    "version": "GliderApiVersion",
    "work": "output WorkQueueUrl",
    "dlq": "output DeadLetterQueueUrl",
    "follow": "output FollowUpQueueUrl",
    "table": f"resource {TABLE_RESOURCE}",
    "skip": "parameter DefaultSkipScheduleValidation",
}


def from_environment(env: Mapping[str, str], origin: str) -> Configuration:
    """The function's environment (ours with --from-env, or the local stack's)."""

    def value(name: str) -> str | None:
        return env.get(name, "").strip() or None

    raw_version = value("GLIDER_API_VERSION")
    config = Configuration(
        origin=origin,
        secret_id=value("GLIDER_API_KEY_SECRET_ID"),
        base_url=value("GLIDER_API_BASE_URL") or DEFAULT_GLIDER_API_BASE_URL,
        api_version=(raw_version or DEFAULT_API_VERSION).lower(),
        work_queue_url=value("WORK_QUEUE_URL"),
        dlq_url=value("DLQ_URL"),
        follow_up_queue_url=value("FOLLOW_UP_QUEUE_URL"),
        follow_outcomes=(value("FOLLOW_OUTCOMES") or "true").lower() not in ("false", "0", "no"),
        table_name=value("IDEMPOTENCY_TABLE_NAME"),
        names=dict(ENV_NAMES),
        version_note="" if raw_version else " (GLIDER_API_VERSION not set: v1)",
    )
    try:
        # The function's own validation: what it would refuse at init, the doctor reports.
        settings = Settings.from_environment(env)
    except ConfigurationError as exc:
        config.problems.append(f"the function would refuse to start: {exc}")
    else:
        config.default_skip = settings.default_skip_schedule_validation
    return config


def from_local_file(path: Path) -> Configuration:
    env = read_local_stack(path)
    config = from_environment(env, f"local stack ({shown(path)}, from make run ARGS=--keep)")
    config.aws = aws_values(env)
    return config


def from_stack(cloudformation: CloudFormationClient, stack: str) -> Configuration:
    found = describe_stack(cloudformation, stack)
    parameters = parameters_of(found)
    outputs = outputs_of(found)
    raw_version = parameters.get("GliderApiVersion", "").strip()
    config = Configuration(
        origin=f"stack {stack}",
        secret_id=parameters.get("GliderApiKeySecretArn", "").strip() or None,
        base_url=parameters.get("GliderApiBaseUrl", "").strip() or DEFAULT_GLIDER_API_BASE_URL,
        api_version=(raw_version or DEFAULT_API_VERSION).lower(),
        work_queue_url=outputs.get("WorkQueueUrl") or None,
        dlq_url=outputs.get("DeadLetterQueueUrl") or None,
        follow_up_queue_url=outputs.get("FollowUpQueueUrl") or None,
        follow_outcomes=parameter_flag(
            parameters, "FollowOutcomes", default=Settings.follow_outcomes
        ),
        default_skip=parameter_flag(
            parameters,
            "DefaultSkipScheduleValidation",
            default=Settings.default_skip_schedule_validation,
        ),
        table_name=None,
        names=dict(STACK_NAMES),
        # A stack deployed before the parameter existed runs the v1 adapter.
        version_note="" if raw_version else " (no GliderApiVersion parameter: v1)",
    )
    # The template has no output for the table: its physical id is the table's name.
    try:
        config.table_name = stack_resource(cloudformation, stack, TABLE_RESOURCE)
    except ToolError as exc:
        config.problems.append(f"its {TABLE_RESOURCE} resource: {exc}")
    return config


# --- the checks ------------------------------------------------------------------------------


class Doctor:
    """Runs the checks in order; every row passes through `redact` on its way in."""

    def __init__(self, config: Configuration, aws: Aws, *, portfolio_id: str | None) -> None:
        self.config = config
        self.checks: list[Check] = []
        self._aws = aws
        self._portfolio_id = portfolio_id
        self._key: str | None = None

    def redact(self, message: str) -> str:
        """The key out of any text, a second net: Glider's answers are scrubbed as they arrive
        (HttpSession, the function's own `scrub`: the key and anything that looks like a Glider
        key). Rows are our words around them, which name the key format (`gldr_sk_...`): only
        the key itself is taken out here."""
        return message.replace(self._key, REDACTED) if self._key else message

    def add(self, name: str, result: Result, detail: str) -> None:
        self.checks.append(Check(self.redact(name), result, self.redact(detail)))

    @property
    def failed(self) -> int:
        return sum(check.result == "FAIL" for check in self.checks)

    def run(self) -> list[Check]:
        self._configuration()
        key = self._secret()
        self._glider(key)
        self._queues_and_table()
        return self.checks

    # 1. configuration

    def _configuration(self) -> None:
        config = self.config
        named = config.names["version"]
        if config.api_version not in API_VERSIONS and not any(named in p for p in config.problems):
            config.problems.append(f"{named} is {config.api_version!r}: it must be v1 or v2")
        if config.problems:
            self.add("configuration", "FAIL", f"{config.origin}: " + "; ".join(config.problems))
            return
        self.add(
            "configuration",
            "OK",
            f"{config.origin}: Glider API {config.api_version} at {config.base_url}"
            f"{config.version_note}",
        )

    # 2. the secret

    def _secret(self) -> str | None:
        secret_id = self.config.secret_id
        if secret_id is None:
            self.add("secret", "FAIL", f"not configured ({self.config.names['secret']} is empty)")
            return None
        provider = ApiKeyProvider(
            secret_id,
            max_age_seconds=Settings.secret_cache_seconds,
            client=self._aws.secrets,
        )
        try:
            key = provider.get().reveal()
        except SecretUnavailableError as exc:
            self.add("secret", "FAIL", self._secret_failure(secret_id, exc))
            return None
        except (ClientError, BotoCoreError) as exc:  # building the client itself
            self.add("secret", "FAIL", f"{secret_id}: {self._aws_detail(exc)}")
            return None
        self._key = key
        self.add("secret", "OK", f"{secret_id}: found and parsable")
        return key

    def _secret_failure(self, secret_id: str, exc: SecretUnavailableError) -> str:
        cause = _aws_cause(exc)
        if isinstance(cause, ClientError):
            code = error_code(cause)
            what = {
                "ResourceNotFoundException": f"not found: check {self.config.names['secret']}",
                "AccessDeniedException": (
                    "access denied to the credentials running this check (they need "
                    "secretsmanager:GetSecretValue on it; the function's role has it)"
                ),
                "DecryptionFailure": "cannot be decrypted: these credentials need kms:Decrypt",
                "InvalidRequestException": "disabled or scheduled for deletion",
            }.get(code, one_line(describe(cause), _MAX_MESSAGE))
            return f"{secret_id}: {what} ({code})"
        if isinstance(cause, BotoCoreError):
            return f"{secret_id}: cannot reach Secrets Manager: {self._aws_detail(cause)}"
        # The parser's own words: they name the secret and never quote its text.
        return f"not parsable: {exc}"

    # 3. the key at Glider

    def _glider(self, key: str | None) -> None:
        v2 = self.config.api_version == ApiVersion.V2
        rows = ["glider key", *(f"scope {scope}" for scope in SCOPES)] if v2 else ["glider key"]
        if self._portfolio_id is not None:
            rows.append(f"portfolio {self._portfolio_id}")
        rows.append(ROUTE_ROW)
        if self.config.api_version not in API_VERSIONS:
            self._skip(rows, "unknown Glider API version (see the configuration check)")
            return
        if key is None:
            self._skip(rows, "no key to check (see the secret check)")
            return
        try:
            base_url = api_base_url(self.config.base_url)
        except ConfigurationError as exc:
            self.add("glider key", "FAIL", f"not calling Glider: {exc}")
            self._skip(rows[1:], "the key was not sent (see the glider key check)")
            return
        glider = Glider(base_url, key)
        not_now = self._v2(glider) if v2 else self._v1(glider)
        if not_now is not None:
            self.add(ROUTE_ROW, "SKIP", not_now)
        else:
            self._trigger_route(glider, v2=v2)

    def _skip(self, names: Sequence[str], reason: str) -> None:
        for name in names:
            self.add(name, "SKIP", reason)

    def _v2(self, glider: Glider) -> str | None:
        """The key, its scopes and the portfolio; why the route cannot be checked, if not."""
        accepted, scopes = self._whoami(glider)
        for scope, (missing, granted) in SCOPES.items():
            if not accepted:
                self.add(f"scope {scope}", "SKIP", "the key's scopes are unknown (see glider key)")
            elif scope in scopes:
                self.add(f"scope {scope}", "OK", f"granted: {granted}")
            else:
                self.add(f"scope {scope}", "FAIL", missing)
        if self._portfolio_id is not None:
            self._v2_portfolio(glider, self._portfolio_id, accepted=accepted)
        if not accepted:
            return "the key check did not pass (see glider key)"
        if WRITE_SCOPE not in scopes:
            # Glider refuses the key before it looks the route up: the POST would prove nothing.
            return f"the key lacks {WRITE_SCOPE} (see its scope row): not asked"
        return None

    def _whoami(self, glider: Glider) -> tuple[bool, list[Any]]:
        """The glider key row: whether whoami accepted the key, and its scopes."""
        answer = glider.get("/v2/whoami", header="x-api-key")
        accepted = answer is not None and answer.status == 200
        data = _data(answer)
        scopes = data.get("scopes") if accepted else None
        if answer is None:
            self.add("glider key", "FAIL", glider.failure)
        elif accepted and not (isinstance(scopes, list) and answer.unread is None):
            accepted = False
            self.add(
                "glider key", "FAIL", "whoami answered 200 without a scopes list" + ids(answer)
            )
        elif accepted:
            tenant = text(data.get("tenantName")) or "(unnamed)"
            key_id = text(data.get("apiKeyId")) or "-"
            self.add("glider key", "OK", f"accepted (v2): tenant {tenant}, apiKeyId {key_id}")
        elif answer.status == 401:
            self.add(
                "glider key", "FAIL", "key refused (invalid, expired or rotated)" + ids(answer)
            )
        elif answer.status == 404 and not glider_envelope(json_object(answer.payload)):
            self.add("glider key", "FAIL", no_such_route(answer.called) + ids(answer))
        elif answer.status == 403 and _code(answer) in TENANT_CODES:
            self.add(
                "glider key",
                "FAIL",
                "the key's tenant is unknown or disabled: ask Glider support" + ids(answer),
            )
        elif answer.status == 403:
            self.add(
                "glider key",
                "FAIL",
                "whoami refused the key (Glider answers so for a legacy v1 key, which has no "
                "tenant identity): request a v2 key (gldr_sk_...) or deploy with "
                "GliderApiVersion=v1" + error_text(json_object(answer.payload)) + ids(answer),
            )
        else:
            self.add("glider key", *unexpected(answer, "whoami"))
        return accepted, scopes if accepted and isinstance(scopes, list) else []

    def _v2_portfolio(self, glider: Glider, portfolio_id: str, *, accepted: bool) -> None:
        name = f"portfolio {portfolio_id}"
        if not accepted:
            self.add(name, "SKIP", "the key check did not pass")
            return
        segment = self._segment(name, portfolio_id)
        if segment is None:
            return
        answer = glider.get(f"/v2/portfolios/{segment}", header="x-api-key")
        if answer is None:
            self.add(name, "FAIL", glider.failure)
            return
        if answer.status == 200:
            schedule = _data(answer).get("schedule")
            if not isinstance(schedule, dict):
                self.add(name, "OK", "found; it has no schedule")
                return
            status = text(schedule.get("status")) or "unknown"
            last = text(schedule.get("lastRebalanceAt")) or "never"
            self.add(name, "OK", f"schedule {status}, lastRebalanceAt {last}")
        elif answer.status == 404 and not glider_envelope(json_object(answer.payload)):
            self.add(name, "FAIL", no_such_route(answer.called) + ids(answer))
        elif answer.status == 404:
            self.add(name, "FAIL", "not found or not this tenant's" + ids(answer))
        elif answer.status == 403:
            self.add(name, "FAIL", f"the key may not read it: {READ_SCOPE}?" + ids(answer))
        else:
            self.add(name, *unexpected(answer, "the portfolio"))

    def _v1(self, glider: Glider) -> str | None:
        """The key and the portfolio; why the route cannot be checked, if not."""
        portfolio_id = self._portfolio_id
        if portfolio_id is None:
            self.add(
                "glider key",
                "SKIP",
                "v1 has no read-only key check without a portfolio: pass --portfolio-id ID",
            )
            return None
        name = f"portfolio {portfolio_id}"
        segment = self._segment(name, portfolio_id, key_row=True)
        if segment is None:
            return None
        answer = glider.get(f"/v1/portfolio/{segment}/rebalance/status?limit=1", header="X-API-KEY")
        if answer is None:
            self.add("glider key", "FAIL", glider.failure)
            self.add(name, "SKIP", "Glider did not answer")
            return "Glider did not answer (see glider key)"
        if answer.status == 200:
            self.add(
                "glider key",
                "OK",
                "accepted (v1): it may read the portfolio's status (whether it may trigger, "
                "v1 cannot tell without triggering)",
            )
        elif answer.status == 404 and _code(answer) in NOT_FOUND_CODES:
            # Glider's own "not found" envelope, but the docs do not say whether the key is
            # checked before the portfolio is looked up: not proven either way.
            self.add(
                "glider key",
                "WARN",
                "not proven: Glider answered that the portfolio does not exist (pass one the key "
                "can read)" + ids(answer),
            )
        elif answer.status == 401:
            self.add(
                "glider key", "FAIL", "key refused (invalid, expired or rotated)" + ids(answer)
            )
        elif answer.status == 403:
            self.add("glider key", "FAIL", "key lacks the read permission" + ids(answer))
        elif answer.status == 404 and not glider_envelope(json_object(answer.payload)):
            self.add("glider key", "FAIL", no_such_route(answer.called) + ids(answer))
            self.add(name, "SKIP", "no usable answer (see glider key)")
            return None
        else:
            self.add("glider key", *unexpected(answer, "the portfolio's status"))
            self.add(name, "SKIP", "no usable answer (see glider key)")
            return None
        if answer.status == 200:
            self.add(name, *self._v1_schedule(_data(answer)))
        elif answer.status == 404:
            self.add(name, "FAIL", "portfolio not found (or another tenant's)" + ids(answer))
        else:
            self.add(name, "SKIP", "the key was not accepted")
        return "the key was refused (see glider key)" if answer.status == 401 else None

    def _v1_schedule(self, data: Mapping[str, Any]) -> tuple[Result, str]:
        """The portfolio's schedule as the function's triggers will meet it: v1 refuses a trigger
        for a portfolio without one (400 API_002) unless it skips the schedule validation, which
        the function's triggers do only when the stack says so (glider-trigger trigger reads the
        same setting)."""
        status = text(data.get("status")) or "unknown"
        if status != NO_SCHEDULE_STATUS and data.get("rebalanceScheduleId") is not None:
            return "OK", f"schedule {status}"
        setting = self.config.names["skip"]
        if self.config.default_skip:
            return "OK", (
                f"no rebalance schedule (status {status}): triggered anyway, {setting} is true"
            )
        return "FAIL", (
            f"no rebalance schedule (status {status}): Glider refuses its triggers (400 "
            f"API_002) unless they skip the schedule validation, and {setting} is false: set it "
            "to true, or trigger it with glider-trigger trigger --skip-schedule-validation"
        )

    def _trigger_route(self, glider: Glider, *, v2: bool) -> None:
        """The function's own trigger call (its adapter) for ROUTE_CHECK_ID: Glider's own
        not-found proves the route exists; a router's 404 is the function's every trigger."""
        route = f"POST {V2_TRIGGER_PATH if v2 else V1_TRIGGER_PATH}"
        try:
            receipt = glider.trigger(ROUTE_CHECK_ID, v2=v2)
        except ApiError as exc:
            self.add(ROUTE_ROW, *self._route_answer(exc, route, glider))
            return
        self.add(
            ROUTE_ROW,
            "FAIL",
            f"Glider accepted a trigger for {ROUTE_CHECK_ID}, an id no portfolio has (rebalance "
            f"{receipt.rebalance_id or 'unknown'}): tell Glider support"
            + _ids(receipt.request_id, receipt.correlation_id),
        )

    def _route_answer(self, error: ApiError, route: str, glider: Glider) -> tuple[Result, str]:
        facts = error.facts
        if not error.certainty.answered:
            return "FAIL", f"Glider unreachable at {glider.base_url}: {error}"
        if error.reason == Reason.NOT_FOUND and facts.code in NOT_FOUND_CODES:
            return "OK", (
                f"{route} exists: Glider answered {facts.code} for {ROUTE_CHECK_ID}, an id no "
                "portfolio has (nothing triggered)"
            )
        result, detail = _refused_route(error, route)
        return result, detail + _ids(facts.request_id, facts.correlation_id)

    def _segment(self, name: str, portfolio_id: str, *, key_row: bool = False) -> str | None:
        """The id as one path segment, if the function would accept it at all."""
        try:
            return quote(validate_portfolio_id(portfolio_id), safe="")
        except InvalidPortfolioIdError as exc:
            if key_row:
                self.add("glider key", "SKIP", "no valid portfolio to ask about")
            self.add(name, "FAIL", f"the function refuses this id: {exc}")
            return None

    # 4. the queues and the table

    def _queues_and_table(self) -> None:
        config = self.config
        try:
            sqs: SQSClient | None = self._aws.sqs()
        except (ClientError, BotoCoreError) as exc:
            sqs, sqs_error = None, self._aws_detail(exc)
        else:
            sqs_error = ""
        for label, url, key in (
            ("work queue", config.work_queue_url, "work"),
            ("dead-letter queue", config.dlq_url, "dlq"),
            ("follow-up queue", config.follow_up_queue_url, "follow"),
        ):
            if url is None:
                self.add(label, *self._unconfigured(key))
            elif sqs is None:
                self.add(label, "FAIL", sqs_error)
            else:
                self.add(label, *self._queue(sqs, url, dlq=key == "dlq"))
        if config.table_name is None:
            self.add("idempotency table", *self._unconfigured("table"))
        else:
            self.add("idempotency table", *self._table(config.table_name))

    def _unconfigured(self, key: str) -> tuple[Result, str]:
        where = self.config.names[key]
        if key in ("dlq", "work", "table"):
            # Every trigger runs from the work queue, under the guard's ledger.
            return "FAIL", f"not configured ({where}): the function refuses to start without it"
        if self.config.follow_outcomes:
            return "FAIL", (
                f"not configured ({where}) while following outcomes is on: the function "
                "refuses to start"
            )
        return "SKIP", "following outcomes is off: no follow-up queue needed"

    def _queue(self, sqs: SQSClient, url: str, *, dlq: bool) -> tuple[Result, str]:
        try:
            attributes = sqs.get_queue_attributes(
                QueueUrl=url,
                AttributeNames=[
                    "ApproximateNumberOfMessages",
                    "ApproximateNumberOfMessagesNotVisible",
                ],
            )["Attributes"]
        except (ClientError, BotoCoreError) as exc:
            return "FAIL", f"{url}: {self._aws_detail(exc)}"
        visible = attributes.get("ApproximateNumberOfMessages", "?")
        in_flight = attributes.get("ApproximateNumberOfMessagesNotVisible", "?")
        detail = (
            f"{url.rstrip('/').rsplit('/', 1)[-1]}: ~{visible} messages, ~{in_flight} in flight"
        )
        if dlq and visible not in ("0", "?"):
            detail += " (make dlq ARGS=list shows them)"
        return "OK", detail

    def _table(self, name: str) -> tuple[Result, str]:
        try:
            dynamodb = self._aws.dynamodb()
            status = dynamodb.describe_table(TableName=name)["Table"].get("TableStatus", "UNKNOWN")
        except (ClientError, BotoCoreError) as exc:
            return "FAIL", f"{name}: {self._aws_detail(exc)}"
        if status in ("ACTIVE", "UPDATING"):
            return "OK", f"{name}: {status}"
        if status == "CREATING":
            return "WARN", f"{name}: CREATING (usable once ACTIVE)"
        return "FAIL", f"{name}: {status}: the guard cannot use it"

    def _aws_detail(self, exc: ClientError | BotoCoreError) -> str:
        detail = one_line(describe(exc), _MAX_MESSAGE + 80)
        if self.config.local and isinstance(exc, EndpointConnectionError):
            detail += UP_HINT if self.config.origin.startswith("stack ") else LOCAL_HINT
        return detail


def _refused_route(error: ApiError, route: str) -> tuple[Result, str]:
    """What the trigger route check makes of any answer but Glider's own not-found."""
    facts = error.facts
    said = one_line(
        f"HTTP {facts.http_status}: {' '.join(p for p in (facts.code, str(error)) if p)}",
        _MAX_MESSAGE,
    )
    if facts.http_status == 404 and error.reason == Reason.NOT_FOUND:
        return "WARN", (
            f"not proven: Glider answered 404 {facts.code or 'without a code'} in its envelope "
            f"for {ROUTE_CHECK_ID}, not its not-found ({', '.join(sorted(NOT_FOUND_CODES))})"
        )
    wait = error.retry_after_seconds
    answers: dict[str, tuple[Result, str]] = {
        Reason.ROUTE_NOT_FOUND: ("FAIL", str(error)),
        Reason.UNAUTHORIZED: ("FAIL", "key refused (invalid, expired or rotated)"),
        Reason.FORBIDDEN: (
            "FAIL",
            f"the key may not trigger: {one_line(str(error), _MAX_MESSAGE)}",
        ),
        Reason.RATE_LIMITED: (
            "WARN",
            f"Glider is rate limiting (HTTP 429"
            f"{f', Retry-After {wait:g} s' if wait is not None else ''}): run the doctor again "
            "later",
        ),
        Reason.SERVER_ERROR: ("FAIL", f"Glider failed: {said}"),
    }
    return answers.get(error.reason, ("FAIL", f"unexpected answer to {route}: {said}"))


def _aws_cause(exc: BaseException) -> ClientError | BotoCoreError | None:
    """The SDK error under a SecretUnavailableError (Powertools wraps it in between)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, ClientError | BotoCoreError):
            return current
        current = current.__cause__ or current.__context__
    return None


class Glider:
    """GETs on the function's own HTTP session (its timeouts, no redirects, no retries)."""

    def __init__(self, base_url: str, key: str) -> None:
        self.base_url = base_url
        self._key = key
        self._session = HttpSession(
            base_url,
            connect_timeout_seconds=Settings.connect_timeout_seconds,
            read_timeout_seconds=Settings.read_timeout_seconds,
            http=build_pool_manager(max_connections=1),
        )
        self.failure = ""

    def trigger(self, portfolio_id: str, *, v2: bool) -> Receipt:
        """The function's own trigger call, through its adapter: its path, header and body, its
        answer classified by the function's tables (raises the ApiError of a refusal)."""
        adapter = GliderV2Client(self._session) if v2 else GliderV1Client(self._session)
        request = TriggerRequest(portfolio_id, False, InputSource(SourceKind.DIRECT))
        return adapter.trigger(request, ApiKey(self._key))

    def get(self, path: str, *, header: str) -> Answer | None:
        """The answer, or None (and `failure` says why) when none arrived."""
        try:
            return self._session.request("GET", path, headers={header: self._key}, secret=self._key)
        except ApiError as exc:
            self.failure = f"Glider unreachable at {self.base_url}: {exc}"
            return None


def _data(answer: Answer | None) -> dict[str, Any]:
    """The `data` object of a success body (or the body itself, if it has none)."""
    document = json_object(answer.payload) if answer is not None else {}
    data = document.get("data", document)
    return data if isinstance(data, dict) else {}


def unexpected(answer: Answer, what: str) -> tuple[Result, str]:
    """A 429 (WARN), a 5xx or any other answer the checks do not expect (FAIL)."""
    document = json_object(answer.payload)
    said = error_text(document)
    if answer.status == 429:
        wait = answer.headers.get("retry-after")
        after = f", Retry-After {wait} s" if wait else ""
        return "WARN", f"Glider is rate limiting (HTTP 429{after}): run the doctor again later" + (
            ids(answer)
        )
    if answer.status >= 500:
        return "FAIL", f"Glider failed: HTTP {answer.status}{said}" + ids(answer)
    return "FAIL", f"unexpected answer to {what}: HTTP {answer.status}{said}" + ids(answer)


def error_text(document: dict[str, Any]) -> str:
    """`: API_000 Upstream unavailable` from either error body, or nothing."""
    error = document.get("error")
    if isinstance(error, dict):
        code, message = text(error.get("code")), text(error.get("message"))
    else:
        code, message = None, text(document.get("message")) or text(error)
    said = " ".join(part for part in (code, message) if part)
    return f": {one_line(said, _MAX_MESSAGE)}" if said else ""


def _code(answer: Answer) -> str | None:
    """Glider's error code in the answer, if it carries one."""
    return error_code_and_message(json_object(answer.payload))[0]


def _ids(request_id: str | None, correlation_id: str | None) -> str:
    found = [
        f"{label} {value}"
        for label, value in (("requestId", request_id), ("correlationId", correlation_id))
        if value
    ]
    return f" ({', '.join(found)})" if found else ""


def ids(answer: Answer) -> str:
    """Glider's request and correlation ids (v2: headers; v1: the body), for support."""
    document = json_object(answer.payload)
    request_id = text(answer.headers.get("x-request-id")) or text(document.get("requestId"))
    correlation_id = text(answer.headers.get("x-correlation-id")) or text(
        document.get("correlationId")
    )
    return _ids(request_id, correlation_id)


# --- the report ------------------------------------------------------------------------------


def summary(checks: Sequence[Check]) -> str:
    """The report's last line. "all checks passed" only when every check ran and none failed:
    a skipped check is counted and said, never passed off."""
    counts = Counter(check.result for check in checks)
    failed, skipped, warned = counts["FAIL"], counts["SKIP"], counts["WARN"]
    warnings = f" ({warned} warning{'s' if warned != 1 else ''})" if warned else ""
    not_run = f", {skipped} skipped" if skipped else ""
    if failed:
        return f"{failed} check{'s' if failed != 1 else ''} failed{not_run}{warnings}"
    if skipped:
        passed = counts["OK"] + warned
        return f"{passed} passed, {skipped} skipped: not all checks ran{warnings}"
    return "all checks passed" + warnings


def report(checks: Sequence[Check], *, as_json: bool, api_version: str | None) -> None:
    failed = sum(check.result == "FAIL" for check in checks)
    if as_json:
        print(
            json.dumps(
                {
                    "apiVersion": api_version,
                    "checks": [check.as_json() for check in checks],
                    "failed": failed,
                    "skipped": sum(check.result == "SKIP" for check in checks),
                    "summary": summary(checks),
                },
                indent=2,
                ensure_ascii=False,
            )
        )
        return
    for line in table(HEADERS, [[c.name, c.result, c.detail] for c in checks]):
        print(line)
    print(f"\n{summary(checks)}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description=__doc__.split("\n", 1)[0] if __doc__ else None,
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    source = parser.add_mutually_exclusive_group()
    source.add_argument(
        "--stack", metavar="NAME", help="the deployed stack (its parameters, outputs, resources)"
    )
    source.add_argument(
        "--from-env",
        action="store_true",
        help="the function's environment variables, as set in this shell",
    )
    parser.add_argument(
        "--portfolio-id",
        metavar="ID",
        help="also look this portfolio up (v1: the only read-only way to check the key)",
    )
    parser.add_argument("--json", action="store_true", help="one JSON document instead of a table")
    parser.add_argument("--region", metavar="REGION", help="AWS region (default: the profile's)")
    parser.add_argument("--profile", metavar="NAME", help="AWS profile (default: AWS_PROFILE)")
    return parser


def load(args: argparse.Namespace) -> Configuration:
    if args.stack:
        local = local_aws(args.stack)  # make up's stack: its endpoint; else the account's
        try:
            cloudformation = Aws(
                local, config=_AWS_CONFIG, region=args.region, profile=args.profile
            ).cloudformation()
        except BotoCoreError as exc:
            raise ToolError(f"stack {args.stack}: {describe(exc)}") from exc
        config = from_stack(cloudformation, args.stack)
        config.aws = local
        return config
    if args.from_env:
        return from_environment(dict(os.environ), "environment (--from-env)")
    if LOCAL_STACK_FILE.exists():
        return from_local_file(LOCAL_STACK_FILE)
    raise UsageError(
        "no configuration: pass --stack NAME (a deployed stack) or --from-env (the function's "
        "variables), or start the local stack with `make run ARGS=--keep` (it writes "
        f"{shown(LOCAL_STACK_FILE)})"
    )


def main(argv: Sequence[str] | None = None) -> int:
    return run_main(build_parser(), argv, check)


def check(args: argparse.Namespace) -> int:
    try:
        config = load(args)
    except ToolError as exc:
        # Nothing else can be checked without a configuration: a report of that one row.
        report(
            [Check("configuration", "FAIL", one_line(str(exc)))],
            as_json=args.json,
            api_version=None,
        )
        return EXIT_ERROR
    aws = Aws(config.aws, config=_AWS_CONFIG, region=args.region, profile=args.profile)
    doctor = Doctor(config, aws, portfolio_id=args.portfolio_id)
    try:
        checks = doctor.run()
    except Exception as exc:  # noqa: BLE001 (one redacted line, never a traceback with the key)
        raise ToolError(doctor.redact(one_line(f"{type(exc).__name__}: {exc}"))) from None
    report(checks, as_json=args.json, api_version=config.api_version)
    return EXIT_ERROR if doctor.failed else EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
