"""Zero-shot proxies: every registered proxy scores a real network at initialisation."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from nas.proxies import DEFAULT_PROXY, PROXIES, ProxyError, get_proxy, proxy_batches, score_arch
from nas.proxy_names import PROXY_NAMES
from search_spaces import count_arch, load_space, shipped_space_path


def tiny(block: str):
    """The smallest point of the combined space, every stage ``block``, on 8x8 inputs: cheap to build and run."""
    space = load_space(shipped_space_path("combined"))
    point = {name: min(c) if not isinstance(c[0], str) else block for name, c in space.parameters().items()}
    return dataclasses.replace(space.resolve(point), resolution=8)


@pytest.fixture(scope="module")
def small_arch():
    return tiny("fused_ibn")


@pytest.fixture(scope="module")
def batches(small_arch):
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(80, 1, small_arch.resolution, small_arch.resolution, generator=generator)
    y = torch.randint(0, 10, (80,), generator=generator)
    return proxy_batches(x, y, batch_size=32, batches=2)


@pytest.mark.parametrize("name", sorted(PROXIES))
def test_every_proxy_gives_a_finite_deterministic_score(name, small_arch, batches):
    first = score_arch(small_arch, batches, proxy=name, seed=3, threads=1)
    second = score_arch(small_arch, batches, proxy=name, seed=3, threads=1)
    assert math.isfinite(first)
    assert first == pytest.approx(second, rel=1e-9, abs=1e-9)


def test_count_proxies_are_the_analytic_counts(small_arch, batches):
    counts = count_arch(small_arch)
    assert score_arch(small_arch, batches, proxy="params") == counts.params
    assert score_arch(small_arch, batches, proxy="macs") == counts.macs


def test_proxies_tell_architectures_apart(batches):
    archs = [tiny("ibn"), tiny("fused_ibn")]
    for name in ("naswot", "synflow"):
        scores = {score_arch(arch, batches, proxy=name, threads=1) for arch in archs}
        assert len(scores) == 2, name


def test_proxy_batches_are_disjoint_and_capped():
    x = torch.arange(10, dtype=torch.float32).view(10, 1, 1, 1)
    y = torch.arange(10)
    data = proxy_batches(x, y, batch_size=4, batches=5)
    assert len(data.batches) == 2  # only two full batches of 4 fit in 10 images
    seen = torch.cat([b[1] for b in data.batches])
    assert len(set(seen.tolist())) == 8
    assert data.input_shape == (1, 1, 1)


def test_unknown_proxy_lists_the_registered_ones():
    with pytest.raises(ProxyError, match="unknown proxy 'nope'; known proxies: .*naswot.*synflow"):
        get_proxy("nope")


def test_empty_split_is_an_error():
    with pytest.raises(ProxyError, match="empty"):
        proxy_batches(torch.zeros(0, 1, 4, 4), torch.zeros(0, dtype=torch.long))


def test_default_proxy_is_registered():
    assert DEFAULT_PROXY in PROXIES


def test_the_light_list_of_names_is_the_registry():
    # nas.proxy_names gives the CLI its --proxy choices without importing torch; it must name every built-in proxy.
    assert tuple(sorted(PROXIES)) == PROXY_NAMES
