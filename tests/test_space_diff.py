"""`edgenas space diff`: what changed between two spaces, and how the size of the space changed."""

from __future__ import annotations

import argparse
from pathlib import Path

from nas.cli.analyze import register_diff
from search_spaces import load_space, shipped_space_path
from search_spaces.diff import diff_space_files, diff_spaces
from search_spaces.errors import EdgeNasError
from search_spaces.roundtrip import SpaceDocument


def test_diff_of_two_shipped_spaces() -> None:
    diff = diff_space_files(shipped_space_path("combined"), shipped_space_path("fused_ibn"))
    combined, fused = load_space(shipped_space_path("combined")), load_space(shipped_space_path("fused_ibn"))
    changed = {change.name for change in diff.parameters}
    # Both search every stage's block; they differ in the multiplier and every channel choice.
    assert not any(name.endswith(".block") for name in changed)
    assert changed == {"depth_multiplier", "stem.channels", "head.channels"} | {
        f"stages.{i}.channels" for i in range(6)
    }
    by_name = {change.name: change for change in diff.parameters}
    assert by_name["depth_multiplier"].removed == (0.5, 0.75, 1.25)
    assert by_name["stages.1.channels"].added == (24,)
    assert [s.name for s in diff.settings] == ["align_channels"]
    assert diff.size_ratio == fused.size() / combined.size()
    assert diff.lines()[-1] == "size: 110,592 -> 64 combinations (1,728x smaller); searched parameters: 13 -> 6"


def test_diff_against_baseline_lists_every_new_choice() -> None:
    diff = diff_space_files(shipped_space_path("baseline"), shipped_space_path("fused_ibn"))
    assert [(c.name, c.added) for c in diff.parameters] == [(f"stages.{i}.block", ("fused_ibn",)) for i in range(6)]
    assert "size: 1 -> 64 combinations (64x larger)" in diff.lines()[-1]


def test_a_space_is_identical_to_itself_and_to_its_rewrite(tmp_path: Path) -> None:
    path = shipped_space_path("channels")
    assert diff_space_files(path, path).identical
    # The same choices written out explicitly instead of {multiples_of_p: ...} are the same space.
    doc = SpaceDocument.load(path)
    doc.set_choices("stages.1.channels", [32, 64])
    explicit = doc.save(tmp_path / "explicit.yaml")
    assert diff_space_files(path, explicit).identical


def test_diff_follows_a_parallelism_factor_override() -> None:
    path = shipped_space_path("channels")
    diff = diff_spaces(load_space(path), load_space(path, parallelism_factor=16))
    by_name = {change.name: change for change in diff.parameters}
    assert by_name["stages.1.channels"].before == (32, 64)
    assert by_name["stages.1.channels"].after == (16, 32, 48, 64)
    assert diff.settings[0].describe() == "~ parallelism_factor: 32 -> 16"
    assert diff.size_ratio > 1


def cli(argv: list[str]) -> int:
    """``edgenas space diff`` as nas.cli.main runs it (EdgeNasError: one line, exit code 2)."""
    parser = argparse.ArgumentParser(prog="edgenas")
    register_diff(parser.add_subparsers(dest="command", required=True).add_parser("space").add_subparsers())
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except EdgeNasError as exc:
        print(f"edgenas: error: {exc}")
        return 2


def test_diff_command_prints_changes_and_size(capsys) -> None:
    assert cli(["space", "diff", str(shipped_space_path("channels")), str(shipped_space_path("combined"))]) == 0
    out = capsys.readouterr().out
    assert "~ stages.5.block: [ibn] -> [ibn, fused_ibn] (added [fused_ibn], 1 -> 2 choices)" in out
    assert "size: 1,728 -> 110,592 combinations (64x larger)" in out
    assert cli(["space", "diff", "missing.yaml", str(shipped_space_path("combined"))]) == 2
