"""Training from streaming shards (data=shards): the run's result, and exact mid-epoch resume — stopped at a step
inside an epoch and resumed, the batches trained and history.csv equal an uninterrupted run's, with DataLoader
worker processes decoding and a per-step schedule (OneCycle) too; the checkpoint stores the evaluation crop for
prediction."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import test_exact_resume as exact
import torch

from lit_vision.data.image_folder import split_dirs
from lit_vision.data.preparation import PrepareSettings, prepare_shards
from lit_vision.data.synthetic import write_image_folder

CLASSES = ["a", "b", "c"]


@pytest.fixture(scope="module")
def shard_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    photos = tmp_path_factory.mktemp("photos")
    write_image_folder(photos / "train", CLASSES, 30, size=48, ext="jpg")
    write_image_folder(photos / "test", CLASSES, 6, size=48, seed=1, ext="jpg")
    out = tmp_path_factory.mktemp("shards") / "set"
    settings = PrepareSettings(short_side=40, quality=90, channels=3, skip_corrupt=False, val_fraction=0.1,
                               use_source_val=True, seed=0)
    prepare_shards(split_dirs(photos), out, settings, workers=1, command="test")
    return out


def shards_run(shard_dir: Path, *extra: str) -> list[str]:
    """81 training images in batches of 8: 11 steps an epoch, decoded by 2 worker processes."""
    return ["data=shards", f"data.root={shard_dir}", "data.image_size=16", "data.batch_size=8",
            "data.num_workers=2", "model=dense", "model.net.dropout=0.3", "accelerator=cpu", "trainer.max_epochs=2",
            "callbacks.early_stopping.patience=100", *exact.QUIET, *extra]


def test_a_shards_run_trains_tests_and_reports_its_sources(make_cfg, shard_dir: Path) -> None:
    cfg = make_cfg(*shards_run(shard_dir))
    record = exact.run(cfg)
    assert record["global_step"] == 22 and record["data"]["source"] == "shards"
    assert record["data"]["counts"]["test"] == {"a": 6, "b": 6, "c": 6}
    run_dir = Path(cfg.paths.output_dir)
    rows = (run_dir / "predictions.csv").read_text().splitlines()
    sources = (shard_dir / "test" / "sources.txt").read_text().splitlines()
    assert [row.split(",")[1] for row in rows[1:]] == sources  # in the split's order, named by file
    assert json.loads((run_dir / "metrics.json").read_text())["test/acc"] > 1 / 3  # learns the class patterns
    ckpt = torch.load(run_dir / "checkpoints" / "best.ckpt", map_location="cpu", weights_only=True)
    assert ckpt["hyper_parameters"]["input_spec"]["crop_fraction"] == 0.875  # predict and serve crop as tested


def test_the_input_spec_carries_the_evaluation_crop_only_for_shards(make_cfg, shard_dir: Path) -> None:
    """What the checkpoint stores for prediction: a data=shards model is evaluated on a centre crop
    (data.eval_crop_fraction), the in-memory data on the squashed image (no key: decoded as before)."""
    from omegaconf import OmegaConf

    from lit_vision.data.datamodule import VisionDataModule
    from lit_vision.training.builders import build_datamodule, input_spec

    cfg = make_cfg(*shards_run(shard_dir, "data.eval_crop_fraction=0.8"))
    dm = build_datamodule(cfg)
    assert dm.eval_crop_fraction == 0.8
    spec = input_spec(OmegaConf.to_container(cfg.model, resolve=True), dm)
    assert spec["crop_fraction"] == 0.8 and type(spec["crop_fraction"]) is float and spec["image_size"] == [16, 16]
    cfg = make_cfg("model=dense")
    dm = build_datamodule(cfg)
    assert isinstance(dm, VisionDataModule) and "crop_fraction" not in input_spec(
        OmegaConf.to_container(cfg.model, resolve=True), dm)


@pytest.mark.parametrize("extra", [[], exact.ONECYCLE], ids=["constant", "onecycle"])
def test_stopped_mid_epoch_and_resumed_equals_uninterrupted(make_cfg, shard_dir: Path, tmp_path: Path,
                                                            extra: list[str]) -> None:
    """Stopped at step 15 (mid-epoch 1), resumed, and trained on through epoch 2 (a fresh epoch after the resumed
    one): the same batches and history as one uninterrupted run."""
    recorder = ["+callbacks.record._target_=test_exact_resume.RecordBatches", "test=false", "validate_best=false",
                "trainer.max_epochs=3", *extra]
    exact.SEEN.clear()
    whole = make_cfg(*shards_run(shard_dir, *recorder))
    exact.run(whole)
    uninterrupted, exact.SEEN[:] = list(exact.SEEN), []
    run_dir = Path(whole.paths.output_dir)
    history = exact.history_without_times(run_dir)
    os.rename(run_dir, tmp_path / "uninterrupted")

    steps = "callbacks.last_checkpoint.every_n_train_steps=5"  # 11 steps an epoch: step 15 is mid-epoch 1
    with pytest.raises(InterruptedError):
        exact.run(make_cfg(*shards_run(shard_dir, *recorder, steps, "+callbacks.stop._target_=test_exact_resume.StopAt",
                                       "+callbacks.stop.step=15")))
    record = exact.run(make_cfg(*shards_run(shard_dir, *recorder, steps, "ckpt_path=last")))
    assert record["resumed_from"].endswith("last.ckpt") and record["global_step"] == 33
    assert len(uninterrupted) == 33 and exact.SEEN == uninterrupted  # the same crops, in the same order
    assert exact.history_without_times(run_dir) == history and len(history) == 3


def test_resumed_from_an_end_of_epoch_checkpoint_equals_uninterrupted(make_cfg, shard_dir: Path,
                                                                      tmp_path: Path) -> None:
    """last.ckpt after epoch 0 (every sample of the epoch served, the last batch short) resumes at epoch 1's start,
    in epoch 1's order."""
    whole = make_cfg(*shards_run(shard_dir, "test=false", "validate_best=false"))
    exact.run(whole)
    run_dir = Path(whole.paths.output_dir)
    history = exact.history_without_times(run_dir)
    os.rename(run_dir, tmp_path / "uninterrupted")
    exact.run(make_cfg(*shards_run(shard_dir, "test=false", "validate_best=false", "trainer.max_epochs=1")))
    record = exact.run(make_cfg(*shards_run(shard_dir, "test=false", "validate_best=false", "ckpt_path=last")))
    assert record["resumed_from"].endswith("last.ckpt") and record["global_step"] == 22
    assert exact.history_without_times(run_dir) == history


