"""An image folder whose cache would not fit the disk or the memory is refused before anything is decoded."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from lit_vision.data import budget, sources
from lit_vision.data.sources import load_source
from lit_vision.data.synthetic import write_image_folder
from lit_vision.errors import ConfigError

CLASSES = ["a", "b", "c"]
PLENTY = 10**15


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """``<root>/train/{a,b,c}/``, two 8x8 RGB PNGs each."""
    root = tmp_path / "pets"
    write_image_folder(root / "train", CLASSES, per_class=2, size=8)
    return root


@pytest.fixture
def roomy(monkeypatch: pytest.MonkeyPatch) -> None:
    """Budgets far above any test's needs, whatever the machine running the tests has free."""
    monkeypatch.setattr(budget, "free_disk_bytes", lambda path: PLENTY)
    monkeypatch.setattr(budget, "available_memory_bytes", lambda: PLENTY)


def _load(root: Path, cache_dir: Path | None, image_size: list[int] | None = None):
    return load_source("image_folder", root=str(root), channels=3, image_size=image_size or [8, 8],
                       cache_dir=None if cache_dir is None else str(cache_dir))


def _no_decoding(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args, **kwargs):
        raise AssertionError("decoded although the budget check should have refused first")
    monkeypatch.setattr(sources, "decode_files", refuse)


def test_full_disk_is_refused_before_decoding(folder: Path, tmp_path: Path, roomy: None,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(budget, "free_disk_bytes", lambda path: 100)
    _no_decoding(monkeypatch)
    cache = tmp_path / "cache"
    with pytest.raises(ConfigError) as info:
        _load(folder, cache)
    msg = str(info.value)
    assert str(folder / "train") in msg and "6 images" in msg and "3x8x8" in msg
    assert "192 B each" in msg and "1.2 kB" in msg  # 6 x 3 x 8 x 8 = 1,152 bytes
    assert "100 B free on the disk" in msg
    assert f"python -m lit_vision.prepare data=image_folder data.root={folder} out=<shard dir>" in msg
    assert "data=shards data.root=<shard dir>" in msg
    assert "data.image_size" in msg and "paths.cache_dir at a bigger disk" in msg
    assert not cache.exists() or not list(cache.rglob("*.npy"))  # nothing decoded, nothing written


def test_too_little_memory_is_refused_without_a_cache_dir(folder: Path, roomy: None,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(budget, "available_memory_bytes", lambda: 2000)  # the build needs 2 x 1,152 bytes
    _no_decoding(monkeypatch)
    with pytest.raises(ConfigError, match="available memory") as info:
        _load(folder, None)
    msg = str(info.value)
    assert "2.3 kB" in msg and "lit_vision.prepare" in msg and "data=shards" in msg
    assert "bigger disk" not in msg  # a bigger disk would not help the memory


def test_memory_check_is_skipped_where_the_system_does_not_say(folder: Path, roomy: None,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(budget, "available_memory_bytes", lambda: None)
    assert len(_load(folder, None).train) == 6


def test_within_budget_loads_and_a_cache_hit_is_never_refused(folder: Path, tmp_path: Path, roomy: None,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    cache = tmp_path / "cache"
    first = _load(folder, cache).train
    assert first.images.shape == (6, 3, 8, 8) and list(cache.glob("*.images.npy"))
    monkeypatch.setattr(budget, "free_disk_bytes", lambda path: 0)
    monkeypatch.setattr(budget, "available_memory_bytes", lambda: 0)
    _no_decoding(monkeypatch)
    again = _load(folder, cache).train  # read from the cache: no budget needed
    np.testing.assert_array_equal(again.images, first.images)
    with pytest.raises(ConfigError, match="lit_vision.prepare"):
        _load(folder, cache, image_size=[4, 4])  # another size is another cache, still to be built


def test_own_size_is_read_from_the_first_image_header(tmp_path: Path, roomy: None,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "big"
    write_image_folder(root / "train", CLASSES, per_class=2, size=12)
    monkeypatch.setattr(budget, "available_memory_bytes", lambda: 100)
    _no_decoding(monkeypatch)
    with pytest.raises(ConfigError) as info:
        load_source("image_folder", root=str(root), channels=3, image_size=None, cache_dir=None)
    assert budget.cache_bytes(6, 3, (12, 12)) == 2592
    assert "3x12x12" in str(info.value) and "2.6 kB" in str(info.value)


def test_units_and_readers(tmp_path: Path) -> None:
    assert budget.cache_bytes(1_281_167, 3, (224, 224)) == 1_281_167 * 3 * 224 * 224
    assert budget.human_bytes(999) == "999 B"
    assert budget.human_bytes(12_400_000_000) == "12.4 GB"
    assert budget.free_disk_bytes(tmp_path / "not" / "yet" / "made") > 0  # the nearest existing parent's disk
    memory = budget.available_memory_bytes()
    if sys.platform.startswith("linux"):
        assert memory is not None and memory > 0
    assert budget.header_size(tmp_path / "missing.png") is None
