"""`make deploy ENV=...`, `make delete ENV=...` and `make run`'s install: what they run, and what
samconfig.toml's environments give a first deploy."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tools import samconfig
from tools.samconfig import Action

REPO = Path(__file__).resolve().parents[2]


def make_n(*args: str) -> list[str]:
    """The commands make would run (nothing run), with a .venv that does not exist yet."""
    make = shutil.which("make")
    assert make is not None
    done = subprocess.run(  # noqa: S603 - make -n on this repository's Makefile
        [make, "-n", "--no-print-directory", *args, "VENV=/nonexistent/venv"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.splitlines()


def test_samconfig_has_a_stack_per_environment() -> None:
    environments = samconfig.environments()

    assert {"default", "dev", "prod"} <= set(environments)
    names = [env["global"]["parameters"]["stack_name"] for env in environments.values()]
    assert len(set(names)) == len(names)
    for env in environments.values():
        assert env["deploy"]["parameters"]["capabilities"] == "CAPABILITY_IAM"


def test_a_first_deploy_needs_the_secret_and_the_boundary_and_nothing_else() -> None:
    assert samconfig.required_parameters() == ["GliderApiKeySecretArn", "PermissionsBoundaryArn"]


@pytest.mark.parametrize("env", ["dev", "prod"])
def test_deploying_an_environment_without_them_names_them_and_the_way_to_give_them(
    env: str,
) -> None:
    message = samconfig.problem(Action.DEPLOY, env, [])

    assert message is not None
    assert "GliderApiKeySecretArn, PermissionsBoundaryArn" in message
    assert f"make deploy ENV={env} ARGS=--guided" in message


def test_guided_or_given_on_the_command_line_nothing_is_missing() -> None:
    given = [
        "--parameter-overrides",
        "GliderApiKeySecretArn=arn:x PermissionsBoundaryArn=arn:y",
        "--no-confirm-changeset",
    ]
    assert samconfig.problem(Action.DEPLOY, "dev", ["--guided"]) is None
    assert samconfig.problem(Action.DEPLOY, "dev", given) is None
    # The command line's overrides replace the environment's: one of two is still missing.
    partial = samconfig.problem(Action.DEPLOY, "dev", ["--parameter-overrides", "LogLevel=INFO"])
    assert partial is not None
    assert "GliderApiKeySecretArn" in partial


def test_an_unknown_or_missing_environment_is_named_with_those_there_are() -> None:
    unknown = samconfig.problem(Action.DELETE, "staging", [])
    missing = samconfig.problem(Action.DEPLOY, "", [])

    assert unknown is not None
    assert "no environment 'staging' (it has: default, dev, prod)" in unknown
    assert missing is not None
    assert "make deploy ENV=dev" in missing
    assert samconfig.problem(Action.DELETE, "dev", []) is None
    assert samconfig.main(["deploy", "staging"]) == 2


def test_make_deploy_builds_and_deploys_the_environment_with_the_venvs_sam() -> None:
    lines = make_n("deploy", "ENV=dev")

    assert lines[-3:] == [
        '/nonexistent/venv/bin/python -m tools.samconfig deploy "dev" ',
        "/nonexistent/venv/bin/sam build --template template.yaml --config-env dev",
        "/nonexistent/venv/bin/sam deploy --config-env dev ",
    ]


def test_make_delete_deletes_the_environments_stack_with_its_confirmation() -> None:
    lines = make_n("delete", "ENV=dev")

    assert lines[-1] == "/nonexistent/venv/bin/sam delete --config-env dev "
    assert "--no-prompts" not in lines[-1]


def test_make_run_installs_only_what_it_runs_on() -> None:
    lines = make_n("run")

    installs = [line for line in lines if " -m pip install" in line]
    assert any("-r requirements-run.txt" in line for line in installs)
    assert any("--no-deps -e ." in line for line in installs)  # the console script
    assert not any("requirements-dev.txt" in line for line in installs)
    assert "requirements-run.txt" in (REPO / "requirements-dev.txt").read_text()
