"""Remote boards through a TVM RPC tracker: a tracker and a server on 127.0.0.1 stand in for a board."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from deploy import RemoteError, compile_onnx, export_onnx, local_board, random_inputs, run_remote
from deploy.session import ort_session
from deploy.tracker import parse_tracker
from nas.cli.main import main
from search_spaces import ArchConfig, build_model
from tests.tiny_arch import ONE_BLOCK

INPUT_SHAPE = (1, 1, 16, 16)


@pytest.fixture(scope="module")
def board():
    with local_board(key="loopback") as address:
        yield address


@pytest.fixture(scope="module")
def arch_files(tmp_path_factory):
    root = tmp_path_factory.mktemp("rpc")
    arch = ArchConfig.from_dict(ONE_BLOCK)
    arch.save(root / "arch.yaml")
    torch.manual_seed(0)
    model = build_model(arch).eval()
    torch.save(model.state_dict(), root / "weights.pt")
    export_onnx(model, input_shape=INPUT_SHAPE, path=root / "model.onnx")
    return root


@pytest.mark.slow
def test_library_runs_on_the_board_and_matches_onnxruntime(board, arch_files):
    library = compile_onnx(arch_files / "model.onnx", target="x86_64").export_library(arch_files / "model.so")
    inputs = random_inputs(INPUT_SHAPE, batch=3)
    result = run_remote(library, tracker=board, key="loopback", inputs=inputs, repeats=3, min_sample_ms=2)
    expected = ort_session(arch_files / "model.onnx").run(None, {"input": inputs})[0]
    np.testing.assert_allclose(result.outputs, expected, atol=1e-4)
    assert result.latency.median_ms > 0 and len(result.latency.samples_ms) == 3


@pytest.mark.slow
def test_deploy_records_the_board_latency(board, arch_files, tmp_path, capsys):
    out = tmp_path / "dist"
    args = ["deploy", "--arch", str(arch_files / "arch.yaml"), "--weights", str(arch_files / "weights.pt")]
    # Untuned: tuning on the board is test_tuning_measures_candidates_on_the_board's (deploy would tune for minutes).
    board_args = ["--rpc-tracker", board, "--rpc-key", "loopback", "--tune-trials", "0", "--no-measure"]
    code = main([*args, *board_args, "--out", str(out)])
    assert code == 0
    assert "measured latency rpc:loopback-tvm" in capsys.readouterr().out
    import json

    manifest = json.loads((out / "manifest.json").read_text())
    assert set(manifest["measured_latency_ms"]) == {"rpc:loopback-tvm"}
    assert manifest["parity_max_abs_diff"]["rpc-vs-onnxruntime/random"] <= 1e-4


@pytest.mark.slow
def test_unknown_key_lists_the_registered_ones(board, arch_files):
    with pytest.raises(RemoteError, match=r"no board with key 'pi5'.*\['loopback'\]"):
        run_remote(arch_files / "model.onnx", tracker=board, key="pi5", inputs=random_inputs(INPUT_SHAPE))


def test_unreachable_tracker_fails_fast(arch_files, capsys):
    from deploy.rpc import _free_port

    address = f"127.0.0.1:{_free_port()}"
    args = ["deploy", "--arch", str(arch_files / "arch.yaml"), "--weights", str(arch_files / "weights.pt")]
    code = main([*args, "--rpc-tracker", address, "--rpc-key", "pi", "--out", str(arch_files / "unreachable")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith("edgenas: error: cannot reach the RPC tracker") and "\n" not in err


@pytest.mark.parametrize("address", ["localhost", "host:port", ":9190", "host:70000"])
def test_tracker_address_must_be_host_port(address):
    with pytest.raises(RemoteError, match="HOST:PORT"):
        parse_tracker(address)


@pytest.mark.slow
def test_tuning_measures_candidates_on_the_board(board, tmp_path):
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.ReLU6()).eval()
    path = export_onnx(model, input_shape=(1, 1, 8, 8), path=tmp_path / "conv.onnx")
    compiled = compile_onnx(
        path, target="x86_64", tuning_trials=2, tuning_db=tmp_path / "db", rpc_tracker=board, rpc_key="loopback"
    )
    assert compiled.tuning.measured > 0
    batch = random_inputs((1, 1, 8, 8), batch=2)
    np.testing.assert_allclose(compiled.run(batch), ort_session(path).run(None, {"input": batch})[0], atol=1e-4)
