"""ArchConfig: lossless YAML/JSON round trips, stable ids, block strings, bad files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from search_spaces import ArchConfig, SearchSpaceError, baseline_arch, load_space, shipped_space_path


@pytest.mark.parametrize("suffix", [".yaml", ".json"])
def test_round_trip_is_lossless(tmp_path: Path, shipped_space_file, suffix: str) -> None:
    space = load_space(shipped_space_file)
    rng = np.random.default_rng(3)
    for i in range(5):
        arch = space.sample(rng)
        loaded = ArchConfig.load(arch.save(tmp_path / f"a{i}{suffix}"))
        assert loaded == arch
        assert loaded.arch_id == arch.arch_id


def test_id_is_stable_and_content_based() -> None:
    arch = baseline_arch()
    assert arch.arch_id == ArchConfig.from_dict(arch.to_dict()).arch_id
    assert len(arch.arch_id) == 10
    wider = ArchConfig.from_dict({**arch.to_dict(), "resolution": 28})
    assert wider.arch_id != arch.arch_id


def test_block_string_reads_like_the_network() -> None:
    space = load_space(shipped_space_path("fused_ibn"))
    point = {name: choices[0] for name, choices in space.parameters().items()}
    arch = space.resolve({**point, "stages.1.block": "fused_ibn"})
    text = arch.block_string()
    assert text.startswith("stem_k3_c16_s1 @32 | ibn_k3_e1_c16_s1 x1 | fibn_k3_e6_c24_s2 x2 | ibn_k3_e6_c32_s2 x3")
    assert text.endswith("| head_c320")


def test_bad_arch_file_names_the_field(tmp_path: Path) -> None:
    data = baseline_arch().to_dict()
    data["stages"][1]["block"] = "mbconv"
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(SearchSpaceError, match=r"bad.yaml: stages\[1\]\.block: got 'mbconv'"):
        ArchConfig.load(path)
    with pytest.raises(SearchSpaceError, match="no such architecture file"):
        ArchConfig.load(tmp_path / "missing.yaml")


def test_arch_show_prints_per_layer_table(tmp_path: Path, capsys) -> None:
    from nas.cli import main

    path = baseline_arch().save(tmp_path / "baseline.yaml")
    assert main(["arch", "show", str(path)]) == 0
    out = capsys.readouterr().out
    assert "stages.1.0.depthwise" in out and "dwconv" in out
    assert "total: 899,114 params" in out
