"""`make up`, `make down`, `make logs`: the real template deployed to a local AWS, and removed.

    python -m local.aws up      # build, start MiniStack and the Glider emulator, deploy, print
    python -m local.aws down    # stop both: the stack, its queues and their messages are gone
    python -m local.aws logs [--tail ...]   # sam logs of the local stack's function

`up` writes local/.up/stack.json (gitignored) while the stack is up: the operator tools read it
when --stack names the local stack (tools/common.py), so `make trigger ARGS='--stack
glider-rebalance-trigger-local ...'` needs no variable exported. A second `up` while the stack is
up builds and deploys again (an update, as a user's second `sam deploy`).
"""

from __future__ import annotations

import argparse
import json
import secrets
import shutil
import sys
import time
from pathlib import Path
from typing import Any, Final

from local.aws.deploy import (
    LocalAws,
    build,
    create_boundary,
    deploy_stack,
    put_secret,
    sam,
    settle,
    stack_description,
)
from local.aws.launcher import MINISTACK_VERSION
from local.aws.processes import (
    REPO,
    LocalAwsError,
    Started,
    alive,
    start_emulator,
    start_ministack,
    stop,
)
from tools.common import shown

STACK_NAME: Final = "glider-rebalance-trigger-local"
STATE_DIR: Final = REPO / "local" / ".up"
STATE_FILE: Final = STATE_DIR / "stack.json"
PORTFOLIOS_FILE: Final = STATE_DIR / "portfolios.txt"
# What `sam build` builds into by default, and `sam deploy` finds: a user's own build.
BUILD_DIR: Final = REPO / ".aws-sam" / "build"
CACHE_DIR: Final = REPO / ".aws-sam" / "cache"
UPSTREAM_SOURCE: Final = "com.example.treasury"
PORTFOLIOS: Final = ("port_abc123", "port_def456")
# What the process's command line holds, so that `down` never stops a process that reused a pid.
_COMMAND_MARKS: Final = {"ministack": "launcher.py", "emulator": "glider_emulator"}


def parameters(*, secret_arn: str, boundary_arn: str, api_url: str) -> dict[str, str]:
    """What a user passes to `sam deploy` (README, First deployment): the three required ones,
    the API's URL (here the emulator), and samconfig.toml's default LogLevel, which a
    --parameter-overrides on the command line replaces."""
    return {
        "GliderApiKeySecretArn": secret_arn,
        "PermissionsBoundaryArn": boundary_arn,
        "UpstreamEventSource": UPSTREAM_SOURCE,
        "GliderApiBaseUrl": api_url,
        "LogLevel": "INFO",
    }


def read_state(path: Path = STATE_FILE) -> dict[str, Any] | None:
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return state if isinstance(state, dict) else None


def _running(state: dict[str, Any], name: str) -> bool:
    process = state.get(name) or {}
    pid = process.get("pid")
    if not isinstance(pid, int) or not alive(pid):
        return False
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return True  # no /proc: trust the pid
    return _COMMAND_MARKS[name] in command


def up() -> int:
    started_at = time.monotonic()
    state = read_state()
    warm = state is not None and _running(state, "ministack") and _running(state, "emulator")
    if state is not None and not warm:
        print("A local stack was left half up: stopping what is left of it first.")
        down(quiet=True)
        state = None
    STATE_DIR.mkdir(parents=True, exist_ok=True)
    log = STATE_DIR / "deploy.log"
    log.write_text("", encoding="utf-8")
    try:
        if state is None:
            state = _start(log)
        aws = LocalAws(state["ministack"]["url"])
        print(f"sam build (log: {_shown(log)}) ...", flush=True)
        template = build(build_dir=BUILD_DIR, cache_dir=CACHE_DIR, state_dir=STATE_DIR, log=log)
        print(f"sam deploy --stack-name {STACK_NAME} to {aws.endpoint_url} ...", flush=True)
        deploy_stack(
            aws,
            template=template,
            stack=STACK_NAME,
            parameters=parameters(
                secret_arn=state["secret_arn"],
                boundary_arn=state["boundary_arn"],
                api_url=state["emulator"]["url"],
            ),
            state_dir=STATE_DIR,
            log=log,
        )
        for line in settle(aws, STACK_NAME):
            print(f"  MiniStack {MINISTACK_VERSION} workaround: {line}")
    except LocalAwsError as exc:
        print(f"make up: {exc}", file=sys.stderr)
        if state is not None and not warm:
            print("make up: the local AWS keeps running for a look: `make down` stops it.")
        return 1
    _print_summary(aws, state, seconds=time.monotonic() - started_at, warm=warm)
    return 0


