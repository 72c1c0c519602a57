"""python -m lit_vision.reproduce: rows and references, skip / resume / fail per run, tables from the runs.

The fast tests use hand-made run dirs and a fake launcher; the slow ones run the command itself on the quick budget
over synthetic data (lit_vision.data.synthetic), each training a separate process as the real thing does.
"""

from __future__ import annotations

import json
import os
import re
import struct
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import REPO_ROOT
from omegaconf import OmegaConf

from lit_vision.commands.reproduce import progress, run_all, write_tables
from lit_vision.config import CONF_DIR
from lit_vision.data.synthetic import write_torchvision_idx
from lit_vision.errors import ConfigError
from lit_vision.reproduction import launch, markers, plan, tables

SHARED_DOCS = REPO_ROOT.parent / "shared" / "docs"
MACHINE = {"cpu": "Test CPU 9000", "cores": 2, "gpus": []}


def spec(**changes: Any) -> dict[str, Any]:
    """conf/reproduce.yaml as the command sees it (resolved), with ``changes`` (dotted keys) applied."""
    cfg = OmegaConf.load(CONF_DIR / "reproduce.yaml")
    for key, value in changes.items():
        OmegaConf.update(cfg, key, value, merge=False)
    return OmegaConf.to_container(cfg, resolve=True)


@pytest.fixture(scope="module")
def rows() -> dict[str, plan.Row]:
    return plan.load_rows(spec())


# --- the config: every notebook preset is a row, every figure is the shared docs' ------------------------------
def preset_tags(group: str) -> dict[str, list[str]]:
    return {p.stem: (yaml.safe_load(p.read_text()) or {}).get("tags", []) for p in (CONF_DIR / group).glob("*.yaml")}


def test_every_notebook_preset_is_a_row(rows: dict[str, plan.Row]) -> None:
    notebook_presets = {name for name, tags in preset_tags("experiment").items()
                        if any(t.startswith("notebook") for t in tags)}
    assert notebook_presets == {r.preset for r in rows.values() if r.command == "train"}
    for command, group in (("xgb", "xgb_preset"), ("baseline", "baseline_preset")):
        assert {p.stem for p in (CONF_DIR / group).glob("*.yaml")} == {r.preset for r in rows.values()
                                                                      if r.command == command}
    assert [r.name for r in rows.values() if not r.tabled] == ["fer_backbone_pretrain"]  # the one helper


def test_needing_rows_come_after_what_they_need_and_use_it(rows: dict[str, plan.Row]) -> None:
    assert rows["fer_custom_xgb"].needs == "fer_custom_cnn" and rows["fer_vgg16"].needs == "fer_backbone_pretrain"
    assert any("{needs}" in o for o in rows["fer_custom_xgb"].overrides)
    assert any("{run}" in o for o in rows["fer_vgg16"].overrides) and rows["fer_vgg16"].before


@pytest.mark.skipif(not SHARED_DOCS.is_dir(), reason=f"no {SHARED_DOCS}")
def test_every_reference_figure_is_printed_in_the_shared_docs() -> None:
    """A typo in conf/reproduce.yaml's figures fails here: each must appear in the doc it was copied from."""
    notebook_doc = (SHARED_DOCS / "seed-reference.md").read_text()
    keras_doc = (SHARED_DOCS / "keras-reference.md").read_text()
    for key, ref in spec()["references"].items():
        for metric, value in ref["notebook"].items():
            printed = {f"{value:.2f}", f"{value:.3f}", f"{value:.4f}", f"{value * 100:.2f}%"}
            assert any(p in notebook_doc for p in printed), f"references.{key}.notebook.{metric}={value}"
        for metric, values in (ref.get("keras") or {}).items():
            if metric != "seeds":
                assert len(values) == len(ref["keras"]["seeds"]), f"references.{key}.keras.{metric}"
                assert all(f"{v:.4f}" in keras_doc for v in values), f"references.{key}.keras.{metric}={values}"


