"""A literal float64 transcription of the reference code's RN step (doerlbh/UnsupervisedAttentionMechanism,
``getHistoryStats`` and ``getMDL``), used as the test oracle.

It uses the reference's own operations: ``torch.std`` (unbiased), the pooled-variance history merge, the
``torch.distributions.Normal`` log-likelihood, and the two-branch COMP update. Autograd runs through the current
batch's terms; the previous state is detached (the reference's DQN semantics).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass
class RefState:
    mean: Tensor
    std: Tensor
    count: int
    comp: Tensor


def reference_step(
    x: Tensor, state: RefState | None, variant: str = "rn", exact_var: bool = False
) -> tuple[Tensor, Tensor, RefState]:
    """One training forward: returns (output, code length, new state)."""
    n = x.numel()
    m, s = x.mean(), x.std()
    if state is None:
        mu, sd, count, comp_prev = m, s, n, torch.zeros((), dtype=torch.float64)
        if variant == "rln":
            comp_prev = torch.zeros(x.shape[1], dtype=torch.float64)
    else:
        mu0, sd0, n0 = state.mean.detach(), state.std.detach(), state.count
        mu = (n0 * mu0 + n * m) / (n0 + n)
        if exact_var:
            m2 = (n0 - 1) * sd0**2 + (n - 1) * s**2 + n0 * n / (n0 + n) * (m - mu0) ** 2
            sd = torch.sqrt(m2 / (n0 + n - 1))
        else:
            sd = torch.sqrt(((n0 - 1) * sd0**2 + (n - 1) * s**2) / (n0 + n - 2))
        count, comp_prev = n0 + n, state.comp.detach()
    logp = torch.distributions.Normal(mu, sd).log_prob(x)
    if variant == "rn":
        lmax = logp.max()
        sum_p = lmax + torch.log(torch.sum(torch.exp(logp - lmax)))
        if comp_prev > lmax:  # the reference's two branches, both logaddexp(COMP, S)
            comp = comp_prev + torch.log(1 + torch.sum(torch.exp(logp - comp_prev)))
        else:
            comp = lmax + torch.log(torch.exp(comp_prev - lmax) + torch.sum(torch.exp(logp - lmax)))
        length = comp - sum_p
        y = length * x
    else:
        sum_p = torch.logsumexp(logp, dim=0)
        comp = torch.logaddexp(comp_prev, sum_p)
        length = comp - sum_p
        y = length.view(1, -1) * x
    return y, length, RefState(mu.detach(), sd.detach(), count, comp.detach())


def drifting_batches(num_features: int, sizes: list[int], seed: int = 0) -> list[Tensor]:
    """Float64 batches whose mean and scale drift, with changing batch sizes: the inputs every oracle comparison
    (``test_layers.py``, ``test_cuda.py``) feeds both sides."""
    gen = torch.Generator().manual_seed(seed)
    return [
        torch.randn(b, num_features, generator=gen, dtype=torch.float64) * (1 + 0.5 * t) + 0.3 * t for t, b in enumerate(sizes)
    ]
