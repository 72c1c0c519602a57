"""A timm backbone (VGG16 by default) with notebook 004's head: flatten → dense 256 ReLU → dropout 0.5 → output.

Weights, in order of precedence:

* ``weights=<file>``: a local state dict — a torchvision ``.pth`` (e.g. ``vgg16-397923af.pth``) or a timm
  ``.safetensors`` / ``.pth``, or a backbone file written by :func:`export_backbone`. Works offline; loaded through
  timm (``pretrained_cfg_overlay=dict(file=...)``), which also maps torchvision key names and adapts the first
  conv to 1-channel inputs.
* ``pretrained=true``: timm downloads the ImageNet weights (online users; cached by Hugging Face hub).
* neither: random initialisation.

The backbone is frozen by default and then kept in eval mode (no BatchNorm statistic updates, no dropout), and
its output is cached per image (``cache_features``) on a CPU: a frozen backbone computes the same features every
epoch, so only the first epoch pays for it and later epochs train the head alone. The cache keys images by their
bytes on the host, so on a GPU it would read every batch back (a host sync per step) to save a forward pass the
GPU does in less time: there the backbone runs every batch. ``freeze=false`` fine-tunes
everything; ``trainable_blocks=N`` fine-tunes only the last N blocks (timm's coarse parameter groups).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from lit_vision.checks import flag, non_negative_int, positive_number
from lit_vision.errors import ConfigError, LitVisionError
from lit_vision.models.layers import dense_stack
from lit_vision.models.registry import register_model

log = logging.getLogger(__name__)

WEIGHT_SUFFIXES = (".pth", ".pt", ".bin", ".safetensors")


class WeightsError(LitVisionError):
    """Pretrained weights cannot be had: offline without a file, or a file that does not fit the backbone."""


def _timm() -> Any:
    import timm

    return timm


def _check_name(name: str) -> None:
    timm = _timm()
    arch = name.split(".", 1)[0]
    if not timm.is_model(arch):
        close = timm.list_models(f"*{arch[:4]}*")[:8]
        raise ConfigError(f"model.net.backbone={name!r} is not a timm model name; e.g. vgg16, resnet18, "
                          f"efficientnet_b0 (similar names: {close})")


def _download_error(name: str, exc: Exception) -> WeightsError:
    return WeightsError(
        f"could not get pretrained weights for timm backbone {name!r} ({type(exc).__name__}: "
        f"{str(exc).splitlines()[0] if str(exc) else 'no detail'}).\n"
        "Two ways out:\n"
        f"  1. online: run once with internet access (model.net.pretrained=true downloads {name} from the "
        "Hugging Face hub into its cache, later runs reuse the cache);\n"
        "  2. offline: point model.net.weights=/path/to/file at a local state dict — a torchvision .pth "
        f"(e.g. vgg16-397923af.pth), a timm .safetensors, or a backbone exported with "
        "`python -m lit_vision.export_backbone <run>/checkpoints/best.ckpt <file>.safetensors`.\n"
        "Or train from random weights with model.net.pretrained=false.")


def _verify_file(backbone: nn.Module, path: Path, name: str) -> None:
    """Fail when the file holds none of this backbone's weights; warn about the ones it lacks."""
    from timm.models import load_state_dict

    found = set(load_state_dict(str(path), weights_only=True))
    wanted = set(backbone.state_dict())
    missing = sorted(wanted - found)
    if len(missing) == len(wanted):
        raise WeightsError(f"model.net.weights={path} holds none of the weights of backbone {name!r} (its keys look "
                           f"like {sorted(found)[:3]}); pass a state dict of the same architecture or set "
                           "model.net.backbone to the file's architecture")
    if missing:
        log.warning("weights file %s lacks %d of %d backbone tensors (kept at random init): %s", path,
                    len(missing), len(wanted), missing[:5])


def _weights_file(weights: str) -> Path:
    """``model.net.weights``: an existing state-dict file."""
    path = Path(str(weights)).expanduser()
    if not path.is_file():
        raise WeightsError(f"model.net.weights={weights}: no such file. Point it at a torchvision .pth or timm "
                           ".safetensors state dict, or use model.net.pretrained=true on a machine with internet.")
    if path.suffix not in WEIGHT_SUFFIXES:
        raise WeightsError(f"model.net.weights={weights}: expected one of {WEIGHT_SUFFIXES} (a state dict)")
    return path


