"""``python -m gateway.cli``: the ``edgegw`` command."""

import sys

from gateway.cli import main

sys.exit(main())