def test_train_is_written_in_a_seeded_shuffled_order(shard_dir: Path) -> None:
    """Streaming reads chunk by chunk, shuffling within a window: a class-sorted train split would give batches of
    one class. Val and test keep the folder's order (the reports list them in it)."""
    import numpy as np

    train = np.load(shard_dir / "train" / "labels.npy")
    assert (np.diff(train) < 0).any() and len(set(train[:8].tolist())) > 1
    test = np.load(shard_dir / "test" / "labels.npy")
    assert (np.diff(test) >= 0).all()


def test_an_epoch_read_by_workers_through_batch_slots_holds_the_in_process_samples(shard_dir: Path) -> None:
    """Worker processes hand their batches over in shared-memory slots (lit_vision.data.batch_slots); each crop is
    seeded by (seed, epoch, sample), so an epoch read by 2 workers holds exactly the crops and labels of one read
    without workers, whatever the order the chunks were split in."""
    from lit_vision.data.streaming import ShardsDataModule

    def epoch(workers: int) -> list[tuple[bytes, int]]:
        dm = ShardsDataModule(str(shard_dir), 16, batch_size=8, eval_batch_size=8, crop_scale=[0.2, 1.0],
                              crop_ratio=[0.75, 1.33], eval_crop_fraction=0.875, num_workers=workers, seed=3)
        dm.setup()
        samples = []
        for images, labels in dm.train_dataloader():
            assert images.dtype == torch.uint8 and labels.dtype == torch.int64 and images.shape[1:] == (3, 16, 16)
            samples += [(image.numpy().tobytes(), int(y)) for image, y in zip(images, labels)]
        return sorted(samples)

    in_process = epoch(0)
    assert len(in_process) == 81 and len({image for image, _ in in_process}) == 81
    assert epoch(2) == in_process


def test_without_shared_memory_for_the_slots_the_loader_warns_and_hands_batches_over_the_default_way(
        shard_dir: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """A container's small /dev/shm cannot hold an epoch's slots: the epoch still runs, every sample served."""
    import lit_vision.data.streaming as streaming

    def no_space(*args: object, **kwargs: object) -> None:
        raise RuntimeError("unable to write to file </torch_1_2>: No space left on device (28)")

    monkeypatch.setattr(streaming, "BatchSlots", no_space)
    dm = streaming.ShardsDataModule(str(shard_dir), 16, batch_size=8, eval_batch_size=8, crop_scale=[0.2, 1.0],
                                    crop_ratio=[0.75, 1.33], eval_crop_fraction=0.875, num_workers=2, seed=3)
    dm.setup()
    with caplog.at_level("WARNING", logger="lit_vision.data.streaming"):
        labels = torch.cat([y for _, y in dm.train_dataloader()])
    assert len(labels) == 81 and labels.dtype == torch.int64
    assert "No space left on device" in caplog.text and "--shm-size" in caplog.text


class _Finalized:
    """A reference cycle that records its collection in ``collected``."""

    collected: list[str] = []

    def __init__(self, name: str) -> None:
        self.name, self.me = name, self

    def __del__(self) -> None:
        _Finalized.collected.append(self.name)


def _worker_view(conn) -> None:  # noqa: ANN001 - a multiprocessing Connection
    import gc
    import signal

    from lit_vision.data.streaming import start_worker

    start_worker(0)
    _Finalized("made in the worker")
    gc.collect()
    conn.send((list(_Finalized.collected), signal.getsignal(signal.SIGTERM) == signal.SIG_IGN))


def test_a_shards_worker_ignores_sigterm_and_never_collects_what_it_inherited() -> None:
    """start_worker (the shards loaders' worker_init_fn): garbage inherited from the training process (here a cycle
    with a finalizer; in a hang seen in CI, an onnxruntime session) is not destroyed in the worker, while the
    worker's own garbage is; and SIGTERM is left to the training process."""
    import gc
    import multiprocessing

    gc.disable()  # keep the inherited cycle uncollected until the fork
    try:
        _Finalized.collected.clear()
        _Finalized("inherited")
        parent, child = multiprocessing.get_context("fork").Pipe()
        worker = multiprocessing.get_context("fork").Process(target=_worker_view, args=(child,))
        worker.start()
        collected, ignores_sigterm = parent.recv()
        worker.join(30)
    finally:
        gc.enable()
        gc.collect()
    assert collected == ["made in the worker"] and ignores_sigterm
