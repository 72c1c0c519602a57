"""``python -m lit_vision.evaluate ckpt_path=… data=…``: score a trained checkpoint, report like a training run.

The checkpoint carries its net, classes and preprocessing; the data config only says which images to score
(its class names must match the checkpoint's). ``leak_free=<an audit's issues.csv>`` also scores the test split
without the images the audit found duplicated in the training split (``test_leak_free/*`` beside ``test/*``).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from lit_vision.auditing import leaks
from lit_vision.commands.runner import hydra_command
from lit_vision.errors import ConfigError
from lit_vision.runs import reporting
from lit_vision.training import recipes
from lit_vision.training.builders import build_datamodule, build_trainer
from lit_vision.training.checkpoints import load_classifier

log = logging.getLogger("lit_vision.evaluate")


def run(cfg: DictConfig) -> dict[str, Any]:
    out = Path(cfg.paths.output_dir)
    model = load_classifier(cfg.ckpt_path)
    if cfg.tta is not None:
        model.tta = recipes.check_tta(OmegaConf.to_container(cfg.tta, resolve=True), key="tta")
    dm = build_datamodule(cfg)
    if dm.class_names != model.class_names:
        raise ConfigError(f"data={dm.name} has classes {dm.class_names} but checkpoint {cfg.ckpt_path} was trained on "
                          f"{model.class_names}; pass the data config the run used (see its .hydra/config.yaml)")
    trainer = build_trainer(cfg, [], devices=1, callbacks=[], enable_checkpointing=False)
    scalars: dict[str, Any] = {}
    trainer.validate(model, datamodule=dm, verbose=False)
    scalars |= dict(trainer.callback_metrics)
    confusion = None
    if dm.test_set is not None:
        trainer.test(model, datamodule=dm, verbose=False)
        scalars |= dict(trainer.callback_metrics)
        confusion = model.test_outputs.get("confusion_matrix")
    record = reporting.build_metrics_record(scalars, confusion, dm.class_names,
                                            extra={"checkpoint": str(cfg.ckpt_path), "data": dm.describe(),
                                                   "tta": dict(model.tta)})
    if cfg.leak_free:
        outputs = model.test_outputs
        record |= leaks.leak_free_record(cfg.leak_free, outputs["probs"], outputs["targets"], dm.test_set,
                                         dm.class_names)
    reporting.write_run_report(out, record, model, dm, cfg.report)
    if cfg.leak_free:
        leaks.print_side_by_side(record)
    return record


def check_options(cfg: DictConfig) -> None:
    """``leak_free``: an audit's issues.csv, read before any data is (its rows are matched to the test split
    after loading)."""
    if cfg.leak_free:
        leaks.check_issues(cfg.leak_free)


main = hydra_command("evaluate", run, check_options)


if __name__ == "__main__":
    main()
