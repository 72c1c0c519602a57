"""Inference images/s of an exported model: onnxruntime vs PyTorch (the checkpoint it came from, the same graph:
test-time augmentation included), per batch size.

    python benchmarks/onnx_speed.py outputs/showcase/horse_cnn_op --batches 1 64 --seconds 5

``--json FILE`` writes one row per batch size: ``{"batch", "onnxruntime", "pytorch", "ratio"}`` (images/s).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
from rich.console import Console
from rich.table import Table

from lit_vision.deploy.model import checkpoint_of
from lit_vision.deploy.onnx_export import ProbabilityGraph
from lit_vision.training.checkpoints import load_classifier


def rate(call, batch: int, seconds: float) -> float:
    """Images/s of ``call`` on repeated batches for about ``seconds`` (after a short warm-up)."""
    for _ in range(3):
        call()
    done, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        call()
        done += batch
    return done / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("run", type=Path, help="a run dir with checkpoints/ and model.onnx (python -m lit_vision.export)")
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 64])
    ap.add_argument("--seconds", type=float, default=5.0, help="timed seconds per batch size and runtime")
    ap.add_argument("--json", type=Path, default=None, help="write one row per batch size here")
    args = ap.parse_args(argv)
    model = load_classifier(checkpoint_of(args.run)).float().eval()
    graph = ProbabilityGraph(model)
    session = ort.InferenceSession(str(args.run / "model.onnx"), providers=["CPUExecutionProvider"])
    spec = model.hparams.input_spec
    table = Table(title=f"inference images/s, {torch.get_num_threads()} torch threads — {args.run}")
    for col in ("batch", "onnxruntime", "PyTorch (fp32, eager)", "ratio"):
        table.add_column(col, justify="right")
    rows = []
    for batch in args.batches:
        images = np.random.default_rng(0).integers(0, 256, (batch, int(spec["channels"]), *spec["image_size"]),
                                                   dtype=np.uint8)
        tensor = torch.from_numpy(images)
        onnx_rate = rate(lambda images=images: session.run(None, {"images": images}), batch, args.seconds)
        with torch.inference_mode():
            torch_rate = rate(lambda tensor=tensor: graph(tensor), batch, args.seconds)
        table.add_row(str(batch), f"{onnx_rate:,.0f}", f"{torch_rate:,.0f}", f"{onnx_rate / torch_rate:.2f}")
        rows.append({"batch": batch, "onnxruntime": onnx_rate, "pytorch": torch_rate,
                     "ratio": onnx_rate / torch_rate})
    Console(width=120).print(table)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    return rows


if __name__ == "__main__":
    main()
