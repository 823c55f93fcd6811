"""Fixtures every test module may use, and the set-up of parallel runs.

``make test`` runs the suite with pytest-xdist, one worker per core and ``--dist loadgroup``: a test runs on
whichever worker is free, except that the tests of one group in :data:`WORKER_GROUPS` run on one worker, which
then builds their shared fixtures once. A plain ``pytest`` runs everything in one process, as before.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from search_spaces import SHIPPED_SPACES, shipped_space_path

# (node id prefix, group): the first prefix that matches names the test's group. ``tvm-tuning``: the tests that
# check a tuning time budget, so that no other tuning run shares their minutes; the others: modules whose module
# fixtures take long to build. xdist's own ``xdist_group`` marks would
# say this beside the tests, but pytest-xdist 3.8 marks the node ids in a way pytest 9 ignores.
WORKER_GROUPS = (
    ("tests/test_deploy_cli.py::test_default_deploy_tunes_within_its_budget", "tvm-tuning"),
    ("tests/test_deploy_cli.py::test_tuned_deploy_ships", "tvm-tuning"),  # shares the `tuned` fixture's deploy
    ("tests/test_deploy_tuning.py::", "tvm-tuning"),
    ("tests/test_deploy_cli.py::", "deploy-cli"),
    ("tests/test_deploy_dense.py::", "deploy-dense"),
    ("tests/test_deploy_rpc.py::", "deploy-rpc"),
    ("tests/test_dense_insights.py::", "dense-insights"),
    ("tests/test_insights.py::", "insights"),
)


def worker_group(nodeid: str) -> str:
    """The unit of work of a test under ``--dist loadgroup``: its group, else the test alone."""
    return next((group for prefix, group in WORKER_GROUPS if nodeid.startswith(prefix)), nodeid)


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log):
    """``--dist loadgroup`` with the groups of :data:`WORKER_GROUPS` (largest groups first, then single tests in
    collection order, each to the first free worker)."""
    if config.getvalue("dist") != "loadgroup":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class WorkerGroupScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return worker_group(nodeid)

    return WorkerGroupScheduling(config, log)


def pytest_configure(config: pytest.Config) -> None:
    """Under pytest-xdist (``make test`` runs ``-n <cores>``) workers share the cores: each worker, and every process
    it starts, gets its share of threads (torch, OpenMP, TVM), so that N workers do not run N x cores threads."""
    workerinput = getattr(config, "workerinput", None)
    if workerinput is None:
        return
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    threads = max(1, cores // int(workerinput["workercount"]))
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "TVM_NUM_THREADS"):
        os.environ.setdefault(name, str(threads))  # read by the processes that tests start, and by TVM's pool
    import torch

    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))


@pytest.fixture(params=SHIPPED_SPACES)
def shipped_space_file(request: pytest.FixtureRequest):
    """Every shipped search-space file, one test each."""
    return shipped_space_path(request.param)


def run_shared_dir(tmp_path_factory: pytest.TempPathFactory, name: str) -> Path:
    """``name`` in the folder that every xdist worker of this run shares (the run's base temporary folder; in a
    plain run, the session's own), for what the workers build once and then only read."""
    base = tmp_path_factory.getbasetemp()
    return (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / name


@pytest.fixture(scope="session")
def sim_npu_p32_estimators(tmp_path_factory: pytest.TempPathFactory):
    """A folder of estimators (``$EDGENAS_ESTIMATORS``) holding a sim-npu-p32 estimator built as a user's first
    search builds it, dense kinds included (seconds to a minute; once per run: the first worker that needs it
    builds it under obtain_estimator's lock, the others wait and load it)."""
    from latency_estimator import obtain_estimator

    folder = run_shared_dir(tmp_path_factory, "estimators")
    obtain_estimator("sim-npu-p32", directory=folder / "sim-npu-p32")
    return folder


@pytest.fixture(scope="session")
def small_sim_estimators(tmp_path_factory: pytest.TempPathFactory):
    """A folder of estimators (``$EDGENAS_ESTIMATORS``) holding a small sim-npu-p32 estimator (150 samples: seconds
    to build, once per run as :func:`sim_npu_p32_estimators`), enough for searches that only need the latency to be
    the device's."""
    from latency_estimator import obtain_estimator

    folder = run_shared_dir(tmp_path_factory, "small-estimators")
    obtain_estimator("sim-npu-p32", directory=folder / "sim-npu-p32", samples=150)
    return folder


@pytest.fixture(scope="module")
def use_small_sim_estimator(small_sim_estimators):
    """``$EDGENAS_ESTIMATORS`` points at :func:`small_sim_estimators` for a whole module
    (``pytestmark = pytest.mark.usefixtures("use_small_sim_estimator")``); worker processes get it from the value."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("EDGENAS_ESTIMATORS", str(small_sim_estimators))
        yield small_sim_estimators


@pytest.fixture(autouse=True, scope="session")
def _private_tuning_databases(tmp_path_factory):
    """Deploy tunes into a per-target database under $EDGENAS_TUNING_DB; tests use their own, not ~/.cache."""
    import os

    old = os.environ.get("EDGENAS_TUNING_DB")
    os.environ["EDGENAS_TUNING_DB"] = str(tmp_path_factory.mktemp("tuning-dbs"))
    yield
    if old is None:
        os.environ.pop("EDGENAS_TUNING_DB", None)
    else:
        os.environ["EDGENAS_TUNING_DB"] = old
