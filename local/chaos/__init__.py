"""`make chaos`: thousands of portfolio triggers through the real handler, under injected faults.

    python -m local.chaos                       # 2,000 ids
    python -m local.chaos --quick               # ~300 ids (what the test suite runs)
    python -m local.chaos --ids 5000 --seed 3 --json chaos.json
    python -m local.chaos --api v2 --ids 2500   # against Glider's v2 API
    python -m local.chaos --quick --no-pacing   # the pacing check failing on purpose

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
(the secret is read for every trigger) and SendMessageBatch failures (the function's DLQ and
work-queue writes),
some long enough to exhaust the SDK's and the function's retries. And three scenarios:

- crashes: the first work-queue batch of a few async events' queued portfolios (`crashes`)
  loses its execution environment in the middle (`LocalLambdaContext(crash_after_calls=N)`, N
  drawn from the seed), after some of its triggers were done; the records it had claimed stay
  "in progress" until its deadline, and SQS redelivers the batch inside that window (a held
  portfolio is delivered again, deferred on its last receive). The next invocation runs in a
  new execution environment (a cold start); the logs of every environment are kept.
- a work-queue write that fails after its first batch landed (`partial_dlq_writes` async events
  of more than 10 ids): the event's invocation queues its portfolios in batches of 10, the
  first batch lands and the next one is denied, so the invocation fails; Lambda's retry queues
  every portfolio again under the same key, and the first batch's messages are stale repeats
  that the guard finds done.
- the first event meets a work-queue outage on all three attempts: its on-failure destination
  record.

A lost answer on a delivery's last try (`glider.lost_last_try`: 429s, then the lost answer):
the invocation gives up without having looked, and the delivery's next receive, Lambda's retry
or its replayed letter must find that rebalance, finished by then, on Glider's clock. Glider's
clock is off ours all along (`emulator.set_clock_offset`, every time it sends, Date header
included): by a seeded 20-60 s one way for the first half of the run, the other way for the
second half (and the phase), either way for the replay. The function runs with
RATE_LIMIT_PER_SECOND (20).

The phase (phase.py), in the run's tail (every event started, nothing visible on the work
queue), with Glider's per-portfolio cooldown on (20 s, scaled like Lambda's retries: 80 s when
deployed):

- several deliveries of one portfolio: ~3% of the ids (at least 8) are each requested by two
  distinct deliveries (an upstream request with its own idempotencyKey and a schedule, either
  first, or two upstream requests): together (one SQS batch), minutes apart (2-17 s here: the
  second is refused with a Retry-After longer than the function waits), at the cooldown's end
  (refused, with one it waits out) or after it. Each delivery is owed its rebalance, except
  that on v2 Glider joins a trigger to the rebalance still in flight (deliveries together).
- lost answers more than a page down: a few portfolios (`deep_portfolios`) lose their last
  try's answer in one async event (their letters carry the window), then another client starts
  55 rebalances of each (more than the 50 the emulator lists at most), more than 5 s later; the
  replay of the letters must find the lost one or send again flagged.

After the drain, every DLQ message is moved back to the work queue, body verbatim and no
attributes (what a message move task or `make dlq ARGS='redrive'` does), and the work queue is
drained through the function again (its DLQ writes and retries included). Then it checks:

- nothing lost: every id ends triggered (a rebalance in the emulator) or in the DLQ as it stands
  after the replay (every body parsed: portfolioId, portfolioIds, an EventBridge envelope's
  detail, a destination record's requestPayload), or is still on the work queue or in a pending
  async retry (none once the run has drained);
- nothing doubled: each id is owed one rebalance per distinct delivery that requested it (less
  the v2 joins; the other client's rebalances are nobody's); no id gets more, by a redelivery or
  retry of the same delivery after a trigger the function saw succeed. Repeats no client can
  prevent (Glider acted on a request whose answer never arrived: the scripted lost responses and
  too-slow answers) are counted apart. A truncated 2xx is not one of them: the status line says
  Glider accepted, so a second rebalance after it is a double.
- no repeat unflagged: each repeat no client can prevent must be announced by the outcome of
  the delivery that sent it (`maybe_delivered_attempts`), not only by the failure line of the
  lost attempt, and not as a trigger joined to a rebalance in flight.
- no request over the rate ceiling (pacing.py): every request the function made to Glider,
  per execution environment, through a bucket like the function's own (RATE_LIMIT_PER_SECOND,
  burst one second's worth) with a 0.15 s allowance for the time between the slot and the
  arrival.
- nothing doubled by the replay: no id that had a rebalance before the replay gets another one
  from it (unless a lost or too-slow answer during the replay explains it, or the function never
  learned of the earlier one: a lost or too-slow answer before the replay was all it had). These
  are broken down by the kind of DLQ message that triggered them; the function's own letters
  and on-failure destination records must double nothing. Redriven work-queue messages (a new
  message id once replayed) are counted apart.

Exit status 1 when a delivery is lost, an id doubled (by a redelivery or retry, or by a replay
of the function's letters or of a destination record), a repeat unflagged, a request over the
rate ceiling, or an id still pending when the drain timeout ran out.

The modules, one job each:

- config.py: the run's settings (`ChaosConfig`) and the fixed facts of its stack;
- plan.py: what goes in and which faults each id and each event meet, from the seed alone;
- faults.py: the faults' report keys and labels, and the AWS faults staged around invocations;
- harness.py: the deliveries, as Lambda makes them (SQS batches, async attempts and retries,
  destination records), the drains and the replay of the DLQ;
- phase.py: the phase in the run's tail (several deliveries under the cooldown, lost answers a
  page down);
- letters.py: what a DLQ message is and which ids its body names (the trigger-input contract);
- accounting.py: what happened, read into figures (lost, doubled, unflagged, replay doubles);
- pacing.py: the pacing check over every request to Glider;
- report.py: the figures (`ChaosReport`), as a table and as JSON;
- run.py: one run (`run_chaos`), its stack started and stopped;
- __main__.py: the command line (`python -m local.chaos`).
"""

from local.fixtures.stack import put_function_on_path

# The trigger-input contract is the function's own module: glider_trigger must be importable.
put_function_on_path()
