"""The Glider rebalance trigger function, in layers (see docs/architecture.md):

- domain/: requests, outcomes, failures and their classes, the retry and delivery rules, the
  trigger-input contract, and the ports the domain needs; no AWS SDK, no HTTP client;
- inbound/: Lambda's event shapes in, the partial batch response or the summary out;
- outbound/: the ports' adapters (Glider's API, Secrets Manager, the DynamoDB guard, the SQS
  queues, telemetry);
- settings.py: the validated environment; composition.py: the one place that wires them.
"""
