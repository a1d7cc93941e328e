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
import errno
import json
import os
import re
import signal
import sys
import tempfile
import time
import zipfile
from typing import Callable, Optional, Sequence

import numpy as np
import torch
from PIL import Image

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


class DiskFull(OSError):
    """No space left (ENOSPC) or over quota (EDQUOT) while writing: one line naming the folder, and that
    the file being replaced is as it was."""

    def __str__(self):
        return self.strerror


FULL = (errno.ENOSPC, errno.EDQUOT)


def disk_full(e: OSError, folder: str, kept: str) -> DiskFull:
    """The DiskFull that says where, and what was kept."""
    why = "no space left" if e.errno == errno.ENOSPC else "the disk quota is used up"
    return DiskFull(e.errno, f"{why} on the disk of {folder}; {kept}; free some space and run it again")


def pause_point(name: str) -> None:
    """A named point of a write, where a test can stop this process: when RUNIO_PAUSE_AT names it, print
    'paused at NAME' on stderr and wait to be killed (or interrupted). Does nothing otherwise."""
    if os.environ.get("RUNIO_PAUSE_AT") == name:
        print(f"paused at {name} (pid {os.getpid()})", file=sys.stderr, flush=True)
        while True:
            time.sleep(1)


@contextlib.contextmanager
def replacing_all(paths: Sequence, ours_only: bool = False):
    """The one atomic writer, for one file or a set: yield a temporary name beside each path (same
    extension) to write; only when the block ends without an error and every one is written does each
    take its path (os.replace, a step that needs no space), otherwise all are deleted and every path is as
    it was. What killed writers left in the folders (.tmp-<dead pid>-*) is removed first; a full disk is a
    one-line DiskFull. ours_only: an existing file is replaced only if this package wrote it (`ours`), else
    OutputError before anything is written (a report or figure never overwrites a file of the user's)."""
    paths = [os.fspath(p) for p in paths]
    foreign = [p for p in paths if ours_only and os.path.exists(p) and not ours(p)] if ours_only else []
    if foreign:
        raise OutputError(f"{foreign[0]} exists and was not written by this package, so it is not replaced; move it "
                          "away or choose another place")
    tmps = []
    try:
        for path in paths:
            refuse_reference(path)
            folder = os.path.dirname(os.path.abspath(path))
            os.makedirs(folder, exist_ok=True)
            clean_orphans(folder)
            tmps.append(temporary_name(folder, suffix=os.path.splitext(path)[1]))
        yield tmps
        pause_point(f"replace:{os.path.basename(paths[0])}")
        with signals_deferred():  # Ctrl-C or SIGTERM now would leave half a set: it waits for the renames
            for tmp, path in zip(tmps, paths):
                os.replace(tmp, path)
    except OSError as e:
        _remove(tmps)
        if e.errno in FULL and not isinstance(e, DiskFull):
            shown = ", ".join(os.path.basename(p) for p in paths)
            raise disk_full(e, os.path.dirname(os.path.abspath(paths[0])), f"{shown} {'is' if len(paths) == 1 else 'are'} "
                            "as before") from None
        raise
    except BaseException:
        _remove(tmps)
        raise


@contextlib.contextmanager
def signals_deferred():
    """Hold SIGINT and SIGTERM for the block (a few renames): they are delivered when it ends. Where signals
    cannot be held (Windows), the block runs as it is."""
    held = {signal.SIGINT, signal.SIGTERM}
    if not hasattr(signal, "pthread_sigmask"):
        yield
        return
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, held)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def _remove(paths) -> None:
    for p in paths:
        with contextlib.suppress(OSError):
            os.remove(p)


@contextlib.contextmanager
def replacing(path):
    """replacing_all for one file: yield its temporary name; `path` is never half-written."""
    with replacing_all([path]) as (tmp,):
        yield tmp


def write_all(writers: dict) -> None:
    """{path: write(tmp)}: several files written as one set (replacing_all)."""
    with replacing_all(list(writers)) as tmps:
        for write, tmp in zip(writers.values(), tmps):
            write(tmp)


def atomic_write(path, write: Callable[[str], object]) -> None:
    """Call write(tmp) for a temporary file beside `path`, then put it in place (see `replacing`)."""
    with replacing(path) as tmp:
        write(tmp)


class _Recorder:
    """A file object for torch.save that keeps the OSError its writes raised: torch turns it into a
    RuntimeError ("unexpected pos"), which never mentions the disk. After its first write it passes the
    pause point during:<name>, where a test can kill a process in the middle of a checkpoint."""

    def __init__(self, f, name: str):
        self.f, self.name, self.error, self.written = f, name, None, 0

    def write(self, b):
        try:
            n = self.f.write(b)
        except OSError as e:
            self.error = e
            raise
        self.written += 1
        if self.written == 1:
            self.f.flush()
            pause_point(f"during:{self.name}")
        return n

    def flush(self):
        self.f.flush()


def torch_save(obj, path, name: Optional[str] = None) -> None:
    """torch.save to `path`, raising the OSError of a full disk as itself (not torch's RuntimeError). name:
    the file's name in its pause points (default: path's)."""
    with open(path, "wb") as f:
        rec = _Recorder(f, name or os.path.basename(path))
        try:
            torch.save(obj, rec)
        except RuntimeError:
            if rec.error is not None:
                raise rec.error from None
            raise


