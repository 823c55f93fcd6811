"""Bad search-space YAML: each error names the file, the YAML path, the value and what is allowed."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from search_spaces import SearchSpaceError, load_space, shipped_space_path


def base_space() -> dict:
    return yaml.safe_load(shipped_space_path("combined").read_text())


def edit(path: str, value: object):
    """A function that sets ``path`` (dotted, with list indices) in a copy of the combined space."""

    def apply(data: dict) -> dict:
        data = copy.deepcopy(data)
        *parents, last = path.split(".")
        node = data
        for key in parents:
            node = node[int(key)] if key.isdigit() else node[key]
        if value is DELETE:
            del node[last]
        else:
            node[int(last) if last.isdigit() else last] = value
        return data

    return apply


DELETE = object()

BAD_CASES = [
    # (edit, YAML path the message must name, words the message must contain)
    (edit("stages.2.kernel", [3, 4]), "stages[2].kernel[1]", ["got 4", "odd kernel"]),
    (edit("stages.1.colour", "red"), "stages[1].colour", ["unknown key 'colour'"]),
    (edit("frobnicate", 1), "frobnicate", ["unknown key"]),
    (edit("stages.0.block", []), "stages[0].block", ["non-empty list"]),
    (edit("stages.0.block", ["ibn", "mbconv"]), "stages[0].block[1]", ["'mbconv'", "fused_ibn"]),
    (edit("stages.3.expansion", ["six"]), "stages[3].expansion[0]", ["'six'", "a number"]),
    (edit("stages.3.channels", [48]), "stages[3].channels[0]", ["got 48", "multiple of the parallelism factor P=32"]),
    (edit("stem.channels", {"multiples_of_p": [33, 40]}), "stem.channels.multiples_of_p", ["no multiple of P=32"]),
    (edit("stem.channels", {"multiples_of_p": [64, 32]}), "stem.channels.multiples_of_p", ["low <= high"]),
    (edit("input.resolution", [2]), "stages[2].stride", ["below 1x1"]),
    (edit("parallelism_factor", "32"), "parallelism_factor", ["'32'", "an integer"]),
    (edit("stages.4.depth", [0]), "stages[4].depth[0]", ["got 0", "in [1, 16]"]),
    (edit("stages.4.stride", 3), "stages[4].stride", ["got 3", "[1, 2]"]),
    (edit("head.type", "keypoints"), "head.type", ["'keypoints'", "classification", "segmentation"]),
    (edit("head", DELETE), "combined.yaml", ["missing required key 'head'"]),
    (edit("align_channels", "yes"), "align_channels", ["true or false"]),
    (edit("depth_multiplier", [1.0, 1.0]), "depth_multiplier", ["repeated"]),
    (edit("stages", {"block": "ibn"}), "stages", ["non-empty list"]),
    (edit("input.channels", None), "input.channels", ["nothing (null)"]),
]


@pytest.mark.parametrize(("mutate", "yaml_path", "words"), BAD_CASES, ids=[c[1] for c in BAD_CASES])
def test_bad_space_names_file_path_and_value(tmp_path: Path, mutate, yaml_path: str, words: list[str]) -> None:
    path = tmp_path / "combined.yaml"
    path.write_text(yaml.safe_dump(mutate(base_space())))
    with pytest.raises(SearchSpaceError) as info:
        load_space(path)
    message = str(info.value)
    assert message.startswith(str(path)), message
    assert yaml_path in message, message
    for word in words:
        assert word in message, message
    assert "\n" not in message


def test_missing_file_and_broken_yaml(tmp_path: Path) -> None:
    with pytest.raises(SearchSpaceError, match="no such search-space file"):
        load_space(tmp_path / "nope.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("stages: [\n  - {block: ibn\n")
    with pytest.raises(SearchSpaceError, match="broken.yaml: not valid YAML"):
        load_space(broken)


def test_command_line_p_override_is_checked_against_explicit_channels(tmp_path: Path) -> None:
    path = tmp_path / "space.yaml"
    data = edit("stages.3.channels", [48])(edit("parallelism_factor", 16)(base_space()))
    path.write_text(yaml.safe_dump(data))
    assert load_space(path).stages[3].channels == (48,)
    with pytest.raises(SearchSpaceError, match=r"stages\[3\]\.channels\[0\]: got 48, .*P=32"):
        load_space(path, parallelism_factor=32)


def test_cli_reports_one_line_and_nonzero_exit(tmp_path: Path, capsys) -> None:
    from nas.cli import main

    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(edit("stages.2.kernel", [4])(base_space())))
    assert main(["space", "validate", str(path), str(shipped_space_path("baseline"))]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("FAIL") and "stages[2].kernel[0]: got 4" in out[0]
    assert out[1].startswith("ok")
    assert main(["space", "show", str(tmp_path / "missing.yaml")]) == 2
    assert "no such search-space file" in capsys.readouterr().err
