"""Bad input a new user might give, through the real CLI: each is one ``edgenas: error: …`` line, exit 2.

Case ids read ``<loader>-<what>``; ``tests/test_deploy_cli.py`` holds the
artifact and ``run`` cases, ``tests/test_storage_urls.py`` the storage URLs.
"""

from __future__ import annotations

import gzip
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from nas.cli.main import main
from search_spaces import ArchConfig, shipped_space_path
from tests.tiny_arch import TINY

pytestmark = pytest.mark.usefixtures("use_small_sim_estimator")

SPACE = shipped_space_path("fused_ibn").read_text()
DIGITS_ARCH = {**TINY, "resolution": 8, "head": {**TINY["head"], "num_classes": 3}}


def _write(name: str, content: bytes | str) -> Callable[[Path], Path]:
    def make(root: Path) -> Path:
        path = root / name
        path.write_bytes(content.encode() if isinstance(content, str) else content)
        return path

    return make


def _npz(name: str, **arrays) -> Callable[[Path], Path]:
    def make(root: Path) -> Path:
        path = root / name
        np.savez(path, **arrays)
        return path

    return make


def _idx_folder(images: bytes, labels: bytes) -> Callable[[Path], Path]:
    def make(root: Path) -> Path:
        folder = root / "fmnist"
        folder.mkdir()
        for split in ("train", "t10k"):
            (folder / f"{split}-images-idx3-ubyte.gz").write_bytes(gzip.compress(images))
            (folder / f"{split}-labels-idx1-ubyte.gz").write_bytes(gzip.compress(labels))
        return folder

    return make


def _image_folder(bad: bytes) -> Callable[[Path], Path]:
    def make(root: Path) -> Path:
        folder = root / "images"
        for cls in ("a", "b"):
            (folder / cls).mkdir(parents=True)
            for i in range(5):
                Image.fromarray(np.full((8, 8), 40 * i, dtype=np.uint8)).save(folder / cls / f"{i}.png")
        (folder / "b" / "broken.png").write_bytes(bad)
        return folder

    return make


def _dir(root: Path) -> Path:
    (root / "a-folder.yaml").mkdir()
    return root / "a-folder.yaml"


IMAGES = np.random.default_rng(0).integers(0, 255, (30, 8, 8), dtype=np.uint8)
LABELS = np.arange(30) % 3
DEEP = "a: " + "[" * 3000 + "]" * 3000 + "\n"
BOMB = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 9)}]\n" for i in range(9)
)
IDX_HEADER = bytes([0, 0, 8, 3]) + (4).to_bytes(4, "big") + (8).to_bytes(4, "big") + (8).to_bytes(4, "big")

YAML_CASES = {
    "binary": (_write("bin.yaml", bytes(range(256)) * 8), "binary file"),
    "latin-1": (_write("latin.yaml", "name: caf\xe9\n".encode("latin-1")), "not UTF-8 text"),
    "utf-16": (_write("utf16.yaml", "name: x\n".encode("utf-16")), "not"),
    "deep-nesting": (_write("deep.yaml", DEEP), "nested deeper than 64"),
    "duplicate-key": (_write("dup.yaml", SPACE + "name: again\n"), "key 'name' is given twice"),
    "alias-bomb": (_write("bomb.yaml", BOMB), "aliases"),
    "huge": (_write("huge.yaml", "# " + "x" * (5 * 1024 * 1024) + "\n"), "too large"),
    "empty": (_write("empty.yaml", ""), "empty.yaml"),
    "a-directory": (_dir, "not a file"),
    "python-tag": (_write("tag.yaml", "name: !!python/object/apply:os.system [ls]\n"), "not valid YAML"),
    "not-a-mapping": (_write("list.yaml", "- 1\n- 2\n"), "list.yaml"),
}
COMMANDS = {
    "space-validate": ["space", "validate"],
    "space-show": ["space", "show"],
    "arch-show": ["arch", "show"],
    "latency-predict": ["latency", "predict", "--device", "sim-npu-p32"],
}


def run_cli(args: list[str], capsys) -> tuple[int, str, str]:
    try:
        code = main(args)
    except SystemExit as exit_:  # argparse: a usage line, then "edgenas …: error: …"
        code = int(exit_.code or 0)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_one_line_error(code: int, out: str, err: str, *fragments: str) -> None:
    lines = err.strip().splitlines()
    if code == 1 and out.startswith("FAIL  "):  # space validate reports each file on stdout
        lines = out.strip().splitlines()
    assert code in (1, 2) and len(lines) == 1, (code, out, err)
    assert lines[0].startswith(("edgenas: error: ", "FAIL  ")), lines[0]
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


@pytest.mark.parametrize("command", sorted(COMMANDS))
@pytest.mark.parametrize("case", sorted(YAML_CASES))
def test_yaml_loaders_refuse_bad_files_in_one_line(tmp_path, capsys, command, case):
    make, fragment = YAML_CASES[case]
    path = make(tmp_path)
    code, out, err = run_cli([*COMMANDS[command], str(path)], capsys)
    assert_one_line_error(code, out, err, path.name, fragment)


def test_a_one_point_space_is_an_arch_wherever_one_is_asked_for(capsys):
    code, out, _ = run_cli(["arch", "show", str(shipped_space_path("baseline"))], capsys)
    assert code == 0 and "total:" in out
    code, out, _ = run_cli(
        ["latency", "predict", str(shipped_space_path("baseline")), "--device", "sim-npu-p32"], capsys
    )
    assert code == 0
    code, out, err = run_cli(["arch", "show", str(shipped_space_path("fused_ibn"))], capsys)
    assert_one_line_error(code, out, err, "a search space with 64 points, not one architecture")


