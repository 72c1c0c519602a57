"""``load_model``: a model argument (``.onnx``, run dir, ``.ckpt``, XGBoost run dir) → its
:class:`~lit_vision.deploy.model.DeployedModel`, with the backend it needs.

Torch-free for ``.onnx``: the checkpoint backend (PyTorch) is imported only for the other kinds.
"""

from __future__ import annotations

from pathlib import Path

from lit_vision.deploy.model import KINDS, DeployedModel, ModelLoadError, load_onnx


def model_path(spec: str | Path, arg: str = "") -> Path:
    """The path a model argument names, which must exist (checked before any model is loaded); ``arg`` as in
    :func:`load_model`."""
    path = Path(spec).expanduser()
    if not path.exists():
        where = f"{arg} {spec}" if arg else str(spec)
        raise ModelLoadError(f"{where}: no such file or folder; pass {KINDS}")
    return path


def load_model(spec: str | Path, device: str = "cpu", batch_size: int = 256, arg: str = "") -> DeployedModel:
    """An exported ``.onnx`` (onnxruntime), or a run dir / ``.ckpt`` / XGBoost run dir (PyTorch). ``arg`` is the
    command's name for the argument (``--model``), which every message starts with."""
    path = model_path(spec, arg)
    where = f"{arg} {spec}" if arg else str(spec)
    if path.suffix == ".onnx":
        return load_onnx(path, where, batch_size)
    try:
        from lit_vision.deploy import checkpoint_backend
    except ImportError as exc:
        raise ModelLoadError(f"{where}: a run dir or .ckpt needs PyTorch (the full install; missing "
                             f"{exc.name}); export it with python -m lit_vision.export and use the .onnx") from exc
    return checkpoint_backend.load(path, where, device, batch_size)
