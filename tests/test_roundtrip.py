"""Round-trip rewriting of search-space files: an expert's comments, key order and layout survive the tool."""

from __future__ import annotations

from pathlib import Path

import pytest

from search_spaces import SearchSpaceError, load_space, shipped_space_path
from search_spaces.roundtrip import SpaceDocument


def comment_lines(text: str) -> list[str]:
    return [line.split("#", 1)[1].strip() for line in text.splitlines() if "#" in line]


def top_level_keys(text: str) -> list[str]:
    return [line.split(":")[0] for line in text.splitlines() if line and line[0].isalpha()]


def test_rewriting_without_edits_is_byte_identical(shipped_space_file: Path) -> None:
    text = shipped_space_file.read_text()
    assert SpaceDocument.load(shipped_space_file).text() == text


def test_narrowing_keeps_every_comment_and_the_key_order(tmp_path: Path) -> None:
    source = shipped_space_path("combined")
    doc = SpaceDocument.load(source)
    doc.set_choices("stages.5.block", ["ibn"], comment="fused_ibn never on the front")
    doc.set_choices("depth_multiplier", [0.5, 1.0], comment="1.25 too slow")
    doc.set_choices("head.channels", [256], comment="narrowest head")
    out = doc.save(tmp_path / "narrow.yaml")
    text, original = out.read_text(), source.read_text()
    new_comments = iter(comment_lines(text))
    assert all(comment in new_comments for comment in comment_lines(original))  # all kept, in their order
    for added in ("fused_ibn never on the front", "1.25 too slow", "narrowest head"):
        assert f"# {added}\n" in text
    assert top_level_keys(text) == top_level_keys(original)
    space = load_space(out)
    assert space.stages[5].block == ("ibn",)
    assert space.depth_multiplier == (0.5, 1.0)
    assert space.head.channels == (256,)
    assert "channels: {multiples_of_p: [16, 32]}" in text  # untouched choices keep their form


def test_a_hand_edited_file_keeps_its_edits_when_the_tool_rewrites_it(tmp_path: Path) -> None:
    """An expert edits a space (own comments, another indentation), validates it; a tool rewrite keeps all."""
    edited = shipped_space_path("channels").read_text()
    edited = edited.replace("stages:\n  - {", "stages:\n- {").replace("\n  - {", "\n- {")
    edited = edited.replace("depth_multiplier: [0.5, 0.75, 1.0, 1.25]", "depth_multiplier: [0.75, 1.0]  # mine: no 0.5")
    edited = edited.replace("head:\n", "# the head is tuned on the board\nhead:\n")
    path = tmp_path / "mine.yaml"
    path.write_text(edited)
    assert load_space(path).depth_multiplier == (0.75, 1.0)  # `edgenas space validate` reads it like this

    doc = SpaceDocument.load(path)
    assert doc.text() == edited
    doc.set_choices("stages.1.channels", [32], comment="study x: 64 never on the Pareto front")
    doc.save(path, overwrite=True)
    text = path.read_text()
    assert "# mine: no 0.5" in text and "# the head is tuned on the board" in text
    assert "\n- {block: [ibn], kernel: [3], expansion: [6], channels: [32]" in text  # the expert's indentation
    assert "# study x: 64 never on the Pareto front" in text
    assert (
        text.replace("channels: [32], depth: [2]", "channels: {multiples_of_p: [16, 64]}, depth: [2]").replace(
            "# study x: 64 never on the Pareto front\n", ""
        )
        == edited
    )
    assert load_space(path).stages[1].channels == (32,)


def test_kept_values_are_written_as_the_file_wrote_them(tmp_path: Path) -> None:
    text = (
        shipped_space_path("channels")
        .read_text()
        .replace(
            "expansion: [6], channels: {multiples_of_p: [16, 64]}",
            "expansion: [4, 6], channels: {multiples_of_p: [16, 64]}",
        )
    )
    doc = SpaceDocument.parse(text, source="test")
    doc.set_choices("stages.1.expansion", [6.0])
    assert "expansion: [6], channels: {multiples_of_p: [16, 64]}" in doc.text()


def test_the_tool_never_writes_an_invalid_space(tmp_path: Path) -> None:
    doc = SpaceDocument.load(shipped_space_path("combined"))
    doc.set_choices("stages.0.kernel", [4])
    with pytest.raises(SearchSpaceError, match=r"stages\[0\]\.kernel\[0\]: got 4"):
        doc.save(tmp_path / "bad.yaml")
    assert not (tmp_path / "bad.yaml").exists()
    with pytest.raises(SearchSpaceError, match="empty choice list"):
        doc.set_choices("stages.0.kernel", [])
    with pytest.raises(SearchSpaceError, match="unknown search-space parameter"):
        doc.set_choices("stages.x.kernel", [3])


def test_an_existing_file_is_replaced_only_when_asked(tmp_path: Path) -> None:
    target = tmp_path / "space.yaml"
    target.write_text("keep me\n")
    doc = SpaceDocument.load(shipped_space_path("fused_ibn"))
    with pytest.raises(SearchSpaceError, match="already exists"):
        doc.save(target)
    assert target.read_text() == "keep me\n"
    doc.save(target, overwrite=True)
    assert load_space(target).name == "fused_ibn"
