"""Bad files, bad arguments and misuse: typed errors, never a crash.

Opening damaged or foreign files runs in a subprocess, so that a segfault
(or a hang) fails the test instead of killing pytest.
"""

from __future__ import annotations

import fcntl
import json
import os
import pathlib
import shutil
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from typing import Any

import hypothesis.strategies as st
import pytest
from hypothesis import HealthCheck, given, settings

from realmpy import errors
from realmpy._engine import ffi, lib
from realmpy.errors import (
    ArgumentTypeError,
    BadTableError,
    ClosedError,
    InvalidArgumentError,
    KeyTooLongError,
    ReadOnlyError,
    StorageError,
    TransactionActiveError,
    TransactionError,
    WrongThreadError,
)
from realmpy.storage import Environment

ROOT = pathlib.Path(__file__).resolve().parents[2]
SUBPROCESS_TIMEOUT = 120  # a hang guard, not a performance threshold

RUNNER = r"""
import json, sys
from realmpy import errors, storage
spec = json.loads(sys.argv[1])
res = {}
try:
    with storage.Environment(spec["path"], **spec.get("kwargs", {})) as env:
        with env.read() as snap:
            res["data"] = {
                t: [[k.hex(), v.hex()] for k, v in snap.scan(t)] for t in snap.tables()
            }
        env.check()
        res["ok"] = True
except errors.StorageError as exc:
    res["error"] = type(exc).__name__
    res["message"] = str(exc)
print(json.dumps(res))
"""


