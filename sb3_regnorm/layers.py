"""Regularity Normalization (RN) layers.

RN (B. Lin, *Entropy* 24(1):59, 2022) treats a layer as a communication channel. It keeps one running Gaussian
N(mu, sigma) over every activation the layer has seen in training and the log parametric complexity

    COMP_t = logaddexp(COMP_{t-1}, S_t),   S_t = logsumexp_i log N(x_i | mu_t, sigma_t),   COMP_0 = 0,

and rescales the layer by its incremental MDL code length ``L_t = COMP_t - S_t = softplus(COMP_{t-1} - S_t)``:
``y = L_t * x``. Batches that are irregular under the history (small ``S_t``) get a larger gain. ``"rn"`` computes
one code length per layer (``S`` reduces over all elements); ``"rln"`` one per unit (``S`` reduces over the batch
and any spatial axes; the Gaussian stays scalar, as in the reference code).

This module keeps configuration, buffers, state writes and dispatch; the math is in :mod:`sb3_regnorm.functional`.
Three paths compute the same numbers: the fused C++ kernel (:mod:`sb3_regnorm._fused`, CPU float32/float64, the
default where it builds), the host path (pure PyTorch with the scalar state in Python floats: CPU, any dtype) and
the device path (pure PyTorch with the state kept in tensors: accelerators, no host synchronisation).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterator
from typing import Any, Final, cast

import torch
from torch import Tensor, nn

from sb3_regnorm import _fused
from sb3_regnorm import functional as F
from sb3_regnorm.functional import EVAL_GAINS, VARIANTS, RNConfig, Scalar

__all__ = ["EVAL_GAINS", "VARIANTS", "RegularityNorm", "find_regularity_norms"]

_OVERFLOW_CHECK_GAIN: Final = 1e4  # below this, float32/64 outputs cannot overflow for activations under ~1e34
_LOW_PRECISION: Final = (torch.float16, torch.bfloat16)  # overflow is possible at any gain: always checked
_BUFFERS: Final = ("running_mean", "running_var", "running_count", "running_comp", "running_updates", "running_refsize",
                   "running_score")  # fmt: skip


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
        fused: use the fused C++ kernel for CPU float32/float64 inputs where it builds (default). ``False``, or the
            environment variable ``SB3_REGNORM_FUSED=0``, selects the pure-PyTorch path; both give the same numbers.

    An output that overflows its dtype raises ``FloatingPointError`` (with the gain and variance involved) instead of
    returning inf, and in training leaves the running state unchanged. Non-finite activations raise ``ValueError``
    in training (state unchanged) and, for NaN, in eval; an infinite element in eval gets density 0 (the rest of the
    batch is scored as without it) and stays infinite. On an accelerator the layer never synchronises the host, so
    it raises nothing: a non-finite training batch leaves the state unchanged and non-finite elements stay
    non-finite in the output.

    Train mode (faithful by default): merge the batch into the running Gaussian (first batch: its own mean and
    unbiased variance), score it, ``L = softplus(COMP_prev - S)``, ``y = L * x``, then write the detached state. The
    gradient flows through the current batch's terms only.

    Eval mode never writes a buffer. It uses the frozen state and the gain a training step would give the same
    batch, ``softplus(COMP - S_corrected)``, which is >= 0 and equals the training formula for a batch of the
    training size. Before the first training update there are no statistics: eval returns the input unchanged
    (gain 1) and :attr:`last_code_length` is NaN.

    A per-sample prior ``s`` in (0, 1] (the paper's saliency / top-down attention, ``L_i = L - log s_i``) is passed
    with ``forward(x, prior=s)`` or :meth:`set_prior` (consumed by the next forward). The prior is a constant for
    autograd.

    The state is float64 whatever the module's dtype: ``.half()``, ``.float()`` or ``.to(dtype)`` move it between
    devices but never change its dtype.
    """

    running_mean: Tensor
    running_var: Tensor
    running_count: Tensor
    running_comp: Tensor
    running_updates: Tensor
    running_refsize: Tensor
    running_score: Tensor
    _device_path: bool = False  # tests set this to run the accelerator path on CPU tensors

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
        fused: bool = True,
        device: torch.device | str | None = None,
    ) -> None:
        super().__init__()
        if isinstance(num_features, bool) or not isinstance(num_features, int) or num_features < 1:
            raise ValueError(f"num_features must be a positive int, got {num_features!r}")
        self.config = RNConfig(variant, rescale, momentum, exact_var, detach_gain, eval_gain, eval_size_correction,
                               max_gain, eps)  # fmt: skip
        self.num_features = num_features
        self._fused_args: tuple[Tensor, Tensor] | None = None
        self.fused = fused
        comp_shape = (num_features,) if variant == "rln" else ()

        def f64(shape: tuple[int, ...], value: float = 0.0) -> Tensor:
            return torch.full(shape, value, dtype=torch.float64, device=device)

        # Float64, named running_*: SB3's DQN hard-copies every state_dict entry containing "running_" into the target.
        self.register_buffer("running_mean", f64(()))
        self.register_buffer("running_var", f64((), 1.0))
        self.register_buffer("running_count", f64(()))  # elements seen (decayed with momentum)
        self.register_buffer("running_comp", f64(comp_shape))  # COMP after the last update
        self.register_buffer("running_updates", f64(()))  # training updates so far
        self.register_buffer("running_refsize", f64(()))  # mean elements per code length in training
        self.register_buffer("running_score", f64(comp_shape))  # S of the last training batch
        # Per-forward values live on a plain object: nn.Module.__setattr__ costs microseconds per call.
        self._transient = _Transient()

    # ------------------------------------------------------------------ configuration
    variant = property(lambda self: self.config.variant, doc="'rn' or 'rln'")
    rescale = property(lambda self: self.config.rescale, lambda self, v: self._set(rescale=v))
    momentum = property(lambda self: self.config.momentum, lambda self, v: self._set(momentum=v))
    exact_var = property(lambda self: self.config.exact_var, lambda self, v: self._set(exact_var=v))
    detach_gain = property(lambda self: self.config.detach_gain, lambda self, v: self._set(detach_gain=v))
    eval_gain = property(lambda self: self.config.eval_gain, lambda self, v: self._set(eval_gain=v))
    eval_size_correction = property(
        lambda self: self.config.eval_size_correction, lambda self, v: self._set(eval_size_correction=v)
    )
    max_gain = property(lambda self: self.config.max_gain, lambda self, v: self._set(max_gain=v))
    eps = property(lambda self: self.config.eps, lambda self, v: self._set(eps=v))

    def _set(self, **change: Any) -> None:
        """Options are one validated :class:`RNConfig`; changing one re-validates it (the variant is fixed)."""
        self.config = dataclasses.replace(self.config, **change)
        self.fused = self.fused  # refresh the kernel's arguments

    @property
    def fused(self) -> bool:
        """Whether CPU float32/float64 inputs go through the fused kernel (where it builds)."""
        return self._fused_args is not None

    @fused.setter
    def fused(self, value: bool) -> None:
        if not isinstance(value, bool):
            raise ValueError(f"fused must be a bool, got {value!r}")
        cfg = self.config
        max_gain = math.inf if cfg.max_gain is None else cfg.max_gain
        momentum, rln = cfg.momentum or 0.0, cfg.variant == "rln"
        # the kernels' options, one float64 tensor each, built once: (train, eval)
        train = (rln, momentum, cfg.exact_var, max_gain, cfg.eps, cfg.rescale, cfg.detach_gain)
        evaluate = (rln, momentum, cfg.eval_gain == "frozen", cfg.eval_size_correction, max_gain, cfg.eps, cfg.rescale)
        options = (torch.tensor(train, dtype=torch.float64), torch.tensor(evaluate, dtype=torch.float64))
        self._fused_args = options if value else None

    # ------------------------------------------------------------------ public helpers
    def reset_running_stats(self) -> None:
        """Forget all statistics: the next training batch initialises the Gaussian again."""
        for name in _BUFFERS:
            self._buffer(name).fill_(1.0 if name == "running_var" else 0.0)
        self._transient.last_code_length = math.nan

    def _buffer(self, name: str) -> Tensor:
        """A state buffer by name (``_buffers`` is typed ``Tensor | None``; these are all registered as tensors)."""
        return cast(Tensor, self._buffers[name])

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
        defaults = RNConfig()
        parts = [f"{self.num_features}", f"variant={self.variant!r}"]
        for field in dataclasses.fields(RNConfig):
            value = getattr(self.config, field.name)
            if field.name not in ("variant", "eps") and value != getattr(defaults, field.name):
                parts.append(f"{field.name}={value!r}")
        if not self.fused:
            parts.append("fused=False")
        parts.append(f"eps={self.eps}")
        return ", ".join(parts)

    def _apply(self, fn: Callable[[Tensor], Tensor], recurse: bool = True) -> RegularityNorm:
        """``.half()``/``.float()``/``.to(dtype)`` must not touch the float64 state; device moves still apply."""
        state = {name: self._buffers[name] for name in _BUFFERS}
        super()._apply(fn, recurse)
        for name, old in state.items():
            new = self._buffers[name]
            if new is not None and old is not None and new.dtype != torch.float64:
                self._buffers[name] = old.to(device=new.device)
        return self

    # ------------------------------------------------------------------ forward
    def forward(self, x: Tensor, prior: Tensor | None = None) -> Tensor:
        shape = x.shape
        if len(shape) < 2 or shape[1] != self.num_features or shape[0] == 0 or not x.is_floating_point():
            self._check_input(x)
        transient = self._transient
        if transient.prior is not None:
            prior = transient.prior if prior is None else prior
            transient.prior = None
        log_prior = None if prior is None else self._check_prior(prior, x).log()
        host = x.is_cpu and not self._device_path
        args = self._fused_args
        if host and args is not None and x.dtype in _fused.DTYPES:
            ops = _fused.ops()
            if ops is not None:  # the hot path: one C++ call
                b = self._buffers
                try:
                    if self.training:
                        y, length = ops[0](x, b["running_mean"], b["running_var"], b["running_count"], b["running_comp"],
                                           b["running_updates"], b["running_refsize"], b["running_score"], log_prior,
                                           args[0])  # fmt: skip
                    else:
                        y, length = ops[1](x, b["running_mean"], b["running_var"], b["running_comp"], b["running_updates"],
                                           b["running_refsize"], b["running_score"], log_prior, args[1])  # fmt: skip
                except RuntimeError as exc:
                    raise _fused.translate(exc) from None
                transient.last_code_length = length
                return y if self.config.rescale else x
        if self.training:
            return self._train_forward(x, log_prior, host)
        return self._eval_forward(x, log_prior, host)

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
        """One value in (0, 1] per sample (the range check is the one host synchronisation a prior costs)."""
        prior = torch.as_tensor(prior, device=x.device).detach()
        if prior.numel() != x.shape[0]:
            raise ValueError(f"prior must hold one value per sample ({x.shape[0]}), got shape {tuple(prior.shape)}")
        if not bool(((prior > 0) & (prior <= 1)).all()):
            raise ValueError("prior values must lie in (0, 1]")
        return prior.reshape(-1).double()

    def _state(self, host: bool) -> tuple[Scalar, Scalar, Scalar, Scalar]:
        """(count, mean, var, COMP_prev) as the next update sees them (count and COMP decayed with momentum)."""
        decay = self.config.log_decay
        if host:
            comp: Scalar = self.running_comp.item() if self.variant == "rn" else self.running_comp
            count = self.running_count.item() * math.exp(decay)
            return count, self.running_mean.item(), self.running_var.item(), comp + decay
        return self.running_count * math.exp(decay), self.running_mean, self.running_var, self.running_comp + decay

    def _train_forward(self, x: Tensor, log_prior: Tensor | None, host: bool) -> Tensor:
        cfg = self.config
        dims = cfg.group_dims(x.dim())
        n = x.numel()
        # rn reduces over everything: work on a flat view so the reductions below need no reshapes.
        xd = x.detach() if dims is not None else x.detach().reshape(-1)
        count, mean, var0, comp = self._state(host)
        centred, batch_mean, batch_var, _ = F.centre_batch(xd, count, mean, host)
        merged = F.merge_batch(count, mean, var0, n, batch_mean, batch_var, cfg.exact_var)
        var = F.maximum(merged.var, cfg.eps * cfg.eps)
        p, total, score = F.group_density(centred, var, dims)
        gain, sens = F.code_length(comp, score)
        new_comp = score + gain  # = logaddexp(COMP_prev, S)
        if host and not (_all_finite(merged.mean) and _all_finite(merged.var) and _all_finite(new_comp)):
            raise FloatingPointError(
                "RegularityNorm statistics overflowed (activations too large for the running Gaussian); "
                "its running statistics were left unchanged"
            )
        y = x
        if cfg.rescale:
            gain_c, sens_c = F.cap(gain, sens, cfg.max_gain)
            scale = self._broadcast(gain_c, x)
            if not cfg.detach_gain and x.requires_grad and torch.is_grad_enabled():
                clamped = merged.var < cfg.eps * cfg.eps
                slope = F.code_length_slope(x, self._broadcast(sens_c, x), centred, p, total, var, merged, batch_mean,
                                            clamped, dims is None, host)  # fmt: skip
                scale = scale + (slope - slope.detach())
            y = self._finish(x, x * scale, gain_c, var, log_prior, host)
            if y.requires_grad:
                y.register_hook(_refuse_higher_order)
        self._write_state(merged, score, new_comp, n if dims is None else n // self.num_features, host)
        self._transient.last_code_length = gain
        return y

    def _finish(self, x: Tensor, y: Tensor, gain: Scalar, var: Scalar, log_prior: Tensor | None, host: bool) -> Tensor:
        """Add the prior's ``-log s_i x`` term, then raise instead of returning an overflowed output (host only)."""
        if log_prior is not None:
            y = y - x * log_prior.reshape((x.shape[0],) + (1,) * (x.dim() - 1)).to(x.dtype)
        if not host:
            return y
        largest = float(gain.max()) if isinstance(gain, Tensor) else float(gain)
        if log_prior is not None:
            largest -= float(log_prior.min())
        if (x.dtype in _LOW_PRECISION or largest > _OVERFLOW_CHECK_GAIN) and not bool(torch.isfinite(y).all()):
            if not bool(torch.isfinite(x).all()):
                return y  # eval of an input with infinite elements: documented to stay infinite
            raise FloatingPointError(_fused.overflow_message(y.dtype, largest, float(var)))
        return y

    def _broadcast(self, value: Scalar, x: Tensor) -> Scalar:
        """A per-unit tensor reshaped to broadcast along dim 1, in x's dtype; Python floats pass through."""
        if not isinstance(value, Tensor):
            return value
        if value.dim() == 0:
            return value.to(x.dtype)
        return value.to(x.dtype).reshape((1, self.num_features) + (1,) * (x.dim() - 2))

    def _write_state(self, merged: F.Merged, score: Scalar, new_comp: Scalar, group_size: int, host: bool) -> None:
        values = {
            "running_mean": merged.mean,
            "running_var": merged.var,
            "running_count": merged.count,
            "running_comp": new_comp,
            "running_score": score,
        }
        if host:
            count, refsize = self.running_updates.item(), self.running_refsize.item()
            values["running_refsize"] = F.next_refsize(count, refsize, group_size, self.config.momentum)
            for name, value in values.items():
                buffer = self._buffer(name)
                buffer.copy_(value) if isinstance(value, Tensor) else buffer.fill_(value)
            self.running_updates.add_(1.0)
            return
        updates = self.running_updates
        values["running_refsize"] = F.next_refsize(updates, self.running_refsize, group_size, self.config.momentum)
        ok = torch.isfinite(torch.as_tensor(merged.mean)) & torch.isfinite(torch.as_tensor(merged.var))
        ok = ok & torch.isfinite(torch.as_tensor(new_comp)).all()
        values["running_updates"] = updates + 1.0
        for name, value in values.items():  # masked: a non-finite batch leaves the state as it was, without a sync
            buffer = self._buffer(name)
            buffer.copy_(torch.where(ok, value, buffer))

    def _eval_forward(self, x: Tensor, log_prior: Tensor | None, host: bool) -> Tensor:
        cfg = self.config
        if host and self.running_updates.item() == 0:
            self._transient.last_code_length = math.nan
            return x if log_prior is None or not cfg.rescale else self._finish(x, x, 1.0, 1.0, log_prior, host)
        _, mean, var0, comp = self._state(host)
        var = F.maximum(var0, cfg.eps * cfg.eps)
        if cfg.eval_gain == "frozen":
            score: Scalar = self.running_score.item() if host and self.variant == "rn" else self.running_score
        else:
            dims = cfg.group_dims(x.dim())
            centred = x.detach() - F.to_dtype(mean, x.dtype)
            _, _, score = F.group_density(centred, var, dims)
            if cfg.eval_size_correction:
                group_size = x.numel() if dims is None else x.numel() // self.num_features
                refsize = self.running_refsize.item() if host else self.running_refsize
                score = score + F.log(refsize / group_size)
        gain, _ = F.code_length(comp, score)
        if not host:
            started = self.running_updates > 0
            gain = torch.where(started, gain, math.nan)
        self._transient.last_code_length = gain
        if not cfg.rescale:
            return x
        applied, _ = F.cap(gain, 0.0, cfg.max_gain)
        if not host:
            applied = torch.where(started, applied, 1.0)
        return self._finish(x, x * self._broadcast(applied, x), applied, var, log_prior, host)


class _Transient:
    """The last code length and a pending prior: read by loggers, never part of the state_dict."""

    __slots__ = ("last_code_length", "prior")

    def __init__(self) -> None:
        self.last_code_length: float | Tensor = math.nan
        self.prior: Tensor | None = None


def _refuse_higher_order(grad: Tensor) -> Tensor:
    """Backward hook of a training output: first-order gradients only (as the fused kernel's backward).

    Why: the code-length slope enters autograd as ``slope - slope.detach()``, exact for the first derivative and wrong
    for a second, so a gradient of a gradient through the layer must fail loudly rather than be silently wrong."""
    if torch.is_grad_enabled():
        raise RuntimeError(
            "RegularityNorm is differentiable once: backward with create_graph=True (a gradient of a gradient, e.g. "
            "a gradient penalty through the layer) is not supported"
        )
    return grad


def _all_finite(value: Scalar) -> bool:
    return bool(torch.isfinite(value).all()) if isinstance(value, Tensor) else math.isfinite(value)


def find_regularity_norms(model: nn.Module) -> Iterator[tuple[str, RegularityNorm]]:
    """Yield ``(name, module)`` for every :class:`RegularityNorm` in ``model``, with ``named_modules`` names."""
    for name, module in model.named_modules():
        if isinstance(module, RegularityNorm):
            yield name, module
