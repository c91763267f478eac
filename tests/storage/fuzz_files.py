"""The file fuzz: realistic files, targeted damage, rounds in child processes.

Used by ``tests/storage/test_fuzz_files.py`` and runnable on its own as a measuring
tool (no pass/fail, a table of outcomes)::

    python -m tests.storage.fuzz_files --rounds 10000 --seed 1 [--suite data|recover|lock]

Each *round* takes one intact base file (an object-layer realm or a raw
storage file, built once per process with several commits of history),
applies one seed-chosen mutation (format.h tells where each structure is, so
damage lands on tree, overflow, free-list and meta pages on purpose), and
then, in a forked child with a time limit, opens the copy, reads everything
(every record both ways, point lookups, index queries), runs the integrity
check, writes, and reads again.  The parent classifies the child's outcome:

* ``typed error``   a :class:`~realmpy.errors.StorageError` (the storage
                    layer noticed the damage and said so);
* ``intact``        everything read equals the last acknowledged commit;
* ``recovered``     (``recover=True`` only) an older commit, as asked;
* ``wrong data``    something read differs, with no error; this includes an
                    object-layer error (``CodecError``, a lost schema...)
                    raised because the engine handed out damaged bytes;
* ``silent rollback`` everything equals an *older* commit, with no error;
* ``crash``         the child died of a signal (SIGBUS, SIGSEGV, abort);
* ``hang``          the child did not finish within the time limit;
* ``untyped exception`` any other exception (not a realmpy error).

Only the first two (and ``recovered`` in recover mode) are acceptable.

The pieces: ``fuzz_corpus`` (the base files, their readers and the page
map), ``fuzz_damage`` (mutations of a data file), ``fuzz_rounds`` (what a
child does: data-file rounds and lock-file scenarios); this module plans
rounds, runs them in children, classifies and summarises.

A round is reproducible from its seed alone: the base files are built
deterministically, and round ``i`` of a run with seed ``S`` uses seed
``S + i``, so ``--seed S+i --rounds 1`` (or ``REALMPY_FUZZ_SEED=S+i
REALMPY_FUZZ_ROUNDS=1`` for the test) replays it.
"""

from __future__ import annotations

import argparse
import dataclasses
import faulthandler
import inspect
import json
import os
import random
import select
import shutil
import signal
import sys
import tempfile
import time
import traceback
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

from realmpy.config import Configuration
from realmpy.errors import RealmpyError, StorageError
from realmpy.storage import Environment
from tests.storage.fuzz_corpus import (
    ACCEPTABLE,
    CLASSES,
    CRASH,
    HANG,
    INTACT,
    TYPED,
    UNTYPED,
    WRONG,
    Base,
    Mismatch,
    build_bases,
)
from tests.storage.fuzz_damage import MUTATIONS, Damage, target_of
from tests.storage.fuzz_rounds import LOCK_SCENARIOS, Round, RoundBody, Stage, run_round

# A hang guard, not a performance threshold: a round takes well under a second.
DEFAULT_TIMEOUT_S = 20.0
# Caps what a child sends back, so it never blocks on a full pipe.
MAX_DETAIL = 2000


@dataclasses.dataclass
class Outcome:
    """How a round ended (``cls`` is one of fuzz_corpus.CLASSES)."""

    round: Round
    cls: str
    stage: str = ""
    detail: str = ""
    what: str = ""  # the damage
    target: str = ""  # the kind of page it hit (target_of)
    error: str = ""  # exception class, for typed and untyped errors
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.cls in ACCEPTABLE[self.round.mode]

    def line(self) -> str:
        r = self.round
        err = f" [{self.error}]" if self.error else ""
        return (
            f"seed={r.seed} {r.kind}/{r.mode} {r.mutation}: {self.what} -> {self.cls}{err} "
            f"at {self.stage}: {self.detail}"
        )


def supports_recover() -> dict[str, bool]:
    """Whether ``recover=True`` exists (it lands with the integrity work)."""
    return {
        "storage": "recover" in inspect.signature(Environment).parameters,
        "objects": "recover" in inspect.signature(Configuration.local).parameters,
    }


