"""The local AWS's two background processes, MiniStack and the Glider emulator: started on
127.0.0.1 on free ports, waited for, and stopped by their process ids (never by name).

Each runs in a session of its own, with its output in a log file, so that `make up` can leave it
running; the deployed-stack test starts the same MiniStack and stops it itself.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final

REPO: Final = Path(__file__).resolve().parents[2]
# `make ministack` installs it here (Makefile, MINISTACK_VERSION); LOCAL_AWS_PYTHON overrides it.
MINISTACK_PYTHON: Final = REPO / ".venv" / "tools" / "ministack" / "bin" / "python"
LAUNCHER: Final = Path(__file__).resolve().parent / "launcher.py"
LOOPBACK: Final = "127.0.0.1"
REGION: Final = "us-east-1"
# MiniStack makes a 12-digit access key the account; other keys get MINISTACK_ACCOUNT_ID.
ACCOUNT_ID: Final = "123456789012"
READY_SECONDS: Final = 60.0
STOP_SECONDS: Final = 10.0
_LISTENING: Final = re.compile(r"Glider emulator listening on (http://\S+)")


class LocalAwsError(Exception):
    """The local AWS could not be started, deployed or stopped: the message says why."""


@dataclass(frozen=True)
class Started:
    """A background process: what `make down` needs to stop it, and where its output goes."""

    name: str
    pid: int
    url: str
    log: Path


def ministack_python() -> Path:
    return Path(os.environ.get("LOCAL_AWS_PYTHON") or MINISTACK_PYTHON)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((LOOPBACK, 0))
        port: int = probe.getsockname()[1]
    return port


def _base_environment(state_dir: Path) -> dict[str, str]:
    """What a background process inherits: nothing of the caller's AWS or proxy settings (the
    local functions inherit MiniStack's environment: see start_ministack)."""
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(state_dir),
        "LANG": "C.UTF-8",
        "TMPDIR": str(state_dir / "tmp"),
    }


def start_ministack(state_dir: Path) -> Started:
    """MiniStack on 127.0.0.1 and a free port, through the launcher (local/aws/launcher.py)."""
    python = ministack_python()
    if not python.exists():
        raise LocalAwsError(f"MiniStack is not installed ({python}): run `make ministack`")
    (state_dir / "tmp").mkdir(parents=True, exist_ok=True)
    log = state_dir / "ministack.log"
    port = free_port()
    environment = _base_environment(state_dir) | {
        # MiniStack 1.5.33 listens on 0.0.0.0 unless told otherwise: loopback only.
        "BIND_HOST": LOOPBACK,
        "GATEWAY_PORT": str(port),
        # The name in the URLs it hands out (queue URLs): the address it listens on, so that no
        # client tries localhost's IPv6 address first.
        "MINISTACK_HOST": LOOPBACK,
        # By default it also opens an MQTT port (8883) for IoT and an SFTP port: neither.
        "IOT_MTLS_ENABLED": "0",
        "SFTP_ENABLED": "0",
        "MINISTACK_REGION": REGION,
        "MINISTACK_ACCOUNT_ID": ACCOUNT_ID,
        "PERSIST_STATE": "0",
        "LOG_LEVEL": "INFO",
    }
    # The function runs as a host process that inherits this environment (MiniStack 1.5.33,
    # core/lambda_runtime.py): it gets these values, never the caller's.
    process = _spawn([str(python), str(LAUNCHER)], environment, log, cwd=state_dir)
    url = f"http://{LOOPBACK}:{port}"
    started = Started("ministack", process.pid, url, log)
    _wait_until(
        lambda: _healthy(url),
        process,
        f"MiniStack did not answer on {url} within {READY_SECONDS:.0f} s (log: {log})",
    )
    return started


def start_emulator(
    state_dir: Path, *, api_key: str, portfolios_file: Path, python: str = sys.executable
) -> Started:
    """The Glider emulator (python -m local.fixtures.glider_emulator) on 127.0.0.1 and a free
    port; the key comes in its environment (not on its command line, where `ps` shows it)."""
    log = state_dir / "glider-emulator.log"
    environment = _base_environment(state_dir) | {
        "GLIDER_API_KEY": api_key,
        "PYTHONPATH": str(REPO),
        "PYTHONUNBUFFERED": "1",
    }
    command = [
        python,
        "-m",
        "local.fixtures.glider_emulator",
        "--host",
        LOOPBACK,
        "--port",
        "0",
        "--portfolios-file",
        str(portfolios_file),
    ]
    process = _spawn(command, environment, log, cwd=REPO)
    found: list[str] = []

    def listening() -> bool:
        match = _LISTENING.search(log.read_text(encoding="utf-8", errors="replace"))
        if match:
            found.append(match.group(1))
        return bool(match)

    _wait_until(listening, process, f"the Glider emulator did not start (log: {log})")
    return Started("glider-emulator", process.pid, found[0], log)


def _spawn(
    command: list[str], environment: Mapping[str, str], log: Path, *, cwd: Path
) -> subprocess.Popen[bytes]:
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("wb") as output:
        return subprocess.Popen(  # noqa: S603 - our own interpreters and modules
            command,
            cwd=cwd,
            env=dict(environment),
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # outlives `make up`; a Ctrl-C in its terminal does not stop it
        )


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/_ministack/health", timeout=2) as answer:  # noqa: S310
            return bool(answer.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def _wait_until(
    ready: Callable[[], bool],
    process: subprocess.Popen[bytes],
    failure: str,
    seconds: float = READY_SECONDS,
) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if ready():
            return
        if process.poll() is not None:
            raise LocalAwsError(f"{failure}: it exited with status {process.returncode}")
        time.sleep(0.2)
    stop(process.pid)
    raise LocalAwsError(failure)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def stop(pid: int, *, seconds: float = STOP_SECONDS) -> None:
    """SIGTERM to the process group this module started (the process and, for MiniStack, the
    functions' host processes it spawned), then SIGKILL after `seconds`."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        if not alive(pid):
            return
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, 0)
