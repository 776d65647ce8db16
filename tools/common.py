"""What the operator tools share: the local stack's file, the AWS clients (from the standard AWS
environment, or from the local stack's AWS_* values), and reading a CloudFormation stack (its
outputs, parameters and resources).

The exit codes, the one-line errors and the table live in tools/base.py.
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Final

import boto3
from botocore.config import Config as BotoConfig
from botocore.exceptions import BotoCoreError, ClientError

from glider_trigger.domain.errors import InvalidPortfolioIdError
from glider_trigger.domain.trigger_input import validate_portfolio_id
from glider_trigger.settings import Settings
from tools.base import (
    ToolError,
    UsageError,
    describe,
)

if TYPE_CHECKING:
    from mypy_boto3_cloudformation import CloudFormationClient
    from mypy_boto3_cloudformation.type_defs import StackTypeDef
    from mypy_boto3_cloudwatch import CloudWatchClient
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_events import EventBridgeClient
    from mypy_boto3_lambda import LambdaClient
    from mypy_boto3_scheduler import EventBridgeSchedulerClient
    from mypy_boto3_secretsmanager import SecretsManagerClient
    from mypy_boto3_sqs import SQSClient
    from mypy_boto3_sqs.literals import QueueAttributeNameType
    from mypy_boto3_sts import STSClient

REPO: Final = Path(__file__).resolve().parent.parent
# Written by `make run ARGS=--keep` (local/demo/run.py) while its stack is up. Each tool
# imports it as a module attribute of its own, so that tests can point it elsewhere.
LOCAL_STACK_FILE = REPO / "local" / ".stack.json"
# The function's idempotency table, a resource of the stack (the template has no output for it:
# its physical id is the table's name).
TABLE_RESOURCE: Final = "IdempotencyTable"
# Portfolios one command may name (a trigger run, a schedule's input).
MAX_PORTFOLIOS: Final = 1000
# Written by `make up` (local/aws/up.py) while its local AWS is up: the stack it deployed, and
# the endpoint and credentials that reach it. Read (at each call, so that tests can point it
# elsewhere) only when --stack names that stack: any other stack is an account's, reached through
# the standard AWS environment as before.
LOCAL_AWS_FILE = REPO / "local" / ".up" / "stack.json"
UP_HINT: Final = " (is `make up`'s local AWS still up? `make down` clears what a killed one left)"
LOCAL_HINT: Final = (
    " (is `make run ARGS=--keep` still running? A killed run leaves local/.stack.json behind)"
)


# --- the local stack -------------------------------------------------------------------------


def read_local_stack(path: Path) -> dict[str, str]:
    """The function's environment as `make run ARGS=--keep` wrote it (its AWS_* values name
    the moto server and its fake credentials)."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ToolError(f"{path}: {type(exc).__name__}: {exc}") from exc
    env = document.get("environment") if isinstance(document, dict) else None
    if not isinstance(env, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in env.items()
    ):
        raise ToolError(f"{path} is not what `make run ARGS=--keep` writes (no environment)")
    return env