def plan_round(seed: int, suite: str, kinds: Sequence[str], only: str = "") -> Round:
    """The round of ``seed``; ``only``: comma-separated prefixes of the
    mutation names to draw from (all when empty)."""
    rng = random.Random(seed)
    kind = rng.choice(list(kinds))
    table = LOCK_SCENARIOS if suite == "lock" else MUTATIONS
    prefixes = tuple(p for p in only.split(",") if p)
    names = [n for n in table if not prefixes or n.startswith(prefixes)]
    if not names:
        raise ValueError(f"no {suite} mutation starts with any of {prefixes}")
    if suite == "lock":
        name = rng.choice(names)
        return Round(seed, suite, LOCK_SCENARIOS[name][0], name, "rw", only)
    mutation = rng.choices(names, [MUTATIONS[n][0] for n in names])[0]
    mode = "recover" if suite == "recover" else ("ro" if rng.random() < 0.2 else "rw")
    return Round(seed, suite, kind, mutation, mode, only)


def damage_for(rnd: Round, base: Base) -> Damage:
    """The round's damage; drawn again (same generator, so deterministic)
    when a draw happens to change nothing, e.g. zeroes over zeroes."""
    rng = random.Random(rnd.seed * 7919 + 1)
    mutate = MUTATIONS[rnd.mutation][1]
    damage = mutate(rng, base)
    for _ in range(50):
        if damage.data != base.data or rnd.mutation == "none":
            break
        damage = mutate(rng, base)
    return damage


def _child(body: RoundBody, rnd: Round, base: Base, path: str) -> dict[str, Any]:
    """Run a round's body in the child; its verdict as a dict."""
    stage = Stage()
    try:
        cls, detail = body(rnd, base, path, stage)
        return {"cls": cls, "stage": stage.name, "detail": detail}
    except Mismatch as exc:
        return {"cls": WRONG, "stage": stage.name, "detail": str(exc)}
    except StorageError as exc:
        return {"cls": TYPED, "stage": stage.name, "detail": str(exc), "error": type(exc).__name__}
    except RealmpyError as exc:
        # An object-layer error on a damaged file: the engine handed out
        # damaged bytes, which the decoder (or schema check) tripped over.
        detail = f"object layer raised {type(exc).__name__} on damaged data: {exc}"
        return {"cls": WRONG, "stage": stage.name, "detail": detail, "error": type(exc).__name__}
    except Exception as exc:
        tb = traceback.format_exc(limit=-4)
        return {"cls": UNTYPED, "stage": stage.name, "detail": tb, "error": type(exc).__name__}


@dataclasses.dataclass
class _Running:
    rnd: Round
    what: str
    target: str
    pid: int
    pidfd: int
    pipe: int
    dir: str
    started: float


