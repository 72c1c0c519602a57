"""Shared fixtures: compose the real config tree with test overrides, and make small synthetic data."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict

sys.path.insert(0, str(Path(__file__).parent))

from lit_vision.config import CONF_DIR  # noqa: E402
from lit_vision.data.synthetic import (  # noqa: E402
    FER_CLASSES,
    write_cifar_batches,
    write_cifar_folders,
    write_fer_folders,
    write_image_folder,
    write_torchvision_idx,
)

REPO_ROOT = Path(__file__).resolve().parents[1]

SHARED_DATASETS = Path(os.environ.get("LIT_VISION_SHARED_DATASETS",
                                      Path(__file__).resolve().parents[2] / "shared" / "datasets"))

# keep test runs off the user's GPU and quiet
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

#: overrides that make any preset a quick CPU smoke run
FAST = ["trainer.fast_dev_run=true", "accelerator=cpu", "~callbacks.progress_bar", "~callbacks.model_summary"]


def compose_config(overrides: list[str], run_dir: Path, config_name: str = "train") -> DictConfig:
    """Compose ``conf/<config_name>.yaml`` like the CLI would, with outputs and caches under ``run_dir``."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name=config_name, overrides=overrides, return_hydra_config=True)
    with open_dict(cfg):
        cfg.hydra.runtime.output_dir = str(run_dir)
        cfg.hydra.job.num = 0
        cfg.hydra.job.id = "test"
    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        cfg.paths.output_dir = str(run_dir)
        cfg.paths.log_dir = str(run_dir.parent / "logs")
        cfg.paths.cache_dir = str(run_dir.parent / "cache")
    return cfg


