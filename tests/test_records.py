"""``lit_vision.runs.records``: a run dir's files, readers, portable paths; no committed record names a machine."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from lit_vision.runs import records
from lit_vision.runs.records import DATA_ROOT, RunDir, portable, portable_argv, resolve, resolve_argv

ROOT = Path(__file__).resolve().parents[1]
#: absolute folders of the machines runs were made on (this container, the GPU machine)
MACHINE_PATH = re.compile(r"(?<![\w.$-])/(work|root|tmp)/")
#: tracked docs that may show such a path, and why (each hit must be in these lines)
ALLOWED = {
    "docs/cluster.md": "/tmp/lit-vision-slurm",  # LIT_VISION_SLURM_DIR's documented default, the same everywhere
}
#: tracked docs (not records) that still show a machine's folder in an example: to be fixed by their owners


@pytest.fixture
def root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("LIT_VISION_ROOT", str(tmp_path / "project"))
    (tmp_path / "project").mkdir()
    return (tmp_path / "project").resolve()


def test_run_dir_names_every_file(tmp_path: Path) -> None:
    run = RunDir(tmp_path)
    assert run.metrics_file == tmp_path / "metrics.json"
    assert run.history_file == tmp_path / "history.csv"
    assert run.predictions_file == tmp_path / "predictions.csv"
    assert (run.config_file, run.overrides_file, run.hydra_file) == tuple(
        tmp_path / ".hydra" / f for f in ("config.yaml", "overrides.yaml", "hydra.yaml"))
    assert (run.best_checkpoint, run.last_checkpoint) == (tmp_path / "checkpoints" / "best.ckpt",
                                                          tmp_path / "checkpoints" / "last.ckpt")
    assert run.operating_point_file == tmp_path / "operating_point.json"
    assert (run.manifest_file, run.reproduce_log) == (tmp_path / "reproduce.json", tmp_path / "reproduce.log")
    assert (run.error_file, run.plots_dir) == (tmp_path / "error.json", tmp_path / "plots")
    assert RunDir(str(tmp_path)) == run and isinstance(RunDir(str(tmp_path)).path, Path)


def test_readers_and_checkpoint_lookup(tmp_path: Path) -> None:
    run = RunDir(tmp_path)
    assert not run.finished and run.config() is None and run.overrides() == [] and run.history() == []
    assert run.manifest() is None and run.error() is None and run.operating_point() is None
    assert run.checkpoint() is None and run.command() is None
    run.hydra_dir.mkdir()
    run.config_file.write_text("seed: 1\nmodel:\n  lr: 1.0e-3\npaths:\n  out: ${hydra:runtime.output_dir}\n")
    run.overrides_file.write_text("- seed=1\n- model.lr=0.001\n")
    run.hydra_file.write_text("hydra:\n  job:\n    config_name: train\n")
    run.history_file.write_text("epoch,val/acc,lr-SGD\n0,0.5,\n1,0.75,0.1\n")
    run.checkpoint_dir.mkdir()
    run.last_checkpoint.write_bytes(b"x")
    assert run.checkpoint() == run.last_checkpoint
    run.best_checkpoint.write_bytes(b"x")
    assert run.checkpoint() == run.best_checkpoint
    assert run.config() == {"seed": 1, "model": {"lr": 1e-3}, "paths": {"out": "${hydra:runtime.output_dir}"}}
    assert run.overrides() == ["seed=1", "model.lr=0.001"] and run.command() == "train"
    assert run.history() == [{"epoch": 0.0, "val/acc": 0.5}, {"epoch": 1.0, "val/acc": 0.75, "lr-SGD": 0.1}]
    run.write_metrics({"test/acc": 0.5})
    run.write_manifest({"attempts": []})
    assert run.finished and run.metrics() == {"test/acc": 0.5} and run.manifest() == {"attempts": []}
    assert not (tmp_path / "reproduce.json.tmp").exists()


def test_paths_are_stored_portable_and_resolved(root: Path, tmp_path: Path) -> None:
    data = tmp_path / "datasets"
    assert portable(root / "outputs" / "a" / "best.ckpt") == "outputs/a/best.ckpt"
    assert portable(data / "fer2013", data) == f"{DATA_ROOT}/fer2013" and portable(data, data) == DATA_ROOT
    assert portable("relative/x") == "relative/x" and portable("/elsewhere/x") == "/elsewhere/x"
    assert resolve("outputs/a/best.ckpt") == root / "outputs" / "a" / "best.ckpt"
    assert resolve(f"{DATA_ROOT}/fer2013", data) == data / "fer2013"
    assert resolve(f"{DATA_ROOT}/fer2013", "../datasets") == data / "fer2013"  # a data root relative to the project
    with pytest.raises(ValueError, match="data root"):
        resolve(f"{DATA_ROOT}/fer2013")
    argv = [sys.executable, "-m", "lit_vision.train", "seed=1", f"hydra.run.dir={root / 'outputs' / 'r'}",
            f"data.root={data / 'cifar10-jpeg'}", str(root / "outputs" / "b.ckpt"), "--flag=/elsewhere"]
    stored = portable_argv(argv, data)
    assert stored == ["python", "-m", "lit_vision.train", "seed=1", "hydra.run.dir=outputs/r",
                      f"data.root={DATA_ROOT}/cifar10-jpeg", "outputs/b.ckpt", "--flag=/elsewhere"]
    assert resolve_argv(stored, data) == [sys.executable, *stored[1:5], f"data.root={data / 'cifar10-jpeg'}",
                                          *stored[6:]]


def test_metrics_paths_are_written_portable_and_read_absolute(root: Path) -> None:
    run = RunDir(root / "outputs" / "task" / "runs" / "t")
    best = run.best_checkpoint
    record = {"test/acc": 0.5, "best_checkpoint": str(best), "resumed_from": None, "checkpoint": "/elsewhere/c.ckpt"}
    run.write_metrics(record)
    stored = json.loads(run.metrics_file.read_text())
    assert stored["best_checkpoint"] == "outputs/task/runs/t/checkpoints/best.ckpt"
    assert stored["checkpoint"] == "/elsewhere/c.ckpt" and stored["resumed_from"] is None
    assert run.metrics() == record and record["best_checkpoint"] == str(best)  # the caller's record is untouched


def tracked(*pathspecs: str) -> list[str]:
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    out = subprocess.run(["git", "ls-files", "-z", "--", *pathspecs], cwd=ROOT, capture_output=True, check=True)
    return [p for p in out.stdout.decode().split("\0") if p]


def machine_paths(path: str) -> list[str]:
    try:
        text = (ROOT / path).read_text()
    except (UnicodeDecodeError, FileNotFoundError):
        return []
    return [f"{path}:{n}: {line.strip()[:160]}" for n, line in enumerate(text.splitlines(), 1)
            if MACHINE_PATH.search(line) and not (ALLOWED.get(path) and ALLOWED[path] in line)]


def test_no_committed_record_or_doc_holds_an_absolute_path_of_a_machine() -> None:
    """Run records (``outputs/``, ``docs/**/*.json``) and the docs name files relative to the project root or as
    ``${data_root}/…``: a clone on another machine reads them, and they say nothing about who made them."""
    files = [p for p in tracked("outputs", "docs")]
    assert any(p.endswith("reproduce.json") for p in files) or not (ROOT / "outputs" / "reproduce").is_dir()
    hits = [hit for p in files for hit in machine_paths(p)]
    assert not hits, "absolute paths of a machine in committed files:\n" + "\n".join(hits)


def test_committed_records_resolve_into_this_checkout(monkeypatch: pytest.MonkeyPatch) -> None:
    """The committed records' checkpoint paths resolve into this checkout's ``outputs/``, next to their record."""
    monkeypatch.setenv("LIT_VISION_ROOT", str(ROOT))
    seen = 0
    for path in tracked("outputs/*metrics.json"):
        run = RunDir((ROOT / path).parent)
        record = run.metrics()
        for key in records.PATH_KEYS:
            if isinstance(record.get(key), str):
                assert Path(record[key]).is_relative_to(ROOT / "outputs"), (path, key, record[key])
                seen += 1
        if isinstance(record.get("best_checkpoint"), str):
            assert Path(record["best_checkpoint"]) == run.best_checkpoint
    assert seen or not tracked("outputs/*metrics.json")
