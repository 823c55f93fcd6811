from __future__ import annotations

import pytest

from search_spaces import SHIPPED_SPACES, shipped_space_path


@pytest.fixture(params=SHIPPED_SPACES)
def shipped_space_file(request: pytest.FixtureRequest):
    """Every shipped search-space file, one test each."""
    return shipped_space_path(request.param)


@pytest.fixture(scope="session")
def sim_npu_p32_estimators(tmp_path_factory: pytest.TempPathFactory):
    """A folder of estimators (``$EDGENAS_ESTIMATORS``) holding a sim-npu-p32 estimator built as a user's first
    search builds it, dense kinds included (seconds to a minute; once per session)."""
    from latency_estimator import obtain_estimator

    folder = tmp_path_factory.mktemp("estimators")
    obtain_estimator("sim-npu-p32", directory=folder / "sim-npu-p32")
    return folder


@pytest.fixture(scope="session")
def small_sim_estimators(tmp_path_factory: pytest.TempPathFactory):
    """A folder of estimators (``$EDGENAS_ESTIMATORS``) holding a small sim-npu-p32 estimator (150 samples: seconds
    to build, once per session), enough for searches that only need the latency to be the device's."""
    from latency_estimator import build_estimator

    folder = tmp_path_factory.mktemp("small-estimators")
    build_estimator("sim-npu-p32", samples=150, directory=folder / "sim-npu-p32")
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
