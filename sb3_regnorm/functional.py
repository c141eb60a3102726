"""The pure math of Regularity Normalization, apart from the module (as ``torch.nn.functional`` is apart from
``torch.nn.modules``).

Every function here is stateless: it takes the running state and one :class:`RNConfig` and returns new values;
:class:`~sb3_regnorm.layers.RegularityNorm` reads its buffers, calls these and writes the results. Scalars are
Python floats on the host path (the CPU: a float op costs nanoseconds, a tensor op microseconds) and 0-d float64
tensors on the device path (an accelerator: reading a tensor into a float would synchronise the host). The
``float | Tensor`` branching is confined to :func:`where`, :func:`maximum` and :func:`host_value`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final, TypeAlias

import torch
from torch import Tensor

__all__ = [
    "EVAL_GAINS",
    "VARIANTS",
    "Merged",
    "RNConfig",
    "Scalar",
    "cap",
    "centre_batch",
    "code_length",
    "code_length_slope",
    "density",
    "group_density",
    "host_value",
    "log",
    "maximum",
    "merge_batch",
    "next_refsize",
    "shifted_density",
    "to_dtype",
    "where",
]

VARIANTS: Final = ("rn", "rln")
EVAL_GAINS: Final = ("batch", "frozen")
HALF_LOG_2PI: Final = 0.5 * math.log(2.0 * math.pi)
MIN_DENSITY_SUM: Final = 1e-30  # below this a float32 sum of densities is near-subnormal: use the exact path

Scalar: TypeAlias = float | Tensor
"""A Python float (host path) or a tensor (a 0-d float64 state value on the device path, or a per-unit vector)."""


@dataclass(frozen=True)
class RNConfig:
    """RegularityNorm's options, validated once; see :class:`~sb3_regnorm.layers.RegularityNorm` for their meaning."""

    variant: str = "rn"
    rescale: bool = True
    momentum: float | None = None
    exact_var: bool = False
    detach_gain: bool = False
    eval_gain: str = "batch"
    eval_size_correction: bool = True
    max_gain: float | None = None
    eps: float = 1e-5

    def __post_init__(self) -> None:
        if self.variant not in VARIANTS:
            raise ValueError(f"Unknown RegularityNorm variant {self.variant!r}; expected one of {VARIANTS}")
        if self.momentum is not None and not 0.0 < self.momentum < 1.0:
            raise ValueError(f"momentum must be None or in (0, 1), got {self.momentum!r}")
        if self.eval_gain not in EVAL_GAINS:
            raise ValueError(f"Unknown eval_gain {self.eval_gain!r}; expected one of {EVAL_GAINS}")
        if self.max_gain is not None and not self.max_gain > 0.0:
            raise ValueError(f"max_gain must be None or > 0, got {self.max_gain!r}")
        if not self.eps > 0.0:
            raise ValueError(f"eps must be > 0, got {self.eps!r}")

    @property
    def log_decay(self) -> float:
        """log of the history's decay per update: 0 without momentum."""
        return 0.0 if self.momentum is None else math.log1p(-self.momentum)

    def group_dims(self, ndim: int) -> tuple[int, ...] | None:
        """Axes one code length reduces over: None for all (rn), all but the unit axis 1 (rln)."""
        return None if self.variant == "rn" else (0, *range(2, ndim))


@dataclass(frozen=True)
class Merged:
    """Gaussian after merging the current batch, plus the derivatives the hand-written backward needs.

    ``var`` depends on each element z_i through ``var_slope * (z_i - batch_mean) + var_shift``; ``mean`` through
    ``mean_slope`` (the same for every element).
    """

    mean: Scalar
    var: Scalar
    count: Scalar
    mean_slope: Scalar
    var_slope: Scalar
    var_shift: Scalar


# ---------------------------------------------------------------------------------------------- float | Tensor
def where(cond: bool | Tensor, a: Scalar, b: Scalar) -> Scalar:
    """``a if cond else b`` for host scalars, ``torch.where`` for tensors (no host synchronisation)."""
    if isinstance(cond, Tensor):
        return torch.where(cond, a, b)
    return a if cond else b


