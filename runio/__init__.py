"""Run I/O: everything a run reads and writes besides its maths, kept apart from the DDPM core.

    errors.py       the user-facing error types (bad output place, checkpoint, data), one line each
    files.py        the one atomic writer, for a file or a set (temporary .tmp-<pid>-* beside the targets,
                    umask modes, a full disk in one line), the package's signature and the one output guard
                    (never a shipped reference, a checkpoint or a file of the user's), orphan clean-up
    locks.py        folder_lock: one run per folder, refused at once, no lock file left behind
    runs.py         a run folder written as one set and swapped into place (staged_run, save_set)
    checkpoints.py  reading checkpoints safely (weights_only), the loaded-model type, resuming a run
    export.py       python -m runio.export: a checkpoint as safetensors + config.json, which every loader reads
    memory.py       whether a training step fits, measured before the first step
    cli.py          the argparse front ends: Parser, argument types and limits, a parser built from a
                    config dataclass, the one error path of every command, Ctrl-C and SIGTERM, --device
"""
