"""Turn composed configs into objects: data module, classifier, callbacks, loggers, trainer."""

from __future__ import annotations

import logging
from typing import Any

import lightning as L
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from lit_vision.classifier import ImageClassifier, num_outputs_for
from lit_vision.data.datamodule import VisionDataModule

log = logging.getLogger(__name__)


def build_datamodule(cfg: DictConfig) -> VisionDataModule:
    return instantiate(cfg.data, _convert_="all")


def input_spec(model_cfg: dict[str, Any], dm: VisionDataModule) -> dict[str, Any]:
    """Channels, size and normalisation the net expects; saved in the checkpoint for prediction."""
    normalize = model_cfg.get("normalize", "dataset")
    channels = dm.channels
    if normalize == "dataset":
        mean, std = dm.pixel_stats()
    elif normalize in (None, "none"):
        mean, std = [0.0] * channels, [1.0] * channels
    elif isinstance(normalize, dict):
        mean, std = list(normalize["mean"]), list(normalize["std"])
    else:
        raise ValueError(f"model.normalize={normalize!r}: use dataset, none or {{mean: [...], std: [...]}}")
    size = model_cfg.get("input_size") or dm.image_size
    size = [int(size), int(size)] if isinstance(size, int) else [int(s) for s in size]
    return {"channels": channels, "image_size": size, "mean": [float(m) for m in mean],
            "std": [float(s) for s in std]}


def build_classifier(model_cfg: DictConfig, dm: VisionDataModule) -> ImageClassifier:
    cfg: dict[str, Any] = OmegaConf.to_container(model_cfg, resolve=True)  # plain values only
    spec = input_spec(cfg, dm)
    net = dict(cfg["net"])
    net.update(in_chans=spec["channels"], input_size=spec["image_size"],
               num_outputs=num_outputs_for(dm.num_classes, cfg.get("loss", "ce")))
    return ImageClassifier(net=net, class_names=dm.class_names, input_spec=spec, loss=cfg.get("loss", "ce"),
                           optimizer=cfg.get("optimizer"), scheduler=cfg.get("scheduler"),
                           label_smoothing=float(cfg.get("label_smoothing", 0.0)),
                           class_weights=dm.class_weights(), compile=bool(cfg.get("compile", False)))


def instantiate_group(group: DictConfig | None) -> list[Any]:
    """Instantiate every entry of a ``callbacks``/``logger`` group that has a ``_target_``."""
    if not group:
        return []
    return [instantiate(entry) for entry in group.values() if isinstance(entry, DictConfig) and "_target_" in entry]


def build_trainer(cfg: DictConfig, **overrides: Any) -> L.Trainer:
    callbacks = instantiate_group(cfg.get("callbacks"))
    loggers = instantiate_group(cfg.get("logger"))
    return instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False, **overrides)
