"""The deployable artifact: what `sam build` made (the function and its layer), run under
python3.13 with nothing on its path but those two and the boto3 the Lambda runtime ships, every
sample event through it, against the moto server and the Glider emulator. It fails if the layer
misses a dependency, or the code imports something only the development environment has, or a
cold start compiles any of the function's or the layer's sources: their bytecode ships beside
them, for the runtime's Python, whatever the files' timestamps, with the sources kept.

Run by `make artifact` (part of `make test`), which builds the artifact and passes its place."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from local.fixtures.glider_emulator import GliderEmulator
from local.fixtures.stack import Deployment

REPO = Path(__file__).resolve().parents[2]
EVENTS = REPO / "events"
DRIVER = Path(__file__).with_name("driver.py")
BYTECODE = Path(__file__).with_name("bytecode.py")
# -B: nothing compiled is written back, as on Lambda, whose code directories are read-only.
ARTIFACT_PYTHON_FLAGS = ("-I", "-S", "-B")
PINS = Path(__file__).with_name("runtime-requirements.txt")


def required(name: str) -> str:
    value = os.environ.get(name)
    if not value:
        pytest.fail(f"{name} is not set: run this test through `make artifact`")
    return value


def built(part: str) -> Path:
    """The function's directory (Lambda's /var/task) or the layer's python/ (/opt/python)."""
    build = Path(required("ARTIFACT_BUILD"))
    return build / "TriggerFunction" if part == "function" else build / "DependenciesLayer/python"


def run_artifact(deployment: Deployment, tracing: str) -> dict[str, Any]:
    spec = {
        "function": str(built("function")),
        "layer": str(built("layer")),
        "runtime": required("LAMBDA_RUNTIME_SITE"),
        "events": [[p.name, json.loads(p.read_text())] for p in sorted(EVENTS.glob("*.json"))],
        "work_queue": {"url": deployment.work_queue.url, "arn": deployment.work_queue.arn},
    }
    env = deployment.environment(
        GLIDER_READ_TIMEOUT_SECONDS="2",
        RETRY_BASE_DELAY_SECONDS="0.01",
        RETRY_MAX_DELAY_SECONDS="0.5",
        FOLLOW_OUTCOMES="false",
        TRACING=tracing,
    )
    completed = subprocess.run(  # noqa: S603 - the runtime's interpreter, this repo's driver
        [required("LAMBDA_PYTHON"), *ARTIFACT_PYTHON_FLAGS, str(DRIVER)],
        input=json.dumps(spec),
        env={**env, "PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr[-4000:]
    return json.loads(completed.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


@pytest.mark.parametrize("tracing", ["PassThrough", "Active"])  # Active: the X-Ray SDK too
def test_every_sample_event_runs_on_the_artifact_alone(
    deployment: Deployment, emulator: GliderEmulator, tracing: str
) -> None:
    emulator.add_portfolio("port_nosched", has_schedule=False)

    report = run_artifact(deployment, tracing)

    assert report["python"].startswith("3.13.")
    pinned = dict(line.split("==") for line in PINS.read_text().split() if "==" in line)
    assert (report["boto3"], report["botocore"]) == (pinned["boto3"], pinned["botocore"])
    runtime = required("LAMBDA_RUNTIME_SITE")
    assert report["botocore_file"].startswith(runtime)  # not one a layer package brought
    assert report["strays"] == []  # nothing from the development environment
    assert report["xray"] is (tracing == "Active")
    failures = [(name, error) for name, _, error in report["results"] if error]
    assert failures == []
    responses = {name: response for name, response, _ in report["results"]}
    assert responses["schedule-single.json"]["queued"] == 1
    assert "batchItemFailures" in responses["sqs-batch.json"]
    # Every portfolio an event queued was worked by the artifact from the work queue.
    queued = sum(r.get("queued", 0) for name, r, _ in report["results"] if name != "work-queue")
    assert queued > 0
    assert report["worked"] == queued
    assert "work-queue" in responses
    assert emulator.rebalances_for("port_def456")  # only schedule-many.json names it
    assert emulator.rebalances  # the artifact's calls reached the API
    # Every module the cold start and the invocations loaded from the function and the layer
    # came from the bytecode shipped beside it: none was compiled (a probe proves that one
    # compiled would have been seen).
    assert report["probe_seen"]
    assert report["compiled"] == []


def test_the_bytecode_of_every_source_ships_beside_it_for_the_runtime() -> None:
    """Every source of the function and the layer, imported at a cold start or later, has its
    pyc in __pycache__/ where python3.13 looks: its bytecode, hash-based and unchecked (valid
    whatever the timestamps packaging leaves, never re-read and hashed), of exactly that source;
    and every pyc has its source beside it."""
    roots = [str(built("function")), str(built("layer"))]
    completed = subprocess.run(  # noqa: S603 - the runtime's interpreter, this repo's script
        [required("LAMBDA_PYTHON"), *ARTIFACT_PYTHON_FLAGS, str(BYTECODE), *roots],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr[-4000:]
    report = json.loads(completed.stdout)

    for root in roots:
        assert report[root]["sources"] > 0, root
        assert report[root]["problems"] == {}, root
    # The function's own modules are among them (app.py at the top, as Lambda's handler).
    assert (built("function") / "__pycache__/app.cpython-313.pyc").is_file()
    assert (built("function") / "app.py").is_file()
