"""Checkpoint files: load a classifier safely, decide what a run resumes from, never save NaN weights.

Everything here loads with ``torch.load(..., weights_only=True)``: a checkpoint is data, never code.
Errors are :class:`CheckpointError` whose message names the file and the fix.

Typical use by other tools (predict, embeddings, XGBoost heads)::

    from lit_vision.training.checkpoints import load_classifier
    model = load_classifier("outputs/train/runs/<time>/checkpoints/best.ckpt")   # eval mode, on CPU
    probs = model.probabilities(model(uint8_images))
"""

from __future__ import annotations

import logging
import math
import os
import pickle
import re
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from lightning.pytorch.callbacks import ModelCheckpoint

from lit_vision.errors import LitVisionError
from lit_vision.training import grouped_steps

if TYPE_CHECKING:
    import lightning as L

    from lit_vision.training.classifier import ImageClassifier

log = logging.getLogger(__name__)

#: hyperparameters every lit_vision classifier checkpoint carries
REQUIRED_HPARAMS = ("net", "class_names", "input_spec")


class CheckpointError(LitVisionError):
    """A checkpoint is missing, damaged, or was written by another model or program."""


class CheckpointNotFoundError(CheckpointError):
    """``ckpt_path`` / ``resume`` name a file or run dir that is not there (exit 1, as every missing file)."""


def read_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """``torch.load`` with ``weights_only=True``; any failure becomes a :class:`CheckpointError` naming the file."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist; point at a .ckpt file, e.g. "
                              "<run dir>/checkpoints/best.ckpt or last.ckpt")
    if path.stat().st_size == 0:
        raise CheckpointError(f"checkpoint {path} is empty (0 bytes): the run was probably killed while saving it. "
                              "Use the other checkpoint in that folder (best.ckpt / last.ckpt) or retrain.")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        raise CheckpointError(f"checkpoint {path} holds Python objects that are not plain data, so it is not "
                              f"loaded (weights_only=True): {str(exc).splitlines()[0]}. Only load checkpoints "
                              "written by lit_vision; re-save it with plain hyperparameters.") from exc
    except Exception as exc:  # truncated zip, text file, legacy pickle garbage …: all "damaged" to the user
        raise CheckpointError(f"checkpoint {path} is damaged or not a PyTorch checkpoint ({type(exc).__name__}: "
                              f"{str(exc).splitlines()[0] if str(exc) else 'no detail'}). Use another checkpoint "
                              "of that run (best.ckpt / last.ckpt) or retrain.") from exc
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt:
        raise CheckpointError(f"checkpoint {path} is not a Lightning checkpoint (no 'state_dict'); "
                              "lit_vision reads the .ckpt files written under <run dir>/checkpoints/")
    return ckpt


def _check_lit_vision(path: Path, ckpt: Mapping[str, Any]) -> dict[str, Any]:
    hparams = dict(ckpt.get("hyper_parameters") or {})
    missing = [k for k in REQUIRED_HPARAMS if k not in hparams]
    if missing:
        raise CheckpointError(f"checkpoint {path} was not written by lit_vision's ImageClassifier (its "
                              f"hyperparameters lack {missing}); use a checkpoint from a lit_vision run.")
    return hparams


def check_compatible(path: str | Path, ckpt: Mapping[str, Any], model: torch.nn.Module) -> None:
    """Raise if the checkpoint's weights do not fit ``model`` (another net, another number of classes …)."""
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    found = {k: tuple(v.shape) for k, v in ckpt["state_dict"].items() if isinstance(v, torch.Tensor)}
    missing = sorted(set(expected) - set(found))
    unexpected = sorted(set(found) - set(expected))
    shapes = sorted(k for k in set(expected) & set(found) if expected[k] != found[k])
    if missing or unexpected or shapes:
        detail = "; ".join(part for part in (
            f"missing {missing[:5]}" if missing else "",
            f"unexpected {unexpected[:5]}" if unexpected else "",
            "shape mismatch " + ", ".join(f"{k}: {found[k]} vs {expected[k]}" for k in shapes[:5]) if shapes else "",
        ) if part)
        hp = ckpt.get("hyper_parameters") or {}
        net = hp.get("net") if isinstance(hp.get("net"), Mapping) else {}
        saved = net.get("name") or net.get("_target_", "?")
        raise CheckpointError(f"checkpoint {path} is from another model (net {saved}, classes "
                              f"{hp.get('class_names', '?')}) and does not fit this configuration: {detail}. "
                              "Use the same model=/data= options as the run that wrote it, or another checkpoint.")


