"""Deploying detection and segmentation networks: parity on every output, the manifest, `run` and its overlay."""

from __future__ import annotations

import dataclasses
import shutil

import numpy as np
import onnx
import pytest
import torch
from PIL import Image

from deploy import (
    ArtifactError,
    ExportError,
    Predictor,
    check_onnx_parity,
    detect,
    export_onnx,
    load_artifact,
    load_input,
    random_inputs,
    segment,
    write_manifest,
    write_overlay,
)
from deploy.dense_outputs import DetectedBox
from nas.cli.main import main
from search_spaces import ArchConfig, build_model
from tests.cli_helpers import assert_one_line_error, run_cli
from tests.tiny_arch import DENSE_RESOLUTION, TINY, dense_arch

RESOLUTION = DENSE_RESOLUTION
DIGITS = tuple(str(d) for d in range(10))
DATA = ["--dataset", "digit-scenes", "--train-limit", "16", "--eval-limit", "8"]
UNTUNED = ["--tune-trials", "0", "--no-measure"]


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    """Both archs, untrained segmentation weights, and a grey 96x80 photo (not the model's 64x64)."""
    root = tmp_path_factory.mktemp("dense")
    for task in ("detection", "segmentation"):
        dense_arch(task).save(root / f"{task}.yaml")
    torch.manual_seed(0)
    torch.save(build_model(dense_arch("segmentation")).state_dict(), root / "segmentation.pt")
    pixels = np.full((80, 96), 128, dtype=np.uint8)
    pixels[20:50, 30:60] = 230  # something to find; grey elsewhere, a colour no overlay draws with
    Image.fromarray(pixels).save(root / "photo.png")
    np.save(root / "batch.npy", np.stack([pixels, pixels[::-1]]))
    return root