@pytest.mark.skipif(not (SHARED_DOCS.parent / "seeds").is_dir(), reason=f"no {SHARED_DOCS.parent / 'seeds'}")
def test_every_row_figure_is_printed_in_its_notebook() -> None:
    """A row's own figures (a shorter budget compared at the same epoch) are copied from the notebook's printout."""
    notebooks = {p.name[:3]: p.read_text() for p in (SHARED_DOCS.parent / "seeds").glob("*.txt")}
    settings = spec()
    figures = [(name, metric, value, settings["references"][row["reference"]]["title"][:3])
               for name, row in settings["rows"].items() for metric, value in (row.get("notebook") or {}).items()
               if value is not None]
    assert figures, "no row has its own notebook figures any more: drop this test"
    for name, metric, value, notebook in figures:
        printed = {"val_acc_last": "val_accuracy: ", "train_acc_last": "- accuracy: "}[metric] + str(value)
        assert printed in notebooks[notebook], f"rows.{name}.notebook.{metric}={value}: {printed!r} is not printed"


def test_a_row_naming_an_unknown_reference_or_metric_is_refused() -> None:
    with pytest.raises(ConfigError, match="rows.mnist_cnn.reference='nope'"):
        plan.load_rows(spec(**{"rows.mnist_cnn.reference": "nope"}))
    with pytest.raises(ConfigError, match=r"rows.mnist_cnn.metrics has \['auc'\]"):
        plan.load_rows(spec(**{"rows.mnist_cnn.metrics": ["acc", "auc"]}))
    with pytest.raises(ConfigError, match="unknown keys"):
        plan.load_rows(spec(**{"rows.mnist_cnn.epochs": 3}))
    with pytest.raises(ConfigError, match=r"rows.mnist_cnn.notebook has figures for \['val_acc_last'\]"):
        plan.load_rows(spec(**{"rows.mnist_cnn.notebook": {"val_acc_last": 0.9}}))


# --- the plan ------------------------------------------------------------------------------------------------
def test_selection_adds_what_a_row_needs_in_config_order(rows: dict[str, plan.Row]) -> None:
    assert [r.name for r in plan.select(rows, ["fer_vgg16", "mnist_cnn"])] == [
        "mnist_cnn", "fer_backbone_pretrain", "fer_vgg16"]
    with pytest.raises(ConfigError, match=r"\['mnist_cnnn'\] not rows"):
        plan.select(rows, ["mnist_cnnn"])


def test_seeds_count_up_from_the_first_and_a_needed_row_with_fewer_seeds_lends_its_first(
        rows: dict[str, plan.Row], tmp_path: Path) -> None:
    runs = plan.plan_runs(plan.select(rows, ["fer_vgg16"]), tmp_path, None, 42, None)
    assert [(r.row.name, r.seed) for r in runs] == [("fer_backbone_pretrain", 42), ("fer_vgg16", 42),
                                                    ("fer_vgg16", 43), ("fer_vgg16", 44)]
    assert {r.needs_dir for r in runs[1:]} == {tmp_path / "fer_backbone_pretrain" / "seed42"}
    quick = plan.plan_runs(plan.select(rows, ["fer_custom_xgb"]), tmp_path, None, 42, 1)
    assert [(r.row.name, r.seed, r.needs_dir) for r in quick] == [
        ("fer_custom_cnn", 42, None), ("fer_custom_xgb", 42, tmp_path / "fer_custom_cnn" / "seed42")]
    assert [r.seed for r in plan.plan_runs([rows["mnist_cnn"]], tmp_path, [7, 8], 42, 1)] == [7, 8]


