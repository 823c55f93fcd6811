"""Property-based fuzzing of every loader a user's file or string reaches (hypothesis, fixed budget).

Property: any input gives a result or an :class:`EdgeNasError` (the CLI's one
``edgenas: error: …`` line), never another exception. Inputs are random
bytes, random text, and mutations of real files (a shipped space, a real
ARCH file, a real ONNX export, a real estimator, a real artifact manifest),
so that most examples get past the first check and reach the deeper ones.

The budget is fixed and derandomised (``FUZZ_EXAMPLES`` per loader, the same
examples on every run), so CI time stays flat: the whole file takes well
under a minute. ``EDGENAS_FUZZ_EXAMPLES`` raises it for a longer local run.
"""

from __future__ import annotations

import json
import os
import shutil
import string
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from deploy.artifact import MANIFEST, Manifest, Preprocessing, library_name, load_artifact, write_manifest
from deploy.export import export_onnx
from deploy.runtime import load_input
from latency_estimator import build_estimator
from latency_estimator.decompose_onnx import decompose_onnx
from latency_estimator.estimator import LatencyEstimator
from nas.datasets import load_dataset, read_idx
from nas.search.settings import SearchSettings
from nas.search.storage_url import is_rdb_url, mask_url, resolve_rdb_url, storage_secrets
from nas.search.study import make_storage
from search_spaces import ArchConfig, build_model, load_space, shipped_space_path
from search_spaces.arch_file import load_arch
from search_spaces.errors import EdgeNasError
from tests.tiny_arch import TINY

FUZZ_EXAMPLES = int(os.environ.get("EDGENAS_FUZZ_EXAMPLES", "40"))
FUZZ = settings(
    max_examples=FUZZ_EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)


def outcome_of(load, *args, **kwargs) -> object:
    """Run a loader: its result, or None for an EdgeNasError. Any other exception fails the example."""
    try:
        return load(*args, **kwargs)
    except EdgeNasError as exc:
        message = str(exc)
        assert message and "\n" not in message, f"an error message must be one non-empty line: {message!r}"
        return None


def mutated(data: bytes, draw) -> bytes:
    """``data`` with a few bytes flipped, a slice cut out or repeated, or truncated."""
    data = bytearray(data)
    for _ in range(draw(st.integers(0, 4))):
        if not data:
            break
        action = draw(st.sampled_from(["flip", "cut", "repeat", "truncate", "insert"]))
        i = draw(st.integers(0, len(data) - 1))
        j = draw(st.integers(i, min(len(data), i + 64)))
        if action == "flip":
            data[i] ^= draw(st.integers(1, 255))
        elif action == "cut":
            del data[i:j]
        elif action == "repeat":
            data[i:i] = data[i:j] * draw(st.integers(1, 8))
        elif action == "truncate":
            del data[i:]
        else:
            data[i:i] = draw(st.binary(max_size=16))
    return bytes(data)


SPACE_TEXT = shipped_space_path("fused_ibn").read_text()
ARCH_TEXT = ArchConfig.from_dict(TINY).to_yaml()
YAML_SNIPPETS = st.sampled_from(
    ["a: 1\na: 2\n", "[" * 200 + "]" * 200, "&a [*a]", "x: &a [1]\ny: [*a, *a, *a]\n", "!!python/object:os.system x",
     "? [1, 2]\n: 3\n", "{1: 2, {}: 3}", "- - - - -", "\t", "name: \"\\x00\"", "%YAML 9.9\n---\n"]
)  # fmt: skip


def document(draw, base: str) -> bytes:
    """A file for a text loader: ``base`` mutated, random text or bytes, a nasty snippet, or both spliced."""
    kind = draw(st.sampled_from(["mutated", "mutated", "text", "binary", "snippet", "spliced"]))
    if kind == "mutated":
        return mutated(base.encode(), draw)
    if kind == "text":
        return draw(st.text(alphabet=string.printable + "äé€\u2028", max_size=400)).encode()
    if kind == "binary":
        return draw(st.binary(max_size=400))
    if kind == "snippet":
        return draw(YAML_SNIPPETS).encode()
    lines = base.splitlines(keepends=True)
    cut = draw(st.integers(0, len(lines)))
    return ("".join(lines[:cut]) + draw(YAML_SNIPPETS) + "".join(lines[cut:])).encode()


