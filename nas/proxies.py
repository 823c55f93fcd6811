"""Zero-shot trainability proxies: score an untrained network at initialisation.

A proxy maps (freshly initialised model, a few batches of training data) to
one number, higher meaning "expected to train to a higher accuracy". They cost
one or two forward/backward passes, so a search can screen hundreds of
candidates for the price of training one.

Registered proxies (``PROXIES``; add one with :func:`register_proxy`):

    naswot     Mellor et al. 2021: log|det K| of the Hamming-similarity kernel of
               the ReLU on/off codes a minibatch produces (how well the net
               separates inputs at init). Averaged over the batches.
    synflow    Tanaka et al. 2020 / Abdelfattah et al. 2021: log of
               sum(|theta * dR/dtheta|) for R = sum(f(1)) of the network with
               |weights|, activations linearised and BatchNorm frozen. Data-free.
    snip       Lee et al. 2019: log of sum(|theta * dL/dtheta|) on a batch.
    grad_norm  log of the L2 norm of dL/dtheta on a batch.
    params     the parameter count: the baseline proxy every paper says to beat.
    macs       multiply-accumulates of one inference: the other naive baseline.

``results/zero-shot-proxies.md`` (from ``benchmarks/zero_shot_proxies.py``)
measures their Spearman correlation with trained accuracy; ``DEFAULT_PROXY``
is the winner there.
"""

from __future__ import annotations

import abc
import copy
import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from nas.proxy_names import DEFAULT_PROXY
from nas.training import torch_threads
from search_spaces import ArchConfig, build_model, count_arch
from search_spaces.errors import EdgeNasError

__all__ = [
    "DEFAULT_PROXY",
    "PROXIES",
    "Proxy",
    "ProxyBatches",
    "ProxyError",
    "get_proxy",
    "proxy_batches",
    "register_proxy",
    "score_arch",
]

_ACTIVATIONS = (nn.ReLU, nn.ReLU6, nn.Hardswish)


class ProxyError(EdgeNasError):
    """A proxy is unknown, or cannot score a network (e.g. an empty batch)."""


@dataclass(frozen=True, eq=False)
class ProxyBatches:
    """The training data a proxy sees: a few (x, y) batches, N x C x H x W and N."""

    batches: tuple[tuple[torch.Tensor, torch.Tensor], ...]

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.batches[0][0].shape[1:])


