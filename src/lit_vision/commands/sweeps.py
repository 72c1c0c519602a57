"""``python -m lit_vision.sweeps <sweep dir> [metric]``: (re)write the summary of a finished or killed sweep.

Example::

    python -m lit_vision.sweeps outputs/fashion_cnn/multiruns/<time> val/acc

Before anything is written, the folder must hold job folders (``<n>/.hydra/``; else exit code 1) and ``metric`` must
be in a finished job's ``metrics.json`` (else exit code 2, naming the metrics there are).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from lit_vision.commands.arguments import ArgumentParser
from lit_vision.commands.runner import exit_on_user_error
from lit_vision.runs.sweep_summary import write_summary


def main(argv: Sequence[str] | None = None) -> None:
    parser = ArgumentParser(prog="python -m lit_vision.sweeps", description=__doc__.split("\n\n")[0])
    parser.add_argument("sweep_dir", type=Path, help="a multirun's folder, e.g. outputs/<task>/multiruns/<time>")
    parser.add_argument("metric", nargs="?", default="val/acc",
                        help="the metrics.json key to rank and plot (default val/acc)")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    exit_on_user_error(lambda: write_summary(args.sweep_dir, args.metric, check=True))


if __name__ == "__main__":
    main()
