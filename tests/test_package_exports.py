"""The packages hand their public names on lazily: each name resolves on first use, and importing a package
(or one of its light constants, as the CLI's parsers do) loads none of the heavy libraries."""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys
from pathlib import Path

import pytest

LAZY_PACKAGES = ("deploy", "latency_estimator", "nas.search", "nas.datasets")
HEAVY_MODULES = ("torch", "optuna", "onnx", "tvm", "xgboost", "onnxruntime")


def static_exports(package: object) -> dict[str, str]:
    """name -> module of the imports under ``if TYPE_CHECKING:`` in a package's __init__ (what static tools see)."""
    tree = ast.parse(Path(package.__file__).read_text())
    guarded = [node for node in tree.body if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING"]
    return {
        alias.name: node.module
        for block in guarded
        for node in block.body
        if isinstance(node, ast.ImportFrom)
        for alias in node.names
    }


@pytest.mark.parametrize("name", LAZY_PACKAGES)
def test_every_public_name_is_its_submodules_object(name: str) -> None:
    package = importlib.import_module(name)
    exports = static_exports(package)
    assert sorted(exports) == sorted(package.__all__)
    for attr, module in exports.items():
        assert getattr(package, attr) is getattr(importlib.import_module(module), attr), attr
    assert set(package.__all__) <= set(dir(package))
    with pytest.raises(AttributeError, match="no_such_name"):
        package.no_such_name  # noqa: B018


def test_star_import_gives_every_public_name() -> None:
    names: dict[str, object] = {}
    exec("from deploy import *", names)
    assert set(importlib.import_module("deploy").__all__) <= set(names)


def test_packages_and_their_constants_load_no_heavy_module() -> None:
    code = (
        "import sys, deploy, latency_estimator, nas.search, nas.datasets; "
        "from nas.search.settings import STRATEGIES, MODES, PRUNERS, SearchSettings; "
        "from nas.datasets import DATASETS, DENSE_DATASETS; from deploy import known_targets; "
        "from deploy.display import DISPLAY_DECODE; from latency_estimator import available_devices; "
        "from nas.proxy_names import DEFAULT_PROXY, PROXY_NAMES; from nas.train_config import TrainConfig; "
        "known_targets(); available_devices(); "
        f"print(sorted(m for m in {HEAVY_MODULES!r} if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
