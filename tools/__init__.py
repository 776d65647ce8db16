"""The operator tools behind `glider-trigger` (tools/cli.py), one module per subcommand.

They read the function's own definitions (its settings' defaults, its input contract) from its
package, so that a fact has one owner: functions/trigger is put on the import path here.
"""

import sys
from pathlib import Path

_FUNCTION_DIR = str(Path(__file__).resolve().parent.parent / "functions" / "trigger")
if _FUNCTION_DIR not in sys.path:
    sys.path.append(_FUNCTION_DIR)
