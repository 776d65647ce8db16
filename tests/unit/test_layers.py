"""The layering rules of docs/architecture.md, read from the imports of every module: the domain
imports no SDK, HTTP client or adapter; inbound adapters never reach HTTP; outbound adapters
never reach inbound ones; only the composition root and the handler name concrete adapters."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "functions/trigger/glider_trigger"
SDKS = ("boto3", "botocore", "urllib3", "aws_lambda_powertools", "mypy_boto3")


def imports_of(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
    return found


def modules(layer: str) -> list[Path]:
    return sorted((PACKAGE / layer).rglob("*.py"))


def reaches(names: set[str], *prefixes: str) -> set[str]:
    return {name for name in names if name.startswith(prefixes)}


@pytest.mark.parametrize("path", modules("domain"), ids=lambda p: p.name)
def test_the_domain_imports_no_sdk_no_http_client_and_no_adapter(path: Path) -> None:
    names = imports_of(path)
    assert not reaches(names, *SDKS), path
    assert not reaches(names, "glider_trigger.inbound", "glider_trigger.outbound"), path
    assert not reaches(names, "glider_trigger.settings", "glider_trigger.composition"), path


@pytest.mark.parametrize("path", modules("inbound"), ids=lambda p: p.name)
def test_inbound_adapters_know_no_http_and_no_outbound_adapter(path: Path) -> None:
    names = imports_of(path)
    assert not reaches(names, "urllib3", "glider_trigger.outbound"), path


@pytest.mark.parametrize("path", modules("outbound"), ids=lambda p: p.name)
def test_outbound_adapters_know_no_lambda_event(path: Path) -> None:
    names = imports_of(path)
    assert not reaches(names, "glider_trigger.inbound", "glider_trigger.composition"), path


def test_every_module_opens_with_a_docstring_saying_its_job() -> None:
    for path in sorted(PACKAGE.rglob("*.py")):
        docstring = ast.get_docstring(ast.parse(path.read_text()))
        assert docstring, path
