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

import lightning as L
import torch
from omegaconf import DictConfig, OmegaConf

from lit_vision.auditing import leaks
from lit_vision.commands.runner import hydra_command
from lit_vision.data.datamodule import VisionDataModule
from lit_vision.deploy import checkpoint_backend
from lit_vision.deploy.model import stored_threshold
from lit_vision.deploy.operating_point import UnreachableGoalError, choose_threshold, metrics_at
from lit_vision.errors import ConfigError
from lit_vision.runs import reporting, tracking
from lit_vision.runs.records import RunDir
from lit_vision.training import hardware
from lit_vision.training.builders import build_classifier, build_datamodule, build_trainer, instantiate_group
from lit_vision.training.callbacks import EpochTimer, RunDirCSVLogger
from lit_vision.training.checkpoints import check_resume_checkpoint, resolve_ckpt_path, resume_run_dir
from lit_vision.training.classifier import ImageClassifier
from lit_vision.training.distributed import check_launch, evaluation_trainer, on_cpu, quiet_non_zero_ranks
from lit_vision.tuning.pruning import TrialReporter

log = logging.getLogger("lit_vision")


def best_checkpoint(trainer: L.Trainer) -> str | None:
    cb = trainer.checkpoint_callback
    path = getattr(cb, "best_model_path", "") if cb is not None else ""
    return path or None


def tracked_loggers(cfg: DictConfig) -> list[Any]:
    """The ``logger`` group: an MLflow server that is down is left out with one warning, and an MLflow run gets the
    resolved config as its parameters (:mod:`lit_vision.runs.tracking`)."""
    loggers = tracking.reachable(instantiate_group(cfg.get("logger")))
    for logger in tracking.mlflow_loggers(loggers):
        logger.attach_config(cfg)
    return loggers


def trial_callbacks(cfg: DictConfig) -> list[L.Callback]:
    """A ``lit_vision.tune`` trial (``trial=`` set by tune): report each epoch's metric, stop when pruned."""
    if cfg.get("trial") is None:
        return []
    return [TrialReporter(OmegaConf.to_container(cfg.trial, resolve=True))]  # type: ignore[arg-type]


def check_options(cfg: DictConfig) -> None:
    """``resume`` and ``ckpt_path`` name a run dir / checkpoint that is there, and ``leak_free`` a readable audit
    list, before any data is read."""
    if cfg.leak_free:
        if not cfg.test:
            raise ConfigError(f"leak_free={cfg.leak_free} scores the test split, and test=false skips it; drop one")
        leaks.check_issues(cfg.leak_free)
    resumed = resume_run_dir(cfg.resume)
    resolve_ckpt_path(cfg.ckpt_path or ("last" if resumed else None), resumed or cfg.paths.output_dir, quiet=True)


def fit(cfg: DictConfig, dm: VisionDataModule, out: Path) -> tuple[ImageClassifier, L.Trainer, dict[str, Any]]:
    """Build the model from the data, fit it (resuming when asked) and return what the report needs."""
    # resume=<run dir> is also this run's dir (conf/hydra/default.yaml) unless hydra.run.dir says otherwise
    resumed = resume_run_dir(cfg.resume)
    ckpt_path = resolve_ckpt_path(cfg.ckpt_path or ("last" if resumed else None), resumed or out)
    model = build_classifier(cfg.model, dm)
    dm.group_train_batches(cfg.steps_per_execution)
    model.set_steps_per_execution(cfg.steps_per_execution, dm.batch_size)
    if ckpt_path:
        check_resume_checkpoint(ckpt_path, model)
    trainer = build_trainer(cfg, tracked_loggers(cfg), trial_callbacks(cfg))
    for logger in trainer.loggers if ckpt_path else []:
        if isinstance(logger, RunDirCSVLogger):  # a resumed run keeps the epochs it already logged
            logger.keep_existing = True
    with hardware.gpus_hidden(on_cpu(cfg) and not torch.cuda.is_initialized()):
        trainer.fit(model, datamodule=dm, ckpt_path=ckpt_path, weights_only=True)
    if trainer.is_global_zero:  # before validate/test append their rows to the CSV log
        RunDir(out).write_history()
    state = {"epochs_trained": trainer.current_epoch, "global_step": trainer.global_step,
             "resumed_from": ckpt_path, "world_size": trainer.world_size, "best_checkpoint": best_checkpoint(trainer)}
    for reporter in (cb for cb in trainer.callbacks if isinstance(cb, TrialReporter)):
        state |= reporter.record()  # a tune trial: its number, and the epoch it was pruned at
    return model, trainer, state


