from __future__ import annotations

import pytest

from search_spaces import SHIPPED_SPACES, shipped_space_path


@pytest.fixture(params=SHIPPED_SPACES)
def shipped_space_file(request: pytest.FixtureRequest):
    """Every shipped search-space file, one test each."""
    return shipped_space_path(request.param)
