"""Monitoring for Regularity Normalization: a Stable-Baselines3 callback that streams RN state to TensorBoard.

:class:`RegularityCallback` logs, for every :class:`~sb3_regnorm.layers.RegularityNorm` of ``model.policy``, the code
length, COMP, running Gaussian and applied gain that the *gradient steps* produced, optionally attaches pure RN probes
to the Linear/Conv2d layers of any policy (the paper's "unsupervised attention mechanism" without changing the agent),
and optionally computes plasticity diagnostics (dormant units, tanh saturation, srank) on a fixed batch of observations.

Tags (``<short>`` is the module path abbreviated by :func:`short_name`, e.g. ``mlp_extractor.policy_net.1`` -> ``pi.1``)::

    regnorm/<short>/code_length       mean over units of the training-time code length L_t
    regnorm/<short>/comp              mean over units of COMP_t (running_comp)
    regnorm/<short>/mean, .../std     running Gaussian (running_mean, sqrt(running_var))
    regnorm/<short>/gain              mean gain applied to the output (L_t capped at max_gain; 1.0 for probes)
    regnorm/<short>/code_length_hist  rln only: histogram of the per-unit code lengths
    diag/<short>/dormant_0.025, diag/<short>/dormant_0, diag/<short>/srank   every hidden activation layer
    diag/<short>/tanh_saturation (Tanh layers), diag/<short>/relu_zero (ReLU layers)

Everything is excluded from the stdout/log writers (SB3 truncates keys to 36 characters there and raises on
collisions); histograms are also kept out of csv/json.
"""

from __future__ import annotations

import contextlib
import math
import warnings
from collections.abc import Callable, Iterator
from typing import Any, Final

import numpy as np
import torch
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.logger import DISABLED, HumanOutputFormat, KVWriter
from stable_baselines3.common.on_policy_algorithm import OnPolicyAlgorithm
from torch import Tensor, nn
from torch.utils.hooks import RemovableHandle

from sb3_regnorm.layers import VARIANTS, RegularityNorm, find_regularity_norms

__all__ = [
    "DORMANT_TAUS",
    "SHORT_PREFIXES",
    "SRANK_DELTA",
    "RegularityCallback",
    "dormant_fraction",
    "short_name",
    "srank",
    "tanh_saturation",
]

