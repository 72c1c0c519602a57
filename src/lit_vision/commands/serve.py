"""``python -m lit_vision.serve <run dir | .ckpt | .onnx> [--host 127.0.0.1] [--port 8000]``: an HTTP service.

``GET /`` a page to drop a photo on, ``GET /health``, ``GET /metadata`` (classes, input size, TTA, threshold,
model), ``POST /predict`` with one or more ``file`` fields (multipart) → per file: class probabilities, the
predicted class and the decision at the operating point's threshold, or that file's error. An ``.onnx`` export
is served with onnxruntime only: ``pip install --no-deps .`` plus the ``serve`` extra's packages is a torch-free
install (docs/deploy.md).
Either backend is the run's evaluation path (test-time augmentation included, decisions at the stored operating
point). A model that cannot be loaded is one ``error:`` line naming the file and the fix, exit code 1; a bad
``--host`` or ``--port`` is one line naming it, exit code 2, before the model is loaded.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

from lit_vision.commands.arguments import ArgumentParser, host, port, seconds

#: the exit codes of docs/usage.md, without importing the Hydra runner (a torch-free serving install has no Hydra):
#: 2 for a usage or config mistake (argparse's own errors too), 1 for anything else (a missing or damaged file)
EXIT_CONFIG, EXIT_OTHER = 2, 1


def load_or_exit(spec: str) -> Any:
    """The model ``spec`` names, or one ``error:`` line naming the file and the fix, and the exit code."""
    from lit_vision.deploy.loader import load_model
    from lit_vision.errors import ConfigError, LitVisionError

    try:
        return load_model(spec, arg="MODEL")
    except LitVisionError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(EXIT_CONFIG if isinstance(exc, ConfigError) else EXIT_OTHER) from None


def main(argv: Sequence[str] | None = None) -> None:
    from lit_vision.deploy.http_protocol import REQUEST_TIMEOUT_S

    ap = ArgumentParser(prog="python -m lit_vision.serve", description=__doc__.split("\n\n")[0])
    ap.add_argument("model", metavar="MODEL",
                    help="an exported .onnx (onnxruntime), or a training run dir / .ckpt / lit_vision.xgb run dir "
                         "(PyTorch)")
    ap.add_argument("--host", type=host, default="127.0.0.1",
                    help="address to listen on (default 127.0.0.1; 0.0.0.0 for every interface)")
    ap.add_argument("--port", type=port, default=8000, help="port, 1 to 65535 (default 8000)")
    ap.add_argument("--request-timeout", type=seconds, default=REQUEST_TIMEOUT_S, metavar="SECONDS",
                    help="answer 408 and close a request that is incomplete with nothing more arriving for this "
                         f"long (default {REQUEST_TIMEOUT_S:g})")
    args = ap.parse_args(sys.argv[1:] if argv is None else argv)
    model = load_or_exit(args.model)

    import uvicorn

    from lit_vision.deploy.server import uvicorn_config

    print(f"serving {model.name} ({model.backend}; classes {model.class_names}) on http://{args.host}:{args.port}/",
          flush=True)
    uvicorn.Server(uvicorn_config(model, args.host, args.port, args.request_timeout)).run()


if __name__ == "__main__":
    main()
