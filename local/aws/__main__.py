"""python -m local.aws up|down|logs (make up, make down, make logs)."""

import sys

from local.aws.up import main

sys.exit(main())
