"""``python -m spikec``: the same command line as the ``spikec`` script."""

import sys

from .cli import main

sys.exit(main())