def test_command_line_names_preset_seed_dir_data_and_resume(rows: dict[str, plan.Row], tmp_path: Path) -> None:
    xgb = plan.plan_runs(plan.select(rows, ["fer_custom_xgb"]), tmp_path, [5], 42, None)[1]
    argv = plan.command_line(xgb, tmp_path / "data", ["xgb.n_estimators=5"], ["a=1"], resume=False)
    assert argv[1:] == ["-m", "lit_vision.xgb", "xgb_preset=fer_custom_xgb", "seed=5",
                        f"hydra.run.dir={tmp_path / 'fer_custom_xgb' / 'seed5'}",
                        f"data.root={tmp_path / 'data' / 'fer2013'}",
                        f"ckpt_path={tmp_path / 'fer_custom_cnn' / 'seed5'}/checkpoints/best.ckpt",
                        "xgb.n_estimators=5", "a=1"]
    mnist = plan.Run(rows["mnist_cnn"], 1, tmp_path / "m")
    assert plan.command_line(mnist, tmp_path, [], [], resume=True)[-2:] == [f"data.root={tmp_path}",
                                                                            f"resume={tmp_path / 'm'}"]
    grid = plan.Run(rows["fashion_cnn_dropout_0_5"], 1, tmp_path / "g")  # a variant of a preset: its own run dir
    assert plan.command_line(grid, tmp_path, [], [], resume=False)[3:6] == [
        "experiment=fashion_cnn", "seed=1", f"hydra.run.dir={tmp_path / 'g'}"]
    assert "model.dropout=0.5" in plan.command_line(grid, tmp_path, [], [], resume=False)
    vgg = plan.plan_runs(plan.select(rows, ["fer_vgg16"]), tmp_path, [1], 42, None)[1]
    assert plan.before_line(vgg)[1:] == ["-m", "lit_vision.export_backbone",
                                         f"{tmp_path / 'fer_backbone_pretrain' / 'seed1'}/checkpoints/best.ckpt",
                                         f"{tmp_path / 'fer_vgg16' / 'seed1'}/backbone.safetensors"]


# --- one run: skip, resume, fail, block ----------------------------------------------------------------------
class FakeLauncher:
    """Stands in for the subprocess: records the command lines, writes metrics.json unless told to fail."""

    def __init__(self, code: int = 0) -> None:
        self.code, self.calls = code, []

    def __call__(self, argv: Sequence[str], log: Path, cwd: Path) -> int:
        self.calls.append(list(argv))
        run_dir = Path(next(a for a in argv if a.startswith("hydra.run.dir=")).split("=", 1)[1])
        if self.code == 0:
            (run_dir / "metrics.json").write_text(json.dumps({"test/acc": 0.5}))
        return self.code


def execute(run: plan.Run, launcher: FakeLauncher, budget: str = "quick") -> launch.Outcome:
    return launch.execute(run, budget, lambda resume: plan.command_line(run, Path("/data"), [], [], resume), None,
                          MACHINE, Path.cwd(), launcher)


def test_finished_runs_are_skipped_stopped_ones_resumed(rows: dict[str, plan.Row], tmp_path: Path) -> None:
    run = plan.Run(rows["mnist_cnn"], 42, tmp_path / "mnist_cnn" / "seed42")
    fake = FakeLauncher()
    first = execute(run, fake)
    assert first.status == "ok" and not first.resumed and not any(a.startswith("resume=") for a in fake.calls[0])
    assert execute(run, fake).status == "skipped" and len(fake.calls) == 1
    (run.dir / "metrics.json").unlink()  # killed after an epoch: last.ckpt, no metrics.json
    (run.dir / "checkpoints").mkdir()
    (run.dir / "checkpoints" / "last.ckpt").write_bytes(b"x")
    again = execute(run, fake)
    assert again.status == "ok" and again.resumed and fake.calls[-1][-1] == f"resume={run.dir}"
    attempts = launch.read_manifest(run.dir)["attempts"]
    assert [(a["resumed"], a["exit_code"], a["machine"]["cpu"]) for a in attempts] == [
        (False, 0, "Test CPU 9000"), (True, 0, "Test CPU 9000")]


def test_a_failing_run_is_recorded_and_a_run_needing_it_is_blocked(rows: dict[str, plan.Row],
                                                                    tmp_path: Path) -> None:
    cnn, xgb = plan.plan_runs(plan.select(rows, ["fer_custom_xgb"]), tmp_path, [1], 42, None)
    failed = execute(cnn, FakeLauncher(code=2))
    assert (failed.status, failed.exit_code) == ("failed", 2)
    assert launch.read_manifest(cnn.dir)["attempts"][-1]["exit_code"] == 2
    fake = FakeLauncher()
    blocked = execute(xgb, fake)
    assert blocked.status == "blocked" and "fer_custom_cnn" in blocked.detail and not fake.calls


