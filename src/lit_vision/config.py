"""Where the config tree lives, custom resolvers, and up-front validation of config values.

The config tree is ``conf/`` at the repository root; the package ships it as ``lit_vision/conf`` (a link in the
source tree, real files in a wheel), found through :mod:`importlib.resources` so an installed package works from
any directory. Validation runs before any data is loaded, so a typo costs a second, not a decoded dataset.
"""

from __future__ import annotations

from collections.abc import Callable
from importlib.resources import files
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from lit_vision.checks import (
    devices_value,
    flag,
    folder_name,
    fraction_list,
    non_negative_int,
    non_negative_number,
    positive_int,
    positive_int_or_auto,
    seed_value,
)
from lit_vision.errors import ConfigError
from lit_vision.runs.paths import project_root

CONF_DIR = Path(str(files("lit_vision") / "conf"))


def study_folder(study: Any) -> str:
    """``tune.study`` as the folder of its study (``hydra.run.dir`` of ``lit_vision.tune``): resolved when Hydra
    makes that folder, so a missing or bad name is refused before anything is written."""
    if study is None:
        spaces = sorted(p.stem for p in (CONF_DIR / "hparams_search").glob("*.yaml"))
        raise ConfigError(f"tune.study is not set: pick a search space with hparams_search=<one of {spaces}> (it "
                          "names its study), or write your own tune.space with tune.study=<name>")
    return folder_name(study, "tune.study", "fashion_lr")


def register_resolvers() -> None:
    if not OmegaConf.has_resolver("project_root"):
        OmegaConf.register_new_resolver("project_root", lambda: str(project_root()))
    if not OmegaConf.has_resolver("study_folder"):  # tune's hydra.run.dir, checked before Hydra creates it
        OmegaConf.register_new_resolver("study_folder", study_folder)
    if not OmegaConf.has_resolver("resume_or"):  # hydra.run.dir: the resumed run's folder, else a new one
        OmegaConf.register_new_resolver("resume_or", lambda resume, default: str(resume) if resume else default)


register_resolvers()


def _check(cfg: DictConfig, key: str, check: Callable[[Any, str], Any]) -> None:
    """Run ``check`` on ``cfg[key]`` when the command's config has that key."""
    value = OmegaConf.select(cfg, key, default=None)
    if value is not None:
        check(value, key)


def _check_trial(value: Any, key: str) -> None:
    from lit_vision.tuning.pruning import check_trial  # optuna: only when a tune trial sets the key

    check_trial(value)


#: keys no component owns a check for, checked here; every other key is checked by the component that reads it
#: (``data.*``: the data module, ``model.*``: the net, losses, optimizers, schedules, recipes — see
#: :func:`_check_model`), called from :func:`validate_config`
OWN_CHECKS: tuple[tuple[str, Callable[[Any, str], Any]], ...] = (
    ("seed", seed_value), ("trainer.max_epochs", positive_int), ("trainer.devices", devices_value),
    ("trainer.accumulate_grad_batches", positive_int), ("trainer.gradient_clip_val", non_negative_number),
    ("report.time_to", fraction_list),
    ("report.plots", flag), ("report.classification_report", flag), ("report.misclassified", non_negative_int),
    ("cpu_threads", positive_int_or_auto), ("steps_per_execution", positive_int), ("test", flag),
    ("validate_best", flag), ("model.compile", flag), ("trial", _check_trial))


