"""Re-scoring a checkpoint reproduces the training run's test metrics; wrong data is refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import compose_config

from lit_vision.commands.evaluate import run as evaluate
from lit_vision.commands.train import run as train
from lit_vision.errors import ConfigError


def test_evaluate_matches_the_training_run(make_cfg, tmp_path, cifar_folders):
    record = train(make_cfg("trainer.max_epochs=1", "accelerator=cpu", "~callbacks.progress_bar",
                            "~callbacks.model_summary"))
    cfg = compose_config([f"ckpt_path={record['best_checkpoint']}", "accelerator=cpu", "report.plots=false"],
                         tmp_path / "eval", "evaluate")
    again = evaluate(cfg)
    for key in ("test/acc", "test/f1", "test/auroc", "val/acc"):
        assert again[key] == pytest.approx(record[key], abs=1e-6), key
    assert again["confusion_matrix"] == record["confusion_matrix"]
    assert json.loads(Path(tmp_path / "eval" / "metrics.json").read_text())["test/acc"] == again["test/acc"]
    assert again["tta"] == {"hflip": False, "translate": 0}  # the checkpoint's own (none)

    with_tta = evaluate(compose_config([f"ckpt_path={record['best_checkpoint']}", "accelerator=cpu",
                                        "report.plots=false", "tta={hflip: true, translate: 1}"],
                                       tmp_path / "eval_tta", "evaluate"))
    assert with_tta["tta"] == {"hflip": True, "translate": 1}
    assert with_tta["test/loss"] != pytest.approx(record["test/loss"], abs=1e-6)  # other logits: the views reached it
    with pytest.raises(ConfigError, match="^tta.translate=-1"):
        evaluate(compose_config([f"ckpt_path={record['best_checkpoint']}", "accelerator=cpu", "tta={translate: -1}"],
                                tmp_path / "eval_bad", "evaluate"))

    wrong = compose_config([f"ckpt_path={record['best_checkpoint']}", "accelerator=cpu", "data=cifar10",
                            f"data.root={cifar_folders}"], tmp_path / "eval2", "evaluate")
    with pytest.raises(ConfigError, match="trained on"):
        evaluate(wrong)
