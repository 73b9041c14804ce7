"""Durable low-level file operations of the run file: the writer lock (``flock`` on
``<run>.h5.lock``), positioned reads and writes that complete, atomic replacement of a finished
temporary file (fsynced when asked), the temporary names and the removal of those a killed writer
left behind.

Plain functions on paths and descriptors; nothing here knows HDF5.
"""

from __future__ import annotations

import contextlib
import fcntl
import glob
import os
import secrets
from pathlib import Path

import numpy as np

__all__ = [
    "RunFileBusy",
    "lock_path",
    "lock_writer",
    "pread",
    "pwrite",
    "remove_stale_tmp",
    "replace",
    "tmp_name",
    "unlock_writer",
    "write_text",
]


class RunFileBusy(BlockingIOError):
    """Another process writes the run file (one writer at a time)."""


def lock_path(path: str | os.PathLike) -> Path:
    """``<run>.h5.lock``: the writer's lock next to the run file (removed at a clean close)."""
    path = Path(path)
    return path.with_name(path.name + ".lock")


def lock_writer(path: Path) -> int:
    """Open (creating it) and exclusively lock ``<path>.lock``; return its descriptor.

    ``RunFileBusy`` if another process holds it.
    """
    lpath = lock_path(path)
    while True:
        fd = os.open(lpath, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise RunFileBusy(
                f"run file {path} is open for writing by another process (lock {lpath}); "
                "read it with mode='r', or wait for that process to finish"
            ) from None
        except BaseException:
            os.close(fd)
            raise
        # A writer closing meanwhile unlinks the lock file after releasing it: lock the current one.
        try:
            if os.fstat(fd).st_ino == os.stat(lpath).st_ino:
                return fd
        except FileNotFoundError:
            pass
        os.close(fd)


def unlock_writer(path: Path, fd: int) -> None:
    """Remove the lock file (still holding it), then release it."""
    with contextlib.suppress(FileNotFoundError):
        lock_path(path).unlink()
    os.close(fd)


def pwrite(fd: int, data: bytes | memoryview, offset: int) -> None:
    """Write all of ``data`` at byte ``offset`` of ``fd`` (``os.pwrite`` may write less)."""
    view = memoryview(data).cast("B")
    while len(view):
        n = os.pwrite(fd, view, offset)
        view, offset = view[n:], offset + n


def pread(fd: int, out: np.ndarray, offset: int) -> np.ndarray:
    """Fill ``out`` (C-contiguous) with the bytes at ``offset`` of ``fd``; ``EOFError`` if the file
    ends first. Returns ``out``."""
    # out.data, not memoryview(out): the same buffer, but numpy's stubs declare ndarray a buffer
    # only for Python >= 3.12 (mypy checks as 3.11).
    view = out.data.cast("B")
    while len(view):
        n = os.preadv(fd, [view], offset)
        if n == 0:
            raise EOFError(f"file ends at byte {offset}")
        view, offset = view[n:], offset + n
    return out


def _fsync_path(path: Path, *, directory: bool = False) -> None:
    fd = os.open(path, os.O_RDONLY | (os.O_DIRECTORY if directory else 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def tmp_name(path: Path) -> Path:
    """A fresh temporary name next to ``path`` (``.<name>.<pid>.<random>.tmp``)."""
    # Not mkstemp: its 0600 mode would outlive os.replace; h5py creates files under the umask.
    return path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")


def remove_stale_tmp(path: Path) -> None:
    """Remove temporary files a killed writer left (called with the writer lock held)."""
    for tmp in path.parent.glob(f".{glob.escape(path.name)}.*.tmp"):
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def replace(tmp: Path, path: Path, sync: bool) -> None:
    """Move the finished ``tmp`` over ``path`` atomically (data first on disk, then the new name)."""
    if sync:
        _fsync_path(tmp)
    os.replace(tmp, path)
    if sync:
        _fsync_path(path.parent, directory=True)


def write_text(path: Path, text: str) -> None:
    """Replace ``path`` by ``text`` atomically (readers see the old or the new file, never a part);
    not fsynced: what it writes can be rewritten from the run file."""
    tmp = tmp_name(path)
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
