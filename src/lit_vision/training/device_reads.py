"""Count what a training run reads back from its device, step by step, on any device (a CPU included).

On a GPU every read of a tensor's value on the host — ``.item()``, ``float()``, ``bool()``, ``int()`` of a tensor,
``.tolist()``, ``.numpy()``, ``.cpu()``, an op whose output size depends on the data (``nonzero``, boolean
indexing, ``bincount``, ``unique``), a Python number copied to the device (``torch.tensor(x, device=...)``) — makes
the host wait until the GPU has finished everything queued, so the CPU's and the GPU's work add up instead of
overlapping. ``torch.cuda.set_sync_debug_mode`` finds such reads on a GPU only; :class:`DeviceReads` finds the same
call sites on a CPU, where they cost nothing and therefore hide:

* a :class:`~torch.utils._python_dispatch.TorchDispatchMode` sees every ATen op: ``aten._local_scalar_dense`` (what
  ``item``/``float``/``bool``/``int`` become) and the data-dependent-shape ops of :data:`SYNCING_OPS`;
* ``Tensor.tolist``, ``Tensor.numpy``, ``Tensor.cpu`` (no ATen op on a CPU) and ``torch.tensor``/``torch.as_tensor``
  with an explicit ``device`` (the copy of a Python number to the device) are patched while counting.

The data loaders' own reads (``torch.utils.data``: samplers, worker seeds, collation; ``data/batch_slots.py``: the
shards loader's shared-memory hand-over) are host work on every machine, before the batch goes to the device, and
are not counted.

The optimizers' step counters are not device reads: unless ``capturable``, ``torch.optim`` keeps ``state["step"]``
on the host for every device (created with ``device="cpu"`` spelled out) and reads it there (bias corrections). On a
CPU both are CPU tensors, so the counter tells them apart by identity: a scalar read of a tensor that is some
optimizer's ``state["step"]`` (the optimizers are registered with :meth:`DeviceReads.watch_optimizers`, which
:class:`StepWindows` does at every step) is not counted, nor a number put on a device given as the string ``"cpu"``.

:class:`StepWindows` is a Lightning callback that opens a window at each training batch (and closes it at the next
batch, at the epoch's end or when validation starts), and marks the windows of the steps whose logs the loggers write
(``trainer.log_every_n_steps``): there, and at an epoch's end, reads are expected.
"""

from __future__ import annotations

import traceback
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import lightning as L
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from lit_vision.training.metrics import logs_written_this_step

#: ATen ops whose output size depends on the values: on a GPU each waits for the device to know it
SYNCING_OPS = {"aten::nonzero", "aten::bincount", "aten::unique_dim", "aten::_unique", "aten::_unique2",
               "aten::unique_consecutive", "aten::masked_select", "aten::repeat_interleave"}
#: frames of these packages are skipped when naming a read's call site (the caller is what to fix)
_TORCH_DIR = str(Path(torch.__file__).parent)
_INTERNAL_FILES = (__file__, "/contextlib.py", "/functools.py")
#: code that only ever works on host tensors, before a batch goes to the device: the DataLoader (samplers, worker
#: seeds, collation) and the shards loader's hand-over of batches in shared memory
_HOST_ONLY = (f"{_TORCH_DIR}/utils/data/", str(Path(__file__).parents[1] / "data" / "batch_slots.py"))


@dataclass
class Read:
    kind: str  #: ``item`` (a scalar read), ``tolist``/``numpy``/``cpu``, an op name, or ``to_device`` (a number copied)
    site: str  #: ``file:line in function`` of the first caller outside torch
    window: str  #: ``train``, ``train_logging``, ``epoch_end``, ``validation`` … (see :class:`StepWindows`)
    step: int  #: the training batch index of the window (-1 outside training batches)


