"""Training images/s of every notebook preset: the real ``lit_vision.train`` path, the best hand-written PyTorch
loop of the same net, and the notebook's own Keras model — in one run, interleaved, medians.

    python benchmarks/throughput.py --presets horse_cnn cifar10_model_s fashion_dense fashion_cnn_final \\
        mnist_dense_mse mnist_cnn fer_custom_cnn --data-root ../shared/datasets --steps 30 --repeats 3 --json out.json

Columns, per preset (its net, batch size, optimizer, loss and data):

* ``lit_vision``: ``lit_vision.commands.train.run`` on the preset's config with its default callbacks (checkpoints,
  early stopping, LR monitor, progress bar, model summary) and CSV logger, timed by a callback from step ``--warmup`` to
  ``--warmup + --steps`` of the first epoch (validation and checkpointing come after the timed steps); the same run
  without callbacks, logger and progress bar (``lit_vision_bare``) gives their cost per step;
* ``plain``: a hand-written loop (index a shuffled batch, /255, normalise, forward, loss, backward, step) in NCHW,
  in channels_last and compiled with ``torch.compile`` (``--variants``): the best of them is the column;
* ``keras``: ``benchmarks/keras_throughput.py`` on the notebook's Keras model, run by ``--keras-python`` (default
  ``.venv-keras/bin/python``, made by ``benchmarks/setup_keras_venv.sh``); null when that interpreter is absent.

Also printed: the CPU, a measured fp32 GEMM peak, and the GFLOPS the lit_vision path achieves (FLOPs of one
training step counted by ``torch.utils.flop_counter``). Rounds are interleaved (every preset and column once per
round, ``--repeats`` rounds) and medians reported, so background load hits all columns alike.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf, open_dict
from rich.console import Console
from rich.table import Table

from lit_vision.commands.runner import execute
from lit_vision.commands.train import run as train_run
from lit_vision.config import CONF_DIR
from lit_vision.data.synthetic import write_notebook_datasets
from lit_vision.reproduction.machine import cpu_model
from lit_vision.runs.markdown import markdown_table
from lit_vision.training import hardware
from lit_vision.training.builders import build_classifier, build_datamodule
from lit_vision.training.optim import create_optimizer

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
PRESETS = ["horse_cnn", "cifar10_model_s", "fashion_dense", "fashion_cnn_final", "mnist_dense_mse", "mnist_cnn",
           "fer_custom_cnn"]
#: where each preset's data lies below --data-root (../shared/datasets)
DATA_FOLDER = {"horse_cnn": "cifar10-jpeg", "cifar10_model_s": "cifar10-jpeg", "fer_custom_cnn": "fer2013"}
VARIANTS = ("nchw", "channels_last", "compiled")


def clocks(device: torch.device) -> tuple[float, float]:
    """Wall seconds and this process's CPU seconds (all its threads; not the time the host gave to others), read
    once the device's queued work is done."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter(), time.process_time()


# --- the lit_vision train path -------------------------------------------------------------------------------
class StepTimer(L.Callback):
    """Times training steps ``warmup .. warmup + steps`` and appends a JSON line to the file ``out``: their images,
    wall seconds and process CPU seconds."""

    def __init__(self, warmup: int, steps: int, out: str) -> None:
        self.warmup, self.steps, self.out = int(warmup), int(steps), out
        self.start, self.images = (0.0, 0.0), 0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):  # noqa: ANN001
        if batch_idx == self.warmup:
            self.start = clocks(pl_module.device)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):  # noqa: ANN001
        if self.warmup <= batch_idx < self.warmup + self.steps:
            self.images += len(batch[1])
        if batch_idx == self.warmup + self.steps - 1:
            wall, cpu = clocks(pl_module.device)
            with open(self.out, "a") as f:
                f.write(json.dumps({"images": self.images, "wall_s": wall - self.start[0],
                                    "cpu_s": cpu - self.start[1]}) + "\n")


def preset_config(preset: str, data_root: Path, overrides: list[str], run_dir: Path) -> DictConfig:
    """``conf/train.yaml`` + ``experiment=<preset>`` as the command composes it, outputs in ``run_dir``."""
    root = data_root / DATA_FOLDER.get(preset, "")
    return compose_train([f"experiment={preset}", f"data.root={root}", *overrides], run_dir)


