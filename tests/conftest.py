from __future__ import annotations

import pytest

from search_spaces import SHIPPED_SPACES, shipped_space_path


@pytest.fixture(params=SHIPPED_SPACES)
def shipped_space_file(request: pytest.FixtureRequest):
    """Every shipped search-space file, one test each."""
    return shipped_space_path(request.param)


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
