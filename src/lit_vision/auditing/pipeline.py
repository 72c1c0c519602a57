"""One audit, step by step: hashes and pixel statistics, then (when a check needs one) a trained net's embeddings and
out-of-sample probabilities, then ``issues.csv``, ``summary.md``, ``summary.json`` and the pictures.

Everything slow is kept in the audit's folder as it is made (the nets' runs, embeddings, probabilities), so a
killed audit run again with ``resume=<its folder>`` picks up where it stopped.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from rich.progress import track

from lit_vision.auditing import duplicates, grids, models, outliers, summary
from lit_vision.auditing.features import instance_features, whitened
from lit_vision.auditing.findings import LABEL, Finding, leaks, write_issues
from lit_vision.auditing.hashing import content_hashes, perceptual_hashes, thumbnail_features
from lit_vision.auditing.label_issues import find_label_issues
from lit_vision.auditing.quality import QualitySettings, file_stats, image_stats, quality_issues
from lit_vision.auditing.settings import AuditSettings
from lit_vision.errors import ConfigError

log = logging.getLogger("lit_vision.audit")

CHUNK = 4096
#: the test images with a copy in the training split, alone (a small file for ``leak_free=``)
TEST_LEAKS = "test_leaks.csv"


@dataclass
class AuditSplit:
    """One source split as the audit reads it: images (uint8 (N, C, H, W), any array-like that slices), labels
    after the data config's mapping, each row's item name, and its source files ([] for array sources)."""

    images: Any
    labels: np.ndarray
    items: list[str]
    files: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.labels)


@dataclass
class TrainingPlan:
    """How the audit trains its nets: the audited data's own overrides, the user's exclusions (kept out of every
    net), the seed, and a given checkpoint to use instead of training the whole-train net."""

    data_overrides: list[str]
    excluded: list[str]
    seed: int
    checkpoint: Path | None = None


@dataclass
class AuditResult:
    findings: list[Finding]
    seconds: dict[str, float]
    files: list[Path]


class Clock:
    """Seconds per step, logged as each step ends."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextmanager
    def step(self, name: str) -> Iterator[None]:
        log.info("audit: %s ...", name)
        start = time.perf_counter()
        yield
        self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - start
        log.info("audit: %s done in %.1f s", name, time.perf_counter() - start)


def chunked(fn: Callable[[Any], Any], images: Any, what: str, chunk: int = CHUNK) -> list[Any]:
    """``fn`` over ``images`` in chunks, with a progress bar."""
    starts = range(0, len(images), chunk)
    return [fn(np.asarray(images[s:s + chunk]))  # asarray: shards decode a slice here
            for s in track(starts, description=what, total=len(starts), transient=True)]


def split_hashes(splits: Mapping[str, AuditSplit]) -> dict[str, duplicates.SplitHashes]:
    out = {}
    for name, split in splits.items():
        content = np.concatenate(chunked(content_hashes, split.images, f"hashing {name}"))
        perceptual = np.concatenate(chunked(perceptual_hashes, split.images, f"perceptual hashes {name}"))
        out[name] = duplicates.SplitHashes(split.items, content, perceptual)
    return out


def quality_findings(splits: Mapping[str, AuditSplit], settings: QualitySettings) -> list[Finding]:
    found = []
    for name, split in splits.items():
        parts = chunked(image_stats, split.images, f"pixel statistics {name}")
        stats = {key: np.concatenate([p[key] for p in parts]) for key in parts[0]}
        files = file_stats(split.files) if split.files else None
        for row, kind, score in quality_issues(stats, files, settings):
            found.append(Finding(split=name, item=split.items[row], kind=kind, score=float(score),
                                 detail=_quality_detail(kind, score), index=int(row)))
    return found


def _quality_detail(kind: str, score: float) -> str:
    words = {"blank": "pixel std", "dark": "mean brightness", "bright": "mean brightness",
             "blurry": "Laplacian variance x the median", "grayscale": "max channel difference",
             "tiny": "shorter side (px)", "aspect": "aspect ratio"}
    return f"{words.get(kind, kind)} {score:.3g}"