def maximum(a: Scalar, b: float) -> Scalar:
    """``max(a, b)`` for a host scalar or a tensor."""
    return a.clamp(min=b) if isinstance(a, Tensor) else max(a, b)


def host_value(value: Tensor, host: bool) -> Scalar:
    """A reduction's result as a Python float on the host path (one read), or left on its device."""
    return float(value) if host else value


def log(value: Scalar) -> Scalar:
    """``log`` of a host scalar or a tensor."""
    return value.log() if isinstance(value, Tensor) else math.log(value)


def to_dtype(value: Scalar, dtype: torch.dtype) -> Scalar:
    """A tensor cast to ``dtype`` (device path); a Python float passes through (host path)."""
    return value.to(dtype) if isinstance(value, Tensor) else value


def _sqrt(value: Scalar) -> Scalar:
    return value.sqrt() if isinstance(value, Tensor) else math.sqrt(value)


# ---------------------------------------------------------------------------------------------- the running Gaussian
def merged_mean(count: Scalar, mean: Scalar, n: int, batch_mean: Scalar) -> Scalar:
    """Mean of the running Gaussian after merging a batch (the batch's own mean for the first one)."""
    return where(count <= 0.0, batch_mean, (count * mean + n * batch_mean) / (count + n))


def merge_batch(
    count: Scalar, mean: Scalar, var: Scalar, n: int, batch_mean: Scalar, batch_var: Scalar, exact_var: bool
) -> Merged:
    """Merge a batch of ``n`` elements into the running Gaussian, as the reference does *before* scoring it.

    The reference pools the within-batch variances (t-test style) and omits the between-batch mean-shift term;
    ``exact_var`` adds it (Chan et al.'s parallel merge). The first batch (``count == 0``) initialises the Gaussian
    with its own mean and unbiased variance (both formulas reduce to that). A batch of one element has no variance:
    the running variance is kept and only the mean moves.
    """
    has_var = n >= 2
    total = count + n
    new_mean = merged_mean(count, mean, n, batch_mean)
    weight_prev = maximum(count - 1.0, 0.0)
    weight_batch = float(n - 1) if has_var else 0.0
    sum_sq = weight_prev * var + (weight_batch * batch_var if has_var else 0.0)
    if exact_var:
        shift = count * n / total * (batch_mean - mean) ** 2
        denom = total - 1.0
        shift_grad = 2.0 * (batch_mean - mean) * count / total / where(denom > 0.0, denom, 1.0)
    else:
        shift, shift_grad = 0.0, 0.0
        denom = weight_prev + weight_batch
    usable = denom > 0.0
    safe_denom = where(usable, denom, 1.0)
    new_var = where(usable, (sum_sq + shift) / safe_denom, var)
    slope = where(usable, 2.0 / safe_denom, 0.0) if has_var else 0.0
    return Merged(new_mean, new_var, total, 1.0 / total, slope, where(usable, shift_grad, 0.0))


def centre_batch(xd: Tensor, count: Scalar, mean: Scalar, host: bool) -> tuple[Tensor, Scalar, Scalar, Scalar]:
    """(x - merged mean, batch mean, unbiased batch variance, merged mean) from two reductions.

    The batch is centred on the mean it will have *after* merging (the Gaussian it is scored under), and the
    variance recovered with the shift identity; the merged mean is close to the batch mean, so there is little
    cancellation. On the host path a non-finite input raises ``ValueError`` (the running state is untouched then).
    """
    n = xd.numel()
    flat = xd.view(-1) if xd.is_contiguous() else xd.reshape(-1)
    s1: Scalar = flat.sum(dtype=torch.float64)
    if host:
        s1 = float(flat.sum())
        if not math.isfinite(s1):
            if not bool(torch.isfinite(xd).all()):
                raise ValueError(
                    "RegularityNorm received non-finite activations (NaN or inf) in training mode; "
                    "its running statistics were left unchanged"
                )
            s1 = float(flat.double().sum())  # finite input whose float32 sum overflowed
    batch_mean = s1 / n
    new_mean = merged_mean(count, mean, n, batch_mean)
    centred = xd - to_dtype(new_mean, xd.dtype)
    if n < 2:
        return centred, batch_mean, math.nan, new_mean
    flat_c = centred.view(-1)
    if host:
        s2: Scalar = float(torch.dot(flat_c, flat_c))
        if not math.isfinite(s2):  # squares overflowed float32
            flat_c = flat_c.double()
            s2 = float(torch.dot(flat_c, flat_c))
    else:
        s2 = flat_c.double().square().sum()
    batch_var = maximum((s2 - n * (batch_mean - new_mean) ** 2) / (n - 1), 0.0)
    return centred, batch_mean, batch_var, new_mean


