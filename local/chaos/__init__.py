"""`make chaos`: thousands of portfolio triggers through the real handler, under injected faults.

    python -m local.chaos                       # 2,000 ids
    python -m local.chaos --quick               # ~300 ids (what the test suite runs)
    python -m local.chaos --ids 5000 --seed 3 --json chaos.json

The run starts a moto server, the Glider emulator and a FaultProxy in front of moto (the
function's AWS endpoint is the proxy; the harness's own clients talk to moto directly), loads the
handler as Lambda does, and pushes every id through it:

- ~70% as SQS messages (one id, some with 2-3) on the work queue, consumed by the SQS event
  source until the queue and its in-flight and delayed messages drain: failures come back after
  the visibility timeout (1 s, or what the function set for a long Retry-After), and moto's
  redrive moves a message to the DLQ after maxReceiveCount receives;
- ~30% as EventBridge envelopes and Scheduler inputs (10-50 ids each), invoked asynchronously:
  when an attempt fails (the handler raised, or its execution environment crashed), Lambda tries
  the same event again with the same request id, about 1 minute and then about 2 more minutes
  later (3 attempts in all), then writes its on-failure destination record to the DLQ (on moto).
  Those delays are scaled by the run's timeout (`context_timeout_seconds` / the deployed
  function's 120 s: 15 s and 30 s more with the defaults), so that a retry relates to the
  invocation's in-progress window as it does on Lambda. Pending retries wait in a list with
  their due times and run between SQS polls; the drain does not end while any is pending.

Faults, seeded and bounded: Glider 5xx (API_000), 429 with a short Retry-After and a few with one
longer than the function waits, connection resets, answers slower than the read timeout, lost
responses (triggered, then reset), 200s whose body is cut off (triggered, the rebalance id never
arrives), 404 (unknown portfolio); through the proxy, Secrets Manager GetSecretValue throttling
(the secret is read for every trigger) and SendMessageBatch failures (the function's DLQ writes),
some long enough to exhaust the SDK's and the function's retries. And three scenarios:

- crashes: a few async events (`crashes`) lose their execution environment in the middle of
  their first attempt (`LocalLambdaContext(crash_after_calls=N)`, N drawn from the seed), after
  some of their triggers were done; the records the attempt had claimed stay "in progress" until
  its deadline, and Lambda's first retry comes inside that window. The next invocation runs in a
  new execution environment (a cold start); the logs of every environment are kept.
- a DLQ write that fails after its first batch landed (`partial_dlq_writes` async events of more
  than 10 ids): Glider is down for the event's first attempt (every id fails and is
  dead-lettered, in batches of 10), the first batch lands and the next one is denied, so the
  invocation fails; Lambda's retry triggers every id, and the first batch's letters stay in the
  DLQ as stale letters.
- the first event meets a DLQ outage on all three attempts: its on-failure destination record.

After the drain, every DLQ message is moved back to the work queue, body verbatim and no
attributes (what a message move task or `make dlq ARGS='redrive'` does), and the work queue is
drained through the function again (its DLQ writes and retries included). Then it checks:

- nothing lost: every id ends triggered (a rebalance in the emulator) or in the DLQ as it stands
  after the replay (every body parsed: portfolioId, portfolioIds, an EventBridge envelope's
  detail, a destination record's requestPayload), or is still on the work queue or in a pending
  async retry (none once the run has drained);
- nothing doubled: no id triggered again by a redelivery or retry of the same delivery after a
  trigger the function saw succeed. Repeats no client can prevent (Glider acted on a request
  whose answer never arrived: the scripted lost responses and too-slow answers) are counted
  apart, with how many of them the function flagged (`maybe_delivered: true` in its logs). A
  truncated 2xx is not one of them: the status line says Glider accepted, so a second rebalance
  after it is a double.
- nothing doubled by the replay: no id that had a rebalance before the replay gets another one
  from it (unless a lost or too-slow answer during the replay explains it, or the function never
  learned of the earlier one: a lost or too-slow answer before the replay was all it had). These
  are broken down by the kind of DLQ message that triggered them; the function's own letters
  and on-failure destination records must double nothing. Redriven work-queue messages (a new
  message id once replayed) are counted apart.

Exit status 1 when an id is lost, doubled, doubled by a replay of the function's letters or of a
destination record, or still pending when the drain timeout ran out.

The modules, one job each:

- config.py: the run's settings (`ChaosConfig`) and the fixed facts of its stack;
- plan.py: what goes in and which faults each id and each event meet, from the seed alone;
- faults.py: the faults' report keys and labels, and the AWS faults staged around invocations;
- harness.py: the deliveries, as Lambda makes them (SQS batches, async attempts and retries,
  destination records), the drains and the replay of the DLQ;
- letters.py: what a DLQ message is and which ids its body names (the trigger-input contract);
- accounting.py: what happened, read into figures (lost, doubled, replay doubles);
- report.py: the figures (`ChaosReport`), as a table and as JSON;
- run.py: one run (`run_chaos`), its stack started and stopped;
- __main__.py: the command line (`python -m local.chaos`).
"""

from local.fixtures.stack import put_function_on_path

# The trigger-input contract is the function's own module: glider_trigger must be importable.
put_function_on_path()
