"""Turn composed configs into objects: data module, classifier, callbacks, loggers, trainer."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import lightning as L
from hydra.utils import instantiate
from lightning.pytorch.callbacks import LearningRateMonitor
from lightning.pytorch.loggers import Logger
from omegaconf import DictConfig, OmegaConf

from lit_vision.data.datamodule import VisionDataModule
from lit_vision.errors import ConfigError
from lit_vision.models.registry import canonical_spec, net_class
from lit_vision.models.whitening import unfitted_stems
from lit_vision.training.callbacks import quiet_known_noise
from lit_vision.training.classifier import ImageClassifier, num_outputs_for
from lit_vision.training.distributed import device_overrides
from lit_vision.training.ema import EMAWeights
from lit_vision.training.lookahead import lookahead_from_config
from lit_vision.training.requeue import DeferredRequeue

log = logging.getLogger(__name__)

# every command that builds a Trainer (train, evaluate, xgb …) imports this module: drop Lightning's known noise
quiet_known_noise()


def build_datamodule(cfg: DictConfig) -> VisionDataModule:
    """The data module, loaded and split once: the model is sized from it, and Lightning's own later
    ``prepare_data``/``setup`` calls find it ready (no second read of the source)."""
    dm: VisionDataModule = instantiate(cfg.data, _convert_="all")
    dm.prepare_data()
    dm.setup("fit")
    return dm


def input_spec(model_cfg: dict[str, Any], dm: VisionDataModule) -> dict[str, Any]:
    """Channels, size and normalisation the net expects, and (``data=shards``) the evaluation view's
    ``crop_fraction``; saved in the checkpoint for prediction, which decodes images as evaluation did."""
    normalize = model_cfg["normalize"]
    channels = dm.channels
    net_data = net_data_config(model_cfg, channels) if "net" in (normalize, model_cfg["input_size"]) else {}
    if normalize == "net":  # the net's own normalisation (a pretrained backbone's mean/std)
        mean, std = net_data["mean"], net_data["std"]
    elif normalize == "dataset":
        mean, std = dm.pixel_stats()
    elif normalize in (None, "none"):
        mean, std = [0.0] * channels, [1.0] * channels
    elif isinstance(normalize, dict):
        mean, std = list(normalize["mean"]), list(normalize["std"])
    else:
        raise ConfigError(f"model.normalize={normalize!r}: use dataset, none, net or {{mean: [...], std: [...]}}")
    size = model_cfg["input_size"] or dm.image_size
    size = net_data["image_size"] if size == "net" else size
    size = [int(size), int(size)] if isinstance(size, int) else [int(s) for s in size]
    spec = {"channels": channels, "image_size": size, "mean": [float(m) for m in mean],
            "std": [float(s) for s in std]}
    crop_fraction = getattr(dm, "eval_crop_fraction", None)
    if crop_fraction is not None:  # data=shards evaluates a centre crop: deployment must decode the same view
        spec["crop_fraction"] = float(crop_fraction)
    return spec


def net_data_config(model_cfg: dict[str, Any], channels: int) -> dict[str, Any]:
    """``model.normalize=net`` / ``model.input_size=net``: ask the net class (``data_config``) for mean/std/size."""
    name = canonical_spec(model_cfg["net"])["name"]
    hook = getattr(net_class(name), "data_config", None)
    if hook is None:
        raise ConfigError(f"model.normalize=net or model.input_size=net, but net {name!r} has no own data config "
                          "(only pretrained backbones such as model=vgg16 do); use dataset, none or explicit values")
    return hook(model_cfg["net"], channels)


def build_classifier(model_cfg: DictConfig, dm: VisionDataModule) -> ImageClassifier:
    cfg: dict[str, Any] = OmegaConf.to_container(model_cfg, resolve=True)  # plain values only
    spec = input_spec(cfg, dm)
    net = dict(cfg["net"])
    net.update(in_chans=spec["channels"], input_size=spec["image_size"],
               num_outputs=num_outputs_for(dm.num_classes, cfg["loss"]))
    model = ImageClassifier(net=net, class_names=dm.class_names, input_spec=spec, loss=cfg["loss"],
                            optimizer=cfg["optimizer"], scheduler=cfg["scheduler"],
                            label_smoothing=float(cfg["label_smoothing"]), compile=bool(cfg["compile"]),
                            channels_last=use_channels_last(cfg["channels_last"], net),
                            class_weights=dm.class_weights(), mix=cfg["mix"], tta=cfg["tta"])
    fit_whitening(model, dm)
    return model


def fit_whitening(model: ImageClassifier, dm: VisionDataModule, max_images: int = 5000) -> None:
    """Fit the net's whitening stems (models/whitening.py) on a seeded sample of the training split as the net sees
    it (preprocessed); every DDP rank draws the same sample. A resumed or loaded checkpoint then replaces the weights
    with the ones it was trained with (the fitted filters are in its state_dict)."""
    stems = unfitted_stems(model.net)
    if stems:
        images = model.preprocess(dm.train_sample(max_images)).contiguous()
        for stem in stems:
            stem.fit(images)


def use_channels_last(setting: Any, net: dict[str, Any]) -> bool:
    """``model.channels_last``: true | false | auto (= nets with convolutions; dense nets gain nothing)."""
    if setting in (True, False):
        return setting
    if setting != "auto":
        raise ConfigError(f"model.channels_last={setting!r}: use auto, true or false")
    return canonical_spec(net)["name"] != "mlp"


def instantiate_group(group: DictConfig | None) -> list[Any]:
    """Instantiate every entry of a ``callbacks``/``logger`` group that has a ``_target_``."""
    if not group:
        return []
    return [instantiate(entry) for entry in group.values() if isinstance(entry, DictConfig) and "_target_" in entry]


def weight_averaging(cfg: DictConfig) -> list[L.Callback]:
    """``model.ema_decay``: an exponential moving average of the weights (Lightning's EMAWeightAveraging),
    used for validation, written to the checkpoints (so best.ckpt and the test use it) and kept at the end;
    ``model.lookahead``: airbench's lookahead (training/lookahead.py), which pulls the net itself to its average."""
    settings = OmegaConf.select(cfg, "model.lookahead", default=None)
    lookahead = lookahead_from_config(OmegaConf.to_container(settings) if isinstance(settings, DictConfig)
                                      else settings)
    averaging: list[L.Callback] = [lookahead] if lookahead else []
    decay = OmegaConf.select(cfg, "model.ema_decay", default=None)
    if decay is None:
        return averaging
    if isinstance(decay, bool) or not isinstance(decay, (int, float)) or not 0.0 < float(decay) < 1.0:
        raise ConfigError(f"model.ema_decay={decay!r} must be a number strictly between 0 and 1 (e.g. 0.999), "
                          "or null for no averaging")
    return [*averaging, EMAWeights(decay=float(decay))]


def build_trainer(cfg: DictConfig, loggers: Sequence[Logger], extra_callbacks: Sequence[L.Callback] = (),
                  **overrides: Any) -> L.Trainer:
    """The fit trainer: ``cfg.trainer`` with the ``callbacks`` group, weight averaging and the requeue callback, plus
    the given ``loggers`` and ``extra_callbacks`` (what the training command assembles from the layers above this
    one: the tracked loggers, a tune trial's reporter), fitted to its devices
    (:func:`~lit_vision.training.distributed.device_overrides`); ``overrides`` win over everything."""
    quiet_known_noise()
    # DeferredRequeue: under SLURM, the requeue checkpoint at a batch boundary (training/requeue.py); else inert
    all_callbacks = [*instantiate_group(cfg.get("callbacks")), *weight_averaging(cfg), DeferredRequeue(),
                     *extra_callbacks]
    if not loggers and any(isinstance(cb, LearningRateMonitor) for cb in all_callbacks):
        # LearningRateMonitor writes through a logger and raises on a trainer without one
        log.info("no logger configured: LearningRateMonitor left out (the learning rate is not recorded)")
        all_callbacks = [cb for cb in all_callbacks if not isinstance(cb, LearningRateMonitor)]
    return instantiate(cfg.trainer, **{"callbacks": all_callbacks, "logger": list(loggers) or False,
                                       **device_overrides(cfg), **overrides})
