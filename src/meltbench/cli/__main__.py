"""``python -m meltbench.cli``: the ``meltbench`` command."""

import sys

from meltbench.cli import main

sys.exit(main())
