"""``python -m lit_vision.predict``: classify your own images with one or more trained models.

Examples::

    python -m lit_vision.predict -m outputs/fer_custom_cnn/runs/<time> my_photos/ selfie.jpg
    python -m lit_vision.predict -m <run>/checkpoints/best.ckpt -m outputs/fer_custom_xgb/runs/<time> \\
        'photos/**/*.jpg' --csv my_predictions.csv

``-m`` takes a neural checkpoint (``.ckpt``), a training run directory (its ``checkpoints/best.ckpt``) or a
``lit_vision.xgb`` run directory. Images are files, folders (searched recursively) or globs. Every image is
preprocessed as the model was trained (channels, size and normalisation come from the checkpoint). With several
models of the same classes, a mean-probability and a majority-vote ensemble are added. When an image sits in a
folder named like a class (``photos/happy/1.jpg``), that class is shown as its true label. Files that cannot be
read are listed with the reason; the others are still classified.
"""

from __future__ import annotations

import argparse
import csv
import glob
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from rich.console import Console
from rich.table import Table

from lit_vision.checkpoints import load_classifier
from lit_vision.config import PROJECT_ROOT
from lit_vision.data.image_folder import IMAGE_EXTENSIONS, decode_image
from lit_vision.errors import LitVisionError

MEAN, MAJORITY = "ensemble:mean", "ensemble:majority"


@dataclass
class Predictor:
    """One model: its name, classes, input format and a function uint8 (N, C, H, W) → probabilities (N, K)."""

    name: str
    class_names: list[str]
    channels: int
    image_size: tuple[int, int]
    predict: Callable[[np.ndarray], np.ndarray]
    source: str = ""


def run_name(path: Path) -> str:
    """``outputs/<task>/runs/<time>`` → ``<task>``; ``outputs/<task>/multiruns/<time>/<n>`` → ``<task>#<n>``."""
    path = path.resolve()
    if path.parent.name == "runs":
        return path.parent.parent.name
    if path.parent.parent.name == "multiruns":
        return f"{path.parent.parent.parent.name}#{path.name}"
    return path.name


def _neural(ckpt: Path, device: str, batch_size: int) -> Predictor:
    model = load_classifier(ckpt, map_location=device)
    spec = model.hparams.input_spec

    @torch.no_grad()
    def predict(images: np.ndarray) -> np.ndarray:
        out = [model.probabilities(model(torch.from_numpy(images[i:i + batch_size]).to(device))).cpu()
               for i in range(0, len(images), batch_size)]
        return torch.cat(out).numpy()

    run_dir = ckpt.parent.parent if ckpt.parent.name == "checkpoints" else ckpt.parent
    return Predictor(run_name(run_dir), list(model.class_names), int(spec["channels"]),
                     tuple(int(s) for s in spec["image_size"]), predict, str(ckpt))


def _xgboost(run_dir: Path, device: str, batch_size: int) -> Predictor:
    from lit_vision.xgb import embeddings, load_booster

    clf, meta = load_booster(run_dir)
    model = load_classifier(meta["ckpt_path"], map_location=device)
    spec = model.hparams.input_spec

    def predict(images: np.ndarray) -> np.ndarray:
        return clf.predict_proba(embeddings(model, images, batch_size, device))

    return Predictor(run_name(run_dir), list(meta["class_names"]), int(spec["channels"]),
                     tuple(int(s) for s in spec["image_size"]), predict, str(run_dir))


def load_predictor(spec: str, device: str = "cpu", batch_size: int = 256) -> Predictor:
    """A ``.ckpt`` file, a training run dir or an XGBoost run dir → :class:`Predictor`."""
    from lit_vision.xgb import MODEL_FILE

    path = Path(spec).expanduser()
    if path.is_file() and path.name == MODEL_FILE:
        path = path.parent
    if path.is_dir():
        if (path / MODEL_FILE).is_file():
            return _xgboost(path, device, batch_size)
        for name in ("best.ckpt", "last.ckpt"):
            if (path / "checkpoints" / name).is_file():
                return _neural(path / "checkpoints" / name, device, batch_size)
        raise LitVisionError(f"--model {spec}: folder has neither checkpoints/best.ckpt nor {MODEL_FILE}; pass a "
                             "training run dir, an XGBoost run dir or a .ckpt file")
    if path.suffix == ".ckpt" or path.exists():
        return _neural(path, device, batch_size)
    raise LitVisionError(f"--model {spec}: no such file or folder")


