"""``python -m lit_vision.train``: fit, test with the best checkpoint, and write the run's report.

Examples::

    python -m lit_vision.train                                   # 8x8 digits, offline, ~1 minute on a CPU
    python -m lit_vision.train model=cnn data=cifar_horse data.root=../shared/datasets/cifar10-jpeg
    python -m lit_vision.train experiment=cifar10_model_s accelerator=cuda trainer.precision=bf16-mixed
    python -m lit_vision.train --help                            # config groups and options
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import hydra
import lightning as L
import torch
from omegaconf import DictConfig

from lit_vision import plots, reporting, sweeps
from lit_vision.builders import build_classifier, build_datamodule, build_trainer
from lit_vision.class_report import classification_report, print_report
from lit_vision.checkpoints import check_resume_checkpoint, resolve_ckpt_path, resume_run_dir
from lit_vision.cli import exit_on_user_error
from lit_vision.config import CONF_DIR, validate_config
from lit_vision.distributed import check_launch, evaluation_trainer, quiet_non_zero_ranks

log = logging.getLogger("lit_vision.train")


def output_dir(cfg: DictConfig) -> Path:
    return Path(cfg.paths.output_dir)


def best_checkpoint(trainer: L.Trainer) -> str | None:
    cb = trainer.checkpoint_callback
    path = getattr(cb, "best_model_path", "") if cb is not None else ""
    return path or None


def run(cfg: DictConfig) -> dict[str, Any]:
    """Train and test one configuration; return the metrics record written to ``metrics.json``."""
    validate_config(cfg)
    quiet_non_zero_ranks()
    check_launch(cfg)
    L.seed_everything(cfg.seed, workers=True)
    torch.set_float32_matmul_precision(cfg.get("matmul_precision", "high"))
    out = output_dir(cfg)
    # resume=<run dir> is also this run's dir (conf/hydra/default.yaml) unless hydra.run.dir says otherwise
    resumed = resume_run_dir(cfg.get("resume"))
    ckpt_path = resolve_ckpt_path(cfg.get("ckpt_path") or ("last" if resumed else None), resumed or out)
    dm = build_datamodule(cfg)
    dm.prepare_data()
    dm.setup("fit")
    model = build_classifier(cfg.model, dm)
    if ckpt_path:
        check_resume_checkpoint(ckpt_path, model)
    trainer = build_trainer(cfg)
    if trainer.is_global_zero:
        log.info("data: %s", dm.describe()["counts"])
    trainer.fit(model, datamodule=dm, ckpt_path=ckpt_path, weights_only=True)
    if trainer.is_global_zero:  # before validate/test append their rows to the CSV log
        reporting.write_history(out / "metrics.csv", out / "history.csv")
    fit_state = {"epochs_trained": trainer.current_epoch, "global_step": trainer.global_step,
                 "resumed_from": ckpt_path, "world_size": trainer.world_size}
    scalars: dict[str, Any] = {}
    best = best_checkpoint(trainer)
    trainer = evaluation_trainer(cfg, trainer)  # DDP: rank 0 alone, so each test image counts once
    if trainer is None:
        return {}
    if cfg.get("validate_best", True):
        trainer.validate(model, datamodule=dm, ckpt_path=best, verbose=False, weights_only=True)
        scalars |= dict(trainer.callback_metrics)
    confusion = None
    if cfg.get("test", True) and dm.test_set is not None:
        trainer.test(model, datamodule=dm, ckpt_path=best, verbose=False, weights_only=True)
        scalars |= dict(trainer.callback_metrics)
        confusion = model.test_outputs.get("confusion_matrix")
    record = reporting.build_metrics_record(
        scalars, confusion, dm.class_names,
        extra={"best_checkpoint": best, **fit_state, "data": dm.describe(),
               "model": cfg.model.net.get("_target_", "")})
    if trainer.is_global_zero:
        write_artifacts(out, record, model, dm, cfg.get("report"))
    return record


def write_artifacts(out: Path, record: dict[str, Any], model: Any, dm: Any, report: Any = None) -> None:
    report = report or {}
    outputs = getattr(model, "test_outputs", {})
    if "probs" in outputs and report.get("classification_report", True):
        record["classification_report"] = classification_report(outputs["probs"], outputs["targets"],
                                                                 dm.class_names)
    reporting.write_json(out / "metrics.json", record)
    if "probs" in outputs and dm.test_set is not None:
        reporting.write_predictions(out / "predictions.csv", outputs["probs"], outputs["targets"],
                                    dm.class_names, dm.test_set.sources)
    reporting.print_metrics(record, title=f"{dm.name}: test with the best checkpoint")
    if "classification_report" in record:
        print_report(record["classification_report"])
    if report.get("plots", True):
        plots.write_run_plots(out, model, dm, misclassified=int(report.get("misclassified", 10)))
    log.info("artifacts written to %s", out)


def optimized_value(cfg: DictConfig, record: dict[str, Any]) -> float | None:
    name = cfg.get("optimized_metric")
    return None if not name else record.get(name)


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="train")
def main(cfg: DictConfig) -> float | None:
    try:
        record = run(cfg)
    except Exception as exc:
        if sweeps.in_multirun():  # error.json + NaN: one failing job must not stop the sweep
            return sweeps.job_failed(output_dir(cfg), exc)
        exit_on_user_error(exc)  # the message names the culprit and the fix: no traceback wall
        raise
    return optimized_value(cfg, record)


if __name__ == "__main__":
    main()