def open_in_subprocess(path: str, **kwargs: Any) -> dict[str, Any]:
    """Open, read everything and check ``path`` in a child interpreter."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    proc = subprocess.run(
        [sys.executable, "-c", RUNNER, json.dumps({"path": path, "kwargs": kwargs})],
        capture_output=True,
        text=True,
        timeout=SUBPROCESS_TIMEOUT,
        env=env,
    )
    assert proc.returncode == 0, (
        f"child died (code {proc.returncode}) opening {path}:\n{proc.stderr[-3000:]}"
    )
    result: dict[str, Any] = json.loads(proc.stdout)
    if "error" in result:
        cls = getattr(errors, result["error"])
        assert issubclass(cls, StorageError)
        assert path in result["message"], result["message"]
    return result


def as_hex(model: dict[str, dict[bytes, bytes]]) -> dict[str, list[list[str]]]:
    return {t: [[k.hex(), v.hex()] for k, v in sorted(rows.items())] for t, rows in model.items()}


def make_db(path: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """A database with two versions; returns both states (hex form)."""
    v1: dict[str, dict[bytes, bytes]] = {
        "small": {b"%03d" % i: b"v%d" % i for i in range(300)},
        "big": {b"b%d" % i: bytes([i]) * 5000 for i in range(3)},
    }
    v2 = {t: dict(rows) for t, rows in v1.items()}
    v2["small"].update({b"%03d" % i: b"w%d" % i for i in range(0, 300, 7)})
    v2["other"] = {b"x": b"y"}
    with Environment(path) as env:
        for model in (v1, v2):
            with env.write() as txn:
                for table, rows in model.items():
                    txn.put_many(table, rows.items())
    return as_hex(v1), as_hex(v2)


@pytest.fixture(scope="module")
def base_db(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Any, Any]]:
    path = str(tmp_path_factory.mktemp("base") / "base.db")
    v1, v2 = make_db(path)
    yield path, v1, v2


def test_valid_file_opens_in_subprocess(base_db: tuple[str, Any, Any]) -> None:
    path, _, v2 = base_db
    result = open_in_subprocess(path)
    assert result.get("ok") and result["data"] == v2


# ---- damaged and foreign files ---------------------------------------------------


@pytest.mark.parametrize("keep", [0, 1, 100, 4096, 8191, 8192, 12288, "half", "minus1"])
def test_truncated_file(base_db: tuple[str, Any, Any], tmp_path: pathlib.Path, keep: Any) -> None:
    path, v1, v2 = base_db
    dst = str(tmp_path / "trunc.db")
    shutil.copyfile(path, dst)
    size = os.path.getsize(dst)
    n = {"half": size // 2, "minus1": size - 1}.get(keep, keep)
    os.truncate(dst, n)
    result = open_in_subprocess(dst)
    if result.get("ok"):
        # Only an empty file may open as a new database; otherwise the data
        # must be one of the committed versions (e.g. only zeros were cut).
        assert result["data"] in (v1, v2) or (n == 0 and result["data"] == {})


@pytest.mark.parametrize("size", [1, 4096, 8192, 65536])
def test_zero_filled_file(tmp_path: pathlib.Path, size: int) -> None:
    path = str(tmp_path / "zeros.db")
    with open(path, "wb") as f:
        f.write(bytes(size))
    result = open_in_subprocess(path)
    assert result.get("error") in ("NotADatabaseError", "CorruptError"), result


FOREIGN = {
    "png": b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\rIHDR" + os.urandom(20000),
    "text": b"hello, world\n" * 1000,
    "random": os.urandom(3 * 4096),
    "elf": b"\x7fELF\x02\x01\x01" + bytes(9000),
}


@pytest.mark.parametrize("kind", sorted(FOREIGN))
def test_foreign_file(tmp_path: pathlib.Path, kind: str) -> None:
    path = str(tmp_path / f"foreign.{kind}")
    with open(path, "wb") as f:
        f.write(FOREIGN[kind])
    before = pathlib.Path(path).read_bytes()
    result = open_in_subprocess(path)
    assert result.get("error") in ("NotADatabaseError", "CorruptError"), result
    assert pathlib.Path(path).read_bytes() == before, "a foreign file was modified"


def test_sqlite_file(tmp_path: pathlib.Path) -> None:
    path = str(tmp_path / "app.sqlite")
    con = sqlite3.connect(path)
    con.execute("create table t(x)")
    con.executemany("insert into t values (?)", [(i,) for i in range(1000)])
    con.commit()
    con.close()
    before = pathlib.Path(path).read_bytes()
    result = open_in_subprocess(path)
    assert result.get("error") == "NotADatabaseError", result
    assert pathlib.Path(path).read_bytes() == before


def test_directory_and_missing_paths(tmp_path: pathlib.Path) -> None:
    result = open_in_subprocess(str(tmp_path))
    assert result.get("error") in ("StorageIOError", "NotADatabaseError"), result
    missing = str(tmp_path / "no" / "such" / "dir.db")
    assert open_in_subprocess(missing).get("error") == "StorageFileNotFoundError"
    absent = str(tmp_path / "absent.db")
    result = open_in_subprocess(absent, read_only=True)
    assert result.get("error") == "StorageFileNotFoundError", result
    assert not os.path.exists(absent)


@settings(
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    deadline=None,
)
@given(data=st.data())
def test_random_corruption(
    base_db: tuple[str, Any, Any], tmp_path: pathlib.Path, data: st.DataObject
) -> None:
    path, v1, v2 = base_db
    used = os.path.getsize(path)
    with Environment(path, read_only=True) as env:
        used = min(used, env.stats().pages_used * 4096)
    flips = data.draw(
        st.lists(
            st.tuples(st.integers(0, used - 1), st.integers(1, 255)),
            min_size=1,
            max_size=6,
        )
    )
    dst = str(tmp_path / "corrupt.db")
    raw = bytearray(pathlib.Path(path).read_bytes())
    for offset, xor in flips:
        raw[offset] ^= xor
    pathlib.Path(dst).write_bytes(bytes(raw))
    if os.path.exists(dst + ".lock"):
        os.remove(dst + ".lock")
    result = open_in_subprocess(dst)
    if result.get("ok"):
        # Damage the checks did not see must not have changed any data:
        # the newest version, or the previous one if its meta page was hit.
        assert result["data"] in (v2, v1)


# ---- lock file of another layout, in use by another process ------------------


def _hold_shared_lock(lock_path: str, ready_w: int) -> None:
    fd = os.open(lock_path, os.O_RDWR)
    fcntl.lockf(fd, fcntl.LOCK_SH, 1, 0)  # what another build's opener holds
    os.write(ready_w, b"x")
    os.read(0, 1)  # until the parent closes our stdin


@pytest.mark.parametrize("header", ["other-layout", "garbage"])
def test_incompatible_lock_file_in_use(db_path: str, header: str) -> None:
    Environment(db_path).close()
    lock_path = db_path + ".lock"
    if header == "other-layout":
        # Our magic, layout version 99: another realmpy build's lock file.
        head = b"rplock\x00\x00" + (99).to_bytes(4, "little") + bytes(52)
    else:
        head = os.urandom(64)
    with open(lock_path, "wb") as f:
        f.write(head + bytes(8192 - len(head)))
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys; sys.path.insert(0, sys.argv[1]); "
            "from test_storage_badinput import _hold_shared_lock as h; "
            "h(sys.argv[2], 1)",
            str(ROOT / "tests" / "storage"),
            lock_path,
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        assert holder.stdout is not None and holder.stdout.read(1) == b"x"
        result = open_in_subprocess(db_path)
        assert result.get("error") == "IncompatibleLockError", result
        assert "incompatible" in result["message"]
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        holder.wait(SUBPROCESS_TIMEOUT)
    # Once nobody holds it, the lock file is rebuilt and the file opens.
    assert open_in_subprocess(db_path).get("ok")


# ---- wrong argument types and values ---------------------------------------------


@pytest.fixture
def env(db_path: str) -> Iterator[Environment]:
    with Environment(db_path, durability="none") as e:
        with e.write() as txn:
            txn.put("t", b"k", b"v")
        yield e


BAD_OPEN_ARGS: list[tuple[dict[str, Any], type[Exception]]] = [
    ({"durability": "sometimes"}, InvalidArgumentError),
    ({"durability": 1}, InvalidArgumentError),
    ({"max_size": "1"}, ArgumentTypeError),
    ({"max_size": -1}, InvalidArgumentError),
    ({"max_size": True}, ArgumentTypeError),
    ({"max_size": 1.5}, ArgumentTypeError),
    ({"max_readers": 0}, InvalidArgumentError),
    ({"max_readers": "many"}, ArgumentTypeError),
    ({"max_active_versions": 0}, InvalidArgumentError),
    ({"max_active_versions": []}, ArgumentTypeError),
    ({"read_only": "yes"}, ArgumentTypeError),
]


@pytest.mark.parametrize(("kwargs", "exc"), BAD_OPEN_ARGS)
def test_bad_open_arguments(db_path: str, kwargs: dict[str, Any], exc: type[Exception]) -> None:
    with pytest.raises(exc):
        Environment(db_path, **kwargs)
    assert not os.path.exists(db_path)


@pytest.mark.parametrize("path", [3, None, b"bytes.db", "", "nul\0.db"])
def test_bad_paths(path: Any) -> None:
    with pytest.raises((ArgumentTypeError, InvalidArgumentError)):
        Environment(path)


def test_type_errors_are_also_builtin_type_errors() -> None:
    assert issubclass(ArgumentTypeError, TypeError)
    assert issubclass(KeyTooLongError, ValueError)
    assert issubclass(BadTableError, ValueError)
    assert issubclass(errors.DiskFullError, OSError)
    assert issubclass(errors.StorageFileNotFoundError, FileNotFoundError)


BAD_TABLES = [1, None, b"t", ["t"]]
BAD_KEYS = ["k", 1, None, ["k"], 1.0]


@pytest.mark.parametrize("table", BAD_TABLES)
def test_bad_table_types(env: Environment, table: Any) -> None:
    with env.write() as txn:
        for call in (
            lambda: txn.put(table, b"k", b"v"),
            lambda: txn.get(table, b"k"),
            lambda: txn.delete(table, b"k"),
            lambda: txn.scan(table),
            lambda: txn.count(table),
            lambda: txn.drop(table),
            lambda: txn.put_many(table, [(b"k", b"v")]),
            lambda: txn.get_many(table, [b"k"]),
        ):
            with pytest.raises(ArgumentTypeError, match="table name must be a str"):
                call()


@pytest.mark.parametrize("table", ["", "x" * 256, "\ud800"])
def test_bad_table_names(env: Environment, table: str) -> None:
    with env.write() as txn:
        with pytest.raises(BadTableError):
            txn.put(table, b"k", b"v")
        with pytest.raises(BadTableError):
            txn.get(table, b"k")
    # 255 bytes of UTF-8 is fine
    with env.write() as txn:
        txn.put("\u00e9" * 127 + "x", b"k", b"v")


@pytest.mark.parametrize("key", BAD_KEYS)
def test_bad_key_and_value_types(env: Environment, key: Any) -> None:
    with env.write() as txn:
        for call in (
            lambda: txn.put("t", key, b"v"),
            lambda: txn.put("t", b"k", key),
            lambda: txn.get("t", key),
            lambda: txn.delete("t", key),
            lambda: txn.get_many("t", [b"k", key]),
            lambda: txn.put_many("t", [(key, b"v")]),
            lambda: txn.put_many("t", [(b"k", key)]),
        ):
            with pytest.raises(ArgumentTypeError):
                call()
        if key is not None:  # None is a valid (open) bound
            with pytest.raises(ArgumentTypeError):
                txn.scan("t", start=key)
            with pytest.raises(ArgumentTypeError):
                txn.scan("t", stop=key)
        with pytest.raises(ArgumentTypeError):
            txn.scan("t", reverse=key)
        with pytest.raises(ArgumentTypeError):
            txn.put_many("t", [b"not a pair"])  # type: ignore[list-item]
        with pytest.raises(ArgumentTypeError):
            txn.put_many("t", [(b"a", b"b", b"c")])  # type: ignore[list-item]
        # bytes-like keys and values are accepted
        txn.put("t", bytearray(b"ba"), memoryview(b"mv"))
        assert txn.get("t", memoryview(b"ba")) == b"mv"


def test_oversize_and_empty_keys(env: Environment) -> None:
    with env.write() as txn:
        txn.put("t", b"k" * 1024, b"max size key")
        for bad in (b"k" * 1025, b""):
            with pytest.raises(KeyTooLongError, match="1 to 1024 bytes"):
                txn.put("t", bad, b"v")
            with pytest.raises(KeyTooLongError):
                txn.put_many("t", [(b"ok", b"v"), (bad, b"v")])
    with env.read() as snap:
        assert snap.get("t", b"k" * 1024) == b"max size key"
        assert snap.get("t", b"ok") is None  # the failed put_many was not partial


def test_value_too_large_maps_to_a_value_error() -> None:
    exc = errors.error_for_code(lib.RP_VALUE_TOO_LARGE, "value too large", "put", "/x")
    assert isinstance(exc, errors.ValueTooLargeError) and isinstance(exc, ValueError)
    assert str(exc).startswith("put: value too large (") and "[/x]" in str(exc)


def test_every_engine_code_has_a_class_and_message() -> None:
    # RP_LOCK_ERRNO is the base of a band of codes (errno of the lock file)
    codes = [
        getattr(lib, n)
        for n in dir(lib)
        if n.startswith("RP_") and getattr(lib, n) < -30000 and n != "RP_LOCK_ERRNO"
    ]
    assert len(codes) >= 21
    for code in codes:
        msg = ffi.string(lib.rp_strerror(code)).decode()
        exc = errors.error_for_code(code, msg, "doing things", "/db")
        assert type(exc) is not StorageError, f"code {code} has no class"
        assert exc.code == code and msg in str(exc)
    # errors.py mirrors the header's codes
    for name in dir(errors):
        if name.startswith("RP_"):
            assert getattr(errors, name) == getattr(lib, name), name


def test_wait_for_change_arguments(env: Environment) -> None:
    with pytest.raises(ArgumentTypeError):
        env.wait_for_change("1")  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError):
        env.wait_for_change(-1)
    with pytest.raises(ArgumentTypeError):
        env.wait_for_change(env.version, timeout="soon")  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError):
        env.wait_for_change(env.version, timeout=-1)
    with pytest.raises(InvalidArgumentError):
        env.wait_for_change(env.version, timeout=float("nan"))
    with pytest.raises(ArgumentTypeError):
        env.compact(123)  # type: ignore[arg-type]


# ---- misuse: closed handles, finished transactions, threads -------------------


def test_closed_environment(db_path: str) -> None:
    env = Environment(db_path)
    env.close()
    env.close()  # idempotent
    assert env.closed
    for call in (
        lambda: env.version,
        env.read,
        env.write,
        env.stats,
        env.check,
        env.readers,
        env.reader_check,
        lambda: env.compact(db_path + ".copy"),
        lambda: env.wait_for_change(0, timeout=0),
    ):
        with pytest.raises(ClosedError, match="closed"):
            call()


def test_close_ends_open_transactions(db_path: str) -> None:
    env = Environment(db_path)
    with env.write() as txn:
        txn.put("t", b"k", b"v")
    snap = env.read()
    txn = env.write()
    txn.put("t", b"k", b"changed")
    it = snap.scan("t")
    env.close()
    for t in (snap, txn):
        assert not t.active
        with pytest.raises(TransactionError, match="closed with its environment"):
            t.get("t", b"k")
    with pytest.raises(TransactionError):
        next(it)
    with pytest.raises(TransactionError):
        txn.commit()
    txn.abort()  # idempotent
    with Environment(db_path) as env2, env2.read() as s:
        assert s.get("t", b"k") == b"v"  # the open write was aborted


def test_finished_transactions(env: Environment) -> None:
    txn = env.write()
    txn.commit()
    for call in (
        lambda: txn.put("t", b"a", b"b"),
        lambda: txn.get("t", b"a"),
        lambda: txn.scan("t"),
        txn.commit,
        lambda: txn.version,
        txn.tables,
    ):
        with pytest.raises(TransactionError, match="committed"):
            call()
    txn.abort()  # no-op
    snap = env.read()
    it = snap.scan("t")
    snap.end()
    snap.end()
    with pytest.raises(TransactionError, match="ended"):
        snap.get("t", b"k")
    with pytest.raises(TransactionError):
        list(it)


def test_nested_write_in_one_thread(env: Environment) -> None:
    with env.write():
        with pytest.raises(TransactionActiveError):
            env.write()


def test_snapshot_is_read_only(db_path: str) -> None:
    with Environment(db_path) as env, env.read() as snap:
        assert not hasattr(snap, "put")
    Environment(db_path).close()
    with Environment(db_path, read_only=True) as ro:
        with pytest.raises(ReadOnlyError, match="read_only=False"):
            ro.write()
        with ro.read() as snap:
            assert snap.tables() == []


def test_transaction_from_another_thread(env: Environment) -> None:
    txn = env.write()
    snap = env.read()
    seen: list[BaseException] = []

    def misuse() -> None:
        calls: list[Callable[[], object]] = [
            lambda: txn.put("t", b"x", b"y"),
            lambda: snap.get("t", b"k"),
            txn.commit,
            txn.abort,
            snap.end,
        ]
        for call in calls:
            try:
                call()
            except BaseException as exc:
                seen.append(exc)

    t = threading.Thread(target=misuse)
    t.start()
    t.join()
    assert len(seen) == 5 and all(isinstance(e, WrongThreadError) for e in seen), seen
    assert txn.active and snap.active
    assert snap.get("t", b"k") == b"v"
    txn.abort()
    snap.end()


def test_a_shared_snapshot_is_any_threads(env: Environment) -> None:
    """Snapshot.share (rp_txn_share): any thread may read and end it; only
    the owner may share it; close() of the env leaves it to its user."""
    with env.write() as txn:
        txn.put("t", b"k", b"v")
    snap = env.read()
    errs: list[BaseException] = []

    def other(fn: Callable[[], Any]) -> Any:
        box: list[Any] = []

        def run() -> None:
            try:
                box.append(fn())
            except BaseException as exc:
                errs.append(exc)

        t = threading.Thread(target=run)
        t.start()
        t.join()
        return box[0] if box else None

    other(snap.share)
    assert len(errs) == 1 and isinstance(errs.pop(), WrongThreadError)
    snap.share()
    snap.share()  # idempotent
    with env.write() as txn:
        txn.put("t", b"k", b"new")
        assert not hasattr(txn, "share")  # write transactions are never shared
    assert other(lambda: snap.get("t", b"k")) == b"v"
    assert other(lambda: list(snap.scan("t"))) == [(b"k", b"v")]
    assert other(lambda: snap.version) == snap.version
    env.close()  # ends this thread's transactions; a shared one has no owner thread
    assert snap.active and snap.get("t", b"k") == b"v"
    other(snap.end)
    assert not errs
    assert (snap.active, env.closed) == (False, True)  # a tuple: mypy narrowed snap.active
    with pytest.raises(TransactionError):
        snap.get("t", b"k")


def test_abandoned_scan_pins_nothing(env: Environment) -> None:
    with env.write() as txn:
        txn.put_many("t", [(b"%04d" % i, b"v") for i in range(1000)])
    with env.read() as snap:
        it = snap.scan("t")
        assert next(it)[0] == b"0000"
        del it
    with env.write() as txn:
        txn.put("t", b"after", b"ok")


# ---- limits ----------------------------------------------------------------------


def test_max_active_versions(db_path: str) -> None:
    with Environment(db_path, durability="none", max_active_versions=2) as env:
        with env.write() as txn:
            txn.put("t", b"k", b"1")
        old = env.read()
        with env.write() as txn:
            txn.put("t", b"k", b"2")
        older = env.read()
        with env.write() as txn:  # pinned {2, 3}, latest 4: three live versions
            txn.put("t", b"k", b"3")
        with pytest.raises(errors.VersionLimitError, match="max_active_versions"):
            env.write()
        old.end()
        with env.write() as txn:  # unpinning one makes room again
            txn.put("t", b"k", b"4")
        assert older.get("t", b"k") == b"2"
        older.end()


def test_readers_full_and_diagnostics_still_work(db_path: str) -> None:
    with Environment(db_path, durability="none", max_readers=2) as env:
        snaps = [env.read(), env.read()]
        with pytest.raises(errors.ReadersFullError, match="max_readers"):
            env.read()
        pinned = [r for r in env.readers() if r.pid == os.getpid() and r.version]
        assert len(pinned) == 2
        for s in snaps:
            s.end()
        with env.read() as snap:
            assert snap.tables() == []


def test_compact(db_path: str) -> None:
    dest = db_path + ".compact"
    with Environment(db_path, durability="none") as env:
        with env.write() as txn:
            for i in range(2000):
                txn.put("t", b"%05d" % i, b"x" * 200)
            txn.put("big", b"v", b"y" * 50000)
        with env.write() as txn:
            for i in range(0, 2000, 2):
                txn.delete("t", b"%05d" % i)
        with env.read() as snap:
            expected = {t: list(snap.scan(t)) for t in snap.tables()}
        env.compact(dest)
        with pytest.raises(errors.ExistsError):
            env.compact(dest)
        used = env.stats().pages_used
    with Environment(dest) as copy:
        copy.check()
        with copy.read() as snap:
            assert {t: list(snap.scan(t)) for t in snap.tables()} == expected
        stats = copy.stats()
        assert stats.free_pages == 0 and stats.pages_used < used
