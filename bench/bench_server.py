"""Sync-server benchmarks: upload throughput and upload-to-other-client latency.

Runs a real ``realmpy-server`` subprocess per store (SQLite; PostgreSQL when
reachable, see ``realmpy.server.testing.pg_url``) on a loopback port and
drives it over HTTP with two clients:

- upload throughput: ``--uploads`` requests of ``--batch`` changesets, each
  creating ``--objects`` objects with two fields → changesets/s and objects/s;
- bootstrap: a fresh client C subscribes to every object uploaded above and
  downloads them all (1 MiB batches) → objects/s and batches;
- latency: client B long-polls; client A uploads one changeset; the time from
  A's request until B's long-poll returns the object → p50 and p99 over
  ``--samples`` rounds.

    python bench/bench_server.py [--uploads 200 --batch 10 --objects 5 --samples 200]
    python bench/bench_server.py --scale [options of bench/bench_server_scale.py]

``--scale`` runs the scale-out mode instead (``bench_server_scale.py``: N devices
over 1-3 server processes on one PostgreSQL, uploads/s, commit→other-device
latency, parked-poll fan-out CPU).
"""

from __future__ import annotations

import argparse
import secrets
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from realmpy.server.testing import drop_pg_schema, pg_schema_url, postgres_available, run_server
from realmpy.sync.protocol import pack, unpack

P = "/api/v1/app/default"
CAR = {
    "primary_key": "id",
    "fields": {"id": {"type": "int"}, "make": {"type": "string"}, "miles": {"type": "int"}},
}


class Client:
    def __init__(self, base: str) -> None:
        self.http = httpx.Client(base_url=base, timeout=60)
        self.tok = ""

    def post(self, path: str, body: Any) -> Any:
        h = {"content-type": "application/msgpack"}
        if self.tok:
            h["authorization"] = f"Bearer {self.tok}"
        r = self.http.post(P + path, content=pack(body), headers=h)
        out = unpack(r.content)
        if r.status_code != 200:
            raise RuntimeError(out)
        return out

    def setup(self) -> dict[str, Any]:
        self.tok = self.post("/auth/login", {"provider": "anonymous"})["access_token"]
        self.post("/sync/schema", {"tables": {"Car": CAR}})
        f: dict[str, Any] = self.post("/sync/ident", {"nonce": secrets.token_hex(8)})
        return f


def car_changesets(
    cv: int, pk: int, ts: int, changesets: int, objects: int
) -> list[dict[str, Any]]:
    """``changesets`` changesets after client version ``cv``, each creating ``objects`` Cars
    (primary keys after ``pk``) with two fields set."""
    out = []
    for c in range(changesets):
        ops: list[Any] = []
        for o in range(objects):
            key = pk + c * objects + o + 1
            ops += [[0, "Car", key], [2, "Car", key, "make", "VW"], [2, "Car", key, "miles", key]]
        out.append(
            {"client_version": cv + c + 1, "base_server_version": 0, "timestamp": ts, "ops": ops}
        )
    return out


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, round(p / 100 * (len(xs) - 1)))]


