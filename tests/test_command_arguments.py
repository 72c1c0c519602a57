"""Every value of the non-Hydra commands (predict, serve, export, export_backbone, compare, sweeps, rerun) and of
reproduce is checked before any model or data is read: one line naming the flag and the value and the fix, exit
code 2 for a usage mistake and 1 for a file that is missing or not what the command reads (docs/usage.md).

Every read of a model or an image is patched to fail the test, so each refusal provably comes first."""

from __future__ import annotations

import argparse
import importlib
import json
import re
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

from lit_vision.commands.arguments import device, host, output_file, port, positive_int
from lit_vision.config import CONF_DIR


@pytest.fixture
def files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A file, a finished run, a fake model of each kind, a folder of images, a sweep of one job, a single run; the
    project root (default outputs) is here too."""
    monkeypatch.setenv("LIT_VISION_ROOT", str(tmp_path))
    (tmp_path / "file.txt").write_text("not a folder")
    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.json").write_text(json.dumps({"test/acc": 0.5, "class_names": ["a", "b"]}))
    (tmp_path / "model.ckpt").write_bytes(b"never read")
    (tmp_path / "model.onnx").write_bytes(b"never read")
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "a.png").write_bytes(b"never decoded")
    (tmp_path / "sweep" / "0" / ".hydra").mkdir(parents=True)
    (tmp_path / "sweep" / "0" / "metrics.json").write_text(json.dumps({"val/acc": 0.5, "test/acc": 0.4}))
    (tmp_path / "single" / ".hydra").mkdir(parents=True)
    return tmp_path


@pytest.fixture
def no_reads(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any model load (checkpoint, ONNX, XGBoost), image decode or predictions read fails the test."""
    from lit_vision.deploy import inference, loader
    from lit_vision.models import boosting
    from lit_vision.runs.records import RunDir

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("a model or data was read before the mistake was refused")

    monkeypatch.setattr(torch, "load", refuse)
    monkeypatch.setattr(loader, "load_onnx", refuse)
    monkeypatch.setattr(boosting, "load_booster", refuse)
    monkeypatch.setattr(inference, "decode_image", refuse)
    monkeypatch.setattr(RunDir, "predictions", refuse)