def atomic_save(obj, path) -> None:
    """torch.save through `replacing`: a crash never leaves a half-written checkpoint under `path`."""
    with replacing(path) as tmp:
        torch_save(obj, tmp, os.path.basename(os.fspath(path)))


# ============================================================ what the package wrote
MARK = "DDPM reference solution"  # signs the reports and figures the package writes (PDF Creator, PNG Source)
LEGACY_PDF_CREATOR = b"/Creator (visualize.py)"  # reports written before the mark


def metadata(ext: str) -> Optional[dict]:
    """The matplotlib savefig metadata that signs a file of this extension (None where it has none)."""
    return {".png": {"Source": MARK}, ".pdf": {"Creator": MARK, "CreationDate": None},
            ".svg": {"Creator": MARK, "Date": None}}.get(ext.lower())


def savefig(fig, path, tmp=None, **kwargs) -> None:
    """fig.savefig to `tmp` (the temporary name of a writer) in the format of `path`'s extension, signed with
    MARK (no timestamp: the same input gives the same file)."""
    ext = os.path.splitext(os.fspath(path))[1]
    fig.savefig(tmp if tmp is not None else path, format=ext[1:].lower() or "png", metadata=metadata(ext), **kwargs)


def is_checkpoint(path) -> bool:
    """A torch.save file (a zip holding data.pkl): never replaced by a command that does not make one."""
    try:
        with zipfile.ZipFile(path) as z:
            return any(n.endswith("data.pkl") for n in z.namelist())
    except (OSError, zipfile.BadZipFile):
        return False


def ours(path) -> bool:
    """Whether the file at `path` is one this package wrote and may write again: a report, figure, animation or
    website page signed with MARK (PDF, PNG, GIF, HTML), numbers that say so ("written_by" in a .json or .npz), or a .csv/.pdf/.npz beside
    a figure of the same name that is ours."""
    path = os.fspath(path)
    stem, ext = os.path.splitext(path)
    try:
        if ext == ".pdf":
            with open(path, "rb") as f:
                head = f.read()
            if f"/Creator ({MARK})".encode() in head or LEGACY_PDF_CREATOR in head:
                return True
        elif ext == ".png":

            with Image.open(path) as im:
                return im.text.get("Source") == MARK
        elif ext == ".npz":
            with np.load(path) as z:
                if "written_by" in z.files:
                    return True
        elif ext == ".json":
            with open(path) as f:
                return (json.load(f) or {}).get("written_by") == MARK
        elif ext == ".gif":  # an animation: its comment extension (report.animation.write_gif)
            with Image.open(path) as im:
                return im.info.get("comment") == MARK.encode()
        elif ext == ".html":  # a website page: its generator meta tag (report.site)
            with open(path, encoding="utf-8", errors="replace") as f:
                return f'<meta name="generator" content="{MARK}">' in f.read(4096)
    except (OSError, ValueError, AttributeError, zipfile.BadZipFile):
        return False
    return ext in (".csv", ".pdf", ".npz") and any(os.path.exists(stem + e) and ours(stem + e) for e in (".png", ".npz")
                                                   if e != ext)


def check_output(path, overwrite: bool = False, rerun: bool = True, checkpoint: bool = False,
                 flag: str = "--out") -> None:
    """The one output guard, before any work: `path` may be written. OutputError (one line) for a shipped
    reference, a folder, a checkpoint (replaced only by a command that makes one, `checkpoint`, with
    `overwrite`), or an existing file unless `overwrite` says so or, with rerun=True, it is a report or
    figure this package wrote (rewritten without a flag, so a README command can be run again); then its
    folder must be writable (tested by writing there)."""
    path = os.fspath(path)
    refuse_reference(path)
    if os.path.isdir(path):
        raise OutputError(f"{flag} {path} is a folder; give a file name")
    if os.path.exists(path):
        if is_checkpoint(path) and not checkpoint:
            raise OutputError(f"{flag} {path} is a checkpoint, which this command never replaces; choose another name")
        if not ((rerun and ours(path)) or overwrite):
            why = "already exists" if not rerun else "exists and was not written by this package"
            raise OutputError(f"{flag} {path} {why}; choose another name" + (", or pass --overwrite to replace it"
                                                                              if not rerun else ""))
    check_writable(os.path.dirname(os.path.abspath(path)), flag)


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
def check_writable(folder, flag: str = "--out") -> None:
    """Prove that `folder` can be written by writing a file there (and deleting it; folders made for the test
    are removed again); OutputError (one line) otherwise. os.access is not enough: as root it approves
    folders that cannot be written, such as a read-only file system."""
    folder = os.fspath(folder)
    refuse_reference(folder)
    if os.path.exists(folder) and not os.path.isdir(folder):
        raise OutputError(f"{flag} {folder} is a file, not a folder; choose another {flag}")
    made, d = [], os.path.abspath(folder)
    while not os.path.exists(d):
        made.append(d)
        d = os.path.dirname(d)
    try:
        os.makedirs(folder, exist_ok=True)
        os.remove(temporary_name(folder, tag="probe-"))
    except OSError as e:
        raise OutputError(f"cannot write to {folder} ({e.strerror or e}); choose another {flag}") from None
    finally:
        for d in made:  # innermost first
            with contextlib.suppress(OSError):
                os.rmdir(d)
