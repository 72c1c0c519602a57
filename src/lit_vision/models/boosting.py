"""XGBoost on a trained classifier's penultimate-layer embeddings: embed, build, save and load the booster.

The booster is saved in XGBoost's own JSON format (portable, never a pickle) beside ``xgb_meta.json``, which
names the source checkpoint and the class names, so :mod:`lit_vision.deploy.inference` can rebuild the pair.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lit_vision.errors import ConfigError, LitVisionError

MODEL_FILE = "xgb_model.json"
META_FILE = "xgb_meta.json"


def resolve_device(accelerator: str) -> str:
    """XGBoost's ``device`` from the accelerator config (cpu | cuda | auto)."""
    if accelerator in ("cuda", "gpu"):
        if not torch.cuda.is_available():
            raise ConfigError("accelerator=cuda but no CUDA GPU is visible; use accelerator=cpu or accelerator=auto")
        return "cuda"
    if accelerator == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return "cpu"


@torch.no_grad()
def embeddings(model: Any, images: np.ndarray, batch_size: int = 512, device: str = "cpu",
               with_probs: bool = False) -> Any:
    """``model.embed`` over uint8 ``(N, C, H, W)`` images, in batches, as a float32 ``(N, D)`` array.

    ``with_probs`` also returns the model's own class probabilities (its classifier on the same embedding).
    """
    model = model.to(device).eval()
    feats, probs = [], []
    for start in range(0, len(images), batch_size):
        x = torch.from_numpy(np.array(images[start:start + batch_size])).to(device)
        emb = model.embed(x)
        feats.append(emb.float().flatten(1).cpu())
        if with_probs:
            probs.append(model.probabilities(model.net.classifier(emb)).cpu())
    out = torch.cat(feats).numpy()
    return (out, torch.cat(probs).numpy()) if with_probs else out


def make_classifier(params: Mapping[str, Any], num_classes: int, device: str, seed: int) -> Any:
    from xgboost import XGBClassifier

    params = {k: v for k, v in dict(params).items() if v is not None}
    params.setdefault("objective", "binary:logistic" if num_classes == 2 else "multi:softprob")
    if num_classes > 2 and params.get("eval_metric") == "error":
        params["eval_metric"] = "merror"
    return XGBClassifier(**params, device=device, random_state=seed)


def save_booster(out: Path, clf: Any, meta: Mapping[str, Any]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    clf.save_model(str(out / MODEL_FILE))
    (out / META_FILE).write_text(json.dumps(dict(meta), indent=2))


def is_booster_dir(path: Path) -> bool:
    return (Path(path) / MODEL_FILE).is_file()


def load_booster(run_dir: str | Path) -> tuple[Any, dict[str, Any]]:
    """An XGBoost run directory → (XGBClassifier, meta with ``ckpt_path`` and ``class_names``)."""
    from xgboost import XGBClassifier

    run_dir = Path(run_dir)
    if not (run_dir / MODEL_FILE).is_file() or not (run_dir / META_FILE).is_file():
        raise LitVisionError(f"{run_dir} is not a lit_vision.xgb run directory (no {MODEL_FILE} / {META_FILE})")
    clf = XGBClassifier()
    clf.load_model(str(run_dir / MODEL_FILE))
    return clf, json.loads((run_dir / META_FILE).read_text())