@pytest.fixture(scope="module")
def detector(root):
    """`edgenas deploy` of the detection arch as a user runs it: a (tiny) training on digit-scenes, untuned."""
    out = root / "det"
    args = ["deploy", "--arch", str(root / "detection.yaml"), *DATA, "--epochs", "1", *UNTUNED]
    assert main([*args, "--score-threshold", "0.01", "--max-boxes", "5", "--out", str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def segmenter(root):
    out = root / "seg"
    args = ["deploy", "--arch", str(root / "segmentation.yaml"), "--weights", str(root / "segmentation.pt")]
    assert main([*args, *DATA, *UNTUNED, "--out", str(out)]) == 0
    return out


def test_detector_parity_on_every_output_and_manifest(detector):
    manifest = load_artifact(detector).manifest
    assert manifest.task == "detection" and manifest.output_names == ("heatmap", "box")
    assert manifest.class_names == DIGITS and manifest.dataset == "digit-scenes" and manifest.test_metric == "map"
    assert manifest.decoding == {
        "method": "centernet",
        "stride": 4,
        "score_threshold": 0.01,
        "nms_iou": 0.5,
        "max_detections": 5,
    }
    expected = {
        f"{pair}/{kind}/{output}"
        for pair in ("onnxruntime-vs-torch", "tvm-vs-onnxruntime")
        for kind in ("random", "real")
        for output in ("heatmap", "box")
    }
    assert set(manifest.parity_max_abs_diff) == expected
    assert all(diff <= 1e-4 for diff in manifest.parity_max_abs_diff.values())
    graph = onnx.load(str(detector / "model.onnx")).graph
    assert [o.name for o in graph.output] == ["heatmap", "box"]
    assert 0.0 <= manifest.test_accuracy <= 1.0


def test_segmenter_parity_and_manifest(segmenter):
    manifest = load_artifact(segmenter).manifest
    assert manifest.task == "segmentation" and manifest.output_names == ("logits",)
    assert manifest.class_names == ("background", *DIGITS) and manifest.test_metric == "miou"
    assert manifest.decoding == {"method": "argmax"}
    pairs = {"onnxruntime-vs-torch", "tvm-vs-onnxruntime"}
    assert set(manifest.parity_max_abs_diff) == {f"{p}/{k}" for p in pairs for k in ("random", "real")}
    assert all(diff <= 1e-4 for diff in manifest.parity_max_abs_diff.values())


def test_parity_checks_the_second_output_too(tmp_path):
    """A detector whose box output alone differs after export is refused, naming that output."""
    torch.manual_seed(0)
    model = build_model(dense_arch("detection")).eval()
    path = export_onnx(
        model, input_shape=(1, 1, RESOLUTION, RESOLUTION), path=tmp_path / "d.onnx", output_names=("heatmap", "box")
    )
    inputs = {"random": random_inputs((1, 1, RESOLUTION, RESOLUTION), batch=2)}
    assert check_onnx_parity(model, path, inputs=inputs).worst <= 1e-4
    box_conv = model.blocks[-1].ops[0][0]
    with torch.no_grad():
        box_conv.bias += 0.01
    with pytest.raises(ExportError, match=r"random/box 1\.0\de-02"):
        check_onnx_parity(model, path, inputs=inputs)


def parse_boxes(out: str) -> list[tuple[str, float, list[float]]]:
    boxes = []
    for line in out.splitlines():
        if line.startswith("  "):
            name, score, corners = line.split()
            boxes.append((name, float(score), [float(v) for v in corners.split(",")]))
    return boxes


def test_run_prints_boxes_in_input_pixels_and_draws_them(detector, root, capsys):
    overlay = root / "det-overlay.png"
    args = ["run", str(detector), "--input", str(root / "photo.png")]
    code, out, _ = run_cli([*args, "--out", str(overlay)], capsys)
    assert code == 0 and "1 image(s)" in out and f"overlay written to {overlay}" in out
    boxes = parse_boxes(out)
    assert 1 <= len(boxes) <= 5
    for name, score, (x0, y0, x1, y1) in boxes:
        assert name in DIGITS and score >= 0.01
        assert 0 <= x0 <= x1 <= 96 and 0 <= y0 <= y1 <= 80
    photo = np.asarray(Image.open(root / "photo.png").convert("RGB")).astype(int)
    drawn = np.asarray(Image.open(overlay)).astype(int)
    assert drawn.shape == photo.shape  # 80 x 96 x 3: the input's size, not the model's
    changed = np.abs(drawn - photo).sum(axis=-1) > 0
    for _, _, (_, _, x1, y1) in boxes:  # the bottom-right corner lies on the outline
        assert changed[min(79, round(y1)), min(95, round(x1))]
    tvm_lines = out.splitlines()[1:-1]
    _, ort_out, _ = run_cli([*args, "--runtime", "ort"], capsys)
    assert ort_out.splitlines()[1:] == tvm_lines


def test_run_on_a_npy_batch_prints_boxes_per_image(detector, root, capsys):
    code, out, _ = run_cli(["run", str(detector), "--input", str(root / "batch.npy")], capsys)
    assert code == 0 and "2 image(s)" in out and out.count("box(es)") == 2


def test_detect_scales_boxes_to_the_image_as_given(detector):
    manifest = load_artifact(detector).manifest
    heatmap = np.full((1, 10, 16, 16), -10.0, dtype=np.float32)
    heatmap[0, 7, 3, 5] = 3.0  # class 7 centred on cell (row 3, col 5): (22, 14) at stride 4
    box = np.zeros((1, 4, 16, 16), dtype=np.float32)  # one cell (4 px) wide and high
    (found,) = detect((heatmap, box), manifest, image_sizes=[(128, 32)])
    (only,) = found
    assert only.class_name == "7" and only.score == pytest.approx(1 / (1 + np.exp(-3.0)))
    # 64x64 input -> 128 wide (x2), 32 high (x0.5)
    assert (only.x0, only.y0, only.x1, only.y1) == pytest.approx((40.0, 6.0, 48.0, 8.0))


def test_run_prints_a_class_histogram_and_blends_the_mask(segmenter, root, capsys):
    overlay = root / "seg-overlay.png"
    code, out, _ = run_cli(["run", str(segmenter), "--input", str(root / "photo.png"), "--out", str(overlay)], capsys)
    assert code == 0
    rows = [line.split() for line in out.splitlines() if line.startswith("  ")]
    assert "96x80 pixels" in out and sum(int(pixels) for _, pixels, _ in rows) == 96 * 80
    assert {name for name, _, _ in rows} <= {"background", *DIGITS}
    artifact = load_artifact(segmenter)
    batch = load_input(root / "photo.png", artifact.manifest.preprocessing)
    outputs = Predictor(artifact, runtime="tvm").outputs(batch)
    (label_map,) = segment(outputs, artifact.manifest, image_sizes=[(96, 80)])
    counts = {artifact.manifest.class_names[i]: int(n) for i, n in enumerate(np.bincount(label_map.ravel())) if n}
    assert counts == {name: int(pixels) for name, pixels, _ in rows}
    photo = np.asarray(Image.open(root / "photo.png").convert("RGB")).astype(int)
    blended = np.asarray(Image.open(overlay)).astype(int)
    assert blended.shape == photo.shape
    changed = np.abs(blended - photo).sum(axis=-1) > 0
    assert np.array_equal(changed, label_map != 0)  # every pixel of a class, and none of the background


def test_overlay_boxes_change_only_the_box_and_its_label(tmp_path):
    Image.new("L", (100, 60), 128).save(tmp_path / "grey.png")
    box = DetectedBox(label=3, class_name="3", score=0.9, x0=50, y0=30, x1=90, y1=55)
    path = write_overlay(tmp_path / "grey.png", tmp_path / "o.png", class_names=DIGITS, boxes=[box])
    drawn = np.asarray(Image.open(path)).astype(int)
    changed = np.abs(drawn - 128).sum(axis=-1) > 0
    assert drawn.shape == (60, 100, 3)
    assert changed[30, 50:91].all() and changed[55, 50:91].all() and changed[30:56, 90].all()
    assert not changed[:, :50].any() and not changed[40:54, 52:88].any()  # left of it, and its inside


@pytest.mark.parametrize(
    ("extra", "fragments"),
    [
        (["--input", "missing.png"], ["missing.png", "no such input file"]),
        (["--input", "{root}/batch.npy", "--out", "{root}/o.png"], ["batch.npy", "--out draws on an image input"]),
        (["--input", "{root}/photo.png", "--out", "{root}/o.jpg"], ["o.jpg", "the overlay is a PNG"]),
        (["--input", "{root}/photo.png", "--score-threshold", "1.5"], ["0 <= score_threshold < 1"]),
        (["--input", "{root}/photo.png", "--out", "/proc/no/o.png"], ["/proc/no/o.png", "cannot write the overlay"]),
    ],
)
def test_bad_run_inputs_are_one_line_errors(detector, root, capsys, extra, fragments):
    extra = [item.format(root=root) for item in extra]
    code, _, err = run_cli(["run", str(detector), *extra], capsys)
    assert_one_line_error(code, err, *fragments)


def test_score_threshold_is_for_detection_only(segmenter, root, capsys):
    args = ["run", str(segmenter), "--input", str(root / "photo.png"), "--score-threshold", "0.5"]
    code, _, err = run_cli(args, capsys)
    assert_one_line_error(code, err, "--score-threshold applies to detection artifacts only")


def test_bad_decoding_in_the_manifest_is_refused(detector, tmp_path, capsys):
    copy_dir = tmp_path / "det"
    shutil.copytree(detector, copy_dir)
    manifest = load_artifact(copy_dir).manifest
    write_manifest(copy_dir, dataclasses.replace(manifest, decoding={**manifest.decoding, "stride": "four"}))
    code, _, err = run_cli(["run", str(copy_dir), "--input", "x.png"], capsys)
    assert_one_line_error(code, err, "decoding.stride", "'four'")
    write_manifest(copy_dir, dataclasses.replace(manifest, decoding={**manifest.decoding, "nms_iou": 0.0}))
    with pytest.raises(ArtifactError, match="nms_iou"):
        load_artifact(copy_dir)


def test_bad_decoding_options_of_deploy_are_one_line(root, tmp_path, capsys):
    args = ["deploy", "--arch", str(root / "detection.yaml"), *DATA, *UNTUNED, "--out", str(tmp_path / "o")]
    code, _, err = run_cli([*args, "--max-boxes", "0"], capsys)
    assert_one_line_error(code, err, "max_detections >= 1")
    assert not (tmp_path / "o").exists()


def test_classification_run_is_unchanged_and_refuses_overlay_options(root, capsys):
    arch = ArchConfig.from_dict(TINY)
    arch.save(root / "tiny.yaml")
    torch.manual_seed(0)
    torch.save(build_model(arch).state_dict(), root / "tiny.pt")
    out = root / "cls"
    assert (
        main(
            [
                "deploy",
                "--arch",
                str(root / "tiny.yaml"),
                "--weights",
                str(root / "tiny.pt"),
                *UNTUNED,
                "--out",
                str(out),
            ]
        )
        == 0
    )
    manifest = load_artifact(out).manifest
    assert manifest.task == "classification" and manifest.output_names == ("logits",) and manifest.decoding == {}
    capsys.readouterr()
    code, stdout, _ = run_cli(["run", str(out), "--input", str(root / "photo.png"), "--top-k", "2"], capsys)
    assert code == 0 and len(stdout.strip().splitlines()[1].split("  ")) == 2
    code, _, err = run_cli(["run", str(out), "--input", str(root / "photo.png"), "--out", str(root / "c.png")], capsys)
    assert_one_line_error(code, err, "--out and --score-threshold apply to detection and segmentation artifacts")


@pytest.mark.slow
def test_a_board_returns_every_output_of_a_detector(detector):
    from deploy import local_board, run_remote
    from deploy.session import ort_session

    inputs = random_inputs((1, 1, RESOLUTION, RESOLUTION), batch=2)
    with local_board(key="loopback-dense") as tracker:
        remote = run_remote(
            detector / "model-x86_64.so",
            tracker=tracker,
            key="loopback-dense",
            inputs=inputs,
            repeats=2,
            min_sample_ms=1,
        )
    expected = ort_session(detector / "model.onnx").run(None, {"input": inputs})
    assert len(remote.all_outputs) == 2
    for got, want in zip(remote.all_outputs, expected, strict=True):
        np.testing.assert_allclose(got, want, atol=1e-4)
    np.testing.assert_array_equal(remote.outputs, remote.all_outputs[0])
