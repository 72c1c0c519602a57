"""``python -m lit_vision.serve <run dir | .ckpt | .onnx> [--host 127.0.0.1] [--port 8000]``: an HTTP service.

``GET /`` a page to drop a photo on, ``GET /health``, ``GET /metadata`` (classes, input size, threshold, model),
``POST /predict`` with one or more ``file`` fields (multipart) → per file: class probabilities, the predicted class
and the decision at the operating point's threshold, or that file's error. An ``.onnx`` export is served with
onnxruntime only: ``pip install --no-deps .`` plus the ``serve`` extra's packages is a torch-free install (README).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m lit_vision.serve", description=__doc__.split("\n\n")[0])
    ap.add_argument("model", help="an exported .onnx (onnxruntime), or a training run dir / .ckpt (PyTorch)")
    ap.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    ap.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    args = ap.parse_args(sys.argv[1:] if argv is None else argv)

    from lit_vision.deploy.server import ServeError, create_app, load_model

    try:
        model = load_model(args.model)
    except ServeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from exc
    import uvicorn

    print(f"serving {model.name} ({model.backend}; classes {model.class_names}) on http://{args.host}:{args.port}/")
    uvicorn.run(create_app(model), host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