CASES = [
    # predict: -m <model> <images> ...
    ("predict", "-m {tmp}/model.ckpt {tmp}/images --batch-size 0", 2, ["argument --batch-size", "'0'", ">= 1"]),
    ("predict", "-m {tmp}/model.ckpt {tmp}/images --batch-size -5", 2, ["argument --batch-size", "'-5'"]),
    ("predict", "-m {tmp}/model.ckpt {tmp}/images --batch-size 1.5", 2, ["argument --batch-size", "'1.5'"]),
    ("predict", "-m {tmp}/model.ckpt {tmp}/images --device gpu", 2, ["argument --device", "'gpu'", "cpu, cuda"]),
    ("predict", "-m {tmp}/model.ckpt {tmp}/images --device cuda:99", 2, ["argument --device", "'cuda:99'", "GPU"]),
    ("predict", "-m {tmp}/model.ckpt {tmp}/images --csv {tmp}/file.txt/out.csv", 2,
     ["argument --csv", "file.txt/out.csv'", "is a file, not a folder"]),
    ("predict", "-m {tmp}/model.ckpt {tmp}/images --csv {tmp}/images", 2, ["argument --csv", "is a folder"]),
    ("predict", "-m {tmp}/model.ckpt {tmp}/images --csv=", 2, ["argument --csv", "''", "no file name"]),
    ("predict", "-m {tmp}/model.ckpt {tmp}/images --bogus", 2, ["unrecognized arguments: --bogus"]),
    ("predict", "{tmp}/images", 2, ["-m/--model", "required"]),
    ("predict", "-m {tmp}/model.ckpt -m {tmp}/missing.ckpt {tmp}/images", 1,
     ["--model {tmp}/missing.ckpt: no such file or folder", "pass a training run dir"]),
    ("predict", "-m {tmp}/model.onnx {tmp}/nothing", 1, ["no image files found in {tmp}/nothing", "globs"]),
    # serve: MODEL [--host] [--port]
    ("serve", "{tmp}/model.onnx --port 0", 2, ["argument --port", "'0'", "1 to 65535"]),
    ("serve", "{tmp}/model.onnx --port 70000", 2, ["argument --port", "'70000'", "1 to 65535"]),
    ("serve", "{tmp}/model.onnx --port http", 2, ["argument --port", "'http'"]),
    ("serve", "{tmp}/model.onnx --host http://0.0.0.0", 2, ["argument --host", "'http://0.0.0.0'", "IP address"]),
    ("serve", "{tmp}/model.onnx --host 0.0.0.0:8000", 2, ["argument --host", "'0.0.0.0:8000'", "with --port"]),
    ("serve", "{tmp}/model.onnx --host=", 2, ["argument --host", "''"]),
    ("serve", "{tmp}/missing.onnx", 1, ["MODEL {tmp}/missing.onnx: no such file or folder"]),
    # export: MODEL [--format] [--out]
    ("export", "{tmp}/model.ckpt --out {tmp}/model.bin", 2, ["argument --out", "model.bin'", "must end in .onnx"]),
    ("export", "{tmp}/model.ckpt --out {tmp}/file.txt/m.onnx", 2, ["argument --out", "is a file, not a folder"]),
    ("export", "{tmp}/model.ckpt --out {tmp}/images", 2, ["argument --out", "is a folder"]),
    ("export", "{tmp}/model.ckpt --format torchscript", 2, ["argument --format", "'torchscript'", "onnx"]),
    ("export", "{tmp}/missing.ckpt", 1, ["{tmp}/missing.ckpt: no such file or folder"]),
    # export_backbone: CHECKPOINT OUT
    ("export_backbone", "{tmp}/model.ckpt {tmp}/weights.txt", 2, ["argument out", "weights.txt'", ".safetensors"]),
    ("export_backbone", "{tmp}/model.ckpt {tmp}/file.txt/w.safetensors", 2, ["argument out", "not a folder"]),
    ("export_backbone", "{tmp}/run {tmp}/w.safetensors", 1, ["checkpoint {tmp}/run is a folder",
                                                             "{tmp}/run/checkpoints/best.ckpt"]),
    # compare: RUNS [--out] [--ensemble]
    ("compare", "{tmp}/run --out {tmp}/file.txt/cmp", 2, ["argument --out", "is a file, not a folder"]),
    ("compare", "{tmp}/run --out=", 2, ["argument --out", "''", "no file name"]),
    ("compare", "{tmp}/run --out {tmp}/images", 2, ["argument --out", "is a folder"]),
    ("compare", "{tmp}/run --ensemble", 2, ["--ensemble needs at least two runs", "{tmp}/run"]),
    ("compare", "{tmp}/nowhere", 1, ["{tmp}/nowhere: no metrics.json"]),
    # sweeps: SWEEP_DIR [METRIC]
    ("sweeps", "{tmp}/nowhere", 1, ["{tmp}/nowhere is not a directory"]),
    ("sweeps", "{tmp}/file.txt", 1, ["{tmp}/file.txt is not a directory"]),
    ("sweeps", "{tmp}/images", 1, ["{tmp}/images holds no job folders", "multiruns"]),
    ("sweeps", "{tmp}/single", 1, ["{tmp}/single holds no job folders", "single run"]),
    ("sweeps", "{tmp}/sweep val/accuracy", 2, ["metric='val/accuracy'", "test/acc, val/acc"]),
    # rerun: RUN_DIR [overrides] [--allow-changed]
    ("rerun", "{tmp}/nowhere", 1, ["{tmp}/nowhere is not a run dir"]),
    ("rerun", "{tmp}/file.txt", 1, ["{tmp}/file.txt is not a run dir"]),
    ("rerun", "{tmp}/run --force", 2, ["unrecognized arguments: --force"]),
]


@pytest.mark.parametrize(("command", "argv", "code", "named"), CASES,
                         ids=[f"{c}:{a.replace('{tmp}/', '')}" for c, a, _, _ in CASES])
