"""Batched random erasing and TrivialAugment (data.augment): per-image draws, torchvision's semantics, config checks."""

from __future__ import annotations

import math
import re
import time

import pytest
import torch
from conftest import FAST
from torchvision.transforms.v2 import InterpolationMode
from torchvision.transforms.v2 import functional as TF

from lit_vision.commands.train import run
from lit_vision.data import augment
from lit_vision.data.augment import (
    TRIVIAL_AUGMENT_OPS,
    AugmentConfig,
    apply_trivial_ops,
    augment_batch,
    batch_random_erasing,
    trivial_augment,
)
from lit_vision.data.datamodule import VisionDataModule
from lit_vision.errors import ConfigError


def images(n: int, c: int = 3, size: int = 32, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, 256, (n, c, size, size), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))


# --- random erasing ----------------------------------------------------------------------------------------
def erased_box(image: torch.Tensor) -> tuple[int, int, int]:
    """(rows, cols, pixels) of the zeroed region of one (C, H, W) image whose other values are all > 0."""
    zero = image == 0
    assert torch.equal(zero, zero[:1].expand_as(zero)), "a box is erased in every channel"
    rows, cols = zero[0].any(1).nonzero()[:, 0], zero[0].any(0).nonzero()[:, 0]
    for idx in (rows, cols):  # contiguous
        assert idx.numel() == 0 or idx[-1] - idx[0] + 1 == idx.numel()
    return rows.numel(), cols.numel(), int(zero[0].sum())


def test_random_erasing_always_erases_one_box_of_the_allowed_size() -> None:
    x = torch.rand(64, 3, 32, 32, generator=torch.Generator().manual_seed(0)) * 0.9 + 0.1
    out = batch_random_erasing(x, 1.0, torch.Generator().manual_seed(1))
    assert out.shape == x.shape and out.dtype == x.dtype and out.device == x.device
    for before, after in zip(x, out):
        rows, cols, pixels = erased_box(after)
        assert pixels == rows * cols  # a full rectangle
        assert 0.01 <= pixels / (32 * 32) <= 0.4  # 2%-33% of the area, give or take rounding the sides
        kept = after != 0
        assert torch.equal(after[kept], before[kept])


def test_random_erasing_follows_its_probability() -> None:
    x = torch.rand(400, 1, 16, 16) * 0.9 + 0.1
    assert torch.equal(batch_random_erasing(x, 0.0), x)
    erased = (batch_random_erasing(x, 0.25, torch.Generator().manual_seed(2)) == 0).flatten(1).any(1)
    assert 0.15 < erased.float().mean() < 0.35


def test_random_erasing_sizes_vary_per_image() -> None:
    x = torch.rand(32, 3, 32, 32) * 0.9 + 0.1
    out = batch_random_erasing(x, 1.0, torch.Generator().manual_seed(3))
    assert len({erased_box(image)[:2] for image in out}) > 10


def test_float_augmentations_run_on_tiny_grayscale_images() -> None:
    x = torch.rand(16, 1, 8, 8) * 0.9 + 0.1
    out = augment_batch(x, AugmentConfig(crop_padding=2, hflip=True, random_erasing=1.0))
    assert out.shape == x.shape and out.dtype == x.dtype
    assert (out == 0).flatten(1).any(1).all()


# --- TrivialAugment -----------------------------------------------------------------------------------------
#: op -> (magnitude, torchvision's call for it, as TrivialAugmentWide makes it); magnitudes away from rounding ties
REFERENCE = {
    "identity": (0.0, lambda x, m: x),
    "brightness": (0.3, lambda x, m: TF.adjust_brightness(x, 1.0 + m)),
    "color": (-0.55, lambda x, m: TF.adjust_saturation(x, 1.0 + m)),
    "contrast": (0.62, lambda x, m: TF.adjust_contrast(x, 1.0 + m)),
    "sharpness": (-0.7, lambda x, m: TF.adjust_sharpness(x, 1.0 + m)),
    "posterize": (3.0, lambda x, m: TF.posterize(x, int(m))),
    "solarize": (0.51, lambda x, m: TF.solarize(x, 255 * m)),
    "autocontrast": (0.0, lambda x, m: TF.autocontrast(x)),
    "equalize": (0.0, lambda x, m: TF.equalize(x)),
    "rotate": (-31.0, lambda x, m: TF.rotate(x, m, InterpolationMode.NEAREST)),
    "shear_x": (0.37, lambda x, m: TF.affine(x, 0.0, [0, 0], 1.0, [math.degrees(math.atan(m)), 0.0],
                                             InterpolationMode.NEAREST, center=[0, 0])),
    "shear_y": (-0.29, lambda x, m: TF.affine(x, 0.0, [0, 0], 1.0, [0.0, math.degrees(math.atan(m))],
                                              InterpolationMode.NEAREST, center=[0, 0])),
    "translate_x": (-5.6, lambda x, m: TF.affine(x, 0.0, [int(m), 0], 1.0, [0.0, 0.0], InterpolationMode.NEAREST)),
    "translate_y": (7.9, lambda x, m: TF.affine(x, 0.0, [0, int(m)], 1.0, [0.0, 0.0], InterpolationMode.NEAREST)),
}


