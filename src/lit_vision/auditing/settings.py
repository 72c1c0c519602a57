"""``audit.*``: what an audit checks and how (defaults: ``conf/audit.yaml``, stated there once)."""

from __future__ import annotations

import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from lit_vision.checks import build_settings, positive_int, positive_number
from lit_vision.errors import ConfigError

#: every check, in the order the audit runs them; the last three need a trained net
CHECKS = ("duplicates", "quality", "near_duplicates", "outliers", "label_issues")
MODEL_CHECKS = ("near_duplicates", "outliers", "label_issues")


@dataclass(frozen=True)
class AuditSettings:
    """checks: which of :data:`CHECKS` to run. folds: cross-validation folds for the training split's label issues.
    train: ``python -m lit_vision.train`` overrides of the fast recipe the audit trains with. hash_distance: the
    most perceptual-hash bits (of 64) in which near-duplicates differ. thumbnail_factor: a hash pair counts when its
    8x8 thumbnails are closer than this x the median nearest-neighbour thumbnail distance. near_factor: a neighbour in
    the net's instance features (:mod:`~lit_vision.auditing.features`) closer than this x the median
    nearest-neighbour distance is a near-duplicate. outlier_factor: an image whose mean
    distance to its ``neighbours`` nearest training images exceeds this x the median is an outlier. batch_size:
    images per forward pass. grid: the most findings per picture. quality: :class:`QualitySettings`."""

    checks: Sequence[str]
    folds: int
    train: Sequence[str]
    hash_distance: int
    thumbnail_factor: float
    near_factor: float
    outlier_factor: float
    neighbours: int
    batch_size: int
    grid: int
    quality: Mapping[str, Any]

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> AuditSettings:
        values = dict(values)
        if isinstance(values.get("train"), str):  # audit.train='model=cnn trainer.max_epochs=8': one line
            values["train"] = shlex.split(values["train"])
        settings = build_settings(cls, values, "audit", "an audit setting")
        settings.check()
        return settings

    def check(self) -> None:
        from lit_vision.auditing.quality import QualitySettings

        unknown = [c for c in self.checks if c not in CHECKS]
        if isinstance(self.checks, str) or unknown or not self.checks:
            raise ConfigError(f"audit.checks={list(self.checks) if not isinstance(self.checks, str) else self.checks}"
                              f": give a non-empty list of {list(CHECKS)}, e.g. audit.checks=[duplicates,quality]")
        positive_int(self.folds, "audit.folds")
        if self.folds < 2:
            raise ConfigError(f"audit.folds={self.folds}: cross-validation needs at least 2 folds")
        if not all(isinstance(t, str) and ("=" in t or t.startswith("~")) for t in self.train):
            raise ConfigError(f"audit.train={list(self.train)!r}: give training overrides (key=value, ~key) as one "
                              "line, e.g. \"audit.train='model=cnn trainer.max_epochs=8'\"")
        positive_int(self.hash_distance, "audit.hash_distance")
        if self.hash_distance >= 32:
            raise ConfigError(f"audit.hash_distance={self.hash_distance}: unrelated images differ in about 32 of the "
                              "64 bits; near-duplicates in a few (default 4)")
        for key in ("thumbnail_factor", "near_factor", "outlier_factor"):
            positive_number(getattr(self, key), f"audit.{key}")
        for key in ("neighbours", "batch_size", "grid"):
            positive_int(getattr(self, key), f"audit.{key}")
        QualitySettings.from_mapping(dict(self.quality))

    def wants(self, check: str) -> bool:
        return check in self.checks

    @property
    def needs_model(self) -> bool:
        return any(c in self.checks for c in MODEL_CHECKS)