def collect_images(items: Sequence[str]) -> tuple[list[Path], list[tuple[str, str]]]:
    """Files, folders (recursive, image extensions) and globs → (paths, [(item, reason) for missing items])."""
    found: list[Path] = []
    missing: list[tuple[str, str]] = []
    for item in items:
        path = Path(item).expanduser()
        if path.is_dir():
            files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS
                           and not p.name.startswith("."))
            if not files:
                missing.append((item, "folder holds no image files"))
            found += files
        elif path.is_file():
            found.append(path)
        else:
            matches = sorted(Path(m) for m in glob.glob(item, recursive=True) if Path(m).is_file())
            if not matches:
                missing.append((item, "no such file, folder or matching glob"))
            found += matches
    unique = list(dict.fromkeys(p.resolve() for p in found))
    return unique, missing


@dataclass
class Results:
    images: list[Path]
    class_names: list[str] | None
    probs: dict[str, np.ndarray] = field(default_factory=dict)  # model → (N, K), NaN rows for unread images
    unreadable: dict[Path, str] = field(default_factory=dict)


def true_label(path: Path, class_names: Sequence[str] | None) -> str:
    return path.parent.name if class_names and path.parent.name in class_names else ""


def decode_for(paths: Sequence[Path], channels: int, size: tuple[int, int],
               unreadable: dict[Path, str]) -> tuple[np.ndarray, list[int]]:
    """Decode every readable file like the data pipeline did (PIL convert + bilinear resize to the model's size)."""
    arrays, rows = [], []
    for i, path in enumerate(paths):
        if path in unreadable:
            continue
        try:
            arrays.append(decode_image(path, channels, size))
            rows.append(i)
        except Exception as exc:  # noqa: BLE001 - every reason is reported per file
            unreadable[path] = f"{type(exc).__name__}: {exc}"
    empty = np.zeros((0, channels, *size), dtype=np.uint8)
    return (np.stack(arrays) if arrays else empty), rows


def predict_images(predictors: Sequence[Predictor], paths: Sequence[Path]) -> Results:
    names = predictors[0].class_names
    shared = names if all(p.class_names == names for p in predictors) else None
    res = Results(list(paths), shared)
    decoded: dict[tuple[int, tuple[int, int]], tuple[np.ndarray, list[int]]] = {}
    for pred in predictors:
        key = (pred.channels, pred.image_size)
        if key not in decoded:
            decoded[key] = decode_for(paths, pred.channels, pred.image_size, res.unreadable)
        images, rows = decoded[key]
        probs = np.full((len(paths), len(pred.class_names)), np.nan)
        if len(rows):
            probs[rows] = pred.predict(images)
        res.probs[pred.name] = probs
    for pred in predictors:  # a file unreadable for one decoder is reported, and blanked, for all models
        bad = [i for i, p in enumerate(paths) if p in res.unreadable]
        res.probs[pred.name][bad] = np.nan
    if shared is not None and len(predictors) > 1:
        stack = np.stack([res.probs[p.name] for p in predictors])
        res.probs[MEAN] = stack.mean(axis=0)
        res.probs[MAJORITY] = majority_vote(stack)
    return res


def majority_vote(stack: np.ndarray) -> np.ndarray:
    """(M, N, K) probabilities → (N, K) vote shares; ties go to the class with the higher mean probability."""
    m, n, k = stack.shape
    votes = np.zeros((n, k))
    for probs in stack:
        ok = ~np.isnan(probs).any(axis=1)
        votes[np.flatnonzero(ok), probs[ok].argmax(axis=1)] += 1
    shares = votes / m
    shares += 1e-6 * np.nan_to_num(stack.mean(axis=0))  # tie-break only
    shares[np.isnan(stack).any(axis=(0, 2))] = np.nan
    return shares