@FUZZ
@given(data=st.data())
def test_fuzz_search_space_files(tmp_path, data):
    path = tmp_path / "space.yaml"
    path.write_bytes(document(data.draw, SPACE_TEXT))
    outcome_of(load_space, path)
    outcome_of(load_space, path, parallelism_factor=16)


@FUZZ
@given(data=st.data(), suffix=st.sampled_from([".yaml", ".json"]))
def test_fuzz_arch_files(tmp_path, data, suffix):
    base = ARCH_TEXT if suffix == ".yaml" else json.dumps(ArchConfig.from_dict(TINY).to_dict())
    path = tmp_path / f"arch{suffix}"
    path.write_bytes(document(data.draw, base))
    outcome_of(load_arch, path)
    outcome_of(ArchConfig.load, path)


@pytest.fixture(scope="module")
def onnx_bytes(tmp_path_factory) -> bytes:
    folder = tmp_path_factory.mktemp("onnx")
    torch.manual_seed(0)
    model = build_model(ArchConfig.from_dict(TINY)).eval()
    return export_onnx(model, input_shape=(1, 1, 16, 16), path=folder / "tiny.onnx").read_bytes()


@FUZZ
@given(data=st.data())
def test_fuzz_onnx_files(tmp_path, onnx_bytes, data):
    content = data.draw(st.one_of(st.binary(max_size=300), st.just(b"")).map(bytes) | st.just(onnx_bytes))
    if data.draw(st.booleans()):
        content = mutated(onnx_bytes, data.draw)
    path = tmp_path / "model.onnx"
    path.write_bytes(content)
    outcome_of(decompose_onnx, path)


@pytest.fixture(scope="module")
def estimator_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("estimators")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("EDGENAS_ESTIMATORS", str(root))
        build_estimator("sim-npu-p32", samples=120)
    return root / "sim-npu-p32"


@FUZZ
@given(data=st.data())
def test_fuzz_estimator_folders(tmp_path, estimator_dir, data):
    folder = tmp_path / "sim-npu-p32"
    shutil.rmtree(folder, ignore_errors=True)
    shutil.copytree(estimator_dir, folder)
    names = sorted(p.name for p in folder.iterdir())
    victim = folder / data.draw(st.sampled_from(["metadata.json", "metadata.json", *names]))
    if data.draw(st.booleans()) and victim.name == "metadata.json":
        metadata = json.loads(victim.read_text())
        key = data.draw(st.sampled_from(sorted(metadata)))
        metadata[key] = data.draw(st.one_of(st.none(), st.integers(), st.text(max_size=5), st.lists(st.integers())))
        victim.write_text(json.dumps(metadata))
    elif data.draw(st.booleans()):
        victim.write_bytes(mutated(victim.read_bytes(), data.draw))
    else:
        victim.unlink()
    outcome_of(LatencyEstimator.load, folder, device="sim-npu-p32")


IDX_MAGIC = st.sampled_from([b"\x00\x00\x08\x01", b"\x00\x00\x08\x03", b"\x00\x00\x0d\x02", b"\x00\x00\x08\xff"])


@FUZZ
@given(magic=IDX_MAGIC, dims=st.lists(st.integers(0, 2**32 - 1), max_size=4), body=st.binary(max_size=200))
def test_fuzz_idx_files(tmp_path, magic, dims, body):
    path = tmp_path / "images-idx3-ubyte"
    path.write_bytes(magic + b"".join(d.to_bytes(4, "big") for d in dims) + body)
    outcome_of(read_idx, path)


