"""``lit-vision audit``: planted duplicates, leaks, unusable images and label errors are found, written and acted on;
bad input is one line and writes nothing half."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import compose_config
from PIL import Image

from lit_vision.auditing.findings import Finding, leaked, write_issues
from lit_vision.commands.audit import forwarded_overrides
from lit_vision.commands.audit import run as audit
from lit_vision.errors import ConfigError
from lit_vision.training.builders import build_datamodule

CLASSES = {"dark": 50, "mid": 128, "light": 205}


def smooth_image(rng: np.random.Generator, base: float, size: int = 32) -> np.ndarray:
    """A class-brightness image with smooth random structure (distinct perceptual hashes per image)."""
    coarse = rng.normal(0, 45, (4, 4, 3))
    field = np.asarray(Image.fromarray(np.clip(128 + coarse, 0, 255).astype(np.uint8)).resize((size, size),
                                                                                             Image.BICUBIC))
    return np.clip(base + field.astype(np.float64) - 128, 0, 255).astype(np.uint8)


def write_planted(root: Path, per_class: int = 24, seed: int = 0) -> dict[str, Path]:
    """train/ and test/ folders of three brightness classes, with planted problems; returns their paths."""
    rng = np.random.default_rng(seed)
    for split, n in (("train", per_class), ("test", per_class // 3)):
        for name, base in CLASSES.items():
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                Image.fromarray(smooth_image(rng, base)).save(folder / f"{i:03d}.png")
    planted = {
        "exact_leak": root / "test" / "mid" / "copy.png",          # a training image's pixels, in test
        "near_leak": root / "test" / "light" / "reencoded.jpg",  # a training image, JPEG q75 and resized
        "blank": root / "train" / "dark" / "blank.png",
        "mislabelled": root / "train" / "dark" / "actually_light.png",
        "inner_copy": root / "train" / "light" / "copy_of_001.png",
    }
    Image.open(root / "train" / "mid" / "003.png").save(planted["exact_leak"])
    near = Image.open(root / "train" / "light" / "005.png").resize((40, 40), Image.BILINEAR).resize((32, 32))
    near.save(planted["near_leak"], quality=75)
    Image.fromarray(np.full((32, 32, 3), 90, np.uint8)).save(planted["blank"])
    Image.fromarray(smooth_image(rng, CLASSES["light"])).save(planted["mislabelled"])
    Image.open(root / "train" / "light" / "001.png").save(planted["inner_copy"])
    return planted


def read_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def compose_audit(tmp_path: Path, root: Path, *extra: str) -> object:
    return compose_config(["data=image_folder", f"data.root={root}", "data.image_size=[32,32]", "accelerator=cpu",
                           *extra], tmp_path / "audit", "audit")


def test_model_free_audit_finds_planted_duplicates_leaks_and_blanks(tmp_path):
    planted = write_planted(tmp_path / "photos")
    audit(compose_audit(tmp_path, tmp_path / "photos", "audit.checks=[duplicates,quality]"))
    out = tmp_path / "audit"
    rows = read_rows(out / "issues.csv")
    by_item = {(Path(r["item"]).name, r["kind"]): r for r in rows}
    exact = by_item[("copy.png", "exact_duplicate")]
    assert (exact["split"], exact["partner_split"], Path(exact["partner"]).name) == ("test", "train", "003.png")
    near = by_item[("reencoded.jpg", "near_duplicate")]
    assert (near["split"], near["partner_split"], Path(near["partner"]).name) == ("test", "train", "005.png")
    assert "phash" in near["detail"]
    inner = by_item[("copy_of_001.png", "exact_duplicate")]  # inside train: the later row is the copy to drop
    assert (inner["split"], inner["partner_split"], Path(inner["partner"]).name) == ("train", "train", "001.png")
    assert ("blank.png", "blank") in by_item
    flagged = {Path(r["item"]).name for r in rows}
    assert "actually_light.png" not in flagged  # a label issue needs a model; this audit ran none
    assert len(rows) == 4, rows
    summary = json.loads((out / "summary.json").read_text())
    assert summary["counts"]["exact_duplicate"] == {"train": 1, "test": 1}
    assert summary["leaked"] == {"test": 2}
    assert "| exact_duplicate | 1 | 1 |" in (out / "summary.md").read_text()
    assert {p.name for p in out.glob("*.png")} == {"duplicates.png", "unusable.png"}
    assert str(planted["exact_leak"]) in {r["item"] for r in rows}
    leaks = read_rows(out / "test_leaks.csv")  # the two test images with a copy in train, alone
    assert {r["item"] for r in leaks} == {str(planted["exact_leak"]), str(planted["near_leak"])}
    assert leaks == [r for r in rows if r["split"] == "test" and r["partner_split"] == "train"]


def test_issues_csv_is_what_data_exclude_reads(tmp_path):
    planted = write_planted(tmp_path / "photos")
    audit(compose_audit(tmp_path, tmp_path / "photos", "audit.checks=[duplicates,quality]"))
    cfg = compose_config(["data=image_folder", f"data.root={tmp_path / 'photos'}", "data.image_size=[32,32]",
                          f"data.exclude={tmp_path / 'audit' / 'issues.csv'}"], tmp_path / "train", "train")
    dm = build_datamodule(cfg)
    kept = set(dm.train_set.sources) | set(dm.val_set.sources) | set(dm.test_set.sources)
    for name in ("exact_leak", "near_leak", "blank", "inner_copy"):
        assert str(planted[name]) not in kept, name
    assert len(dm.test_set) == 3 * 8 + 2 - 2  # the two leaks left the test split
    assert str(planted["mislabelled"]) in kept


def test_forwarded_overrides_keep_the_data_and_drop_the_rest():
    given = ["data=cifar10", "data.root=/d", "+data.x=1", "audit.folds=2", "accelerator=cpu", "paths.cache_dir=/c",
             "ckpt_path=/r", "data.exclude=/e.csv"]
    assert forwarded_overrides(given, drop=("data.exclude",)) == ["data=cifar10", "data.root=/d", "+data.x=1",
                                                                  "accelerator=cpu", "paths.cache_dir=/c"]


def test_leaked_counts_only_cross_split_duplicates_of_training_images():
    findings = [Finding("test", "a", "near_duplicate", 0.1, "train", "x"),
                Finding("test", "b", "near_duplicate", 0.1, "test", "a"),
                Finding("test", "c", "label_issue", 0.1),
                Finding("val", "d", "exact_duplicate", 0.0, "train", "y")]
    assert leaked(findings) == {"a"}
    assert leaked(findings, "val") == {"d"}


def test_issues_csv_is_written_whole(tmp_path):
    path = write_issues(tmp_path / "issues.csv", [Finding("test", "b", "outlier", 2.0),
                                                   Finding("test", "a", "outlier", 3.0),
                                                   Finding("train", "c", "exact_duplicate", 0.0, "train", "d")])
    rows = read_rows(path)
    assert [r["item"] for r in rows] == ["c", "a", "b"]  # kinds in order, the strongest outlier first
    assert not list(tmp_path.glob("*.tmp"))


@pytest.mark.parametrize("override, message", [
    ("audit.checks=[duplicates,spelling]", "audit.checks="),
    ("audit.folds=1", "audit.folds=1"),
    ("audit.train=cnn", "audit.train=['cnn']"),
    ("audit.hash_distance=40", "audit.hash_distance=40"),
    ("+audit.colour=1", "audit.colour is not an audit setting"),
    ("audit.quality.min_side=-1", "audit.quality.min_side"),
])
def test_bad_settings_are_refused_before_any_data_is_read(tmp_path, override, message):
    proc = subprocess.run([sys.executable, "-m", "lit_vision.audit", "data=image_folder",
                           f"data.root={tmp_path / 'nothing_here'}", override, f"hydra.run.dir={tmp_path / 'a'}"],
                          capture_output=True, text=True)
    assert proc.returncode == 2, proc.stderr
    assert message in proc.stdout + proc.stderr
    assert not (tmp_path / "a" / "issues.csv").exists()


def test_missing_data_and_bad_exclude_list_are_one_line_and_write_nothing(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "lit_vision.audit", "data=fer2013", f"data.root={tmp_path / 'no'}",
                           f"hydra.run.dir={tmp_path / 'a'}"], capture_output=True, text=True)
    assert proc.returncode == 1
    assert f"No FER2013 data at data.root={tmp_path / 'no'}" in proc.stdout + proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    write_planted(tmp_path / "photos", per_class=9)
    bad = tmp_path / "bad.csv"
    bad.write_text("file,reason\na.png,blurry\n")
    proc = subprocess.run([sys.executable, "-m", "lit_vision.audit", "data=image_folder",
                           f"data.root={tmp_path / 'photos'}", f"data.exclude={bad}",
                           f"hydra.run.dir={tmp_path / 'b'}"],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert "bad.csv" in proc.stdout + proc.stderr and "'split' and 'item'" in proc.stdout + proc.stderr
    for folder in ("a", "b"):
        assert not (tmp_path / folder / "issues.csv").exists()


def test_a_checkpoint_of_other_classes_is_refused(tmp_path, make_cfg):
    from lit_vision.commands.train import run as train

    record = train(make_cfg("trainer.max_epochs=1", "accelerator=cpu", "~callbacks.progress_bar",
                            "~callbacks.model_summary", "report.plots=false"))
    write_planted(tmp_path / "photos", per_class=9)
    with pytest.raises(ConfigError, match="was trained on classes"):
        audit(compose_audit(tmp_path, tmp_path / "photos", f"ckpt_path={record['best_checkpoint']}"))
    assert not (tmp_path / "audit" / "issues.csv").exists()


@pytest.mark.slow
def test_full_audit_trains_folds_finds_the_label_error_and_resumes(tmp_path):
    """The whole audit as a user runs it: a net trained on train, 2 cross-validation folds, all checks; then the
    same audit resumed reuses every trained run."""
    planted = write_planted(tmp_path / "photos")
    out = tmp_path / "audit"
    argv = [sys.executable, "-m", "lit_vision.audit", "data=image_folder", f"data.root={tmp_path / 'photos'}",
            "data.image_size=[32,32]", "accelerator=cpu", f"paths.log_dir={tmp_path}",
            f"paths.cache_dir={tmp_path / 'cache'}", "audit.folds=2",
            "audit.train='model=cnn trainer.max_epochs=8 data.batch_size=16 ~callbacks.progress_bar'",
            f"hydra.run.dir={out}"]
    proc = subprocess.run(argv, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = read_rows(out / "issues.csv")
    label = [r for r in rows if r["kind"] == "label_issue"]
    mislabelled = [r for r in label if r["item"] == str(planted["mislabelled"])]
    assert mislabelled and (mislabelled[0]["given"], mislabelled[0]["suggested"]) == ("dark", "light"), label
    assert len(label) <= 5, label  # the clean images are not flagged wholesale
    for k in range(2):
        assert (out / "folds" / f"fold_{k}" / "probabilities.npy").is_file()
        held_out = (out / "folds" / f"fold_{k}" / "held_out.txt").read_text().split()
        assert 30 <= len(held_out) <= 45
    assert (out / "model" / "checkpoints").is_dir()
    assert {"label_issues.png", "duplicates.png"} <= {p.name for p in out.glob("*.png")}
    summary = json.loads((out / "summary.json").read_text())
    assert summary["counts"]["label_issue"]["train"] == len([r for r in label if r["split"] == "train"])

    again = subprocess.run([*argv[:-1], f"resume={out}"], capture_output=True, text=True)
    assert again.returncode == 0, again.stderr[-3000:]
    log = again.stdout + again.stderr
    assert f"training {out}" not in log  # every net, embedding and probability was kept
    assert f"reusing the finished run {out / 'model'}" in log
    assert read_rows(out / "issues.csv") == rows


def test_train_and_evaluate_score_the_whole_and_the_leak_free_test_split_side_by_side(tmp_path):
    from lit_vision.commands.evaluate import run as evaluate
    from lit_vision.commands.train import check_options as check_train
    from lit_vision.commands.train import run as train

    planted = write_planted(tmp_path / "photos", per_class=12)
    data = ["data=image_folder", f"data.root={tmp_path / 'photos'}", "data.image_size=[32,32]", "accelerator=cpu"]
    audit(compose_audit(tmp_path, tmp_path / "photos", "audit.checks=[duplicates]"))
    issues = tmp_path / "audit" / "issues.csv"
    fit = [*data, "model=cnn", "trainer.max_epochs=1", "~callbacks.progress_bar", "~callbacks.model_summary",
           "report.plots=false"]
    record = train(compose_config([*fit, f"leak_free={tmp_path / 'audit' / 'test_leaks.csv'}"], tmp_path / "run",
                                  "train"))
    with pytest.raises(ConfigError, match="test=false skips it"):
        check_train(compose_config([*fit, f"leak_free={issues}", "test=false"], tmp_path / "run2", "train"))
    scored = evaluate(compose_config([*data, f"ckpt_path={record['best_checkpoint']}", f"leak_free={issues}",
                                      "report.plots=false"], tmp_path / "eval", "evaluate"))
    assert scored["leak_free"] == {"issues": str(issues), "left_out": 2, "images": 3 * 4}
    with open(tmp_path / "eval" / "predictions.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    leaked_files = {str(planted["exact_leak"]), str(planted["near_leak"])}
    kept = [r for r in rows if r["source"] not in leaked_files]
    assert len(kept) == 12
    accuracy = np.mean([r["target"] == r["pred"] for r in kept])
    assert scored["test_leak_free/acc"] == pytest.approx(accuracy)
    assert scored["test/acc"] == pytest.approx(np.mean([r["target"] == r["pred"] for r in rows]))
    leak_free_keys = [k for k in scored if k.startswith("test_leak_free/")]
    assert leak_free_keys and all(k.replace("test_leak_free/", "test/") in scored for k in leak_free_keys)
    assert "test_leak_free/loss" not in scored  # the run's test/loss is its training loss: another definition
    saved = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert saved["test_leak_free/acc"] == scored["test_leak_free/acc"]
    # the training run scored the same best checkpoint the same way (train ... leak_free=)
    assert record["leak_free"]["left_out"] == 2 and record["test/acc"] == pytest.approx(scored["test/acc"])
    assert record["test_leak_free/acc"] == pytest.approx(scored["test_leak_free/acc"])

    other = tmp_path / "other.csv"
    other.write_text("split,item,kind,partner_split\ntest,test/999,near_duplicate,train\n")  # not in this data
    with pytest.raises(ConfigError, match="other.csv: 1 of its 1 entries are not in the data"):
        evaluate(compose_config([*data, f"ckpt_path={record['best_checkpoint']}", f"leak_free={other}",
                                 "report.plots=false"], tmp_path / "eval2", "evaluate"))


def test_the_audits_training_runs_get_its_data_even_by_default(tmp_path):
    """A recipe preset (experiment=cifar10_fast) swaps the data unless the run names its own: the audit always does."""
    from lit_vision.commands.audit import training_plan

    plan = training_plan(compose_config(["accelerator=cpu"], tmp_path / "a", "audit"), tmp_path / "a")
    assert plan.data_overrides == ["data=digits", "accelerator=cpu", "seed=42"]
    given = training_plan(compose_config(["data=fashion_mnist", "data.root=/d"], tmp_path / "b", "audit"),
                          tmp_path / "b")
    assert given.data_overrides == ["data=fashion_mnist", "data.root=/d", "seed=42"]


def test_prepared_shards_are_audited_from_their_stored_images(tmp_path):
    from lit_vision.data.image_folder import split_dirs
    from lit_vision.data.preparation import PrepareSettings, prepare_shards

    planted = write_planted(tmp_path / "photos", per_class=9)
    prepare_shards(split_dirs(str(tmp_path / "photos"), None, None, None), tmp_path / "shards",
                   PrepareSettings(32, 95, 3, False, 0.1, True, 0), workers=1, command="test")
    cfg = compose_config(["data=shards", f"data.root={tmp_path / 'shards'}", "data.image_size=[32,32]",
                          "audit.checks=[duplicates,quality]", "accelerator=cpu"], tmp_path / "audit", "audit")
    audit(cfg)
    rows = read_rows(tmp_path / "audit" / "issues.csv")
    refused = subprocess.run([sys.executable, "-m", "lit_vision.audit", "data=shards",
                              f"data.root={tmp_path / 'shards'}", f"hydra.run.dir={tmp_path / 'refused'}"],
                             capture_output=True, text=True)
    assert refused.returncode == 2
    assert "data=shards cannot leave cross-validation folds" in refused.stdout + refused.stderr
    exact = {(r["split"], Path(r["item"]).name, Path(r["partner"]).name) for r in rows
             if r["kind"] == "exact_duplicate"}
    assert ("test", planted["exact_leak"].name, "003.png") in exact  # both stored and decoded the same way
    assert any(Path(r["item"]).name == "blank.png" and r["kind"] == "blank" for r in rows)
