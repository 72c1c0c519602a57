"""What a run prints: the data summary, the net's layers, the progress bar and the final tables, nothing else."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

#: Lightning/torch lines a lit_vision run must not print (adverts, metric objects in the summary, false warnings)
NOISE = ["litlogger", "Tip:", "FLOPs", "already configured", "exists and is not empty", "LeafSpec",
         "train_metrics", "val_metrics", "test_metrics", "test_confusion", "GPU available: False", "TPU available"]


def test_a_default_run_prints_only_what_matters(tmp_path: Path) -> None:
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    res = subprocess.run([sys.executable, "-m", "lit_vision.train", "trainer.max_epochs=1", "accelerator=cpu",
                          "report.plots=false", f"hydra.run.dir={tmp_path / 'run'}"],
                         cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    console = res.stdout + res.stderr
    assert res.returncode == 0, console[-3000:]
    assert [noise for noise in NOISE if noise in console] == [], console
    # the model summary: the net's layers and the parameter totals
    for expected in ("net.features", "net.head", "net.classifier", "Sequential", "Linear", "Total params"):
        assert expected in console, console
    assert "Epoch 0" in console  # the progress bar
    assert "test with the best checkpoint" in console and "classification report (test)" in console
    assert (tmp_path / "run" / "metrics.csv").is_file()  # the CSV logger still writes into the run dir
