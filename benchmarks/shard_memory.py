"""Peak memory of a training run from shards, for two sizes of shard set: does it grow with the data?

``python benchmarks/shard_memory.py --shards <shard dir> --sizes-gb 0.5 4 --batches 150 [--json FILE] [--smoke]``

From one prepared shard directory it builds larger ones without copying: every chunk file hard-linked under new
names as often as needed to reach each size (the index, ``sources.txt`` and ``labels.npy`` repeated to match), so
the sets differ only in size. It then trains the same short run on each (``python -m lit_vision.train data=shards``,
``--batches`` training steps through every worker) and samples, every 0.1 s, the resident memory of the training
process (``/proc/<pid>/status`` VmRSS) and of the process with its DataLoader workers (the proportional set size,
``/proc/<pid>/smaps_rollup`` Pss, summed over the tree: a page the forked workers share with the main process is
counted once, split among them, where summing their RSS would count it in every process). It prints one table:
shard set size, images, the peaks, and the ratio of the two sets' peaks.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from lit_vision.data import shards as shard_format  # noqa: E402


def replicate(source: Path, out: Path, target_bytes: int) -> int:
    """``out``: ``source``'s shards with every split's chunks hard-linked enough times to hold ``target_bytes`` of
    training chunks (val and test kept as they are); returns the training chunk bytes."""
    manifest = json.loads((source / shard_format.MANIFEST).read_text())
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    for split in manifest["splits"]:
        src, dst = source / split, out / split
        index = json.loads((src / shard_format.INDEX).read_text())
        size = sum(int(c["chunk_bytes"]) for c in index["chunks"])
        copies = max(1, round(target_bytes / size)) if split == "train" else 1
        dst.mkdir()
        chunks = []
        for copy in range(copies):
            for chunk in index["chunks"]:
                name = f"copy{copy}-{chunk['filename']}"
                os.link(src / chunk["filename"], dst / name)
                chunks.append({**chunk, "filename": name})
        (dst / shard_format.INDEX).write_text(json.dumps({"chunks": chunks, "config": index["config"]}))
        (dst / shard_format.SOURCES_FILE).write_text((src / shard_format.SOURCES_FILE).read_text() * copies)
        np.save(dst / shard_format.LABELS_FILE, np.tile(np.load(src / shard_format.LABELS_FILE), copies))
        counts = manifest["splits"][split]
        counts = {"count": counts["count"] * copies,
                  "class_counts": {k: v * copies for k, v in counts["class_counts"].items()}}
        manifest["splits"][split] = counts
    (out / shard_format.MANIFEST).write_text(json.dumps(manifest))
    train = json.loads((out / "train" / shard_format.INDEX).read_text())
    return sum(int(c["chunk_bytes"]) for c in train["chunks"])


def tree_rss(pid: int) -> tuple[int, int]:
    """(VmRSS of ``pid``, Pss summed over ``pid`` and its descendants), in bytes."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    total, main, todo = 0, 0, [pid]
    while todo:
        current = todo.pop()
        todo += children.get(current, [])
        total += _kb(current, "smaps_rollup", "Pss:")
        main = _kb(current, "status", "VmRSS:") if current == pid else main
    return main, total


