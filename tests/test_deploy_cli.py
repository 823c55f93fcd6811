"""`edgenas deploy` / `edgenas run` end to end, and every bad input as a one-line error."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from deploy import DeployTarget, known_targets, load_artifact, register_target
from nas.cli.main import main
from search_spaces import ArchConfig, build_model
from tests.cli_helpers import assert_one_line_error, run_cli
from tests.tiny_arch import ONE_BLOCK, TINY

BROKEN_TARGET = "test-broken-target"


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """arch.yaml, matching weights (of TINY, and of ONE_BLOCK for tuning), and one digit as a PNG and as a .npy
    batch."""
    root = tmp_path_factory.mktemp("cli")
    for name, spec in (("tiny", TINY), ("one-block", ONE_BLOCK)):
        arch = ArchConfig.from_dict(spec)
        arch.save(root / f"{name}.yaml")
        torch.manual_seed(0)
        torch.save(build_model(arch).state_dict(), root / f"{name}.pt")
    from sklearn.datasets import load_digits

    pixels = (load_digits().images[:3] * 255 / 16).astype(np.uint8)
    Image.fromarray(pixels[0]).resize((24, 24)).save(root / "digit.png")
    np.save(root / "batch.npy", pixels)
    return root


@pytest.fixture(scope="module")
def tuned(files):
    """ONE_BLOCK deployed with 6 tuning trials into a fresh database: (the database, the artifact folder)."""
    database, out = files / "tuning-db", files / "dist-tuned"
    args = ["deploy", "--arch", str(files / "one-block.yaml"), "--weights", str(files / "one-block.pt"), "--no-measure"]
    assert main([*args, "--tune-trials", "6", "--tuning-db", str(database), "--out", str(out)]) == 0
    return database, out


@pytest.fixture(scope="module")
def artifact(files):
    out = files / "dist-x86"
    args = ["deploy", "--arch", str(files / "tiny.yaml"), "--weights", str(files / "tiny.pt"), "--tune-trials", "0"]
    code = main([*args, "--out", str(out)])
    assert code == 0
    return out


def test_deploy_writes_a_complete_verified_artifact(artifact):
    names = {"model.onnx", "model-x86_64.so", "arch.yaml", "manifest.json"}
    assert names <= {p.name for p in artifact.iterdir()}
    manifest = load_artifact(artifact).manifest
    assert manifest.target == "x86_64" and manifest.dataset == "digits"
    assert set(manifest.files) == names - {"manifest.json"}
    assert 0.0 <= manifest.test_accuracy <= 1.0
    assert manifest.preprocessing.input_shape == (1, 1, 16, 16) and len(manifest.preprocessing.mean) == 1
    assert manifest.class_names == tuple(str(d) for d in range(10))
    assert {"host-tvm-1t", "host-onnxruntime-1t"} <= set(manifest.measured_latency_ms)
    assert all(diff <= 1e-4 for diff in manifest.parity_max_abs_diff.values())
    assert {"onnxruntime-vs-torch/real", "tvm-vs-onnxruntime/real"} <= set(manifest.parity_max_abs_diff)
    assert {"apache-tvm", "onnx", "edgenas"} <= set(manifest.versions)


@pytest.mark.parametrize("runtime", ["tvm", "ort"])
def test_run_prints_the_same_predictions_with_both_runtimes(artifact, files, capsys, runtime):
    code, out, _ = run_cli(["run", str(artifact), "--input", str(files / "batch.npy"), "--runtime", runtime], capsys)
    assert code == 0
    lines = out.strip().splitlines()
    assert "3 image(s)" in lines[0] and len(lines) == 4
    reference = run_cli(["run", str(artifact), "--input", str(files / "batch.npy"), "--runtime", "ort"], capsys)[1]
    assert out.splitlines()[1:] == reference.splitlines()[1:]


def test_run_on_an_image_preprocesses_it(artifact, files, capsys):
    code, out, _ = run_cli(["run", str(artifact), "--input", str(files / "digit.png"), "--top-k", "2"], capsys)
    assert code == 0
    name, probability = out.strip().splitlines()[1].split(": ")[1].split("  ")[0].split(" ")
    assert name in {str(d) for d in range(10)} and 0.0 < float(probability) <= 1.0


def test_tampered_file_is_refused_naming_it(artifact, files, tmp_path, capsys):
    copy = tmp_path / "copy"
    shutil.copytree(artifact, copy)
    with (copy / "model.onnx").open("ab") as handle:
        handle.write(b"\0")
    code, _, err = run_cli(["run", str(copy), "--input", str(files / "digit.png")], capsys)
    assert_one_line_error(code, err, "model.onnx", "sha256 does not match manifest.json")


def test_aarch64_artifact_cannot_run_on_the_host(files, capsys):
    if shutil.which("aarch64-linux-gnu-gcc") is None:
        pytest.skip("apt-get install gcc-aarch64-linux-gnu")
    out = files / "dist-arm"
    args = ["deploy", "--arch", str(files / "tiny.yaml"), "--weights", str(files / "tiny.pt")]
    assert main([*args, "--target", "aarch64", "--out", str(out)]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["measured_latency_ms"] == {} and manifest["target_arch"] == "aarch64"
    code, _, err = run_cli(["run", str(out), "--input", str(files / "digit.png")], capsys)
    assert_one_line_error(code, err, "compiled for aarch64", "--runtime ort")
    code, stdout, _ = run_cli(["run", str(out), "--input", str(files / "digit.png"), "--runtime", "ort"], capsys)
    assert code == 0 and "1 image(s)" in stdout


def test_weights_of_another_arch_name_the_layer_and_shapes(files, tmp_path, capsys):
    wider = ArchConfig.from_dict({**TINY, "head": {**TINY["head"], "channels": 48}})
    torch.save(build_model(wider).state_dict(), tmp_path / "wider.pt")
    args = ["deploy", "--arch", str(files / "tiny.yaml"), "--weights", str(tmp_path / "wider.pt")]
    code, _, err = run_cli([*args, "--out", str(tmp_path / "out")], capsys)
    assert_one_line_error(code, err, "layer features.", "(48, 16, 1, 1) in the weights", "(32, 16, 1, 1) in the arch")


def test_unknown_target_lists_the_known_ones(files, tmp_path, capsys):
    args = ["deploy", "--arch", str(files / "tiny.yaml"), "--weights", str(files / "tiny.pt"), "--target", "esp32"]
    code, _, err = run_cli([*args, "--out", str(tmp_path / "out")], capsys)
    assert_one_line_error(code, err, "unknown target 'esp32'", "aarch64", "x86_64")


def test_missing_cross_compiler_names_the_package(files, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    args = ["deploy", "--arch", str(files / "tiny.yaml"), "--weights", str(files / "tiny.pt"), "--target", "aarch64"]
    code, _, err = run_cli([*args, "--out", str(tmp_path / "out")], capsys)
    assert_one_line_error(code, err, "aarch64-linux-gnu-gcc", "apt-get install gcc-aarch64-linux-gnu")


def test_failed_build_is_summarised_and_logged_beside_the_artifact(files, tmp_path, capsys):
    if BROKEN_TARGET not in known_targets():
        # A target kind TVM does not have: the build fails inside TVM, as a bad board entry would.
        register_target(
            DeployTarget(name=BROKEN_TARGET, description="test", tvm_target={"kind": "no-such-kind"}, arch="x86_64")
        )
    out = tmp_path / "out"
    args = ["deploy", "--arch", str(files / "tiny.yaml"), "--weights", str(files / "tiny.pt")]
    code, _, err = run_cli([*args, "--target", BROKEN_TARGET, "--out", str(out)], capsys)
    assert_one_line_error(code, err, f"TVM build for {BROKEN_TARGET} failed", str(out / "build.log"))
    assert "no-such-kind" in (out / "build.log").read_text()
    assert not (out / "manifest.json").exists()


@pytest.mark.parametrize(
    ("extra", "fragments"),
    [
        (["--rpc-key", "pi"], ["--rpc-tracker and --rpc-key go together"]),
        (["--tune-trials", "-1"], ["tuning_trials >= 0"]),
    ],
)
def test_inconsistent_options_are_one_line_errors(files, tmp_path, capsys, extra, fragments):
    args = ["deploy", "--arch", str(files / "tiny.yaml"), "--weights", str(files / "tiny.pt")]
    code, _, err = run_cli([*args, *extra, "--out", str(tmp_path / "out")], capsys)
    assert_one_line_error(code, err, *fragments)


@pytest.mark.parametrize(
    ("name", "content", "fragments"),
    [
        ("missing.png", None, ["no such input file"]),
        ("notes.txt", b"hello", ["unsupported input"]),
        ("bad.png", b"not a png", ["unreadable image"]),
        ("wrong.npy", np.zeros((2, 3, 16, 16), dtype=np.uint8), ["model expects (1, 16, 16)"]),
    ],
)
def test_bad_run_inputs_are_one_line_errors(artifact, tmp_path, capsys, name, content, fragments):
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        np.save(path, content)
    code, _, err = run_cli(["run", str(artifact), "--input", str(path)], capsys)
    assert_one_line_error(code, err, name, *fragments)


def test_run_on_a_folder_without_manifest(tmp_path, capsys):
    code, _, err = run_cli(["run", str(tmp_path), "--input", "x.png"], capsys)
    assert_one_line_error(code, err, "not an artifact folder")


# ----- hardening: the manifest covers itself, its values are checked, bad inputs are one line ----------


def _edited_copy(artifact, tmp_path, edit, *, rehash: bool) -> object:
    """A copy of the artifact whose manifest.json was edited (and, with ``rehash``, given a fresh own checksum)."""
    from deploy.artifact import manifest_checksum

    copy = tmp_path / "edited"
    shutil.copytree(artifact, copy)
    data = json.loads((copy / "manifest.json").read_text())
    edit(data)
    if rehash:
        data["checksum"] = manifest_checksum(data)
    (copy / "manifest.json").write_text(json.dumps(data, indent=2))
    return copy


def test_manifest_has_a_self_describing_checksum(artifact):
    from deploy.artifact import manifest_checksum

    data = json.loads((artifact / "manifest.json").read_text())
    assert data["checksum"]["scheme"] == "sha256-canonical-json"
    assert data["checksum"] == manifest_checksum(data)


@pytest.mark.parametrize(
    "edit",
    [
        lambda d: d["preprocessing"].update(mean=[0.5]),
        lambda d: d.update(test_accuracy=0.999),
        lambda d: d.pop("checksum"),
    ],
    ids=["mean", "test_accuracy", "no-checksum"],
)
def test_a_tampered_manifest_is_refused(artifact, tmp_path, capsys, files, edit):
    copy = _edited_copy(artifact, tmp_path, edit, rehash=False)
    code, _, err = run_cli(["run", str(copy), "--input", str(files / "digit.png")], capsys)
    assert_one_line_error(code, err, "manifest.json", "checksum")


@pytest.mark.parametrize(
    ("edit", "fragments"),
    [
        (lambda d: d.update(class_names=["a", "b", "c"]), ["class_names has 3 entries", "10 outputs"]),
        (lambda d: d["preprocessing"].update(std=[0.0]), ["std and pixel_scale must be > 0"]),
        (lambda d: d["preprocessing"].update(mean=[0.1, 0.2]), ["mean and std need 1 value(s)"]),
        (lambda d: d.update(files={**d["files"], "../x": "0"}), ["not a plain name"]),
        (lambda d: d.update(format_version=1), ["format version 1"]),
    ],
    ids=["class_names", "std", "mean-length", "path", "version"],
)
def test_wrong_manifest_values_are_one_line_errors(artifact, tmp_path, capsys, files, edit, fragments):
    copy = _edited_copy(artifact, tmp_path, edit, rehash=True)
    code, _, err = run_cli(["run", str(copy), "--input", str(files / "digit.png")], capsys)
    assert_one_line_error(code, err, *fragments)


@pytest.mark.parametrize(
    ("content", "fragments"),
    [
        (np.zeros((0, 16, 16), dtype=np.uint8), ["holds no values"]),
        (np.full((1, 16, 16), np.nan, dtype=np.float32), ["NaN or infinite"]),
        (np.full((1, 16, 16), 200.0, dtype=np.float32), ["must lie in [0, 1]", "uint8, or divide by 255"]),
        (np.array(["a", "b"]), ["expected numbers"]),
    ],
    ids=["empty", "nan", "0-255-floats", "strings"],
)
def test_bad_npy_inputs_to_run_are_refused(artifact, tmp_path, capsys, content, fragments):
    path = tmp_path / "input.npy"
    np.save(path, content)
    code, _, err = run_cli(["run", str(artifact), "--input", str(path)], capsys)
    assert_one_line_error(code, err, "input.npy", *fragments)


def test_top_k_must_be_positive(artifact, files, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["run", str(artifact), "--input", str(files / "digit.png"), "--top-k", "0"])
    assert exit_.value.code == 2 and "expected an integer >= 1, got 0" in capsys.readouterr().err
    code, out, _ = run_cli(["run", str(artifact), "--input", str(files / "digit.png"), "--top-k", "2"], capsys)
    assert code == 0 and len(out.strip().splitlines()[-1].split("  ")) == 2


def test_weights_that_are_not_a_state_dict_are_one_line(files, tmp_path, capsys):
    notes = tmp_path / "notes.txt"
    notes.write_text("remember to train this one\n")
    args = ["deploy", "--arch", str(files / "tiny.yaml"), "--weights", str(notes), "--out", str(tmp_path / "o")]
    code, _, err = run_cli(args, capsys)
    assert_one_line_error(code, err, "notes.txt", "not a PyTorch state_dict")


@pytest.mark.parametrize(
    "content", [b"", b"this is not a model\n", bytes(range(256)) * 4, b"\x08\x07"], ids=["empty", "text", "bytes", "ir"]
)
def test_a_fake_onnx_file_is_one_error_naming_it(tmp_path, content):
    from deploy.compile import compile_onnx
    from deploy.errors import CompileError
    from latency_estimator import EstimatorError
    from latency_estimator.decompose_onnx import decompose_onnx

    fake = tmp_path / "model.onnx"
    fake.write_bytes(content)
    with pytest.raises(EstimatorError, match="model.onnx: .*ONNX"):
        decompose_onnx(fake)
    with pytest.raises(CompileError, match="model.onnx: .*ONNX"):
        compile_onnx(fake, target="x86_64")


@pytest.mark.slow
def test_default_deploy_tunes_within_its_budget_and_a_second_measures_nothing(files, tuned, tmp_path, capsys):
    import os

    from nas.cli.deploy import DEFAULT_TUNE_TRIALS

    # ONE_BLOCK: the second deploy below tunes every task of the network (7, not TINY's 10), one round each.
    args = ["deploy", "--arch", str(files / "one-block.yaml"), "--weights", str(files / "one-block.pt"), "--no-measure"]
    # By default deploy tunes, into the target's persistent database, within --tune-minutes.
    code, out, _ = run_cli([*args, "--tune-minutes", "0.25", "--out", str(tmp_path / "a")], capsys)
    assert code == 0 and "tuning:" in out
    tuning = load_artifact(tmp_path / "a").manifest.tuning
    assert tuning["trials"] == DEFAULT_TUNE_TRIALS and tuning["minutes"] == 0.25
    assert tuning["database"] == os.path.join(os.environ["EDGENAS_TUNING_DB"], "x86_64")
    # 1000 trials do not fit in 15 s: tuning stopped starting rounds, and left tasks for a later deploy.
    assert 0 < tuning["measured_candidates"] < DEFAULT_TUNE_TRIALS / 10 and tuning["skipped_tasks"] > 0
    # The budget, plus the one round in progress (seconds; a minute on a loaded core) and MetaSchedule's start-up,
    # which the report times apart: TVM's, once per process, minutes on a loaded core (a whole suite on one core).
    assert 0 <= tuning["startup_seconds"] <= tuning["seconds"], tuning
    assert tuning["seconds"] - tuning["startup_seconds"] < 15 + 120, tuning
    # A budget that fits (the `tuned` deploy): the second deploy of the same network finds everything in the database.
    database, first_out = tuned
    code, _, _ = run_cli(
        [*args, "--tune-trials", "6", "--tuning-db", str(database), "--out", str(tmp_path / "b")], capsys
    )
    assert code == 0
    first, second = (load_artifact(out).manifest.tuning for out in (first_out, tmp_path / "b"))
    assert first["measured_candidates"] > 0 and first["skipped_tasks"] == 0
    assert (
        second["measured_candidates"] == 0 and second["tuned_tasks"] == 0 and second["reused_tasks"] == first["tasks"]
    )


@pytest.mark.slow
def test_tuned_deploy_ships_a_compiled_vm_without_dead_bindings_that_matches_onnxruntime(tuned):
    from deploy import compile_onnx
    from deploy.runtime import Predictor

    database, out = tuned
    artifact = load_artifact(out)
    assert all(diff <= 1e-4 for diff in artifact.manifest.parity_max_abs_diff.values())
    assert "tvm-vs-onnxruntime/real" in artifact.manifest.parity_max_abs_diff
    # The library loaded from the artifact folder gives ONNX Runtime's outputs.
    batch = np.random.default_rng(0).standard_normal((3, *artifact.manifest.preprocessing.input_shape[1:]))
    batch = batch.astype(np.float32)
    tvm_logits = Predictor(artifact, runtime="tvm").logits(batch)
    np.testing.assert_allclose(tvm_logits, Predictor(artifact, runtime="ort").logits(batch), atol=1e-4)
    # What deploy built: main as native code, prepacked kernels, and none of the constant tuples that folding the
    # packed weights leaves behind (the VM would build and drop one per kernel at every call).
    shipped = compile_onnx(artifact.onnx_path, target="x86_64", tuning_db=database)
    bytecode = compile_onnx(artifact.onnx_path, target="x86_64", tuning_db=database, exec_mode="bytecode")
    assert "vm_tir_func" in shipped.module.as_text() and "vm_tir_func" not in bytecode.module.as_text()
    for compiled in (shipped, bytecode):
        assert "_prepacked" in compiled.program_text() and "vm.builtin.make_tuple" not in compiled.program_text()
    np.testing.assert_allclose(shipped.run(batch), bytecode.run(batch), atol=1e-6)
    np.testing.assert_allclose(shipped.run(batch), tvm_logits, atol=1e-6)