def load_classifier(path: str | Path, map_location: str | torch.device = "cpu", eval: bool = True) -> ImageClassifier:
    """Rebuild the :class:`ImageClassifier` saved in a lit_vision checkpoint (weights_only, no pickled code).

    The model keeps its input spec (channels, size, mean/std), so ``model(x)`` accepts raw uint8 ``(N, C, H, W)``
    batches and preprocesses exactly as in training. Raises :class:`CheckpointError` for missing, empty,
    damaged or foreign files.
    """
    from lit_vision.training.classifier import ImageClassifier

    path = Path(path).expanduser()
    ckpt = read_checkpoint(path, map_location)
    hparams = _check_lit_vision(path, ckpt)
    hparams["compile"] = False  # compiling is a training-time choice
    hparams.setdefault("channels_last", False)  # checkpoints from before the setting existed: NCHW
    if isinstance(hparams.get("net"), Mapping) and ("pretrained" in hparams["net"] or "weights" in hparams["net"]):
        # pretrained backbones: the checkpoint holds the weights, never re-download or re-read the original file
        hparams["net"] = {**hparams["net"], "pretrained": False, "weights": None}
    try:
        model = ImageClassifier(**hparams)
    except (TypeError, LitVisionError, ValueError) as exc:
        raise CheckpointError(f"checkpoint {path} has hyperparameters this version of lit_vision cannot rebuild "
                              f"a model from: {exc}") from exc
    check_compatible(path, ckpt, model)
    model.load_state_dict(ckpt["state_dict"])
    model.to(map_location)
    return model.eval() if eval else model


# --- resuming --------------------------------------------------------------------------------------
def resume_candidates(run_dir: str | Path) -> list[Path]:
    """Checkpoints a run can continue from: ``checkpoints/last.ckpt`` and SLURM's ``hpc_ckpt_<n>.ckpt``."""
    run_dir = Path(run_dir)
    found = [run_dir / "checkpoints" / "last.ckpt", *run_dir.glob("hpc_ckpt_*.ckpt")]
    return [p for p in found if p.is_file() and p.stat().st_size > 0]


def next_hpc_checkpoint(run_dir: str | Path) -> Path:
    """Where the next SLURM requeue checkpoint goes: ``hpc_ckpt_<n+1>.ckpt`` after the highest ``n`` in the run dir
    (Lightning's naming, so its own ``hpc_ckpt`` lookup finds ours)."""
    numbers = [int(m.group(1)) for p in Path(run_dir).glob("hpc_ckpt_*.ckpt")
               if (m := re.fullmatch(r"hpc_ckpt_(\d+)\.ckpt", p.name))]
    return Path(run_dir) / f"hpc_ckpt_{max(numbers, default=0) + 1}.ckpt"


def resolve_ckpt_path(ckpt_path: str | None, run_dir: str | Path, quiet: bool = False) -> str | None:
    """Turn the ``ckpt_path`` config value into an explicit file (or ``None`` for a fresh start).

    - ``null``: fresh start, except in a requeued SLURM job (``SLURM_RESTART_COUNT`` > 0), which acts as ``auto``;
    - ``auto``: the newest of ``<run dir>/checkpoints/last.ckpt`` and ``<run dir>/hpc_ckpt_*.ckpt`` if any, else fresh;
    - ``last``: the same, but an error when there is nothing to resume (Lightning's own ``"last"`` silently
      starts from scratch when the checkpoint folder moved);
    - anything else: a checkpoint file that must exist.
    """
    if ckpt_path in (None, "", "null") and int(os.environ.get("SLURM_RESTART_COUNT", "0") or 0) > 0:
        ckpt_path = "auto"
    if ckpt_path in (None, "", "null"):
        return None
    if ckpt_path in ("auto", "last"):
        candidates = resume_candidates(run_dir)
        if candidates:
            newest = max(candidates, key=lambda p: p.stat().st_mtime)
            if not quiet:
                log.info("resuming from %s", newest)
            return str(newest)
        if ckpt_path == "auto":
            return None
        raise CheckpointNotFoundError(
            f"ckpt_path=last but {Path(run_dir) / 'checkpoints' / 'last.ckpt'} does not exist, so there is nothing "
            "to resume. Resume with resume=<run dir> (the folder holding checkpoints/), pass "
            "ckpt_path=<file.ckpt>, or drop ckpt_path to start fresh.")
    path = Path(str(ckpt_path)).expanduser()
    if not path.is_file():
        raise CheckpointNotFoundError(f"ckpt_path={ckpt_path} does not exist; pass an existing .ckpt file, "
                                      "ckpt_path=last (this run dir) or resume=<run dir>")
    return str(path.resolve())


