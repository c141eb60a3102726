"""Monitoring for Regularity Normalization: a Stable-Baselines3 callback that logs the policy's own RN layers.

:class:`RegularityCallback` logs, for every :class:`~sb3_regnorm.layers.RegularityNorm` of ``model.policy`` (DQN
target included), the code length, COMP, running Gaussian and applied gain that the *gradient steps* produced. Two
sibling callbacks do the other monitoring jobs and compose with it in a ``CallbackList`` or an rl_zoo3 ``callback:``
list: :class:`~sb3_regnorm.probes.RegularityProbeCallback` (pure RN probes on any policy) and
:class:`~sb3_regnorm.diagnostics.DiagnosticsCallback` (dormant units, saturation, srank).
``RegularityCallback(probe=True, diagnostics_freq=N)`` is a shortcut that runs those two as its children.

Tags (``<short>`` is the module path abbreviated by :func:`short_name`, e.g. ``mlp_extractor.policy_net.1`` -> ``pi.1``)::

    regnorm/<short>/code_length       mean over units of the training-time code length L_t
    regnorm/<short>/comp              mean over units of COMP_t (running_comp)
    regnorm/<short>/mean, .../std     running Gaussian (running_mean, sqrt(running_var))
    regnorm/<short>/gain              mean gain applied to the output (L_t capped at max_gain; 1.0 for probes)
    regnorm/<short>/code_length_hist  rln only: histogram of the per-unit code lengths (TensorBoard only)

Every record is written at ``x = num_timesteps``: TensorBoard's step, and ``time/total_timesteps`` in the csv/json rows
(:func:`sb3_regnorm._records.write_records`). Nothing goes to the stdout/log tables (SB3 truncates keys to 36
characters there and raises on collisions).
"""

from __future__ import annotations

from typing import Any

from stable_baselines3.common.callbacks import BaseCallback
from torch import Tensor, nn

from sb3_regnorm._hooks import HookFn
from sb3_regnorm._records import SHORT_PREFIXES, MonitorCallback, check_freq, layer_records, short_name
from sb3_regnorm.diagnostics import DiagnosticsCallback
from sb3_regnorm.layers import VARIANTS, RegularityNorm, find_regularity_norms
from sb3_regnorm.probes import RegularityProbeCallback

__all__ = ["SHORT_PREFIXES", "RegularityCallback", "short_name"]


