"""The argparse commands' shared parser and flag checks: one home for each kind of flag value.

Every value a command line gives is checked here, as argparse parses it, so a mistake stops the command before any
model or data is read: one line naming the flag, the value and the fix, exit code 2 (docs/usage.md). Files a
command *reads* (a run dir, a model, images) are checked where they are read and are exit code 1, as missing data
is. Standard library only: ``serve`` imports this in a torch-free install.
"""

from __future__ import annotations

import argparse
import ipaddress
import math
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

#: a usage or config mistake (docs/usage.md), as argparse's own errors
EXIT_USAGE = 2
#: one DNS label: letters, digits and inner hyphens
LABEL = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)")


class ArgumentParser(argparse.ArgumentParser):
    """argparse whose mistakes are one line: ``<prog>: error: argument --flag: <value and fix> (see <prog> --help)``,
    exit code 2 (plain argparse prints its usage first, often several lines)."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _number(text: str, convert: Callable[[str], Any], fits: Callable[[Any], bool], problem: str) -> Any:
    """``convert(text)`` when it parses and ``fits``, else argparse's error: ``'<text>' <problem>``."""
    try:
        value = convert(text)
    except ValueError:
        value = None
    if value is None or not fits(value):
        raise argparse.ArgumentTypeError(f"{text!r} {problem}")
    return value


def positive_int(text: str) -> int:
    """A count such as ``--batch-size``: an integer >= 1."""
    return _number(text, int, lambda v: v >= 1, "must be an integer >= 1")


def seconds(text: str) -> float:
    """A duration such as ``--request-timeout``: a positive, finite number of seconds."""
    return _number(text, float, lambda v: 0 < v < math.inf, "must be a positive number of seconds (e.g. 15)")


def port(text: str) -> int:
    """A TCP port to listen on, 1 to 65535."""
    return _number(text, int, lambda v: 1 <= v <= 65535,
                   "is not a TCP port; use a number from 1 to 65535 (e.g. 8000)")


def host(text: str) -> str:
    """An address to listen on: an IP address or a host name (no scheme, no port, no path)."""
    try:
        ipaddress.ip_address(text)
        return text
    except ValueError:
        pass
    labels = text[:-1].split(".") if text.endswith(".") else text.split(".")
    if len(text) <= 253 and all(LABEL.fullmatch(label) for label in labels) and not all(
            label.isdigit() for label in labels):
        return text
    hint = "; give the port with --port" if re.fullmatch(r"[^:/]+:\d+", text) else ""
    raise argparse.ArgumentTypeError(f"{text!r} is not an address to listen on; use an IP address (127.0.0.1: this "
                                     f"machine only, 0.0.0.0: every interface) or a host name{hint}")


def device(text: str) -> str:
    """Where PyTorch runs a model: ``cpu``, ``cuda`` or ``cuda:<index>`` of a GPU that is visible."""
    value = text.strip().lower()
    if value == "cpu":
        return value
    match = re.fullmatch(r"cuda(?::(\d+))?", value)
    if not match:
        raise argparse.ArgumentTypeError(f"{text!r} is not a device; use cpu, cuda or cuda:<index>")
    try:
        import torch
    except ImportError:
        raise argparse.ArgumentTypeError(f"{text!r} needs PyTorch, which is not installed; use cpu") from None
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if not count:
        raise argparse.ArgumentTypeError(f"{text!r}: no CUDA GPU is visible (torch.cuda.is_available() is False); "
                                         "use cpu")
    if int(match.group(1) or 0) >= count:
        raise argparse.ArgumentTypeError(f"{text!r}: {count} CUDA GPU(s) are visible, cuda:0 to cuda:{count - 1}")
    return value


def output_file(*suffixes: str) -> Callable[[str], Path]:
    """A file a command writes (``--out``, ``--csv``): not a folder, ending in one of ``suffixes`` when given, in a
    folder that exists or can be made (missing folders are made when it is written)."""
    example = f"name{suffixes[0]}" if suffixes else "name"

    def check(text: str) -> Path:
        path = Path(text).expanduser()
        if not text.strip() or path.name in ("", ".", ".."):
            raise argparse.ArgumentTypeError(f"{text!r} is no file name; give a file, e.g. outputs/{example}")
        if path.is_dir():
            raise argparse.ArgumentTypeError(f"{text!r} is a folder; give a file in it, e.g. {path / example}")
        if suffixes and path.suffix not in suffixes:
            raise argparse.ArgumentTypeError(f"{text!r} must end in {' or '.join(suffixes)}, e.g. "
                                             f"{path.with_suffix(suffixes[0])}")
        folder = path.absolute().parent
        while not folder.exists() and folder != folder.parent:
            folder = folder.parent
        if not folder.is_dir():
            raise argparse.ArgumentTypeError(f"{text!r}: {folder} is a file, not a folder; choose another place")
        if not os.access(folder, os.W_OK | os.X_OK):
            raise argparse.ArgumentTypeError(f"{text!r}: {folder} is not writable; choose another place")
        return path

    check.__name__ = "output file"
    return check