def local_aws(stack: str | None) -> dict[str, str]:
    """The AWS_* values of `make up`'s local AWS when `stack` is the stack it deployed there;
    {} otherwise (and when no local stack is up): the standard AWS environment then applies."""
    if not stack:
        return {}
    try:
        document = json.loads(LOCAL_AWS_FILE.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(document, dict) or document.get("stack") != stack:
        return {}
    values = document.get("aws")
    if not isinstance(values, dict):
        return {}
    return {k: v for k, v in values.items() if isinstance(v, str) and k.startswith("AWS_")}


def aws_values(env: Mapping[str, str]) -> dict[str, str]:
    """The AWS_* values of an environment: what the clients of the local stack are built with."""
    return {name: value for name, value in env.items() if name.startswith("AWS_")}


def shown(path: Path) -> Path:
    """The path as the user knows it: relative to the repository when inside it."""
    return path.relative_to(REPO) if path.is_relative_to(REPO) else path


# --- AWS clients -----------------------------------------------------------------------------


class Aws:
    """The clients, from the standard AWS environment (or --region and --profile), or from the
    local stack's AWS_* values. Built on first use (a bad profile fails the call that needs it,
    not the tool's start)."""

    def __init__(
        self,
        aws: Mapping[str, str],
        *,
        config: BotoConfig | None = None,
        region: str | None = None,
        profile: str | None = None,
    ) -> None:
        self._aws = aws
        self._config = config
        # A local stack has one region and its own credentials: --region/--profile are for an
        # account's.
        self._wanted_region = None if aws else region
        self._profile = None if aws else profile
        self._endpoint = aws.get("AWS_ENDPOINT_URL") or None
        self._built: boto3.session.Session | None = None
        self._region: str | None = None

    @property
    def local(self) -> bool:
        return bool(self._aws)

    @property
    def region(self) -> str | None:
        self._session()
        return self._region

    def _session(self) -> boto3.session.Session:
        if self._built is None:
            try:
                self._built = boto3.session.Session(
                    aws_access_key_id=self._aws.get("AWS_ACCESS_KEY_ID"),
                    aws_secret_access_key=self._aws.get("AWS_SECRET_ACCESS_KEY"),
                    aws_session_token=self._aws.get("AWS_SESSION_TOKEN"),
                    region_name=self._wanted_region
                    or self._aws.get("AWS_DEFAULT_REGION")
                    or self._aws.get("AWS_REGION"),
                    profile_name=self._profile,
                )
            except BotoCoreError as exc:  # ProfileNotFound
                raise ToolError(describe(exc)) from exc
            # botocore reads AWS_DEFAULT_REGION only; AWS_REGION is what Lambda and most tools
            # set.
            self._region = self._built.region_name or os.environ.get("AWS_REGION") or None
        return self._built

    def secrets(self) -> SecretsManagerClient:
        session = self._session()  # sets the region
        return session.client(
            "secretsmanager", region_name=self._region, endpoint_url=self._endpoint,
            config=self._config,
        )  # fmt: skip

    def sqs(self) -> SQSClient:
        session = self._session()
        return session.client(
            "sqs", region_name=self._region, endpoint_url=self._endpoint, config=self._config
        )

    def dynamodb(self) -> DynamoDBClient:
        session = self._session()
        return session.client(
            "dynamodb", region_name=self._region, endpoint_url=self._endpoint, config=self._config
        )

    def cloudformation(self) -> CloudFormationClient:
        session = self._session()
        return session.client(
            "cloudformation", region_name=self._region, endpoint_url=self._endpoint,
            config=self._config,
        )  # fmt: skip

    def events(self) -> EventBridgeClient:
        session = self._session()
        return session.client(
            "events", region_name=self._region, endpoint_url=self._endpoint, config=self._config
        )

    def scheduler(self) -> EventBridgeSchedulerClient:
        session = self._session()
        return session.client(
            "scheduler", region_name=self._region, endpoint_url=self._endpoint,
            config=self._config,
        )  # fmt: skip

    def lambda_(self) -> LambdaClient:
        session = self._session()
        return session.client(
            "lambda", region_name=self._region, endpoint_url=self._endpoint, config=self._config
        )

    def cloudwatch(self) -> CloudWatchClient:
        session = self._session()
        return session.client(
            "cloudwatch", region_name=self._region, endpoint_url=self._endpoint,
            config=self._config,
        )  # fmt: skip

    def sts(self) -> STSClient:
        session = self._session()
        return session.client(
            "sts", region_name=self._region, endpoint_url=self._endpoint, config=self._config
        )


def aws_for(args: argparse.Namespace, *, config: BotoConfig | None = None) -> Aws:
    """The clients for a subcommand's --stack, --region and --profile (tools/base.py's
    add_stack_options): make up's endpoint for its stack, else the account's."""
    stack = getattr(args, "stack", None)
    return Aws(
        local_aws(stack),
        config=config,
        region=getattr(args, "region", None),
        profile=getattr(args, "profile", None),
    )


# --- a CloudFormation stack ------------------------------------------------------------------


def describe_stack(cloudformation: CloudFormationClient, stack: str) -> StackTypeDef:
    try:
        stacks = cloudformation.describe_stacks(StackName=stack)["Stacks"]
    except (ClientError, BotoCoreError) as exc:
        raise ToolError(f"stack {stack}: {describe(exc)}") from exc
    if not stacks:
        raise ToolError(f"stack {stack}: not found")
    return stacks[0]


def outputs_of(found: StackTypeDef) -> dict[str, str]:
    return {
        o["OutputKey"]: o["OutputValue"]
        for o in found.get("Outputs", [])
        if "OutputKey" in o and "OutputValue" in o
    }


def parameters_of(found: StackTypeDef) -> dict[str, str]:
    return {
        p["ParameterKey"]: p.get("ParameterValue", "")
        for p in found.get("Parameters", [])
        if "ParameterKey" in p
    }


def parameter_flag(parameters: Mapping[str, str], name: str, *, default: bool) -> bool:
    """A stack's "true"/"false" parameter as the function reads it; absent or empty (a stack
    deployed before the parameter existed): the function's default."""
    text = parameters.get(name, "").strip().lower()
    return default if not text else text == "true"


def stack_resource(cloudformation: CloudFormationClient, stack: str, logical_id: str) -> str | None:
    """The physical id of one of the stack's resources (a table's or a schedule's name, a role's
    name); None when the stack has no such resource (a condition left it out)."""
    try:
        resource = cloudformation.describe_stack_resource(
            StackName=stack, LogicalResourceId=logical_id
        )["StackResourceDetail"]
    except ClientError as exc:
        if error_code(exc) == "ValidationError":  # no such resource in the stack
            return None
        raise ToolError(describe(exc)) from exc
    except BotoCoreError as exc:
        raise ToolError(describe(exc)) from exc
    return resource.get("PhysicalResourceId") or None


def queue_attributes(sqs: SQSClient, url: str, *names: QueueAttributeNameType) -> dict[str, str]:
    """A queue's attributes by name; ToolError naming the queue when they cannot be read."""
    try:
        found = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=list(names))
    except (ClientError, BotoCoreError) as exc:
        raise ToolError(f"queue {url}: {describe(exc)}") from exc
    return {str(name): value for name, value in found["Attributes"].items()}


def retention_seconds(sqs: SQSClient, url: str) -> int:
    """The queue's MessageRetentionPeriod (the template's work queue's when it says none)."""
    attributes = queue_attributes(sqs, url, "MessageRetentionPeriod")
    return int(attributes.get("MessageRetentionPeriod", Settings.work_queue_retention_seconds))


def error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", "Unknown"))


# --- portfolio ids ---------------------------------------------------------------------------


def portfolio_ids(text: str) -> list[str]:
    """`a,b` as ids the function accepts (its own validation), in order, without repeats;
    UsageError naming every id it would refuse."""
    ids: list[str] = []
    problems = []
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        try:
            validate_portfolio_id(item)
        except InvalidPortfolioIdError as exc:
            problems.append(str(exc))
            continue
        if item not in ids:
            ids.append(item)
    if problems:
        raise UsageError("; ".join(problems))
    if not ids:
        raise UsageError("--portfolio-ids names no portfolio")
    if len(ids) > MAX_PORTFOLIOS:
        raise UsageError(f"at most {MAX_PORTFOLIOS} portfolios, got {len(ids)}")
    return ids