@dataclass
class DeviceReads(TorchDispatchMode):
    """Context manager: every device read inside it is appended to :attr:`reads` with its call site and window."""

    reads: list[Read] = field(default_factory=list)
    window: str = "setup"
    step: int = -1
    steps_seen: Counter = field(default_factory=Counter)  #: windows opened, per kind
    _optimizers: list[torch.optim.Optimizer] = field(default_factory=list)  # whose step counters are host tensors
    _patches: list[tuple[Any, str, Any]] = field(default_factory=list)

    #: the counter whose ``with`` block is running (what a ``StepWindows`` built from a config counts into)
    active: ClassVar[DeviceReads | None] = None

    def __post_init__(self) -> None:
        super().__init__()

    # --- windows -------------------------------------------------------------------------------------------
    def open_window(self, window: str, step: int = -1) -> None:
        self.window, self.step = window, step
        self.steps_seen[window] += 1

    def watch_optimizers(self, optimizers: list[torch.optim.Optimizer]) -> None:
        """Scalar reads of these optimizers' step counters (``state["step"]``, kept and read on the host by
        ``torch.optim``) are not device reads."""
        self._optimizers = list(optimizers)

    def _host_counter(self, tensor: torch.Tensor) -> bool:
        # looked up at the read: an optimizer creates its state inside its first step
        return any(isinstance(state, dict) and state.get("step") is tensor
                   for optimizer in self._optimizers for state in optimizer.state.values())

    # --- what counts -----------------------------------------------------------------------------------------
    def _record(self, kind: str) -> None:
        stack = traceback.extract_stack()[:-2]
        if any(frame.filename.startswith(_HOST_ONLY) for frame in stack):
            return
        self.reads.append(Read(kind, call_site(stack), self.window, self.step))

    def __torch_dispatch__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        name = func._schema.name
        if name == "aten::_local_scalar_dense":
            if not self._host_counter(args[0]):
                self._record("item")
        elif name in SYNCING_OPS or (name == "aten::index" and _boolean_index(args)):
            if not (name == "aten::repeat_interleave" and (kwargs or {}).get("output_size") is not None):
                self._record(name.removeprefix("aten::"))
        return func(*args, **(kwargs or {}))

    def __enter__(self) -> DeviceReads:
        tensor = torch.Tensor
        for name in ("tolist", "numpy", "cpu"):
            self._patch(tensor, name, self._reading(getattr(tensor, name), name))
        for name in ("tensor", "as_tensor"):
            self._patch(torch, name, self._copying(getattr(torch, name)))
        DeviceReads.active = self
        return super().__enter__()

    def __exit__(self, *exc: Any) -> None:
        super().__exit__(*exc)
        DeviceReads.active = None
        for owner, name, original in reversed(self._patches):
            setattr(owner, name, original)
        self._patches.clear()

    def _patch(self, owner: Any, name: str, replacement: Any) -> None:
        self._patches.append((owner, name, getattr(owner, name)))
        setattr(owner, name, replacement)

    def _reading(self, method: Any, kind: str) -> Any:
        def read(tensor: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
            self._record(kind)
            return method(tensor, *args, **kwargs)
        return read

    def _copying(self, factory: Any) -> Any:
        def copy(data: Any, *args: Any, **kwargs: Any) -> Any:
            device = kwargs.get("device")
            # a device spelled "cpu" is the host by intent, on every machine (torch.optim's step counters); the
            # model's device comes as a torch.device (Lightning's self.log of a number: torch.tensor(x, device=...))
            if device is not None and device != "cpu" and not isinstance(data, torch.Tensor):
                self._record("to_device")
            return factory(data, *args, **kwargs)
        return copy

    # --- results ---------------------------------------------------------------------------------------------
    def in_windows(self, *windows: str) -> list[Read]:
        return [r for r in self.reads if r.window in windows]

    def per_step(self, window: str = "train") -> float:
        """Reads per window of this kind (``train``: the non-logging training steps)."""
        return len(self.in_windows(window)) / max(1, self.steps_seen[window])

    def report(self, *windows: str) -> str:
        """The reads of ``windows`` grouped by kind and call site, most frequent first."""
        counts = Counter(f"{r.kind} at {r.site}" for r in self.in_windows(*windows))
        return "\n".join(f"{n:5d} x {what}" for what, n in counts.most_common()) or "(none)"


def _boolean_index(args: tuple) -> bool:
    indices = args[1] if len(args) > 1 else ()
    return any(isinstance(i, torch.Tensor) and i.dtype == torch.bool for i in indices)


def call_site(stack: list[traceback.FrameSummary]) -> str:
    """The innermost frame outside torch (and this module): the code that asked for the read."""
    for frame in reversed(stack):
        if not frame.filename.startswith(_TORCH_DIR) and not frame.filename.endswith(_INTERNAL_FILES):
            return f"{_short(frame.filename)}:{frame.lineno} in {frame.name}"
    return "(torch)"


def _short(path: str) -> str:
    for marker in ("site-packages/", "src/", "tests/"):
        if marker in path:
            return path.split(marker, 1)[1]
    return path


class StepWindows(L.Callback):
    """Opens :class:`DeviceReads` windows at Lightning's hooks: ``train`` or ``train_logging`` from a training batch
    until the next boundary, ``epoch_end`` after the last batch, ``validation`` from the start of validation (its
    steps and its epoch end), ``other`` for the rest. A window holds everything the loop does for its batch: the
    next batch's fetch, the hooks, the logger connector's bookkeeping after ``on_train_batch_end``."""

    def __init__(self, counter: DeviceReads | None = None) -> None:
        if counter is None and DeviceReads.active is None:
            raise RuntimeError("StepWindows needs a DeviceReads counter: build it inside `with DeviceReads():`")
        self.counter = counter or DeviceReads.active

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any,
                             batch_idx: int) -> None:
        self.counter.watch_optimizers(trainer.optimizers)
        logging = logs_written_this_step(trainer)
        self.counter.open_window("train_logging" if logging else "train", batch_idx)

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        self.counter.watch_optimizers(trainer.optimizers)  # a first step creates the optimizers' state

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.counter.open_window("epoch_start")  # the epoch's hooks and the first batch's fetch

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.counter.open_window("epoch_end")

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.counter.open_window("validation")

    def on_validation_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any,
                                  batch_idx: int, dataloader_idx: int = 0) -> None:
        self.counter.open_window("validation_step", batch_idx)

    def on_validation_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                                batch_idx: int, dataloader_idx: int = 0) -> None:
        self.counter.open_window("validation")  # the epoch's end (metrics computed) and the next batch's fetch

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.counter.open_window("validation")

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.counter.open_window("other")

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.counter.open_window("other")


@contextmanager
def counting_device_reads() -> Iterator[tuple[DeviceReads, StepWindows]]:
    """``with counting_device_reads() as (reads, windows):`` add ``windows`` to the trainer's callbacks."""
    with DeviceReads() as reads:
        yield reads, StepWindows(reads)


__all__ = ["SYNCING_OPS", "DeviceReads", "Read", "StepWindows", "call_site", "counting_device_reads"]
