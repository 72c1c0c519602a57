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

import logging
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import DictConfig, OmegaConf

from lit_vision import reporting
from lit_vision.boosting import MODEL_FILE, embeddings, make_classifier, resolve_device, save_booster
from lit_vision.errors import ConfigError
from lit_vision.runner import hydra_command
from lit_vision.runs import run_dir_of_checkpoint, run_name
from lit_vision.training.builders import build_datamodule
from lit_vision.training.checkpoints import load_classifier

log = logging.getLogger("lit_vision.xgb")


def run(cfg: DictConfig) -> dict[str, Any]:
    """Embed train/val/test with the checkpoint, fit XGBoost with early stopping on val, test and report."""
    out = Path(cfg.paths.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    ckpt = Path(str(cfg.ckpt_path)).expanduser().resolve()
    model = load_classifier(ckpt)
    dm = build_datamodule(cfg)
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
    record = reporting.build_record({name: (probs[name], labels[name]) for name in probs}, dm.class_names, extra={
        "model": "xgboost", "source_checkpoint": str(ckpt), "embedding_dim": int(feats["train"].shape[1]),
        "best_iteration": int(getattr(clf, "best_iteration", clf.n_estimators)), "device": device,
        "xgb_params": {k: v for k, v in clf.get_params().items() if v is not None and not callable(v)},
        "data": dm.describe()})
    save_booster(out, clf, {"ckpt_path": str(ckpt), "class_names": dm.class_names, "model_file": MODEL_FILE})
    # the source network scored on the same splits (its own classifier on the same embeddings), side by side
    source = reporting.build_record({n: (both[n][1], labels[n]) for n in probs}, dm.class_names, extra={
        "model": model.net_name, "checkpoint": str(ckpt), "data": dm.describe()})
    if "test" in probs:
        reporting.write_report(out / "source_model", source, both["test"][1], labels["test"], dm.class_names,
                             dm.test_set.sources, title=f"{dm.name}: source network {ckpt.name}")
        reporting.write_report(out, record, probs["test"], labels["test"], dm.class_names, dm.test_set.sources,
                             title=f"{dm.name}: XGBoost on {run_name(run_dir_of_checkpoint(ckpt))} embeddings")
    else:
        reporting.write_json(out / "metrics.json", record)
    log.info("artifacts written to %s", out)
    return record


main = hydra_command("xgb", run)


if __name__ == "__main__":
    main()
