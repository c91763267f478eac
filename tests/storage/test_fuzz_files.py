"""Damaged files never crash, never read back wrong, never silently roll back.

The file fuzz of issue 10: realistic object-layer and storage files are
damaged in targeted ways (bit flips, zeroed and garbage sectors and pages,
page-header fields, truncation, swapped and duplicated pages, appended
bytes, meta damage, lost writes) and lock files are tampered with while in
use; each round opens, reads everything, checks and writes in a forked child
with a time limit (``fuzz_files.py`` has the machinery and the list of
mutations).  A round must end in a typed storage error or read back exactly
the last acknowledged commit; anything else fails the test with the
round's reproducer.

Knobs (environment):

* ``REALMPY_FUZZ_ROUNDS`` (default 300): rounds of the data-file suite; the
  recover suite runs a quarter and the lock-file suite a sixth of that
  (at least one each).  ``REALMPY_FUZZ_ROUNDS=10000`` is a deep soak.
* ``REALMPY_FUZZ_SEED`` (fixed default, printed): round ``i`` uses seed
  ``SEED + i``, so ``REALMPY_FUZZ_SEED=<seed> REALMPY_FUZZ_ROUNDS=1`` replays
  one round.
* ``REALMPY_FUZZ_MUTATIONS`` (name prefixes), ``REALMPY_FUZZ_KINDS``
  (``objects,storage``), ``REALMPY_FUZZ_JOBS`` (children at a time),
  ``REALMPY_FUZZ_TIMEOUT`` (hang guard per round, seconds),
  ``REALMPY_FUZZ_KEEP`` (directory to copy failing rounds' files into),
  ``REALMPY_FUZZ_REPORT`` (file the summary tables are appended to; they
  are also printed, visible with ``-s``).
"""

from __future__ import annotations

import os
import pathlib
import signal
from collections.abc import Iterator

import pytest

from realmpy.errors import CorruptError
from tests.storage import fuzz_files as fz
from tests.storage.fuzz_corpus import (
    CRASH,
    HANG,
    INTACT,
    RECOVERED,
    ROLLBACK,
    TYPED,
    UNTYPED,
    WRONG,
    Base,
    PageMap,
    Verdict,
    build_bases,
    compare,
)
from tests.storage.fuzz_damage import MUTATIONS
from tests.storage.fuzz_rounds import Round, RoundBody, Stage

SETTINGS = fz.Settings.from_env()


@pytest.fixture(scope="module")
def bases(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Base]]:
    yield build_bases(str(tmp_path_factory.mktemp("fuzz-bases")))


def run(suite: str, bases: dict[str, Base], workdir: pathlib.Path, rounds: int) -> None:
    print(f"\nfile fuzz, {suite} suite: seed {SETTINGS.seed}, {rounds} rounds")
    outcomes, table = fz.run_suite(suite, SETTINGS, str(workdir), bases, rounds)
    print(table)
    assert len(outcomes) == rounds
    bad = [o for o in outcomes if not o.ok]
    assert not bad, fz.failure_report(outcomes) + "\n\n" + table


def test_damaged_data_files(bases: dict[str, Base], tmp_path: pathlib.Path) -> None:
    run("data", bases, tmp_path, SETTINGS.rounds)


def test_damaged_data_files_recover(bases: dict[str, Base], tmp_path: pathlib.Path) -> None:
    """``recover=True``: an older intact commit is an acceptable answer."""
    supported = fz.supports_recover()
    if not any(supported[k] for k in SETTINGS.kinds):
        pytest.skip("neither Environment nor Configuration.local takes recover=True")
    run("recover", bases, tmp_path, max(1, SETTINGS.rounds // 4))


def test_damaged_lock_files(bases: dict[str, Base], tmp_path: pathlib.Path) -> None:
    run("lock", bases, tmp_path, max(1, SETTINGS.rounds // 6))


# ---- the harness itself ------------------------------------------------------


@pytest.mark.parametrize("mode", ["rw", "ro"])
@pytest.mark.parametrize("kind", ["objects", "storage"])
def test_undamaged_files_read_back_intact(
    bases: dict[str, Base], tmp_path: pathlib.Path, kind: str, mode: str
) -> None:
    """The whole round (open, read, check, write, reopen) on an intact file
    reads the last commit: the expected contents and the readers agree."""
    runner = fz.Runner(str(tmp_path), bases)
    [outcome] = runner.run([Round(1, "data", kind, "none", mode)])
    assert (outcome.cls, outcome.detail) == (INTACT, "")
    last = {
        "ro": "check",
        "rw": {"objects": "check after write", "storage": "reopen after write"}[kind],
    }
    assert outcome.stage == last[mode]


def test_every_mutation_changes_the_file(bases: dict[str, Base]) -> None:
    for name in MUTATIONS:
        for kind, base in bases.items():
            for seed in range(5):
                damage = fz.damage_for(Round(seed, "data", kind, name, "rw"), base)
                assert (damage.data == base.data) == (name == "none"), (name, kind, seed)
                assert damage.what


def test_pages_are_mapped(bases: dict[str, Base]) -> None:
    """Damage can be aimed at every kind of page both files have."""
    for kind, base in bases.items():
        roles = {r for r in PageMap.ROLES if base.pages.in_role(r)}
        assert roles == set(PageMap.ROLES), kind
        assert base.pages.in_role("newest")
        assert len(base.dumps) >= 8


def _crash(rnd: Round, base: Base, path: str, stage: Stage) -> Verdict:
    stage("crashing")
    os.kill(os.getpid(), signal.SIGSEGV)
    return INTACT, ""


def _block(rnd: Round, base: Base, path: str, stage: Stage) -> Verdict:
    stage("blocking")
    signal.pause()  # until the round's time limit ends it
    return INTACT, ""


def _older(rnd: Round, base: Base, path: str, stage: Stage) -> Verdict:
    return compare(base.dumps[-2], base, rnd.mode)


def _changed(rnd: Round, base: Base, path: str, stage: Stage) -> Verdict:
    table, rows = next((t, r) for t, r in sorted(base.expected.items()) if r)
    got = {**base.expected, table: {**rows, next(iter(rows)): b"changed"}}
    return compare(got, base, rnd.mode)


def _typed(rnd: Round, base: Base, path: str, stage: Stage) -> Verdict:
    raise CorruptError("page 7 failed its checksum")


def _untyped(rnd: Round, base: Base, path: str, stage: Stage) -> Verdict:
    raise MemoryError("a damaged length asked for 2**62 bytes")


@pytest.mark.parametrize(
    ("body", "mode", "expected"),
    [
        (_crash, "rw", CRASH),
        (_block, "rw", HANG),
        (_older, "rw", ROLLBACK),
        (_older, "recover", RECOVERED),
        (_changed, "rw", WRONG),
        (_typed, "rw", TYPED),
        (_untyped, "rw", UNTYPED),
    ],
)
def test_outcomes_are_classified(
    bases: dict[str, Base],
    tmp_path: pathlib.Path,
    body: RoundBody,
    mode: str,
    expected: str,
) -> None:
    runner = fz.Runner(str(tmp_path), bases, timeout=2, body=body)
    [outcome] = runner.run([Round(7, "data", "storage", "none", mode)])
    assert outcome.cls == expected, outcome.line()
    assert outcome.ok == (expected in (TYPED, INTACT, RECOVERED))
    assert "REALMPY_FUZZ_SEED=7" in fz.failure_report([outcome]) or outcome.ok
