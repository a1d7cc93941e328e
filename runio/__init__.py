"""Run I/O: everything a run reads and writes besides its maths, kept apart from the DDPM core.

    errors.py       the user-facing error types (bad output place, checkpoint, data), one line each
    files.py        the one atomic writer (temporary .tmp-<pid>-* beside the target, umask modes),
                    the shipped-reference guard, writable-place checks, orphan clean-up
    locks.py        folder_lock: one run per folder, refused at once, no lock file left behind
    runs.py         staged_run: a run folder written as one set and swapped into place
    checkpoints.py  reading checkpoints safely (weights_only), the loaded-model type, resuming a run
    cli.py          the argparse front ends: Parser, argument types and limits, a parser built from a
                    config dataclass, the one error path of every command, --device
"""
