"""Lightning's cost per training step: microseconds the real ``lit_vision.train`` path adds to each optimizer step
over the hand-written loop of the same net, for each notebook preset, at a batch small enough that compute is a small
part of the step and at the preset's own batch.

    python benchmarks/step_overhead.py --presets fashion_dense mnist_cnn --batches small own --small-batch 8 \\
        --steps 40 --warmup 10 --rounds 3 --data-root ../shared/datasets --json out.json --markdown out.md

The two sides, per preset and batch:

* ``lit``: ``lit_vision.commands.train.run`` on the preset's config with its default callbacks (checkpoints, early
  stopping, LR monitor, progress bar, model summary) and CSV logger, ``data.batch_size`` set to the batch; timed by
  ``throughput.StepTimer`` over Lightning steps ``--warmup .. --warmup + --steps`` of the first epoch;
* ``loop``: ``throughput.PlainLoop``, the hand-written loop of the same net, optimizer, loss and precision on the same
  training images resident as tensors, in the memory layout the lit_vision model uses, at the same batch, with the
  intra-op threads the lit_vision run sets (``cpu_threads``).

Both are reported per *optimizer step*: a preset with ``steps_per_execution=k`` takes k optimizer steps per Lightning
step, so ``--warmup`` and ``--steps`` count optimizer steps and are rounded up to whole groups of k (and shortened to
the full groups the training split holds; a cell whose split cannot hold a warm-up group and a timed one is skipped,
with the reason). Each side reads two clocks over the same window, after the device's queued work is done: wall time
and this process's CPU time (``time.process_time``, every thread of the process). The machine this runs on may be
shared: wall time includes the time the host gave to other processes, CPU time is what this process did without it.
CPU time counts every thread, so it can exceed wall time where torch's threads work in parallel (or spin waiting
for work), and it misses the GPU's own time: on a GPU, wall time is the measure and CPU time is the host's share.

Rounds are interleaved (every preset, batch and side once per round, the side that goes first alternating), and the
table gives the median of the rounds with their spread (min–max); "added" and the ratio are taken per round, from
the two sides measured next to each other, then their median. ``--json`` writes one row per preset and batch with
every round's values.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import lightning
import throughput
import torch
from rich.console import Console
from rich.table import Table
from throughput import PRESETS, PlainLoop, lit_vision_timing, median, preset_config, shown_command

from lit_vision.reproduction.machine import cpu_model
from lit_vision.runs.markdown import markdown_table
from lit_vision.training import hardware
from lit_vision.training.builders import build_classifier

HERE = Path(__file__).resolve().parent
BATCHES = ("small", "own")
SIDES = ("lit", "loop")


# --- what is measured ----------------------------------------------------------------------------------------
def loop_variant(loop: PlainLoop) -> str:
    """The hand-written loop's variant in the layout of the lit_vision model (``model.channels_last``)."""
    if loop.model_cfg.get("compile"):
        return "compiled"
    return "channels_last" if build_classifier(loop.model_cfg, loop.dm).channels_last else "nchw"


