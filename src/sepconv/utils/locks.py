"""Folders that one process writes at a time: a training run's folder, held while it runs.

:func:`locked_folder` holds the operating system's lock (``flock``) on a file in the folder, so a
second process is refused at once, and a process that dies however it dies (killed, out of
memory) releases it: no folder stays locked by a run that no longer exists.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sepconv.utils.validation import invalid

#: The lock file :func:`locked_folder` holds in a folder.
LOCK_NAME = ".sepconv.lock"
# Folders are locked where the operating system has flock (POSIX), not on Windows.
_CAN_LOCK = os.name == "posix"

_HELD: dict[str, list[int]] = {}  # real path of a lock file -> [fd, times held]


@contextmanager
def locked_folder(folder: str | Path, name: str) -> Iterator[Path]:
    """Hold ``folder`` (created if missing) for this process while the block runs.

    Another process that asks for the same folder is refused at once, naming ``name`` and the
    process holding it. The lock is the operating system's (``flock``) on ``folder/.sepconv.lock``,
    released when the process ends however it ends, so a killed process never leaves a folder
    locked; the file is removed on the way out. Nested calls of one process hold it once.

    Raises:
        ValueError: another process holds the folder.
    """
    directory = Path(folder)
    directory.mkdir(parents=True, exist_ok=True)
    lock = Path(os.path.realpath(directory / LOCK_NAME))
    key = str(lock)
    if not _CAN_LOCK:  # pragma: no cover
        yield directory
        return
    if key in _HELD:
        _HELD[key][1] += 1
        try:
            yield directory
        finally:
            _HELD[key][1] -= 1
        return
    fd = _acquire(lock, name, directory)
    _HELD[key] = [fd, 1]
    try:
        yield directory
    finally:
        del _HELD[key]
        lock.unlink(missing_ok=True)  # while still held: no other process holds this file
        os.close(fd)


def folder_holder(folder: str | Path) -> str | None:
    """The process id of another process that holds ``folder`` with :func:`locked_folder`
    (``"unknown"`` when it did not say), or ``None`` when none does."""
    lock = Path(os.path.realpath(Path(folder) / LOCK_NAME))
    if not _CAN_LOCK or str(lock) in _HELD or not lock.is_file():
        return None
    import fcntl as posix

    try:
        fd = os.open(lock, os.O_RDONLY)
    except OSError:
        return None
    try:
        posix.flock(fd, posix.LOCK_SH | posix.LOCK_NB)
    except BlockingIOError:
        return os.read(fd, 64).decode("ascii", "replace").strip() or "unknown"
    finally:
        os.close(fd)  # closing releases a lock taken here
    return None


def _acquire(lock: Path, name: str, directory: Path) -> int:
    """Open and ``flock`` the lock file, retrying when it was replaced in between (POSIX)."""
    import fcntl as posix

    while True:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            posix.flock(fd, posix.LOCK_EX | posix.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 64).decode("ascii", "replace").strip() or "unknown"
            os.close(fd)
            raise invalid(
                name,
                "a folder no other process is writing",
                str(directory),
                note=f" (in use by process {holder}; wait for it to end, or choose another folder)",
            ) from None
        # The holder before us may have removed the file after we opened it: lock the file
        # that is there now.
        try:
            same = os.fstat(fd).st_ino == os.stat(lock).st_ino
        except FileNotFoundError:
            same = False
        if same:
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
            return fd
        os.close(fd)
