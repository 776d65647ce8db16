"""Inbound adapters: Lambda's event shapes in, the domain's reports out (an SQS partial batch
response, or an invocation summary)."""
