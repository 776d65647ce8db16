"""Run inside the artifact's interpreter (python3.13 -I -S -B): the built function, the built
layer and the runtime's boto3 on sys.path, nothing else; every sample event through the handler.

Reads {"function", "layer", "runtime", "events": [[name, event], ...], "work_queue": {"url",
"arn"}} on stdin; then the work queue's messages (what the events queued) through the handler
too, a batch at a time, as Lambda's event source mapping hands them over (each received batch is
deleted: what the artifact does with it is the point, not its redelivery). Prints one JSON
document: each event's and batch's response (or the exception it raised), the messages the work
queue held, the SDK versions used, every
imported module whose file lies outside the standard library and those three directories, and
every source of the function or the layer that Python compiled because no bytecode it could use
shipped beside it.
"""

import importlib.machinery
import json
import os
import sys
import sysconfig
import tempfile
import uuid

# Every source Python compiles on import goes through this method: a usable pyc skips it. With
# -B nothing compiled is written back, as on Lambda, whose code directories are read-only: what
# is compiled here would be compiled again at every cold start.
compiled = []
compile_source = importlib.machinery.SourceFileLoader.source_to_code


def source_to_code(self, data, path, *args, **kwargs):
    compiled.append(os.path.realpath(path))
    return compile_source(self, data, path, *args, **kwargs)


importlib.machinery.SourceFileLoader.source_to_code = source_to_code

# The probe is seen: a module without bytecode, imported, is counted (else the check proves
# nothing, e.g. were a later Python to compile elsewhere).
with tempfile.TemporaryDirectory() as probe_dir:
    with open(os.path.join(probe_dir, "bytecode_probe.py"), "w") as probe:
        probe.write("")
    sys.path.insert(0, probe_dir)
    import bytecode_probe  # noqa: F401

    sys.path.remove(probe_dir)
    del sys.modules["bytecode_probe"]  # not one of the function's imports (strays, below)
    probe_seen = any(path.startswith(os.path.realpath(probe_dir)) for path in compiled)

spec = json.load(sys.stdin)
# Lambda's order: the function (/var/task), the layer (/opt/python), the runtime (/var/runtime).
roots = [spec["function"], spec["layer"], spec["runtime"]]
sys.path[:0] = roots
os.chdir(spec["function"])


class Context:
    function_name = "glider-rebalance-trigger"
    function_version = "$LATEST"
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:glider-rebalance-trigger"
    memory_limit_in_mb = 1769
    log_group_name = "/aws/lambda/glider-rebalance-trigger"
    log_stream_name = "artifact"

    def __init__(self):
        self.aws_request_id = str(uuid.uuid4())

    def get_remaining_time_in_millis(self):
        return 60_000


import boto3  # noqa: E402
import botocore  # noqa: E402

import app  # noqa: E402 - after sys.path is set, as Lambda's init does

results = []


def invoke(name, event):
    try:
        results.append([name, app.lambda_handler(event, Context()), None])
    except Exception as exc:  # reported, not raised: the test says which event and why
        results.append([name, None, f"{type(exc).__name__}: {exc}"])


for name, event in spec["events"]:
    invoke(name, event)

# The runtime's boto3, pointed at the local stack by AWS_ENDPOINT_URL as the function's is.
sqs = boto3.client("sqs")
work_queue = spec["work_queue"]
worked = 0
while True:
    messages = sqs.receive_message(
        QueueUrl=work_queue["url"], MaxNumberOfMessages=10, AttributeNames=["All"]
    ).get("Messages", [])
    if not messages:
        break
    worked += len(messages)
    records = [
        {
            "messageId": message["MessageId"],
            "receiptHandle": message["ReceiptHandle"],
            "body": message["Body"],
            "attributes": message.get("Attributes", {}),
            "messageAttributes": {},
            "eventSource": "aws:sqs",
            "eventSourceARN": work_queue["arn"],
            "awsRegion": os.environ["AWS_REGION"],
        }
        for message in messages
    ]
    invoke("work-queue", {"Records": records})
    for message in messages:
        sqs.delete_message(QueueUrl=work_queue["url"], ReceiptHandle=message["ReceiptHandle"])

stdlib = [sysconfig.get_paths()["stdlib"], sysconfig.get_paths()["platstdlib"]]
allowed = [os.path.realpath(p) for p in roots + stdlib]
strays = sorted(
    name
    for name, module in list(sys.modules.items())
    if name != "__main__"  # this driver
    if getattr(module, "__file__", None)
    and not any(os.path.realpath(module.__file__).startswith(root) for root in allowed)
)
artifact = tuple(os.path.realpath(root) + os.sep for root in roots[:2])
print(
    json.dumps(
        {
            "results": results,
            "worked": worked,
            "compiled": sorted(path for path in compiled if path.startswith(artifact)),
            "probe_seen": probe_seen,
            "boto3": boto3.__version__,
            "botocore": botocore.__version__,
            "boto3_file": boto3.__file__,
            "botocore_file": botocore.__file__,
            "python": sys.version.split()[0],
            "strays": strays,
            "xray": "aws_xray_sdk" in sys.modules,
        },
        default=str,
    )
)
