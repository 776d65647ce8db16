"""The tools reach `make up`'s local AWS only for the stack it deployed: any other --stack, and
every stack when no local stack is up, goes to the account of the standard AWS environment."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import tools.common
from tools.common import local_aws

LOCAL = {
    "AWS_ENDPOINT_URL": "http://127.0.0.1:4566",
    "AWS_ACCESS_KEY_ID": "test",
    "AWS_SECRET_ACCESS_KEY": "test",
    "AWS_DEFAULT_REGION": "us-east-1",
}


@pytest.fixture
def stack_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "stack.json"
    monkeypatch.setattr(tools.common, "LOCAL_AWS_FILE", path)
    return path


def test_the_local_stack_is_reached_through_the_endpoint_make_up_wrote(stack_file: Path) -> None:
    stack_file.write_text(json.dumps({"stack": "glider-rebalance-trigger-local", "aws": LOCAL}))

    assert local_aws("glider-rebalance-trigger-local") == LOCAL


def test_another_stack_is_an_accounts_even_while_a_local_one_is_up(stack_file: Path) -> None:
    stack_file.write_text(json.dumps({"stack": "glider-rebalance-trigger-local", "aws": LOCAL}))

    assert local_aws("glider-rebalance-trigger-prod") == {}
    assert local_aws(None) == {}


def test_without_a_local_stack_every_stack_is_an_accounts(stack_file: Path) -> None:
    assert local_aws("glider-rebalance-trigger-local") == {}
    stack_file.write_text("not json")
    assert local_aws("glider-rebalance-trigger-local") == {}


def test_only_aws_variables_are_taken_from_the_file(stack_file: Path) -> None:
    values = LOCAL | {"PATH": "/elsewhere", "AWS_PROFILE": 3}
    stack_file.write_text(json.dumps({"stack": "s", "aws": values}))

    assert local_aws("s") == LOCAL
