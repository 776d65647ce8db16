"""`python -m local.demo` (what `make run` runs): the demo's command line."""

import sys

from local.demo.run import main

if __name__ == "__main__":
    sys.exit(main())
