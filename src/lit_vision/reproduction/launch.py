"""One run of a row as its own process: skipped when finished, continued when killed, else started.

Each run dir gets two files of its own besides what the command writes:

* ``reproduce.json`` — the row, seed and budget, and one entry per attempt: command line, whether it resumed, the
  machine (CPU model, cores, GPUs), exit code, wall and CPU seconds (user + system of the process and its
  children). An attempt is recorded before it starts, so one whose reproduce process was killed shows
  ``exit_code: null``. The command line is stored portable (:func:`lit_vision.runs.records.portable_argv`):
  ``python`` for the interpreter, paths relative to the project root, data under ``${data_root}/``.
* ``reproduce.log`` — the command's stdout and stderr, appended per attempt.
"""

from __future__ import annotations

import resource
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lit_vision.errors import ConfigError
from lit_vision.reproduction.plan import RESUMABLE, Run
from lit_vision.runs.records import MANIFEST_FILE, METRICS_FILE, REPRODUCE_LOG, RunDir, portable_argv

MANIFEST, LOG, METRICS = MANIFEST_FILE, REPRODUCE_LOG, METRICS_FILE

#: runs ``argv`` with stdout and stderr appended to the log file, from ``cwd``; returns the exit code
Launcher = Callable[[Sequence[str], Path, Path], int]


@dataclass
class Outcome:
    """What became of a run: ``skipped`` (finished before), ``ok``, ``failed`` or ``blocked`` (needed run missing)."""

    run: Run
    status: str
    resumed: bool = False
    exit_code: int | None = None
    seconds: float = 0.0
    detail: str = ""

    @property
    def log(self) -> Path:
        return RunDir(self.run.dir).reproduce_log


def finished(run_dir: Path) -> bool:
    return RunDir(run_dir).finished


def resumable(run: Run) -> bool:
    """A train run with ``checkpoints/last.ckpt`` and no ``metrics.json``: it was stopped after an epoch."""
    return run.row.command in RESUMABLE and not finished(run.dir) and RunDir(run.dir).last_checkpoint.is_file()


def read_manifest(run_dir: Path) -> dict[str, Any] | None:
    return RunDir(run_dir).manifest()


def write_manifest(run_dir: Path, manifest: dict[str, Any]) -> None:
    RunDir(run_dir).write_manifest(manifest)


def check_budget(run: Run, budget: str) -> dict[str, Any]:
    """The run dir's manifest (a new one when it has none); refuses a dir made under another budget."""
    manifest = read_manifest(run.dir)
    if manifest is None:
        return {"row": run.row.name, "command": run.row.command, "seed": run.seed, "budget": budget, "attempts": []}
    if manifest.get("budget") != budget:
        raise ConfigError(f"{RunDir(run.dir).manifest_file} says budget={manifest.get('budget')!r}, this call has "
                          f"budget={budget}: "
                          f"runs of two budgets never share a folder; use another out= or remove {run.dir}")
    return manifest


def subprocess_launcher(argv: Sequence[str], log: Path, cwd: Path) -> int:
    with open(log, "a") as f:
        f.write(f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} {' '.join(argv)}\n")
        f.flush()
        return subprocess.run(list(argv), stdout=f, stderr=subprocess.STDOUT, cwd=cwd, check=False).returncode


def children_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def attempt(run: Run, manifest: dict[str, Any], argvs: Sequence[Sequence[str]], resumed: bool,
            machine: dict[str, Any], cwd: Path, launcher: Launcher,
            data_root: Path | None = None) -> tuple[int, float]:
    """Run ``argvs`` one after the other (stop at the first failure), recorded as one attempt (command lines
    portable, data under ``data_root`` as ``${data_root}/…``); exit code, seconds."""
    entry: dict[str, Any] = {"started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                             "argv": [portable_argv(a, data_root) for a in argvs],
                             "resumed": resumed, "machine": machine, "exit_code": None, "wall_seconds": None,
                             "cpu_seconds": None}
    manifest["attempts"].append(entry)
    write_manifest(run.dir, manifest)
    wall, cpu = time.monotonic(), children_cpu_seconds()
    code = 0
    for argv in argvs:
        code = launcher(argv, RunDir(run.dir).reproduce_log, cwd)
        if code != 0:
            break
    entry |= {"exit_code": code, "wall_seconds": time.monotonic() - wall, "cpu_seconds": children_cpu_seconds() - cpu}
    write_manifest(run.dir, manifest)
    return code, entry["wall_seconds"]


def execute(run: Run, budget: str, argv_for: Callable[[bool], list[str]], before: list[str] | None,
            machine: dict[str, Any], cwd: Path, launcher: Launcher = subprocess_launcher,
            data_root: Path | None = None) -> Outcome:
    """Skip, resume or start ``run``; ``argv_for(resume)`` is its command line, ``before`` a command run first;
    ``data_root``: where the data paths of the command lines are (recorded relative to it)."""
    manifest = check_budget(run, budget)
    if finished(run.dir):
        return Outcome(run, "skipped", detail="finished before")
    if run.needs_dir is not None and not finished(run.needs_dir):
        return Outcome(run, "blocked", detail=f"needs {run.needs_dir}, which has no {METRICS}")
    resume = resumable(run)
    argvs = ([before] if before else []) + [argv_for(resume)]
    code, seconds = attempt(run, manifest, argvs, resume, machine, cwd, launcher, data_root)
    if code == 0 and not finished(run.dir):
        return Outcome(run, "failed", resume, code, seconds, f"exit 0 but no {METRICS}")
    return Outcome(run, "ok" if code == 0 else "failed", resume, code, seconds)
