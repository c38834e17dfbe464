"""``python -m searchkit`` is the ``searchkit`` command."""

import sys

from searchkit.cli import main

sys.exit(main())