def test_the_reference_covers_every_op() -> None:
    assert set(REFERENCE) == set(TRIVIAL_AUGMENT_OPS)


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("op", TRIVIAL_AUGMENT_OPS)
def test_each_op_matches_torchvision(op: str, channels: int) -> None:
    """The whole batch through one op (at once) is torchvision's op image by image; a few pixels may round the
    other way (the matrices and thresholds are float32 here, float64 in torchvision)."""
    magnitude, reference = REFERENCE[op]
    x = images(6, channels, 16)
    ops = torch.full((6,), TRIVIAL_AUGMENT_OPS.index(op))
    out = apply_trivial_ops(x, ops, torch.full((6,), magnitude))
    expected = torch.stack([reference(image, magnitude) for image in x])
    assert out.dtype == torch.uint8 and out.shape == x.shape
    off = ((out.int() - expected.int()).abs() > 1).float().mean()
    assert off <= 0.01, f"{op}: {off:.1%} of the values differ from torchvision's"


def test_ops_and_magnitudes_are_per_image() -> None:
    """A batch mixing every op, each image with its own magnitude, is each image done on its own."""
    k = len(TRIVIAL_AUGMENT_OPS)
    ops = torch.arange(2 * k).flip(0) % k
    magnitudes = torch.tensor([REFERENCE[TRIVIAL_AUGMENT_OPS[op]][0] for op in ops]) * torch.rand(2 * k)
    x = images(2 * k, 3, 12)
    out = apply_trivial_ops(x, ops, magnitudes)
    for i in range(2 * k):
        alone = apply_trivial_ops(x[i:i + 1], ops[i:i + 1], magnitudes[i:i + 1])
        assert torch.equal(out[i:i + 1], alone), TRIVIAL_AUGMENT_OPS[ops[i]]
    identity = ops == 0
    assert torch.equal(out[identity], x[identity])


@pytest.mark.parametrize("channels,size", [(1, 8), (3, 32), (3, 5)])
def test_trivial_augment_keeps_uint8_and_changes_some_images(channels: int, size: int) -> None:
    x = images(64, channels, size)
    out = trivial_augment(x)
    assert out.dtype == torch.uint8 and out.shape == x.shape and out.device == x.device
    changed = (out != x).flatten(1).any(1)
    assert changed.any() and not changed.all()  # identity (and a zero magnitude) leave some images as they are


def test_trivial_augment_is_reproducible_under_a_seed() -> None:
    """Its draws come from Python's ``random`` (what ``seed`` seeds and a mid-epoch checkpoint saves), planned on the
    host: nothing is read back from the device."""
    import random

    from lit_vision.training.device_reads import DeviceReads

    x = images(128)
    random.seed(7)
    with DeviceReads() as reads:
        first = trivial_augment(x)
    assert reads.reads == []
    random.seed(7)
    assert torch.equal(trivial_augment(x), first)
    assert not torch.equal(trivial_augment(x), first)
    assert torch.equal(trivial_augment(x, random.Random(1)), trivial_augment(x, random.Random(1)))


def test_trivial_augment_wants_uint8() -> None:
    with pytest.raises(TypeError, match="uint8"):
        trivial_augment(torch.rand(2, 3, 8, 8))


def test_trivial_augment_is_fast_on_a_cpu_batch() -> None:
    """Budget: a 512x3x32x32 batch well under 50 ms on a CPU (best of 5, after a warm-up; about 8 ms here).

    On one thread: with a core busy elsewhere (another test process), multi-threaded ops wait on it and the time
    says nothing about this code."""
    x = images(512)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        trivial_augment(x)
        times = []
        for _ in range(5):
            start = time.perf_counter()
            trivial_augment(x)
            times.append(time.perf_counter() - start)
    finally:
        torch.set_num_threads(threads)
    assert min(times) < 0.05, f"{min(times) * 1e3:.1f} ms"


# --- config --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("key,value,allowed", [
    ("random_erasing", 1.5, "[0, 1]"), ("random_erasing", -0.1, "[0, 1]"), ("random_erasing", True, "[0, 1]"),
    ("trivial_augment", "yes", "true or false"), ("hflip", 1, "true or false"), ("crop_padding", -2, ">= 0")])
def test_bad_values_name_the_key_and_what_is_allowed(key: str, value: object, allowed: str) -> None:
    with pytest.raises(ConfigError, match=rf"data\.augment\.{key}=.*{re.escape(allowed)}"):
        AugmentConfig(**{key: value})


def test_an_unknown_key_is_named_with_the_accepted_ones() -> None:
    with pytest.raises(ConfigError, match="data.augment.random_erase is not .* crop_padding, hflip, random_erasing, "
                                          "trivial_augment"):
        VisionDataModule(source="digits", eval_batch_size=64, augment={"random_erase": 0.5})


def test_enabled_follows_every_switch() -> None:
    assert not AugmentConfig().enabled
    assert AugmentConfig(random_erasing=0.1).enabled and AugmentConfig(trivial_augment=True).enabled


def test_a_training_run_with_trivial_augment_and_erasing(make_cfg, monkeypatch) -> None:
    """Digits (1-channel 8x8): TrivialAugment gets the uint8 training batches, erasing the float ones."""
    seen: dict[str, list] = {"trivial": [], "erasing": []}

    def spy_trivial(x: torch.Tensor) -> torch.Tensor:
        seen["trivial"].append((x.dtype, tuple(x.shape[1:])))
        return trivial_augment(x)

    def spy_erasing(x: torch.Tensor, p: float) -> torch.Tensor:
        seen["erasing"].append((x.dtype, p))
        return batch_random_erasing(x, p)

    monkeypatch.setattr(augment, "trivial_augment", spy_trivial)
    monkeypatch.setattr(augment, "batch_random_erasing", spy_erasing)
    record = run(make_cfg(*FAST, "data.augment.trivial_augment=true", "data.augment.random_erasing=0.25"))
    assert "test/acc" in record
    assert seen["trivial"] == [(torch.uint8, (1, 8, 8))]  # fast_dev_run: one training batch; not val/test
    assert seen["erasing"] == [(torch.float32, 0.25)]
