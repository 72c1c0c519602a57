"""Checks of single config values, shared by the up-front validation (:mod:`lit_vision.config`) and the objects
that are also used without Hydra (data module, classifier). Each raises :class:`ConfigError` naming the key."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import fields
from typing import Any, TypeVar

import numpy as np

from lit_vision.errors import ConfigError

T = TypeVar("T")


def integer(value: Any, key: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ConfigError(f"{key}={value!r} must be an integer; set it with {key}=<value>")
    return int(value)


def int_at_least(value: Any, key: str, minimum: int) -> int:
    if integer(value, key) < minimum:
        raise ConfigError(f"{key}={value!r} must be an integer >= {minimum}; set it with {key}=<value>")
    return int(value)


def number(value: Any, key: str) -> float:
    """Any finite number."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.number)) or not math.isfinite(value):
        raise ConfigError(f"{key}={value!r} must be a number; set it with {key}=<value>")
    return value


def one_of(value: Any, key: str, allowed: Sequence[Any]) -> Any:
    if value not in allowed:
        raise ConfigError(f"{key}={value!r} is not one of {list(allowed)}")
    return value


def folder_name(value: Any, key: str, example: str) -> str:
    """A name that is also a folder's name: letters, digits, ``_``, ``.`` and ``-``."""
    if not isinstance(value, str) or not re.fullmatch(r"[\w.\-]+", value) or value in (".", ".."):
        raise ConfigError(f"{key}={value!r} must be a name (letters, digits, _ . -), e.g. {key}={example}")
    return value


def positive_int(value: Any, key: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ConfigError(f"{key}={value!r} must be an integer >= 1; set it with {key}=<value>")
    return int(value)


def non_negative_int(value: Any, key: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise ConfigError(f"{key}={value!r} must be an integer >= 0; set it with {key}=<value>")
    return int(value)


def positive_int_or_auto(value: Any, key: str) -> int | str:
    """``auto`` (the code decides) or an integer >= 1."""
    return value if value == "auto" else positive_int(value, key)


def positive_number(value: Any, key: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.number)) or not math.isfinite(value) \
            or value <= 0:
        raise ConfigError(f"{key}={value!r} must be a positive number; set it with {key}=<value>")
    return float(value)


def non_negative_number(value: Any, key: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.number)) or not math.isfinite(value) \
            or value < 0:
        raise ConfigError(f"{key}={value!r} must be a number >= 0; set it with {key}=<value>")
    return float(value)


def fraction(value: Any, key: str) -> float:
    """A held-out fraction: a number strictly between 0 and 1."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.number)) or not 0.0 < float(value) < 1.0:
        raise ConfigError(f"{key}={value!r} must be a number strictly between 0 and 1 (e.g. {key}=0.1)")
    return float(value)


def fraction_list(value: Any, key: str) -> list[float]:
    """A list (maybe empty) of numbers in (0, 1], e.g. the validation accuracies of ``report.time_to``."""
    numbers = list(value) if isinstance(value, Sequence) and not isinstance(value, str) else None  # ListConfig too
    if numbers is None or any(isinstance(t, bool) or not isinstance(t, (int, float, np.number))
                              or not math.isfinite(t) or not 0.0 < float(t) <= 1.0 for t in numbers):
        raise ConfigError(f"{key}={value!r} must be a list of numbers in (0, 1], e.g. {key}=[0.8,0.9] "
                          f"({key}=[] for none)")
    return [float(t) for t in numbers]


def proportion(value: Any, key: str) -> float:
    """A share of something, 0 and 1 included (e.g. a warmup's share of the training steps)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.number)) or not 0.0 <= float(value) <= 1.0:
        raise ConfigError(f"{key}={value!r} must be a number from 0 to 1 (e.g. {key}=0.05)")
    return float(value)


def flag(value: Any, key: str) -> bool:
    """A switch: true or false (YAML booleans; a string such as ``maybe`` is refused, never read as true)."""
    if not isinstance(value, (bool, np.bool_)):
        raise ConfigError(f"{key}={value!r} must be true or false")
    return bool(value)


#: the seeds numpy, Python's ``random`` and torch all accept
MAX_SEED = 2**32 - 1


def seed_value(value: Any, key: str) -> int:
    """A random seed: an integer from 0 to 2**32 - 1 (what numpy accepts)."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not 0 <= value <= MAX_SEED:
        raise ConfigError(f"{key}={value!r} must be an integer from 0 to {MAX_SEED}; set it with {key}=<value>")
    return int(value)


def devices_value(value: Any, key: str) -> Any:
    """Lightning's ``devices``: ``auto``, ``-1`` (all), a count >= 1, or which ones (``[0, 1]`` or ``"0,1"``)."""
    def integer(v: Any) -> int | None:
        if isinstance(v, str) and v.strip().lstrip("-").isdigit():
            return int(v)
        return int(v) if isinstance(v, (int, np.integer)) and not isinstance(v, bool) else None

    if isinstance(value, str) and "," in value:
        indices = [integer(v) for v in value.strip(",").split(",")]
    elif isinstance(value, Sequence) and not isinstance(value, str):  # ListConfig too
        indices = [integer(v) for v in value]
    else:
        count = integer(value)
        if value == "auto" or (count is not None and (count >= 1 or count == -1)):
            return value
        indices = []
    if indices and all(i is not None and i >= 0 for i in indices):
        return value
    raise ConfigError(f"{key}={value!r} is not a device choice; use {key}=auto, {key}=-1 (all), a count such as "
                      f"{key}=2, or the indices as {key}=[0,1]")


def positive_int_list(value: Any, key: str) -> list[int]:
    """A list (maybe empty) of integers >= 1, e.g. the hidden widths of a dense head."""
    items = list(value) if isinstance(value, Sequence) and not isinstance(value, str) else None  # ListConfig too
    if items is None or any(isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1 for v in items):
        raise ConfigError(f"{key}={value!r} must be a list of integers >= 1, e.g. {key}=[256] ({key}=[] for none)")
    return [int(v) for v in items]


def build_settings(cls: type[T], values: Mapping[str, Any], key: str, what: str) -> T:
    """The dataclass ``cls`` from a config mapping at ``key``; an unknown key is a :class:`ConfigError` naming it
    and listing the accepted ones (``what`` says what the keys are, e.g. "a mapping setting")."""
    accepted = [f.name for f in fields(cls)]
    unknown = sorted(set(values) - set(accepted))
    if unknown:
        raise ConfigError(f"{key}.{unknown[0]} is not {what}; the accepted keys are {', '.join(accepted)}")
    return cls(**values)
