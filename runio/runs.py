"""A run folder written as one set: staged beside its place, then swapped in, under the folder's lock.

    with staged_run("runs/T50", RUN_FILES, overwrite=True) as stage:
        ...write every file into stage...
    # now runs/T50 holds the new run; had anything failed, it would hold the old one, whole
"""
from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import shutil
import sys
import tempfile
from typing import Sequence

from .errors import CheckpointError, OutputError
from .files import FULL, check_writable, clean_orphans, disk_full, file_mode, pause_point, refuse_reference
from .locks import folder_lock


def _exchange(a: str, b: str) -> bool:
    """Swap two paths in one step (Linux renameat2 with RENAME_EXCHANGE); False where the system cannot."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return False
    renameat2.argtypes = (ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint)
    at_fdcwd, rename_exchange = -100, 2
    if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.EXDEV):
        return False
    raise OSError(err, os.strerror(err), b)


def swap_into_place(new: str, out: str) -> None:
    """Put folder `new` where `out` is and delete the old `out`. Where the system can swap two names in one
    step (Linux), `out` is at every instant the old run or the new one; elsewhere a crash between the two
    renames leaves the old run beside it as .<name>.old-*, which the next staged_run puts back."""
    if not os.path.exists(out):
        os.rename(new, out)
        return
    if _exchange(new, out):  # `new` now holds the old run
        shutil.rmtree(new, ignore_errors=True)
        return
    parent, name = os.path.split(out)
    old = os.path.join(parent, f".{name}.old-{os.getpid()}-{os.path.basename(new).rsplit('-', 1)[-1]}")
    os.rename(out, old)
    os.rename(new, out)
    shutil.rmtree(old, ignore_errors=True)


def _clean_staging(parent: str, name: str) -> None:
    """Under the lock of parent/name: put back a run that a crash left renamed away (.<name>.old-*), and
    delete what killed runs left beside it (.<name>.tmp-*) and in it (.tmp-*)."""
    out = os.path.join(parent, name)
    siblings = sorted(f for f in os.listdir(parent) if f.startswith((f".{name}.tmp-", f".{name}.old-")))
    olds = [f for f in siblings if f.startswith(f".{name}.old-")]
    if olds and not os.path.exists(out):
        os.rename(os.path.join(parent, olds[-1]), out)
        siblings.remove(olds[-1])
    for f in siblings:
        shutil.rmtree(os.path.join(parent, f), ignore_errors=True)
    if os.path.isdir(out):
        clean_orphans(out)


@contextlib.contextmanager
def staged_run(out, files: Sequence[str], overwrite: bool = False):
    """Write a run's files as one set. Yields a fresh hidden folder beside `out` (.<name>.tmp-<pid>-*) to
    write them into; when the block ends without an error, that folder takes the place of `out` (the old
    run, if any, is deleted); on any error it is deleted and `out` stays as it was. OutputError, before
    anything is written, for a shipped reference, a file, a folder holding anything but `files`, an existing
    run unless overwrite, a folder another run holds (a lock), or a place that cannot be written."""
    shown = os.fspath(out)
    out = os.path.realpath(shown)  # a link to a folder: the run goes where it points
    refuse_reference(out)
    if os.path.exists(out) and not os.path.isdir(out):
        raise OutputError(f"{shown} is a file, not a folder; choose another --out")
    parent, name = os.path.split(out)
    with folder_lock(out):
        _clean_staging(parent, name)
        present = sorted(os.listdir(out)) if os.path.isdir(out) else []
        foreign = [f for f in present if f not in files]
        if foreign:
            raise OutputError(f"{shown} holds files that are not part of a run ({', '.join(foreign[:3])}); a run "
                              "folder is replaced as a whole, so choose a new or empty --out")
        if present and not overwrite:
            raise OutputError(f"{shown} already holds a run ({', '.join(present)}); pass --overwrite to replace it, "
                              "or choose another --out")
        try:
            stage = tempfile.mkdtemp(prefix=f".{name}.tmp-{os.getpid()}-", dir=parent)
            os.chmod(stage, file_mode(folder=True))
        except OSError as e:
            raise OutputError(f"cannot write to {os.path.dirname(shown) or '.'} ({e.strerror or e}); "
                              "choose another --out") from None
        with _staged(stage, parent, f"{shown} is as it was"):
            yield stage
            pause_point("swap")
            swap_into_place(stage, out)


@contextlib.contextmanager
def _staged(stage: str, parent: str, kept: str):
    """Delete the stage when the block fails; a full disk becomes one DiskFull line saying what was `kept`."""
    try:
        yield
    except OSError as e:
        shutil.rmtree(stage, ignore_errors=True)
        if e.errno in FULL:
            raise disk_full(e, parent, kept) from None
        raise
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise


def save_set(out, writers: dict, keep: Sequence[str] = ()) -> None:
    """Save a run's files as one set while the caller holds out's folder_lock (the trainers that save as they
    go): each write(path) of `writers` ({file name: write}) writes its file into a fresh hidden folder beside
    `out`, the files named in `keep` are carried over from the current `out` (hard links, copies where links
    cannot be made), and that folder then takes out's place in one step (swap_into_place). A kill at any
    point leaves `out` the whole old set or the whole new one (the next run clears .<name>.tmp-*); a full
    disk is one line, the last whole save kept. Pause points (runio.files.pause_point): before:<file>,
    during:<file> (checkpoints), after:<file>, swap, swapped."""
    out = os.path.realpath(os.fspath(out))
    parent, name = os.path.split(out)
    os.makedirs(parent, exist_ok=True)
    stage = tempfile.mkdtemp(prefix=f".{name}.tmp-{os.getpid()}-", dir=parent)
    with _staged(stage, parent, f"the run in {out} is its last whole save"):
        os.chmod(stage, file_mode(folder=True))
        for f in keep:
            if os.path.exists(os.path.join(out, f)) and f not in writers:
                _carry(os.path.join(out, f), os.path.join(stage, f))
        for f, write in writers.items():
            pause_point(f"before:{f}")
            write(os.path.join(stage, f))
            pause_point(f"after:{f}")
        pause_point("swap")
        swap_into_place(stage, out)
        pause_point("swapped")


def _carry(src: str, dst: str) -> None:
    """dst the same file as src: a hard link (no space, no time), else a copy."""
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def check_run_folder(out, files: Sequence[str], resume: bool, overwrite: bool, writer: bool = True) -> None:
    """Before a trainer that saves into `out` as it goes (--resume / --overwrite): an existing run there is
    continued or replaced, never silently. OutputError (one line) for both flags at once, a run present
    without either, or a place that cannot be written (tested by writing there, when this process is the
    writer; what killed runs left there is removed); CheckpointError for --resume without OUT/state.pt."""
    if resume and overwrite:
        raise OutputError("--resume continues the run in --out and --overwrite replaces it; give one of them")
    if writer:
        check_writable(out)
        if os.path.isdir(out):
            clean_orphans(out)
        parent, name = os.path.split(os.path.realpath(os.fspath(out)))
        if os.path.isdir(parent):
            _clean_staging(parent, name)  # a run that a kill left renamed away is put back; stages are removed
    present = [f for f in files if os.path.exists(os.path.join(out, f))]
    if present and not (resume or overwrite):
        raise OutputError(f"{out} already holds a run ({', '.join(present)}); continue it with --resume, replace it "
                          "with --overwrite, or choose another --out")
    if resume and "state.pt" not in present:
        raise CheckpointError(f"--resume: no {os.path.join(out, 'state.pt')} to resume from")