def validate_config(cfg: DictConfig) -> None:
    """Check every value that needs no data; raise :class:`ConfigError` naming the key, the value and the fix.

    The runner calls this before anything is built or read. Each key is checked by one function: the component's
    own (data module, net, loss, optimizer, schedule, recipes), run here on the config alone — the net is built on
    the meta device from ``data.channels``/``data.image_size`` — or, for keys no component checks, the table
    :data:`OWN_CHECKS`. What needs the data (class names in ``data.mapping``, a binary loss on a multiclass source
    without a mapping, the size a source without ``data.image_size`` decodes to) is checked when it is loaded."""
    for key, check in OWN_CHECKS:
        _check(cfg, key, check)
    _check_trainer(cfg)
    _check_steps_per_execution(cfg)
    _check_optional_packages(cfg)
    goal = OmegaConf.select(cfg, "report.operating_point", default=None)
    if goal:
        from lit_vision.deploy.operating_point import parse_goal

        parse_goal(goal)
    tta = OmegaConf.select(cfg, "tta", default=None)  # evaluate's test-time augmentation
    if tta is not None:
        from lit_vision.training.recipes import check_tta

        check_tta(_plain(tta), key="tta")
    _check_data(cfg)
    _check_model(cfg)
    precision = str(OmegaConf.select(cfg, "trainer.precision", default="32"))
    accelerator = str(OmegaConf.select(cfg, "trainer.accelerator", default="auto"))
    if precision.startswith("16") and (accelerator == "cpu" or (accelerator == "auto" and not _cuda())):
        raise ConfigError(f"trainer.precision={precision} needs a CUDA GPU; on CPU use trainer.precision=bf16-mixed "
                          "(fast on CPUs with AMX/AVX-512-BF16) or trainer.precision=32")
    if accelerator in ("cuda", "gpu") and not _cuda():
        raise ConfigError("accelerator=cuda but no CUDA GPU is visible (torch.cuda.is_available() is False); "
                          "use accelerator=cpu or accelerator=auto")


def _plain(value: Any) -> Any:
    return OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value


def _check_trainer(cfg: DictConfig) -> None:
    """``trainer.precision``: auto (lit_vision picks it per device) or one of Lightning's names (Lightning would
    refuse a bad one only when the Trainer is built)."""
    precision = OmegaConf.select(cfg, "trainer.precision", default=None)
    if precision is None:
        return
    from typing import get_args

    from lightning.fabric.connector import _PRECISION_INPUT_INT, _PRECISION_INPUT_STR, _PRECISION_INPUT_STR_ALIAS

    allowed = ["auto", *get_args(_PRECISION_INPUT_STR), *get_args(_PRECISION_INPUT_STR_ALIAS),
               *get_args(_PRECISION_INPUT_INT)]
    if precision not in allowed:
        raise ConfigError(f"trainer.precision={precision!r} is not a precision; use auto, 32, bf16-mixed, "
                          "16-mixed, bf16-true, 16-true or 64")


def _check_data(cfg: DictConfig) -> None:
    """``data.*``: the data module's own argument check, on the config alone (it reads no data)."""
    data = cfg.get("data") if "data" in cfg else None
    if not isinstance(data, DictConfig) or "_target_" not in data:
        return
    from hydra.utils import get_class

    check = getattr(get_class(str(data._target_)), "check_config", None)
    if check is not None:
        check(_plain(data))


class _DryData:
    """What :func:`~lit_vision.training.builders.input_spec` asks of a data module, from the data config alone."""

    def __init__(self, channels: int, image_size: list[int]) -> None:
        self.channels, self.image_size = channels, image_size

    def pixel_stats(self) -> tuple[list[float], list[float]]:
        return [0.5] * self.channels, [0.25] * self.channels


def _placeholder_classes(cfg: DictConfig) -> list[str] | None:
    """The class names ``data.mapping`` fixes without the data (one-vs-rest: 2; a subset: its labels), else None."""
    mapping = _plain(OmegaConf.select(cfg, "data.mapping", default=None)) or {}
    if mapping.get("positive") is not None:
        return ["negative", "positive"]
    classes = mapping.get("classes")
    if isinstance(classes, dict):
        return [f"class_{i}" for i in sorted(set(classes.values()))]
    return [str(c) for c in classes] if classes else None


def _check_model(cfg: DictConfig) -> None:
    """``model.*`` of a command that builds a classifier (train): each key through its component's own check,
    the net dry-built on the meta device, the optimizer and schedule built on one dummy parameter."""
    model = OmegaConf.select(cfg, "model", default=None)
    if not isinstance(model, DictConfig) or "net" not in model:
        return

    from lit_vision.data.sources import check_channels, parse_image_size
    from lit_vision.models.registry import canonical_spec, check_spec
    from lit_vision.training import builders
    from lit_vision.training.classifier import check_model_config
    from lit_vision.training.losses import num_outputs_for

    m: dict[str, Any] = _plain(model)
    known = _placeholder_classes(cfg)  # a binary loss on an unmapped source is checked on the data
    check_model_config(m, known)  # loss, label smoothing, optimizer and schedule (dry-built), TTA, mix
    class_names = known or ["class_0", "class_1"]
    builders.use_channels_last(m.get("channels_last", "auto"), canonical_spec(m["net"]))
    builders.weight_averaging(cfg)  # model.ema_decay, model.lookahead
    # the net: input spec from the data config, then a dry build
    channels = check_channels(OmegaConf.select(cfg, "data.channels", default=3))
    data_size = parse_image_size(OmegaConf.select(cfg, "data.image_size", default=None))
    _check_input_size(m.get("input_size"))
    size_known = data_size is not None or m.get("input_size") is not None
    _check_normalize(m.get("normalize"), channels)
    spec = builders.input_spec(m, _DryData(channels, list(data_size or (32, 32))))
    check_spec(m["net"], in_chans=channels, input_size=spec["image_size"] if size_known else None,
               num_outputs=num_outputs_for(len(class_names), m["loss"]))


