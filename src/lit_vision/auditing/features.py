"""Instance features for the near-duplicate search: what a copy of one photo keeps of its original.

A classifier's last layer is the wrong place to look for copies: training pulls every image of a class towards one
point there, so two different horses are as close as a horse and its re-cropped copy. The earlier layers still
describe *this* image — its edges, textures and layout at each scale. The features here are the net's activation
maps at every resolution it computes (the first and the last nonlinearity's output at each map size), each averaged
to a coarse grid (at most :data:`POOLED_VALUES` values) and L2-normalised, side by side; then whitened by PCA fitted
on the training split (:func:`whitened`), which evens out the few directions every image varies along, so that the
rare agreement of a copy stands out (the usual step of instance retrieval).

On CIFAR-10 with the audit's 5-epoch net, the nearest training image in these features finds 84% of ciFAIR's
hand-judged test/train near-duplicates (docs/audit.md has the figures and the command).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

#: the most values one activation map keeps after pooling: a g x g grid per channel with channels x g² <= this
POOLED_VALUES = 1024
#: dimensions the whitening keeps (fewer when the training split or the features have fewer)
WHITENED_DIMS = 512
#: whitening directions whose spread is below this share of the largest are dropped (noise, not signal)
MIN_SPREAD = 1e-4


def pooled_grid(channels: int, height: int, width: int) -> int:
    """The side of the grid an activation map is averaged to: the largest g with channels x g² <= POOLED_VALUES."""
    g = max(1, min(height, width))
    while g > 1 and channels * g * g > POOLED_VALUES:
        g -= 1
    return g


def _is_activation(module: torch.nn.Module) -> bool:
    return type(module).__module__ == torch.nn.modules.activation.__name__


def _first_and_last_per_size(maps: list[tuple[tuple[int, int], torch.Tensor]]) -> list[torch.Tensor]:
    """The first and the last pooled map of each spatial size, in the order the net computed them."""
    by_size: dict[tuple[int, int], list[torch.Tensor]] = {}
    for size, pooled in maps:
        by_size.setdefault(size, []).append(pooled)
    return [t for group in by_size.values() for t in ([group[0], group[-1]] if len(group) > 1 else group)]


@torch.no_grad()
def instance_features(model: Any, images: Any, batch_size: int = 512, device: str = "cpu") -> np.ndarray:
    """``(N, D)`` float32 features of uint8 ``(N, C, H, W)`` images (module docstring). A net without activation
    maps (a dense net) gives its L2-normalised embedding."""
    model = model.to(device).eval()
    maps: list[tuple[tuple[int, int], torch.Tensor]] = []

    def keep(_: torch.nn.Module, __: Any, out: Any) -> None:
        if isinstance(out, torch.Tensor) and out.ndim == 4:
            g = pooled_grid(out.shape[1], out.shape[2], out.shape[3])
            pooled = F.adaptive_avg_pool2d(out.float(), g).flatten(1)
            maps.append(((out.shape[2], out.shape[3]), F.normalize(pooled, dim=1)))

    hooks = [m.register_forward_hook(keep) for m in model.net.modules() if _is_activation(m)]
    try:
        out = []
        for start in range(0, len(images), batch_size):
            maps.clear()
            embedding = model.embed(torch.from_numpy(np.array(images[start:start + batch_size])).to(device))
            parts = _first_and_last_per_size(maps) or [F.normalize(embedding.float().flatten(1), dim=1)]
            out.append(torch.cat(parts, dim=1).cpu())
    finally:
        for hook in hooks:
            hook.remove()
    return torch.cat(out).numpy()


def whitened(features: Mapping[str, np.ndarray], reference: str = "train", dims: int = WHITENED_DIMS,
             seed: int = 0) -> dict[str, np.ndarray]:
    """Every split's features projected on the ``reference`` split's top ``dims`` principal directions, each
    divided by its spread (PCA whitening). A randomized SVD (``torch.pca_lowrank``, seeded) finds the directions
    of tens of thousands of images in seconds."""
    x = torch.from_numpy(np.asarray(features[reference], dtype=np.float32))
    n, d = x.shape
    q = min(dims, d, n - 1)
    if q < 1:
        return {name: np.asarray(f, dtype=np.float32) for name, f in features.items()}
    mean = x.mean(dim=0)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        _, s, v = torch.pca_lowrank(x - mean, q=min(q + 16, d, n), center=False, niter=4)
    spread = s[:q] / max(n - 1, 1) ** 0.5
    kept = spread > spread[0] * MIN_SPREAD
    projection = v[:, :q][:, kept] / spread[kept]
    return {name: ((torch.from_numpy(np.asarray(f, dtype=np.float32)) - mean) @ projection).numpy()
            for name, f in features.items()}
