"""Operator tools for the trigger function (run with `python -m tools.<name>`).

They read the function's own definitions (its settings' defaults, its input contract) from its
package, so that a fact has one owner: functions/trigger is put on the import path here.
"""

import sys
from pathlib import Path

_FUNCTION_DIR = str(Path(__file__).resolve().parent.parent / "functions" / "trigger")
if _FUNCTION_DIR not in sys.path:
    sys.path.append(_FUNCTION_DIR)
