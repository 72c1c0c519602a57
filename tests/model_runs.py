"""Session fixtures for the model-comparison tests: a small trained CNN run and an XGBoost run on its embeddings."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import compose_config
from synthetic import write_image_folder

CLASSES = ["cat", "dog"]
COMMON = ["accelerator=cpu", "~callbacks.progress_bar", "~callbacks.model_summary"]


def pets_overrides(root: Path) -> list[str]:
    return ["data=image_folder", f"data.root={root}", "data.batch_size=8"]


@pytest.fixture(scope="session")
def pets_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("pets")
    write_image_folder(root / "train", CLASSES, 16, size=16)
    write_image_folder(root / "test", CLASSES, 5, size=16, seed=1)
    return root


@pytest.fixture(scope="session")
def cnn_run(tmp_path_factory: pytest.TempPathFactory, pets_root: Path) -> Path:
    from lit_vision.train import run

    out = tmp_path_factory.mktemp("runs") / "pets_cnn" / "runs" / "t0"
    cfg = compose_config(["model=cnn", *pets_overrides(pets_root), "trainer.max_epochs=3", *COMMON], out)
    run(cfg)
    return out


@pytest.fixture(scope="session")
def xgb_run(tmp_path_factory: pytest.TempPathFactory, pets_root: Path, cnn_run: Path) -> Path:
    from lit_vision.xgb import run

    out = tmp_path_factory.mktemp("runs") / "pets_xgb" / "runs" / "t0"
    cfg = compose_config([f"ckpt_path={cnn_run / 'checkpoints' / 'best.ckpt'}", *pets_overrides(pets_root),
                          "xgb.n_estimators=30", "xgb.early_stopping_rounds=5", "accelerator=cpu"], out, "xgb")
    run(cfg)
    return out
