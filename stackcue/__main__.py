"""``python -m stackcue``: the same as the ``stackcue`` command."""

import sys

from stackcue.entry import main

sys.exit(main())
