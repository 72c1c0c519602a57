"""``lit-vision <command> …``: the one entry point lists, refuses and dispatches like git."""

from __future__ import annotations

import subprocess
import sys

import pytest

from lit_vision import cli
from lit_vision.commands import COMMANDS


@pytest.mark.parametrize("argv", [[], ["--help"], ["-h"]])
def test_help_lists_every_command_on_one_line(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(argv) is None
    out = capsys.readouterr().out
    assert out.startswith("usage: lit-vision <command>")
    lines = out.splitlines()
    for name, description in COMMANDS.items():
        assert sum(line.split()[:1] == [name] and line.endswith(description) for line in lines) == 1, name


def test_an_unknown_command_is_named_with_the_valid_ones(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["tarin", "model=cnn"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "'tarin'" in err and all(name in err for name in COMMANDS)


def test_a_command_runs_with_the_remaining_arguments(monkeypatch: pytest.MonkeyPatch) -> None:
    import lit_vision.commands.compare as compare

    seen: list[list[str]] = []
    monkeypatch.setattr(compare, "main", lambda: seen.append(list(sys.argv)) or "done")
    monkeypatch.setattr(sys, "argv", ["lit-vision", "compare", "a", "--ensemble"])
    assert cli.main() == "done"
    assert seen == [["lit-vision compare", "a", "--ensemble"]]


def test_python_m_lit_vision_dispatches_to_the_command() -> None:
    res = subprocess.run([sys.executable, "-m", "lit_vision", "compare", "--help"], capture_output=True, text=True,
                         timeout=120)
    assert res.returncode == 0 and "--ensemble" in res.stdout
    res = subprocess.run([sys.executable, "-m", "lit_vision", "no_such_command"], capture_output=True, text=True,
                         timeout=120)
    assert res.returncode == 2 and "no_such_command" in res.stderr and "train" in res.stderr


def test_python_m_lit_vision_dot_command_still_works() -> None:
    res = subprocess.run([sys.executable, "-m", "lit_vision.sweeps", "--help"], capture_output=True, text=True,
                         timeout=120)
    assert res.returncode == 0 and "sweep_dir" in res.stdout