def test_space_show_refuses_a_negative_sample_count(capsys):
    code, _, err = run_cli(["space", "show", str(shipped_space_path("fused_ibn")), "--samples", "-1"], capsys)
    assert code == 2 and "--samples: expected an integer >= 0, got -1" in err


DATA_CASES = {
    "npz-nan": ("npz", _npz("nan.npz", x=np.where(IMAGES > 250, np.nan, IMAGES / 255.0), y=LABELS), "NaN"),
    "npz-inf": ("npz", _npz("inf.npz", x=np.where(IMAGES > 250, np.inf, IMAGES / 255.0), y=LABELS), "infinite"),
    "npz-0-255-floats": ("npz", _npz("f255.npz", x=IMAGES.astype(np.float32), y=LABELS), "divide by 255"),
    "npz-int16-range": ("npz", _npz("i16.npz", x=IMAGES.astype(np.int16) * 100, y=LABELS), "must lie in [0, 255]"),
    "npz-negative-floats": ("npz", _npz("neg.npz", x=IMAGES / 255.0 - 0.5, y=LABELS), "must lie in [0, 1]"),
    "npz-label-over-names": (
        "npz",
        _npz("names.npz", x=IMAGES, y=LABELS, class_names=np.array(["a", "b"])),
        "2 class_names",
    ),
    "npz-label-huge": ("npz", _npz("huge.npz", x=IMAGES, y=LABELS * 10**9), "out of range"),
    "npz-label-negative": ("npz", _npz("negl.npz", x=IMAGES, y=LABELS - 1), "labels >= 0"),
    "npz-float-labels": ("npz", _npz("fl.npz", x=IMAGES, y=LABELS.astype(float)), "integer array"),
    "npz-truncated": ("npz", _write("trunc.npz", b"PK\x03\x04" + b"\x00" * 20), "unreadable"),
    "npz-not-npz": ("npz", _write("text.npz", "x,y\n1,2\n"), "unreadable"),
    "npz-npy-inside": ("npz", lambda root: _save_npy(root / "one.npz"), "not an .npz archive"),
    "npz-missing-y": ("npz", _npz("noy.npz", x=IMAGES), "missing array 'y'"),
    "npz-strings": ("npz", _npz("str.npz", x=np.array(["a"] * 30), y=LABELS), "real numbers"),
    "idx-truncated": ("fashion-mnist", _idx_folder(IDX_HEADER + b"\x00" * 10, b""), "truncated"),
    "idx-bad-magic": ("fashion-mnist", _idx_folder(b"\x01\x02\x03\x04", b""), "not an IDX file"),
    "idx-labels-out-of-range": (
        "fashion-mnist",
        _idx_folder(IDX_HEADER + bytes(4 * 64), bytes([0, 0, 8, 1]) + (4).to_bytes(4, "big") + bytes([0, 1, 2, 99])),
        "labels must lie in 0..9",
    ),
    "folder-fake-png": ("folder", _image_folder(b"this is a text file"), "broken.png"),
    "folder-truncated-png": ("folder", _image_folder(b"\x89PNG\r\n\x1a\n\x00\x00"), "broken.png"),
}


def _save_npy(path: Path) -> Path:
    with open(path, "wb") as handle:
        np.save(handle, IMAGES)
    return path


@pytest.mark.parametrize("case", sorted(DATA_CASES))
def test_datasets_are_validated_at_load_before_training(tmp_path, capsys, case):
    dataset, make, fragment = DATA_CASES[case]
    arch = ArchConfig.from_dict(DIGITS_ARCH)
    arch.save(tmp_path / "arch.yaml")
    path = make(tmp_path)
    args = ["train", "--arch", str(tmp_path / "arch.yaml"), "--dataset", dataset, "--data-dir", str(path)]
    code, out, err = run_cli([*args, "--epochs", "1"], capsys)
    assert_one_line_error(code, out, err, fragment)
    assert "epoch" not in out, "the data must be refused before any training"


SEARCH = ["search", "--space", str(shipped_space_path("fused_ibn")), "--device", "sim-npu-p32"]


def test_search_on_nan_data_fails_before_the_first_trial(tmp_path, capsys):
    path = _npz("nan.npz", x=np.where(IMAGES > 250, np.nan, IMAGES / 255.0), y=LABELS % 10)(tmp_path)
    args = [*SEARCH, "--dataset", "npz", "--data-dir", str(path), "--trials", "2", "--results-dir", str(tmp_path)]
    code, out, err = run_cli(args, capsys)
    assert_one_line_error(code, out, err, "nan.npz", "NaN")
    assert not (tmp_path / "edgenas" / "study.db").exists()


def test_an_unwritable_results_folder_fails_before_the_first_trial(tmp_path, capsys):
    blocker = tmp_path / "results"
    blocker.write_text("a file where the results folder should be\n")
    args = [*SEARCH, "--dataset", "digits", "--mode", "zeroshot", "--trials", "1", "--results-dir", str(blocker)]
    code, out, err = run_cli(args, capsys)
    assert_one_line_error(code, out, err, "the results folder cannot be written")


@pytest.mark.parametrize("trials", ["0", "-3"])
def test_search_refuses_a_trial_count_below_one(tmp_path, capsys, trials):
    args = [*SEARCH, "--dataset", "digits", "--trials", trials, "--results-dir", str(tmp_path)]
    code, out, err = run_cli(args, capsys)
    assert_one_line_error(code, out, err, "trials >= 1")
