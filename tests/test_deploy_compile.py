"""TVM compilation: host parity, aarch64 cross-compilation, targets, build failures, tuning."""

from __future__ import annotations

import json
import shutil
import struct
import time

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper

from deploy import CompileError, compile_onnx, export_onnx, get_target, known_targets, random_inputs, time_compiled
from deploy.session import ort_session
from search_spaces import ArchConfig, build_model
from tests.tiny_arch import TINY

INPUT_SHAPE = (1, 1, 16, 16)
EM_AARCH64 = 183  # ELF e_machine of AArch64
needs_aarch64_gcc = pytest.mark.skipif(
    shutil.which("aarch64-linux-gnu-gcc") is None, reason="apt-get install gcc-aarch64-linux-gnu"
)


@pytest.fixture(scope="module")
def onnx_path(tmp_path_factory) -> str:
    torch.manual_seed(0)
    model = build_model(ArchConfig.from_dict(TINY)).eval()
    return str(export_onnx(model, input_shape=INPUT_SHAPE, path=tmp_path_factory.mktemp("onnx") / "model.onnx"))


@pytest.fixture(scope="module")
def host_compiled(onnx_path):
    return compile_onnx(onnx_path, target="x86_64")


def test_host_build_matches_onnxruntime(host_compiled, onnx_path):
    batch = random_inputs(INPUT_SHAPE, batch=4, seed=1)
    expected = ort_session(onnx_path).run(None, {"input": batch})[0]
    np.testing.assert_allclose(host_compiled.run(batch), expected, atol=1e-4)
    assert host_compiled.tvm_target["kind"] == "llvm" and host_compiled.tuning is None


def test_exported_library_loads_and_matches(host_compiled, onnx_path, tmp_path):
    from deploy import load_compiled

    path = host_compiled.export_library(tmp_path / "model.so")
    loaded = load_compiled(path, target="x86_64", tvm_target=host_compiled.tvm_target, input_shape=INPUT_SHAPE)
    batch = random_inputs(INPUT_SHAPE, batch=2, seed=2)
    np.testing.assert_allclose(loaded.run(batch), host_compiled.run(batch), atol=1e-6)


def test_time_compiled_reports_a_median(host_compiled):
    stats = time_compiled(host_compiled, repeats=5, min_sample_ms=5, num_threads=1)
    assert stats.runtime == "tvm" and stats.num_threads == 1 and len(stats.samples_ms) == 5
    assert 0 < stats.min_ms <= stats.median_ms < 1000


@needs_aarch64_gcc
def test_aarch64_cross_compile_gives_an_aarch64_shared_object(onnx_path, tmp_path):
    compiled = compile_onnx(onnx_path, target="aarch64")
    path = compiled.export_library(tmp_path / "model-aarch64.so")
    header = path.read_bytes()[:20]
    assert header[:4] == b"\x7fELF" and header[4] == 2, "a 64-bit ELF"
    e_type, e_machine = struct.unpack("<HH", header[16:20])
    assert (e_type, e_machine) == (3, EM_AARCH64), "a shared object for AArch64"
    with pytest.raises(CompileError, match="cannot run on this host"):
        compiled.run(random_inputs(INPUT_SHAPE, batch=1))


def test_unknown_target_lists_the_known_ones(onnx_path):
    with pytest.raises(CompileError) as info:
        compile_onnx(onnx_path, target="riscv-board")
    assert "unknown target 'riscv-board'" in str(info.value)
    assert all(name in str(info.value) for name in known_targets())
    assert {"x86_64", "aarch64", "cuda"} <= set(known_targets())


def test_missing_cross_compiler_names_the_debian_package(onnx_path, tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(CompileError) as info:
        compile_onnx(onnx_path, target="aarch64")
    message = str(info.value)
    assert "aarch64-linux-gnu-gcc" in message and "gcc-aarch64-linux-gnu" in message and "\n" not in message


def test_cuda_target_without_gpu_says_why(onnx_path):
    runnable, reason = get_target("cuda").runs_on_host()
    if runnable:
        pytest.skip("this machine has a CUDA GPU and a CUDA-enabled TVM")
    with pytest.raises(CompileError, match="target cuda: "):
        compile_onnx(onnx_path, target="cuda")


def test_failed_build_is_one_line_and_saves_build_log(tmp_path):
    # Det has no converter in TVM's ONNX frontend: the import fails like a real unsupported model would.
    node = helper.make_node("Det", ["input"], ["logits"])
    graph = helper.make_graph(
        [node],
        "det",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 1, 4, 4])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 1])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    with pytest.raises(CompileError) as info:
        compile_onnx(model, target="x86_64", work_dir=tmp_path)
    message = str(info.value)
    assert "\n" not in message and "TVM build for x86_64 failed" in message and "Det" in message
    log = tmp_path / "build.log"
    assert str(log) in message and "Traceback" in log.read_text()


@pytest.mark.slow
def test_tuning_twice_with_one_database_measures_nothing_the_second_time(tmp_path):
    # One conv task (NCHW, as imported: NHWC would add the output's transpose) keeps the first tuning short;
    # most of its time is MetaSchedule's start-up.
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 8, 3, padding=1, bias=False), torch.nn.BatchNorm2d(8))
    model = torch.nn.Sequential(*model, torch.nn.ReLU6()).eval()
    path = export_onnx(model, input_shape=(1, 1, 8, 8), path=tmp_path / "conv.onnx")
    database = tmp_path / "tuning-db"
    first = compile_onnx(path, target="x86_64", tuning_trials=4, tuning_db=database, layout="NCHW")
    assert first.tuning.tuned_tasks == first.tuning.tasks >= 1 and first.tuning.measured > 0
    start = time.perf_counter()
    second = compile_onnx(path, target="x86_64", tuning_trials=4, tuning_db=database, layout="NCHW")
    assert second.tuning.tuned_tasks == 0 and second.tuning.measured == 0
    assert time.perf_counter() - start < first.compile_seconds / 3
    batch = random_inputs((1, 1, 8, 8), batch=2)
    np.testing.assert_allclose(second.run(batch), ort_session(path).run(None, {"input": batch})[0], atol=1e-4)
    budgets = json.loads((database / "edgenas-tuning.json").read_text())["tasks"]
    assert len(budgets) == first.tuning.tasks and set(budgets.values()) == {4}
