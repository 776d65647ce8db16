"""Deploys template.yaml to the local AWS as a user deploys it to an account: the boundary policy
an administrator creates (docs/deployment.md, step 3), the API key's secret (step 1), `sam build`
and `sam deploy` with the user's parameters, apart from the endpoint; then the workarounds for
what MiniStack does differently from AWS, each through its API and each said where it is made.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import boto3
from botocore.config import Config as BotoConfig
from botocore.exceptions import ClientError
from cfnlint.decode import cfn_yaml  # type: ignore[import-untyped]

from local.aws.processes import ACCOUNT_ID, REGION, REPO, LocalAwsError

if TYPE_CHECKING:
    from mypy_boto3_cloudformation import CloudFormationClient

SECRET_NAME: Final = "glider/api-key"  # noqa: S105  # nosec B105 - a name, not a value
BOUNDARY_NAME: Final = "glider-rebalance-trigger-boundary"
BOUNDARY_DOCUMENT: Final = REPO / "docs" / "deployer-boundary.json"
TEMPLATE: Final = REPO / "template.yaml"
SAM: Final = Path(sys.executable).parent / "sam"
# MiniStack takes any credentials; these keep boto3 and the SAM CLI from looking for real ones.
ACCESS_KEY_ID: Final = "test"
SECRET_ACCESS_KEY: Final = "test"  # noqa: S105  # nosec B105 - MiniStack's, not a credential
_CLIENT_CONFIG: Final = BotoConfig(
    connect_timeout=5, read_timeout=60, retries={"mode": "standard", "max_attempts": 3}
)


@dataclass(frozen=True)
class LocalAws:
    """The endpoint of a MiniStack on loopback, and how to reach it."""

    endpoint_url: str
    region: str = REGION
    account_id: str = ACCOUNT_ID

    def environment(self) -> dict[str, str]:
        """The standard AWS variables that point a boto3 client, the SAM CLI or a tool at it."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint_url,
            "AWS_ACCESS_KEY_ID": ACCESS_KEY_ID,
            "AWS_SECRET_ACCESS_KEY": SECRET_ACCESS_KEY,
            "AWS_DEFAULT_REGION": self.region,
            "AWS_REGION": self.region,
        }

    def client(self, service: str) -> Any:
        return boto3.session.Session().client(
            service,  # type: ignore[call-overload]
            endpoint_url=self.endpoint_url,
            region_name=self.region,
            aws_access_key_id=ACCESS_KEY_ID,
            aws_secret_access_key=SECRET_ACCESS_KEY,
            config=_CLIENT_CONFIG,
        )


# --- what an administrator and the user do before the first deploy --------------------------


def create_boundary(aws: LocalAws) -> str:
    """The permissions boundary policy, as docs/deployment.md has an administrator create it
    (the account and region filled into docs/deployer-boundary.json); its ARN."""
    document = (
        BOUNDARY_DOCUMENT.read_text(encoding="utf-8")
        .replace("REGION", aws.region)
        .replace("ACCOUNT_ID", aws.account_id)
    )
    iam = aws.client("iam")
    try:
        arn: str = iam.create_policy(PolicyName=BOUNDARY_NAME, PolicyDocument=document)["Policy"][
            "Arn"
        ]
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") != "EntityAlreadyExists":
            raise
        arn = f"arn:aws:iam::{aws.account_id}:policy/{BOUNDARY_NAME}"
    return arn


def put_secret(aws: LocalAws, api_key: str) -> str:
    """The API key's secret, as step 1 of the deployment has the user store it; its full ARN."""
    secrets = aws.client("secretsmanager")
    value = json.dumps({"apiKey": api_key})
    try:
        arn: str = secrets.create_secret(Name=SECRET_NAME, SecretString=value)["ARN"]
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") != "ResourceExistsException":
            raise
        arn = secrets.put_secret_value(SecretId=SECRET_NAME, SecretString=value)["ARN"]
    return arn


# --- sam build, sam deploy -------------------------------------------------------------------


