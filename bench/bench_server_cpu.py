"""Server CPU per request: what the request handling itself costs, independent of wall-clock noise.

``bench_server.py`` measures throughput and latency, which on a shared
machine swing by tens of percent from run to run.  This script reads the
server process's own CPU time (``utime + stime`` in ``/proc/<pid>/stat``)
around a fixed workload on a SQLite server: ``--uploads`` uploads of 10
changesets x 5 objects (as ``bench_server.py``'s), then ``--downloads``
downloads with nothing to send.  Use it to compare two versions (for
example with ``PYTHONPATH`` pointing at each).

    python bench/bench_server_cpu.py [--uploads 300 --downloads 1000]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_server import Client, car_changesets

from realmpy.server.testing import run_server


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--uploads", type=int, default=300)
    ap.add_argument("--downloads", type=int, default=1000)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d, run_server(Path(d)) as (base, proc):
        c = Client(base)
        f = c.setup()
        ident = {"file_ident": f["file_ident"], "salt": f["salt"]}
        ts = int(time.time() * 1000)
        start = cpu_seconds(proc.pid)
        for i in range(args.uploads):
            batch = car_changesets(i * 10, i * 50, ts, 10, 5)
            c.post("/sync/upload", {**ident, "changesets": batch})
        upload = (cpu_seconds(proc.pid) - start) / args.uploads
        # Finish the file's (empty) bootstrap first, and say it was applied: otherwise every
        # download is a bootstrap again (the server redoes one a client did not confirm).
        body: dict[str, Any] = {**ident, "after_server_version": 0}
        while True:
            r = c.post("/sync/download", body)
            body = {**ident, "after_server_version": r["server_version"]}
            body |= {"bootstrap_token": r["bootstrap_token"], "query_version": r["query_version"]}
            if r["batch"] == "last" or r["batch"] == "steady":
                break
        body["bootstrap_token"] = None
        start = cpu_seconds(proc.pid)
        for _ in range(args.downloads):
            r = c.post("/sync/download", body)
            assert r["batch"] == "steady" and not r["entries"], r
        download = (cpu_seconds(proc.pid) - start) / args.downloads
    print(
        f"server CPU: {upload * 1000:.2f} ms per upload (10 changesets), "
        f"{download * 1000:.3f} ms per empty download"
    )


if __name__ == "__main__":
    main()