class Runner:
    """Runs rounds in forked children, ``jobs`` at a time."""

    def __init__(
        self,
        workdir: str,
        bases: dict[str, Base],
        jobs: int = 1,
        timeout: float = DEFAULT_TIMEOUT_S,
        keep: str | None = None,
        body: RoundBody = run_round,
    ) -> None:
        self.body = body
        self.workdir = workdir
        self.bases = bases
        self.jobs = max(1, jobs)
        self.timeout = timeout
        self.keep = keep
        self._slots = [os.path.join(workdir, f"slot{i}") for i in range(self.jobs)]

    def run(
        self, rounds: Sequence[Round], progress: Callable[[Outcome], None] | None = None
    ) -> list[Outcome]:
        pending = list(reversed(rounds))
        free = list(self._slots)
        running: dict[int, _Running] = {}
        out: list[Outcome] = []
        while pending or running:
            while pending and free:
                running_job = self._start(pending.pop(), free.pop())
                running[running_job.pidfd] = running_job
            now = time.monotonic()
            wait = min(r.started + self.timeout + 5 - now for r in running.values())
            ready, _, _ = select.select(list(running), [], [], max(0.0, wait))
            now = time.monotonic()
            for fd, job in list(running.items()):
                if fd in ready or now > job.started + self.timeout + 5:
                    del running[fd]
                    outcome = self._finish(job, timed_out=fd not in ready)
                    free.append(job.dir)
                    out.append(outcome)
                    if progress is not None:
                        progress(outcome)
        out.sort(key=lambda o: o.round.seed)
        return out

    def _start(self, rnd: Round, slot: str) -> _Running:
        shutil.rmtree(slot, ignore_errors=True)
        os.makedirs(slot)
        base = self.bases[rnd.kind]
        path = os.path.join(slot, "fuzz.db")
        if rnd.suite == "lock":
            data, what, target = base.data, "(intact data file)", "lock file"
        else:
            damage = damage_for(rnd, base)
            data, what, target = damage.data, damage.what, target_of(base, damage.data)
        with open(path, "wb") as f:
            f.write(data)
        if self.keep:  # the round changes fuzz.db; keep the damaged original too
            shutil.copyfile(path, os.path.join(slot, "damaged.db"))
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child
            os.close(r)
            self._child_main(rnd, base, path, slot, w)
        os.close(w)
        return _Running(rnd, what, target, pid, os.pidfd_open(pid), r, slot, time.monotonic())

    def _child_main(self, rnd: Round, base: Base, path: str, slot: str, w: int) -> None:
        try:
            err = os.open(os.path.join(slot, "stderr"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
            os.dup2(err, 1)
            os.dup2(err, 2)
            errfile = open(err, "w", closefd=False)
            faulthandler.enable(file=errfile, all_threads=True)
            faulthandler.dump_traceback_later(self.timeout - 1, file=errfile)
            signal.signal(signal.SIGALRM, signal.SIG_DFL)
            signal.alarm(int(self.timeout))
            result = _child(self.body, rnd, base, path)
            result["detail"] = str(result.get("detail", ""))[:MAX_DETAIL]
            os.write(w, json.dumps(result).encode())
            code = 0
        except BaseException:
            code = 3
        os._exit(code)

    def _finish(self, job: _Running, timed_out: bool) -> Outcome:
        if timed_out:
            os.kill(job.pid, signal.SIGKILL)
        _, status = os.waitpid(job.pid, 0)
        os.close(job.pidfd)
        chunks = []
        while True:
            chunk = os.read(job.pipe, 65536)
            if not chunk:
                break
            chunks.append(chunk)
        os.close(job.pipe)
        seconds = time.monotonic() - job.started
        outcome = Outcome(job.rnd, CRASH, what=job.what, target=job.target, seconds=seconds)
        stderr = _tail(os.path.join(job.dir, "stderr"))
        stage = last_stage(job.dir)
        if os.WIFSIGNALED(status):
            sig = os.WTERMSIG(status)
            if sig in (signal.SIGALRM, signal.SIGKILL):
                outcome.cls, outcome.detail = HANG, f"no answer in {self.timeout:.0f} s\n{stderr}"
            else:
                outcome.detail = f"{signal.Signals(sig).name}\n{stderr}"
                outcome.error = signal.Signals(sig).name
            outcome.stage = stage
        elif chunks:
            result = json.loads(b"".join(chunks))
            outcome.cls = result["cls"]
            outcome.stage = result.get("stage", "")
            outcome.detail = result.get("detail", "")
            outcome.error = result.get("error", "")
        else:
            outcome.detail = f"exit status {os.WEXITSTATUS(status)} without an answer\n{stderr}"
            outcome.stage = stage
        if not outcome.ok and self.keep:
            os.makedirs(self.keep, exist_ok=True)
            dest = os.path.join(self.keep, f"{job.rnd.seed}-{job.rnd.kind}-{job.rnd.mutation}")
            shutil.rmtree(dest, ignore_errors=True)
            shutil.copytree(job.dir, dest, symlinks=True)
        return outcome


def _tail(path: str, limit: int = 1500) -> str:
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError:
        return ""
    text = data.decode("utf-8", "replace")
    lines = [ln for ln in text.splitlines() if not ln.startswith("stage: ")]
    return "\n".join(lines)[-limit:]


def last_stage(slot: str) -> str:
    try:
        with open(os.path.join(slot, "stderr"), "rb") as f:
            lines = f.read().decode("utf-8", "replace").splitlines()
    except OSError:
        return ""
    stages = [ln[len("stage: ") :] for ln in lines if ln.startswith("stage: ")]
    return stages[-1] if stages else ""


def plan(suite: str, seed: int, rounds: int, kinds: Sequence[str], only: str = "") -> list[Round]:
    return [plan_round(seed + i, suite, kinds, only) for i in range(rounds)]


def _table(
    outcomes: Sequence[Outcome], first: str, keys: Callable[[Outcome], Sequence[str]]
) -> list[str]:
    """Markdown rows: outcome classes per key (keys in bold sort last)."""
    counts: dict[str, Counter[str]] = {}
    for o in outcomes:
        for key in keys(o):
            counts.setdefault(key, Counter())[o.cls] += 1
    used = [c for c in CLASSES if any(c in n for n in counts.values()) or c in (TYPED, INTACT)]
    rows = sorted(counts, key=lambda r: (r == "**all**", r.startswith("**"), r))
    lines = [f"| {first} | rounds | " + " | ".join(used) + " |", "|---|---:|" + "---:|" * len(used)]
    for r in rows:
        c = counts[r]
        cells = " | ".join(str(c[k] or "") for k in used)
        lines.append(f"| {r} | {sum(c.values())} | {cells} |")
    return lines


def summary(outcomes: Sequence[Outcome], title: str, seconds: float) -> str:
    """Outcome classes per mutation kind (and file kind), then per kind of
    page hit, as Markdown tables."""
    bad = sum(1 for o in outcomes if not o.ok)
    lines = [f"### {title}: {len(outcomes)} rounds, {bad} unacceptable, {seconds:.1f} s", ""]
    lines += _table(
        outcomes,
        "mutation",
        lambda o: (o.round.mutation, f"**{o.round.kind} ({o.round.mode})**", "**all**"),
    )
    if any(o.round.suite != "lock" for o in outcomes):
        lines += ["", *_table(outcomes, "page hit", lambda o: (o.target,))]
    errors = Counter(o.error for o in outcomes if o.cls == TYPED)
    if errors:
        lines += ["", "typed errors: " + ", ".join(f"{k} {v}" for k, v in errors.most_common())]
    stages = Counter(f"{o.cls} at {o.stage}" for o in outcomes if not o.ok).most_common(12)
    if stages:
        lines += ["unacceptable, by stage: " + ", ".join(f"{k}: {v}" for k, v in stages)]
    return "\n".join(lines) + "\n"


@dataclasses.dataclass
class Settings:
    """The knobs of a run, from the environment (tests) or the command line."""

    seed: int = 20261207
    rounds: int = 300
    jobs: int = 2
    timeout: float = DEFAULT_TIMEOUT_S
    keep: str | None = None
    report: str | None = None
    kinds: tuple[str, ...] = ("objects", "storage")
    mutations: str = ""  # comma-separated name prefixes; empty: all

    @classmethod
    def from_env(cls) -> Settings:
        env = os.environ
        kinds = tuple(k for k in env.get("REALMPY_FUZZ_KINDS", "objects,storage").split(",") if k)
        return cls(
            seed=int(env.get("REALMPY_FUZZ_SEED", cls.seed)),
            rounds=int(env.get("REALMPY_FUZZ_ROUNDS", cls.rounds)),
            jobs=int(env.get("REALMPY_FUZZ_JOBS", min(2, os.cpu_count() or 1))),
            timeout=float(env.get("REALMPY_FUZZ_TIMEOUT", DEFAULT_TIMEOUT_S)),
            keep=env.get("REALMPY_FUZZ_KEEP") or None,
            report=env.get("REALMPY_FUZZ_REPORT") or None,
            kinds=kinds,
            mutations=env.get("REALMPY_FUZZ_MUTATIONS", ""),
        )


def run_suite(
    suite: str,
    settings: Settings,
    workdir: str,
    bases: dict[str, Base],
    rounds: int | None = None,
    progress: Callable[[Outcome], None] | None = None,
) -> tuple[list[Outcome], str]:
    """Run ``rounds`` rounds of ``suite``; (outcomes, summary table)."""
    n = settings.rounds if rounds is None else rounds
    kinds = settings.kinds
    if suite == "recover":
        ok = supports_recover()
        kinds = tuple(k for k in kinds if ok[k])
    todo = plan(suite, settings.seed, n, kinds, settings.mutations)
    runner = Runner(workdir, bases, settings.jobs, settings.timeout, settings.keep)
    start = time.monotonic()
    outcomes = runner.run(todo, progress)
    seconds = time.monotonic() - start
    title = f"{suite} suite, seed {settings.seed}, kinds {','.join(kinds)}"
    table = summary(outcomes, title, seconds)
    if settings.report:
        with open(settings.report, "a") as f:
            f.write(table + "\n")
    return outcomes, table


def failure_report(outcomes: Sequence[Outcome], limit: int = 25) -> str:
    bad = [o for o in outcomes if not o.ok]
    lines = [f"{len(bad)} of {len(outcomes)} rounds were neither a typed error nor intact:"]
    for o in bad[:limit]:
        lines.append("- " + o.line().replace("\n", "\n    "))
        lines.append(f"    replay: {o.round.replay()}")
    if len(bad) > limit:
        lines.append(f"... and {len(bad) - limit} more (REALMPY_FUZZ_REPORT / the summary has all)")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    defaults = Settings.from_env()
    parser.add_argument("--suite", choices=["data", "recover", "lock"], action="append")
    parser.add_argument("--rounds", type=int, default=defaults.rounds)
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--jobs", type=int, default=defaults.jobs)
    parser.add_argument("--timeout", type=float, default=defaults.timeout)
    parser.add_argument("--kinds", default=",".join(defaults.kinds))
    parser.add_argument(
        "--mutations", default=defaults.mutations, help="name prefixes, e.g. meta.,header.npages"
    )
    parser.add_argument(
        "--keep", default=defaults.keep, help="copy unacceptable rounds' files here"
    )
    parser.add_argument("--report", default=defaults.report, help="append the summary tables here")
    parser.add_argument("--failures", help="write every unacceptable round here (one per line)")
    parser.add_argument("--workdir", help="scratch directory (default: a new temporary one)")
    parser.add_argument("-v", "--verbose", action="store_true", help="print unacceptable rounds")
    parser.add_argument("--all", action="store_true", help="print every round, one line each")
    args = parser.parse_args(argv)
    settings = Settings(
        args.seed,
        args.rounds,
        args.jobs,
        args.timeout,
        args.keep,
        args.report,
        tuple(k for k in args.kinds.split(",") if k),
        args.mutations,
    )
    workdir = args.workdir or tempfile.mkdtemp(prefix="realmpy-fuzz-")
    bases = build_bases(os.path.join(workdir, "bases"))
    status = 0
    for suite in args.suite or ["data"]:
        if suite == "recover" and not any(supports_recover()[k] for k in settings.kinds):
            print("recover suite skipped: this realmpy has no recover=True")
            continue
        outcomes, table = run_suite(suite, settings, workdir, bases)
        if args.all:
            for o in outcomes:
                print(o.line().split("\n")[0][:300])
        print(table)
        bad = [o for o in outcomes if not o.ok]
        if bad:
            status = 1
            if args.verbose:
                print(failure_report(outcomes, limit=len(bad)))
            if args.failures:
                with open(args.failures, "a") as f:
                    for o in bad:
                        f.write(f"[{suite}] {o.line()}\n")
    if not args.workdir:
        shutil.rmtree(workdir, ignore_errors=True)
    return status


if __name__ == "__main__":
    sys.exit(main())