NPZ_IMAGES = hnp.arrays(
    dtype=st.sampled_from([np.uint8, np.int16, np.float32, np.float64, np.bool_]),
    shape=st.sampled_from([(6, 8, 8), (6, 8, 8, 1), (6, 1, 8, 8), (6, 8), (0, 8, 8), (6, 3, 8, 8)]),
    elements=None,
)
NPZ_LABELS = hnp.arrays(
    dtype=st.sampled_from([np.int64, np.int8, np.float32]),
    shape=st.sampled_from([(6,), (5,), (6, 1), (0,)]),
    elements=st.integers(-2, 12),
)


@FUZZ
@given(x=NPZ_IMAGES, y=NPZ_LABELS, names=st.none() | st.lists(st.text(max_size=3), max_size=12), raw=st.booleans())
def test_fuzz_npz_datasets(tmp_path, x, y, names, raw):
    path = tmp_path / "data.npz"
    arrays = {"x": x, "y": y} | ({} if names is None else {"class_names": np.array(names, dtype=str)})
    np.savez(path, **arrays)
    if raw:
        path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])
    dataset = outcome_of(load_dataset, "npz", resolution=8, data_dir=path, val_fraction=0.2, test_fraction=0.2)
    if dataset is not None:
        for split in (dataset.train, dataset.val, dataset.test):
            assert torch.isfinite(split.x).all() and int(split.y.max()) < dataset.num_classes


@pytest.fixture(scope="module")
def png_bytes() -> bytes:
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.arange(64, dtype=np.uint8).reshape(8, 8)).save(buffer, format="PNG")
    return buffer.getvalue()


@FUZZ
@given(data=st.data())
def test_fuzz_image_folders(tmp_path, png_bytes, data):
    root = tmp_path / "images"
    shutil.rmtree(root, ignore_errors=True)
    for cls in ("cat", "dog"):
        (root / cls).mkdir(parents=True)
        for i in range(3):
            name = data.draw(st.sampled_from([f"{i}.png", f"{i}.jpg", f"{i}.bmp"]))
            content = mutated(png_bytes, data.draw) if data.draw(st.booleans()) else png_bytes
            (root / cls / name).write_bytes(content)
    outcome_of(load_dataset, "folder", resolution=8, data_dir=root, val_fraction=0.2, test_fraction=0.2)


PREPROCESSING = Preprocessing(channels=1, resolution=16, mean=(0.3,), std=(0.2,))
RUN_ARRAYS = hnp.arrays(
    dtype=st.sampled_from([np.uint8, np.float32, np.float64, np.int64, np.complex64, np.bool_]),
    shape=hnp.array_shapes(min_dims=0, max_dims=5, min_side=0, max_side=17),
)


@FUZZ
@given(array=RUN_ARRAYS, preprocessed=st.booleans())
def test_fuzz_npy_inputs_to_run(tmp_path, array, preprocessed):
    path = tmp_path / "input.npy"
    np.save(path, array)
    batch = outcome_of(load_input, path, PREPROCESSING, preprocessed=preprocessed)
    if batch is not None:
        assert batch.shape[1:] == (1, 16, 16) and len(batch) and np.isfinite(batch).all()


@FUZZ
@given(data=st.data())
def test_fuzz_image_inputs_to_run(tmp_path, png_bytes, data):
    path = tmp_path / data.draw(st.sampled_from(["in.png", "in.jpg", "in.bmp", "in.npy"]))
    path.write_bytes(mutated(png_bytes, data.draw) if data.draw(st.booleans()) else data.draw(st.binary(max_size=99)))
    outcome_of(load_input, path, PREPROCESSING)


