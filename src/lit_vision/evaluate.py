"""``python -m lit_vision.evaluate ckpt_path=… data=…``: score a trained checkpoint, report like a training run.

The checkpoint carries its net, classes and preprocessing; the data config only says which images to score
(its class names must match the checkpoint's).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import hydra
from hydra.utils import instantiate
from omegaconf import DictConfig

from lit_vision import reporting
from lit_vision.builders import build_datamodule
from lit_vision.checkpoints import load_classifier
from lit_vision.cli import run_entry_point
from lit_vision.config import CONF_DIR, validate_config
from lit_vision.errors import ConfigError
from lit_vision.train import write_artifacts

log = logging.getLogger("lit_vision.evaluate")


def run(cfg: DictConfig) -> dict[str, Any]:
    validate_config(cfg)
    out = Path(cfg.paths.output_dir)
    model = load_classifier(cfg.ckpt_path)
    dm = build_datamodule(cfg)
    dm.prepare_data()
    dm.setup("fit")
    if dm.class_names != model.class_names:
        raise ConfigError(f"data={dm.name} has classes {dm.class_names} but checkpoint {cfg.ckpt_path} was trained on "
                          f"{model.class_names}; pass the data config the run used (see its .hydra/config.yaml)")
    trainer = instantiate(cfg.trainer, devices=1, logger=False, callbacks=[], enable_checkpointing=False)
    scalars: dict[str, Any] = {}
    trainer.validate(model, datamodule=dm, verbose=False)
    scalars |= dict(trainer.callback_metrics)
    confusion = None
    if dm.test_set is not None:
        trainer.test(model, datamodule=dm, verbose=False)
        scalars |= dict(trainer.callback_metrics)
        confusion = model.test_outputs.get("confusion_matrix")
    record = reporting.build_metrics_record(scalars, confusion, dm.class_names,
                                            extra={"checkpoint": str(cfg.ckpt_path), "data": dm.describe()})
    write_artifacts(out, record, model, dm, cfg.get("report"))
    return record


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="evaluate")
def main(cfg: DictConfig) -> float | None:
    return run_entry_point(run, cfg)


if __name__ == "__main__":
    main()