def proxy_batches(
    x: torch.Tensor, y: torch.Tensor, *, batch_size: int = 64, batches: int = 2, seed: int = 0
) -> ProxyBatches:
    """Draw ``batches`` disjoint random batches (fewer if the data is short) from a split's tensors."""
    if len(y) == 0:
        raise ProxyError("cannot draw proxy batches from an empty split")
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))
    size = min(batch_size, len(y))
    count = max(1, min(batches, len(y) // size))
    chosen = tuple((x[order[i * size : (i + 1) * size]], y[order[i * size : (i + 1) * size]]) for i in range(count))
    return ProxyBatches(batches=chosen)


class Proxy(abc.ABC):
    """A trainability score of an initialised network; higher means more promising.

    :meth:`score` is called once per candidate, on a model fresh from
    ``build_model`` (the caller seeds the initialisation) and the same batches
    for every candidate of a study, so scores are comparable within a study.
    """

    name: str = ""
    needs_model: bool = True  # False: scored from the ArchConfig alone (counts)

    @abc.abstractmethod
    def score(self, arch: ArchConfig, model: nn.Module | None, data: ProxyBatches) -> float: ...


PROXIES: dict[str, type[Proxy]] = {}


def register_proxy(name: str) -> Callable[[type[Proxy]], type[Proxy]]:
    def decorate(cls: type[Proxy]) -> type[Proxy]:
        if name in PROXIES:
            raise ValueError(f"proxy {name!r} is already registered")
        cls.name = name
        PROXIES[name] = cls
        return cls

    return decorate


def get_proxy(name: str) -> Proxy:
    if name not in PROXIES:
        raise ProxyError(f"unknown proxy {name!r}; known proxies: {', '.join(sorted(PROXIES))}")
    return PROXIES[name]()


def score_arch(
    arch: ArchConfig,
    data: ProxyBatches,
    *,
    proxy: str | Proxy = DEFAULT_PROXY,
    seed: int = 0,
    threads: int | None = None,
) -> float:
    """Build ``arch`` with weights seeded by ``seed`` and score it; a finite float.

    ``threads``: torch threads while scoring (None keeps torch's setting); on a
    shared CPU one thread is several times cheaper than two spinning ones.
    """
    scorer = get_proxy(proxy) if isinstance(proxy, str) else proxy
    model = None
    with torch_threads(threads):
        if scorer.needs_model:
            torch.manual_seed(seed)
            model = build_model(arch)
        value = float(scorer.score(arch, model, data))
    if not math.isfinite(value):
        raise ProxyError(f"proxy {scorer.name!r} gave {value} for {arch.arch_id}")
    return value


@register_proxy("params")
class ParamsProxy(Proxy):
    needs_model = False

    def score(self, arch: ArchConfig, model: nn.Module | None, data: ProxyBatches) -> float:
        return float(count_arch(arch).params)


@register_proxy("macs")
class MacsProxy(Proxy):
    needs_model = False

    def score(self, arch: ArchConfig, model: nn.Module | None, data: ProxyBatches) -> float:
        return float(count_arch(arch).macs)


@register_proxy("naswot")
class NaswotProxy(Proxy):
    def score(self, arch: ArchConfig, model: nn.Module | None, data: ProxyBatches) -> float:
        model.train()  # BatchNorm normalises with the batch's own statistics, as at the first training step
        scores = []
        for x, _ in data.batches:
            codes = _activation_codes(model, x)  # N x units, 1.0 where the unit is on
            # Hamming similarity: units where two inputs agree (both on or both off).
            kernel = codes @ codes.T + (1.0 - codes) @ (1.0 - codes).T
            scores.append(torch.linalg.slogdet(kernel.double()).logabsdet.item())
        return sum(scores) / len(scores)


def _activation_codes(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    codes: list[torch.Tensor] = []

    def hook(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        codes.append((inputs[0] > 0).flatten(1).float())

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, _ACTIVATIONS)]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for handle in handles:
            handle.remove()
    if not codes:
        raise ProxyError("naswot needs ReLU-like activations; the model has none")
    return torch.cat(codes, dim=1)


@register_proxy("synflow")
class SynflowProxy(Proxy):
    def score(self, arch: ArchConfig, model: nn.Module | None, data: ProxyBatches) -> float:
        net = _linearised(model).double()
        net.eval()  # BatchNorm at init in eval mode is a fixed rescaling: the "no BN" synflow network
        with torch.no_grad():
            for param in net.parameters():
                param.abs_()
        net.zero_grad()
        ones = torch.ones((1, *data.input_shape), dtype=torch.float64)
        net(ones).sum().backward()
        total = sum((p * p.grad).sum() for p in net.parameters() if p.grad is not None)
        return _safe_log(float(total.detach()))


def _linearised(model: nn.Module) -> nn.Module:
    """A copy with every activation replaced by identity (ReLU6 would clip the all-positive signal)."""
    net = copy.deepcopy(model)
    for module in list(net.modules()):
        for child_name, child in list(module.named_children()):
            if isinstance(child, _ACTIVATIONS):
                setattr(module, child_name, nn.Identity())
    return net


@register_proxy("snip")
class SnipProxy(Proxy):
    def score(self, arch: ArchConfig, model: nn.Module | None, data: ProxyBatches) -> float:
        grads = _loss_grads(model, data)
        return _safe_log(sum(float((p.detach() * g).abs().sum()) for p, g in grads))


@register_proxy("grad_norm")
class GradNormProxy(Proxy):
    def score(self, arch: ArchConfig, model: nn.Module | None, data: ProxyBatches) -> float:
        grads = _loss_grads(model, data)
        return _safe_log(math.sqrt(sum(float((g * g).sum()) for _, g in grads)))


def _loss_grads(model: nn.Module, data: ProxyBatches) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(parameter, mean cross-entropy gradient over the batches) for every weight."""
    model.train()
    model.zero_grad()
    for x, y in data.batches:
        loss = nn.functional.cross_entropy(model(x), y) / len(data.batches)
        loss.backward()
    return [(p, p.grad) for p in model.parameters() if p.grad is not None]


def _safe_log(value: float) -> float:
    # Scores span tens of orders of magnitude across a space; the log keeps them readable (ranks are unchanged).
    return math.log(value) if value > 0 else float("-inf")
