"""``model.compile=true``: what runs per training step, compiled with ``torch.compile``.

Two compiled pieces, each without a graph break and compiled in the first epoch, not after it:

- the classifier's preprocessing, net and loss as one function (``ImageClassifier._net_loss``), whose backward
  AOTAutograd compiles; mixup/cutmix (random draws on the host), the metrics and ``self.log`` (which Lightning keeps
  out of compiled code) stay eager around it. Evaluation and prediction run the compiled forward alone.
- the optimizer's update (:func:`compile_optimizer_step`): torch's own ``step`` graph-breaks twice by design (its
  ``no_grad`` wrapper) and Lightning hands it a closure (the training step and backward) that cannot be compiled, so
  the instance's ``step`` becomes one that runs the closure eagerly, then the undecorated update compiled, under
  ``no_grad``. The learning rates reach it as 0-dim tensors (PyTorch's "Compiling the optimizer with LR
  scheduler"): a schedule's new value is a new input value, not a new constant that recompiles the update.

What compiles more than once: the net and loss again for the first epoch's short last batch (with a dynamic batch
size, which later epochs reuse), as the evaluation forward does for a batch size of its own; SGD's update with
momentum again at its second step (its momentum buffers exist from then on). A new optimizer (another fit in the same
process) compiles its own update, counted by dynamo's ``recompile_limit`` (8 per function; past it the update runs
eagerly, with dynamo's warning). Eager (``model.compile=false``) runs none of this.
"""

from __future__ import annotations

import inspect
import logging
import types
import weakref
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch.optim import Optimizer

log = logging.getLogger(__name__)

#: the optimizers whose update compiles into one graph with a tensor learning rate (training/optim.py's registry)
COMPILED_OPTIMIZERS: tuple[type[Optimizer], ...] = (torch.optim.Adam, torch.optim.AdamW, torch.optim.RMSprop,
                                                    torch.optim.SGD)
_COMPILED_STEPS: weakref.WeakSet[Optimizer] = weakref.WeakSet()  # the optimizers compile_optimizer_step compiled


def eager_step_reason(optimizer: Optimizer, scheduler: Mapping[str, Any] | None = None) -> str | None:
    """Why ``optimizer``'s update, under the ``model.scheduler`` settings ``scheduler``, stays eager (None: it
    compiles)."""
    name = type(optimizer).__name__
    if type(optimizer) not in COMPILED_OPTIMIZERS:
        names = ", ".join(c.__name__ for c in COMPILED_OPTIMIZERS)
        return f"{name} is not one of the optimizers compiled here ({names})"
    if any(group.get("fused") or group.get("differentiable") for group in optimizer.param_groups):
        return f"{name} with fused=True or differentiable=True"
    scheduler = scheduler or {}
    if scheduler.get("name") == "onecycle" and scheduler.get("cycle_momentum", True):
        # OneCycleLR writes a new Python float into the momentum (Adam's betas[0]) at every step: Adam's update
        # recompiles each time, and SGD's, where dynamo makes it a symbolic float, with nesterov=True updates wrongly
        # from its second value on (torch 2.14)
        return (f"onecycle changes {name}'s momentum at every step (model.scheduler.cycle_momentum=false compiles "
                "it)")
    return None


def compile_optimizer_step(optimizer: Optimizer, scheduler: Mapping[str, Any] | None = None) -> bool:
    """Make ``optimizer.step`` run its closure (if any) eagerly, then the update compiled; True if it did, else logs
    why not (:func:`eager_step_reason`) and leaves the optimizer as it is.

    Call it before a learning-rate scheduler is built over the optimizer: the scheduler wraps the instance's ``step``
    to check the call order. torch's optimizer step hooks and profiler label (``Optimizer.step#...``) are not called
    on this path (nothing in lit_vision registers one)."""
    reason = eager_step_reason(optimizer, scheduler)
    if reason is not None:
        log.info("model.compile: the optimizer step stays eager: %s", reason)
        return False
    # the class's step is torch's profiling wrapper around its no_grad wrapper (two deliberate graph breaks) around
    # the update itself: compile the update, and enter no_grad before it (an inference graph that updates in place)
    update = torch.compile(inspect.unwrap(type(optimizer).step))
    optimizer.step = types.MethodType(_compiled_step(update), optimizer)  # type: ignore[method-assign]
    _COMPILED_STEPS.add(optimizer)
    log.info("model.compile: %s's step compiled", type(optimizer).__name__)
    return True


def step_is_compiled(optimizer: Optimizer) -> bool:
    """Did :func:`compile_optimizer_step` compile this optimizer's step?"""
    return optimizer in _COMPILED_STEPS


def _compiled_step(update: Callable[[Optimizer], Any]) -> Callable[..., Any]:
    """The step: the closure, then the compiled update with each group's learning rate in a 0-dim tensor.

    The tensors are the update's inputs, the same ones at every step, filled with the groups' learning rates just
    before it: a scheduler's new value is then a new input value, not a new constant that recompiles the update
    (PyTorch's "Compiling the optimizer with LR scheduler" puts tensors in the groups for good; here they are there
    only during the update, so the scheduler, ``LearningRateMonitor``, loggers and checkpoints see the float as in an
    eager run)."""
    learning_rates: list[torch.Tensor] = []  # one per parameter group: float32 on the CPU, as in PyTorch's tutorial

    def step(self: Optimizer, closure: Callable[[], Any] | None = None) -> Any:
        loss = None
        if closure is not None:  # Lightning's: the training step, backward and its hooks, eager
            with torch.enable_grad():
                loss = closure()
        groups = self.param_groups
        learning_rates.extend(torch.zeros(()) for _ in range(len(groups) - len(learning_rates)))
        values = [group["lr"] for group in groups]
        try:
            for group, value, tensor in zip(groups, values, learning_rates):
                group["lr"] = tensor.fill_(value)
            with torch.no_grad():
                update(self)
        finally:
            for group, value in zip(groups, values):
                group["lr"] = value
        return loss
    return step


__all__ = ["COMPILED_OPTIMIZERS", "compile_optimizer_step", "eager_step_reason", "step_is_compiled"]