def test_run_all_goes_on_after_a_failure_and_passes_the_budget(rows: dict[str, plan.Row], tmp_path: Path) -> None:
    class FailFirst(FakeLauncher):
        def __call__(self, argv: Sequence[str], log: Path, cwd: Path) -> int:
            self.code = 1 if not self.calls else 0
            return super().__call__(argv, log, cwd)

    runs = plan.plan_runs([rows["mnist_cnn"]], tmp_path, [1, 2], 42, None)
    fake = FailFirst()
    outcomes = run_all(runs, spec(budget="quick", data_root=str(tmp_path)), launcher=fake)
    assert [(o.status, o.exit_code) for o in outcomes] == [("failed", 1), ("ok", 0)]
    assert "trainer.max_epochs=1" in fake.calls[1] and f"data.root={tmp_path}" in fake.calls[1]
    assert progress(1, 2, outcomes[0]) == (f"[1/2] mnist_cnn seed 1: failed in 0.0 min, exit 1; "
                                           f"log {runs[0].dir / 'reproduce.log'}")


def test_exit_0_without_metrics_is_a_failure(rows: dict[str, plan.Row], tmp_path: Path) -> None:
    run = plan.Run(rows["mnist_cnn"], 1, tmp_path / "r")
    outcome = launch.execute(run, "quick", lambda resume: ["true", f"hydra.run.dir={run.dir}"], None, MACHINE,
                             tmp_path, lambda argv, log, cwd: 0)
    assert outcome.status == "failed" and "no metrics.json" in outcome.detail


def test_runs_of_another_budget_are_refused(rows: dict[str, plan.Row], tmp_path: Path) -> None:
    run = plan.Run(rows["mnist_cnn"], 1, tmp_path / "r")
    execute(run, FakeLauncher(), budget="quick")
    with pytest.raises(ConfigError, match="budget='quick'.*budget=full"):
        execute(run, FakeLauncher(), budget="full")


# --- tables --------------------------------------------------------------------------------------------------
def fake_run(out: Path, row: str, seed: int, record: dict[str, Any] | None, budget: str = "full",
             cpu_seconds: float = 1800.0, exit_code: int | None = 0) -> Path:
    run_dir = out / row / f"seed{seed}"
    run_dir.mkdir(parents=True)
    if record is not None:
        (run_dir / "metrics.json").write_text(json.dumps(record))
    attempt = {"machine": MACHINE, "exit_code": exit_code, "cpu_seconds": cpu_seconds, "wall_seconds": cpu_seconds}
    launch.write_manifest(run_dir, {"row": row, "seed": seed, "budget": budget, "attempts": [attempt]})
    return run_dir


def horse(acc: float, precision: float, epochs: int = 10) -> dict[str, Any]:
    return {"test/acc": acc, "test/precision": precision, "test/recall": 0.7, "epochs_trained": epochs,
            "train_seconds": 120.0, "operating_point": {"test": {"precision": 0.9, "recall": 0.6}}}


def line_of(text: str, row: str) -> list[str]:
    line = next(line for line in text.splitlines() if line.startswith(f"| `{row}`"))
    return [c.strip() for c in line.strip("|").split("|")]


