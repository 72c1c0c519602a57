"""``python -m lit_vision.baseline``: notebook 000's classical baselines, PCA(n) + RandomForest / QDA.

Examples::

    python -m lit_vision.baseline baseline_preset=horse_pca_rf data.root=../shared/datasets/cifar10-jpeg
    python -m lit_vision.baseline baseline_preset=horse_pca_qda data.root=../shared/datasets/cifar10-jpeg
    python -m lit_vision.baseline data=digits baseline.classifier=qda baseline.pca_components=20

Pixels are flattened and min-max scaled (fitted on train), projected on the first n principal components of
train, and classified; val and test are scored with the same metrics and report files as a neural run.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import DictConfig, OmegaConf

from lit_vision.checks import positive_int
from lit_vision.commands.runner import hydra_command
from lit_vision.data.streaming import require_in_memory
from lit_vision.errors import ConfigError
from lit_vision.runs import reporting
from lit_vision.training.builders import build_datamodule

log = logging.getLogger("lit_vision.baseline")

CLASSIFIERS = ("rf", "qda")


def make_pipeline(classifier: str, pca_components: int | None, params: Mapping[str, Any], seed: int) -> Any:
    """MinMaxScaler → PCA(n) → RandomForest / QDA as one scikit-learn pipeline."""
    from sklearn.decomposition import PCA
    from sklearn.discriminant_analysis import QuadraticDiscriminantAnalysis
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.pipeline import make_pipeline as sk_pipeline
    from sklearn.preprocessing import MinMaxScaler

    if classifier not in CLASSIFIERS:
        raise ConfigError(f"baseline.classifier={classifier!r} is not one of {list(CLASSIFIERS)}")
    if pca_components is not None and (not isinstance(pca_components, int) or pca_components < 1):
        raise ConfigError(f"baseline.pca_components={pca_components!r} must be a positive integer or null")
    params = dict(params)
    if classifier == "rf":
        params.setdefault("random_state", seed)
    try:
        clf = (RandomForestClassifier if classifier == "rf" else QuadraticDiscriminantAnalysis)(**params)
        clf._validate_params()  # scikit-learn's own check of the values, which fit would run
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"baseline.params={dict(params)}: {str(exc).splitlines()[0]}; fix or remove the key "
                          f"(see scikit-learn's {classifier} options)") from exc
    steps = [MinMaxScaler()]
    if pca_components:
        steps.append(PCA(n_components=pca_components, random_state=seed))
    return sk_pipeline(*steps, clf)


def check_options(cfg: DictConfig) -> None:
    """``baseline.*`` before any data is read: the pipeline is built (not fitted) from the options."""
    opts = OmegaConf.to_container(cfg.baseline, resolve=True)
    if opts.get("max_train") is not None:
        positive_int(opts["max_train"], "baseline.max_train")
    make_pipeline(str(opts["classifier"]), opts["pca_components"], opts["params"] or {}, int(cfg.seed))


def flatten(images: np.ndarray) -> np.ndarray:
    return np.asarray(images, dtype=np.float32).reshape(len(images), -1) / 255.0


def run(cfg: DictConfig) -> dict[str, Any]:
    out = Path(cfg.paths.output_dir)
    require_in_memory(cfg.data, "baseline")
    dm = build_datamodule(cfg)
    opts = OmegaConf.to_container(cfg.baseline, resolve=True)
    train = dm.train_set
    index = np.arange(len(train))
    if opts["max_train"] and opts["max_train"] < len(train):
        index = np.sort(np.random.default_rng(int(cfg.seed)).choice(len(train), int(opts["max_train"]), replace=False))
    x_train = flatten(train.images[index])
    n = opts["pca_components"]
    if n:
        n = min(int(n), x_train.shape[0], x_train.shape[1])
    pipe = make_pipeline(str(opts["classifier"]), n, opts["params"], int(cfg.seed))
    log.info("fitting %s on %s features of %d images", pipe, x_train.shape[1], len(x_train))
    pipe.fit(x_train, train.labels[index])
    splits = {name: arrays for name, arrays in (("val", dm.val_set), ("test", dm.test_set)) if arrays is not None}
    probs = {name: _full_probs(pipe, flatten(a.images), dm.num_classes) for name, a in splits.items()}
    record = reporting.build_record({k: (probs[k], splits[k].labels) for k in probs}, dm.class_names, extra={
        "model": f"pca{n or ''}+{opts['classifier']}", "pca_components": n, "classifier": opts["classifier"],
        "train_images": int(len(index)), "data": dm.describe()})
    title = f"{dm.name}: PCA({n}) + {opts['classifier'].upper()}"
    if "test" in probs:
        reporting.write_report(out, record, probs["test"], splits["test"].labels, dm.class_names,
                             splits["test"].sources, title)
    else:
        reporting.write_metrics(out, record)
    return record


def _full_probs(pipe: Any, x: np.ndarray, num_classes: int) -> np.ndarray:
    """predict_proba with one column per class, even when a class was absent from train."""
    p = pipe.predict_proba(x)
    full = np.zeros((len(x), num_classes), dtype=np.float64)
    full[:, pipe.classes_.astype(int)] = p
    return np.nan_to_num(full, nan=1.0 / num_classes)


main = hydra_command("baseline", run, check_options)


if __name__ == "__main__":
    main()
