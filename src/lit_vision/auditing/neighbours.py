"""Nearest neighbours of embeddings, for near-duplicates, train/test leaks and outliers.

Distances are Euclidean between L2-normalised embeddings, ``sqrt(2 - 2 cos)`` (0 = same direction, 2 = opposite),
computed a ``block x block`` tile at a time with a running top-k, so memory is O(block²) besides the embeddings.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def _normalised(embeddings: np.ndarray | torch.Tensor, device: str | torch.device) -> torch.Tensor:
    x = torch.as_tensor(embeddings).to(device=device, dtype=torch.float32)
    if x.ndim != 2:
        raise ValueError(f"expected embeddings (N, D), got shape {tuple(x.shape)}")
    return F.normalize(x, dim=1)


def _merge(best: tuple[torch.Tensor, torch.Tensor], sims: torch.Tensor, start: int,
           k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The running top-k similarities (and reference indices) updated with one tile starting at ``start``."""
    tile_sims, tile_idx = sims.topk(min(k, sims.shape[1]), dim=1)
    both_sims = torch.cat([best[0], tile_sims], dim=1)
    both_idx = torch.cat([best[1], tile_idx + start], dim=1)
    top_sims, where = both_sims.topk(k, dim=1)
    return top_sims, both_idx.gather(1, where)


def nearest(query: np.ndarray | torch.Tensor, reference: np.ndarray | torch.Tensor | None = None, k: int = 1,
            block: int = 4096, device: str | torch.device = "cpu") -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` nearest neighbours of each query row among ``reference``: distances ``(Nq, k)`` float32 (ascending)
    and indices ``(Nq, k)`` int64. With ``reference`` None the query set is searched and an item is never its own
    neighbour (an exact copy of it still is, at distance 0). Runs on ``device`` (e.g. ``"cuda"``)."""
    within = reference is None
    q = _normalised(query, device)
    r = q if within else _normalised(reference, device)
    candidates = len(r) - 1 if within else len(r)
    if not 1 <= k <= candidates:
        raise ValueError(f"k={k} must be from 1 to the {candidates} candidate neighbours")
    distances = np.empty((len(q), k), dtype=np.float32)
    indices = np.empty((len(q), k), dtype=np.int64)
    for qs in range(0, len(q), block):
        q_block = q[qs:qs + block]
        best = (torch.full((len(q_block), k), -torch.inf, device=q.device),
                torch.zeros((len(q_block), k), dtype=torch.int64, device=q.device))
        for rs in range(0, len(r), block):
            sims = q_block @ r[rs:rs + block].T
            if within:
                _mask_self(sims, qs, rs)
            best = _merge(best, sims, rs, k)
        distances[qs:qs + block] = (2 - 2 * best[0]).clamp_min(0).sqrt().cpu().numpy()
        indices[qs:qs + block] = best[1].cpu().numpy()
    return distances, indices


def _mask_self(sims: torch.Tensor, qs: int, rs: int) -> None:
    """Set the similarity of each item to itself to -inf in a tile of query rows from ``qs`` and reference
    columns from ``rs`` (the same set)."""
    first, last = max(qs, rs), min(qs + sims.shape[0], rs + sims.shape[1])
    if first < last:
        items = torch.arange(first, last, device=sims.device)
        sims[items - qs, items - rs] = -torch.inf


def relative_threshold(distances: np.ndarray, factor: float) -> float:
    """``factor`` x the median nearest-neighbour distance (the first column of a ``(N, k)`` array).

    Relative, not absolute, because the scale of embedding distances depends on the network (its width, training,
    normalisation): "much closer than usual for this data" carries over between nets where a fixed number does not.
    With more than half the items exact copies the median is 0 and so is the threshold (only copies match)."""
    values = np.asarray(distances, dtype=np.float64)
    values = values[:, 0] if values.ndim == 2 else values.reshape(-1)
    if values.size == 0:
        raise ValueError("no distances: a threshold needs at least one nearest-neighbour distance")
    return float(factor * np.median(values))
