"""Seconds from process start to the first training step of ``python -m lit_vision.train``, per data layout.

    python benchmarks/startup.py --jpeg-root ../shared/datasets/cifar10-jpeg --repeats 3

Measures the real command in a fresh process (imports, config, data loading, model build, Trainer set-up) up to
the first ``on_train_batch_start``, for CIFAR-10 read from

* ``folders``: the JPEG image folders (``--jpeg-root``), decoded once into the ``.npy`` cache (the cache is
  warmed by a first, untimed run, so the timed runs show the steady state a user sees);
* ``batches``: torchvision's ``cifar-10-batches-py`` pickles (no cache: parsed on every run), exported once
  from the JPEG folders into ``--work`` when absent.

Prints a table (median and all repeats) and writes ``--json`` when given.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import lightning as L

HERE = Path(__file__).resolve().parent
CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


class FirstStepTimer(L.Callback):
    """Writes the wall-clock time of the first training batch to ``$LIT_VISION_FIRST_STEP_FILE`` and stops."""

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):  # noqa: ANN001
        if batch_idx == 0:
            Path(os.environ["LIT_VISION_FIRST_STEP_FILE"]).write_text(repr(time.time()))
            trainer.should_stop = True


def export_batches(jpeg_root: Path, out: Path) -> Path:
    """Write ``out/cifar-10-batches-py`` (torchvision's pickle layout) from ``train/<class>`` and ``test/<class>``."""
    import numpy as np
    from PIL import Image

    folder = out / "cifar-10-batches-py"
    if (folder / "test_batch").is_file():
        return out
    folder.mkdir(parents=True, exist_ok=True)

    def read(split: str) -> tuple[np.ndarray, list[int]]:
        images, labels = [], []
        for label, name in enumerate(CLASSES):
            for path in sorted((jpeg_root / split / name).iterdir()):
                with Image.open(path) as img:
                    images.append(np.asarray(img.convert("RGB"), dtype=np.uint8).transpose(2, 0, 1).reshape(-1))
                labels.append(label)
        return np.stack(images), labels

    train, train_labels = read("train")
    order = np.random.default_rng(0).permutation(len(train_labels))
    for i, part in enumerate(np.array_split(order, 5), start=1):
        with open(folder / f"data_batch_{i}", "wb") as f:
            pickle.dump({"data": train[part], "labels": [train_labels[j] for j in part]}, f)
    test, test_labels = read("test")
    with open(folder / "test_batch", "wb") as f:
        pickle.dump({"data": test, "labels": test_labels}, f)
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({"label_names": CLASSES}, f)
    return out


def time_to_first_step(root: Path, cache_dir: Path, run_dir: Path) -> float:
    with tempfile.NamedTemporaryFile(suffix=".txt", delete=False) as f:
        marker = Path(f.name)
    env = dict(os.environ, LIT_VISION_FIRST_STEP_FILE=str(marker),
               PYTHONPATH=os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]))
    cmd = [sys.executable, "-m", "lit_vision.train", "data=cifar10", f"data.root={root}", "model=cnn",
           "accelerator=cpu", "test=false", "validate_best=false", "report.plots=false",
           "trainer.num_sanity_val_steps=0", f"paths.cache_dir={cache_dir}", f"hydra.run.dir={run_dir}",
           "+callbacks.first_step._target_=startup.FirstStepTimer"]
    start = time.time()
    subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    first = float(marker.read_text())
    marker.unlink()
    return first - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--jpeg-root", type=Path, required=True)
    ap.add_argument("--work", type=Path, default=Path("data/startup-bench"))
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    batches_root = export_batches(args.jpeg_root.resolve(), args.work.resolve())
    cache = args.work.resolve() / "cache"
    layouts = {"folders (JPEG, cached)": args.jpeg_root.resolve(), "batches (torchvision pickles)": batches_root}
    time_to_first_step(args.jpeg_root.resolve(), cache, args.work.resolve() / "run-warm")  # fills the cache
    results: dict[str, list[float]] = {name: [] for name in layouts}
    for r in range(args.repeats):  # interleaved, so background load hits both alike
        for name, root in layouts.items():
            results[name].append(time_to_first_step(root, cache, args.work.resolve() / f"run-{r}"))
    print(f"{'layout':32s} {'median s':>9s}  repeats")
    for name, values in results.items():
        print(f"{name:32s} {statistics.median(values):9.2f}  {', '.join(f'{v:.2f}' for v in values)}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