def score_best(cfg: DictConfig, trainer: L.Trainer, model: ImageClassifier, dm: VisionDataModule,
               best: str | None) -> tuple[dict[str, Any], Any]:
    """Validate and test with the best checkpoint; return the logged scalars and the test confusion matrix."""
    scalars: dict[str, Any] = {}
    confusion = None
    if cfg.validate_best:
        trainer.validate(model, datamodule=dm, ckpt_path=best, verbose=False, weights_only=True)
        scalars |= dict(trainer.callback_metrics)
    if cfg.test and dm.test_set is not None:
        trainer.test(model, datamodule=dm, ckpt_path=best, verbose=False, weights_only=True)
        scalars |= dict(trainer.callback_metrics)
        confusion = model.test_outputs.get("confusion_matrix")
    return scalars, confusion


def run(cfg: DictConfig) -> dict[str, Any]:
    """Train and test one configuration; return the metrics record written to ``metrics.json``."""
    quiet_non_zero_ranks()
    check_launch(cfg)
    out = Path(cfg.paths.output_dir)
    dm = build_datamodule(cfg)
    model, fit_trainer, state = fit(cfg, dm, out)
    trainer = evaluation_trainer(cfg, fit_trainer)  # DDP: rank 0 alone, so each test image counts once
    if trainer is None:
        return {}
    scalars, confusion = score_best(cfg, trainer, model, dm, state["best_checkpoint"])
    # wall time from history.csv (the same on resume and under DDP); the timer's own total when there is no history
    timer = next((cb for cb in fit_trainer.callbacks if isinstance(cb, EpochTimer)), None)
    timing = reporting.timing_record(RunDir(out).history(), cfg.report.time_to,
                                     timer.train_seconds if timer is not None else None)
    record = reporting.build_metrics_record(scalars, confusion, dm.class_names,
                                            extra={**state, **timing, "data": dm.describe(),
                                                   "model": cfg.model.net.name})
    if cfg.leak_free and "probs" in model.test_outputs:
        outputs = model.test_outputs
        record |= leaks.leak_free_record(cfg.leak_free, outputs["probs"], outputs["targets"], dm.test_set,
                                         dm.class_names)
    if trainer.is_global_zero:
        if cfg.report.operating_point and dm.num_classes == 2 and dm.val_set is not None:
            record["operating_point"] = operating_point_record(str(cfg.report.operating_point), model, dm, out)
        reporting.write_run_report(out, record, model, dm, cfg.report, predictions=test_predictions(model, dm, out))
        tracking.log_run_report(fit_trainer, out, record)
        log.info("%s", reporting.timing_line(record))
    return record


def test_predictions(model: ImageClassifier, dm: VisionDataModule, out: Path) -> tuple[Any, Any] | None:
    """``predictions.csv``'s probabilities and decisions: the best weights as deployed
    (:class:`~lit_vision.deploy.model.DeployedModel`: TTA, the stored operating point), on the test images — the
    same path ``predict``, ``serve`` and the ONNX export take."""
    if dm.test_set is None or "probs" not in model.test_outputs:
        return None
    deployed = checkpoint_backend.from_classifier(model, threshold=stored_threshold(out, dm.num_classes),
                                                  batch_size=dm.eval_batch_size)
    return deployed.classify(dm.test_set.images)


def operating_point_record(goal: str, model: ImageClassifier, dm: VisionDataModule, out: Path) -> dict[str, Any]:
    """The threshold for ``goal`` chosen on the validation split with the best weights, the test metrics at it
    and at argmax; also written to ``<run dir>/operating_point.json``, where predict/export/serve read it."""
    val_scores = checkpoint_backend.probabilities(model, dm.val_set.images, dm.eval_batch_size)[:, 1]
    try:
        point = choose_threshold(val_scores, dm.val_set.labels, goal)
    except UnreachableGoalError as exc:
        log.warning("%s; decisions stay at argmax (threshold 0.5)", exc)
        point = {"goal": goal, "threshold": 0.5, "unreachable": str(exc)}
    outputs = model.test_outputs
    if "probs" in outputs:
        test_scores, test_targets = outputs["probs"][:, 1].numpy(), outputs["targets"].numpy()
        point["test"] = metrics_at(test_scores, test_targets, point["threshold"])
        point["test_argmax"] = metrics_at(test_scores, test_targets, 0.5)
    point["positive_class"] = dm.class_names[1]
    reporting.write_json(RunDir(out).operating_point_file, point)
    test = point.get("test", {})
    log.info("operating point %s: threshold %.4f → test precision %.4f, recall %.4f (argmax: %.4f, %.4f)", goal,
             point["threshold"], test.get("precision", float("nan")), test.get("recall", float("nan")),
             point.get("test_argmax", {}).get("precision", float("nan")),
             point.get("test_argmax", {}).get("recall", float("nan")))
    return point


main = hydra_command("train", run, check_options)


if __name__ == "__main__":
    main()