def _sam_environment(aws: LocalAws | None, state_dir: Path) -> dict[str, str]:
    """The SAM CLI's environment: the local AWS's variables, and nothing that leaves the machine
    (no telemetry, and its weekly version check marked as done, in a settings folder of its
    own)."""
    settings = state_dir / "sam-cli"
    settings.mkdir(parents=True, exist_ok=True)
    (settings / "metadata.json").write_text(
        json.dumps({"telemetryEnabled": False, "lastVersionCheck": time.time()}),
        encoding="utf-8",
    )
    environment = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": os.environ.get("HOME", str(state_dir)),
        "LANG": "C.UTF-8",
        "SAM_CLI_TELEMETRY": "0",
        "__SAM_CLI_APP_DIR": str(settings),
    }
    # `sam build` needs a python3.13 (the Makefile exposes pyenv's for it), and the function's
    # and the layer's Makefiles compile their bytecode with BYTECODE_PYTHON (the Makefile's).
    for name in ("PYENV_VERSION", "PYENV_ROOT", "BYTECODE_PYTHON"):
        if name in os.environ:
            environment[name] = os.environ[name]
    if aws is not None:
        environment |= aws.environment()
    return environment


def sam(
    arguments: Sequence[str], *, aws: LocalAws | None, state_dir: Path, log: Path | None
) -> None:
    """One SAM CLI command, run from the repository (so samconfig.toml's defaults apply, as for
    a user), its output appended to `log` (None: to this terminal)."""
    if log is None:
        finished = subprocess.run(  # noqa: S603 - the SAM CLI of .venv
            [str(SAM), *arguments],
            cwd=REPO,
            env=_sam_environment(aws, state_dir),
            stdin=subprocess.DEVNULL,
            check=False,
        )
        if finished.returncode != 0:
            raise LocalAwsError(f"sam {arguments[0]} exited with status {finished.returncode}")
        return
    with log.open("ab") as output:
        output.write(f"$ sam {' '.join(arguments)}\n".encode())
        output.flush()
        finished = subprocess.run(  # noqa: S603 - the SAM CLI of .venv
            [str(SAM), *arguments],
            cwd=REPO,
            env=_sam_environment(aws, state_dir),
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            check=False,
        )
    if finished.returncode != 0:
        tail = "\n".join(log.read_text(encoding="utf-8", errors="replace").splitlines()[-25:])
        raise LocalAwsError(f"sam {arguments[0]} failed (all of it in {log}):\n{tail}")


def build(*, build_dir: Path, cache_dir: Path, state_dir: Path, log: Path) -> Path:
    """`sam build` of template.yaml (cached: a second build takes seconds); the built template."""
    sam(
        [
            "build",
            "--template",
            str(TEMPLATE),
            "--build-dir",
            str(build_dir),
            "--cache-dir",
            str(cache_dir),
            "--cached",
        ],
        aws=None,
        state_dir=state_dir,
        log=log,
    )
    return without_metric_math(build_dir / "template.yaml")


def without_metric_math(template: Path) -> Path:
    """The built template with each metric math alarm on its first metric alone, as JSON beside
    it. MiniStack 1.5.33's CloudFormation refuses an alarm's Properties.Metrics ("metric math
    is not supported") and fails the whole stack; AWS takes it, and MiniStack evaluates no alarm
    either way. (DeadLetterQueueNewLetterAlarm keeps NumberOfMessagesSent, its first.)"""
    document: dict[str, Any] = cfn_yaml.load(str(template))
    changed = False
    for resource in document.get("Resources", {}).values():
        properties = resource.get("Properties", {})
        if resource.get("Type") != "AWS::CloudWatch::Alarm" or "Metrics" not in properties:
            continue
        first = next(m["MetricStat"] for m in properties.pop("Metrics") if "MetricStat" in m)
        properties |= {
            "Namespace": first["Metric"]["Namespace"],
            "MetricName": first["Metric"]["MetricName"],
            "Dimensions": first["Metric"].get("Dimensions", []),
            "Statistic": first["Stat"],
            "Period": first["Period"],
        }
        changed = True
    if not changed:
        return template
    patched = template.with_suffix(".json")
    patched.write_text(json.dumps(document), encoding="utf-8")
    return patched


