"""Server CPU per request: what the request handling itself costs, independent of wall-clock noise.

``bench_server.py`` measures throughput and latency, which on a shared
machine swing by tens of percent from run to run.  This script reads the
server process's own CPU time (``utime + stime`` in ``/proc/<pid>/stat``)
around a fixed workload on a SQLite server (``--postgres``: a fresh schema of
``$REALMPY_TEST_PG_URL``): ``--uploads`` uploads, one after another, of
``--changesets`` changesets x ``--objects`` objects (10 x 5: as
``bench_server.py``'s), then ``--downloads`` downloads with nothing to send.
Use it to compare two versions (for example with ``PYTHONPATH`` pointing at
each).

    python bench/bench_server_cpu.py [--uploads 300 --downloads 1000]
    python bench/bench_server_cpu.py --postgres --changesets 1 --objects 1
"""

from __future__ import annotations

import argparse
import os
import secrets
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_server import Client, car_changesets

from realmpy.server.testing import drop_pg_schema, pg_schema_url, run_server


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--uploads", type=int, default=300)
    ap.add_argument("--downloads", type=int, default=1000)
    ap.add_argument("--changesets", type=int, default=10, help="per upload")
    ap.add_argument("--objects", type=int, default=5, help="per changeset")
    ap.add_argument("--postgres", action="store_true", help="PostgreSQL, not SQLite")
    args = ap.parse_args()
    schema = f"s_{secrets.token_hex(6)}"
    url = pg_schema_url(schema) if args.postgres else None
    try:
        run(args, url)
    finally:
        if url is not None:
            drop_pg_schema(schema)


def run(args: argparse.Namespace, url: str | None) -> None:
    """The measurement (``main``)."""
    n = args.changesets
    with tempfile.TemporaryDirectory() as d, run_server(Path(d), database=url) as (base, proc):
        c = Client(base)
        f = c.setup()
        ident = {"file_ident": f["file_ident"], "salt": f["salt"]}
        ts = int(time.time() * 1000)
        start = cpu_seconds(proc.pid)
        for i in range(args.uploads):
            batch = car_changesets(i * n, i * n * args.objects, ts, n, args.objects)
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
        f"server CPU ({'PostgreSQL' if url else 'SQLite'}): {upload * 1000:.2f} ms per upload "
        f"({n} changesets x {args.objects} objects), "
        f"{download * 1000:.3f} ms per empty download"
    )


if __name__ == "__main__":
    main()
