"""``python -m lit_vision.export <run dir | .ckpt> [--format onnx] [--out FILE]``: a deployable ONNX model.

The run's evaluation path as one graph: uint8 ``(N, C, H, W)`` input at the trained size, the ``model.tta`` views
(flips, pixel shifts) and normalisation inside the graph, logits averaged over the views as evaluation averages
them, dynamic batch; class names / input spec / TTA / operating-point threshold in the metadata
(``deploy/onnx_schema.py``). The export checks itself: onnxruntime against the checkpoint's evaluation (PyTorch, TTA
included) on the run's test images, and fails (removing the file) when a probability differs by more than 1e-4.
A missing or damaged model is one ``error:`` line, exit code 1; a bad option (``--out`` not ending in ``.onnx``,
which ``predict`` and ``serve`` recognise an export by) is one line naming it, exit code 2.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from lit_vision.commands.arguments import ArgumentParser, output_file
from lit_vision.commands.runner import exit_on_user_error


def main(argv: Sequence[str] | None = None) -> None:
    ap = ArgumentParser(prog="python -m lit_vision.export", description=__doc__.split("\n\n")[0])
    ap.add_argument("model", help="a training run dir (its checkpoints/best.ckpt) or a .ckpt file")
    ap.add_argument("--format", default="onnx", choices=["onnx"], help="output format (default onnx)")
    ap.add_argument("--out", type=output_file(".onnx"), default=None,
                    help="output .onnx file (default <run dir>/model.onnx)")
    args = ap.parse_args(sys.argv[1:] if argv is None else argv)

    def work() -> dict:
        from lit_vision.deploy.onnx_export import export

        return export(args.model, args.out, args.format)

    info = exit_on_user_error(work)
    threshold = "" if info["threshold"] is None else f", threshold {info['threshold']:.4f}"
    tta = ", ".join(f"{k}={v}" for k, v in info["tta"].items() if v) or "none"
    print(f"wrote {info['path']} ({info['bytes'] / 1e6:.2f} MB; classes {info['class_names']}{threshold}; "
          f"TTA {tta}); onnxruntime vs the checkpoint "
          f"on {info['parity_images']}: max |Δ probability| {info['max_abs_diff']:.2e}")


if __name__ == "__main__":
    main()