@pytest.fixture(scope="module")
def artifact_dir(tmp_path_factory, onnx_bytes) -> Path:
    """A real artifact folder: arch.yaml, model.onnx, a library file, and its manifest (hashes and own checksum)."""
    folder = tmp_path_factory.mktemp("artifact")
    arch = ArchConfig.from_dict(TINY)
    arch.save(folder / "arch.yaml")
    (folder / "model.onnx").write_bytes(onnx_bytes)
    (folder / library_name("x86_64")).write_bytes(b"\x7fELF library bytes are hashed, not loaded, by load_artifact")
    manifest = Manifest(
        arch_id=arch.arch_id,
        block_string=arch.block_string(),
        target="x86_64",
        tvm_target={"kind": "llvm"},
        target_arch="x86_64",
        target_device="cpu",
        library_file=library_name("x86_64"),
        preprocessing=Preprocessing(channels=1, resolution=16, mean=(0.3,), std=(0.2,)),
        class_names=tuple(str(i) for i in range(10)),
    )
    write_manifest(folder, manifest)
    return folder


def _mutate_json(value, draw, depth: int = 0):
    """A JSON value with one random change somewhere inside."""
    if isinstance(value, dict) and value and depth < 4 and draw(st.booleans()):
        key = draw(st.sampled_from(sorted(value)))
        return {**value, key: _mutate_json(value[key], draw, depth + 1)}
    if isinstance(value, list) and value and depth < 4 and draw(st.booleans()):
        i = draw(st.integers(0, len(value) - 1))
        return [*value[:i], _mutate_json(value[i], draw, depth + 1), *value[i + 1 :]]
    return draw(
        st.one_of(
            st.none(), st.booleans(), st.integers(-5, 5), st.floats(allow_nan=False), st.text(max_size=4),
            st.lists(st.integers(-2, 3), max_size=3), st.dictionaries(st.text(max_size=2), st.integers(), max_size=2),
        )
    )  # fmt: skip


@FUZZ
@given(data=st.data(), rehash=st.booleans())
def test_fuzz_artifact_folders(tmp_path, artifact_dir, data, rehash):
    from deploy.artifact import manifest_checksum

    folder = tmp_path / "artifact"
    shutil.rmtree(folder, ignore_errors=True)
    shutil.copytree(artifact_dir, folder)
    path = folder / MANIFEST
    manifest = json.loads(path.read_text())
    if data.draw(st.booleans()):
        manifest = _mutate_json(manifest, data.draw)
        if rehash and isinstance(manifest, dict):
            manifest["checksum"] = manifest_checksum(manifest)
        path.write_text(json.dumps(manifest))
    else:
        path.write_bytes(mutated(path.read_bytes(), data.draw))
    artifact = outcome_of(load_artifact, folder)
    if artifact is not None and not rehash:
        assert json.loads(path.read_text()) == json.loads((artifact_dir / MANIFEST).read_text())


URL_PARTS = st.text(alphabet=string.ascii_letters + string.digits + ":/@?&=%+.-_#[]", max_size=30)


@FUZZ
@given(
    scheme=st.sampled_from(["postgresql", "postgres", "postgresql+psycopg2", "postgresql+pg8000", "sqlite", "mysql",
                            "redis", "", "journal"]),
    sep=st.sampled_from(["://", "//", ":/", ":", "/", ""]),
    user=URL_PARTS, password=URL_PARTS, rest=URL_PARTS,
)  # fmt: skip
def test_fuzz_storage_urls(tmp_path, scheme, sep, user, password, rest):
    url = f"{scheme}{sep}{user}:{password}@{rest}"
    rdb = outcome_of(is_rdb_url, url)
    if rdb:
        outcome_of(resolve_rdb_url, url)
        masked = mask_url(url)
        assert storage_secrets(masked) == [], f"{url!r} -> {masked!r} still shows a password"
    # A journal path or an SQLite file opens for real (no network): a result or one error line.
    local = str(tmp_path / f"{user}{rest}"[:40]) if not rdb else f"sqlite:///{tmp_path}/fuzz.db"
    options = {"space": "s.yaml", "device": "sim-npu-p32", "dataset": "digits", "results_dir": str(tmp_path)}
    outcome_of(lambda: make_storage(SearchSettings(**options, storage=local)))
