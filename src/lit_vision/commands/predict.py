"""``python -m lit_vision.predict``: classify your own images with one or more trained models.

Examples::

    python -m lit_vision.predict -m outputs/fer_custom_cnn/runs/<time> my_photos/ selfie.jpg
    python -m lit_vision.predict -m <run>/checkpoints/best.ckpt -m outputs/fer_custom_xgb/runs/<time> \\
        'photos/**/*.jpg' --csv my_predictions.csv

``-m`` takes a neural checkpoint (``.ckpt``), a training run directory (its ``checkpoints/best.ckpt``), a
``lit_vision.xgb`` run directory or an exported ``.onnx``. Images are files, folders (searched recursively) or globs.
Every image goes through the run's evaluation path (:class:`lit_vision.deploy.model.DeployedModel`): decoded as the
model was trained (channels, size and normalisation come from the checkpoint), test-time augmentation, and a binary
run's decision at its stored operating point. With several
models of the same classes, a mean-probability and a majority-vote ensemble are added. When an image sits in a
folder named like a class (``photos/happy/1.jpg``), that class is shown as its true label. Files that cannot be
read are listed with the reason; the others are still classified.
"""

from __future__ import annotations

import argparse
import csv
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from lit_vision.commands.arguments import ArgumentParser, device, output_file, positive_int
from lit_vision.commands.runner import exit_on_user_error
from lit_vision.deploy.inference import Results, collect_images, predict_images, unique_names
from lit_vision.deploy.loader import load_model, model_path
from lit_vision.errors import LitVisionError
from lit_vision.runs.paths import default_output


def true_label(path: Path, class_names: Sequence[str] | None) -> str:
    return path.parent.name if class_names and path.parent.name in class_names else ""


def write_csv(path: Path, res: Results) -> None:
    """One row per image: true label, error, then each model's (and ensemble's) class probabilities and prediction
    (a binary run's prediction uses its operating point's threshold, ``operating_point.json``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    header = ["image", "true", "error"]
    for model, names in res.class_names_of.items():
        header += [f"{model}:p_{c}" for c in names] + [f"{model}:pred"]
    labels = res.class_names or next(iter(res.class_names_of.values()))
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        predicted = {model: res.predicted(model) for model in res.class_names_of}
        for i, img in enumerate(res.images):
            row = [str(img), true_label(img, labels), res.unreadable.get(img, "")]
            for model, names in res.class_names_of.items():
                p = res.probs[model][i]
                unread = bool(np.isnan(p).any())
                row += ["" if np.isnan(v) else f"{v:.6f}" for v in p] + ["" if unread else names[predicted[model][i]]]
            w.writerow(row)


def results_table(res: Results) -> Table:
    same = res.class_names is not None
    classes = res.class_names or next(iter(res.class_names_of.values()))
    table = Table(title="predictions (one block per image)")
    table.add_column("image")
    table.add_column("model")
    for c in classes if same else ["probabilities"]:
        table.add_column(f"p({c})" if same else c, justify="right")
    table.add_column("predicted")
    table.add_column("true")
    predicted = {model: res.predicted(model) for model in res.probs}
    for i, img in enumerate(res.images):
        if img in res.unreadable:
            continue
        truth = true_label(img, classes)
        for j, (model, probs) in enumerate(res.probs.items()):
            p, names = probs[i], res.class_names_of[model]
            pred = names[predicted[model][i]]
            cells = [f"{v:.3f}" for v in p] if same else [" ".join(f"{c}={v:.2f}" for c, v in zip(names, p))]
            mark = "" if not truth else (" ✓" if pred == truth else " ✗")
            table.add_row(img.name if j == 0 else "", model, *cells, pred + mark, truth if j == 0 else "",
                          end_section=j == len(res.probs) - 1)
    return table


def print_results(res: Results, console: Console) -> None:
    console.print(results_table(res))
    classes = res.class_names
    labelled = [i for i, img in enumerate(res.images) if true_label(img, classes) and img not in res.unreadable]
    if labelled and classes:
        truth = np.array([classes.index(true_label(res.images[i], classes)) for i in labelled])
        acc = {m: float((res.predicted(m)[labelled] == truth).mean()) for m in res.probs}
        console.print(f"accuracy on the {len(labelled)} labelled images: "
                      + ", ".join(f"{m} {a:.3f}" for m, a in acc.items()))
    if res.unreadable:
        console.print(f"[yellow]{len(res.unreadable)} file(s) could not be read and were skipped:[/yellow]")
        for path, reason in res.unreadable.items():
            console.print(f"  {path}: {reason}")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    ap = ArgumentParser(prog="python -m lit_vision.predict", description=__doc__.split("\n\n")[0],
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("images", nargs="+", help="image files, folders (recursive) or globs (quote them)")
    ap.add_argument("-m", "--model", action="append", required=True,
                    help="a .ckpt, a training run dir, a lit_vision.xgb run dir or an exported .onnx; repeat for "
                         "several models")
    ap.add_argument("--csv", type=output_file(), default=None,
                    help="where to write the table (default outputs/predict/predictions_<time>.csv)")
    ap.add_argument("--device", type=device, default="cpu", help="cpu, cuda or cuda:<index> (default cpu)")
    ap.add_argument("--batch-size", type=positive_int, default=256, help="images per forward pass (default 256)")
    return ap.parse_args(argv)


def run(argv: Sequence[str], console: Console | None = None) -> Results:
    """Classify the images ``argv`` names; print the table, write the CSV and return the results. Every argument
    is checked (every model path, the images found) before the first model is loaded."""
    args = parse_args(argv)
    console = console or Console()
    for spec in args.model:
        model_path(spec, arg="--model")
    paths, missing = collect_images(args.images)
    if not paths:
        raise LitVisionError("no image files found in " + ", ".join(args.images) + "; pass image files, folders "
                             "or quoted globs")
    predictors = [load_model(m, args.device, args.batch_size, arg="--model") for m in args.model]
    unique_names(predictors)
    res = predict_images(predictors, paths)
    for item, reason in missing:
        res.unreadable[Path(item)] = reason
    print_results(res, console)
    out = args.csv or default_output("predict", "predictions", ".csv")
    write_csv(out, res)
    console.print(f"table written to {out}")
    return res


def main(argv: Sequence[str] | None = None) -> None:
    exit_on_user_error(lambda: run(sys.argv[1:] if argv is None else argv))


if __name__ == "__main__":
    main()