def _kb(pid: int, file: str, field: str) -> int:
    """A ``<field> <n> kB`` line of ``/proc/<pid>/<file>``, in bytes (0 once the process is gone)."""
    try:
        for line in Path(f"/proc/{pid}/{file}").read_text().splitlines():
            if line.startswith(field):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def train_peak(shards: Path, run_dir: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Run the short training on ``shards``; return its peaks and wall time."""
    cmd = [sys.executable, "-m", "lit_vision.train", "data=shards", f"data.root={shards}",
           f"data.image_size={args.image_size}", f"data.batch_size={args.batch_size}",
           f"data.num_workers={args.workers}", f"model={args.model}", "accelerator=cpu", "trainer.max_epochs=1",
           f"trainer.limit_train_batches={args.batches}", "trainer.limit_val_batches=2", "test=false",
           "validate_best=false", "report.plots=false", "~callbacks.progress_bar", f"hydra.run.dir={run_dir}"]
    started = time.monotonic()
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "CUDA_VISIBLE_DEVICES": ""})
    peak_main = peak_tree = 0
    while proc.poll() is None:
        main, tree = tree_rss(proc.pid)
        peak_main, peak_tree = max(peak_main, main), max(peak_tree, tree)
        time.sleep(0.1)
    if proc.returncode != 0:
        raise SystemExit(f"training on {shards} failed:\n{proc.stderr.read()[-3000:] if proc.stderr else ''}")
    return {"peak_rss_main": peak_main, "peak_pss_tree": peak_tree, "seconds": time.monotonic() - started}


def make_smoke_shards(work: Path) -> Path:
    from lit_vision.data.image_folder import split_dirs
    from lit_vision.data.preparation import PrepareSettings, prepare_shards
    from lit_vision.data.synthetic import write_image_folder

    write_image_folder(work / "photos" / "train", ["a", "b"], 40, size=48, ext="jpg")
    settings = PrepareSettings(short_side=48, quality=90, channels=3, skip_corrupt=False, val_fraction=0.1,
                               use_source_val=True, seed=0)
    return prepare_shards(split_dirs(work / "photos"), work / "shards", settings, 1, "smoke").root


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--shards", type=Path, help="a prepared shard directory (python -m lit_vision.prepare)")
    ap.add_argument("--sizes-gb", type=float, nargs="+", default=[0.5, 4.0], help="training chunk bytes of each set")
    ap.add_argument("--batches", type=int, default=150, help="training steps of each run")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--image-size", type=int, default=64)
    ap.add_argument("--workers", type=int, default=2, help="DataLoader worker processes")
    ap.add_argument("--model", default="cnn")
    ap.add_argument("--work", type=Path, help="where the replicated sets go (default: a temporary directory beside "
                    "--shards, so hard links work)")
    ap.add_argument("--json", type=Path, help="also write the rows here")
    ap.add_argument("--smoke", action="store_true", help="tiny shards, sizes of 1 and 4 MB, 4 batches (for tests)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(dir=args.work or (args.shards.parent if args.shards else None)) as tmp:
        work = Path(tmp)
        if args.smoke:
            args.shards, args.sizes_gb, args.batches, args.batch_size = make_smoke_shards(work), [0.001, 0.004], 4, 8
            args.image_size, args.workers, args.model = 16, 1, "dense"
        if args.shards is None:
            ap.error("--shards is required (or --smoke)")
        rows = []
        for size in args.sizes_gb:
            shards = work / f"set-{size}gb"
            chunk_bytes = replicate(args.shards, shards, int(size * 2**30))
            images = json.loads((shards / shard_format.MANIFEST).read_text())["splits"]["train"]["count"]
            rows.append({"shard_gb": chunk_bytes / 2**30, "train_images": images,
                         **train_peak(shards, work / f"run-{size}", args)})
            shutil.rmtree(shards)
    report(rows, args)


def report(rows: list[dict[str, Any]], args: argparse.Namespace) -> None:
    table = Table(title=f"peak resident memory of a {args.batches}-step training run from shards "
                        f"({args.model}, {args.image_size} px, batch {args.batch_size}, {args.workers} workers)")
    for column in ("shard set", "train images", "peak RSS, main", "peak PSS, main + workers", "seconds"):
        table.add_column(column, justify="right")
    for row in rows:
        table.add_row(f"{row['shard_gb']:.2f} GB", f"{row['train_images']:,}", f"{row['peak_rss_main'] / 2**30:.2f} GB",
                      f"{row['peak_pss_tree'] / 2**30:.2f} GB", f"{row['seconds']:.0f}")
    console = Console()
    console.print(table)
    ratio = rows[-1]["peak_pss_tree"] / max(rows[0]["peak_pss_tree"], 1)
    console.print(f"largest / smallest set, peak PSS of main + workers: {ratio:.3f} (target: within 10%, and well "
                  f"under {rows[-1]['shard_gb']:.2f} GB)")
    console.print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs; command: "
                  f"python benchmarks/shard_memory.py {' '.join(sys.argv[1:])}")
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "ratio": ratio, "argv": sys.argv[1:]}, indent=1))


if __name__ == "__main__":
    main()