class NetSteps:
    """The steps that need trained nets: embeddings, out-of-sample probabilities (kept on disk as made)."""

    def __init__(self, out: Path, splits: Mapping[str, AuditSplit], class_names: Sequence[str],
                 settings: AuditSettings, plan: TrainingPlan, device: str) -> None:
        self.out, self.splits, self.class_names = out, splits, list(class_names)
        self.settings, self.plan, self.device = settings, plan, device
        self._model: Any = None
        self._cache = self.out / "cache"

    def load(self, ckpt: Path) -> Any:
        from lit_vision.training.checkpoints import load_classifier

        model = load_classifier(ckpt, map_location=self.device)
        if list(model.class_names) != self.class_names:
            raise ConfigError(f"checkpoint {ckpt} was trained on classes {list(model.class_names)}, but the audited "
                              f"data has {self.class_names}; pass the run of this data (or leave ckpt_path out to "
                              "let the audit train one)")
        channels = int(model.hparams.input_spec["channels"])
        data_channels = int(np.asarray(self.splits["train"].images[:1]).shape[1])
        if channels != data_channels:
            raise ConfigError(f"checkpoint {ckpt} takes {channels}-channel images, the audited data has "
                              f"{data_channels}; set data.channels={channels} or pass another checkpoint")
        return model

    @property
    def model(self) -> Any:
        """The net trained on the whole training split: the given checkpoint, or one trained here."""
        if self._model is None:
            ckpt = self.plan.checkpoint or models.train_run(self.out / "model", self.plan.data_overrides,
                                                            self.settings.train)
            self._model = self.load(ckpt)
            self._cache = self.out / "cache" / models.checkpoint_key(ckpt)
        return self._model

    @property
    def cache(self) -> Path:
        """Where this net's embeddings and probabilities are kept: one folder per checkpoint, so a resumed audit
        given another ``ckpt_path`` computes them again."""
        self.model  # noqa: B018 — sets the folder
        return self._cache

    def embeddings(self) -> dict[str, np.ndarray]:
        from lit_vision.models.boosting import embeddings

        def embed(split: AuditSplit, name: str) -> np.ndarray:
            return np.concatenate(chunked(lambda x: embeddings(self.model, x, self.settings.batch_size, self.device),
                                          split.images, f"embedding {name}"))

        return {name: models.cached_array(self.cache / f"embeddings_{name}.npy",
                                          lambda s=split, n=name: embed(s, n))
                for name, split in self.splits.items()}

    def instance_features(self) -> dict[str, np.ndarray]:
        """Each split's instance features (:mod:`~lit_vision.auditing.features`), kept as float16 (they are large:
        about 6,000 values an image for airbench)."""
        def compute(split: AuditSplit, name: str) -> np.ndarray:
            return np.concatenate(chunked(lambda x: instance_features(self.model, x, self.settings.batch_size,
                                                                      self.device).astype(np.float16),
                                          split.images, f"instance features {name}"))

        return {name: models.cached_array(self.cache / f"instance_features_{name}.npy",
                                          lambda s=split, n=name: compute(s, n))
                for name, split in self.splits.items()}

    def probabilities(self, model: Any, images: Any, what: str) -> np.ndarray:
        from lit_vision.deploy.checkpoint_backend import probabilities

        return np.concatenate(chunked(lambda x: probabilities(model, x, self.settings.batch_size), images, what))

    def held_out_probabilities(self, name: str) -> np.ndarray:
        """Out-of-sample probabilities: cross-validated for train, the whole-train net's for val and test."""
        if name != "train":
            return models.cached_array(self.cache / f"probabilities_{name}.npy", lambda: self.probabilities(
                self.model, self.splits[name].images, f"probabilities {name}"))
        return models.cached_array(self.out / "folds" / "probabilities_train.npy", self.cross_validated)

    def cross_validated(self) -> np.ndarray:
        train = self.splits["train"]
        fold = models.fold_of(train.labels, self.settings.folds, self.plan.seed)
        by_fold = {}
        for k in range(self.settings.folds):
            rows = np.flatnonzero(fold == k)
            folder = self.out / "folds" / f"fold_{k}"
            log.info("audit: fold %d of %d (%d held-out images)", k + 1, self.settings.folds, len(rows))

            def fold_probs(rows: np.ndarray = rows, folder: Path = folder, k: int = k) -> np.ndarray:
                exclude = models.write_fold_exclude(folder / "held_out.txt", [train.items[r] for r in rows],
                                                    self.plan.excluded)
                ckpt = models.train_run(folder / "run", [*self.plan.data_overrides, f"seed={self.plan.seed + k}"],
                                        self.settings.train, exclude)
                return self.probabilities(self.load(ckpt), _Rows(train.images, rows), f"probabilities fold {k}")

            by_fold[k] = (rows, models.cached_array(folder / "probabilities.npy", fold_probs))
        return models.out_of_fold(by_fold, len(train), len(self.class_names))


