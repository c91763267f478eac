"""Files of an older format (1 or 2) are converted to the current one on the
first writable open while no other process has them open, or by ``realmpy
upgrade``; otherwise a typed error says what to do (format.h, FORMAT
VERSIONS; docs/format.md; csrc/legacy.c).

The fixtures (tests/storage/fixtures/README.md) were written by the realmpy
versions that wrote those formats, with the tables as those versions read
them; a converted file must hold exactly the same tables, dump to the same
objects and pass ``realmpy check``.  Kills at points of the conversion are
in tests/c/test_legacy.c.
"""

from __future__ import annotations

import io
import json
import os
import random
import shutil
import stat
from collections.abc import Callable
from pathlib import Path

import pytest

from realmpy import ObjectId
from realmpy.config import Configuration
from realmpy.errors import CorruptError, FormatTooOldError, FormatVersionError
from realmpy.realm import Realm
from realmpy.sidefiles import lock_side_file, open_side_file
from realmpy.storage import Environment, upgrade_file
from realmpy.tools.checkfile import check_file
from realmpy.tools.commands import COMMANDS
from tests.storage.fixtures.make_fixtures import Car, Dog, Person, table_digests

FIXTURES = Path(__file__).parent / "fixtures"
_PAGE = 4096


def _copy(name: str, tmp_path: Path) -> str:
    path = tmp_path / name
    shutil.copyfile(FIXTURES / name, path)
    return str(path)


def _expected(name: str) -> dict[str, list[object]]:
    result: dict[str, list[object]] = json.loads((FIXTURES / (name + ".tables.json")).read_text())
    return result


def _run(command: str, *argv: str) -> str:
    out = io.StringIO()
    assert COMMANDS[command][0](list(argv), out) == 0
    return out.getvalue()


def _format_of(path: str) -> set[int]:
    with open(path, "rb") as f:
        meta = f.read(2 * _PAGE)
    offsets = (0, _PAGE, 2048, _PAGE + 2048)
    return {
        int.from_bytes(meta[o + 40 : o + 44], "little") for o in offsets if any(meta[o : o + 128])
    }


def _newest_version(path: str) -> int:
    with open(path, "rb") as f:
        meta = f.read(2 * _PAGE)
    offsets = (0, _PAGE, 2048, _PAGE + 2048)
    return max(int.from_bytes(meta[o + 8 : o + 16], "little") for o in offsets)


@pytest.mark.parametrize("name", ["format1-raw.realm", "format2-raw.realm"])
def test_upgrade_keeps_every_table(tmp_path: Path, name: str) -> None:
    path = _copy(name, tmp_path)
    assert _format_of(path) == ({1} if name.startswith("format1") else {2})
    version = _newest_version(path)
    assert "converted" in _run("upgrade", path)
    assert _format_of(path) == {3}
    assert table_digests(path) == _expected(name)
    with Environment(path) as env:
        env.check()
        assert env.version == version  # the version number goes on
    assert "already in the current file format" in _run("upgrade", path)
    assert not os.path.exists(path + ".upgrade")


@pytest.mark.parametrize(
    ("name", "config"),
    [
        ("format2-objects.realm", lambda p: Configuration.local([Person, Dog], path=p)),
        ("format2-synced.realm", lambda p: Configuration.disconnected_sync([Car], path=p)),
    ],
)
def test_writable_open_converts_an_object_file(
    tmp_path: Path, name: str, config: Callable[[str], Configuration]
) -> None:
    path = _copy(name, tmp_path)
    os.chmod(path, 0o640)
    version = _newest_version(path)
    with Realm(config(path)) as realm:
        if name == "format2-objects.realm":
            two = realm.find(Person, ObjectId(b"%012d" % 2))
            assert two is not None and [d.id for d in two.dogs] == [20]  # Dog 21 was deleted
            renamed = realm.query(Person, "name == 'renamed'").first()
            assert renamed is not None and renamed.age == 5
            rex = realm.find(Dog, 10)
            assert rex is not None and rex.owner is not None and rex.owner.name == "person 1"
            assert [p.name for p in realm.query(Person, "ANY dogs.id == 10")] == ["person 1"]
        else:
            local = realm.find(Car, ObjectId(b"local%07d" % 1))
            assert local is not None and local.make == "offline"
    assert _format_of(path) == {3}
    assert _newest_version(path) >= version  # numbers go on from the old file's
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o640
    # The sync tables (history of the unsynced local changes, subscriptions,
    # state) and the object, index and schema tables, byte for byte.
    assert table_digests(path) == _expected(name)
    assert _run("dump", path) == (FIXTURES / (name + ".dump.jsonl")).read_text()
    assert "sound" in check_file(path)


