"""Domain and adapters of the Glider rebalance trigger function.

Modules, one job each:
- config: the validated settings, built once from the environment
- events: turns any supported input into trigger requests (or a classified error)
- glider_client: the one HTTP call to Glider, over a shared urllib3 PoolManager
- api_key: the API key from Secrets Manager, cached and rotation-safe
- trigger: the domain service (retry, backoff, key refresh) that yields an outcome
- dead_letter: the replayable DLQ message format and the SQS sink
- processor: applies the delivery semantics of each input kind
- errors: the domain exceptions and the one place that classifies them
"""
