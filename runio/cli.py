"""The command lines: one argparse front end for every command, built from the commands' configs.

    p = Parser(prog="python -m mnist.train", description=__doc__)
    add_config_arguments(p, MNISTTrainConfig, OPTIONS, MNISTTrainConfig())   # one flag per config field
    cfg = config_from_args(MNISTTrainConfig, p.parse_args(argv))

A bad argument is one line and exit status 2; so is every failure a user can act on once the
command runs (`command_error`). Limits on sizes turn a typo such as --T 1e9 into an error instead
of a machine that hangs.
"""
from __future__ import annotations

import argparse
import math
import signal
import sys
from dataclasses import fields, replace
from typing import Any, NamedTuple, Optional

import torch

from .errors import first_line

# Upper limits: a typo such as --T 1e9 or --batch-size 1e12 fails at once instead of hanging the machine.
MAX_T = 10_000  # 10x the T = 1000 of Ho et al.
MAX_BATCH = 65_536
MAX_N_TRAIN = 10_000_000
MAX_SEED = 2**32 - 1


class Parser(argparse.ArgumentParser):
    """argparse that reports a bad argument in one line (plus a pointer to --help) and exits 2.
    Every command of the package (train.py, visualize.py, python -m mnist.*, ...) uses it."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", argparse.RawDescriptionHelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


# ================================================================ argument types
def _number(text: str, kind, what: str):
    try:
        return kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None


def positive_int(text: str) -> int:
    """argparse type: a whole number >= 1 ('50' and '5e1' are accepted, '2.5', '0' and 'nan' are not)."""
    v = _number(text, float, "a positive integer")
    if not (math.isfinite(v) and v == int(v) and v >= 1):
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return int(v)


def nonneg_int(text: str) -> int:
    """argparse type: a whole number >= 0."""
    v = _number(text, int, "a whole number >= 0")
    if v < 0:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 0, got {text!r}")
    return v


def probability(text: str) -> float:
    """argparse type: a number in [0, 1)."""
    p = _number(text, float, "a number in [0, 1)")
    if not 0 <= p < 1:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1), got {text!r}")
    return p


def unit_float(text: str) -> float:
    """argparse type: a number in [0, 1] (DDIM's eta)."""
    v = _number(text, float, "a number in [0, 1]")
    if not 0 <= v <= 1:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1], got {text!r}")
    return v


def positive_float(text: str) -> float:
    """argparse type: a finite number > 0."""
    v = _number(text, float, "a positive number")
    if not (v > 0 and math.isfinite(v)):
        raise argparse.ArgumentTypeError(f"expected a positive number (finite), got {text!r}")
    return v


def nonneg_float(text: str) -> float:
    """argparse type: a finite number >= 0."""
    v = _number(text, float, "a number >= 0")
    if not (v >= 0 and math.isfinite(v)):
        raise argparse.ArgumentTypeError(f"expected a finite number >= 0, got {text!r}")
    return v


def int_range(lo: int, hi: int):
    """argparse type factory: a whole number in lo..hi ('5e1' is accepted). The upper end turns a typo such
    as --T 1e9 into an error instead of a machine that hangs."""
    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            try:
                f = float(text)
                v = int(f) if math.isfinite(f) and f == int(f) else None
            except ValueError:
                v = None
        if v is None or not lo <= v <= hi:
            what = f"a positive integer up to {hi}" if lo == 1 else f"a whole number from {lo} to {hi}"
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
        return v

    parse.__name__ = f"int in {lo}..{hi}"
    return parse


seed_int = int_range(0, MAX_SEED)  # argparse type of every --seed: 0 .. 2**32 - 1 (a huge one overflows torch)


def check_fields(cfg, choices: Optional[dict] = None, at_least_one: tuple = (), at_most: Optional[dict] = None) -> None:
    """ValueError (one line) unless every field named in `choices` ({field: allowed values}) holds one of
    them, every field in `at_least_one` is >= 1, and every field in `at_most` ({field: limit}) is within it."""
    for name, allowed in (choices or {}).items():
        if getattr(cfg, name) not in allowed:
            raise ValueError(f"unknown {name.replace('_', ' ')} {getattr(cfg, name)!r}; choose one of {', '.join(allowed)}")
    for name in at_least_one:
        if getattr(cfg, name) < 1:
            raise ValueError(f"{name} must be at least 1, got {getattr(cfg, name)}")
    for name, most in (at_most or {}).items():
        if getattr(cfg, name) > most:
            raise ValueError(f"{name} must be at most {most}, got {getattr(cfg, name)}")


def check_training_settings(p_uncond: float, lr: float, ema_decay: float) -> None:
    """The checks every trainer makes on its label dropout, learning rate and EMA decay."""
    if not 0 <= p_uncond < 1:
        raise ValueError(f"p_uncond must be in [0, 1), got {p_uncond}")
    if not (lr > 0 and math.isfinite(lr)):
        raise ValueError(f"lr must be a positive finite number, got {lr}")
    if not 0 <= ema_decay < 1:
        raise ValueError(f"ema_decay must be in [0, 1), got {ema_decay}")


# ================================================================ parsers from configs
class Option(NamedTuple):
    """How one config field appears on the command line."""

    type: Any  # an argparse type, a tuple of choices, or bool (a --name / --no-name pair)
    help: str
    flag: Optional[str] = None  # default: --field-name
    metavar: Optional[str] = None


