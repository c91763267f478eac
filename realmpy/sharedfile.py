"""The per-process state of one realm file: one per file and process.

Every :class:`~realmpy.realm.Realm` on a path in this process shares one
:class:`SharedFile`: the :class:`~realmpy.storage.Environment`, the shared
lock on ``<path>.session`` that says "this process has the file open" (what
compaction and in-memory deletion ask), and the notifier thread.  The sync
client (``realmpy.sync.agent``) takes a reference too, so the file stays
open while it syncs.  Both are found through a
:class:`~realmpy.perpath.PathRegistry`.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, ClassVar

from realmpy.config import Configuration
from realmpy.errors import ConfigurationError, FormatTooOldError
from realmpy.perpath import PathRegistry
from realmpy.sidefiles import check_directory, lock_side_file, open_side_file
from realmpy.storage import Environment, upgrade_file

if TYPE_CHECKING:
    from realmpy.notifier import Notifier

__all__ = ["SharedFile", "compact_file", "upgrade_alone", "wants_compaction"]


def compact_file(env: Environment, path: str) -> None:
    """Replace the file at ``path`` by a compacted copy of ``env``'s newest version; closes ``env``.

    The caller holds the session file exclusively (no other process has the
    file open), so the old file and lock file can be replaced under no one.
    """
    tmp = path + ".compact"
    for suffix in ("", ".lock"):
        try:
            os.unlink(tmp + suffix)
        except FileNotFoundError:
            pass
    env.compact(tmp)
    env.close()
    os.replace(tmp, path)
    for stale in (tmp + ".lock", path + ".lock"):
        try:
            os.unlink(stale)
        except FileNotFoundError:
            pass


def upgrade_alone(path: str) -> bool:
    """Convert the file at ``path`` from format 1 or 2 (``realmpy upgrade``);
    False if it is already of the current format.

    Only while no process has the file open: this takes its session file
    exclusively for the conversion (so no opener can start meanwhile), and
    raises :class:`~realmpy.errors.FormatTooOldError` saying so when another
    process holds it."""
    if path in SharedFile.registry:
        return False  # open in this process: converted when it was opened
    check_directory(path, "cannot convert realm")
    fd = open_side_file(path, ".session", read_only=False, what="cannot convert realm")
    assert fd is not None  # read_only=False: created or an error raised
    try:
        if lock_side_file(fd, exclusive=True, block=False):
            return upgrade_file(path)
    finally:
        os.close(fd)
    # Another process has it open: only an old file is an error here.
    try:
        Environment(path, read_only=True).close()
    except FormatTooOldError:
        raise _old_format_in_use(path) from None
    return False


def _old_format_in_use(path: str) -> FormatTooOldError:
    return FormatTooOldError(
        f"{path} is in an older realmpy file format (1 or 2) and another process has it "
        "open, so it cannot be converted now: close it there (or stop that older "
        "realmpy), then open it once as a writable Realm or run `realmpy upgrade "
        f"{path}`"
    )


def wants_compaction(env: Environment, should_compact: Callable[[int, int], bool]) -> bool:
    st = env.stats()
    return should_compact(st.file_size, (st.pages_used - st.free_pages) * st.page_size)


class SharedFile:
    """One Environment, session lock and notifier per file and process."""

    registry: ClassVar[PathRegistry[SharedFile]] = PathRegistry()
    """The open files of this process, by path (``path in SharedFile.registry``)."""

    def __init__(self, config: Configuration) -> None:
        self.path = config.path
        self.refs = 0
        self.lock = threading.RLock()
        self.pid = os.getpid()
        check_directory(config.path, "cannot open realm")
        # None: a read-only realm where the session file cannot be opened (a
        # read-only directory or medium); it then takes no part in "alone".
        self._session_fd = open_side_file(
            config.path, ".session", read_only=config.read_only, what="cannot open realm"
        )
        if config.kind == "in_memory" and self._try_exclusive():
            # Nobody else has this in-memory realm open: start it empty.
            for suffix in ("", ".lock"):
                try:
                    os.unlink(config.path + suffix)
                except FileNotFoundError:
                    pass
        if self._session_fd is not None:
            lock_side_file(self._session_fd, exclusive=False, block=True)
        try:
            try:
                self.env = self._open_env(config)
            except FormatTooOldError:
                self._upgrade(config)
                self.env = self._open_env(config)
        except BaseException:
            if self._session_fd is not None:
                os.close(self._session_fd)
            raise
        self.kind = config.kind
        self.notifier: Notifier | None = None
        self.should_compact = None if config.read_only else config.should_compact
        """Asked again when the last realm of the file in this process closes (see ``release``)."""

    @staticmethod
    def _open_env(config: Configuration) -> Environment:
        return Environment(
            config.path,
            durability=config.durability,
            max_active_versions=config.max_active_versions,
            read_only=config.read_only,
            recover=config.recover,
        )

    def _upgrade(self, config: Configuration) -> None:
        """A file of format 1 or 2: convert it now if this is a writable open
        and no other process has the file open (the session file taken
        exclusively for the conversion, as compaction does), else say what
        to do."""
        if config.read_only:
            raise FormatTooOldError(
                f"{config.path} is in an older realmpy file format (1 or 2), which a "
                "read-only open cannot convert: open it once as a writable Realm while "
                f"no other process has it open, or run `realmpy upgrade {config.path}`"
            )
        if not self._try_exclusive():
            raise _old_format_in_use(config.path)
        try:
            upgrade_file(config.path)
        finally:
            assert self._session_fd is not None  # _try_exclusive succeeded
            lock_side_file(self._session_fd, exclusive=False, block=True)  # downgrade

    def _try_exclusive(self) -> bool:
        if self._session_fd is None:
            return False
        return lock_side_file(self._session_fd, exclusive=True, block=False)

    @contextlib.contextmanager
    def alone(self) -> Iterator[bool]:
        """Whether no other process has the file open (and this process has
        one realm on it), *kept true for the block*: the session file's
        exclusive lock is held until the block ends, so an opener in another
        process waits for its shared lock and then opens the file as the
        block left it (a compacted file, not the replaced one).

        Every process holds a shared lock on ``<path>.session`` while it has
        the file open, and the kernel drops it when the process dies (also
        by SIGKILL), so a crashed process never blocks compaction."""
        with self.lock:
            if self.refs > 1 or not self._try_exclusive():
                yield False
                return
            try:
                yield True
            finally:
                assert self._session_fd is not None  # _try_exclusive succeeded
                lock_side_file(self._session_fd, exclusive=False, block=True)  # downgrade

    @classmethod
    def acquire(cls, config: Configuration) -> SharedFile:
        def check(shared: SharedFile) -> None:
            if shared.kind != config.kind and "in_memory" in (shared.kind, config.kind):
                raise ConfigurationError(
                    f"{config.path} is open here as {shared.kind}, not {config.kind}"
                )

        return cls.registry.acquire(config.path, lambda: cls(config), check=check)

    def get_notifier(self) -> Notifier:
        with self.lock:
            if self.notifier is None:
                from realmpy.notifier import Notifier  # loaded at the first listener

                self.notifier = Notifier(self.env)
            return self.notifier

    def release(self) -> None:
        if not SharedFile.registry.release(self):
            return
        if self.notifier is not None:
            self.notifier.stop()
        last = self._try_exclusive()
        if last and self.kind != "in_memory" and self.should_compact is not None:
            # The file is idle (no other process has it open): the compaction a synced
            # file's trimmed history asks for happens here, not only at the next open.
            try:
                if wants_compaction(self.env, self.should_compact):
                    compact_file(self.env, self.path)
            except Exception:  # never fail a close; the next open asks again
                pass
        self.env.close()
        if last and self.kind == "in_memory":
            for suffix in ("", ".lock", ".session"):
                try:
                    os.unlink(self.path + suffix)
                except FileNotFoundError:
                    pass
        if self._session_fd is not None:
            os.close(self._session_fd)