def create_backbone(name: str, in_chans: int, pretrained: bool = False, weights: str | None = None) -> nn.Module:
    """A timm model without its classifier (``num_classes=0``), weights from a file, the hub or random."""
    timm = _timm()
    _check_name(name)
    kwargs: dict[str, Any] = {"num_classes": 0, "in_chans": int(in_chans)}
    if weights:
        path = _weights_file(weights)
        try:
            # strict=False: the file may lack head-only modules (VGG's pre-logits MLP) that are pruned below
            backbone = timm.create_model(name, pretrained=True, pretrained_cfg_overlay={"file": str(path)},
                                         pretrained_strict=False, **kwargs)
        except (RuntimeError, ValueError, OSError, KeyError) as exc:
            raise WeightsError(f"model.net.weights={path} does not fit backbone {name!r} with in_chans={in_chans}: "
                               f"{str(exc).splitlines()[0]}") from exc
        _verify_file(_prune_head(backbone), path, name)
        log.info("backbone %s: weights from %s", name, path)
        return backbone
    if pretrained:
        try:
            backbone = timm.create_model(name, pretrained=True, **kwargs)
        except Exception as exc:  # noqa: BLE001 - hub/URL/offline errors come in many types
            raise _download_error(name, exc) from exc
        return _prune_head(backbone)
    return _prune_head(timm.create_model(name, pretrained=False, **kwargs))


def _prune_head(backbone: nn.Module) -> nn.Module:
    """Drop modules only the original classifier used (VGG16's 119M-parameter pre-logits MLP)."""
    prune = getattr(backbone, "prune_intermediate_layers", None)
    if prune is not None and not getattr(backbone, "_lit_pruned", False):
        try:
            prune(indices=1, prune_norm=False, prune_head=True)
        except (NotImplementedError, AssertionError, TypeError, AttributeError):
            pass
        backbone._lit_pruned = True  # type: ignore[attr-defined]
    return backbone


def block_groups(backbone: nn.Module) -> list[list[str]]:
    """Parameter names grouped by block (timm's coarse group matcher), input side first."""
    matcher = getattr(backbone, "group_matcher", None)
    if matcher is None:
        return [[n] for n, _ in backbone.named_parameters()]
    from timm.models import group_parameters

    groups = group_parameters(backbone, matcher(coarse=True))
    return [list(groups[k]) for k in sorted(groups)]


def _check_freeze_epochs(freeze_epochs: Any, freeze: Any) -> int:
    epochs = non_negative_int(freeze_epochs, "model.net.freeze_epochs")
    if epochs and freeze:
        raise ConfigError(f"model.net.freeze_epochs={epochs} freezes the backbone for the first epochs and then trains "
                          "it, but model.net.freeze=true keeps it frozen throughout: set model.net.freeze=false")
    return epochs