def add_config_arguments(parser, config_cls, options: dict, defaults=None) -> None:
    """One argument per field of the dataclass config_cls that `options` names ({field: Option}). Its
    default is the field's value in `defaults` (a config), named in the help; without `defaults` it is
    None, so that config_from_args keeps what a base config (a preset) says."""
    for f in fields(config_cls):
        if f.name not in options:
            continue
        o = Option(*options[f.name]) if not isinstance(options[f.name], Option) else options[f.name]
        flag = o.flag or "--" + f.name.replace("_", "-")
        default = getattr(defaults, f.name) if defaults is not None else None
        shown = "" if defaults is None else f" (default {_shown(default)})"
        kw = dict(dest=f.name, default=default, help=o.help.replace("%", "%%") + shown)
        if o.metavar:
            kw["metavar"] = o.metavar
        if o.type is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, **kw)
        elif isinstance(o.type, tuple):
            parser.add_argument(flag, choices=o.type, **kw)
        else:
            parser.add_argument(flag, type=o.type, **kw)


def _shown(v) -> str:
    if isinstance(v, tuple):
        return ",".join(map(str, v)) or "none"
    return str(v).replace("%", "%%")


def config_from_args(config_cls, args, base=None):
    """A config_cls from parsed arguments: each field given on the command line (not None) replaces the one
    in `base` (default config_cls())."""
    given = {f.name: getattr(args, f.name) for f in fields(config_cls) if getattr(args, f.name, None) is not None}
    return replace(base if base is not None else config_cls(), **given)


# ================================================================ interrupts
class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the process is, as Ctrl-C raises KeyboardInterrupt: every `finally` and every
    atomic writer's clean-up then runs, so no lock or temporary file is left behind (a default SIGTERM
    ends the process at once, leaving them)."""


_ERROR_LINES = [0]  # error_line's count in this process


def run_command(main, prog: str, kept: str) -> int:
    """Run a command's main() as the shell starts it: Ctrl-C (SIGINT) and SIGTERM end it with one line, what
    was interrupted and `kept` (what was kept, how to continue), and exit status 130 or 143, after its locks
    and temporary files have been released on the way out."""
    def on_term(signum, frame):
        raise Terminated()

    previous = signal.signal(signal.SIGTERM, on_term)
    said = _ERROR_LINES[0]
    try:
        return main()
    except KeyboardInterrupt as e:
        term = isinstance(e, Terminated)
        if _ERROR_LINES[0] == said:  # a signal while main exits on its error (torchrun stopping a rank): one line only
            print(f"{prog}: interrupted ({'SIGTERM' if term else 'Ctrl-C'}); {kept}", file=sys.stderr)
        return 143 if term else 130
    finally:
        signal.signal(signal.SIGTERM, previous)


# ================================================================ devices and errors
def resolve_device(device: str = "auto") -> torch.device:
    """'auto' picks cuda, then mps, then cpu; anything else is passed to torch.device (ValueError, one line,
    for a device that is not here)."""
    mps = getattr(torch.backends, "mps", None)
    mps_ok = mps is not None and mps.is_available()
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "mps" if mps_ok else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError as e:
        raise ValueError(f"unknown device {device!r}; use auto, cpu, cuda or mps") from e
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda was asked for but CUDA is not available; use --device auto or cpu")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise ValueError(f"--device {device}: there are only {torch.cuda.device_count()} CUDA devices; "
                         "use --device cuda")
    if dev.type == "mps" and not mps_ok:
        raise ValueError("--device mps was asked for but MPS (Apple GPU) is not available; use --device auto or cpu")
    if dev.type not in ("cpu", "cuda", "mps"):
        raise ValueError(f"unsupported device {device!r}; use auto, cpu, cuda or mps")
    return dev


def is_out_of_memory(e: BaseException) -> bool:
    """True for torch's out-of-memory errors (CPU allocator or CUDA), which a command reports in one line."""
    return isinstance(e, (RuntimeError, MemoryError)) and (
        isinstance(e, MemoryError) or "out of memory" in str(e) or "can't allocate memory" in str(e))


def error_line(prog: str, text: str) -> None:
    """'prog: error: text' on stderr in one write, newline included: print() writes the text and its newline
    separately, and under torchrun another rank's line landed between them (two errors read as one line).
    Counted, so that run_command adds no second line for a signal that arrives while the command exits."""
    sys.stderr.write(f"{prog}: error: {text}\n")
    sys.stderr.flush()
    _ERROR_LINES[0] += 1


def command_error(prog: str, e: Exception, out_of_memory) -> int:
    """What a command's main() does with an exception it stopped on: a failure the user can act on (bad
    input, a missing or foreign file, a checkpoint, data, a loss that became nan: ValueError, which
    runio.errors' types and utils.NonFiniteError are, and OSError; running out of memory) becomes one line
    on stderr and exit status 2; anything else is a bug and is raised again with its traceback.
    out_of_memory() says what to lower, e.g. "--batch-size 64; lower it"."""
    if is_out_of_memory(e):
        error_line(prog, f"out of memory with {out_of_memory()}")
    elif isinstance(e, (ValueError, OSError)):  # CheckpointError, OutputError, DataError, NonFiniteError
        error_line(prog, first_line(e))
    else:
        raise e
    return 2