# ---------------------------------------------------------------------------------------------- scores and gains
def density(centred: Tensor, var: float, dims: tuple[int, ...] | None) -> tuple[Tensor, Scalar, Scalar]:
    """Host path: unnormalised densities p_i = exp(-d_i^2 / 2var), their group sums, and S = log sum N(x_i).

    ``log(sum(exp(.)))`` needs no max-shift because every exponent is <= 0; if a group's densities (nearly)
    underflow (all its elements far from the mean), it falls back to an exact float64 logsumexp with normalised
    weights. A non-finite density sum (non-finite input, in eval) raises ``ValueError``.
    """
    const = -math.log(math.sqrt(var)) - HALF_LOG_2PI
    p = centred.square().mul_(-0.5 / var).exp_()
    if dims is None:
        total: Scalar = float(p.sum())
        if MIN_DENSITY_SUM < total < math.inf:
            return p, total, math.log(total) + const
        if math.isnan(total):
            _raise_non_finite(centred)
    else:
        total = p.sum(dims, keepdim=True)
        if bool((total > MIN_DENSITY_SUM).all()):
            return p, total, total.reshape(-1).double().log() + const
        if not bool(torch.isfinite(total).all()):
            _raise_non_finite(centred)
    exponent = centred.double().square().mul_(-0.5 / var)
    if dims is None:
        lse = torch.logsumexp(exponent.reshape(-1), 0)
        return (exponent - lse).exp_().to(centred.dtype), 1.0, lse.item() + const
    lse = torch.logsumexp(exponent, dims, keepdim=True)
    ones = torch.ones_like(lse, dtype=centred.dtype)
    return (exponent - lse).exp_().to(centred.dtype), ones, lse.reshape(-1) + const


def _raise_non_finite(centred: Tensor) -> None:
    if not bool(torch.isfinite(centred).all()):
        raise ValueError("RegularityNorm received non-finite activations (NaN or inf); no gain can be scored for them")


def group_density(centred: Tensor, var: Scalar, dims: tuple[int, ...] | None) -> tuple[Tensor, Scalar, Scalar]:
    """:func:`density` for a host float variance, :func:`shifted_density` for a device tensor (the paths' types)."""
    if isinstance(var, Tensor):
        return shifted_density(centred, var, dims)
    return density(centred, var, dims)


def shifted_density(centred: Tensor, var: Tensor, dims: tuple[int, ...] | None) -> tuple[Tensor, Tensor, Tensor]:
    """Device path: the same triple with a max-shifted exponent, so no group can underflow and nothing branches.

    The densities are scaled by ``exp(-max_exponent)`` per group; every use divides them by their group sum, so
    the scale cancels. Non-finite elements get density 0 (their outputs stay non-finite; the rest of the batch
    is scored without them).
    """
    exponent = centred.double().square().mul_(-0.5 / var)
    if dims is None:
        top = exponent.max()  # the closest element's exponent (<= 0)
    else:
        top = exponent.amax(dims, keepdim=True)
    top = torch.nan_to_num(top, nan=0.0, neginf=0.0)
    p = torch.nan_to_num((exponent - top).exp_(), nan=0.0)
    total = p.sum() if dims is None else p.sum(dims, keepdim=True)
    score = total.log() + top.reshape(total.shape) - 0.5 * var.log() - HALF_LOG_2PI
    return p.to(centred.dtype), total.to(centred.dtype), score.reshape(-1) if dims is not None else score


