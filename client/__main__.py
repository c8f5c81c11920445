"""``python -m client``: the ``blockdrive`` command."""

import sys

from .main import main

sys.exit(main())
