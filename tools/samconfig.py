"""`make deploy ENV=...` and `make delete ENV=...`: samconfig.toml's environment checked first.

Before `sam deploy --config-env ENV` (or `sam delete`), says in one message what is missing
instead of letting the SAM CLI fail half-way: an environment samconfig.toml does not have, or
the template's required parameters (those without a default) that neither the environment's
parameter_overrides nor the command line give. `--guided` asks for them, so it passes.

    python -m tools.samconfig deploy ENV [SAM DEPLOY OPTIONS...]
    python -m tools.samconfig delete ENV
"""

from __future__ import annotations

import shlex
import sys
import tomllib
from collections.abc import Mapping, Sequence
from enum import StrEnum
from pathlib import Path
from typing import Any, Final

import yaml

from tools.base import EXIT_OK, EXIT_USAGE

REPO: Final = Path(__file__).resolve().parents[1]
SAMCONFIG: Final = REPO / "samconfig.toml"
TEMPLATE: Final = REPO / "template.yaml"
OVERRIDES: Final = "--parameter-overrides"
GUIDED: Final = "--guided"


class Action(StrEnum):
    DEPLOY = "deploy"
    DELETE = "delete"


class _TemplateLoader(yaml.SafeLoader):
    """YAML with CloudFormation's short forms (!Ref, !Sub, ...) read as plain values: only the
    Parameters section is looked at."""


def _plain(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> object:
    if isinstance(node, yaml.ScalarNode):
        return loader.construct_scalar(node)
    if isinstance(node, yaml.SequenceNode):
        return loader.construct_sequence(node)
    return loader.construct_mapping(node)  # type: ignore[arg-type]


_TemplateLoader.add_multi_constructor("!", _plain)


def environments(samconfig: Path = SAMCONFIG) -> dict[str, Any]:
    """samconfig.toml's environments (default, dev, prod, ...) by name."""
    config = tomllib.loads(samconfig.read_text())
    return {name: value for name, value in config.items() if isinstance(value, dict)}


def required_parameters(template: Path = TEMPLATE) -> list[str]:
    """The template's parameters without a default, in its order: a first deploy must give
    each."""
    loaded = yaml.load(template.read_text(), Loader=_TemplateLoader)  # noqa: S506 - safe loader
    parameters: Mapping[str, Mapping[str, Any]] = loaded["Parameters"]
    return [name for name, spec in parameters.items() if "Default" not in spec]


def given_parameters(environment: Mapping[str, Any], sam_args: Sequence[str]) -> set[str]:
    """The parameters a deploy gives: the command line's --parameter-overrides, which replace
    the environment's parameter_overrides, else those."""
    if OVERRIDES in sam_args:
        after = list(sam_args[sam_args.index(OVERRIDES) + 1 :])
        values = []
        for arg in after:
            if arg.startswith("--"):
                break
            values.append(arg)
        return _names(" ".join(values))
    deploy = environment.get("deploy", {}).get("parameters", {})
    return _names(str(deploy.get("parameter_overrides", "")))


def _names(overrides: str) -> set[str]:
    return {item.split("=", 1)[0] for item in shlex.split(overrides) if "=" in item}


def problem(
    action: Action,
    env: str,
    sam_args: Sequence[str],
    *,
    samconfig: Path = SAMCONFIG,
    template: Path = TEMPLATE,
) -> str | None:
    """What stops `make ACTION ENV=env`, as the message to print; None when nothing does."""
    known = environments(samconfig)
    listed = ", ".join(known)
    if not env:
        return (
            f"make {action} needs ENV, the samconfig.toml environment: make {action} ENV=dev "
            f"(one of: {listed})"
        )
    if env not in known:
        return (
            f"samconfig.toml has no environment {env!r} (it has: {listed}); add its "
            f"[{env}.global.parameters] and [{env}.deploy.parameters] tables "
            "(docs/configuration.md, samconfig.toml: environments)"
        )
    if action is Action.DELETE or GUIDED in sam_args:
        return None
    missing = [
        name
        for name in required_parameters(template)
        if name not in given_parameters(known[env], sam_args)
    ]
    if not missing:
        return None
    names = ", ".join(missing)
    example = " ".join(f"{name}=..." for name in missing)
    return (
        f"the {env} environment does not give {names} (no default in template.yaml), "
        f"which a deploy needs. The first time, answer them once, saved into samconfig.toml's "
        f"[{env}.deploy.parameters]:\n"
        f"    make deploy ENV={env} ARGS=--guided\n"
        f"or give them on each deploy (this replaces the environment's parameter_overrides, "
        f"so repeat its values):\n"
        f"    make deploy ENV={env} ARGS='--parameter-overrides {example} ...'"
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    actions = [action.value for action in Action]
    if not args or args[0] not in actions:
        print(f"usage: python -m tools.samconfig {{{','.join(actions)}}} ENV [SAM OPTIONS...]")
        return EXIT_USAGE
    action = Action(args[0])
    env = args[1] if len(args) > 1 else ""
    message = problem(action, env, args[2:])
    if message is not None:
        print(f"make {action}: {message}", file=sys.stderr)
        return EXIT_USAGE
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
