"""model.compile=true (training/compiled.py): the compiled training step trains what the eager one trains, in graphs
without a graph break that compile in the first epoch and not after it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import pytest
import torch
from conftest import compose_config

from lit_vision.commands.runner import seed
from lit_vision.commands.train import run
from lit_vision.runs.history import read_history
from lit_vision.training import compiled

#: what RecordSteps saw in the last run: each step's training loss, dynamo's counts at each training epoch's end,
#: and whether the optimizer's step was compiled
LOSSES: list[float] = []
EPOCH_COUNTS: list[dict[str, int]] = []
STEP_COMPILED: list[bool] = []


class RecordSteps(L.Callback):
    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        STEP_COMPILED.append(compiled.step_is_compiled(trainer.optimizers[0]))

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        LOSSES.append(float(outputs["loss"]))

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        from torch._dynamo.utils import counters

        EPOCH_COUNTS.append({"frames": counters["frames"]["total"], "graphs": counters["stats"]["unique_graphs"]})


#: 3 epochs of the small CNN (batch norm, dropout, Adam) on the 8x8 digits in fp32, a learning rate that changes at
#: every step (warmup_cosine), every step logged, 256-image batches: 6 steps an epoch, the last one short
TINY = ["model=cnn", "data=digits", "data.batch_size=256", "accelerator=cpu", "trainer.precision=32-true",
        "trainer.max_epochs=3", "trainer.log_every_n_steps=1", "trainer.limit_val_batches=1",
        "trainer.limit_test_batches=1", "model.scheduler.name=warmup_cosine", "~callbacks.progress_bar",
        "~callbacks.model_summary", "report.plots=false", "+callbacks.record._target_=test_compile.RecordSteps"]


def train(run_dir: Path, *overrides: str) -> tuple[list[float], list[dict[str, int]], list[bool]]:
    for record in (LOSSES, EPOCH_COUNTS, STEP_COMPILED):
        record.clear()
    cfg = compose_config([*TINY, *overrides], run_dir)
    seed(cfg.seed)  # as every command does (runner.execute)
    run(cfg)
    return list(LOSSES), list(EPOCH_COUNTS), list(STEP_COMPILED)


@pytest.mark.slow
@pytest.mark.parametrize("steps_per_execution", [1, 3], ids=["automatic", "grouped"])
def test_compiled_training_equals_eager_without_graph_breaks_or_recompiles(tmp_path: Path,
                                                                           steps_per_execution: int) -> None:
    pytest.importorskip("torch._inductor")
    from torch._dynamo.utils import counters, guard_failures

    grouped = f"steps_per_execution={steps_per_execution}"
    eager, _, eager_step = train(tmp_path / "eager", grouped)
    torch._dynamo.reset()
    counters.clear()
    try:
        # dropout's masks drawn by eager's random ops (inductor's own generator draws other ones)
        with torch._inductor.config.patch(fallback_random=True):
            losses, epochs, step_compiled = train(tmp_path / "compiled", grouped, "model.compile=true")
        breaks = dict(counters["graph_break"])
        failures = {code.co_name: [str(f) for f in reasons] for code, reasons in guard_failures.items()}
    finally:
        torch._dynamo.reset()
        counters.clear()
    assert eager_step == [False] and step_compiled == [True]  # the optimizer's update compiled too
    assert not breaks, f"graph breaks in the compiled training: {breaks}"
    # compiled by the first epoch's end: the evaluation forward (sanity check), the training forward and loss (and its
    # dynamic-batch graph for the short last batch), the optimizer's update; nothing after it
    assert len(epochs) == 3 and epochs[0]["graphs"] >= 3
    assert epochs[-1] == epochs[0], f"recompiled after the first epoch: {epochs}; guard failures: {failures}"
    # the same arithmetic up to fusion and summation order: ~1e-6 at the first step, growing with Adam's steps
    assert len(losses) == len(eager) == 18 // steps_per_execution
    assert losses[0] == pytest.approx(eager[0], rel=1e-5)
    np.testing.assert_allclose(losses, eager, rtol=1e-3)
    # the schedule's learning rates, as LearningRateMonitor recorded them: the eager run's floats
    rates = [[row["lr-Adam"] for row in read_history(tmp_path / mode / "history.csv")]
             for mode in ("eager", "compiled")]
    assert rates[0] == rates[1] and len(set(rates[0])) == 3


def test_optimizer_steps_that_stay_eager() -> None:
    params = [torch.nn.Parameter(torch.zeros(2))]
    adam, sgd = torch.optim.Adam(params, lr=0.1), torch.optim.SGD(params, lr=0.1, momentum=0.9)
    assert compiled.eager_step_reason(adam, {"name": "warmup_cosine"}) is None
    for optimizer in (adam, sgd):  # a new momentum at every step: recompiled (Adam's betas) or wrong (nesterov SGD)
        assert "cycle_momentum=false" in compiled.eager_step_reason(optimizer, {"name": "onecycle"})
        assert compiled.eager_step_reason(optimizer, {"name": "onecycle", "cycle_momentum": False}) is None
    assert "not one of" in compiled.eager_step_reason(torch.optim.Adagrad(params, lr=0.1))
    assert "fused" in compiled.eager_step_reason(torch.optim.Adam(params, lr=0.1, fused=True))
    assert not compiled.compile_optimizer_step(torch.optim.Adagrad(params, lr=0.1))


def test_compiled_step_takes_each_new_learning_rate_without_recompiling() -> None:
    """The scheduler's new rates reach the compiled update as tensor values; outside it (scheduler, monitor,
    checkpoint) the groups' learning rates stay the floats an eager run has."""
    pytest.importorskip("torch._inductor")
    from torch._dynamo.utils import counters

    weight = torch.nn.Parameter(torch.zeros(3))
    optimizer = torch.optim.SGD([weight], lr=0.5)
    torch._dynamo.reset()
    counters.clear()
    try:
        assert compiled.compile_optimizer_step(optimizer) and compiled.step_is_compiled(optimizer)
        schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0 / (step + 1))  # wraps the step
        expected = 0.0
        for step in range(3):
            weight.grad = torch.ones(3)
            expected -= 0.5 / (step + 1)
            assert optimizer.step(closure=lambda: 7.0) == 7.0
            schedule.step()
            assert weight.detach().tolist() == pytest.approx([expected] * 3)
            assert optimizer.param_groups[0]["lr"] == 0.5 / (step + 2) and \
                isinstance(optimizer.param_groups[0]["lr"], float)
        assert isinstance(optimizer.state_dict()["param_groups"][0]["lr"], float)
        assert counters["frames"]["total"] == counters["stats"]["unique_graphs"] == 1  # compiled once
        assert not counters["graph_break"], dict(counters["graph_break"])
    finally:
        torch._dynamo.reset()
        counters.clear()
