"""The domain: what a trigger request, an outcome and a failure are, the rules that decide
retries and delivery, and the ports it needs. Imports neither boto3 nor urllib3."""