def test_results_table_mean_std_n_references_and_checks(rows: dict[str, plan.Row], tmp_path: Path) -> None:
    fake_run(tmp_path, "horse_cnn", 42, horse(0.96, 0.80, epochs=10))
    fake_run(tmp_path, "horse_cnn", 43, horse(0.95, 0.78, epochs=9))
    fake_run(tmp_path, "horse_cnn", 44, None, exit_code=1)  # failed: listed, not averaged, its CPU time counted
    text = tables.results_section(tables.read_all(list(rows.values()), tmp_path), spec(), "full", tmp_path)
    header = [c.strip() for c in text.split("\n| row |")[1].split("\n")[0].strip("|").split("|")]
    assert ["row", *header] == tables.HEADER
    acc = line_of(text, "horse_cnn")
    assert acc[2:] == ["acc", "0.95", "0.9456 ± 0.0039 (2)", "0.9550 ± 0.0071 (2)", "✓", "9–10", "2.0",
                       "Test CPU 9000 ×2", "1.5"]
    body = text.splitlines()
    at = body.index(next(line for line in body if line.startswith("| `horse_cnn`")))
    precision, _, precision_op = ([c.strip() for c in line.strip("|").split("|")] for line in body[at + 1:at + 4])
    assert precision[2:7] == ["precision", "0.85", "0.7899 ± 0.0748 (2)", "0.7900 ± 0.0141 (2)", "≈"]  # Keras std
    assert precision_op[2:7] == ["precision_op", "0.85", "0.7899 ± 0.0748 (2)", "0.9000 ± 0.0000 (2)", "✓"]
    assert line_of(text, "mnist_cnn")[2:6] == ["acc", "0.9914", "–", "not run"]
    assert "`horse_cnn` seed 44: exit 1 after 1 attempt(s)" in text
    assert "fer_backbone_pretrain" not in text.split("Metrics:")[0]  # a helper has no line
    assert "budget=quick" not in text and "Total: 2 finished run(s), covering 1 of" in text


def test_a_shorter_row_compares_its_last_epoch_with_its_own_notebook_figure(tmp_path: Path) -> None:
    """A row run for fewer epochs: the last history.csv row against the notebook's printed value at that epoch."""
    settings = spec(**{"rows.fashion_cnn.metrics": ["acc", "val_acc_last"],
                       "rows.fashion_cnn.notebook": {"val_acc_last": 0.905}})
    run_dir = fake_run(tmp_path, "fashion_cnn", 42, {"test/acc": 0.9, "epochs_trained": 3})
    (run_dir / "history.csv").write_text("epoch,val/acc\n0,0.85\n1,0.89\n2,0.91\n")
    text = tables.results_section(tables.read_all(list(plan.load_rows(settings).values()), tmp_path), settings,
                                  "full", tmp_path)
    body = text.splitlines()
    at = body.index(next(line for line in body if line.startswith("| `fashion_cnn` |")))
    assert [c.strip() for c in body[at + 1].strip("|").split("|")][2:7] == [
        "val_acc_last", "0.905", "–", "0.9100 (1)", "✓"]
    assert line_of(text, "fashion_cnn")[2:8] == ["acc", "0.909", "–", "0.9000 (1)", "✗", "3"]


def test_a_float32_metric_equal_to_the_reference_reaches_it_one_step_below_does_not() -> None:
    """0.904 logged as float32 (0.90399998) ties the notebook's 0.904; 0.9039 is below it."""
    stored = float(as_float32(0.904))
    assert stored < 0.904
    assert tables.mark([stored], 0.904, None) == "✓"
    assert tables.mark([0.9039], 0.904, None) == "✗"  # one seed, no Keras spread: no noise to allow


@pytest.mark.parametrize("values, notebook, keras, expected", [
    ([0.9912, 0.9913, 0.9914], 0.9914, None, "≈"),  # mnist_cnn: 1e-4 below, 2 SE = 1.15e-4
    ([0.9910, 0.9913, 0.9916], 0.9914, None, "≈"),
    ([0.9911, 0.9911, 0.9911], 0.9914, None, "✗"),  # no spread of ours: any shortfall is real
    ([0.90, 0.92, 0.94], 0.95, None, "✗"),           # 0.03 below, 2 SE = 0.0231
    ([0.90, 0.92, 0.94], 0.94, None, "≈"),           # 0.02 below
    ([0.90, 0.92, 0.94], 0.92, None, "✓"),
    ([0.82], None, [0.82, 0.86], "≈"),               # the Keras rerun's spread (std 0.0283) covers 0.02
    ([0.80], None, [0.82, 0.86], "✗"),               # ... not 0.04
    ([0.909], 0.904, [0.92, 0.90], "≈"),             # the higher reference (Keras 0.91) is 0.001 above, its std 0.014
    ([0.911], 0.904, [0.92, 0.90], "✓"),
    ([0.95], None, [0.90], "✓"),                     # one Keras seed: its mean only
    ([0.89], None, [0.90], "✗"),
    ([], 0.9, None, ""), ([0.9], None, None, ""),    # nothing to compare
])
def test_the_mark_knows_the_noise_of_both_sides(values, notebook, keras, expected) -> None:
    assert tables.mark(values, notebook, keras) == expected


