"""One registry of nets, by stable name (timm's ``register_model`` idea).

Configs and checkpoints name a net (``net: {name: convnet, features: [...]}``), never its Python import path,
so moving or renaming a class does not orphan a saved checkpoint. Every net takes ``in_chans``,
``input_size`` and ``num_outputs`` (filled in from the data) and exposes ``forward_features``.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

import torch
import torch.nn as nn

from lit_vision.errors import ConfigError

NetClass = TypeVar("NetClass", bound=type[nn.Module])

_NETS: dict[str, type[nn.Module]] = {}

#: arguments every net receives from the data, not from its config
DATA_ARGS = ("in_chans", "input_size", "num_outputs")

#: ``_target_`` import paths stored by checkpoints written before the registry existed
LEGACY_TARGETS = {
    "lit_vision.models.ConvNet": "convnet",
    "lit_vision.models.convnet.ConvNet": "convnet",
    "lit_vision.models.MLP": "mlp",
    "lit_vision.models.mlp.MLP": "mlp",
    "lit_vision.models.pretrained.TimmNet": "timm",
}


def register_model(name: str) -> Callable[[NetClass], NetClass]:
    """Class decorator: make a net available as ``net: {name: <name>, ...}``."""
    def wrap(cls: NetClass) -> NetClass:
        if name in _NETS and _NETS[name] is not cls:
            raise ValueError(f"net name {name!r} is already registered by {_NETS[name].__qualname__}")
        _NETS[name] = cls
        return cls
    return wrap


def list_models() -> list[str]:
    return sorted(_NETS)


def net_class(name: str) -> type[nn.Module]:
    if name not in _NETS:
        raise ConfigError(f"model.net.name={name!r} is not a registered net; choose one of {list_models()}")
    return _NETS[name]


def canonical_spec(spec: Mapping[str, Any]) -> dict[str, Any]:
    """``{name: ..., **args}``; a pre-registry ``{_target_: lit_vision.models.ConvNet, ...}`` is translated."""
    spec = dict(spec)
    target = spec.pop("_target_", None)
    if target is not None and "name" not in spec:
        if target not in LEGACY_TARGETS:
            raise ConfigError(f"model.net._target_={target!r} is not a lit_vision net; configs name nets with "
                              f"model.net.name (one of {list_models()})")
        spec["name"] = LEGACY_TARGETS[target]
    if "name" not in spec:
        raise ConfigError(f"model.net has no name; set model.net.name to one of {list_models()}")
    return spec


def check_arguments(name: str, args: Mapping[str, Any]) -> None:
    """Refuse arguments the net does not take (a typo must not be silently dropped)."""
    params = inspect.signature(net_class(name).__init__).parameters
    unknown = sorted(set(args) - set(params) - {"self"})
    if unknown:
        allowed = sorted(set(params) - {"self", *DATA_ARGS})
        raise ConfigError(f"model.net (name={name}) does not take {unknown}; its options are {allowed}")


def create_net(spec: Mapping[str, Any], **data_args: Any) -> nn.Module:
    """Build the net named by ``spec['name']`` with the rest of ``spec`` plus ``data_args`` as arguments."""
    args = canonical_spec(spec)
    name = args.pop("name")
    args.update(data_args)
    check_arguments(name, args)
    return net_class(name)(**args)


def check_spec(spec: Mapping[str, Any], *, in_chans: int, input_size: Sequence[int] | None,
               num_outputs: int) -> None:
    """Check ``model.net`` before any data is read: the name, the arguments, and a dry build.

    A net class may define ``check_config(args, in_chans, input_size, num_outputs)`` (a static method) to check its
    own arguments without building (a pretrained backbone must not download or allocate here); any other net is
    built on the meta device (shapes only: no memory, no weights), when the input size is known. An error a net
    raises without naming a key becomes a :class:`ConfigError` naming ``model.net``."""
    args = canonical_spec(spec)
    name = args.pop("name")
    for key in DATA_ARGS:
        args.pop(key, None)
    check_arguments(name, args)
    cls = net_class(name)
    hook = getattr(cls, "check_config", None)
    try:
        if hook is not None:
            hook(args, int(in_chans), input_size, int(num_outputs))
        elif input_size is not None:
            with torch.device("meta"):
                cls(**args, in_chans=int(in_chans), input_size=list(input_size), num_outputs=int(num_outputs))
    except ConfigError:
        raise
    except (ValueError, TypeError, RuntimeError, ZeroDivisionError) as exc:
        shape = f"{in_chans}x{'x'.join(map(str, input_size))}" if input_size is not None else f"{in_chans}-channel"
        raise ConfigError(f"model.net (name={name}) cannot be built for {shape} inputs: "
                          f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}; fix its options "
                          f"{sorted(args)}") from exc