def _check_input_size(size: Any) -> None:
    """``model.input_size``: null (the data's), net (a pretrained backbone's), an int or [H, W] of positive ints."""
    if size is None or size == "net":
        return
    items = [size] if not isinstance(size, (list, tuple)) else list(size)
    if len(items) not in (1, 2) or any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in items) \
            or (isinstance(size, (list, tuple)) and len(items) != 2):
        raise ConfigError(f"model.input_size={size!r} must be [H, W] (positive integers), one integer for a square, "
                          "net (the backbone's own size) or null (the data's size)")


def _check_normalize(normalize: Any, channels: int) -> None:
    """``model.normalize={mean: [...], std: [...]}``: one value per channel, every std positive (the string
    options are checked by :func:`~lit_vision.training.builders.input_spec`)."""
    if not isinstance(normalize, dict):
        return
    mean, std = normalize.get("mean"), normalize.get("std")
    if sorted(normalize) != ["mean", "std"] or not isinstance(mean, list) or not isinstance(std, list) \
            or len(mean) != channels or len(std) != channels:
        raise ConfigError(f"model.normalize={normalize} must be {{mean: [...], std: [...]}} with {channels} "
                          f"value(s) each (data.channels={channels})")
    if any(isinstance(v, bool) or not isinstance(v, (int, float)) for v in mean + std) or min(std) <= 0:
        raise ConfigError(f"model.normalize={normalize}: mean and std must be numbers, every std > 0")


def _check_steps_per_execution(cfg: DictConfig) -> None:
    """``steps_per_execution > 1`` takes its optimizer steps itself (Lightning's manual optimisation): refuse the
    settings that Lightning would then no longer apply."""
    steps = int(OmegaConf.select(cfg, "steps_per_execution", default=1) or 1)
    if steps == 1:
        return
    fix = f"or use steps_per_execution=1 (now {steps})"
    if OmegaConf.select(cfg, "model.scheduler.name", default="none") == "plateau":
        raise ConfigError(f"model.scheduler.name=plateau steps on validation results, which steps_per_execution > 1 "
                          f"does not pass on; use a per-step scheduler (cosine, onecycle) or none, {fix}")
    if OmegaConf.select(cfg, "trainer.gradient_clip_val", default=None) is not None:
        raise ConfigError(f"trainer.gradient_clip_val is not applied with steps_per_execution > 1; remove it {fix}")
    if int(OmegaConf.select(cfg, "trainer.accumulate_grad_batches", default=1) or 1) != 1:
        raise ConfigError(f"trainer.accumulate_grad_batches > 1 is not applied with steps_per_execution > 1; set it "
                          f"to 1 {fix}")
    for averaging in ("ema_decay", "lookahead"):
        if OmegaConf.select(cfg, f"model.{averaging}", default=None) is not None:
            raise ConfigError(f"model.{averaging} averages after every Lightning step, which steps_per_execution > 1 "
                              f"makes a group of steps; remove it {fix}")
    every = OmegaConf.select(cfg, "callbacks.last_checkpoint.every_n_train_steps", default=None)
    if every is not None and int(every) % steps:
        raise ConfigError(f"callbacks.last_checkpoint.every_n_train_steps={every} is not a multiple of "
                          f"steps_per_execution={steps}: checkpoints are only written between groups of steps; "
                          f"use a multiple of {steps}")


def _check_optional_packages(cfg: DictConfig) -> None:
    """Config choices that need an optional extra: say which before any data is read."""
    if not OmegaConf.select(cfg, "logger", default=None):
        return  # commands without loggers do not import Lightning for this
    from lit_vision.runs.tracking import mlflow_entries, require_mlflow

    if mlflow_entries(cfg):
        require_mlflow()


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()

