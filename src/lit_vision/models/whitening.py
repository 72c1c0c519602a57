"""airbench's whitening stem: a small conv whose filters are the training patches' principal components.

Keller Jordan's airbench (https://github.com/KellerJordan/cifar10-airbench) initialises its first 2x2 conv from
the eigen-decomposition of the covariance of 2x2 patches of (normalised) training images: each filter is an
eigenvector scaled by ``1 / sqrt(eigenvalue + eps)``, used with both signs, so the stem's output is decorrelated
with unit variance from the first step. The filters stay frozen; the bias trains. Fitting happens once, when the
classifier is built for training, from a sample of the training split (``training.builders.build_classifier``, with
:func:`unfitted_stems`); the ``fitted`` buffer travels in checkpoints, so a resumed or evaluated model keeps the
weights it was trained with.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from lit_vision.errors import ConfigError


class PatchWhitening(nn.Conv2d):
    """``Conv2d(in_chans, out_chans, kernel)`` with frozen filters set by :meth:`fit`; ``out_chans`` is even and at
    most twice the patch dimension (``in_chans * kernel**2``): the leading ``out_chans / 2`` components, +/-."""

    def __init__(self, in_chans: int, out_chans: int, kernel: int = 2, eps: float = 5e-4) -> None:
        patch_dim = in_chans * kernel * kernel
        if out_chans % 2 or not 0 < out_chans <= 2 * patch_dim:
            raise ConfigError(f"whiten: {out_chans} channels; use an even number up to 2 x {in_chans} x "
                              f"{kernel}^2 = {2 * patch_dim} (each principal component with both signs)")
        if eps <= 0:
            raise ConfigError(f"whiten eps must be > 0, got {eps}")
        super().__init__(in_chans, out_chans, kernel, padding=0, bias=True)
        self.eps = float(eps)
        self.weight.requires_grad_(False)
        self.register_buffer("fitted", torch.tensor(False))

    @torch.no_grad()
    def fit(self, images: torch.Tensor) -> None:
        """Set the filters from normalised float images (N, C, H, W); zero the bias."""
        k, dim = self.kernel_size[0], self.in_channels * self.kernel_size[0] ** 2
        covariance, count = torch.zeros(dim, dim, dtype=torch.float64, device=images.device), 0
        for chunk in images.split(500):  # ~0.5M patches at a time
            patches = chunk.double().unfold(2, k, 1).unfold(3, k, 1)  # N, C, H', W', k, k
            patches = patches.permute(0, 2, 3, 1, 4, 5).reshape(-1, dim)
            covariance += patches.T @ patches
            count += len(patches)
        covariance /= count
        eigenvalues, eigenvectors = torch.linalg.eigh(covariance)  # ascending
        order = eigenvalues.argsort(descending=True)[: self.out_channels // 2]
        filters = eigenvectors[:, order].T / torch.sqrt(eigenvalues[order, None] + self.eps)
        filters = filters.reshape(-1, self.in_channels, k, k)
        self.weight.copy_(torch.cat([filters, -filters]).to(self.weight.dtype))
        self.bias.zero_()
        self.fitted.fill_(True)


def unfitted_stems(module: nn.Module) -> list[PatchWhitening]:
    """The whitening stems in ``module`` not fitted yet."""
    return [m for m in module.modules() if isinstance(m, PatchWhitening) and not bool(m.fitted)]
