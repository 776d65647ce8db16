"""Outbound adapters: the domain's ports implemented on Glider's HTTP API, Secrets Manager,
DynamoDB (the guard), SQS (the queues) and Powertools (telemetry)."""
