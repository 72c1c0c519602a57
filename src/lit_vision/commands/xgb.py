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

from lit_vision.checks import non_negative_int, non_negative_number, positive_int, positive_number
from lit_vision.commands.runner import hydra_command
from lit_vision.data.streaming import require_in_memory
from lit_vision.errors import ConfigError
from lit_vision.models.boosting import MODEL_FILE, embeddings, make_classifier, resolve_device, save_booster
from lit_vision.runs import reporting
from lit_vision.runs.paths import run_dir_of_checkpoint, run_name
from lit_vision.training.builders import build_datamodule
from lit_vision.training.checkpoints import load_classifier

log = logging.getLogger("lit_vision.xgb")


def embed_splits(model: Any, dm: Any, batch_size: int,
                 device: str) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """``{split: (embeddings, the source net's own probabilities, labels)}`` for train, val and test."""
    splits = {"train": dm.train_set, "val": dm.val_set, "test": dm.test_set}
    out = {}
    for name, arrays in splits.items():
        if arrays is not None:
            feats, probs = embeddings(model, arrays.images, batch_size, device, with_probs=True)
            out[name] = (feats, probs, np.asarray(arrays.labels))
    log.info("embeddings: %s", {k: v[0].shape for k, v in out.items()})
    return out


def write_reports(out: Path, record: dict[str, Any], source: dict[str, Any], probs: dict[str, np.ndarray],
                  data: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]], dm: Any, ckpt: Path) -> None:
    """The booster's report in ``out`` and the source network's, on the same splits, in ``out/source_model``."""
    if "test" not in probs:
        reporting.write_metrics(out, record)
        return
    _, source_probs, labels = data["test"]
    reporting.write_report(out / "source_model", source, source_probs, labels, dm.class_names, dm.test_set.sources,
                           title=f"{dm.name}: source network {ckpt.name}")
    reporting.write_report(out, record, probs["test"], labels, dm.class_names, dm.test_set.sources,
                           title=f"{dm.name}: XGBoost on {run_name(run_dir_of_checkpoint(ckpt))} embeddings")


def check_options(cfg: DictConfig) -> None:
    """``embed_batch_size`` and the ``xgb.*`` values XGBoost would refuse only when fitting (after the embedding)."""
    positive_int(cfg.embed_batch_size, "embed_batch_size")
    params = OmegaConf.to_container(cfg.xgb, resolve=True)
    for key, check in (("n_estimators", positive_int), ("max_depth", non_negative_int),
                       ("learning_rate", positive_number), ("gamma", non_negative_number),
                       ("early_stopping_rounds", positive_int), ("n_jobs", positive_int)):
        if params.get(key) is not None:
            check(params[key], f"xgb.{key}")
    for key in ("subsample", "colsample_bytree"):
        value = params.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                                  or not 0.0 < value <= 1.0):
            raise ConfigError(f"xgb.{key}={value!r} must be a share in (0, 1], e.g. xgb.{key}=0.8")


def run(cfg: DictConfig) -> dict[str, Any]:
    """Embed train/val/test with the checkpoint, fit XGBoost with early stopping on val, test and report."""
    out = Path(cfg.paths.output_dir)
    ckpt = Path(str(cfg.ckpt_path)).expanduser().resolve()
    model = load_classifier(ckpt)
    require_in_memory(cfg.data, "xgb")
    dm = build_datamodule(cfg)
    if list(model.class_names) != dm.class_names:
        raise ConfigError(f"checkpoint {ckpt} was trained on classes {model.class_names} but data={dm.name} has "
                          f"{dm.class_names}; pass the data config the checkpoint was trained with (data=...)")
    device = resolve_device(str(OmegaConf.select(cfg, "trainer.accelerator", default="auto")))
    data = embed_splits(model, dm, int(cfg.embed_batch_size), device)
    (x_train, _, y_train), (x_val, _, y_val) = data["train"], data["val"]
    clf = make_classifier(OmegaConf.to_container(cfg.xgb, resolve=True), dm.num_classes, device, int(cfg.seed))
    clf.fit(x_train, y_train, eval_set=[(x_train, y_train), (x_val, y_val)], verbose=False)
    probs = {name: clf.predict_proba(data[name][0]) for name in ("val", "test") if name in data}
    record = reporting.build_record({n: (probs[n], data[n][2]) for n in probs}, dm.class_names, extra={
        "model": "xgboost", "source_checkpoint": str(ckpt), "embedding_dim": int(x_train.shape[1]),
        "best_iteration": int(getattr(clf, "best_iteration", clf.n_estimators)), "device": device,
        "xgb_params": {k: v for k, v in clf.get_params().items() if v is not None and not callable(v)},
        "data": dm.describe()})
    source = reporting.build_record({n: (data[n][1], data[n][2]) for n in probs}, dm.class_names, extra={
        "model": model.net_name, "checkpoint": str(ckpt), "data": dm.describe()})
    save_booster(out, clf, {"ckpt_path": str(ckpt), "class_names": dm.class_names, "model_file": MODEL_FILE})
    write_reports(out, record, source, probs, data, dm, ckpt)
    log.info("artifacts written to %s", out)
    return record


main = hydra_command("xgb", run, check_options)


if __name__ == "__main__":
    main()
