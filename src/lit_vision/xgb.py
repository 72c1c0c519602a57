"""``python -m lit_vision.xgb ckpt_path=…``: XGBoost on a trained classifier's penultimate-layer embeddings.

Examples::

    python -m lit_vision.xgb xgb_preset=fer_custom_xgb data.root=../shared/datasets/fer2013 \\
        ckpt_path=outputs/fer_custom_cnn/runs/<time>/checkpoints/best.ckpt
    python -m lit_vision.xgb ckpt_path=<run>/checkpoints/best.ckpt data=cifar_horse xgb.max_depth=3

The run directory gets ``metrics.json``, ``predictions.csv`` (test), ``xgb_model.json`` (the booster, XGBoost's
own JSON format), ``xgb_meta.json`` (the source checkpoint and class names, for ``lit_vision.predict``) and
``source_model/`` (the source network's own metrics and predictions on the same splits, for side-by-side tables).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Mapping

import hydra
import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from lit_vision import scoring
from lit_vision.builders import build_datamodule
from lit_vision.checkpoints import load_classifier
from lit_vision.cli import run_entry_point
from lit_vision.config import CONF_DIR
from lit_vision.errors import ConfigError, LitVisionError

log = logging.getLogger("lit_vision.xgb")

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
    clf.save_model(str(out / MODEL_FILE))  # XGBoost JSON: portable, no pickle
    (out / META_FILE).write_text(json.dumps(dict(meta), indent=2))


def load_booster(run_dir: str | Path) -> tuple[Any, dict[str, Any]]:
    """An XGBoost run directory → (XGBClassifier, meta with ``ckpt_path`` and ``class_names``)."""
    from xgboost import XGBClassifier

    run_dir = Path(run_dir)
    if not (run_dir / MODEL_FILE).is_file() or not (run_dir / META_FILE).is_file():
        raise LitVisionError(f"{run_dir} is not a lit_vision.xgb run directory (no {MODEL_FILE} / {META_FILE})")
    clf = XGBClassifier()
    clf.load_model(str(run_dir / MODEL_FILE))
    return clf, json.loads((run_dir / META_FILE).read_text())


def run(cfg: DictConfig) -> dict[str, Any]:
    """Embed train/val/test with the checkpoint, fit XGBoost with early stopping on val, test and report."""
    from lit_vision.predict import run_name

    out = Path(cfg.paths.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    ckpt = Path(str(cfg.ckpt_path)).expanduser().resolve()
    model = load_classifier(ckpt)
    dm = build_datamodule(cfg)
    dm.prepare_data()
    dm.setup("fit")
    if list(model.class_names) != dm.class_names:
        raise ConfigError(f"checkpoint {ckpt} was trained on classes {model.class_names} but data={dm.name} has "
                          f"{dm.class_names}; pass the data config the checkpoint was trained with (data=...)")
    device = resolve_device(str(OmegaConf.select(cfg, "trainer.accelerator", default="auto")))
    splits = {"train": dm.train_set, "val": dm.val_set, "test": dm.test_set}
    both = {name: embeddings(model, arrays.images, int(cfg.embed_batch_size), device, with_probs=True)
            for name, arrays in splits.items() if arrays is not None}
    feats = {name: f for name, (f, _) in both.items()}
    labels = {name: np.asarray(arrays.labels) for name, arrays in splits.items() if arrays is not None}
    log.info("embeddings: %s", {k: v.shape for k, v in feats.items()})
    clf = make_classifier(OmegaConf.to_container(cfg.xgb, resolve=True), dm.num_classes, device, int(cfg.seed))
    clf.fit(feats["train"], labels["train"], eval_set=[(feats["train"], labels["train"]), (feats["val"], labels["val"])],
            verbose=False)
    probs = {name: clf.predict_proba(feats[name]) for name in ("val", "test") if name in feats}
    record = scoring.build_record({name: (probs[name], labels[name]) for name in probs}, dm.class_names, extra={
        "model": "xgboost", "source_checkpoint": str(ckpt), "embedding_dim": int(feats["train"].shape[1]),
        "best_iteration": int(getattr(clf, "best_iteration", clf.n_estimators)), "device": device,
        "xgb_params": {k: v for k, v in clf.get_params().items() if v is not None and not callable(v)},
        "data": dm.describe()})
    save_booster(out, clf, {"ckpt_path": str(ckpt), "class_names": dm.class_names, "model_file": MODEL_FILE})
    # the source network scored on the same splits (its own classifier on the same embeddings), side by side
    source = scoring.build_record({n: (both[n][1], labels[n]) for n in probs}, dm.class_names, extra={
        "model": model.hparams.net.get("_target_", ""), "checkpoint": str(ckpt), "data": dm.describe()})
    if "test" in probs:
        scoring.write_report(out / "source_model", source, both["test"][1], labels["test"], dm.class_names,
                             dm.test_set.sources, title=f"{dm.name}: source network {ckpt.name}")
        scoring.write_report(out, record, probs["test"], labels["test"], dm.class_names, dm.test_set.sources,
                             title=f"{dm.name}: XGBoost on {run_name(ckpt.parent.parent)} embeddings")
    else:
        scoring.reporting.write_json(out / "metrics.json", record)
    log.info("artifacts written to %s", out)
    return record


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="xgb")
def main(cfg: DictConfig) -> float | None:
    return run_entry_point(run, cfg)


if __name__ == "__main__":
    main()
