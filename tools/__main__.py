"""`python -m tools`: the same as `glider-trigger`."""

import sys

from tools.cli import main

sys.exit(main())