# First matching prefix wins: the DQN target paths must be tested before the online ones they contain.
SHORT_PREFIXES: Final[tuple[tuple[str, str], ...]] = (
    ("mlp_extractor.policy_net.", "pi."),
    ("mlp_extractor.value_net.", "vf."),
    ("q_net_target.q_net.", "qt."),
    ("q_net.q_net.", "q."),
    ("q_net_target.features_extractor.", "qtfe."),
    ("q_net.features_extractor.", "qfe."),
    ("pi_features_extractor.", "pife."),
    ("vf_features_extractor.", "vffe."),
    ("features_extractor.", "fe."),
)
DORMANT_TAUS: Final = (0.025, 0.0)
SRANK_DELTA: Final = 0.01
TANH_SATURATION: Final = 0.99
_SCALAR_EXCLUDE: Final = ("stdout", "log")
_ARRAY_EXCLUDE: Final = ("stdout", "log", "json", "csv")
_ACTIVATIONS: Final = (
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
_HEAD_NAMES: Final = frozenset({"action_net", "value_net", "mu", "log_std"})
_Record = tuple[Any, tuple[str, ...]]
_Hook = Callable[[nn.Module, tuple[Any, ...], Any], None]


# ---------------------------------------------------------------------------------------------- names
def short_name(path: str) -> str:
    """Abbreviate a ``named_modules`` path for tags (see :data:`SHORT_PREFIXES`); unknown paths are kept whole."""
    for prefix, short in SHORT_PREFIXES:
        if path.startswith(prefix):
            return short + path[len(prefix) :]
    return path


def _is_target(path: str) -> bool:
    """Target networks (``q_net_target``, ``actor_target``...) only ever run in eval mode: never probed or diagnosed."""
    return any("target" in part for part in path.split("."))


def _output_heads(policy: nn.Module) -> set[str]:
    """Paths of the layers that produce the policy's outputs (logits, values, Q-values), skipped by default by probes.

    Heads are the modules named ``action_net``/``value_net``/``mu``/``log_std`` (SB3 actor-critic and SAC-style actors)
    and the last Linear of every ``nn.Sequential`` named ``q_net`` or ``qf*`` (DQN, critics).
    """
    heads: set[str] = set()
    for name, module in policy.named_modules():
        leaf = name.rsplit(".", 1)[-1]
        if leaf in _HEAD_NAMES and isinstance(module, (nn.Linear, nn.Conv2d)):
            heads.add(name)
        if isinstance(module, nn.Sequential) and (leaf == "q_net" or leaf.startswith("qf")):
            linears = [idx for idx, child in module.named_children() if isinstance(child, nn.Linear)]
            if linears:
                heads.add(f"{name}.{linears[-1]}")
    return heads


def _already_normalised(policy: nn.Module) -> set[str]:
    """Linear/Conv2d layers followed by a RegularityNorm (before the next Linear/Conv2d) in their ``nn.Sequential``.

    Their activations are already monitored by that layer, so a probe would duplicate it.
    """
    covered: set[str] = set()
    for name, module in policy.named_modules():
        if not isinstance(module, nn.Sequential):
            continue
        last: str | None = None
        for child_name, child in module.named_children():
            if isinstance(child, (nn.Linear, nn.Conv2d)):
                last = f"{name}.{child_name}" if name else child_name
            elif isinstance(child, RegularityNorm) and last is not None:
                covered.add(last)
    return covered


# ---------------------------------------------------------------------------------------------- diagnostics
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


def _activation_metrics(h: Tensor, module: nn.Module) -> dict[str, float]:
    """All diagnostics of one activation layer's output on the probe batch."""
    if h.dim() < 2 or h.shape[0] == 0:
        return {}
    metrics = {f"dormant_{tau:g}": dormant_fraction(h, tau) for tau in DORMANT_TAUS}
    if isinstance(module, nn.Tanh):
        metrics["tanh_saturation"] = tanh_saturation(h)
    if isinstance(module, (nn.ReLU, nn.ReLU6)):
        metrics["relu_zero"] = float((h.detach() == 0).double().mean())
    metrics["srank"] = float(srank(h))
    return metrics


@contextlib.contextmanager
def _frozen_rng(device: torch.device) -> Iterator[None]:
    """Restore the torch RNG afterwards, so a monitoring forward never changes what training samples."""
    if device.type == "cuda":
        devices = [device.index if device.index is not None else torch.cuda.current_device()]
    else:
        devices = []
    with torch.random.fork_rng(devices=devices):
        yield


# ---------------------------------------------------------------------------------------------- the callback
class RegularityCallback(BaseCallback):
    """Log RegularityNorm state, optional RN probes and optional plasticity diagnostics to the SB3 logger.

    Cadence (``n_calls`` counts ``_on_step`` calls, i.e. vectorised env steps = timesteps / n_envs):

    * On-policy algorithms (PPO, A2C, any ``OnPolicyAlgorithm``): layer values only change inside ``train()``, which
      runs between rollouts, so they are logged at ``_on_rollout_end`` (i.e. after the previous ``train()``) whenever
      ``n_calls`` has passed a new multiple of ``log_freq`` since the last log. ``log_freq <= n_steps`` therefore
      means every rollout (the default 1000 does that for PPO's 2048), a larger value every
      ``ceil(log_freq / n_steps)`` rollouts or so (A2C's ``n_steps=5``: every 200 rollouts).
    * Off-policy algorithms (DQN, SAC, ...): ``train()`` runs every ``train_freq`` steps inside learning, so values
      are logged at ``_on_step`` when ``n_calls % log_freq == 0``.
    * At ``_on_training_end`` a last log is written if the current timestep has not been logged yet (off-policy runs
      whose length is not a multiple of ``log_freq``; on-policy runs whose last rollout did not log). So each tag's
      steps are strictly increasing; the price is that an on-policy run whose last rollout logged does not log the
      values of its final ``train()``.
    * Diagnostics run at ``_on_step`` when ``n_calls % diagnostics_freq == 0``, once the probe batch is full.

    Each log is written straight away at ``x = self.num_timesteps`` to every non-human output format (TensorBoard,
    csv, json) with only this callback's keys: SB3's own pending values (``train/*``, ``rollout/*``) stay in the
    logger for SB3's next ``dump``, so its tables and steps are unchanged, and no empty stdout table is printed.

    Values read: SB3 runs rollouts, ``predict`` and evaluation in eval mode, and those forwards overwrite
    ``RegularityNorm.last_code_length``. A forward hook on each RN stores the code length of every forward made while
    the RN or the whole policy is in training mode, i.e. inside ``train()``: for the online layers that is the last
    gradient minibatch; for the DQN target (always in eval) it is the gain it applied to the last ``next_observations``
    batch. ``comp``/``mean``/``std`` come from the buffers, which only training writes. Layers without statistics
    (before the first update, or a DQN target before its first sync) are skipped, as are NaN values.

    Args:
        log_freq: cadence in ``_on_step`` calls (see above).
        probe: attach a pure RN probe (``RegularityNorm(out, probe_variant, rescale=False)``) to every ``nn.Linear``
            and ``nn.Conv2d`` of the policy, except layers of target networks (never trained), output heads (unless
            ``probe_heads``) and layers already followed by a RegularityNorm. Probes are kept on the callback, not
            registered in the policy, so ``state_dict``, saved files, outputs and training are unchanged. They see
            ``output.detach()`` of forwards made in training mode only, and are tagged with the watched layer's name.
        probe_variant: ``"rn"`` (one code length per layer) or ``"rln"`` (one per unit, also gives a histogram).
        probe_heads: also probe the output heads (``action_net``, ``value_net``, the last Q layer).
        diagnostics_freq: compute dormant fractions (tau=0.025 and 0), tanh saturation, ReLU zero fraction and srank
            (delta=0.01) of every hidden activation layer every this many ``_on_step`` calls (``None``: never). The
            srank of the last activation before a head is the penultimate-feature srank of Kumar et al.
        diagnostics_batch_size: size of the fixed probe batch: the first observations the env returns
            (``locals["new_obs"]``), collected once.
        histograms: log rln per-unit code lengths as TensorBoard histograms.
        verbose: 1 prints what is monitored when training starts.
    """

    def __init__(
        self,
        *,
        log_freq: int = 1000,
        probe: bool = False,
        probe_variant: str = "rn",
        probe_heads: bool = False,
        diagnostics_freq: int | None = None,
        diagnostics_batch_size: int = 256,
        histograms: bool = True,
        verbose: int = 0,
    ) -> None:
        super().__init__(verbose=verbose)
        _check_positive("log_freq", log_freq)
        if diagnostics_freq is not None:
            _check_positive("diagnostics_freq", diagnostics_freq)
        _check_positive("diagnostics_batch_size", diagnostics_batch_size)
        if probe_variant not in VARIANTS:
            raise ValueError(f"probe_variant must be one of {VARIANTS}, got {probe_variant!r}")
        self.log_freq = log_freq
        self.probe = probe
        self.probe_variant = probe_variant
        self.probe_heads = probe_heads
        self.diagnostics_freq = diagnostics_freq
        self.diagnostics_batch_size = diagnostics_batch_size
        self.histograms = histograms
        # name -> module; probes live here (not in the policy) so the policy's state_dict is untouched.
        self.probes: dict[str, RegularityNorm] = {}
        self._norms: dict[str, RegularityNorm] = {}
        self._train_code_lengths: dict[str, Tensor] = {}
        self._handles: list[RemovableHandle] = []
        self._probed_policy: nn.Module | None = None
        self._probe_errors = 0
        self._last_bucket = 0
        self._last_step = -1
        self._obs_chunks: list[Any] = []
        self._obs_count = 0
        self.probe_obs: np.ndarray | dict[str, np.ndarray] | None = None

    # ------------------------------------------------------------------ SB3 hooks
    def _on_training_start(self) -> None:
        self.remove()
        if self.num_timesteps < self._last_step:  # learn(reset_num_timesteps=True): a new TensorBoard run
            self._last_step = -1
        policy = self.model.policy
        self._attach_norm_hooks(policy)
        if self.probe:
            self._attach_probes(policy)
        if self.verbose >= 1:
            print(
                f"RegularityCallback: {len(self._norms)} RegularityNorm layer(s), {len(self.probes)} probe(s), "
                f"log_freq={self.log_freq}, diagnostics_freq={self.diagnostics_freq}"
            )

    def _on_step(self) -> bool:
        self._collect_probe_obs()
        records: dict[str, _Record] = {}
        if not self._on_policy and self.n_calls % self.log_freq == 0:
            records.update(self._regnorm_records())
        if self.diagnostics_freq is not None and self.n_calls % self.diagnostics_freq == 0:
            records.update(_as_scalar_records(self.compute_diagnostics()))
        self._write(records)
        return True

    def _on_rollout_end(self) -> None:
        bucket = self.n_calls // self.log_freq
        if self._on_policy and bucket > self._last_bucket:
            self._last_bucket = bucket
            self._write(self._regnorm_records())

    def _on_training_end(self) -> None:
        if self.num_timesteps > self._last_step:
            self._write(self._regnorm_records())
        self.remove()

    # ------------------------------------------------------------------ public API
    def remove(self) -> None:
        """Remove every hook this callback put on the policy (probes and captured values are kept for inspection)."""
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def regnorm_values(self) -> dict[str, float | Tensor]:
        """The ``regnorm/*`` values the next log would write (floats, and tensors for histograms)."""
        return {key: value for key, (value, _) in self._regnorm_records().items()}

    def compute_diagnostics(self) -> dict[str, float]:
        """Run the policy on the probe batch in eval mode without gradients and return the ``diag/*`` values.

        Eval mode never writes RN buffers, the RN hooks ignore eval forwards, probes only learn from training-mode
        forwards and the RNG is restored, so this changes nothing; every module's training flag is restored.
        Returns ``{}`` until the probe batch is full (or if the policy cannot be called as ``policy(obs,
        deterministic=True)``, e.g. recurrent policies: a warning is issued once and diagnostics are disabled).
        """
        if self.probe_obs is None or getattr(self, "model", None) is None:
            return {}
        policy = self.model.policy
        outputs: dict[str, tuple[nn.Module, Tensor]] = {}
        handles = [
            module.register_forward_hook(_store_output(outputs, name))
            for name, module in policy.named_modules()
            if isinstance(module, _ACTIVATIONS) and not _is_target(name)
        ]
        modes = {module: module.training for module in policy.modules()}
        try:
            policy.eval()
            with torch.no_grad(), _frozen_rng(policy.device):
                obs_tensor, _ = policy.obs_to_tensor(self.probe_obs)
                policy(obs_tensor, deterministic=True)
        except (TypeError, ValueError, RuntimeError) as exc:
            warnings.warn(f"RegularityCallback: diagnostics disabled, the policy forward failed: {exc}", stacklevel=2)
            self.diagnostics_freq = None
            return {}
        finally:
            for handle in handles:
                handle.remove()
            for module, flag in modes.items():
                module.training = flag
        values: dict[str, float] = {}
        for name, (module, h) in outputs.items():
            for metric, value in _activation_metrics(h, module).items():
                values[f"diag/{short_name(name)}/{metric}"] = value
        return values

    # ------------------------------------------------------------------ setup
    @property
    def _on_policy(self) -> bool:
        return isinstance(self.model, OnPolicyAlgorithm)

    def _attach_norm_hooks(self, policy: nn.Module) -> None:
        """Capture training-phase code lengths of the policy's own RegularityNorm layers (target included)."""
        self._norms = dict(find_regularity_norms(policy))
        for name, module in self._norms.items():
            self._handles.append(module.register_forward_hook(self._capture_hook(name, policy)))

    def _capture_hook(self, name: str, policy: nn.Module) -> _Hook:
        store = self._train_code_lengths

        def hook(module: nn.Module, args: tuple[Any, ...], output: Any) -> None:
            if module.training or policy.training:
                store[name] = module.last_code_length  # type: ignore[assignment]

        return hook

    def _attach_probes(self, policy: nn.Module) -> None:
        """One probe per eligible Linear/Conv2d, fed by a forward hook; probes persist across ``learn`` calls."""
        if self._probed_policy is not policy:
            self.probes = {}
            self._probed_policy = policy
        skip = _already_normalised(policy) | (set() if self.probe_heads else _output_heads(policy))
        device = getattr(policy, "device", torch.device("cpu"))
        for name, module in policy.named_modules():
            if not isinstance(module, (nn.Linear, nn.Conv2d)) or _is_target(name) or name in skip:
                continue
            width = module.out_features if isinstance(module, nn.Linear) else module.out_channels
            probe = self.probes.get(name)
            if probe is None:
                probe = RegularityNorm(width, self.probe_variant, rescale=False, device=device)
                self.probes[name] = probe
            probe.train()
            self._handles.append(module.register_forward_hook(self._probe_hook(probe)))

    def _probe_hook(self, probe: RegularityNorm) -> _Hook:
        def hook(module: nn.Module, args: tuple[Any, ...], output: Any) -> None:
            if not (module.training and isinstance(output, Tensor)):
                return
            try:
                with torch.no_grad():
                    probe(output.detach())
            except (ValueError, FloatingPointError) as exc:  # non-finite activations: monitoring never stops training
                if self._probe_errors == 0:
                    warnings.warn(f"RegularityCallback: a probe skipped a batch ({exc})", stacklevel=2)
                self._probe_errors += 1

        return hook

    def _collect_probe_obs(self) -> None:
        """Keep the first ``diagnostics_batch_size`` observations returned by the env, once."""
        if self.diagnostics_freq is None or self.probe_obs is not None:
            return
        obs = self.locals.get("new_obs")
        if obs is None:
            return
        chunk = {key: np.array(value, copy=True) for key, value in obs.items()} if isinstance(obs, dict) else np.array(obs)
        self._obs_chunks.append(chunk)
        self._obs_count += len(next(iter(chunk.values()))) if isinstance(chunk, dict) else len(chunk)
        if self._obs_count >= self.diagnostics_batch_size:
            self.probe_obs = _concat_obs(self._obs_chunks, self.diagnostics_batch_size)
            self._obs_chunks = []

    # ------------------------------------------------------------------ logging
    def _regnorm_records(self) -> dict[str, _Record]:
        """Records for every policy RN and every probe that has statistics."""
        records: dict[str, _Record] = {}
        for name, module in self._norms.items():
            records.update(self._layer_records(short_name(name), module, self._train_code_lengths.get(name)))
        for name, probe in self.probes.items():
            records.update(self._layer_records(short_name(name), probe, probe.last_code_length))
        return records

    def _layer_records(self, short: str, module: RegularityNorm, code_length: Tensor | None) -> dict[str, _Record]:
        if not module.initialized:
            return {}
        prefix = f"regnorm/{short}"
        scalars = {
            "comp": float(module.running_comp.double().mean()),
            "mean": float(module.running_mean),
            "std": math.sqrt(max(float(module.running_var), 0.0)),
        }
        if code_length is not None:
            per_unit = code_length.detach().double().cpu().reshape(-1)
            per_unit = per_unit[torch.isfinite(per_unit)]
            if per_unit.numel() > 0:
                scalars["code_length"] = float(per_unit.mean())
                scalars["gain"] = _applied_gain(module, per_unit)
                if self.histograms and module.variant == "rln":
                    records = {f"{prefix}/code_length_hist": (per_unit, _ARRAY_EXCLUDE)}
                    records.update(_as_scalar_records({f"{prefix}/{k}": v for k, v in scalars.items()}))
                    return records
        return _as_scalar_records({f"{prefix}/{k}": v for k, v in scalars.items()})

    def _write(self, records: dict[str, _Record]) -> None:
        """Write only these records at the current timestep, leaving SB3's pending values for SB3's own dump.

        A plain ``logger.dump`` here would flush SB3's ``train/*`` values early (at our step, and missing from its
        next table) and make the stdout writer warn about an all-excluded table, so the records pass through
        ``logger.record`` on an emptied logger and go to the non-human writers only; the pending values are restored.
        """
        logger = self.logger
        if not records or logger.level == DISABLED:
            return
        pending = (dict(logger.name_to_value), dict(logger.name_to_count), dict(logger.name_to_excluded))
        stores = (logger.name_to_value, logger.name_to_count, logger.name_to_excluded)
        for store in stores:
            store.clear()
        try:
            for key, (value, exclude) in records.items():
                logger.record(key, value, exclude=exclude)
            for output in logger.output_formats:
                if isinstance(output, KVWriter) and not isinstance(output, HumanOutputFormat):
                    output.write(logger.name_to_value, logger.name_to_excluded, self.num_timesteps)
        finally:
            for store, saved in zip(stores, pending, strict=True):
                store.clear()
                store.update(saved)  # type: ignore[arg-type]
        if any(key.startswith("regnorm/") for key in records):
            self._last_step = self.num_timesteps


# ---------------------------------------------------------------------------------------------- helpers
def _check_positive(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")


def _applied_gain(module: RegularityNorm, code_length: Tensor) -> float:
    """Mean gain the layer multiplied its output by: the code length capped at ``max_gain``; 1 for a probe."""
    if not module.rescale:
        return 1.0
    max_gain = getattr(module, "max_gain", None)
    return float(code_length.clamp(max=max_gain).mean()) if max_gain is not None else float(code_length.mean())


def _as_scalar_records(values: dict[str, float]) -> dict[str, _Record]:
    """Finite scalars only (NaN means "no statistics yet"), excluded from the stdout/log tables."""
    return {key: (value, _SCALAR_EXCLUDE) for key, value in values.items() if math.isfinite(value)}


def _store_output(outputs: dict[str, tuple[nn.Module, Tensor]], name: str) -> _Hook:
    def hook(module: nn.Module, args: tuple[Any, ...], output: Any) -> None:
        if isinstance(output, Tensor):
            outputs[name] = (module, output.detach())

    return hook


def _concat_obs(chunks: list[Any], limit: int) -> np.ndarray | dict[str, np.ndarray]:
    """Stack per-step observation chunks (arrays or dicts of arrays) into one batch of at most ``limit``."""
    if isinstance(chunks[0], dict):
        return {key: np.concatenate([chunk[key] for chunk in chunks])[:limit] for key in chunks[0]}
    return np.concatenate(chunks)[:limit]
