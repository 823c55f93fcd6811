"""The command line: every command has --help; bad input is one line and exit code 2."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import pytest

from nas.cli import main
from nas.cli.main import build_parser
from search_spaces import baseline_arch, load_space, shipped_space_path


def all_command_paths() -> list[list[str]]:
    """Every (sub)command path of the parser, e.g. ['space', 'validate']."""

    def walk(parser: argparse.ArgumentParser, prefix: list[str]) -> list[list[str]]:
        paths = [prefix] if prefix else []
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    paths += walk(sub, [*prefix, name])
        return paths

    return walk(build_parser(), [])


def test_top_level_help_lists_the_commands() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "nas.cli.main", "--help"], capture_output=True, text=True, check=True
    ).stdout
    for command in ("space", "arch", "train"):
        assert command in out


HEAVY_MODULES = ("torch", "optuna", "onnx", "tvm", "xgboost", "onnxruntime")


def test_building_the_parser_loads_no_heavy_module() -> None:
    # `edgenas --help` builds every parser: the command modules import their work in the handlers, not at the top.
    code = (
        "import sys; from nas.cli.main import build_parser; build_parser(); "
        f"print(sorted(m for m in {HEAVY_MODULES!r} if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


@pytest.mark.parametrize("path", all_command_paths(), ids=" ".join)
def test_every_command_has_help(path: list[str], capsys) -> None:
    with pytest.raises(SystemExit) as info:
        main([*path, "--help"])
    assert info.value.code == 0
    assert "usage: edgenas" in capsys.readouterr().out


def test_train_command_reports_accuracy(tmp_path: Path, capsys) -> None:
    space = load_space(shipped_space_path("baseline"))
    small = space.resolve({**{n: c[0] for n, c in space.parameters().items()}})
    arch_file = small.save(tmp_path / "arch.yaml")
    weights = tmp_path / "w.pt"
    code = main(["train", "--arch", str(arch_file), "--epochs", "1", "--max-steps", "5", "--save", str(weights)])
    assert code == 0
    out = capsys.readouterr().out
    assert "test accuracy" in out and weights.is_file()


def test_train_with_unknown_dataset_is_one_line(tmp_path: Path, capsys) -> None:
    arch_file = baseline_arch().save(tmp_path / "arch.yaml")
    assert main(["train", "--arch", str(arch_file), "--dataset", "imagenet"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("edgenas: error:") and "imagenet" in err and "\n" not in err