def bench(kind: str, args: argparse.Namespace) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as d:
        schema = None
        url = None
        if kind == "postgresql":
            schema = f"b_{secrets.token_hex(6)}"
            url = pg_schema_url(schema)
        try:
            with run_server(Path(d), database=url) as (base, _):
                a, b = Client(base), Client(base)
                fa, fb = a.setup(), b.setup()
                ts = int(time.time() * 1000)
                cv = 0
                pk = 0
                # ---- upload throughput
                t0 = time.perf_counter()
                for _ in range(args.uploads):
                    batch = car_changesets(cv, pk, ts, args.batch, args.objects)
                    cv += args.batch
                    pk += args.batch * args.objects
                    a.post(
                        "/sync/upload",
                        {"file_ident": fa["file_ident"], "salt": fa["salt"], "changesets": batch},
                    )
                dt = time.perf_counter() - t0
                n_cs = args.uploads * args.batch
                # ---- bootstrap of everything by a fresh client
                c = Client(base)
                fc = c.setup()
                c.post(
                    "/sync/subscriptions",
                    {
                        "file_ident": fc["file_ident"],
                        "salt": fc["salt"],
                        "query_version": 1,
                        "queries": {"Car": [["TRUEPREDICATE", []]]},
                    },
                )
                t1 = time.perf_counter()
                got_objects, batches, token, after = 0, 0, None, 0
                while True:
                    r = c.post(
                        "/sync/download",
                        {
                            "file_ident": fc["file_ident"],
                            "salt": fc["salt"],
                            "after_server_version": after,
                            "bootstrap_token": token,
                        },
                    )
                    got_objects += len(r["entries"])
                    batches += 1
                    token = r["bootstrap_token"]
                    if r["batch"] != "more":
                        break
                dt_boot = time.perf_counter() - t1
                # ---- latency
                b.post(
                    "/sync/subscriptions",
                    {
                        "file_ident": fb["file_ident"],
                        "salt": fb["salt"],
                        "query_version": 1,
                        "queries": {"Car": [["miles < 0", []]]},
                    },
                )
                cursor = 0
                token = None
                while True:  # bootstrap (nothing matches yet)
                    r = b.post(
                        "/sync/download",
                        {
                            "file_ident": fb["file_ident"],
                            "salt": fb["salt"],
                            "after_server_version": cursor,
                            "bootstrap_token": token,
                        },
                    )
                    cursor, token = r["server_version"], r["bootstrap_token"]
                    if r["batch"] in ("last", "steady"):
                        break
                lat: list[float] = []
                for i in range(args.samples):
                    got = threading.Event()
                    start = [0.0]

                    def poll(
                        after: int = cursor, got: threading.Event = got, start: list[float] = start
                    ) -> None:
                        nonlocal cursor
                        while True:
                            r = b.post(
                                "/sync/download",
                                {
                                    "file_ident": fb["file_ident"],
                                    "salt": fb["salt"],
                                    "after_server_version": after,
                                    "wait_ms": 30_000,
                                },
                            )
                            after = r["server_version"]
                            if r["entries"]:
                                lat.append(time.perf_counter() - start[0])
                                cursor = after
                                got.set()
                                return

                    t = threading.Thread(target=poll)
                    t.start()
                    time.sleep(
                        0.005
                    )  # let the poll park; latency is measured from the upload, not this pause
                    cv += 1
                    pk += 1
                    start[0] = time.perf_counter()
                    a.post(
                        "/sync/upload",
                        {
                            "file_ident": fa["file_ident"],
                            "salt": fa["salt"],
                            "changesets": [
                                {
                                    "client_version": cv,
                                    "base_server_version": 0,
                                    "timestamp": ts,
                                    "ops": [
                                        [0, "Car", pk],
                                        [2, "Car", pk, "make", "x"],
                                        [2, "Car", pk, "miles", -i - 1],
                                    ],
                                }
                            ],
                        },
                    )
                    got.wait(60)
                    t.join(60)
                return {
                    "bootstrap_objects": got_objects,
                    "bootstrap_batches": batches,
                    "bootstrap_objects_per_s": got_objects / dt_boot,
                    "changesets_per_s": n_cs / dt,
                    "objects_per_s": n_cs * args.objects / dt,
                    "latency_p50_ms": statistics.median(lat) * 1000,
                    "latency_p99_ms": pct(lat, 99) * 1000,
                }
        finally:
            if schema:
                drop_pg_schema(schema)


def main() -> None:
    if sys.argv[1:2] == ["--scale"]:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        import bench_server_scale

        bench_server_scale.main(sys.argv[2:])
        return
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--uploads", type=int, default=200)
    ap.add_argument("--batch", type=int, default=10)
    ap.add_argument("--objects", type=int, default=5)
    ap.add_argument("--samples", type=int, default=200)
    args = ap.parse_args()
    kinds = ["sqlite"] + (["postgresql"] if postgres_available() is None else [])
    print(
        f"realmpy-server: {args.uploads} uploads x {args.batch} changesets x {args.objects} objects; "
        f"{args.samples} latency samples; one client machine, loopback HTTP/1.1"
    )
    print(
        f"{'store':<12}{'changesets/s':>14}{'objects/s':>12}{'p50 ms':>10}{'p99 ms':>10}"
        f"{'bootstrap obj/s':>17}{'(objects/batches)':>19}"
    )
    for kind in kinds:
        r = bench(kind, args)
        print(
            f"{kind:<12}{r['changesets_per_s']:>14.0f}{r['objects_per_s']:>12.0f}"
            f"{r['latency_p50_ms']:>10.2f}{r['latency_p99_ms']:>10.2f}"
            f"{r['bootstrap_objects_per_s']:>17.0f}"
            f"{r['bootstrap_objects']:>12.0f}/{r['bootstrap_batches']:.0f}"
        )


if __name__ == "__main__":
    main()