def resume_run_dir(resume: str | None) -> Path | None:
    """Validate the ``resume=<run dir>`` shortcut: the folder must exist and hold a checkpoint."""
    if not resume:
        return None
    run_dir = Path(resume).expanduser().resolve()
    if not run_dir.is_dir():
        raise CheckpointNotFoundError(f"resume={resume}: no such run directory. Pass the folder of the run to "
                                      "continue, e.g. resume=outputs/train/runs/2026-01-01_12-00-00")
    if not resume_candidates(run_dir):
        raise CheckpointNotFoundError(
            f"resume={resume}: {run_dir}/checkpoints/last.ckpt does not exist: either this is not the run dir you "
            "meant (check the path: outputs/<task>/runs/<time>) or the run stopped before its first checkpoint "
            "(start it again without resume=)")
    return run_dir


def check_resume_checkpoint(path: str, model: torch.nn.Module) -> None:
    """Fail early, with the file named, when the checkpoint to resume from is damaged or from another model, or
    was written with Lightning's other optimisation mode (each keeps its own step count)."""
    ckpt = read_checkpoint(path)
    check_compatible(path, ckpt, model)
    problem = grouped_steps.check_checkpoint_mode(path, ckpt, model)
    if problem:
        raise CheckpointError(problem)


# --- never save NaN weights ------------------------------------------------------------------------
def weights_are_finite(module: torch.nn.Module) -> bool:
    """One device sync for all parameters: are they all finite?"""
    params = [p.detach() for p in module.parameters() if p.is_floating_point()]
    if not params:
        return True
    norms = torch._foreach_norm(params)
    return bool(math.isfinite(float(torch.stack(norms).sum())))


class FiniteModelCheckpoint(ModelCheckpoint):
    """A ModelCheckpoint that refuses to overwrite a good checkpoint with NaN/inf weights, and saves atomically.

    When training diverges, ``last.ckpt``/``best.ckpt`` keep the last good weights and the run stops with
    :class:`~lit_vision.training.losses.NonFiniteLossError` naming the step.
    """

    def _save_checkpoint(self, trainer: L.Trainer, filepath: str) -> None:
        if not weights_are_finite(trainer.lightning_module):
            log.warning("not saving %s: the weights contain NaN/inf at global step %d (the previous checkpoint is "
                        "kept)", filepath, trainer.global_step)
            return
        # write next to it, then rename: a kill (even SIGKILL) mid-write never leaves a truncated checkpoint
        partial = f"{filepath}.partial"
        super()._save_checkpoint(trainer, partial)
        if trainer.is_global_zero and os.path.exists(partial):
            os.replace(partial, filepath)
        self._last_checkpoint_saved = filepath
        # the log rows written so far go to disk with the checkpoint: a kill after it (SIGKILL, preemption) then
        # loses only rows the resumed run writes again (e.g. the learning rate logged when the epoch started)
        for logger in trainer.loggers:
            logger.save()


class LastCheckpoint(FiniteModelCheckpoint):
    """``last.ckpt`` after every epoch (whether or not val improved) and, optionally, every N optimizer steps.

    Lightning's ``save_last`` only rewrites ``last.ckpt`` when a top-k checkpoint was saved in the same step, so a
    run whose validation loss stopped improving would resume from a stale epoch. This callback always writes it;
    ``every_n_train_steps`` bounds what a kill mid-epoch (SIGKILL, preemption) loses.
    """

    def __init__(self, dirpath: str | None = None, every_n_train_steps: int | None = None,
                 filename: str = "last", **kwargs: Any) -> None:
        super().__init__(dirpath=dirpath, filename=filename, monitor=None, save_top_k=1, save_last=False,
                         enable_version_counter=False, auto_insert_metric_name=False, **kwargs)
        self.every_steps = int(every_n_train_steps or 0)

    @property
    def state_key(self) -> str:
        return self._generate_state_key(monitor=None, filename=self.filename)

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)
        if (self.every_steps and trainer.global_step % self.every_steps == 0
                and not self._should_skip_saving_checkpoint(trainer)):
            self._save_checkpoint(trainer, self.format_checkpoint_name({}))


__all__ = ["CheckpointError", "FiniteModelCheckpoint", "LastCheckpoint", "load_classifier", "read_checkpoint",
           "resolve_ckpt_path", "resume_run_dir", "check_compatible"]