class RegularityCallback(MonitorCallback):
    """Log the state of the policy's RegularityNorm layers (``regnorm/<short>/*``), stamped with the timestep.

    Cadence (see :class:`~sb3_regnorm._records.MonitorCallback`): ``log_freq`` counts agent timesteps; the default
    ``None`` gives about 100 logs per ``learn()`` (``(total_timesteps - start) // 100``), one per rollout at most for
    PPO/A2C, which log at rollout end (after the previous ``train()``); off-policy algorithms log at ``_on_step``. A
    last log is written at training end if that timestep was not logged yet.

    Values read: SB3 runs rollouts, ``predict`` and evaluation in eval mode, and those forwards overwrite
    ``RegularityNorm.last_code_length``. A forward hook on each RN, installed only while ``train()`` can run, keeps the
    code length of the forwards made inside ``train()``: for the online layers that is the last gradient minibatch;
    for the DQN target (always in eval) the gain it applied to the last ``next_observations`` batch. ``comp``/``mean``/
    ``std`` come from the buffers, which only training writes. Layers without statistics (before the first update,
    or a DQN target before its first sync) are skipped, as are NaN values. The hooks are removed at training end and
    cannot outlive a ``learn()`` that raises (see :mod:`sb3_regnorm._hooks`).

    Args:
        log_freq: cadence in timesteps (``None``: about 100 logs per ``learn()``).
        probe: also run a :class:`~sb3_regnorm.probes.RegularityProbeCallback` (pure RN probes on every eligible
            Linear/Conv2d, the same ``log_freq``), available as :attr:`probe_callback`.
        probe_variant: the probes' variant, ``"rn"`` or ``"rln"``.
        probe_heads: also probe the output heads.
        diagnostics_freq: also run a :class:`~sb3_regnorm.diagnostics.DiagnosticsCallback` every this many timesteps
            (``None``: no diagnostics), available as :attr:`diagnostics_callback`.
        diagnostics_batch_size: size of its fixed observation batch.
        histograms: log rln per-unit code lengths as TensorBoard histograms.
        verbose: 1 prints what is monitored when training starts.
    """

    def __init__(
        self,
        *,
        log_freq: int | None = None,
        probe: bool = False,
        probe_variant: str = "rn",
        probe_heads: bool = False,
        diagnostics_freq: int | None = None,
        diagnostics_batch_size: int = 256,
        histograms: bool = True,
        verbose: int = 0,
    ) -> None:
        super().__init__(log_freq=log_freq, verbose=verbose)
        check_freq("diagnostics_freq", diagnostics_freq)
        if probe_variant not in VARIANTS:  # checked even without probe=True: a typo in a zoo file fails at once
            raise ValueError(f"probe_variant must be one of {VARIANTS}, got {probe_variant!r}")
        self.histograms = histograms
        self.probe_callback: RegularityProbeCallback | None = None
        self.diagnostics_callback: DiagnosticsCallback | None = None
        if probe:
            self.probe_callback = RegularityProbeCallback(
                log_freq=log_freq, variant=probe_variant, heads=probe_heads, histograms=histograms, verbose=verbose
            )
        if diagnostics_freq is not None:
            self.diagnostics_callback = DiagnosticsCallback(
                log_freq=diagnostics_freq, batch_size=diagnostics_batch_size, verbose=verbose
            )
        self._norms: dict[str, RegularityNorm] = {}
        self._train_code_lengths: dict[str, Tensor] = {}

    @property
    def children(self) -> list[BaseCallback]:
        """The probe and diagnostics callbacks this shortcut runs (in that order), if requested."""
        return [child for child in (self.probe_callback, self.diagnostics_callback) if child is not None]

    @property
    def probes(self) -> dict[str, RegularityNorm]:
        """The probes of :attr:`probe_callback` (empty without ``probe=True``)."""
        return self.probe_callback.probes if self.probe_callback is not None else {}

    # ------------------------------------------------------------------ SB3 events (children run after this one)
    def _init_callback(self) -> None:
        for child in self.children:
            child.init_callback(self.model)

    def _on_training_start(self) -> None:
        super()._on_training_start()
        policy = self.model.policy
        self._norms = dict(find_regularity_norms(policy))
        self.hooks.bind(policy, [(module, self._capture(name)) for name, module in self._norms.items()])
        if self.verbose >= 1:
            print(f"RegularityCallback: {len(self._norms)} RegularityNorm layer(s), every {self.every} timesteps")
        for child in self.children:
            child.on_training_start(self.locals, self.globals)

    def _on_rollout_start(self) -> None:
        super()._on_rollout_start()
        for child in self.children:
            child.on_rollout_start()

    def _on_step(self) -> bool:
        super()._on_step()
        return all([child.on_step() for child in self.children])  # every child runs, as in CallbackList

    def _on_rollout_end(self) -> None:
        super()._on_rollout_end()
        for child in self.children:
            child.on_rollout_end()

    def _on_training_end(self) -> None:
        super()._on_training_end()
        for child in self.children:
            child.on_training_end()

    def update_child_locals(self, locals_: dict[str, Any]) -> None:
        for child in self.children:
            child.update_locals(locals_)

    # ------------------------------------------------------------------ values
    def _capture(self, name: str) -> HookFn:
        store = self._train_code_lengths

        def capture(module: nn.Module, output: Any) -> None:
            if isinstance(module, RegularityNorm):
                store[name] = module.last_code_length

        return capture

    def _records(self) -> tuple[dict[str, float], dict[str, Tensor]]:
        scalars: dict[str, float] = {}
        histograms: dict[str, Tensor] = {}
        for name, module in self._norms.items():
            code_length = self._train_code_lengths.get(name)
            layer_scalars, layer_histograms = layer_records(short_name(name), module, code_length, self.histograms)
            scalars.update(layer_scalars)
            histograms.update(layer_histograms)
        return scalars, histograms

    def regnorm_values(self) -> dict[str, float | Tensor]:
        """The ``regnorm/*`` values of the policy's own RN layers that the next log would write."""
        scalars, histograms = self._records()
        return {**scalars, **histograms}

    def remove(self) -> None:
        """Remove every forward hook this callback and its children put on the policy (idempotent)."""
        super().remove()
        for child in self.children:
            if isinstance(child, MonitorCallback):
                child.remove()
