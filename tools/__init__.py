"""Operator tools for the trigger function (run with `python -m tools.<name>`)."""
