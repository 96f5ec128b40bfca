"""``python -m overlooked``: the same as the ``overlooked`` command."""

import sys

from overlooked.cli import main

sys.exit(main())