def deploy_stack(
    aws: LocalAws,
    *,
    template: Path,
    stack: str,
    parameters: Mapping[str, str],
    state_dir: Path,
    log: Path,
) -> None:
    """`sam deploy` as a user runs it without --guided (docs/deployment.md): samconfig.toml's
    defaults (CAPABILITY_IAM, --resolve-s3), the parameters on the command line, no prompt."""
    sam(
        [
            "deploy",
            "--template-file",
            str(template),
            "--stack-name",
            stack,
            "--capabilities",
            "CAPABILITY_IAM",
            "--resolve-s3",
            "--no-confirm-changeset",
            "--no-fail-on-empty-changeset",
            "--parameter-overrides",
            *(f"{name}={value}" for name, value in parameters.items()),
        ],
        aws=aws,
        state_dir=state_dir,
        log=log,
    )


# --- MiniStack's differences, worked around through its API ----------------------------------


def settle(aws: LocalAws, stack: str) -> list[str]:
    """Make the deployed stack behave as it would on AWS where MiniStack 1.5.33 does not; what
    was done, one line each. Run after every deploy (an update undoes the first one)."""
    done = []
    cloudformation: CloudFormationClient = aws.client("cloudformation")
    outputs, parameters = stack_description(aws, stack)
    lambda_ = aws.client("lambda")

    # MiniStack 1.5.33's CloudFormation stores ScalingConfig.MaximumConcurrency from a Ref as a
    # string; its SQS poller then compares it with an int, fails on every pass, and consumes
    # nothing. AWS takes the parameter as the number it is. UpdateEventSourceMapping stores an
    # int (the value it reports: the template's).
    function = outputs["TriggerFunctionName"]
    mappings = lambda_.list_event_source_mappings(FunctionName=function)["EventSourceMappings"]
    for mapping in mappings:
        maximum = mapping.get("ScalingConfig", {}).get("MaximumConcurrency")
        if maximum is not None:
            lambda_.update_event_source_mapping(
                UUID=mapping["UUID"], ScalingConfig={"MaximumConcurrency": int(maximum)}
            )
            queue = mapping["EventSourceArn"].rsplit(":", 1)[-1]
            done.append(f"event source mapping of {queue}: MaximumConcurrency {maximum}, a number")

    # MiniStack 1.5.33 evaluates a condition's Fn::Equals without resolving an Fn::Join in it,
    # so HasSchedule (`!Not [!Equals [!Join ["", !Ref SchedulePortfolioIds], ""]]`) is true
    # even for no ids, and RebalanceSchedule is created with the input {"portfolioIds": [""]}.
    # On AWS the join of an empty list parameter is "" and the stack has no schedule (cfn-lint,
    # which knows the functions Fn::Equals takes, accepts the condition as it is).
    if not parameters.get("SchedulePortfolioIds", "").strip():
        schedule = _resource(cloudformation, stack, "RebalanceSchedule")
        group = outputs.get("ScheduleGroupName")
        if schedule and group:
            scheduler = aws.client("scheduler")
            try:
                scheduler.delete_schedule(Name=schedule, GroupName=group)
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") != "ResourceNotFoundException":
                    raise
            else:
                done.append(f"schedule {schedule} deleted: no SchedulePortfolioIds, no schedule")
    return done


def _resource(cloudformation: CloudFormationClient, stack: str, logical_id: str) -> str | None:
    try:
        detail = cloudformation.describe_stack_resource(
            StackName=stack, LogicalResourceId=logical_id
        )["StackResourceDetail"]
    except ClientError:
        return None
    return detail.get("PhysicalResourceId") or None


def stack_description(aws: LocalAws, stack: str) -> tuple[dict[str, str], dict[str, str]]:
    """The stack's outputs and parameters."""
    cloudformation: CloudFormationClient = aws.client("cloudformation")
    found = cloudformation.describe_stacks(StackName=stack)["Stacks"][0]
    outputs = {o["OutputKey"]: o["OutputValue"] for o in found.get("Outputs", [])}
    parameters = {p["ParameterKey"]: p.get("ParameterValue", "") for p in found["Parameters"]}
    return outputs, parameters
