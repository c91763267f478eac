"""``python -m realmpy ...`` is the ``realmpy`` console script."""

import sys

from realmpy.cli import main

sys.exit(main())