def accuracy_from_predictions(run_dir: Path) -> float:
    """Test accuracy at argmax (what ``test/acc`` measures) recomputed from a run's predictions.csv, and a check that
    its ``pred`` column is the deployed decision: argmax, or ``P(positive) >= threshold`` for a binary run with an
    operating point (``operating_point.json``)."""
    import csv
    import json

    with open(Path(run_dir) / "predictions.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    prob_keys = [k for k in rows[0] if k.startswith("p_")]
    argmax = [max(range(len(prob_keys)), key=lambda i, r=r: float(r[prob_keys[i]])) for r in rows]
    point = Path(run_dir) / "operating_point.json"
    if point.is_file():
        threshold = json.loads(point.read_text())["threshold"]
        decided = [int(float(r[prob_keys[1]]) >= threshold) for r in rows]
        # probabilities are written with 6 decimals: a row within rounding of the threshold may go either way
        clear = [abs(float(r[prob_keys[1]]) - threshold) > 1e-6 for r in rows]
    else:
        decided, clear = argmax, [True] * len(rows)
    assert [int(r["pred"]) for r, c in zip(rows, clear) if c] == [d for d, c in zip(decided, clear) if c], \
        "predictions.csv's pred is not the deployed decision"
    return sum(int(r["target"]) == a for r, a in zip(rows, argmax)) / len(rows)


@pytest.fixture
def make_cfg(tmp_path: Path) -> Callable[..., DictConfig]:
    def factory(*overrides: str, config_name: str = "train") -> DictConfig:
        overrides_ = list(overrides)
        if config_name == "train" and not any(o.startswith("report.plots=") for o in overrides_):
            overrides_.append("report.plots=false")  # plots cost seconds per run; tests/test_plots.py turns them on
        return compose_config(overrides_, tmp_path / "run", config_name)
    return factory


@pytest.fixture(scope="session")
def cifar_folders(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_cifar_folders(tmp_path_factory.mktemp("cifar_folders"))


@pytest.fixture(scope="session")
def cifar_batches(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_cifar_batches(tmp_path_factory.mktemp("cifar_batches"))


@pytest.fixture
def shared_datasets() -> Path:
    if not SHARED_DATASETS.is_dir():
        pytest.skip(f"real datasets not found at {SHARED_DATASETS}")
    return SHARED_DATASETS


@pytest.fixture(scope="session")
def synthetic_roots(tmp_path_factory: pytest.TempPathFactory, cifar_folders: Path) -> dict[str, Path]:
    """A small synthetic ``data.root`` for every data config name (keys: ``cfg.data.name``)."""
    idx = tmp_path_factory.mktemp("idx")
    write_torchvision_idx(idx, "MNIST")
    write_torchvision_idx(idx, "FashionMNIST")
    fer = write_fer_folders(tmp_path_factory.mktemp("fer"), train={c: 10 for c in FER_CLASSES},
                            test={c: 3 for c in FER_CLASSES})
    return {"mnist": idx, "fashion_mnist": idx, "fer2013": fer, "fer_happy_sad": fer,
            "fer_happy_sad_weighted": fer, "cifar10": cifar_folders, "cifar_horse": cifar_folders,
            "shards": prepared_shards(cifar_folders, tmp_path_factory.mktemp("shards") / "cifar")}


def prepared_shards(folder: Path, out: Path) -> Path:
    """``python -m lit_vision.prepare`` of an image folder (library call, one process), for ``data=shards``."""
    from lit_vision.data.image_folder import split_dirs
    from lit_vision.data.preparation import PrepareSettings, prepare_shards

    settings = PrepareSettings(short_side=32, quality=90, channels=3, skip_corrupt=False, val_fraction=0.1,
                               use_source_val=True, seed=0)
    return prepare_shards(split_dirs(folder), out, settings, workers=1, command="tests").root


# --- one small trained CNN run and an XGBoost run on its embeddings, shared by every test module (once per session)
PETS_CLASSES = ["cat", "dog"]
PETS_COMMON = ["accelerator=cpu", "~callbacks.progress_bar", "~callbacks.model_summary"]


def pets_overrides(root: Path) -> list[str]:
    return ["data=image_folder", f"data.root={root}", "data.batch_size=8"]


@pytest.fixture(scope="session")
def pets_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("pets")
    write_image_folder(root / "train", PETS_CLASSES, 16, size=16)
    write_image_folder(root / "test", PETS_CLASSES, 5, size=16, seed=1)
    return root


@pytest.fixture(scope="session")
def cnn_run(tmp_path_factory: pytest.TempPathFactory, pets_root: Path) -> Path:
    from lit_vision.commands.runner import execute
    from lit_vision.commands.train import run

    out = tmp_path_factory.mktemp("runs") / "pets_cnn" / "runs" / "t0"
    execute(run, compose_config(["model=cnn", *pets_overrides(pets_root), "trainer.max_epochs=3", *PETS_COMMON], out))
    return out


@pytest.fixture(scope="session")
def xgb_run(tmp_path_factory: pytest.TempPathFactory, pets_root: Path, cnn_run: Path) -> Path:
    from lit_vision.commands.runner import execute
    from lit_vision.commands.xgb import run

    out = tmp_path_factory.mktemp("runs") / "pets_xgb" / "runs" / "t0"
    execute(run, compose_config([f"ckpt_path={cnn_run / 'checkpoints' / 'best.ckpt'}", *pets_overrides(pets_root),
                                 "xgb.n_estimators=30", "xgb.early_stopping_rounds=5", "accelerator=cpu"], out, "xgb"))
    return out


@pytest.fixture(scope="session")
def cli_run(cnn_run: Path, pets_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The trained pets run as the command line leaves it: with its resolved config in .hydra/config.yaml."""
    import shutil

    from omegaconf import OmegaConf

    run_dir = tmp_path_factory.mktemp("cli") / "pets_cnn" / "runs" / "t0"
    shutil.copytree(cnn_run, run_dir)
    cfg = compose_config(["model=cnn", *pets_overrides(pets_root), *PETS_COMMON], run_dir)
    (run_dir / ".hydra").mkdir(exist_ok=True)
    OmegaConf.save(cfg, run_dir / ".hydra" / "config.yaml", resolve=True)
    return run_dir


# --- the pets run exported to ONNX, and python -m lit_vision.serve's app serving it (tests/test_serve*.py)
@pytest.fixture(scope="session")
def onnx_model(cli_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("onnxruntime")
    from lit_vision.deploy.onnx_export import export

    return export(cli_run, tmp_path_factory.mktemp("serve") / "pets.onnx")["path"]


#: the test service's 408 timeout: short, so the test of it waits little
SERVER_REQUEST_TIMEOUT_S = 1.0


@pytest.fixture(scope="module")
def server(onnx_model: Path) -> Iterator[str]:
    """The service on the exported pets model, in a thread on a free loopback port (one per test module): its URL."""
    import threading
    import time

    uvicorn = pytest.importorskip("uvicorn")
    serving = pytest.importorskip("lit_vision.deploy.server")
    from serve_client import free_port

    port = free_port()
    srv = uvicorn.Server(serving.uvicorn_config(serving.load_model(onnx_model), "127.0.0.1", port,
                                                request_timeout=SERVER_REQUEST_TIMEOUT_S))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not srv.started:
        assert time.monotonic() < deadline, "server did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    srv.should_exit = True
    thread.join(10)
