"""``realmpy`` command line (also ``python -m realmpy``).

Subcommands:

``realmpy demo``
    the multi-process sync scenario on this machine: an embedded sync server
    on a free loopback port, a main process, secondary processes and a second
    device; prints progress, what moved where and how long it took
    (see :mod:`realmpy.tools.demo`; ``realmpy demo --help`` for options).

Why a dispatcher with lazy imports: ``realmpy --help`` must work without the
server's dependencies, and each subcommand owns its own options.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

__all__ = ["main"]

USAGE = """usage: realmpy COMMAND [ARGS]

commands:
  demo      run the multi-process sync demo (server + main + secondaries + another device)

'realmpy COMMAND --help' describes a command's options.
"""


def main(argv: Sequence[str] | None = None) -> int:
    """Run a subcommand; returns the exit status."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help", "help"):
        print(USAGE, end="")
        return 0 if args else 2
    command, rest = args[0], args[1:]
    if command == "demo":
        from realmpy.tools.demo import main as demo_main

        return demo_main(rest)
    print(f"realmpy: unknown command {command!r}\n\n{USAGE}", end="", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