def test_read_only_open_is_refused_with_what_to_do(tmp_path: Path) -> None:
    path = _copy("format2-objects.realm", tmp_path)
    before = Path(path).read_bytes()
    with pytest.raises(FormatTooOldError, match=r"read-only.*realmpy upgrade") as info:
        Realm(Configuration.local([Person, Dog], path=path, read_only=True))
    assert isinstance(info.value, FormatVersionError)
    with pytest.raises(FormatTooOldError, match=r"realmpy upgrade"):
        Environment(path)  # the storage layer alone never converts
    assert Path(path).read_bytes() == before


def test_open_while_another_process_has_it_is_refused(tmp_path: Path) -> None:
    path = _copy("format2-objects.realm", tmp_path)
    before = Path(path).read_bytes()
    # Another holder of the session file's shared lock, as another process
    # with the file open (OFD locks of two open files conflict in one process).
    fd = open_side_file(path, ".session", read_only=False, what="test")
    assert fd is not None
    try:
        lock_side_file(fd, exclusive=False, block=True)
        with pytest.raises(FormatTooOldError, match=r"another process has it open"):
            Realm(Configuration.local([Person, Dog], path=path))
        with pytest.raises(FormatTooOldError, match=r"another process"):
            _run("upgrade", path)
    finally:
        os.close(fd)
    assert Path(path).read_bytes() == before
    assert "converted" in _run("upgrade", path)  # alone now
    fd = open_side_file(path, ".session", read_only=False, what="test")
    assert fd is not None
    try:  # in use but current: nothing to do, not an error
        lock_side_file(fd, exclusive=False, block=True)
        assert "already in the current file format" in _run("upgrade", path)
    finally:
        os.close(fd)


def test_compact_converts_first(tmp_path: Path) -> None:
    path = _copy("format2-objects.realm", tmp_path)
    out = _run("compact", path)
    assert "converted" in out and "compacted" in out
    assert table_digests(path) == _expected("format2-objects.realm")


def test_a_stopped_conversion_is_started_again(tmp_path: Path) -> None:
    """A crash mid-copy leaves <path>.upgrade, never renamed: the old file is
    whole, and the next conversion replaces the leftover."""
    path = _copy("format2-raw.realm", tmp_path)
    Path(path + ".upgrade").write_bytes(b"half a copy" * 1000)
    Path(path + ".upgrade.lock").write_bytes(b"x")
    assert upgrade_file(path)
    assert not os.path.exists(path + ".upgrade") and not os.path.exists(path + ".upgrade.lock")
    assert table_digests(path) == _expected("format2-raw.realm")


def _leaf_pages(path: str) -> list[int]:
    data = Path(path).read_bytes()
    return [
        p
        for p in range(2, len(data) // _PAGE)
        if int.from_bytes(data[p * _PAGE + 4 : p * _PAGE + 6], "little") == 0x02
    ]


def test_damaged_old_file_is_corrupt_error_and_left_alone(tmp_path: Path) -> None:
    path = _copy("format2-raw.realm", tmp_path)
    page = _leaf_pages(path)[-1]
    with open(path, "r+b") as f:
        f.seek(page * _PAGE + 100)
        f.write(b"\xff\xff")
    before = Path(path).read_bytes()
    with pytest.raises(CorruptError, match=rf"page {page}"):
        upgrade_file(path)
    assert Path(path).read_bytes() == before
    assert not os.path.exists(path + ".upgrade")


def test_fuzzed_old_files_convert_or_fail_typed(tmp_path: Path) -> None:
    """Random damage to the pages the reader uses: a conversion or
    CorruptError, never a crash (tests/c/test_legacy.c fuzzes under ASan)."""
    original = (FIXTURES / "format2-raw.realm").read_bytes()
    pages = _leaf_pages(str(FIXTURES / "format2-raw.realm"))
    rng = random.Random(16)
    outcomes = set()
    for i in range(60):
        data = bytearray(original)
        page = rng.choice(pages) if i % 2 else rng.randrange(2, 40)
        for _ in range(rng.randint(1, 4)):
            data[page * _PAGE + rng.randrange(_PAGE)] ^= 1 << rng.randrange(8)
        path = tmp_path / f"fuzz{i}.realm"
        path.write_bytes(bytes(data))
        try:
            upgrade_file(path)
            outcomes.add("converted")
        except CorruptError:
            outcomes.add("corrupt")
            assert path.read_bytes() == bytes(data)
    assert "corrupt" in outcomes
