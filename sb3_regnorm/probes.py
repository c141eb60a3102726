"""Pure RN probes on any SB3 policy: the paper's "unsupervised attention mechanism" without changing the agent.

:class:`RegularityProbeCallback` attaches a :class:`~sb3_regnorm.layers.RegularityNorm` with ``rescale=False`` to
every ``nn.Linear``/``nn.Conv2d`` of a plain ``"MlpPolicy"``/``"CnnPolicy"`` (or any policy) and logs its code
length, COMP and running Gaussian under the watched layer's name, ``regnorm/<short>/*``, like the policy's own RN
layers. Probes live on the callback, not in the policy: outputs, training, ``state_dict`` keys and saved files are
unchanged. They see ``output.detach()`` of the forwards made inside ``train()`` only (the gradient minibatches).
"""

from __future__ import annotations

import warnings
from typing import Any

import torch
from torch import Tensor, nn

from sb3_regnorm._hooks import HookFn
from sb3_regnorm._records import MonitorCallback, is_target, layer_records, short_name
from sb3_regnorm.layers import VARIANTS, RegularityNorm

__all__ = ["RegularityProbeCallback", "already_normalised", "output_heads", "probe_targets"]

_HEAD_NAMES = frozenset({"action_net", "value_net", "mu", "log_std"})


def output_heads(policy: nn.Module) -> set[str]:
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


def already_normalised(policy: nn.Module) -> set[str]:
    """Linear/Conv2d layers followed by a RegularityNorm (before the next Linear/Conv2d) in their ``nn.Sequential``.

    Their activations are already monitored by that layer (see :class:`~sb3_regnorm.callbacks.RegularityCallback`),
    so a probe would duplicate it.
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


def probe_targets(policy: nn.Module, heads: bool = False) -> dict[str, nn.Linear | nn.Conv2d]:
    """The layers a probe watches: every Linear/Conv2d except target networks, layers already followed by a
    RegularityNorm and (unless ``heads``) the output heads."""
    skip = already_normalised(policy) | (set() if heads else output_heads(policy))
    return {
        name: module
        for name, module in policy.named_modules()
        if isinstance(module, (nn.Linear, nn.Conv2d)) and not is_target(name) and name not in skip
    }


class RegularityProbeCallback(MonitorCallback):
    """Attach pure RN probes to a policy's Linear/Conv2d layers and log them as ``regnorm/<short>/*``.

    Logged per probe: ``code_length`` (training-time L_t, mean over units), ``comp``, ``mean``, ``std`` and ``gain``
    (always 1.0: a probe never rescales), plus ``code_length_hist`` for ``variant="rln"`` with ``histograms``.
    Probes persist across ``learn()`` calls on the same policy (their statistics keep accumulating). Cadence as in
    :class:`~sb3_regnorm._records.MonitorCallback` (``log_freq`` in timesteps, ``None``: about 100 logs per run).
    A batch with non-finite activations is skipped with one warning: monitoring never stops training.

    Args:
        log_freq: cadence in timesteps (``None``: ``total_timesteps // 100`` per ``learn()``).
        variant: ``"rn"`` (one code length per layer) or ``"rln"`` (one per unit, also gives a histogram).
        heads: also probe the output heads (``action_net``, ``value_net``, the last Q layer).
        histograms: log rln per-unit code lengths as TensorBoard histograms.
        verbose: 1 prints the number of probes when training starts.
    """

    def __init__(
        self,
        *,
        log_freq: int | None = None,
        variant: str = "rn",
        heads: bool = False,
        histograms: bool = True,
        verbose: int = 0,
    ) -> None:
        super().__init__(log_freq=log_freq, verbose=verbose)
        if variant not in VARIANTS:
            raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
        self.variant = variant
        self.heads = heads
        self.histograms = histograms
        # name -> probe; kept here (not in the policy) so the policy's state_dict is untouched.
        self.probes: dict[str, RegularityNorm] = {}
        self.skipped_batches = 0
        self._probed_policy: nn.Module | None = None

    def _on_training_start(self) -> None:
        super()._on_training_start()
        policy = self.model.policy
        if self._probed_policy is not policy:
            self.probes = {}
            self._probed_policy = policy
        device = getattr(policy, "device", torch.device("cpu"))
        specs: list[tuple[nn.Module, HookFn]] = []
        for name, module in probe_targets(policy, self.heads).items():
            width = module.out_features if isinstance(module, nn.Linear) else module.out_channels
            probe = self.probes.get(name)
            if probe is None:
                probe = RegularityNorm(width, self.variant, rescale=False, device=device)
                self.probes[name] = probe
            probe.train()
            specs.append((module, self._feed(probe)))
        self.hooks.bind(policy, specs)
        if self.verbose >= 1:
            print(f"RegularityProbeCallback: {len(self.probes)} probe(s), every {self.every} timesteps")

    def _feed(self, probe: RegularityNorm) -> HookFn:
        def feed(module: nn.Module, output: Any) -> None:
            if not (module.training and isinstance(output, Tensor)):
                return
            try:
                with torch.no_grad():
                    probe(output.detach())
            except (ValueError, FloatingPointError) as exc:  # non-finite activations: monitoring never stops training
                if self.skipped_batches == 0:
                    warnings.warn(f"RegularityProbeCallback: a probe skipped a batch ({exc})", stacklevel=2)
                self.skipped_batches += 1

        return feed

    def _records(self) -> tuple[dict[str, float], dict[str, Tensor]]:
        scalars: dict[str, float] = {}
        histograms: dict[str, Tensor] = {}
        for name, probe in self.probes.items():
            layer_scalars, layer_histograms = layer_records(short_name(name), probe, probe.last_code_length, self.histograms)
            scalars.update(layer_scalars)
            histograms.update(layer_histograms)
        return scalars, histograms

    def regnorm_values(self) -> dict[str, float | Tensor]:
        """The ``regnorm/*`` values the next log would write (floats, and tensors for histograms)."""
        scalars, histograms = self._records()
        return {**scalars, **histograms}
