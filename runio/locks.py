"""One run per folder: an exclusive lock, refused at once (never waited for), that leaves no file behind.

On Linux and macOS the lock is fcntl.flock on a file .<name>.lock beside the folder. Where fcntl does
not exist (Windows) it is filelock's FileLock (installed with torch) on the same file, asked with
timeout 0 so that it refuses instead of waiting. Either way the lock file is removed on release.
"""
from __future__ import annotations

import contextlib
import errno
import os

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None
import filelock

from .errors import OutputError
from .files import file_mode, refuse_reference


def lock_path(folder) -> str:
    """The lock file of `folder`: .<name>.lock beside it (one lock, whichever path names the folder)."""
    parent, name = os.path.split(os.path.realpath(os.fspath(folder)))
    return os.path.join(parent, f".{name}.lock")


def _busy(shown: str, path: str) -> OutputError:
    return OutputError(f"{shown} is in use by another run (it holds {path}); wait for it to finish or "
                       "choose another --out")


def _open(shown: str, path: str) -> int:
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        return os.open(path, os.O_RDWR | os.O_CREAT, file_mode())
    except OSError as e:
        raise OutputError(f"cannot write beside {shown} ({e.strerror or e}); choose another --out") from None


def _flock(shown: str, path: str) -> int:
    """An fd of `path` holding fcntl's exclusive lock, on the file that is in place at that moment."""
    fd = _open(shown, path)
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            os.close(fd)
            if e.errno in (errno.EAGAIN, errno.EWOULDBLOCK, errno.EACCES):
                raise _busy(shown, path) from None
            raise OutputError(f"cannot lock {path} ({e.strerror or e}); choose another --out") from None
        try:
            if os.stat(path).st_ino == os.fstat(fd).st_ino:
                return fd  # the lock file is still in place: the lock is ours
        except FileNotFoundError:
            pass
        os.close(fd)  # the previous holder removed the file meanwhile: lock the new one
        fd = _open(shown, path)


@contextlib.contextmanager
def folder_lock(folder, use_fcntl: bool = True):
    """Hold an exclusive lock on `folder` for the block; OutputError at once if another process holds it, so
    two runs never write into one folder. use_fcntl=False takes the no-fcntl path (tests)."""
    shown = os.fspath(folder)
    refuse_reference(shown)
    path = lock_path(shown)
    if fcntl is not None and use_fcntl:
        fd = _flock(shown, path)
        try:
            yield
        finally:
            with contextlib.suppress(OSError):
                os.remove(path)
            os.close(fd)
        return
    os.close(_open(shown, path))  # a clear one-line error for a place that cannot be written
    lock = filelock.FileLock(path, timeout=0, mode=file_mode())
    try:
        lock.acquire()
    except filelock.Timeout:
        raise _busy(shown, path) from None
    try:
        yield
    finally:
        lock.release()
        with contextlib.suppress(OSError):
            os.remove(path)
