"""``python -m lit_vision.sweeps <sweep dir> [metric]``: (re)write the summary of a finished or killed sweep.

Example::

    python -m lit_vision.sweeps outputs/fashion_cnn/multiruns/<time> val/acc
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from lit_vision.commands.runner import exit_on_user_error
from lit_vision.runs.sweep_summary import write_summary


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m lit_vision.sweeps", description=__doc__.split("\n\n")[0])
    parser.add_argument("sweep_dir", type=Path)
    parser.add_argument("metric", nargs="?", default="val/acc")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    exit_on_user_error(lambda: write_summary(args.sweep_dir, args.metric))


if __name__ == "__main__":
    main()