def plan(preset: str, kind: str, loop: PlainLoop, args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """One cell: its batch, steps_per_execution and the optimizer steps to warm up and time (whole groups that fit
    in the training split's first epoch), or why it cannot be measured (``skipped``)."""
    batch = args.small_batch if kind == "small" else loop.batch
    cfg = preset_config(preset, args.data_root, args.overrides, work / "plan")
    group = int(cfg.steps_per_execution)
    warmup, steps = -(-args.warmup // group), -(-args.steps // group)  # Lightning steps
    full = len(loop.labels) // (batch * group)  # full Lightning steps in an epoch of the training split
    steps = min(steps, full - warmup)
    cell = {"preset": preset, "kind": kind, "batch": batch, "steps_per_execution": group,
            "precision": loop.precision, "loop_variant": loop_variant(loop), "train_images": len(loop.labels),
            # the intra-op threads the lit_vision run sets (cpu_threads): the loop runs with as many
            "threads": hardware.cpu_threads(cfg, args.device == "cuda"),
            "warmup_steps": warmup * group, "timed_steps": max(steps, 0) * group, "skipped": None}
    if steps < 1:
        cell["skipped"] = (f"its training split ({len(loop.labels)} images) holds {full} full step(s) of "
                           f"{batch * group} images (batch {batch} x steps_per_execution {group}); "
                           f"{warmup + 1} are needed: more --synthetic images, or fewer --warmup")
    return cell


def per_step(timing: dict[str, Any], cell: dict[str, Any], side: str) -> dict[str, float]:
    """Wall and CPU microseconds per optimizer step of one timed run."""
    if timing["images"] != cell["timed_steps"] * cell["batch"]:
        raise RuntimeError(f"{cell['preset']} ({side}, batch {cell['batch']}): timed {timing['images']} images, "
                           f"expected {cell['timed_steps']} full batches")
    return {"wall_us": 1e6 * timing["wall_s"] / cell["timed_steps"],
            "cpu_us": 1e6 * timing["cpu_s"] / cell["timed_steps"]}


def run_side(side: str, cell: dict[str, Any], loop: PlainLoop, args: argparse.Namespace,
             work: Path) -> dict[str, float]:
    if side == "loop":
        torch.set_num_threads(cell["threads"])
        timing = loop.timing(cell["loop_variant"], cell["timed_steps"], cell["warmup_steps"], cell["batch"])
    else:
        # warmup and steps in whole groups, so throughput's rounding up to groups keeps them
        lit_args = argparse.Namespace(**{**vars(args), "warmup": cell["warmup_steps"], "steps": cell["timed_steps"],
                                         "overrides": [*args.overrides, f"data.batch_size={cell['batch']}"]})
        timing = lit_vision_timing(cell["preset"], lit_args, work)
    return per_step(timing, cell, side)


def summarise(cell: dict[str, Any], rounds: list[dict[str, dict[str, float]]]) -> dict[str, Any]:
    """The cell's row: every round's values, the per-round differences and ratios, and their medians and spread."""
    values: dict[str, list[float]] = {}
    for clock in ("wall_us", "cpu_us"):
        for side in SIDES:
            values[f"{side}_{clock}"] = [r[side][clock] for r in rounds]
        values[f"added_{clock}"] = [r["lit"][clock] - r["loop"][clock] for r in rounds]
        values[f"ratio_{clock.removesuffix('_us')}"] = [r["lit"][clock] / r["loop"][clock] for r in rounds]
    return {**cell, "rounds": values, "order": [r["first"] for r in rounds],
            "median": {k: median(v) for k, v in values.items()},
            "spread": {k: [min(v), max(v)] if v else None for k, v in values.items()}}


def measure(args: argparse.Namespace, work: Path) -> list[dict[str, Any]]:
    loops = {p: PlainLoop(p, args, work) for p in args.presets}
    cells = [plan(p, kind, loops[p], args, work) for p in args.presets for kind in args.batches]
    for cell in cells:
        if cell["skipped"]:
            print(f"{cell['preset']} at batch {cell['batch']} ({cell['kind']}): skipped, {cell['skipped']}",
                  flush=True)
    rounds: list[list[dict[str, Any]]] = [[] for _ in cells]
    measured = [(cell, rounds[i]) for i, cell in enumerate(cells) if not cell["skipped"]]
    for round_ in range(args.rounds):
        for j, (cell, results) in enumerate(measured):
            # the side that goes first alternates from cell to cell and from round to round
            order = SIDES if (round_ + j) % 2 == 0 else SIDES[::-1]
            result: dict[str, Any] = {"first": order[0]}
            for side in order:
                result[side] = run_side(side, cell, loops[cell["preset"]], args, work)
            results.append(result)
            print(f"round {round_ + 1}/{args.rounds} {cell['preset']} batch {cell['batch']}: lit "
                  f"{result['lit']['wall_us']:,.0f} µs/step (CPU {result['lit']['cpu_us']:,.0f}), loop "
                  f"{result['loop']['wall_us']:,.0f} (CPU {result['loop']['cpu_us']:,.0f})", flush=True)
    return [summarise(cell, results) for cell, results in zip(cells, rounds)]


# --- the table -----------------------------------------------------------------------------------------------
COLUMNS = ("preset", "batch", "k", "lit µs/step", "loop µs/step", "added µs/step", "lit CPU µs/step",
           "loop CPU µs/step", "added CPU µs/step", "lit/loop wall", "lit/loop CPU")
#: the row's values behind COLUMNS[3:], and their number format
VALUES = (("lit_wall_us", ",.0f"), ("loop_wall_us", ",.0f"), ("added_wall_us", ",.0f"), ("lit_cpu_us", ",.0f"),
          ("loop_cpu_us", ",.0f"), ("added_cpu_us", ",.0f"), ("ratio_wall", ".2f"), ("ratio_cpu", ".2f"))


def table_title(machine: dict[str, Any]) -> str:
    where = f"{machine['gpu']} ({machine['cpu']} host)" if machine["gpu"] else machine["cpu"]
    return (f"µs per optimizer step, lit_vision train path vs the hand-written loop: median (min–max) of "
            f"{machine['rounds']} interleaved rounds of {machine['steps']} steps — {machine['device']}, {where}, "
            f"{machine['threads']} threads, torch {machine['torch']}, Lightning {machine['lightning']}, "
            f"{machine['data']} data")


def table_cells(r: dict[str, Any]) -> list[str]:
    head = [r["preset"], f"{r['batch']} ({r['kind']})", str(r["steps_per_execution"])]
    if r["skipped"]:
        return [*head, "skipped", *["–"] * (len(VALUES) - 1)]
    cells = []
    for key, fmt in VALUES:
        low, high = r["spread"][key]
        cells.append(f"{r['median'][key]:{fmt}} ({low:{fmt}}–{high:{fmt}})")
    return [*head, *cells]


def print_table(rows: list[dict[str, Any]], machine: dict[str, Any]) -> None:
    table = Table()
    for col in COLUMNS:
        table.add_column(col, justify="left" if col == "preset" else "right")
    for r in rows:
        table.add_row(*table_cells(r))
    console = Console(width=240)
    console.print(table_title(machine), soft_wrap=True)  # one line: a table's title wraps at the table's width
    console.print(table)
    for r in rows:
        if r["skipped"]:
            print(f"skipped: {r['preset']} at batch {r['batch']}: {r['skipped']}")


def write_markdown(path: Path, rows: list[dict[str, Any]], machine: dict[str, Any], argv: list[str]) -> None:
    """The table as markdown, with its title and the command that measured it (for docs/)."""
    skipped = "".join(f"\nskipped: {r['preset']} at batch {r['batch']}: {r['skipped']}\n" for r in rows
                      if r["skipped"])
    path.write_text(f"{table_title(machine)}\n\n`{shown_command('step_overhead.py', argv)}`\n\n"
                    f"{markdown_table(COLUMNS, [table_cells(r) for r in rows])}\n{skipped}")


# --- the run -------------------------------------------------------------------------------------------------
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--presets", nargs="+", default=PRESETS, choices=PRESETS)
    ap.add_argument("--batches", nargs="+", default=list(BATCHES), choices=BATCHES,
                    help="small: --small-batch images a step; own: the preset's data.batch_size")
    ap.add_argument("--small-batch", type=int, default=8, help="the batch at which compute is a small part of a step")
    ap.add_argument("--steps", type=int, default=40, help="timed optimizer steps per measurement")
    ap.add_argument("--warmup", type=int, default=10, help="untimed optimizer steps before them")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds; medians and min–max are reported")
    throughput.add_run_arguments(ap)
    args = ap.parse_args(argv)
    if min(args.small_batch, args.steps, args.rounds) < 1 or args.warmup < 0:
        ap.error("--small-batch, --steps and --rounds must be positive, --warmup at least 0")
    return args


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    args = parse_args(argv)
    sys.path.insert(0, str(HERE))  # StepTimer is instantiated by Hydra as throughput.StepTimer
    machine = {"cpu": cpu_model(), "capability": torch.backends.cpu.get_cpu_capability(), "device": args.device,
               "gpu": torch.cuda.get_device_name() if args.device == "cuda" else None,
               "torch": torch.__version__, "lightning": lightning.__version__,
               "rounds": args.rounds, "steps": args.steps, "warmup": args.warmup, "small_batch": args.small_batch}
    with tempfile.TemporaryDirectory(prefix="step_overhead-") as tmp:
        machine["data"] = throughput.use_synthetic_data(args, Path(tmp))
        rows = measure(args, Path(tmp))
    machine["threads"] = "/".join(sorted({str(r["threads"]) for r in rows}))
    for row in rows:
        row["machine"] = machine
    print_table(rows, machine)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    if args.markdown:
        write_markdown(args.markdown, rows, machine, sys.argv[1:] if argv is None else argv)
    if all(r["skipped"] for r in rows):
        raise SystemExit("no preset could be measured: see the skipped lines above")
    return rows


if __name__ == "__main__":
    main()