def _start(log: Path) -> dict[str, Any]:
    """MiniStack and the emulator started, the boundary and the secret created: the state."""
    print(f"Starting MiniStack {MINISTACK_VERSION} and the Glider emulator on 127.0.0.1 ...")
    if not PORTFOLIOS_FILE.exists():
        PORTFOLIOS_FILE.write_text(
            "# The Glider emulator's portfolios, one id a line: add one, and it exists at once.\n"
            + "".join(f"{portfolio}\n" for portfolio in PORTFOLIOS),
            encoding="utf-8",
        )
    ministack = start_ministack(STATE_DIR)
    state: dict[str, Any] = {"stack": STACK_NAME, "ministack": _as_dict(ministack)}
    _write_state(state)  # from here on, `make down` can stop what was started
    # A key of this run only: the emulator and the local secret are the only places it goes.
    api_key = f"glider-local-{secrets.token_urlsafe(18)}"
    emulator = start_emulator(STATE_DIR, api_key=api_key, portfolios_file=PORTFOLIOS_FILE)
    state["emulator"] = _as_dict(emulator)
    _write_state(state)
    aws = LocalAws(ministack.url)
    state["boundary_arn"] = create_boundary(aws)
    state["secret_arn"] = put_secret(aws, api_key)
    state["region"] = aws.region
    state["aws"] = aws.environment()
    _write_state(state)
    with log.open("a", encoding="utf-8") as output:
        output.write(f"boundary policy: {state['boundary_arn']}\nsecret: {state['secret_arn']}\n")
    return state


def _as_dict(process: Started) -> dict[str, Any]:
    return {"pid": process.pid, "url": process.url, "log": str(process.log)}


def _write_state(state: dict[str, Any]) -> None:
    STATE_FILE.write_text(json.dumps(state, indent=2) + "\n", encoding="utf-8")


def _shown(path: Path | str) -> str:
    return str(shown(Path(path)))


def _print_summary(aws: LocalAws, state: dict[str, Any], *, seconds: float, warm: bool) -> None:
    outputs, _ = stack_description(aws, STACK_NAME)
    how = "updated" if warm else "deployed"
    stack = STACK_NAME
    print(
        f"\nStack {stack} {how} in {seconds:.0f} s on the local AWS (MiniStack "
        f"{MINISTACK_VERSION}, {aws.endpoint_url}); the tools find it by --stack {stack}."
    )
    print(f"  function      {outputs.get('TriggerFunctionName', '?')}")
    print(f"  work queue    {outputs.get('WorkQueueUrl', '?')}")
    print(f"  Glider API    the emulator at {state['emulator']['url']}, portfolios in "
          f"{_shown(PORTFOLIOS_FILE)} (add a line, and Glider knows that portfolio)")  # fmt: skip
    print("Logs:")
    print("  make logs                       the function's log group (sam logs; ARGS=--tail)")
    print(f"  {_shown(state['ministack']['log']):<31} MiniStack: every invocation's output too")
    print(f"  {_shown(state['emulator']['log']):<31} the Glider emulator")
    print(f"  {_shown(STATE_DIR / 'deploy.log'):<31} sam build and sam deploy")
    print("Try:")
    print(f"  make trigger ARGS='--stack {stack} --portfolio-ids port_abc123,port_def456 --wait'")
    print(
        f"  make schedules ARGS='add --stack {stack} --name every-minute "
        '--expression "rate(1 minute)" --portfolio-ids port_abc123\''
    )
    print(f"  make dlq ARGS='list --stack {stack}'")
    print("Stop it all: make down")


def down(*, quiet: bool = False) -> int:
    state = read_state()
    if state is None:
        if not quiet:
            print("Nothing to stop: no local stack is up (local/.up/stack.json).")
        return 0
    for name in ("emulator", "ministack"):
        if _running(state, name):
            pid = state[name]["pid"]
            stop(pid)
            if not quiet:
                print(f"Stopped {name} (pid {pid}).")
    # MiniStack keeps nothing on disk: with it stopped, the stack, its queues and their messages
    # are gone; what is left is this folder (logs, the emulator's portfolios).
    shutil.rmtree(STATE_DIR, ignore_errors=True)
    if not quiet:
        print(f"Removed the local stack {state.get('stack', STACK_NAME)} and {_shown(STATE_DIR)}.")
    return 0


def logs(arguments: list[str]) -> int:
    state = read_state()
    if state is None or not _running(state, "ministack"):
        print("make logs: no local stack is up: `make up` first.", file=sys.stderr)
        return 1
    aws = LocalAws(state["ministack"]["url"])
    try:
        command = ["logs", "--stack-name", STACK_NAME, *arguments]
        sam(command, aws=aws, state_dir=STATE_DIR, log=None)
    except LocalAwsError as exc:
        print(f"make logs: {exc}", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m local.aws", description=__doc__)
    parser.add_argument("command", choices=["up", "down", "logs"])
    args, rest = parser.parse_known_args(argv)
    if args.command == "up":
        return up()
    if args.command == "down":
        return down()
    return logs(rest)
