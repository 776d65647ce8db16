"""`make run` (`python -m local.demo`): every sample event through the real handler, locally.

- run.py: the command line, the stack it starts, the sample events and the invocations;
- show.py: what it prints (each portfolio's outcome, read from the function's logs; the DLQ).
"""

from local.fixtures.stack import put_function_on_path

# The demo names the function's own settings (the API versions): glider_trigger must import.
put_function_on_path()
