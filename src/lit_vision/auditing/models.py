"""The nets an audit needs: one trained on the whole training split (embeddings; out-of-sample probabilities for
val and test) and one per cross-validation fold (out-of-sample probabilities for the training split).

Each is an ordinary ``python -m lit_vision.train`` run in its own folder under the audit's directory, started as a
subprocess with the audited data's overrides plus ``audit.train`` (a fast recipe); a fold's images are left out with
``data.exclude``. A run that finished is reused and one that was killed resumes from its ``last.ckpt``
(``ckpt_path=auto``), so an audit killed mid-way loses at most the epoch in progress.
"""

from __future__ import annotations

import hashlib
import logging
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from lit_vision.errors import ConfigError, LitVisionError
from lit_vision.runs.records import RunDir

log = logging.getLogger("lit_vision.audit")


class AuditTrainingError(LitVisionError):
    """A training run the audit started failed; the message names its folder and log."""


def fold_of(labels: np.ndarray, folds: int, seed: int) -> np.ndarray:
    """Each row's fold, 0..folds-1: stratified (scikit-learn's ``StratifiedKFold``, shuffled with ``seed``)."""
    from sklearn.model_selection import StratifiedKFold

    counts = np.bincount(labels)
    smallest = int(counts[counts > 0].min()) if len(labels) else 0
    if folds < 2 or folds > smallest:
        raise ConfigError(f"audit.folds={folds}: use 2..{smallest} (every class needs an image in every fold; the "
                          f"smallest class of the training split has {smallest})")
    assignment = np.empty(len(labels), dtype=np.int64)
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    for fold, (_, held_out) in enumerate(splitter.split(np.zeros(len(labels)), labels)):
        assignment[held_out] = fold
    return assignment


def train_run(run_dir: Path, data_overrides: Sequence[str], recipe: Sequence[str],
              exclude: Path | None = None) -> Path:
    """Train (or reuse, or resume) one run in ``run_dir``; return its best checkpoint."""
    run = RunDir(run_dir)
    if run.finished and run.checkpoint() is not None:
        log.info("reusing the finished run %s", run_dir)
        return run.checkpoint()  # type: ignore[return-value]
    argv = [sys.executable, "-m", "lit_vision.train", *data_overrides, *recipe, f"hydra.run.dir={run_dir}",
            "ckpt_path=auto", "test=false", "report.plots=false", "report.operating_point=null", "logger=csv"]
    if exclude is not None:
        argv.append(f"data.exclude={exclude}")
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "audit_command.txt").write_text(" ".join(argv[1:]) + "\n")
    log.info("training %s", run_dir)
    result = subprocess.run(argv, check=False)
    if result.returncode != 0 or run.checkpoint() is None:
        raise AuditTrainingError(f"the audit's training run in {run_dir} failed (exit {result.returncode}); its log "
                                 f"is {run_dir / 'train.log'}. Fix the cause (audit.train={list(recipe)}) and run "
                                 "the audit again with resume=<this audit's folder>: finished runs are kept")
    return run.checkpoint()  # type: ignore[return-value]


def write_fold_exclude(path: Path, items: Sequence[str], extra: Sequence[str] = ()) -> Path:
    """The list of a fold's training images (plus any the user excluded), one per line, for ``data.exclude``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text("".join(f"{item}\n" for item in (*extra, *items)))
    tmp.replace(path)
    return path


def out_of_fold(probs_by_fold: dict[int, tuple[np.ndarray, np.ndarray]], n: int, k: int) -> np.ndarray:
    """Assemble ``(N, K)`` probabilities from each fold's (rows, probabilities)."""
    out = np.full((n, k), np.nan, dtype=np.float32)
    for rows, probs in probs_by_fold.values():
        out[rows] = probs
    if np.isnan(out).any():
        raise AuditTrainingError("some training images got no out-of-fold probability (a fold is missing)")
    return out


def checkpoint_key(ckpt: Path) -> str:
    """A short name for one checkpoint file (its resolved path, size and modification time)."""
    stat = ckpt.stat()
    return hashlib.sha1(f"{ckpt.resolve()}|{stat.st_size}|{stat.st_mtime_ns}".encode()).hexdigest()[:12]


def cached_array(path: Path, compute: Any) -> np.ndarray:
    """``compute()`` saved as ``path`` (.npy), or the saved array when it is there: a resumed audit skips it."""
    if path.is_file():
        return np.load(path)
    value = np.asarray(compute())
    tmp = path.with_suffix(".tmp.npy")
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(tmp, value)
    tmp.replace(path)
    return value
