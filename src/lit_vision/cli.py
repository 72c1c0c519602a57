"""``lit-vision <command> [args ...]``: every command behind one entry point, like git.

``lit-vision`` or ``lit-vision --help`` lists the commands, one line each; ``lit-vision train model=cnn …`` runs
:mod:`lit_vision.commands.train`'s ``main()`` with the remaining arguments, exactly as ``python -m lit_vision.train
model=cnn …`` does. ``python -m lit_vision <command> …`` is the same.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence
from typing import Any

from lit_vision.commands import COMMANDS

PROG = "lit-vision"
EXIT_USAGE = 2


def usage() -> str:
    width = max(map(len, COMMANDS))
    lines = [f"usage: {PROG} <command> [args ...]", "",
             "Reproducible, sweepable image-classification experiments (PyTorch Lightning + Hydra).", "",
             "commands:"]
    lines += [f"  {name:<{width}}  {line}" for name, line in COMMANDS.items()]
    lines += ["", f"'{PROG} <command> --help' shows a command's options; '{PROG} <command> ...' is the same as",
              "'python -m lit_vision.<command> ...'."]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> Any:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help", "help"):
        print(usage())
        return None
    command, rest = args[0].replace("-", "_"), args[1:]  # export-backbone as in lit-vision-export-backbone
    if command not in COMMANDS:
        print(f"{PROG}: unknown command {args[0]!r}; the commands are: {', '.join(COMMANDS)} (see {PROG} --help)",
              file=sys.stderr)
        sys.exit(EXIT_USAGE)
    module = importlib.import_module(f"lit_vision.commands.{command}")
    sys.argv = [f"{PROG} {command}", *rest]  # Hydra and argparse read the arguments (and the usage name) here
    return module.main()


if __name__ == "__main__":
    main()
