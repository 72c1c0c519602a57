"""``lit-vision audit data=… [ckpt_path=…]``: know the data before training on it.

Finds exact and near duplicates within and across splits (train/test leaks), likely label errors (confident learning
on cross-validated probabilities), outliers and unusable images, on any data config — the same mapping training
uses. Writes ``issues.csv``, ``summary.md``, ``summary.json`` and pictures to the run dir (docs/audit.md).
Examples::

    lit-vision audit data=cifar10 data.root=../shared/datasets/cifar10-jpeg
    lit-vision audit data=fashion_mnist data.root=../shared/datasets audit.checks=[duplicates,quality]
    lit-vision audit data=fer2013 data.root=../shared/datasets/fer2013 ckpt_path=outputs/fer_custom_cnn/runs/<time>
    lit-vision train experiment=horse_cnn data.exclude=outputs/audit/runs/<time>/issues.csv
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from lit_vision.auditing.pipeline import AuditSplit, TrainingPlan, run_audit
from lit_vision.auditing.settings import AuditSettings
from lit_vision.commands.runner import hydra_command
from lit_vision.data.exclude import exclude_entries
from lit_vision.data.items import item_names
from lit_vision.deploy.model import checkpoint_of
from lit_vision.errors import ConfigError
from lit_vision.models.boosting import resolve_device

log = logging.getLogger("lit_vision.audit")

#: command-line overrides the audit's training runs inherit: the data (and where its caches live)
FORWARDED = ("data", "paths", "accelerator")


def forwarded_overrides(task_overrides: list[str], drop: tuple[str, ...] = ()) -> list[str]:
    """The audit's own overrides of the data (``data=…``, ``data.*``), paths and accelerator, for its training
    runs; keys in ``drop`` are left out."""
    out = []
    for override in task_overrides:
        key = override.lstrip("+~").split("=", 1)[0]
        if key.split(".")[0] in FORWARDED and key not in drop:
            out.append(override)
    return out


def audit_splits(cfg: DictConfig) -> tuple[dict[str, AuditSplit], list[str], dict[str, Any]]:
    """The data config's source splits as the audit reads them (train not split for validation), their class names
    and a description for the summary."""
    dm = instantiate(cfg.data, _convert_="all")
    if hasattr(dm, "source_splits"):  # in-memory data: data.exclude left out, the mapping applied
        dm.prepare_data()
        arrays = dm.source_splits()
        splits = {name: AuditSplit(a.images, a.labels, item_names(a, name), list(a.sources))
                  for name, a in arrays.items()}
        class_names = list(arrays["train"].class_names)
    else:  # data=shards: its splits as prepare wrote them
        dm.prepare_data()
        dm.setup()
        found = {name: s for name, s in (("train", dm.train_set), ("val", dm.val_set), ("test", dm.test_set)) if s}
        splits = {name: AuditSplit(s.images, s.labels, list(s.sources)) for name, s in found.items()}
        class_names = list(dm.class_names)
    first = np.asarray(splits["train"].images[:1])
    describe = {"name": cfg.data.name, "source": cfg.data.get("source", cfg.data.name), "root": cfg.data.root,
                "class_names": class_names, "channels": int(first.shape[1]), "image_size": list(first.shape[2:]),
                "exclude": OmegaConf.to_container(cfg.data.exclude) if OmegaConf.is_config(cfg.data.get("exclude"))
                else cfg.data.get("exclude")}
    return splits, class_names, describe


def training_plan(cfg: DictConfig, out: Path) -> TrainingPlan:
    """The audit's own data overrides for its training runs; the user's ``data.exclude`` travels as a list file
    (the fold runs add their held-out images to it)."""
    overrides, choice = [], None
    if HydraConfig.initialized():
        overrides, choice = list(HydraConfig.get().overrides.task), HydraConfig.get().runtime.choices.get("data")
    data_overrides = forwarded_overrides(overrides, drop=("data.exclude",)) + [f"seed={cfg.seed}"]
    if choice and not any(o.lstrip("+").startswith("data=") for o in data_overrides):
        data_overrides.insert(0, f"data={choice}")  # the audit's default data, which a recipe's preset must not swap
    value = cfg.data.get("exclude")
    excluded = exclude_entries(OmegaConf.to_container(value) if OmegaConf.is_config(value) else value) if value else []
    if excluded:
        listed = out / "excluded_by_user.txt"
        out.mkdir(parents=True, exist_ok=True)
        listed.write_text("".join(f"{e}\n" for e in excluded))
        data_overrides.append(f"data.exclude={listed}")
    checkpoint = checkpoint_of(cfg.ckpt_path, "ckpt_path") if cfg.ckpt_path else None
    return TrainingPlan(data_overrides, excluded, int(cfg.seed), checkpoint)


def run(cfg: DictConfig) -> dict[str, Any]:
    settings = AuditSettings.from_mapping(OmegaConf.to_container(cfg.audit, resolve=True))  # type: ignore[arg-type]
    out = Path(cfg.paths.output_dir)
    plan = training_plan(cfg, out)
    start = time.perf_counter()
    splits, class_names, describe = audit_splits(cfg)
    device = resolve_device(str(OmegaConf.select(cfg, "trainer.accelerator", default="auto")))
    result = run_audit(splits, class_names, settings, plan, out, device, describe, time.perf_counter() - start)
    log.info("audit written to %s (%d findings in %.1f min)", out, len(result.findings),
             sum(result.seconds.values()) / 60)
    return {"findings": len(result.findings)}


def check_options(cfg: DictConfig) -> None:
    """``audit.*``, ``resume`` and ``ckpt_path`` checked before any data is read."""
    settings = AuditSettings.from_mapping(OmegaConf.to_container(cfg.audit, resolve=True))  # type: ignore[arg-type]
    if settings.wants("label_issues") and str(cfg.data.get("_target_", "")).endswith("ShardsDataModule"):
        raise ConfigError("audit.checks has label_issues, but data=shards cannot leave cross-validation folds out of "
                          "training (its shards are written); audit the image folder before prepare, or drop "
                          "label_issues: audit.checks=[duplicates,quality,near_duplicates,outliers]")
    if cfg.resume and not Path(cfg.resume).is_dir():
        raise ConfigError(f"resume={cfg.resume}: no such folder; pass the folder of the audit to continue "
                          "(outputs/audit/runs/<time>)")
    if cfg.ckpt_path:
        checkpoint_of(cfg.ckpt_path, "ckpt_path")


main = hydra_command("audit", run, check_options)


if __name__ == "__main__":
    main()
