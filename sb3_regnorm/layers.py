"""Regularity Normalization (RN) layers.

RN (B. Lin, *Entropy* 24(1):59, 2022) treats a layer as a communication channel. It keeps one running Gaussian
N(mu, sigma) over every activation the layer has seen in training and the log parametric complexity

    COMP_t = logaddexp(COMP_{t-1}, S_t),   S_t = logsumexp_i log N(x_i | mu_t, sigma_t),   COMP_0 = 0,

and rescales the layer by its incremental MDL code length ``L_t = COMP_t - S_t = softplus(COMP_{t-1} - S_t)``:
``y = L_t * x``. Batches that are irregular under the history (small ``S_t``) get a larger gain. ``"rn"`` computes
one code length per layer (``S`` reduces over all elements); ``"rln"`` one per unit (``S`` reduces over the batch
and any spatial axes; the Gaussian stays scalar, as in the reference code).

This module depends on torch only. Scalar state arithmetic runs on Python floats (float64) on the CPU, so a
forward costs a handful of tensor kernels; the gradient of the code length is handed to autograd as one
linearised term (``_code_length_slope``) for the same reason.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Final

import torch
from torch import Tensor, nn

__all__ = ["EVAL_GAINS", "VARIANTS", "RegularityNorm", "find_regularity_norms"]

VARIANTS: Final = ("rn", "rln")
EVAL_GAINS: Final = ("batch", "frozen")
_HALF_LOG_2PI: Final = 0.5 * math.log(2.0 * math.pi)
_MIN_DENSITY_SUM: Final = 1e-30  # below this a float32 sum of densities is near-subnormal: use the exact path
_OVERFLOW_CHECK_GAIN: Final = 1e4  # below this, float32 outputs of float32 inputs cannot overflow in practice


def _softplus(a: float) -> float:
    """log(1 + e^a) without overflow."""
    return a + math.log1p(math.exp(-a)) if a > 0 else math.log1p(math.exp(a))


def _sigmoid(a: float) -> float:
    if a >= 0:
        return 1.0 / (1.0 + math.exp(-a))
    e = math.exp(a)
    return e / (1.0 + e)


@dataclass(frozen=True)
class _Merged:
    """Gaussian after merging the current batch, plus the derivatives the hand-written backward needs.

    ``var`` depends on each element z_i through ``var_slope * (z_i - batch_mean) + var_shift``; ``mean`` through
    ``mean_slope`` (the same for every element).
    """

    mean: float
    var: float
    count: float
    mean_slope: float
    var_slope: float
    var_shift: float


def _merged_mean(count: float, mean: float, n: int, batch_mean: float) -> float:
    """Mean of the running Gaussian after merging a batch (the batch's own mean for the first one)."""
    return batch_mean if count <= 0.0 else (count * mean + n * batch_mean) / (count + n)


def _merge_batch(
    count: float, mean: float, var: float, n: int, batch_mean: float, batch_var: float, exact_var: bool
) -> _Merged:
    """Merge a batch of ``n`` elements into the running Gaussian, as the reference does *before* scoring it.

    The reference pools the within-batch variances (t-test style) and omits the between-batch mean-shift term;
    ``exact_var`` adds it (Chan et al.'s parallel merge). A batch of one element has no variance: the running
    variance is kept and only the mean moves.
    """
    has_var = n >= 2
    if count <= 0.0:  # the first batch initialises the Gaussian with its own mean and unbiased variance
        if not has_var:
            return _Merged(batch_mean, var, float(n), 1.0 / n, 0.0, 0.0)
        return _Merged(batch_mean, batch_var, float(n), 1.0 / n, 2.0 / (n - 1), 0.0)
    total = count + n
    new_mean = _merged_mean(count, mean, n, batch_mean)
    weight_prev = max(count - 1.0, 0.0)
    weight_batch = float(n - 1) if has_var else 0.0
    sum_sq = weight_prev * var + weight_batch * (batch_var if has_var else 0.0)
    if exact_var:
        shift = count * n / total * (batch_mean - mean) ** 2
        denom = total - 1.0
        slope = 2.0 / denom if has_var else 0.0
        shift_grad = 2.0 * (batch_mean - mean) * count / total / denom
        return _Merged(new_mean, (sum_sq + shift) / denom, total, 1.0 / total, slope, shift_grad)
    denom = weight_prev + weight_batch
    if denom <= 0.0:
        return _Merged(new_mean, var, total, 1.0 / total, 0.0, 0.0)
    return _Merged(new_mean, sum_sq / denom, total, 1.0 / total, 2.0 / denom if has_var else 0.0, 0.0)


class RegularityNorm(nn.Module):
    r"""Regularity Normalization: rescale a layer by its incremental MDL code length.

    Args:
        num_features: size of dimension 1 of the input (features of ``(B, F)``, channels of ``(B, C, H, W)``).
        variant: ``"rn"`` (one code length per layer) or ``"rln"`` (one per unit along dimension 1).
        rescale: ``False`` makes a pure probe (the paper's "unsupervised attention mechanism"): the statistics and
            code length are tracked exactly as with rescaling, but the output is the input.
        momentum: ``None`` (default, faithful) accumulates statistics and COMP over all of training, so on
            stationary inputs the gain grows like ``log(t)`` without bound. A value in (0, 1) decays the history by
            ``1 - momentum`` per update (count, mean and COMP), which bounds the gain: on stationary inputs of a
            fixed batch size ``L -> -log(momentum)`` (4.6 for 0.01), while irregular batches still get more.
        exact_var: merge variances with Chan's exact formula (adds the between-batch mean shift) instead of the
            reference's pooled within-batch formula.
        detach_gain: treat the gain as a data-dependent constant in backward (no gradient through the code length).
        eval_gain: ``"batch"`` (default) scores each eval batch under the frozen Gaussian (irregular inputs get larger
            gains while acting too); ``"frozen"`` applies the gain the last training batch's score implies,
            ``softplus(COMP - S_last)``, without looking at the eval batch: one multiplication, for fast rollouts.
        eval_size_correction: in eval, shift ``S`` by ``log(k_ref / k)`` (``k`` elements per code length, ``k_ref`` the
            running mean of training's) so that the eval gain does not depend on the batch size (paper E3).
        max_gain: cap on the applied gain (off by default). The code length is unbounded: when a layer's running
            variance collapses (e.g. many stacked RN layers whose first gains are ~0) an ordinary batch can get a gain
            of 1e30 or more. Capped gains pass no gradient through the code length; COMP and the logged code length
            are unaffected.
        eps: floor on sigma, so constant batches and single elements stay finite.

    An output that overflows its dtype raises ``FloatingPointError`` (with the gain and variance involved) instead of
    returning inf, and in training leaves the running state unchanged.

    Train mode (faithful by default): merge the batch into the running Gaussian (first batch: its own mean and
    unbiased variance), score it, ``L = softplus(COMP_prev - S)``, ``y = L * x``, then write the detached state. The
    gradient flows through the current batch's terms only.

    Eval mode never writes a buffer. It uses the frozen state and the gain a training step would give the same
    batch, ``softplus(COMP - S_corrected)``, which is >= 0 and equals the training formula for a batch of the
    training size. Before the first training update there are no statistics: eval returns the input unchanged
    (gain 1) and :attr:`last_code_length` is NaN.

    A per-sample prior ``s`` in (0, 1] (the paper's saliency / top-down attention, ``L_i = L - log s_i``) is passed
    with ``forward(x, prior=s)`` or :meth:`set_prior` (consumed by the next forward).
    """

    running_mean: Tensor
    running_var: Tensor
    running_count: Tensor
    running_comp: Tensor
    running_updates: Tensor
    running_refsize: Tensor
    running_score: Tensor

    def __init__(
        self,
        num_features: int,
        variant: str = "rn",
        *,
        rescale: bool = True,
        momentum: float | None = None,
        exact_var: bool = False,
        detach_gain: bool = False,
        eval_gain: str = "batch",
        eval_size_correction: bool = True,
        max_gain: float | None = None,
        eps: float = 1e-5,
        device: torch.device | str | None = None,
    ) -> None:
        super().__init__()
        if variant not in VARIANTS:
            raise ValueError(f"Unknown RegularityNorm variant {variant!r}; expected one of {VARIANTS}")
        if isinstance(num_features, bool) or not isinstance(num_features, int) or num_features < 1:
            raise ValueError(f"num_features must be a positive int, got {num_features!r}")
        if momentum is not None and not 0.0 < momentum < 1.0:
            raise ValueError(f"momentum must be None or in (0, 1), got {momentum!r}")
        if eval_gain not in EVAL_GAINS:
            raise ValueError(f"Unknown eval_gain {eval_gain!r}; expected one of {EVAL_GAINS}")
        if max_gain is not None and not max_gain > 0.0:
            raise ValueError(f"max_gain must be None or > 0, got {max_gain!r}")
        if not eps > 0.0:
            raise ValueError(f"eps must be > 0, got {eps!r}")
        self.num_features = num_features
        self.variant = variant
        self.rescale = rescale
        self.momentum = momentum
        self.exact_var = exact_var
        self.detach_gain = detach_gain
        self.eval_gain = eval_gain
        self.eval_size_correction = eval_size_correction
        self.max_gain = max_gain
        self.eps = eps
        comp_shape = (num_features,) if variant == "rln" else ()
        f64 = {"dtype": torch.float64, "device": device}
        # Float64, named running_*: SB3's DQN hard-copies every state_dict entry containing "running_" into the target.
        self.register_buffer("running_mean", torch.zeros((), **f64))
        self.register_buffer("running_var", torch.ones((), **f64))
        self.register_buffer("running_count", torch.zeros((), **f64))  # elements seen (decayed with momentum)
        self.register_buffer("running_comp", torch.zeros(comp_shape, **f64))  # COMP after the last update
        self.register_buffer("running_updates", torch.zeros((), **f64))  # training updates so far
        self.register_buffer("running_refsize", torch.zeros((), **f64))  # mean elements per code length in training
        self.register_buffer("running_score", torch.zeros(comp_shape, **f64))  # S of the last training batch
        # Per-forward values live on a plain object: nn.Module.__setattr__ costs microseconds per call.
        self._transient = _Transient()

    # ------------------------------------------------------------------ public helpers
    def reset_running_stats(self) -> None:
        """Forget all statistics: the next training batch initialises the Gaussian again."""
        self.running_mean.zero_()
        self.running_var.fill_(1.0)
        self.running_count.zero_()
        self.running_comp.zero_()
        self.running_updates.zero_()
        self.running_refsize.zero_()
        self.running_score.zero_()
        self._transient.last_code_length = math.nan

    @property
    def initialized(self) -> bool:
        """Whether at least one training update has been made (eval is the identity before that)."""
        return bool(self.running_updates.item() > 0)

    @property
    def last_code_length(self) -> Tensor:
        """Code length of the last forward (train or eval), detached, float64: shape () for rn, (F,) for rln.

        It excludes the prior's ``-log s`` term. NaN if the layer has not seen a forward with statistics yet.
        """
        value = self._transient.last_code_length
        if isinstance(value, Tensor):
            return value.detach()
        return torch.tensor(value, dtype=torch.float64)

    def set_prior(self, prior: Tensor | None) -> None:
        """Set a per-sample prior ``s`` in (0, 1] used (and cleared) by the next forward; ``None`` clears it."""
        self._transient.prior = prior

    def extra_repr(self) -> str:
        parts = [f"{self.num_features}", f"variant={self.variant!r}"]
        if not self.rescale:
            parts.append("rescale=False")
        if self.momentum is not None:
            parts.append(f"momentum={self.momentum}")
        if self.exact_var:
            parts.append("exact_var=True")
        if self.detach_gain:
            parts.append("detach_gain=True")
        if self.eval_gain != "batch":
            parts.append(f"eval_gain={self.eval_gain!r}")
        if not self.eval_size_correction:
            parts.append("eval_size_correction=False")
        if self.max_gain is not None:
            parts.append(f"max_gain={self.max_gain}")
        parts.append(f"eps={self.eps}")
        return ", ".join(parts)

    # ------------------------------------------------------------------ forward
    def forward(self, x: Tensor, prior: Tensor | None = None) -> Tensor:
        self._check_input(x)
        if prior is None:
            prior = self._transient.prior
        self._transient.prior = None
        if prior is not None:
            prior = self._check_prior(prior, x)
        y = self._train_forward(x) if self.training else self._eval_forward(x)
        if prior is not None and self.rescale:
            shape = (x.shape[0],) + (1,) * (x.dim() - 1)
            y = y - x * torch.log(prior).reshape(shape).to(x.dtype)
        return y

    def _check_input(self, x: Tensor) -> None:
        if x.dim() < 2 or x.shape[1] != self.num_features:
            raise ValueError(
                f"RegularityNorm({self.num_features}) expects input of shape (batch, {self.num_features}, ...), "
                f"got {tuple(x.shape)}"
            )
        if x.shape[0] == 0:
            raise ValueError("RegularityNorm received an empty batch")
        if not x.is_floating_point():
            raise ValueError(f"RegularityNorm expects a floating point input, got {x.dtype}")

    def _check_prior(self, prior: Tensor, x: Tensor) -> Tensor:
        prior = torch.as_tensor(prior, device=x.device)
        if prior.numel() != x.shape[0]:
            raise ValueError(f"prior must hold one value per sample ({x.shape[0]}), got shape {tuple(prior.shape)}")
        if not bool(((prior > 0) & (prior <= 1)).all()):
            raise ValueError("prior values must lie in (0, 1]")
        return prior.reshape(-1)

    def _group_dims(self, x: Tensor) -> tuple[int, ...] | None:
        """Axes one code length reduces over: None for all (rn), all but the unit axis 1 (rln)."""
        return None if self.variant == "rn" else (0, *range(2, x.dim()))

    def _log_decay(self) -> float:
        return 0.0 if self.momentum is None else math.log1p(-self.momentum)

    def _comp(self) -> float | Tensor:
        """COMP_prev as the next update sees it (decayed when ``momentum`` is set)."""
        comp = self.running_comp.item() if self.variant == "rn" else self.running_comp
        return comp + self._log_decay()

    @staticmethod
    def _code_length(comp: float | Tensor, score: float | Tensor) -> tuple[float | Tensor, float | Tensor]:
        """(L, dL/d(COMP_prev - S)) with L = softplus(COMP_prev - S) = logaddexp(COMP_prev, S) - S."""
        if isinstance(score, Tensor) or isinstance(comp, Tensor):
            arg = comp - score
            return torch.logaddexp(arg, torch.zeros_like(arg)), torch.sigmoid(arg)
        arg = comp - score
        return _softplus(arg), _sigmoid(arg)

    def _density(
        self, centred: Tensor, var: float, dims: tuple[int, ...] | None
    ) -> tuple[Tensor, float | Tensor, float | Tensor]:
        """Unnormalised Gaussian densities p_i = exp(-d_i^2 / 2var), their group sums, and S = log sum N(x_i).

        ``log(sum(exp(.)))`` needs no max-shift because every exponent is <= 0; if a group's densities (nearly)
        underflow (all its elements far from the mean), it falls back to an exact float64 logsumexp with normalised
        weights.
        """
        sigma = math.sqrt(var)
        const = -math.log(sigma) - _HALF_LOG_2PI
        density = centred.square().mul_(-0.5 / var).exp_()
        if dims is None:
            total: float | Tensor = float(density.sum())
            if _MIN_DENSITY_SUM < total < math.inf:
                return density, total, math.log(total) + const
        else:
            total = density.sum(dims, keepdim=True)
            if bool((total > _MIN_DENSITY_SUM).all()):
                return density, total, total.reshape(-1).double().log() + const
        exponent = centred.double().square().mul_(-0.5 / var)
        if dims is None:
            lse = torch.logsumexp(exponent.reshape(-1), 0)
            return (exponent - lse).exp_().to(centred.dtype), 1.0, lse.item() + const
        lse = torch.logsumexp(exponent, dims, keepdim=True)
        ones = torch.ones_like(lse, dtype=centred.dtype)
        return (exponent - lse).exp_().to(centred.dtype), ones, lse.reshape(-1) + const

    def _centre_batch(self, xd: Tensor, count: float, mean: float) -> tuple[Tensor, float, float, float]:
        """(x - merged mean, batch mean, unbiased batch variance, merged mean) from two reductions.

        The batch is centred on the mean it will have *after* merging (the Gaussian it is scored under), and the
        variance recovered with the shift identity; the merged mean is close to the batch mean, so there is little
        cancellation. Raises if the input is not finite; the running state is untouched at that point.
        """
        n = xd.numel()
        flat = xd.view(-1) if xd.is_contiguous() else xd.reshape(-1)
        s1 = float(flat.sum())
        if not math.isfinite(s1):
            if not bool(torch.isfinite(xd).all()):
                raise ValueError(
                    "RegularityNorm received non-finite activations (NaN or inf) in training mode; "
                    "its running statistics were left unchanged"
                )
            s1 = float(flat.double().sum())  # finite input whose float32 sum overflowed
        batch_mean = s1 / n
        merged_mean = _merged_mean(count, mean, n, batch_mean)
        centred = xd - merged_mean
        if n < 2:
            return centred, batch_mean, math.nan, merged_mean
        flat_c = centred.view(-1)
        s2 = float(torch.dot(flat_c, flat_c))
        if not math.isfinite(s2):  # squares overflowed float32
            flat_c = flat_c.double()
            s2 = float(torch.dot(flat_c, flat_c))
        batch_var = max((s2 - n * (batch_mean - merged_mean) ** 2) / (n - 1), 0.0)
        return centred, batch_mean, batch_var, merged_mean

    def _train_forward(self, x: Tensor) -> Tensor:
        dims = self._group_dims(x)
        n = x.numel()
        eps_sq = self.eps * self.eps
        # rn reduces over everything: work on a flat view so the reductions below need no reshapes.
        xd = x.detach() if dims is not None else x.detach().reshape(-1)
        count = self.running_count.item() * math.exp(self._log_decay())
        mean = self.running_mean.item()
        centred, batch_mean, batch_var, _ = self._centre_batch(xd, count, mean)
        merged = _merge_batch(count, mean, self.running_var.item(), n, batch_mean, batch_var, self.exact_var)
        var = max(merged.var, eps_sq)
        density, total, score = self._density(centred, var, dims)
        gain, sens = self._code_length(self._comp(), score)
        new_comp = score + gain  # = logaddexp(COMP_prev, S)
        if not (math.isfinite(merged.mean) and math.isfinite(merged.var) and _all_finite(new_comp)):
            raise FloatingPointError(
                "RegularityNorm statistics overflowed (activations too large for the running Gaussian); "
                "its running statistics were left unchanged"
            )
        y = self._rescale_train(x, gain, sens, centred, density, total, merged, batch_mean, var)
        self._write_state(merged, score, new_comp, n if dims is None else n // self.num_features)
        self._transient.last_code_length = gain
        return y

    def _rescale_train(
        self,
        x: Tensor,
        gain: float | Tensor,
        sens: float | Tensor,
        centred: Tensor,
        density: Tensor,
        total: float | Tensor,
        merged: _Merged,
        batch_mean: float,
        var: float,
    ) -> Tensor:
        """``gain * x`` with the code length's gradient through the current batch (unless detached or capped)."""
        if not self.rescale:
            return x
        gain, sens = self._cap(gain, sens)
        gain_b = self._broadcast(gain, x)
        if self.detach_gain or not (x.requires_grad and torch.is_grad_enabled()):
            return self._check_overflow(x * gain_b, gain, var)
        clamped = merged.var < self.eps * self.eps
        var_slope = 0.0 if clamped else merged.var_slope
        # dvar/dx_i = var_slope * (x_i - batch_mean) + var_shift = var_slope * centred_i + var_const
        var_const = 0.0 if clamped else var_slope * (merged.mean - batch_mean) + merged.var_shift
        sens_b = self._broadcast(sens, x)
        slope = self._code_length_slope(x, sens_b, centred, density, total, var, merged.mean_slope, var_slope, var_const)
        return self._check_overflow(x * (gain_b + (slope - slope.detach())), gain, var)

    def _cap(self, gain: float | Tensor, sens: float | Tensor) -> tuple[float | Tensor, float | Tensor]:
        """Apply ``max_gain``: a capped gain is a constant, so its slope is zero."""
        if self.max_gain is None:
            return gain, sens
        if isinstance(gain, Tensor):
            over = gain > self.max_gain
            capped_sens = torch.where(over, torch.zeros_like(sens), sens) if isinstance(sens, Tensor) else sens
            return gain.clamp(max=self.max_gain), capped_sens
        return (self.max_gain, 0.0) if gain > self.max_gain else (gain, sens)

    def _check_overflow(self, y: Tensor, gain: float | Tensor, var: float) -> Tensor:
        """Raise instead of returning inf; only large gains pay for the check."""
        largest = float(gain.max()) if isinstance(gain, Tensor) else gain
        if largest > _OVERFLOW_CHECK_GAIN and not bool(torch.isfinite(y).all()):
            raise FloatingPointError(
                f"RegularityNorm output overflowed {y.dtype}: gain {largest:.3g} with running variance {var:.3g}. The "
                "layer's statistics have collapsed (common when many RN layers are stacked: their first gains are ~0); "
                "set max_gain or momentum, or use fewer RN layers"
            )
        return y

    def _code_length_slope(
        self,
        x: Tensor,
        sens: float | Tensor,
        centred: Tensor,
        density: Tensor,
        total: float | Tensor,
        var: float,
        mean_slope: float,
        var_slope: float,
        var_const: float,
    ) -> Tensor:
        """``sum_i (dL/dx_i) x_i`` with the derivative detached: a zero-valued term whose gradient is dL/dx.

        ``L = softplus(COMP_prev - S)`` depends on x through S = log sum_i N(x_i | mu, sigma), where mu and sigma are
        the Gaussian *after* merging the batch; the previous state is a constant (the reference's DQN semantics).
        With w_i = p_i / sum(p) and d_i = x_i - mu,

            dS/dx_i = -w_i d_i / var + (sum_j w_j d_j / var) dmu/dx_i + ((sum_j w_j d_j^2 / var - 1) / sigma) dsigma/dx_i.

        Adding ``slope - slope.detach()`` to the gain gives autograd the exact first derivative for about ten
        kernels, where differentiating the whole computation records about thirty.
        """
        sigma = math.sqrt(var)
        weighted = density * centred  # w_i d_i * total
        flat_x = x.reshape(-1)
        if isinstance(total, float):  # rn: one code length; centred and density are flat, group sums Python floats
            a_mean = float(weighted.sum()) / (total * var)
            a_sigma = (float(torch.dot(weighted, centred)) / (total * var) - 1.0) / sigma
            k_sigma = a_sigma / (2.0 * sigma)
            direction = weighted.mul_(-1.0 / (total * var))
            direction.add_(centred, alpha=k_sigma * var_slope).add_(a_mean * mean_slope + k_sigma * var_const)
            return torch.dot(direction, flat_x) * (-sens)
        dims = (0, *range(2, x.dim()))  # rln: one code length per unit
        a_mean = weighted.sum(dims, keepdim=True) / (total * var)
        a_sigma = ((weighted * centred).sum(dims, keepdim=True) / (total * var) - 1.0) / sigma
        k_sigma = a_sigma / (2.0 * sigma)
        own = (weighted * x).sum(dims, keepdim=True) / (total * -var)
        shared = (a_mean * mean_slope + k_sigma * var_const) * x.sum() + (k_sigma * var_slope) * torch.dot(
            centred.reshape(-1), flat_x
        )
        return (own + shared) * (-sens)

    def _broadcast(self, value: float | Tensor, x: Tensor) -> float | Tensor:
        """A per-unit tensor reshaped to broadcast along dim 1, in x's dtype; Python floats pass through."""
        if isinstance(value, Tensor):
            return value.to(x.dtype).reshape((1, self.num_features) + (1,) * (x.dim() - 2))
        return value

    def _write_state(self, merged: _Merged, score: float | Tensor, new_comp: float | Tensor, group_size: int) -> None:
        updates = self.running_updates.item()
        refsize = self.running_refsize.item()
        if updates == 0:
            refsize = float(group_size)
        elif self.momentum is None:
            refsize += (group_size - refsize) / (updates + 1)
        else:
            refsize += self.momentum * (group_size - refsize)
        self.running_mean.fill_(merged.mean)
        self.running_var.fill_(merged.var)
        self.running_count.fill_(merged.count)
        if isinstance(new_comp, Tensor):
            self.running_comp.copy_(new_comp)
            self.running_score.copy_(score)
        else:
            self.running_comp.fill_(new_comp)
            self.running_score.fill_(score)
        self.running_updates.add_(1.0)
        self.running_refsize.fill_(refsize)

    def _eval_forward(self, x: Tensor) -> Tensor:
        if self.running_updates.item() == 0:
            self._transient.last_code_length = math.nan
            return x
        var = max(self.running_var.item(), self.eps * self.eps)
        if self.eval_gain == "frozen":
            score: float | Tensor = self.running_score.item() if self.variant == "rn" else self.running_score
        else:
            dims = self._group_dims(x)
            _, _, score = self._density(x.detach() - self.running_mean.item(), var, dims)
            if self.eval_size_correction:
                group_size = x.numel() if dims is None else x.numel() // self.num_features
                score = score + math.log(self.running_refsize.item() / group_size)
        gain, _ = self._code_length(self._comp(), score)
        self._transient.last_code_length = gain
        if not self.rescale:
            return x
        gain, _ = self._cap(gain, 0.0)
        return self._check_overflow(x * self._broadcast(gain, x), gain, var)


class _Transient:
    """The last code length and a pending prior: read by loggers, never part of the state_dict."""

    __slots__ = ("last_code_length", "prior")

    def __init__(self) -> None:
        self.last_code_length: float | Tensor = math.nan
        self.prior: Tensor | None = None


def _all_finite(value: float | Tensor) -> bool:
    return bool(torch.isfinite(value).all()) if isinstance(value, Tensor) else math.isfinite(value)


def find_regularity_norms(model: nn.Module) -> Iterator[tuple[str, RegularityNorm]]:
    """Yield ``(name, module)`` for every :class:`RegularityNorm` in ``model``, with ``named_modules`` names."""
    for name, module in model.named_modules():
        if isinstance(module, RegularityNorm):
            yield name, module
