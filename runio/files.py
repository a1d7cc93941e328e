"""Files written so that nothing is ever half-written or lost.

Every file the package writes goes through `replacing` (or its wrappers `atomic_write` and
`atomic_save`): the bytes go to a temporary file `.tmp-<pid>-*` beside the target, which takes the
target's name in one step (os.replace) only once it is complete, and is deleted on any error. The
new file gets the mode the umask gives (0o644 under the usual 022), as `open` would. A killed
process can leave its temporary file behind; `clean_orphans` removes those of dead processes.

The shipped reference files (`SHIPPED`) are read by every command and written by none.
"""
from __future__ import annotations

import contextlib
import os
import re
import tempfile
import time
from typing import Callable, Optional

import torch

from .errors import OutputError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHIPPED = (os.path.join(ROOT, "mnist", "reference"),)  # the shipped weights and model card: never written
TMP_PREFIX = ".tmp-"  # temporary files are named .tmp-<pid>-*, so the files of a killed process can be found


# ============================================================ the shipped references
def is_reference(path) -> bool:
    """True for a path inside one of the shipped reference folders (SHIPPED)."""
    p = os.path.realpath(os.fspath(path))
    for folder in SHIPPED:
        ref = os.path.realpath(folder)
        if p == ref or p.startswith(ref + os.sep):
            return True
    return False


def refuse_reference(path) -> None:
    """OutputError if `path` is one of the shipped reference files (or in their folder)."""
    if is_reference(path):
        raise OutputError(f"{os.fspath(path)} is in mnist/reference/, the shipped reference files, which no command "
                          "replaces; choose another --out")


# ============================================================ the one atomic writer
def file_mode(folder: bool = False) -> int:
    """The permission bits a new file (or folder) gets under the current umask: 0o644 (0o755) under the usual
    022. tempfile makes 0o600 files and 0o700 folders; what this package saves gets the usual bits."""
    mask = os.umask(0o077)  # reading the umask means setting it; 077 is the safe value for the instant between
    os.umask(mask)
    return (0o777 if folder else 0o666) & ~mask


def temporary_name(folder: str, suffix: str = "", tag: str = "") -> str:
    """A new empty file .tmp-<pid>-<tag>* in `folder` with the umask's mode; returns its path."""
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f"{TMP_PREFIX}{os.getpid()}-{tag}", suffix=suffix)
    os.close(fd)
    os.chmod(tmp, file_mode())
    return tmp


@contextlib.contextmanager
def replacing(path):
    """Yield a temporary file name beside `path` (same extension) to write; when the block ends without an
    error it replaces `path` in one step (os.replace), otherwise it is deleted: `path` is never half-written.
    What killed writers left in the folder (.tmp-<dead pid>-*) is removed first."""
    path = os.fspath(path)
    refuse_reference(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    clean_orphans(folder)
    tmp = temporary_name(folder, suffix=os.path.splitext(path)[1])
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise


def atomic_write(path, write: Callable[[str], object]) -> None:
    """Call write(tmp) for a temporary file beside `path`, then put it in place (see `replacing`)."""
    with replacing(path) as tmp:
        write(tmp)


def atomic_save(obj, path) -> None:
    """torch.save through `replacing`: a crash never leaves a half-written checkpoint under `path`."""
    with replacing(path) as tmp:
        torch.save(obj, tmp)


# ============================================================ what killed processes left
def pid_alive(pid: int) -> bool:
    """Whether process `pid` still runs (True where that cannot be told)."""
    if os.name != "posix":
        return True  # no cheap check elsewhere: never delete another process's files
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def owner(name: str, prefix: str = TMP_PREFIX) -> Optional[int]:
    """The process id in a temporary name <prefix><pid>-..., or None."""
    head = name[len(prefix):].split("-", 1)[0]
    return int(head) if name.startswith(prefix) and head.isdigit() else None


def clean_orphans(folder) -> list:
    """Delete the temporary files (.tmp-<pid>-*) that killed processes left in `folder`; returns their names.
    Files of running processes are kept; those of older versions of this package (.tmp-XXXXXXXX.pt, no
    process id) once they are an hour old."""
    removed = []
    try:
        names = os.listdir(folder)
    except OSError:
        return removed
    for name in names:
        pid = owner(name)
        legacy = re.fullmatch(r"\.tmp-[a-z0-9_]{8}\.pt", name) is not None
        if pid is None and not legacy:
            continue
        path = os.path.join(folder, name)
        try:
            stale = (not pid_alive(pid)) if pid is not None else time.time() - os.path.getmtime(path) > 3600
            if stale and pid != os.getpid() and os.path.isfile(path):
                os.remove(path)
                removed.append(name)
        except OSError:
            pass
    return removed


# ============================================================ places to write
def check_writable(folder) -> None:
    """Prove that `folder` can be written by writing a file there (and deleting it; folders made for the test
    are removed again); OutputError (one line) otherwise. os.access is not enough: as root it approves
    folders that cannot be written, such as a read-only file system."""
    folder = os.fspath(folder)
    refuse_reference(folder)
    if os.path.exists(folder) and not os.path.isdir(folder):
        raise OutputError(f"{folder} is a file, not a folder; choose another --out")
    made, d = [], os.path.abspath(folder)
    while not os.path.exists(d):
        made.append(d)
        d = os.path.dirname(d)
    try:
        os.makedirs(folder, exist_ok=True)
        os.remove(temporary_name(folder, tag="probe-"))
    except OSError as e:
        raise OutputError(f"cannot write to {folder} ({e.strerror or e}); choose another --out") from None
    finally:
        for d in made:  # innermost first
            with contextlib.suppress(OSError):
                os.rmdir(d)


def check_new_file(path, overwrite: bool = False) -> None:
    """Before any work: `path` may be written. OutputError (one line) if it is a shipped reference file or a
    folder, if it exists and not `overwrite`, or if its folder cannot be written (tested by writing there)."""
    path = os.fspath(path)
    refuse_reference(path)
    if os.path.isdir(path):
        raise OutputError(f"{path} is a folder; give a file name")
    if os.path.exists(path) and not overwrite:
        raise OutputError(f"{path} already exists; pass --overwrite to replace it, or choose another name")
    check_writable(os.path.dirname(os.path.abspath(path)))


def check_output_file(path, overwrite: bool) -> None:
    """check_new_file, then remove what killed runs left in the file's folder."""
    check_new_file(path, overwrite)
    clean_orphans(os.path.dirname(os.path.abspath(os.fspath(path))))
