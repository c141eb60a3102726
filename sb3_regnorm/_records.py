"""What the monitoring callbacks share: tag names, the logging cadence, and stamped writes to SB3's output formats.

Why a shared base: RN layers, RN probes and diagnostics all log "the state after the last ``train()``" at the same
points of an SB3 run, and every record must carry the timestep it belongs to in every format (TensorBoard's step,
and ``time/total_timesteps`` in csv/json rows), without disturbing the values SB3 is about to dump itself.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Final

import torch
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.logger import (
    DISABLED,
    CSVOutputFormat,
    HumanOutputFormat,
    JSONOutputFormat,
    KVWriter,
    Logger,
    TensorBoardOutputFormat,
)
from stable_baselines3.common.on_policy_algorithm import OnPolicyAlgorithm
from torch import Tensor

from sb3_regnorm._hooks import TrainHooks
from sb3_regnorm.layers import RegularityNorm

__all__ = [
    "DEFAULT_POINTS",
    "SHORT_PREFIXES",
    "STEP_KEY",
    "Cadence",
    "MonitorCallback",
    "check_freq",
    "is_target",
    "layer_records",
    "short_name",
    "write_records",
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
DEFAULT_POINTS: Final = 100
"""Default cadence: about this many logs per ``learn()`` call (``log_freq = (total_timesteps - start) // 100``)."""
STEP_KEY: Final = "time/total_timesteps"
"""The column SB3 stamps its own csv/json rows with; every monitoring row carries it too."""
_SCALAR_EXCLUDE: Final = ("stdout", "log")
_HISTOGRAM_EXCLUDE: Final = ("stdout", "log", "json", "csv")
_STEP_EXCLUDE: Final = ("stdout", "log", "tensorboard")  # TensorBoard has its own step axis (as in SB3's rows)
_FORMAT_NAMES: Final = ((CSVOutputFormat, "csv"), (JSONOutputFormat, "json"), (TensorBoardOutputFormat, "tensorboard"))


# ---------------------------------------------------------------------------------------------- names
def short_name(path: str) -> str:
    """Abbreviate a ``named_modules`` path for tags (see :data:`SHORT_PREFIXES`); unknown paths are kept whole."""
    for prefix, short in SHORT_PREFIXES:
        if path.startswith(prefix):
            return short + path[len(prefix) :]
    return path


def is_target(path: str) -> bool:
    """Target networks (``q_net_target``, ``actor_target``...) only ever run in eval mode: never probed or diagnosed."""
    return any("target" in part for part in path.split("."))


def check_freq(name: str, value: int | None) -> None:
    """``None`` (the automatic cadence) or a positive int; anything else is a clear error at construction."""
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise ValueError(f"{name} must be a positive int (timesteps) or None, got {value!r}")


# ---------------------------------------------------------------------------------------------- RN values
def _applied_gain(module: RegularityNorm, code_length: Tensor) -> float:
    """Mean gain the layer multiplied its output by: the code length capped at ``max_gain``; 1 for a probe."""
    if not module.rescale:
        return 1.0
    max_gain = getattr(module, "max_gain", None)
    return float(code_length.clamp(max=max_gain).mean()) if max_gain is not None else float(code_length.mean())


def layer_records(
    short: str, module: RegularityNorm, code_length: Tensor | None, histograms: bool = True
) -> tuple[dict[str, float], dict[str, Tensor]]:
    """``regnorm/<short>/*`` scalars (and the rln histogram) of one RN layer or probe; empty before its first update.

    ``comp``/``mean``/``std`` come from the ``running_*`` buffers (only training writes them); ``code_length`` and
    ``gain`` from ``code_length`` (the caller's training-time value; ``None`` or all-NaN: not logged).
    """
    if not float(module.running_updates) > 0:
        return {}, {}
    prefix = f"regnorm/{short}"
    scalars = {
        f"{prefix}/comp": float(module.running_comp.double().mean()),
        f"{prefix}/mean": float(module.running_mean),
        f"{prefix}/std": math.sqrt(max(float(module.running_var), 0.0)),
    }
    hists: dict[str, Tensor] = {}
    if code_length is not None:
        per_unit = code_length.detach().double().cpu().reshape(-1)
        per_unit = per_unit[torch.isfinite(per_unit)]
        if per_unit.numel() > 0:
            scalars[f"{prefix}/code_length"] = float(per_unit.mean())
            scalars[f"{prefix}/gain"] = _applied_gain(module, per_unit)
            if histograms and module.variant == "rln":
                hists[f"{prefix}/code_length_hist"] = per_unit
    return scalars, hists


# ---------------------------------------------------------------------------------------------- writing
def _format_name(output: KVWriter) -> str | None:
    for cls, name in _FORMAT_NAMES:
        if isinstance(output, cls):
            return name
    return None


def write_records(
    logger: Logger, step: int, scalars: Mapping[str, float], histograms: Mapping[str, Tensor] | None = None
) -> bool:
    """Write one row stamped with ``step`` to every non-human output format; return whether anything was written.

    The row goes through each writer's public ``KVWriter.write(values, excluded, step)``, not through
    ``logger.record``/``dump``, so SB3's pending ``train/*``/``rollout/*`` values stay for SB3's next dump (its tables
    and steps are unchanged) and no stdout table is printed. Scalars go to TensorBoard, csv and json; histograms to
    TensorBoard only; csv and json rows also get ``time/total_timesteps = step`` (TensorBoard has the step itself).
    Non-finite scalars (no statistics yet) are dropped. A writer that would receive only the step gets nothing.
    """
    values: dict[str, Any] = {key: float(value) for key, value in scalars.items() if math.isfinite(value)}
    excluded: dict[str, tuple[str, ...]] = dict.fromkeys(values, _SCALAR_EXCLUDE)
    for key, tensor in (histograms or {}).items():
        values[key] = tensor
        excluded[key] = _HISTOGRAM_EXCLUDE
    if not values or logger.level == DISABLED:
        return False
    values[STEP_KEY] = step
    excluded[STEP_KEY] = _STEP_EXCLUDE
    written = False
    for output in logger.output_formats:
        if not isinstance(output, KVWriter) or isinstance(output, HumanOutputFormat):
            continue
        name = _format_name(output)
        if name is not None and not any(name not in excluded[key] for key in values if key != STEP_KEY):
            continue
        output.write(values, excluded, step)
        written = True
    return written


# ---------------------------------------------------------------------------------------------- cadence
class Cadence:
    """When to log: each time ``num_timesteps`` crosses a new multiple of :attr:`every` timesteps.

    ``log_freq=None`` resolves, at each :meth:`start`, to ``(total_timesteps - start) // DEFAULT_POINTS`` (at least 1):
    about 100 logs per ``learn()`` whatever the budget. Why timesteps and not callback calls: the x-axis of every record
    is ``num_timesteps``, and with ``n_envs`` envs a call is ``n_envs`` timesteps (A2C with 8 envs, 4000 steps and a
    1000-call cadence logged once).
    """

    def __init__(self, log_freq: int | None) -> None:
        check_freq("log_freq", log_freq)
        self.log_freq = log_freq
        self.every = log_freq or 1
        self._bucket = 0

    def start(self, num_timesteps: int, total_timesteps: int) -> int:
        """Resolve the cadence for a ``learn()`` running from ``num_timesteps`` to ``total_timesteps``; return it."""
        if self.log_freq is not None:
            self.every = self.log_freq
        else:
            self.every = max(1, (total_timesteps - num_timesteps) // DEFAULT_POINTS)
        self._bucket = num_timesteps // self.every
        return self.every

    def due(self, num_timesteps: int) -> bool:
        """Whether ``num_timesteps`` has crossed a multiple of :attr:`every` since the last time this returned True."""
        bucket = num_timesteps // self.every
        if bucket > self._bucket:
            self._bucket = bucket
            return True
        return False


class MonitorCallback(BaseCallback):
    """Base of the monitoring callbacks: log the state after ``train()`` every ``log_freq`` timesteps, stamped.

    Cadence, in agent timesteps (``model.num_timesteps``, i.e. env steps summed over the vectorised envs):

    * ``log_freq=None`` (default): about 100 logs per ``learn()`` (see :class:`Cadence`), capped by the algorithm's
      own granularity (at most one log per rollout for PPO/A2C). Every zoo entry thus gets >= 50 points per tag
      (the fewest: PPO on LunarLander, 61 logs, one per 16384-step rollout).
    * On-policy algorithms (any ``OnPolicyAlgorithm``): weights and RN statistics change only inside ``train()``,
      between rollouts, so logs happen at ``_on_rollout_end`` (the state the previous ``train()`` left) whenever
      ``num_timesteps`` has crossed a new multiple of ``log_freq``.
    * Off-policy algorithms (DQN, SAC, ...): at ``_on_step``, on the same multiples.
    * At ``_on_training_end`` a last log is written if the current timestep has not been logged yet, so every tag's
      steps are strictly increasing (an on-policy run whose last rollout logged does not log its final ``train()``).

    Subclasses return their values from :meth:`_records`; :attr:`hooks` holds forward hooks that are installed only
    while SB3's ``train()`` can run (from ``_on_rollout_end`` to the next ``_on_rollout_start``/training end).
    """

    def __init__(self, *, log_freq: int | None = None, verbose: int = 0) -> None:
        super().__init__(verbose=verbose)
        self.cadence = Cadence(log_freq)
        self.log_freq = log_freq
        self.hooks = TrainHooks(type(self).__name__)
        self._last_step = -1

    # ------------------------------------------------------------------ to override
    def _records(self) -> tuple[dict[str, float], dict[str, Tensor]]:
        """Scalars and histograms of one log (empty while there is nothing to report)."""
        raise NotImplementedError

    def _collect(self) -> None:
        """Called at every ``_on_step`` before the cadence check (e.g. to gather observations)."""

    # ------------------------------------------------------------------ SB3 events
    @property
    def every(self) -> int:
        """The cadence in timesteps resolved for the current ``learn()`` call."""
        return self.cadence.every

    @property
    def on_policy(self) -> bool:
        return isinstance(self.model, OnPolicyAlgorithm)

    def _on_training_start(self) -> None:
        self.hooks.close()
        start = self.num_timesteps
        if start < self._last_step:  # learn(reset_num_timesteps=True): a new TensorBoard run
            self._last_step = -1
        self.cadence.start(start, int(self.locals.get("total_timesteps", start + DEFAULT_POINTS)))

    def _on_step(self) -> bool:
        self._collect()
        if not self.on_policy and self.cadence.due(self.num_timesteps):
            self.log_now()
        return True

    def _on_rollout_start(self) -> None:
        self.hooks.close()

    def _on_rollout_end(self) -> None:
        if self.on_policy and self.cadence.due(self.num_timesteps):
            self.log_now()
        self.hooks.open()

    def _on_training_end(self) -> None:
        self.hooks.close()
        if self.num_timesteps > self._last_step:
            self.log_now()

    def log_now(self) -> bool:
        """Write the current values at ``num_timesteps`` (stamped in every format); return whether anything was written."""
        scalars, histograms = self._records()
        written = write_records(self.logger, self.num_timesteps, scalars, histograms)
        if written:
            self._last_step = self.num_timesteps
        return written

    def remove(self) -> None:
        """Remove every forward hook this callback put on the policy (idempotent)."""
        self.hooks.close()
