"""``python -m stackcue``: the same as the ``stackcue`` command."""

import sys

from stackcue.service.cli import main

sys.exit(main())