def test_the_rule_is_stated_in_both_tables_legends() -> None:
    assert tables.RULE in tables.intro("full", Path("outputs/reproduce/full"))
    assert tables.RULE in tables.readme_section([], {"metrics": {}, "references": {}}, "full")


def as_float32(value: float) -> float:
    """``value`` rounded to float32, as a logged metric is."""
    return struct.unpack("f", struct.pack("f", value))[0]


def test_quick_tables_say_so_and_never_mix_budgets(rows: dict[str, plan.Row], tmp_path: Path) -> None:
    fake_run(tmp_path, "mnist_cnn", 1, {"test/acc": 0.99}, budget="quick")
    found = tables.read_all(list(rows.values()), tmp_path)
    assert tables.results_section(found, spec(), "quick", tmp_path).startswith(tables.QUICK_WARNING)
    with pytest.raises(ConfigError, match=r"budget \['quick'\].*budget=full"):
        tables.results_section(found, spec(), "full", tmp_path)


def docs_pair(tmp_path: Path) -> tuple[Path, Path]:
    results, readme = tmp_path / "results.md", tmp_path / "README.md"
    results.write_text("# Results\n\nhand-written analysis\n")
    readme.write_text(f"# x\n\nbefore\n\n{markers.block('old table')}\n\nafter\n")
    return results, readme


def test_full_budget_writes_the_marked_blocks_quick_writes_its_out_dir_only(rows: dict[str, plan.Row],
                                                                            tmp_path: Path) -> None:
    results, readme = docs_pair(tmp_path)
    out = tmp_path / "out"
    fake_run(out, "mnist_cnn", 42, {"test/acc": 0.992, "epochs_trained": 15, "train_seconds": 90.0})
    fake_run(out, "mnist_cnn", 43, {"test/acc": 0.990, "epochs_trained": 15, "train_seconds": 90.0})
    settings = spec(budget="full", out=str(out), **{"tables.results": str(results), "tables.readme": str(readme)})
    write_tables(list(rows.values()), settings)
    text = results.read_text()
    assert text.startswith("# Results\n\n## Notebook rows, regenerated\n\n" + markers.BEGIN)
    assert text.endswith("hand-written analysis\n") and "| `mnist_cnn` |" in text
    readme_text = readme.read_text()
    assert readme_text.startswith("# x\n\nbefore\n\n" + markers.BEGIN) and readme_text.endswith("\n\nafter\n")
    assert "old table" not in readme_text
    assert line_of(readme_text, "mnist_cnn")[2:] == ["acc 0.9910 ± 0.0014 (n=2)", "acc 0.9914 / –", "≈", "15", "1.5"]
    assert (out / "results.md").read_text().count("| `mnist_cnn` |") == 1

    results_before, readme_before = results.read_text(), readme.read_text()
    (out / "mnist_cnn" / "seed43" / "metrics.json").unlink()
    write_tables(list(rows.values()), {**settings, "budget": "quick"} | {"out": str(tmp_path / "none")})
    assert (results.read_text(), readme.read_text()) == (results_before, readme_before)


def test_no_finished_run_leaves_the_docs_alone(rows: dict[str, plan.Row], tmp_path: Path) -> None:
    results, readme = docs_pair(tmp_path)
    before = results.read_text(), readme.read_text()
    write_tables(list(rows.values()), spec(out=str(tmp_path / "empty"), **{"tables.results": str(results),
                                                                           "tables.readme": str(readme)}))
    assert (results.read_text(), readme.read_text()) == before


