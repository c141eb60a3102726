"""Regularity Normalization (incremental-MDL normalization) for Stable-Baselines3.

Importing the package registers its non-stationary gymnasium environments (see :mod:`sb3_regnorm.envs`), so
``rl_zoo3 --gym-packages sb3_regnorm`` and subprocess workers find them.
"""

from sb3_regnorm.callbacks import RegularityCallback
from sb3_regnorm.diagnostics import DiagnosticsCallback
from sb3_regnorm.envs import (
    LanderPhase,
    NonStationaryLunarLander,
    ObservationShiftWrapper,
    ObsShift,
    PhaseSchedule,
    minigrid_image_env,
    register_envs,
)
from sb3_regnorm.extractors import MinigridCNN, RNMlpExtractor
from sb3_regnorm.layers import VARIANTS, RegularityNorm, find_regularity_norms
from sb3_regnorm.nets import NORMS
from sb3_regnorm.phase_clock import PhaseClockCallback
from sb3_regnorm.policies import RNActorCriticCnnPolicy, RNActorCriticPolicy, RNDQNCnnPolicy, RNDQNPolicy
from sb3_regnorm.probes import RegularityProbeCallback
from sb3_regnorm.version import __version__

register_envs()

__all__ = [
    "NORMS",
    "VARIANTS",
    "DiagnosticsCallback",
    "LanderPhase",
    "MinigridCNN",
    "NonStationaryLunarLander",
    "ObsShift",
    "ObservationShiftWrapper",
    "PhaseClockCallback",
    "PhaseSchedule",
    "RNActorCriticCnnPolicy",
    "RNActorCriticPolicy",
    "RNDQNCnnPolicy",
    "RNDQNPolicy",
    "RNMlpExtractor",
    "RegularityCallback",
    "RegularityNorm",
    "RegularityProbeCallback",
    "__version__",
    "find_regularity_norms",
    "minigrid_image_env",
    "register_envs",
]