def compose_train(overrides: list[str], run_dir: Path) -> DictConfig:
    """``conf/train.yaml`` with ``overrides`` as the train command composes it, outputs in ``run_dir``."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("train", overrides=overrides, return_hydra_config=True)
    with open_dict(cfg):
        cfg.hydra.runtime.output_dir = str(run_dir)
        cfg.hydra.job.num = 0
    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        cfg.paths.output_dir = str(run_dir)
    return cfg


#: the lit_vision run without callbacks, logger and progress bar: the difference to the default run is their cost
BARE = ["callbacks=none", "logger=none", "+trainer.enable_progress_bar=false"]


def lit_vision_rate(preset: str, args: argparse.Namespace, work: Path, bare: bool = False) -> float:
    return lit_vision_timing(preset, args, work, bare)["images_per_s"]


def lit_vision_timing(preset: str, args: argparse.Namespace, work: Path, bare: bool = False) -> dict[str, Any]:
    """One lit_vision training run of ``preset``, timed by :class:`StepTimer`: ``{"images", "wall_s", "cpu_s",
    "images_per_s", "steps_per_execution", "steps"}`` (``steps``: the timed Lightning steps)."""
    out = work / f"{preset}{'-bare' if bare else ''}.rates"
    run_dir = Path(tempfile.mkdtemp(dir=work, prefix=f"{preset}-"))
    overrides = [*(BARE if bare else []), *args.overrides]
    # a preset with steps_per_execution=k takes k optimizer steps per Lightning step: time as many optimizer steps
    # as the hand-written loop (rounded up to whole groups)
    group = int(preset_config(preset, args.data_root, overrides, run_dir).steps_per_execution)
    warmup, steps = -(-args.warmup // group), -(-args.steps // group)
    cfg = preset_config(preset, args.data_root, [*overrides,
        f"accelerator={args.device}", "trainer.max_epochs=1", f"trainer.limit_train_batches={warmup + steps}",
        "trainer.limit_val_batches=1", "trainer.num_sanity_val_steps=0", "test=false", "validate_best=false",
        "report.plots=false", f"paths.cache_dir={args.cache_dir}",
        "+callbacks.bench_timer._target_=throughput.StepTimer",
        f"+callbacks.bench_timer.warmup={warmup}", f"+callbacks.bench_timer.steps={steps}",
        f"+callbacks.bench_timer.out={out}"], run_dir)
    before = out.read_text().count("\n") if out.exists() else 0
    execute(train_run, cfg)
    lines = out.read_text().splitlines()
    if len(lines) != before + 1:
        raise RuntimeError(f"{preset}: the lit_vision run did not reach step {warmup + steps} (is its training split "
                           "shorter? fewer --steps, or more --synthetic images)")
    timing = json.loads(lines[-1])
    return {**timing, "images_per_s": timing["images"] / timing["wall_s"], "steps_per_execution": group,
            "steps": steps}


# --- the hand-written loop -----------------------------------------------------------------------------------
class PlainLoop:
    """The preset's net, optimizer and loss in a loop a person would write, on the preset's training images."""

    def __init__(self, preset: str, args: argparse.Namespace, work: Path) -> None:
        cfg = preset_config(preset, args.data_root, [f"paths.cache_dir={args.cache_dir}", *args.overrides],
                            work / "plain")
        self.dm = build_datamodule(cfg)
        self.model_cfg = cfg.model
        self.batch = int(cfg.data.batch_size)
        self.device = torch.device(args.device)
        # the whole training split on the device, as a person would do for data this small
        self.images = torch.from_numpy(np.ascontiguousarray(self.dm.train_set.images)).to(self.device)
        self.labels = torch.from_numpy(np.asarray(self.dm.train_set.labels, dtype=np.int64)).to(self.device)
        self.loss_name = str(cfg.model.loss)
        # the precision the lit_vision run of this preset resolves to (trainer.precision=auto): the loop uses it too
        self.precision = hardware.resolve_precision(cfg.trainer.precision, self.device.type == "cuda",
                                                    hardware.convolutional(cfg))[0]
        self._steps: dict[str, Callable[[torch.Tensor], int]] = {}  # per variant, built (and compiled) once

    def _net_and_optimizer(self, variant: str) -> tuple[Callable, torch.nn.Module, torch.optim.Optimizer, Any]:
        torch.manual_seed(0)
        model = build_classifier(self.model_cfg, self.dm).to(self.device)  # same net and normalisation constants
        net = model.net.train()
        memory = torch.channels_last if variant in ("channels_last", "compiled") else torch.contiguous_format
        net = net.to(memory_format=memory)
        optimizer = create_optimizer(net, OmegaConf.to_container(self.model_cfg.optimizer))
        forward = torch.compile(net) if variant == "compiled" else net
        return forward, net, optimizer, (model.mean, model.std, memory)

    def loss(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if self.loss_name == "bce":
            return F.binary_cross_entropy_with_logits(logits.squeeze(1), y.float())
        if self.loss_name == "mse":
            return F.mse_loss(logits.softmax(1), F.one_hot(y, logits.shape[1]).float())
        return F.cross_entropy(logits, y)

    def step_fn(self, variant: str) -> Callable[[torch.Tensor], int]:
        forward, _, optimizer, (mean, std, memory) = self._net_and_optimizer(variant)

        autocast = {"device_type": self.device.type, "enabled": self.precision != "32-true",
                    "dtype": torch.float16 if self.precision.startswith("16") else torch.bfloat16}
        scaler = torch.amp.GradScaler(self.device.type, enabled=self.precision.startswith("16"))

        def step(idx: torch.Tensor) -> int:
            x = ((self.images[idx].float().div_(255) - mean) / std).contiguous(memory_format=memory)
            y = self.labels[idx]
            with torch.autocast(**autocast):
                logits = forward(x)
            loss = self.loss(logits.float(), y)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            return len(y)
        return step

    def rate(self, variant: str, steps: int, warmup: int) -> float:
        timing = self.timing(variant, steps, warmup)
        return timing["images"] / timing["wall_s"]

    def timing(self, variant: str, steps: int, warmup: int, batch: int | None = None) -> dict[str, Any]:
        """``steps`` training steps of ``batch`` images (default: the preset's) after ``warmup`` untimed ones:
        ``{"images", "wall_s", "cpu_s"}``."""
        batch = batch or self.batch
        # what lit_vision sets: exact fp32 matmuls on a CPU, TF32 on a GPU
        torch.set_float32_matmul_precision("highest" if self.device.type == "cpu" else "high")
        if variant not in self._steps:
            self._steps[variant] = self.step_fn(variant)
        step = self._steps[variant]
        order = torch.randperm(len(self.labels), device=self.device)
        batches = [order[(i * batch) % len(order):][:batch] for i in range(warmup + steps)]
        # as lit_vision trains on a CPU: no GPU probe in every Adam step (hardware.gpus_hidden), which a script
        # that never imported Lightning would not pay either
        with hardware.gpus_hidden(self.device.type == "cpu" and not torch.cuda.is_initialized()):
            for idx in batches[:warmup]:
                step(idx)
            start = clocks(self.device)
            images = sum(step(idx) for idx in batches[warmup:])
            wall, cpu = clocks(self.device)
        return {"images": images, "wall_s": wall - start[0], "cpu_s": cpu - start[1]}

    def flops_per_step(self) -> float:
        """FLOPs of one training step (forward + backward) of one batch, counted by torch."""
        from torch.utils.flop_counter import FlopCounterMode

        forward, _, _, (mean, std, _) = self._net_and_optimizer("nchw")
        x = (self.images[: self.batch].float() / 255 - mean) / std
        with FlopCounterMode(display=False) as counter:
            self.loss(forward(x), self.labels[: self.batch]).backward()
        return float(counter.get_total_flops())


# --- Keras --------------------------------------------------------------------------------------------------
def keras_rates(python: Path, presets: list[str], args: argparse.Namespace, work: Path) -> dict[str, float] | None:
    """One round of the Keras column through the separate TensorFlow interpreter (None when it is absent)."""
    if not python.is_file() or args.device != "cpu":  # the Keras column is the notebooks' CPU run
        return None
    out = work / "keras.json"
    cmd = [str(python), str(HERE / "keras_throughput.py"), "--presets", *presets, "--steps", str(args.steps),
           "--warmup", str(args.warmup), "--repeats", "1", "--json", str(out)]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    rows = json.loads(out.read_text())["rows"]
    return {r["preset"]: float(r["images_per_s"]) for r in rows}


# --- the machine ----------------------------------------------------------------------------------------------
def gemm_peak_gflops(size: int = 1024, seconds: float = 2.0, dtype: torch.dtype = torch.float32,
                     device: str = "cpu") -> float:
    """Best matrix-multiply throughput (``dtype``) of this process's threads or of the GPU."""
    a, b = torch.randn(size, size, dtype=dtype, device=device), torch.randn(size, size, dtype=dtype, device=device)
    best, deadline = 0.0, time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        start = time.perf_counter()
        for _ in range(5):
            torch.mm(a, b)
        if device == "cuda":
            torch.cuda.synchronize()
        best = max(best, 5 * 2 * size ** 3 / (time.perf_counter() - start))
    return best / 1e9


# --- the run -------------------------------------------------------------------------------------------------
def median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def measure(args: argparse.Namespace, work: Path, peaks: dict[str, float]) -> list[dict[str, Any]]:
    loops = {p: PlainLoop(p, args, work) for p in args.presets}
    flops = {p: loops[p].flops_per_step() / loops[p].batch for p in args.presets}  # per image
    lit: dict[str, list[float]] = {p: [] for p in args.presets}
    bare: dict[str, list[float]] = {p: [] for p in args.presets}
    plain: dict[str, dict[str, list[float]]] = {p: {v: [] for v in args.variants} for p in args.presets}
    keras: dict[str, list[float]] = {p: [] for p in args.presets}
    for round_ in range(args.repeats):
        for preset in args.presets:
            lit[preset].append(lit_vision_rate(preset, args, work))
            bare[preset].append(lit_vision_rate(preset, args, work, bare=True))
            for variant in args.variants:
                plain[preset][variant].append(loops[preset].rate(variant, args.steps, args.warmup))
            print(f"round {round_ + 1}/{args.repeats} {preset}: lit_vision {lit[preset][-1]:,.0f} img/s (bare "
                  f"{bare[preset][-1]:,.0f}), plain "
                  + ", ".join(f"{v} {plain[preset][v][-1]:,.0f}" for v in args.variants), flush=True)
        rates = keras_rates(args.keras_python, args.presets, args, work)
        for preset, rate in (rates or {}).items():
            keras[preset].append(rate)
    rows = []
    for preset in args.presets:
        best_variant = max(args.variants, key=lambda v: median(plain[preset][v]))
        row = {"preset": preset, "batch": loops[preset].batch, "precision": loops[preset].precision,
               "lit_vision": median(lit[preset]),
               "plain": median(plain[preset][best_variant]), "plain_variant": best_variant,
               "plain_variants": {v: median(plain[preset][v]) for v in args.variants},
               "keras": median(keras[preset])}
        row["lit_vision_bare"] = median(bare[preset])
        # seconds per step the default callbacks, logger and progress bar add (negative: within the noise)
        batch = loops[preset].batch
        row["callback_ms_per_step"] = 1e3 * (batch / row["lit_vision"] - batch / row["lit_vision_bare"])
        row["ratio_plain"] = row["lit_vision"] / row["plain"]
        row["ratio_keras"] = row["lit_vision"] / row["keras"] if row["keras"] else None
        row["gflops_lit_vision"] = row["lit_vision"] * flops[preset] / 1e9
        row["gemm_peak_gflops"] = peaks["bf16" if row["precision"].startswith("bf16") else "fp32"]
        row["repeats"] = {"lit_vision": lit[preset], "lit_vision_bare": bare[preset],
                          "plain": plain[preset][best_variant], "keras": keras[preset]}
        rows.append(row)
    return rows


COLUMNS = ("preset", "batch", "precision", "lit_vision", "callbacks ms/step", "plain (best variant)", "keras",
           "lit/plain", "lit/keras", "GFLOPS (% of its GEMM peak)")


def table_title(machine: dict[str, Any]) -> str:
    where = machine["gpu"] or f"{machine['cpu']}, {machine['threads']} threads"
    return (f"training images/s, median of {machine['repeats']} interleaved rounds — {where}, torch "
            f"{machine['torch']}, {machine['data']} data, GEMM peak fp32 {machine['gemm_peak_gflops']:,.0f} / bf16 "
            f"{machine['gemm_peak_gflops_bf16']:,.0f} GFLOPS")


def table_cells(r: dict[str, Any]) -> list[str]:
    gflops = f"{r['gflops_lit_vision']:,.1f} ({100 * r['gflops_lit_vision'] / r['gemm_peak_gflops']:.0f}%)"
    return [r["preset"], str(r["batch"]), r["precision"], f"{r['lit_vision']:,.0f}", f"{r['callback_ms_per_step']:.2f}",
            f"{r['plain']:,.0f} ({r['plain_variant']})", f"{r['keras']:,.0f}" if r["keras"] else "–",
            f"{r['ratio_plain']:.2f}", f"{r['ratio_keras']:.2f}" if r["ratio_keras"] else "–", gflops]


def print_table(rows: list[dict[str, Any]], machine: dict[str, Any]) -> None:
    table = Table(title=table_title(machine))
    for col in COLUMNS:
        table.add_column(col, justify="left" if col == "preset" else "right")
    for r in rows:
        table.add_row(*table_cells(r))
    Console(width=160).print(table)


OUTPUT_FLAGS = ("--json", "--markdown")


def shown_command(script: str, argv: list[str]) -> str:
    """The command line that measured a table, without where its own files went (``--json``, ``--markdown``)."""
    shown = [a for i, a in enumerate(argv) if a not in OUTPUT_FLAGS and (i == 0 or argv[i - 1] not in OUTPUT_FLAGS)]
    return f"python benchmarks/{script} " + " ".join(shown)


def write_markdown(path: Path, rows: list[dict[str, Any]], machine: dict[str, Any], argv: list[str]) -> None:
    """The table as markdown, with its title and the command that measured it (for docs/)."""
    command = shown_command("throughput.py", argv)
    path.write_text(f"{table_title(machine)}\n\n`{command}`\n\n"
                    f"{markdown_table(COLUMNS, [table_cells(r) for r in rows])}\n")


def add_run_arguments(ap: argparse.ArgumentParser) -> None:
    """The options throughput.py and step_overhead.py share: the data, the device, outputs, config overrides."""
    ap.add_argument("--data-root", type=Path, default=REPO.parent / "shared" / "datasets")
    ap.add_argument("--synthetic", type=int, default=0, metavar="N",
                    help="train on synthetic images (N per training split, written to a temp dir in the real "
                         "layouts) instead of --data-root: for machines without the datasets")
    ap.add_argument("--device", choices=("cpu", "cuda"), default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--cache-dir", type=Path, default=REPO / "data" / "cache")
    ap.add_argument("--json", type=Path, default=None, help="write the rows here")
    ap.add_argument("--markdown", type=Path, default=None, help="write the table as markdown here")
    ap.add_argument("--overrides", nargs="*", default=[],
                    help="extra config overrides for every run, e.g. trainer.precision=32-true "
                         "(the hand-written loop takes its net, optimizer and precision from the same config)")


def use_synthetic_data(args: argparse.Namespace, work: Path) -> str:
    """With ``--synthetic N``: write every notebook dataset in its real layout under ``work`` and point ``args`` at it.
    Returns the data's description for the table's title."""
    if not args.synthetic:
        return "real"
    args.data_root = write_notebook_datasets(work / "data", n_train=args.synthetic)
    args.cache_dir = work / "cache"
    # synthetic classes are smaller than the real ones that data.mapping.per_class undersamples to
    args.overrides = [*args.overrides, "data.mapping.per_class=null"]
    return f"synthetic ({args.synthetic} training images per dataset)"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--presets", nargs="+", default=PRESETS, choices=PRESETS)
    ap.add_argument("--steps", type=int, default=30, help="timed training steps per measurement")
    ap.add_argument("--warmup", type=int, default=5, help="untimed steps before them")
    ap.add_argument("--repeats", type=int, default=3, help="interleaved rounds; medians are reported")
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS,
                    help="hand-written loop variants; the best is the 'plain' column")
    ap.add_argument("--keras-python", type=Path, default=REPO / ".venv-keras" / "bin" / "python")
    add_run_arguments(ap)
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    args = parse_args(argv)
    sys.path.insert(0, str(HERE))  # StepTimer is instantiated by Hydra as throughput.StepTimer
    machine = {"cpu": cpu_model(), "capability": torch.backends.cpu.get_cpu_capability(), "device": args.device,
               "gpu": torch.cuda.get_device_name() if args.device == "cuda" else None,
               "threads": torch.get_num_threads(), "gemm_peak_gflops": gemm_peak_gflops(device=args.device),
               "gemm_peak_gflops_bf16": gemm_peak_gflops(dtype=torch.bfloat16, device=args.device),
               "repeats": args.repeats,
               "torch": torch.__version__}
    with tempfile.TemporaryDirectory(prefix="throughput-") as tmp:
        machine["data"] = use_synthetic_data(args, Path(tmp))
        rows = measure(args, Path(tmp), {"fp32": machine["gemm_peak_gflops"], "bf16": machine["gemm_peak_gflops_bf16"]})
    for row in rows:
        row["machine"] = machine
    print_table(rows, machine)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    if args.markdown:
        write_markdown(args.markdown, rows, machine, sys.argv[1:] if argv is None else argv)
    return rows


if __name__ == "__main__":
    main()