def test_the_command_writes_tables_without_importing_torch_or_lightning(tmp_path: Path) -> None:
    """run=false on an empty out: the tables are written by a light process (the runner does not seed it)."""
    docs = docs_pair(tmp_path)
    code = ("import sys\nfrom lit_vision.commands.reproduce import main\n"
            f"sys.argv = ['reproduce', 'run=false', 'out={tmp_path / 'out'}', 'tables.results={docs[0]}', "
            f"'tables.readme={docs[1]}']\nmain()\n"
            "print('heavy:', 'torch' in sys.modules or 'lightning' in sys.modules)")
    res = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=300,
                         check=False)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "heavy: False" in res.stdout
    table = (tmp_path / "out" / "results.md").read_text()
    assert "| `mnist_cnn` | 003 MNIST CNN | acc | 0.9914 | – | not run |" in table


RECORDS = REPO_ROOT / "outputs" / "reproduce" / "full"
DATE = re.compile(r"\d{4}-\d{2}-\d{2}( \d{2}:\d{2})?")


def block_text(path: Path) -> str:
    """The lines between a file's reproduce markers."""
    lines = path.read_text().splitlines()
    begin = next(i for i, line in enumerate(lines) if line.startswith(markers.BEGIN))
    return "\n".join(lines[begin + 1:lines.index(markers.END)])


@pytest.mark.skipif(not any(RECORDS.glob("*/seed*/metrics.json")), reason=f"no run records in {RECORDS}")
def test_the_committed_tables_are_what_the_committed_run_records_give() -> None:
    """No number typed by hand: the blocks of docs/results.md and README.md are what the run records committed under
    outputs/reproduce/full give (all but the generation date), so a hand edit or a stale table fails here."""
    settings = spec()
    found = tables.read_all(list(plan.load_rows(settings).values()), RECORDS)
    expected = {REPO_ROOT / "docs" / "results.md": tables.results_section(found, settings, "full", RECORDS),
                REPO_ROOT / "README.md": tables.readme_section(found, settings, "full")}
    for path, section in expected.items():
        assert DATE.sub("<date>", block_text(path)) == DATE.sub("<date>", section.strip()), (
            f"{path.name}: its table is not what the run records give; python -m lit_vision.reproduce run=false")


# --- markers -------------------------------------------------------------------------------------------------
def test_markers_replace_only_the_block_and_refuse_broken_ones(tmp_path: Path) -> None:
    text = f"# t\n\nabove\n{markers.block('one')}\nbelow\n"
    assert markers.replace_block(text, "two", tmp_path) == f"# t\n\nabove\n{markers.block('two')}\nbelow\n"
    with pytest.raises(markers.MarkerError, match="1 begin and 0 end"):
        markers.replace_block("x\n" + markers.BEGIN_LINE + "\n", "two", tmp_path)
    good, bad = tmp_path / "good.md", tmp_path / "bad.md"
    good.write_text(text)
    bad.write_text("# no markers\n")
    with pytest.raises(markers.MarkerError, match="no '<!-- reproduce:begin"):
        markers.write_blocks({good: ("new", None), bad: ("new", None)})
    assert good.read_text() == text  # checked before anything was written


# --- the command itself, on the quick budget -----------------------------------------------------------------
@pytest.fixture(scope="module")
def data_root(tmp_path_factory: pytest.TempPathFactory, synthetic_roots: dict[str, Path]) -> Path:
    """A synthetic ``../shared/datasets``: MNIST/ and FashionMNIST/, cifar10-jpeg/ and fer2013/."""
    root = tmp_path_factory.mktemp("datasets")
    write_torchvision_idx(root, "MNIST")
    write_torchvision_idx(root, "FashionMNIST")
    (root / "cifar10-jpeg").symlink_to(synthetic_roots["cifar10"])
    (root / "fer2013").symlink_to(synthetic_roots["fer2013"])
    return root


def reproduce(out: Path, data_root: Path, docs: tuple[Path, Path], *args: str) -> subprocess.CompletedProcess:
    cache = f"paths.cache_dir={out.parent / 'cache'}"
    cmd = [sys.executable, "-m", "lit_vision.reproduce", "budget=quick", f"out={out}", f"data_root={data_root}",
           f"tables.results={docs[0]}", f"tables.readme={docs[1]}",
           # the synthetic FER folders are far smaller than notebook 004's 4818 + 302 per class
           f"overrides.train=['{cache}','data.mapping.per_class={{train:8,test:3}}']",
           f"overrides.xgb=['{cache}','data.mapping.per_class={{train:8,test:3}}']", *args]
    return subprocess.run(cmd, check=False, cwd=REPO_ROOT, capture_output=True, text=True, timeout=900,
                          env={**os.environ, "CUDA_VISIBLE_DEVICES": ""})


