"""The ``realmpy`` command on a large file: wall time of each subcommand, as a user runs it.

A child process writes ``--objects`` (100,000) objects of a class with an
index and links (``tests/tools/appmodels.py``'s ``Car``) into a fresh realm;
then each command runs through the installed console script in its own
process, ``--rounds`` times, and the best and median wall times are printed
(process start and imports included: that is what a user waits for).

    python bench/bench_tools.py [--objects 100000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MAKE = """
import sys
from realmpy import Realm
from tests.tools.appmodels import Car, config
with Realm(config(sys.argv[1])) as realm, realm.write():
    realm.add_all([Car(make=f"m{i % 50}", miles=i) for i in range(int(sys.argv[2]))])
"""


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--objects", type=int, default=100_000)
    p.add_argument("--rounds", type=int, default=3)
    args = p.parse_args()
    env = dict(os.environ, PYTHONPATH=ROOT)
    script = os.path.join(sysconfig.get_path("scripts"), "realmpy")
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "big.realm")
        subprocess.run([sys.executable, "-c", MAKE, path, str(args.objects)], env=env, check=True)
        dump = os.path.join(tmp, "dump.jsonl")
        commands = {
            "--version": ["--version"],
            "info": ["info", path],
            "check": ["check", path],
            "query (scan)": ["query", path, "Car", "miles > $0", str(args.objects - 10)],
            "dump": ["dump", path],
            "load": ["load", "{copy}", dump],
        }
        print(
            f"{args.objects} objects, {os.path.getsize(path) / 2**20:.1f} MiB, best / median of {args.rounds}"
        )
        for name, argv in commands.items():
            times = []
            for r in range(args.rounds):
                copy = os.path.join(tmp, f"copy{r}.realm")
                cmd = [script, *(a.replace("{copy}", copy) for a in argv)]
                out = open(dump, "w") if name == "dump" else subprocess.DEVNULL
                start = time.perf_counter()
                subprocess.run(cmd, env=env, check=True, stdout=out)
                times.append(time.perf_counter() - start)
                if not isinstance(out, int):
                    out.close()
            print(f"  {name:<14} {min(times):6.2f} s  {statistics.median(times):6.2f} s")


if __name__ == "__main__":
    main()
