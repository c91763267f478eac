"""Damaged files: typed errors that say where, and the salvage path.

The C reproducers (tests/c/test_integrity.c) cover every read path and each
kind of damage; these check what Python sees: :class:`CorruptError` whose
message names the page, the table and the check that failed; an
acknowledged commit that is damaged reported by the read of the damaged
page (never rolled back), a truncated file refused on open;
``recover=True`` (``Environment`` and ``Configuration.local``) rolling back
with :class:`RecoveryWarning` and ``recovered_from``; ``verify=False``
skipping checksums.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import pytest

from realmpy.config import Configuration
from realmpy.errors import ConfigurationError, CorruptError, RecoveryWarning
from realmpy.realm import Realm
from realmpy.storage import Environment
from tests.objects_models import MODELS, Dog

_VALUE = b"v" * 60


def _build(path: str, keys: int = 400) -> None:
    """Version 2: table t; version 3: only table other (t's pages older)."""
    with Environment(path) as env:
        with env.write() as txn:
            for i in range(keys):
                txn.put("t", b"k%05d" % i, _VALUE + b"%05d" % i)
        with env.write() as txn:
            txn.put("other", b"k", b"v")


def _flip(path: str, offset: int, mask: int = 0x01) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        b = f.read(1)[0]
        f.seek(offset)
        f.write(bytes([b ^ mask]))


def _entry_bytes(key: bytes, value: bytes) -> bytes:
    """key, the value's length (a varint), the value: how an inline value
    follows its key in a leaf entry (format.h)."""
    tag, vtag = len(value) * 2, b""
    while tag >= 0x80:
        vtag, tag = vtag + bytes([tag & 0x7F | 0x80]), tag >> 7
    return key + vtag + bytes([tag]) + value


def _damage_value_of(path: str, key: bytes, value: bytes) -> int:
    """Flip a byte of key's value in every page copy of it; returns the page
    number of one of them."""
    data = Path(path).read_bytes()
    # format.h: the key, its value's length (a varint), the value.
    entry = _entry_bytes(key, value)
    pos, pages = data.find(entry), []
    while pos >= 0:
        _flip(path, pos + len(key) + 5)
        pages.append(pos // 4096)
        pos = data.find(entry, pos + 1)
    assert pages
    return pages[0]


def test_damaged_value_is_a_corrupt_error_naming_page_and_table(db_path: str) -> None:
    _build(db_path)
    _damage_value_of(db_path, b"k00123", _VALUE + b"00123")
    with Environment(db_path) as env:
        with env.read() as snap:
            with pytest.raises(CorruptError, match=r"page \d+: checksum mismatch \(table t\)"):
                snap.get("t", b"k00123")
            with pytest.raises(CorruptError, match=r"checksum mismatch \(table t\)"):
                list(snap.scan("t"))
            with pytest.raises(CorruptError, match="checksum mismatch"):
                snap.get_many("t", [b"k00001", b"k00123"])
            assert snap.get("other", b"k") == b"v"
        with pytest.raises(CorruptError, match=r"integrity check failed.*checksum mismatch"):
            env.check()


def test_verify_false_skips_checksums(db_path: str) -> None:
    """The opt-out reads the damaged bytes as they are (structure intact)."""
    _build(db_path)
    _damage_value_of(db_path, b"k00123", _VALUE + b"00123")
    with Environment(db_path, verify=False) as env:
        with env.read() as snap:
            got = snap.get("t", b"k00123")
    assert got is not None and got != _VALUE + b"00123" and len(got) == len(_VALUE) + 5


def test_damaged_acknowledged_commit_is_reported_then_recovered(db_path: str) -> None:
    """Open does not walk an acknowledged commit (docs/integrity.md): it
    opens that version, never an older one, and the first read of the
    damaged page raises; a salvage walks it and rolls back."""
    _build(db_path)
    with Environment(db_path) as env:
        with env.write() as txn:
            txn.put("t", b"k00200", b"newest")
        newest = env.version
    data = Path(db_path).read_bytes()
    pos = data.rindex(_entry_bytes(b"k00200", b"newest"))
    _flip(db_path, pos + 9)
    with Environment(db_path) as env:
        assert env.version == newest and env.recovered_from is None
        with env.read() as snap:
            with pytest.raises(CorruptError) as info:
                snap.get("t", b"k00200")
        message = str(info.value)
        assert f"page {pos // 4096}: checksum mismatch (table t)" in message
        assert "recover=True" in message
        with pytest.raises(CorruptError, match=f"page {pos // 4096}: checksum mismatch"):
            env.check()
    with pytest.warns(RecoveryWarning, match=f"version {newest - 1}"):
        env = Environment(db_path, recover=True)
    with env:
        assert env.recovered_from == newest
        assert "checksum mismatch" in env.recovery_note
        with env.read() as snap:
            assert snap.get("t", b"k00200") == _VALUE + b"00200"
        env.check()
    # The salvage is durable: a plain open works and reports nothing.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with Environment(db_path) as env:
            assert env.recovered_from is None and env.recovery_note == ""


def test_both_meta_copies_damaged(db_path: str) -> None:
    _build(db_path)  # newest version 3: primary in page 1, mirror in page 0 at 2048
    _flip(db_path, 4096 + 60)
    with Environment(db_path) as env:  # one copy: survived, and check() says so
        assert env.version == 3 and env.recovered_from is None
        with pytest.raises(CorruptError, match="meta page 1 offset 0: damaged copy"):
            env.check()
    _flip(db_path, 2048 + 60)
    with pytest.raises(CorruptError, match="both copies"):
        Environment(db_path)
    with pytest.warns(RecoveryWarning):
        with Environment(db_path, recover=True) as env:
            assert env.recovered_from == 3
            with env.read() as snap:
                assert snap.get("other", b"k") is None
                assert snap.get("t", b"k00000") == _VALUE + b"00000"


@pytest.mark.parametrize("fill", [b"\0", b"\xff"], ids=["zeroed", "garbage"])
def test_lost_parity_is_refused_and_salvage_sticks(db_path: str, fill: bytes) -> None:
    # Meta page 0 whole and page 1's first sector: both copies of version 3's
    # parity are gone (zeroed slots are damage too once version 2 exists); the
    # surviving record, version 2, cannot say whether version 3 was acknowledged.
    _build(db_path)
    with open(db_path, "r+b") as f:
        f.write(fill * 4096)
        f.seek(4096)
        f.write(fill * 512)
    os.remove(db_path + ".lock")
    with pytest.raises(CorruptError, match="both copies"):
        Environment(db_path)
    with pytest.warns(RecoveryWarning):
        with Environment(db_path, recover=True) as env:
            assert env.recovered_from == 3
    # The salvage rewrote both parities: a plain open works from now on.
    with Environment(db_path) as env, env.read() as snap:
        assert env.recovered_from is None
        assert snap.get("t", b"k00000") == _VALUE + b"00000"
        env.check()


@pytest.mark.parametrize("size_kib", [16, 64, 128])
def test_truncated_file_says_truncated(db_path: str, size_kib: int) -> None:
    _build(db_path, keys=3000)
    os.truncate(db_path, size_kib * 1024)
    with pytest.raises(CorruptError, match="the file was truncated: version 3 needs"):
        Environment(db_path)
    with pytest.raises(CorruptError, match="truncated"):
        Environment(db_path, recover=True)


def test_configuration_local_recover(tmp_path: Path) -> None:
    path = tmp_path / "r.realm"
    config = Configuration.local(MODELS, path=path)
    with Realm(config) as realm:
        with realm.write():
            realm.add(Dog(id=1, name="rex", age=3))
        with realm.write():
            realm.add(Dog(id=2, name="fido", age=4))
    with Environment(str(path)) as env:
        newest = env.version
    # Both copies of the newest meta record (its parity's primary and mirror).
    primary = (newest % 2) * 4096
    mirror = (1 - newest % 2) * 4096 + 2048
    _flip(str(path), primary + 60)
    _flip(str(path), mirror + 60)
    with pytest.raises(CorruptError, match="recover=True"):
        Realm(config)
    salvage = Configuration.local(MODELS, path=path, recover=True)
    assert salvage.recover
    with pytest.warns(RecoveryWarning):
        realm = Realm(salvage)
    with realm:
        assert realm.find(Dog, 1) is not None
        assert realm.find(Dog, 2) is None
    with pytest.raises(ConfigurationError, match="recover must be a bool"):
        Configuration.local(MODELS, path=path, recover="yes")  # type: ignore[arg-type]