class FeatureCache:
    """Backbone outputs keyed by a digest of each (preprocessed) input image; only valid for a frozen backbone."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = int(max_bytes)
        self.used = 0
        self.store: dict[bytes, torch.Tensor] = {}
        self.hits = 0
        self.misses = 0

    @staticmethod
    def keys(x: torch.Tensor) -> list[bytes]:
        flat = x.detach().to("cpu", torch.float32).contiguous().view(len(x), -1).numpy()
        return [hashlib.blake2b(row.tobytes(), digest_size=16).digest() for row in flat]

    def __call__(self, fn: Any, x: torch.Tensor) -> torch.Tensor:
        keys = self.keys(x)
        todo = [i for i, k in enumerate(keys) if k not in self.store]
        self.hits += len(keys) - len(todo)
        self.misses += len(todo)
        if todo:
            fresh = fn(x[todo]).float()
            for i, feat in zip(todo, fresh):
                if self.used + feat.numel() * 4 <= self.max_bytes:
                    self.store[keys[i]] = feat.detach().cpu()
                    self.used += feat.numel() * 4
            if len(todo) == len(keys):
                return fresh
            got = dict(zip(todo, fresh))
        else:
            got = {}
        return torch.stack([got[i] if i in got else self.store[k].to(x.device) for i, k in enumerate(keys)])


@register_model("timm")
class TimmNet(nn.Module):
    """timm backbone + dense head. ``forward_features`` is the head's hidden layer (the embedding)."""

    def __init__(self, in_chans: int, input_size: Sequence[int], num_outputs: int, backbone: str = "vgg16",
                 pretrained: bool = False, weights: str | None = None, freeze: bool = True,
                 trainable_blocks: int = 0, hidden: Sequence[int] = (256,), dropout: float = 0.5,
                 cache_features: bool = True, cache_max_gb: float = 2.0, freeze_epochs: int = 0,
                 pool: bool = False) -> None:
        super().__init__()
        self.backbone_name = backbone
        self.backbone = create_backbone(backbone, in_chans, pretrained, weights)
        # pool: the backbone's own global pooling (timm's forward_head, pre-logits) — what fine-tuning at photo size
        # wants; off: notebook 004's flatten of VGG16's whole feature map
        self.pool = flag(pool, "model.net.pool")
        self.frozen = bool(freeze) and int(trainable_blocks) == 0
        self.freeze_epochs = _check_freeze_epochs(freeze_epochs, freeze)
        self.warming_up = False  # the head alone trains during the first freeze_epochs epochs (start_epoch)
        if freeze and not (pretrained or weights):
            log.warning("backbone %s is frozen with RANDOM weights: set model.net.pretrained=true (online) or "
                        "model.net.weights=<file> (offline), or fine-tune with model.net.freeze=false", backbone)
        self._set_trainable(bool(freeze), int(trainable_blocks))
        with torch.no_grad():
            was = self.backbone.training
            self.backbone.eval()
            flat = self._features(torch.zeros(1, int(in_chans), *map(int, input_size))).numel()
            self.backbone.train(was)
        stack = dense_stack(flat, list(hidden), num_outputs, float(dropout))
        self.head = nn.Sequential(nn.Flatten(), *list(stack)[:-1])
        self.classifier = stack[-1]
        self.num_features = self.classifier.in_features
        self.cache = FeatureCache(int(cache_max_gb * 2**30)) if (cache_features and self.frozen) else None
        if self.frozen:
            self.backbone.eval()

    def _set_trainable(self, freeze: bool, trainable_blocks: int) -> None:
        if not freeze:
            return
        for p in self.backbone.parameters():
            p.requires_grad_(False)
        if trainable_blocks:
            groups = block_groups(self.backbone)
            if trainable_blocks > len(groups):
                raise ConfigError(f"model.net.trainable_blocks={trainable_blocks} but {self.backbone_name} has "
                                  f"{len(groups)} blocks; use 1..{len(groups)} or model.net.freeze=false")
            names = {n for g in groups[-trainable_blocks:] for n in g}
            for n, p in self.backbone.named_parameters():
                p.requires_grad_(n in names)

    def start_epoch(self, epoch: int) -> None:
        """Called by the classifier at each training epoch's start (resumed epochs included): the backbone is frozen
        for the first ``freeze_epochs`` epochs — the new head learns on stable features, and does not send its
        random early gradients into the pretrained weights — then trained. Its parameters stay in the optimizer
        throughout; while frozen they get no gradient, so the optimizer leaves them (and their decay) alone."""
        warming_up = epoch < self.freeze_epochs
        if warming_up != self.warming_up:
            log.info("epoch %d: backbone %s %s", epoch, self.backbone_name,
                     "frozen (the head trains alone)" if warming_up else "unfrozen (fine-tuning everything)")
        self.warming_up = warming_up
        for p in self.backbone.parameters():
            p.requires_grad_(not warming_up)
        self.train(self.training)

    def train(self, mode: bool = True) -> TimmNet:
        super().train(mode)
        if self.frozen or self.warming_up:
            self.backbone.eval()  # frozen: BatchNorm keeps its statistics, dropout stays off
        return self

    def _features(self, x: torch.Tensor) -> torch.Tensor:
        features = self.backbone.forward_features(x)
        return self.backbone.forward_head(features, pre_logits=True) if self.pool else features

    def backbone_features(self, x: torch.Tensor) -> torch.Tensor:
        if self.warming_up:
            with torch.no_grad():
                return self._features(x)
        if not self.frozen:
            return self._features(x)
        with torch.no_grad():
            if self.cache is None or x.device.type != "cpu":
                return self._features(x)
            return self.cache(self._features, x)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The penultimate-layer embedding (dense 256 after ReLU/dropout), as XGBoost on embeddings uses it."""
        return self.head(self.backbone_features(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.forward_features(x))

    @staticmethod
    def check_config(args: Mapping[str, Any], in_chans: int, input_size: Sequence[int] | None,
                     num_outputs: int) -> None:
        """``model.net`` checked without building (:func:`~lit_vision.models.registry.check_spec`): building would
        download or load the weights and allocate the backbone."""
        _check_name(str(args.get("backbone", "vgg16")))
        flag(args.get("pretrained", False), "model.net.pretrained")
        flag(args.get("freeze", True), "model.net.freeze")
        flag(args.get("cache_features", True), "model.net.cache_features")
        flag(args.get("pool", False), "model.net.pool")
        if args.get("weights"):
            _weights_file(args["weights"])
        non_negative_int(args.get("trainable_blocks", 0), "model.net.trainable_blocks")
        _check_freeze_epochs(args.get("freeze_epochs", 0), args.get("freeze", True))
        positive_number(args.get("cache_max_gb", 2.0), "model.net.cache_max_gb")
        dense_stack(1, args.get("hidden", (256,)), 1, args.get("dropout", 0.5))  # the head's options, on one input

    @staticmethod
    def data_config(net_cfg: Mapping[str, Any], in_chans: int) -> dict[str, Any]:
        """The backbone's own normalisation and input size (timm's pretrained config), for ``builders.input_spec``."""
        from timm.data import resolve_data_config

        name = str(net_cfg.get("backbone", "vgg16"))
        _check_name(name)
        cfg = _timm().models.get_pretrained_cfg(name)
        data = resolve_data_config(pretrained_cfg=cfg.to_dict() if cfg is not None else {})
        mean, std = [float(m) for m in data["mean"]], [float(s) for s in data["std"]]
        if int(in_chans) != len(mean):
            mean, std = [sum(mean) / len(mean)] * int(in_chans), [sum(std) / len(std)] * int(in_chans)
        return {"mean": mean, "std": std, "image_size": [int(s) for s in data["input_size"][-2:]]}