def test_a_mistake_is_one_line_naming_flag_and_value_before_anything_is_read(
        files: Path, no_reads: None, capsys: pytest.CaptureFixture[str], command: str, argv: str, code: int,
        named: list[str]) -> None:
    module = importlib.import_module(f"lit_vision.commands.{command}")
    with pytest.raises(SystemExit) as exit_info:
        module.main(argv.format(tmp=files).split(" "))
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert exit_info.value.code == code, captured.err
    assert len(lines) == 1 and "error" in lines[0], captured.err
    for part in named:
        assert part.format(tmp=files) in lines[0], lines[0]
    assert not captured.out.strip()  # nothing done before the refusal
    assert not list(files.rglob("summary*")) and not (files / "outputs").exists()  # nothing written


# --- reproduce: a Hydra command, checked by the shared runner before any run starts -------------------------------
@pytest.mark.parametrize(("override", "named"), [
    ("presets=horse_cnn", "presets='horse_cnn' must be a list of row names, e.g. presets=[horse_cnn]"),
    ("presets=[horse_cnnn]", "presets=['horse_cnnn']: ['horse_cnnn'] not rows"),
    ("seeds=42", "seeds=42 must be a list of integers"),
    ("seeds=[-1]", "seeds=[-1] must be a list"),
    ("seeds=[a]", "seeds=['a'] must be a list"),
    ("first_seed=-1", "first_seed=-1 must be an integer from 0"),
    ("run=maybe", "run='maybe' must be true or false"),
    ("budget=huge", "budget='huge' is not one of"),
    ("overrides.train=cuda", "overrides.train='cuda' must be a list of overrides"),
    ("+overrides.evaluate=[x]", "overrides has ['evaluate']"),
    ("out={tmp}/file.txt", "out={tmp}/file.txt: a file"),
    ("data_root={tmp}/nowhere", "data_root={tmp}/nowhere: no such folder"),
])
def test_reproduce_refuses_a_mistake_before_any_run_starts(files: Path, monkeypatch: pytest.MonkeyPatch,
                                                           caplog: pytest.LogCaptureFixture, override: str,
                                                           named: str) -> None:
    from lit_vision.commands import reproduce
    from lit_vision.commands.runner import execute
    from lit_vision.reproduction import launch

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("a run started before the mistake was refused")

    monkeypatch.setattr(launch, "execute", refuse)
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name="reproduce", overrides=[f"data_root={files}", f"out={files / 'out'}",
                                                          override.format(tmp=files)])
    GlobalHydra.instance().clear()
    with pytest.raises(SystemExit) as exit_info:
        execute(reproduce.run, cfg)
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert exit_info.value.code == 2
    assert len(errors) == 1 and "\n" not in errors[0] and named.format(tmp=files) in errors[0], errors
    assert not (files / "out").exists()


# --- the validators accept what they should ---------------------------------------------------------------------
@pytest.mark.parametrize(("check", "text"), [
    (positive_int, "1"), (positive_int, "256"), (port, "1"), (port, "8000"), (port, "65535"),
    (host, "127.0.0.1"), (host, "0.0.0.0"), (host, "::"), (host, "::1"), (host, "localhost"),
    (host, "serve-1.example.org"), (device, "cpu"), (device, "CPU"),
])
def test_good_values_pass(check, text: str) -> None:
    check(text)


@pytest.mark.parametrize(("check", "text"), [
    (host, "999.1.1.1"), (host, "-bad.example"), (host, "two words"), (host, "a/b"), (port, "-1"),
    (device, "cuda0"), (device, "tpu"),
])
def test_bad_values_are_refused(check, text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match=re.escape(repr(text))):
        check(text)


def test_an_output_file_may_go_into_folders_made_when_it_is_written(tmp_path: Path) -> None:
    assert output_file(".onnx")(str(tmp_path / "new" / "deeper" / "model.onnx")) == tmp_path / "new" / "deeper" / \
        "model.onnx"
    assert not (tmp_path / "new").exists()  # checking makes nothing
    assert output_file()("relative_name") == Path("relative_name")
