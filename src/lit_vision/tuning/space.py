"""A search space as written in ``conf/hparams_search/*.yaml`` (``tune.space``), checked and sampled.

One entry per config key to tune::

    model.optimizer.lr: {type: float, low: 1.0e-4, high: 1.0e-1, log: true}
    model.net.head.dropout: {type: float, low: 0.0, high: 0.5}
    model.conv1_filters: {type: int, low: 16, high: 64, step: 16}
    data.batch_size: {type: categorical, choices: [32, 64, 128]}
    model.scheduler.warmup_fraction: {type: float, low: 0.0, high: 0.2, when: {model.scheduler.name: warmup_cosine}}

``when`` makes an entry conditional: it is sampled only in trials whose other sampled keys have those values
(one value or a list of them), and left at the config's own value otherwise.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import optuna
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
    distribution_to_json,
)

from lit_vision.checks import flag, integer, number, positive_int, positive_number
from lit_vision.errors import ConfigError

ENTRY_KEYS = {"float": {"low", "high", "log", "step"}, "int": {"low", "high", "log", "step"},
              "categorical": {"choices"}}


@dataclass(frozen=True)
class Param:
    """One tuned key: its distribution and the condition under which it is sampled."""

    key: str
    distribution: BaseDistribution
    when: dict[str, list[Any]] = field(default_factory=dict)

    def active(self, sampled: Mapping[str, Any]) -> bool:
        return all(sampled.get(k) in values for k, values in self.when.items())


def parse_param(key: str, entry: Any) -> Param:
    where = f"tune.space.{key}"
    if not isinstance(entry, Mapping) or entry.get("type") not in ENTRY_KEYS:
        raise ConfigError(f"{where}={entry!r}: write {{type: float|int|categorical, ...}}, e.g. "
                          "{type: float, low: 0.0, high: 0.5} or {type: categorical, choices: [32, 64]}")
    kind = entry["type"]
    unknown = sorted(set(entry) - ENTRY_KEYS[kind] - {"type", "when"})
    if unknown:
        raise ConfigError(f"{where}: a {kind} entry does not take {unknown}; it takes {sorted(ENTRY_KEYS[kind])}")
    when = {str(k): list(v) if isinstance(v, (list, tuple)) else [v] for k, v in (entry.get("when") or {}).items()}
    if kind == "categorical":
        choices = entry.get("choices")
        if not isinstance(choices, (list, tuple)) or not choices:
            raise ConfigError(f"{where}.choices={choices!r} must be a non-empty list")
        return Param(key, CategoricalDistribution([_hashable(c) for c in choices]), when)
    numeric = integer if kind == "int" else number
    low, high = numeric(entry.get("low"), f"{where}.low"), numeric(entry.get("high"), f"{where}.high")
    log, step = flag(entry.get("log", False), f"{where}.log"), entry.get("step")
    if not low < high:
        raise ConfigError(f"{where}: the range [{low}, {high}] is empty; set low < high")
    if log and low <= 0:
        raise ConfigError(f"{where}.low={low}: a log range needs low > 0")
    if log and step is not None:
        raise ConfigError(f"{where}: log and step cannot be combined; drop one")
    if kind == "int":
        step = 1 if step is None else positive_int(step, f"{where}.step")
        return Param(key, IntDistribution(int(low), int(high), log=log, step=step), when)
    if step is not None:
        positive_number(step, f"{where}.step")
    return Param(key, FloatDistribution(float(low), float(high), log=log, step=step), when)


def _hashable(value: Any) -> Any:
    """Optuna's categorical choices must be None, bool, int, float or str: a list (e.g. hidden widths [256, 128]) is
    kept as its text, turned back into a list by :func:`from_choice`."""
    return repr(list(value)) if isinstance(value, (list, tuple)) else value


def from_choice(value: Any) -> Any:
    if isinstance(value, str) and value.startswith("["):
        import ast

        return ast.literal_eval(value)
    return value


@dataclass(frozen=True)
class SearchSpace:
    params: tuple[Param, ...]

    @classmethod
    def parse(cls, space: Mapping[str, Any] | None) -> SearchSpace:
        if not space:
            raise ConfigError("tune.space is empty: pick a search space with hparams_search=<name> "
                              "(conf/hparams_search/) or write tune.space entries")
        params = tuple(parse_param(str(k), v) for k, v in space.items())
        keys = {p.key for p in params}
        for p in params:
            for cond in p.when:
                if cond not in keys or cond == p.key:
                    raise ConfigError(f"tune.space.{p.key}.when names {cond}, which is not another key of tune.space; "
                                      f"condition on one of {sorted(keys - {p.key})}")
        return cls(_dependency_order(params))

    def suggest(self, trial: optuna.Trial) -> dict[str, Any]:
        """The trial's values of every active key (conditions first), config-ready (lists restored)."""
        sampled: dict[str, Any] = {}
        for p in self.params:
            if p.active(sampled):
                sampled[p.key] = _suggest(trial, p)
        return {k: from_choice(v) for k, v in sampled.items()}

    def corners(self) -> list[dict[str, Any]]:
        """A few assignments that together give every key its extremes (every choice): what the up-front check
        composes, so a value the training would refuse is found before the first trial."""
        out: list[dict[str, Any]] = []
        for p in self.params:
            d = p.distribution
            values = d.choices if isinstance(d, CategoricalDistribution) else (d.low, d.high)
            for i, v in enumerate(values):
                while len(out) <= i:
                    out.append({})
                out[i][p.key] = from_choice(v)
        return out

    def describe(self) -> dict[str, str]:
        """Key → the distribution as JSON (what a study stores to refuse a reuse with another space)."""
        return {p.key: distribution_to_json(p.distribution) + (f" when {p.when}" if p.when else "")
                for p in self.params}


def _suggest(trial: optuna.Trial, p: Param) -> Any:
    d = p.distribution
    if isinstance(d, CategoricalDistribution):
        return trial.suggest_categorical(p.key, d.choices)
    if isinstance(d, IntDistribution):
        return trial.suggest_int(p.key, d.low, d.high, step=d.step, log=d.log)
    return trial.suggest_float(p.key, d.low, d.high, step=d.step, log=d.log)


def _dependency_order(params: tuple[Param, ...]) -> tuple[Param, ...]:
    ordered: list[Param] = []
    pending = list(params)
    while pending:
        ready = [p for p in pending if all(c in {o.key for o in ordered} for c in p.when)]
        if not ready:
            raise ConfigError(f"tune.space: the conditions of {[p.key for p in pending]} depend on each other in a "
                              "circle; make one of them unconditional")
        ordered += ready
        pending = [p for p in pending if p not in ready]
    return tuple(ordered)