def code_length(comp: Scalar, score: Scalar) -> tuple[Scalar, Scalar]:
    """(L, dL/d(COMP_prev - S)) with L = softplus(COMP_prev - S) = logaddexp(COMP_prev, S) - S."""
    arg = comp - score
    if isinstance(arg, Tensor):
        return torch.logaddexp(arg, torch.zeros_like(arg)), torch.sigmoid(arg)
    if arg > 0:
        gain = arg + math.log1p(math.exp(-arg))
        return gain, 1.0 / (1.0 + math.exp(-arg))
    e = math.exp(arg)
    return math.log1p(e), e / (1.0 + e)


def cap(gain: Scalar, sens: Scalar, max_gain: float | None) -> tuple[Scalar, Scalar]:
    """Apply ``max_gain``: a capped gain is a constant, so its slope is zero."""
    if max_gain is None:
        return gain, sens
    if isinstance(gain, Tensor):
        over = gain > max_gain
        capped_sens = torch.where(over, torch.zeros_like(gain), sens)
        return gain.clamp(max=max_gain), capped_sens
    return (max_gain, 0.0) if gain > max_gain else (gain, sens)


def code_length_slope(
    x: Tensor, sens: Scalar, centred: Tensor, p: Tensor, total: Scalar, var: Scalar, merged: Merged, batch_mean: Scalar,
    clamped: bool | Tensor, rn: bool, host: bool,
) -> Tensor:  # fmt: skip
    """``sum_i (dL/dx_i) x_i`` with the derivative detached: a zero-valued term whose gradient is dL/dx.

    ``L = softplus(COMP_prev - S)`` depends on x through S = log sum_i N(x_i | mu, sigma), where mu and sigma are
    the Gaussian *after* merging the batch; the previous state is a constant (the reference's DQN semantics).
    With w_i = p_i / sum(p) and d_i = x_i - mu,

        dS/dx_i = -w_i d_i / var + (sum_j w_j d_j / var) dmu/dx_i + ((sum_j w_j d_j^2 / var - 1) / sigma) dsigma/dx_i.

    Adding ``slope - slope.detach()`` to the gain gives autograd the exact first derivative for about ten
    kernels, where differentiating the whole computation records about thirty. ``clamped``: the variance sits at
    its ``eps**2`` floor, so it does not depend on x.
    """
    sigma = _sqrt(var)
    var_slope = where(clamped, 0.0, merged.var_slope)
    # dvar/dx_i = var_slope * (x_i - batch_mean) + var_shift = var_slope * centred_i + var_const
    var_const = where(clamped, 0.0, var_slope * (merged.mean - batch_mean) + merged.var_shift)
    weighted = p * centred  # w_i d_i * total
    flat_x = x.reshape(-1)
    if rn:  # one code length: centred and p are flat
        a_mean = host_value(weighted.sum(), host) / (total * var)
        a_sigma = (host_value(torch.dot(weighted, centred), host) / (total * var) - 1.0) / sigma
        k_sigma = a_sigma / (2.0 * sigma)
        if host:
            direction = weighted.mul_(-1.0 / (total * var))
            direction.add_(centred, alpha=float(k_sigma * var_slope)).add_(a_mean * merged.mean_slope + k_sigma * var_const)
        else:
            direction = weighted * (-1.0 / (total * var)) + centred * (k_sigma * var_slope)
            direction = direction + (a_mean * merged.mean_slope + k_sigma * var_const)
        return torch.dot(direction, flat_x.to(direction.dtype)) * (-sens)
    dims = (0, *range(2, x.dim()))  # rln: one code length per unit
    a_mean = weighted.sum(dims, keepdim=True) / (total * var)
    a_sigma = ((weighted * centred).sum(dims, keepdim=True) / (total * var) - 1.0) / sigma
    k_sigma = a_sigma / (2.0 * sigma)
    own = (weighted * x).sum(dims, keepdim=True) / (total * -var)
    shared = (a_mean * merged.mean_slope + k_sigma * var_const) * x.sum() + (k_sigma * var_slope) * torch.dot(
        centred.reshape(-1), flat_x
    )
    return (own + shared) * (-sens)


def next_refsize(updates: Scalar, refsize: Scalar, group_size: int, momentum: float | None) -> Scalar:
    """Running mean of the elements per code length in training (the eval size correction's reference)."""
    step = (group_size - refsize) / (updates + 1.0) if momentum is None else momentum * (group_size - refsize)
    return where(updates == 0, float(group_size), refsize + step)
