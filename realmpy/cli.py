"""``realmpy`` command line (also ``python -m realmpy``).

Subcommands (``realmpy COMMAND --help`` for each one's options; docs/tools.md):

- ``info``, ``schema``, ``query``, ``dump``, ``load``, ``check``, ``compact``,
  ``upgrade``:
  inspect and move the objects of any realm file, reading the schema stored
  in it (:mod:`realmpy.tools.commands`);
- ``studio``: the same in a browser, live (:mod:`realmpy.tools.studio`);
- ``demo``: the multi-process sync scenario on this machine
  (:mod:`realmpy.tools.demo`).

Why a dispatcher with lazy imports: ``realmpy --help`` and ``--version`` must
work without the server's dependencies, and each subcommand owns its options.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from realmpy._version import __version__

__all__ = ["main", "usage"]


def usage() -> str:
    from realmpy.tools.commands import COMMANDS

    rows = [f"  {name:<9} {help_}" for name, (_fn, help_) in COMMANDS.items()]
    rows.append(
        "  demo      run the multi-process sync demo (server + main + secondaries + another device)"
    )
    return (
        "usage: realmpy [--version] COMMAND [ARGS]\n\ncommands:\n"
        + "\n".join(rows)
        + "\n\n'realmpy COMMAND --help' describes a command's options.\n"
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run a subcommand; returns the exit status."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help", "help"):
        print(usage(), end="", file=sys.stdout if args else sys.stderr)
        return 0 if args else 2
    if args[0] in ("--version", "-V"):
        print(f"realmpy {__version__}")
        return 0
    command, rest = args[0], args[1:]
    if command == "demo":
        from realmpy.tools.demo import main as demo_main

        return demo_main(rest)
    from realmpy.tools.commands import COMMANDS, run

    if command in COMMANDS:
        return run(command, rest)
    print(f"realmpy: unknown command {command!r} ('realmpy --help' lists them)", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
