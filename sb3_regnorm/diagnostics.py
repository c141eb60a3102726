"""Plasticity diagnostics (dormant units, tanh saturation, ReLU zeros, feature srank) and a callback that logs them.

Why next to RN: RN's code length is meant to track how irregular a layer's inputs are; dormant units and a collapsing
feature rank are the usual signs that a network stops adapting (peers.md section 5). :class:`DiagnosticsCallback`
computes them for every hidden activation layer of any SB3 policy on a fixed batch of observations, without touching
the agent (eval mode, no gradients, RNG restored), and logs ``diag/<short>/<metric>`` stamped with the timestep.

Tags (``<short>`` as in :func:`sb3_regnorm.callbacks.short_name`)::

    diag/<short>/dormant_0.025, diag/<short>/dormant_0, diag/<short>/srank   every hidden activation layer
    diag/<short>/tanh_saturation (Tanh layers), diag/<short>/relu_zero (ReLU/ReLU6 layers)
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable, Iterator
from typing import Any, Final

import numpy as np
import torch
from torch import Tensor, nn

from sb3_regnorm._records import MonitorCallback, is_target, short_name

__all__ = [
    "ACTIVATIONS",
    "DORMANT_TAUS",
    "SRANK_DELTA",
    "TANH_SATURATION",
    "DiagnosticsCallback",
    "activation_metrics",
    "dormant_fraction",
    "relu_zero_fraction",
    "srank",
    "tanh_saturation",
]

DORMANT_TAUS: Final = (0.025, 0.0)
SRANK_DELTA: Final = 0.01
TANH_SATURATION: Final = 0.99
ACTIVATIONS: Final[tuple[type[nn.Module], ...]] = (
    nn.Tanh,
    nn.ReLU,
    nn.ReLU6,
    nn.LeakyReLU,
    nn.ELU,
    nn.SELU,
    nn.CELU,
    nn.GELU,
    nn.SiLU,
    nn.Mish,
    nn.Sigmoid,
    nn.Softplus,
    nn.Hardtanh,
    nn.Hardswish,
    nn.PReLU,
)
"""Module types whose outputs are diagnosed (the hidden activations of SB3's MLPs and CNNs)."""

Observations = np.ndarray | dict[str, np.ndarray]


# ---------------------------------------------------------------------------------------------- metrics
def _unit_scores(h: Tensor) -> Tensor:
    """Mean |h| per unit (dimension 1) over the batch and any spatial axes."""
    magnitude = h.detach().abs().double()
    if magnitude.dim() == 2:
        return magnitude.mean(0)
    return magnitude.transpose(0, 1).reshape(magnitude.shape[1], -1).mean(1)


def dormant_fraction(h: Tensor, tau: float) -> float:
    """Fraction of tau-dormant units (Sokar et al., ICML 2023): score_i = E|h_i| / mean_k E|h_k| <= tau.

    ``tau=0`` counts units that are exactly silent on the whole batch; the 1e-9 guard follows the official code.
    """
    scores = _unit_scores(h)
    normalised = scores / (scores.mean() + 1e-9)
    return float((normalised <= tau).double().mean())


def tanh_saturation(h: Tensor, threshold: float = TANH_SATURATION) -> float:
    """Fraction of elements with |h| > threshold: for Tanh units, dormancy by magnitude is ill-defined."""
    return float((h.detach().abs() > threshold).double().mean())


def relu_zero_fraction(h: Tensor) -> float:
    """Fraction of elements that are exactly 0 (for ReLU: inactive on that input)."""
    return float((h.detach() == 0).double().mean())


def srank(features: Tensor, delta: float = SRANK_DELTA) -> int:
    """Effective feature rank of Kumar et al. (ICLR 2021): min k with sum_{i<=k} sigma_i / sum_i sigma_i >= 1 - delta.

    ``features`` is (batch, ...), flattened per sample; 0 for an all-zero matrix.
    """
    matrix = features.detach().reshape(features.shape[0], -1).double()
    singular = torch.linalg.svdvals(matrix)
    total = float(singular.sum())
    if not total > 0.0:
        return 0
    cumulative = singular.cumsum(0) / total
    return int((cumulative < 1.0 - delta).sum()) + 1


def activation_metrics(h: Tensor, module: nn.Module) -> dict[str, float]:
    """Every diagnostic of one activation layer's output ``h`` (batch first); ``{}`` for an empty or 1-D output."""
    if h.dim() < 2 or h.shape[0] == 0:
        return {}
    metrics = {f"dormant_{tau:g}": dormant_fraction(h, tau) for tau in DORMANT_TAUS}
    if isinstance(module, nn.Tanh):
        metrics["tanh_saturation"] = tanh_saturation(h)
    if isinstance(module, (nn.ReLU, nn.ReLU6)):
        metrics["relu_zero"] = relu_zero_fraction(h)
    metrics["srank"] = float(srank(h))
    return metrics


@contextlib.contextmanager
def _frozen_rng(device: torch.device) -> Iterator[None]:
    """Restore the torch RNG afterwards, so a diagnostic forward never changes what training samples."""
    if device.type == "cuda":
        devices = [device.index if device.index is not None else torch.cuda.current_device()]
    else:
        devices = []
    with torch.random.fork_rng(devices=devices):
        yield


# ---------------------------------------------------------------------------------------------- the callback
class DiagnosticsCallback(MonitorCallback):
    """Log dormant fractions (tau 0.025 and 0), tanh saturation, ReLU zeros and srank of every hidden activation layer.

    The observation batch is the first ``batch_size`` observations the training env returns (``locals["new_obs"]``),
    collected once and kept in :attr:`obs_batch`; the srank of the last activation before a head is the
    penultimate-feature srank of Kumar et al. Target networks are skipped. Cadence as in
    :class:`~sb3_regnorm._records.MonitorCallback` (``log_freq`` in timesteps, ``None``: about 100 logs per run);
    logs before the batch is full write nothing.

    Args:
        log_freq: cadence in timesteps (``None``: ``total_timesteps // 100`` per ``learn()``).
        batch_size: number of observations in the fixed batch.
        verbose: 1 prints the number of diagnosed layers when training starts.
    """

    def __init__(self, *, log_freq: int | None = None, batch_size: int = 256, verbose: int = 0) -> None:
        super().__init__(log_freq=log_freq, verbose=verbose)
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        self.batch_size = batch_size
        self.obs_batch: Observations | None = None
        self._chunks: list[Observations] = []
        self._count = 0
        self._disabled = False

    def _on_training_start(self) -> None:
        super()._on_training_start()
        if self.verbose >= 1:
            layers = [n for n, m in self.model.policy.named_modules() if isinstance(m, ACTIVATIONS) and not is_target(n)]
            print(f"DiagnosticsCallback: {len(layers)} activation layer(s), every {self.every} timesteps")

    def _collect(self) -> None:
        """Keep the first ``batch_size`` observations returned by the env, once."""
        if self.obs_batch is not None:
            return
        obs = self.locals.get("new_obs")
        if obs is None:
            return
        chunk: Observations
        if isinstance(obs, dict):
            chunk = {key: np.array(value, copy=True) for key, value in obs.items()}
            self._count += len(next(iter(chunk.values())))
        else:
            chunk = np.array(obs, copy=True)
            self._count += len(chunk)
        self._chunks.append(chunk)
        if self._count >= self.batch_size:
            self.obs_batch = _concat_obs(self._chunks, self.batch_size)
            self._chunks = []

    def _records(self) -> tuple[dict[str, float], dict[str, Tensor]]:
        return self.compute(), {}

    def compute(self) -> dict[str, float]:
        """Run the policy on :attr:`obs_batch` in eval mode without gradients and return the ``diag/*`` values.

        Eval mode never writes RN buffers, RN hooks and probes ignore eval forwards and the RNG is restored, so this
        changes nothing; every module's training flag is restored. Returns ``{}`` until the batch is full (or if the
        policy cannot be called as ``policy(obs, deterministic=True)``, e.g. recurrent policies: a warning is issued
        once and diagnostics are disabled).
        """
        if self.obs_batch is None or self._disabled or getattr(self, "model", None) is None:
            return {}
        policy = self.model.policy
        outputs: dict[str, tuple[nn.Module, Tensor]] = {}
        handles = [
            module.register_forward_hook(_store_output(outputs, name))
            for name, module in policy.named_modules()
            if isinstance(module, ACTIVATIONS) and not is_target(name)
        ]
        modes = {module: module.training for module in policy.modules()}
        try:
            policy.eval()
            with torch.no_grad(), _frozen_rng(policy.device):
                obs_tensor, _ = policy.obs_to_tensor(self.obs_batch)
                policy(obs_tensor, deterministic=True)
        except (TypeError, ValueError, RuntimeError) as exc:
            warnings.warn(f"DiagnosticsCallback: diagnostics disabled, the policy forward failed: {exc}", stacklevel=2)
            self._disabled = True
            return {}
        finally:
            for handle in handles:
                handle.remove()
            for module, flag in modes.items():
                module.training = flag
        values: dict[str, float] = {}
        for name, (module, h) in outputs.items():
            for metric, value in activation_metrics(h, module).items():
                values[f"diag/{short_name(name)}/{metric}"] = value
        return values


def _store_output(
    outputs: dict[str, tuple[nn.Module, Tensor]], name: str
) -> Callable[[nn.Module, tuple[Any, ...], Any], None]:
    def hook(module: nn.Module, args: tuple[Any, ...], output: Any) -> None:
        if isinstance(output, Tensor):
            outputs[name] = (module, output.detach())

    return hook


def _concat_obs(chunks: list[Observations], limit: int) -> Observations:
    """Stack per-step observation chunks (arrays or dicts of arrays) into one batch of at most ``limit``."""
    first = chunks[0]
    if isinstance(first, dict):
        return {key: np.concatenate([chunk[key] for chunk in chunks if isinstance(chunk, dict)])[:limit] for key in first}
    return np.concatenate([chunk for chunk in chunks if isinstance(chunk, np.ndarray)])[:limit]