def write_csv(path: Path, res: Results, predictors: Sequence[Predictor]) -> None:
    """One row per image: true label, then each model's (and ensemble's) class probabilities and prediction."""
    path.parent.mkdir(parents=True, exist_ok=True)
    classes = {p.name: p.class_names for p in predictors}
    if res.class_names is not None:
        classes |= {MEAN: res.class_names, MAJORITY: res.class_names}
    header = ["image", "true", "error"]
    for model, names in classes.items():
        header += [f"{model}:p_{c}" for c in names] + [f"{model}:pred"]
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        for i, img in enumerate(res.images):
            row = [str(img), true_label(img, res.class_names or predictors[0].class_names), res.unreadable.get(img, "")]
            for model, names in classes.items():
                p = res.probs[model][i]
                row += ["" if np.isnan(v) else f"{v:.6f}" for v in p] + ["" if np.isnan(p).any() else names[int(p.argmax())]]
            w.writerow(row)


def print_results(res: Results, predictors: Sequence[Predictor], console: Console) -> None:
    classes = res.class_names or predictors[0].class_names
    same = res.class_names is not None
    table = Table(title="predictions (one block per image)")
    table.add_column("image")
    table.add_column("model")
    for c in classes if same else ["probabilities"]:
        table.add_column(f"p({c})" if same else c, justify="right")
    table.add_column("predicted")
    table.add_column("true")
    for i, img in enumerate(res.images):
        if img in res.unreadable:
            continue
        truth = true_label(img, classes)
        for j, (model, probs) in enumerate(res.probs.items()):
            p = probs[i]
            names = res.class_names or next(x.class_names for x in predictors if x.name == model)
            pred = names[int(p.argmax())]
            cells = [f"{v:.3f}" for v in p] if same else [" ".join(f"{c}={v:.2f}" for c, v in zip(names, p))]
            mark = "" if not truth else (" ✓" if pred == truth else " ✗")
            table.add_row(img.name if j == 0 else "", model, *cells, pred + mark, truth if j == 0 else "",
                          end_section=j == len(res.probs) - 1)
    console.print(table)
    labelled = [i for i, img in enumerate(res.images) if true_label(img, classes) and img not in res.unreadable]
    if labelled and same:
        truth = np.array([classes.index(true_label(res.images[i], classes)) for i in labelled])
        acc = {m: float((p[labelled].argmax(axis=1) == truth).mean()) for m, p in res.probs.items()}
        console.print("accuracy on the %d labelled images: %s" % (len(labelled),
                      ", ".join(f"{m} {a:.3f}" for m, a in acc.items())))
    if res.unreadable:
        console.print(f"[yellow]{len(res.unreadable)} file(s) could not be read and were skipped:[/yellow]")
        for path, reason in res.unreadable.items():
            console.print(f"  {path}: {reason}")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m lit_vision.predict", description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("images", nargs="+", help="image files, folders (recursive) or globs (quote them)")
    ap.add_argument("-m", "--model", action="append", required=True,
                    help="a .ckpt, a training run dir or a lit_vision.xgb run dir; repeat for several models")
    ap.add_argument("--csv", type=Path, default=None,
                    help="where to write the table (default outputs/predict/predictions_<time>.csv)")
    ap.add_argument("--device", default="cpu", help="cpu or cuda")
    ap.add_argument("--batch-size", type=int, default=256)
    return ap.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> Results:
    args = parse_args(argv)
    console = Console()
    try:
        predictors = [load_predictor(m, args.device, args.batch_size) for m in args.model]
    except LitVisionError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise SystemExit(2) from exc
    seen: Counter[str] = Counter()
    for p in predictors:  # unique names when two runs share a task name
        seen[p.name] += 1
        if seen[p.name] > 1:
            p.name = f"{p.name}#{seen[p.name]}"
    paths, missing = collect_images(args.images)
    if not paths:
        console.print("[red]error:[/red] no image files found in " + ", ".join(args.images))
        raise SystemExit(2)
    res = predict_images(predictors, paths)
    for item, reason in missing:
        res.unreadable[Path(item)] = reason
    print_results(res, predictors, console)
    out = args.csv or PROJECT_ROOT / "outputs" / "predict" / f"predictions_{time.strftime('%Y-%m-%d_%H-%M-%S')}.csv"
    write_csv(out, res, predictors)
    console.print(f"table written to {out}")
    return res


if __name__ == "__main__":
    main(sys.argv[1:])
