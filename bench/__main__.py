"""``python -m bench``: the side-by-side benchmark suite (see bench/suite.py)."""

import sys

from bench.suite import main

sys.exit(main())