def progress_lines(res: subprocess.CompletedProcess) -> list[str]:
    return [line.split(" - ", 1)[1] for line in (res.stdout + res.stderr).splitlines()
            if "lit_vision.reproduce" in line and "] " in line and " - [" in line]


@pytest.mark.slow
def test_quick_budget_two_rows_two_seeds_then_skip_then_resume(tmp_path: Path, data_root: Path) -> None:
    docs = docs_pair(tmp_path)
    before = [p.read_text() for p in docs]
    out = tmp_path / "out"
    args = ("presets=[mnist_dense_mse,fashion_dense]", "seeds=[1,2]")
    res = reproduce(out, data_root, docs, *args)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert sorted(p.parent.relative_to(out).as_posix() for p in out.glob("*/seed*/metrics.json")) == [
        "fashion_dense/seed1", "fashion_dense/seed2", "mnist_dense_mse/seed1", "mnist_dense_mse/seed2"]
    table = (out / "results.md").read_text()
    assert tables.QUICK_WARNING in table
    mnist = line_of(table, "mnist_dense_mse")
    assert mnist[2:5] == ["acc", "0.9717", "–"] and " ± " in mnist[5] and mnist[5].endswith("(2)")
    assert line_of(table, "fashion_dense")[3] == "0.841" and line_of(table, "fashion_dense")[7] == "1"
    assert [p.read_text() for p in docs] == before  # quick never touches the README or docs/results.md

    again = reproduce(out, data_root, docs, *args)
    assert again.returncode == 0 and progress_lines(again) == [
        f"[{i}/4] {row} seed {s}: skipped (finished before)"
        for i, (row, s) in enumerate([("fashion_dense", 1), ("fashion_dense", 2), ("mnist_dense_mse", 1),
                                      ("mnist_dense_mse", 2)], 1)]

    killed = out / "mnist_dense_mse" / "seed2"
    (killed / "metrics.json").unlink()  # as if killed after its epoch: last.ckpt is there
    assert (killed / "checkpoints" / "last.ckpt").is_file()
    resumed = reproduce(out, data_root, docs, *args)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    assert [line for line in progress_lines(resumed) if "skipped" not in line][1].startswith(
        "[4/4] mnist_dense_mse seed 2: ok (resumed)")
    record = json.loads((killed / "metrics.json").read_text())
    assert record["resumed_from"] == str(killed / "checkpoints" / "last.ckpt")
    assert [a["resumed"] for a in launch.read_manifest(killed)["attempts"]] == [False, True]


@pytest.mark.slow
def test_quick_budget_a_failing_row_is_recorded_and_the_others_finish(tmp_path: Path, data_root: Path) -> None:
    docs = docs_pair(tmp_path)
    out = tmp_path / "out"
    res = reproduce(out, data_root, docs, "presets=[fashion_dense,fer_custom_xgb]",
                    "+rows.fashion_dense.overrides=['model.optimizer.lr=-1']")
    assert res.returncode == 1
    assert "1 of 3 runs did not finish" in res.stdout + res.stderr
    assert (out / "fer_custom_cnn" / "seed42" / "metrics.json").is_file()  # the row fer_custom_xgb needs
    assert (out / "fer_custom_xgb" / "seed42" / "metrics.json").is_file()
    assert launch.read_manifest(out / "fashion_dense" / "seed42")["attempts"][0]["exit_code"] == 2
    table = (out / "results.md").read_text()
    assert line_of(table, "fashion_dense")[5] == "not finished"
    assert f"`fashion_dense` seed 42: exit 2 after 1 attempt(s), log {out / 'fashion_dense' / 'seed42'}" in table
    assert "model.optimizer.lr" in (out / "fashion_dense" / "seed42" / "reproduce.log").read_text()
    assert line_of(table, "fer_custom_xgb")[5].endswith("(1)")
