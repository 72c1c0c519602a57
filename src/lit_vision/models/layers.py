"""Building blocks shared by the nets: a dense stack and Keras-like weight initialisation."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from lit_vision.checks import positive_int_list, proportion
from lit_vision.errors import ConfigError

ACTIVATIONS: dict[str, type[nn.Module]] = {"relu": nn.ReLU, "gelu": nn.GELU, "silu": nn.SiLU,
                                           "tanh": nn.Tanh, "sigmoid": nn.Sigmoid, "elu": nn.ELU}


def check_activation(name: str | None, key: str = "activation") -> None:
    """An activation name (or none/null); ``key`` is the config key it came from."""
    if name is not None and name != "none" and name not in ACTIVATIONS:
        raise ConfigError(f"{key}={name!r} is not an activation; choose one of {sorted(ACTIVATIONS)} or none")


def activation(name: str | None, key: str = "activation") -> nn.Module:
    check_activation(name, key)
    return nn.Identity() if name is None or name == "none" else ACTIVATIONS[name]()


class Dropout(nn.Dropout):
    """``nn.Dropout`` with a faster mask on CPUs; the same layer everywhere else.

    PyTorch draws CPU dropout masks with ``bernoulli_``, ~4x slower than ``torch.rand`` (2.7 ms for the notebook
    003 CNN's 128 x 1600 activations on a 2-core EPYC: a sixth of its training step). Here the mask is
    ``rand >= p`` and the kept values are scaled by ``1 / (1 - p)``: the same distribution, autograd for the
    backward pass. CUDA keeps PyTorch's fused kernel.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0 or x.device.type != "cpu":
            return F.dropout(x, self.p, self.training, self.inplace)
        if self.p == 1.0:
            return torch.zeros_like(x)
        keep = torch.rand(x.shape, device=x.device) >= self.p
        return x * keep.to(x.dtype).mul_(1.0 / (1.0 - self.p))


def dense_stack(in_features: int, hidden: Sequence[int], num_outputs: int, dropout: float = 0.0,
                input_dropout: float = 0.0, batchnorm: bool = False, act: str = "relu",
                output_bias: bool = True, key: str = "model.net") -> nn.Sequential:
    """[Dropout] → (for each hidden width: [BatchNorm] → Linear → act → [Dropout]) → Linear(num_outputs).

    ``batchnorm`` puts a BatchNorm1d before each hidden dense layer (notebook 002's "BN before dense"). ``key`` is
    the config key of the stack's options (``model.net``, ``model.net.head``), named by the error for a bad one.
    """
    hidden = positive_int_list(hidden, f"{key}.hidden")
    dropout, input_dropout = proportion(dropout, f"{key}.dropout"), proportion(input_dropout, f"{key}.input_dropout")
    check_activation(act, f"{key}.act")
    layers: list[nn.Module] = []
    if input_dropout:
        layers.append(Dropout(input_dropout))
    width = in_features
    for h in hidden:
        if batchnorm:
            layers.append(nn.BatchNorm1d(width))
        layers += [nn.Linear(width, int(h)), activation(act)]
        if dropout:
            layers.append(Dropout(dropout))
        width = int(h)
    layers.append(nn.Linear(width, num_outputs, bias=output_bias))
    return nn.Sequential(*layers)


INIT_SCHEMES = ("glorot", "torch", "dirac")


def check_init(scheme: str, key: str = "model.net.init") -> None:
    if scheme not in INIT_SCHEMES:
        raise ConfigError(f"{key}={scheme!r} is not a weight initialisation; choose one of {', '.join(INIT_SCHEMES)}")


def init_weights(module: nn.Module, scheme: str = "glorot") -> None:
    """``glorot``: Keras defaults (Glorot-uniform weights, zero bias) to match the notebooks; ``torch``: keep
    PyTorch's; ``dirac``: PyTorch's, then airbench's identity start — in every conv, the first ``in_channels``
    filters pass their input through unchanged (an implicit residual connection at step 0), and biases are zero."""
    check_init(scheme)
    if scheme == "torch":
        return
    if scheme == "dirac":
        for m in module.modules():
            if type(m) is nn.Conv2d:  # not subclasses such as the whitening stem, whose filters are fitted
                nn.init.dirac_(m.weight.data[:m.in_channels])
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
        return
    for m in module.modules():
        if isinstance(m, (nn.Linear, nn.Conv2d)):
            nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
