"""Writer locks (issue 15 item 7): one writer per output, several shard writers per folder.

A writer holds an advisory `fcntl.flock` on a lock file inside what it writes. The lock is
taken without waiting: a second writer fails at once with "X is being written by another
process (lock file ...)" (a shard writer waits up to 10 s for another's short exclusive
start, while that one removes stale temp files). The kernel drops the lock when the
holder dies, even by SIGKILL, so a left-over lock file never blocks anyone; a writer
removes its lock file when it is done if no one else holds it.

`FolderLock(root)` gives an unsharded writer the whole folder (exclusive);
`FolderLock(root, part="shards/manifest-0-of-4.csv")` gives a shard writer a shared hold
on the folder (other shard writers may join, a whole-folder writer may not) and an
exclusive one on its own part.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import time
from pathlib import Path

__all__ = ["FOLDER_LOCK", "LockedError", "FileLock", "FolderLock", "is_lock_file"]

FOLDER_LOCK = ".semlab-write.lock"


class LockedError(BlockingIOError):
    """The output is being written by another process. An OSError whose `strerror` is the
    whole message, so the CLI prints it as one line."""

    def __init__(self, message: str):
        super().__init__(errno.EWOULDBLOCK, message)


def is_lock_file(name: str) -> bool:
    """True for the names of semlab's lock files (`.semlab-write.lock`, `.<part>.lock`)."""
    return name.startswith(".") and name.endswith(".lock")


class FileLock:
    """A non-blocking flock on `path` (created if missing), shared or exclusive."""

    def __init__(self, path, what: str):
        self.path = Path(path)
        self.what = what
        self.fd: int | None = None
        self.shared = False

    def acquire(self, *, shared: bool = False, wait: float = 0.0) -> "FileLock":
        """Take the lock; retry for up to `wait` seconds (a shard writer waits out another's
        short exclusive phase), then raise LockedError."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        deadline = time.monotonic() + wait
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
            try:
                fcntl.flock(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                if time.monotonic() < deadline:
                    time.sleep(0.05)
                    continue
                raise LockedError(f"{self.what} is being written by another process (lock file {self.path}); "
                                  "wait for it to finish (the lock goes away when that process ends)") from None
            except BaseException:
                os.close(fd)
                raise
            try:  # the file may have been removed by its last holder between open and flock: retry
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                self.fd, self.shared = fd, shared
                return self
            os.close(fd)

    def try_exclusive(self) -> bool:
        """Turn a held lock into an exclusive one if no one else holds it; False otherwise
        (the lock is then still held, shared)."""
        if self.fd is None:
            return False
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        self.shared = False
        return True

    def make_shared(self) -> None:
        """Exclusive -> shared (never blocks: no one else can hold it)."""
        if self.fd is not None and not self.shared:
            fcntl.flock(self.fd, fcntl.LOCK_SH)
            self.shared = True

    def release(self) -> None:
        """Drop the lock; remove the lock file when no other process holds it."""
        if self.fd is None:
            return
        with contextlib.suppress(OSError):
            if self.try_exclusive():
                self.path.unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            os.close(self.fd)
        self.fd = None

    @property
    def held(self) -> bool:
        return self.fd is not None

    def __del__(self):  # a writer dropped without close() or abort(): free the lock, keep the file
        if getattr(self, "fd", None) is not None:
            with contextlib.suppress(OSError):
                os.close(self.fd)


class FolderLock:
    """The lock of a dataset writer: the whole folder `root`, or (`part` given, a path
    relative to `root` such as a shard's manifest) a shared hold on the folder plus an
    exclusive lock on the part. `exclusive` tells whether this writer is alone in the
    folder right now (then stale temp files of a killed writer may be removed)."""

    def __init__(self, root, part: str | None = None):
        self.root = Path(root)
        self.part = part
        self.folder = FileLock(self.root / FOLDER_LOCK, str(self.root))
        self.part_lock = None
        if part is not None:
            p = self.root / part
            self.part_lock = FileLock(p.with_name(f".{p.name}.lock"), f"{p} (a shard of {self.root})")
        self.exclusive = False

    def acquire(self) -> "FolderLock":
        if self.part_lock is None:
            self.folder.acquire(shared=False)
            self.exclusive = True
            return self
        try:
            self.folder.acquire(shared=False)  # alone in the folder?
            self.exclusive = True
        except LockedError:
            self.folder.acquire(shared=True, wait=10.0)  # other shard writers: fine; a whole-folder writer: refused
        try:
            self.part_lock.acquire(shared=False)
        except BaseException:
            self.folder.release()
            raise
        return self

    def share(self) -> None:
        """After the alone-in-the-folder work (temp file cleanup): let other shard writers in."""
        if self.part_lock is not None and self.exclusive:
            self.folder.make_shared()
            self.exclusive = False

    def release(self) -> None:
        if self.part_lock is not None:
            self.part_lock.release()
        self.folder.release()
        self.exclusive = False

    def lock_files(self) -> list[Path]:
        return [self.folder.path] + ([self.part_lock.path] if self.part_lock is not None else [])

    def __enter__(self) -> "FolderLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
