"""`glider-trigger`, the installed console script, run as an operator runs it (a process of its
own, against the moto server): each subcommand is reached, and the documented exit codes reach
the shell, as does the tool's own code through its make target."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from local.fixtures.stack import FAKE_AWS_CREDENTIALS, REGION, Deployment, MotoServer
from tools.cli import SUBCOMMANDS

REPO = Path(__file__).resolve().parents[2]
SCRIPT = Path(sys.executable).parent / "glider-trigger"


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603 - our own console script, fixed arguments
        [str(SCRIPT), *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=env or dict(os.environ),
        check=False,
    )


@pytest.fixture
def aws_env(moto_server: MotoServer) -> dict[str, str]:
    return {
        **os.environ,
        **FAKE_AWS_CREDENTIALS,
        "AWS_ENDPOINT_URL": moto_server.endpoint_url,
        "AWS_DEFAULT_REGION": REGION,
    }


def test_make_install_put_the_console_script_in_the_venv() -> None:
    assert SCRIPT.exists(), f"{SCRIPT}: make install did not install the console script"


# Commands with commands of their own take the stack options on those.
NESTED = {"schedules": "list", "dlq": "list"}


def test_every_subcommand_answers_help_with_exit_0_and_takes_the_stack_options() -> None:
    for command in SUBCOMMANDS:
        done = run(command, "--help")
        assert done.returncode == 0, (command, done.stderr)
        assert f"glider-trigger {command}" in done.stdout, command
        if command in NESTED:
            done = run(command, NESTED[command], "--help")
            assert done.returncode == 0, (command, done.stderr)
        for option in ("--stack", "--region", "--profile", "--json"):
            assert option in done.stdout, (command, option)


def test_no_command_or_an_unknown_one_is_a_usage_error_2() -> None:
    assert run().returncode == 2
    unknown = run("rebalance-everything")
    assert unknown.returncode == 2
    assert "unknown command 'rebalance-everything'" in unknown.stderr


def test_an_aws_refusal_is_one_line_and_exit_1(aws_env: dict[str, str]) -> None:
    missing = aws_env["AWS_ENDPOINT_URL"] + "/123456789012/no-such-queue"
    done = run("dlq", "list", "--dlq-url", missing, "--work-queue-url", missing, env=aws_env)

    assert done.returncode == 1
    [line] = done.stderr.splitlines()
    assert line.startswith("glider-trigger dlq: error: ")
    assert "Traceback" not in done.stderr


def test_a_missing_region_names_the_option(aws_env: dict[str, str]) -> None:
    env = {k: v for k, v in aws_env.items() if k not in ("AWS_DEFAULT_REGION", "AWS_REGION")}
    env["AWS_CONFIG_FILE"] = "/dev/null"  # no profile's region either
    done = run("dlq", "list", "--stack", "any-stack", env=env)

    assert done.returncode == 1
    assert "pass --region" in done.stderr


def test_region_from_the_command_line_reaches_aws(
    aws_env: dict[str, str], deployment: Deployment
) -> None:
    env = {k: v for k, v in aws_env.items() if k not in ("AWS_DEFAULT_REGION", "AWS_REGION")}
    env["AWS_CONFIG_FILE"] = "/dev/null"
    done = run(
        "dlq",
        "list",
        "--region",
        REGION,
        "--dlq-url",
        deployment.dlq.url,
        "--work-queue-url",
        deployment.work_queue.url,
        env=env,
    )

    assert done.returncode == 0, done.stderr


def test_make_passes_the_tools_own_exit_code_on_before_its_own_2() -> None:
    done = subprocess.run(
        ["make", "--no-print-directory", "dlq", "ARGS=no-such-command"],  # noqa: S607
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
        check=False,
    )

    assert done.returncode == 2  # make's, whatever the recipe's
    assert "glider-trigger exited 2" in done.stderr


def test_the_variables_of_before_are_refused_not_ignored() -> None:
    done = subprocess.run(
        ["make", "--no-print-directory", "run", "RUN_ARGS=--keep"],  # noqa: S607
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
        check=False,
    )

    assert done.returncode == 2
    assert "every target reads ARGS" in done.stderr
