"""``python -m realmpy.server``: the same as the ``realmpy-server`` command."""

from __future__ import annotations

import sys

from realmpy.server.cli import main

sys.exit(main())