class _Rows:
    """Rows ``index`` of an array-like, sliceable in order (what :func:`chunked` needs) without copying it all."""

    def __init__(self, images: Any, index: np.ndarray) -> None:
        self.images, self.index = images, index

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, key: slice) -> np.ndarray:
        rows = self.index[key]
        if isinstance(self.images, np.ndarray):
            return self.images[rows]
        return np.stack([np.asarray(self.images[int(r)]) for r in rows])


def label_findings(name: str, split: AuditSplit, probs: np.ndarray, class_names: Sequence[str]) -> list[Finding]:
    issues = find_label_issues(split.labels, probs)
    return [Finding(split=name, item=split.items[row], kind=LABEL, score=float(issues.self_confidence[row]),
                    given=class_names[int(split.labels[row])], suggested=class_names[int(issues.suggested[row])],
                    confidence=float(probs[row, issues.suggested[row]]),
                    detail=f"P(given label) {issues.self_confidence[row]:.3f}", index=int(row))
            for row in issues.ranking]


def run_audit(splits: Mapping[str, AuditSplit], class_names: Sequence[str], settings: AuditSettings,
              plan: TrainingPlan, out: Path, device: str, describe: Mapping[str, Any],
              loaded_in: float = 0.0) -> AuditResult:
    """Run every check of ``settings`` on ``splits`` and write the audit's files into ``out``; ``loaded_in``: the
    seconds reading the data took (the first line of the summary's times)."""
    clock, found = Clock(), []
    clock.seconds["load the data"] = loaded_in
    out.mkdir(parents=True, exist_ok=True)
    pairs: dict = {}
    items = {name: split.items for name, split in splits.items()}
    thumbnails: dict[str, np.ndarray] = {}
    if settings.wants("duplicates"):
        with clock.step("thumbnails"):
            thumbnails = {name: np.concatenate(chunked(thumbnail_features, split.images, f"thumbnails {name}"))
                          for name, split in splits.items()}
    if settings.wants("duplicates"):
        with clock.step("duplicates (pixels, perceptual hash)"):
            pairs = duplicates.find_hash_pairs(split_hashes(splits), settings.hash_distance)
            duplicates.confirm_hash_pairs(pairs, thumbnails, settings.thumbnail_factor, device)
    if settings.wants("quality"):
        with clock.step("unusable images"):
            found += quality_findings(splits, QualitySettings.from_mapping(dict(settings.quality)))
    nets = NetSteps(out, splits, class_names, settings, plan, device)
    if settings.needs_model:
        with clock.step("the audit's net (trained on the training split)"):
            nets.model  # noqa: B018 — trains or loads it, timed on its own
    if settings.wants("near_duplicates"):
        with clock.step("instance features"):
            features = whitened(nets.instance_features())
        with clock.step("near-duplicates (instance features)"):
            neighbours = duplicates.nearest_distances(features, device)
            duplicates.add_embedding_pairs(pairs, neighbours, features, settings.near_factor)
    if settings.wants("outliers"):
        with clock.step("embeddings"):
            embedded = nets.embeddings()
        with clock.step("outliers"):
            scores = outliers.outlier_scores(embedded, settings.neighbours, device)
            found += outliers.find_outliers(scores, items, {n: s.labels for n, s in splits.items()},
                                            class_names, settings.outlier_factor)
    found += duplicates.to_findings(pairs, items)
    if settings.wants("label_issues"):
        for name, split in splits.items():
            with clock.step(f"label issues {name}" + (" (cross-validated)" if name == "train" else "")):
                found += label_findings(name, split, nets.held_out_probabilities(name), class_names)
    with clock.step("report"):
        files = [write_issues(out / "issues.csv", found), write_issues(out / TEST_LEAKS, leaks(found))]
        files += grids.write_grids(found, {n: s.images for n, s in splits.items()}, out, settings.grid)
    files += summary.write_summary(out, found, {n: len(s) for n, s in splits.items()}, settings, clock.seconds,
                                   describe)
    return AuditResult(found, clock.seconds, files)


def read_summary(out: Path) -> dict[str, Any]:
    return json.loads((out / summary.SUMMARY_JSON).read_text())
