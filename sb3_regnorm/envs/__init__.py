"""Non-stationary environment variants for testing Regularity Normalization (RN), and a MiniGrid helper.

RN claims robustness to non-stationary inputs. These envs change their input distribution
(:class:`ObservationShiftWrapper`) or dynamics (:class:`NonStationaryLunarLander`) on a known schedule: a new phase
every ``switch_every`` **agent timesteps** (``model.num_timesteps``, summed over the sub-envs of a VecEnv), so a switch
comes at the same point of training for DQN with 1 env and PPO with 16.

Layout: :mod:`~sb3_regnorm.envs.schedule` (the :class:`PhaseSchedule` and the typed phases :class:`LanderPhase`,
:class:`ObsShift`), :mod:`~sb3_regnorm.envs.wrappers` (the two wrappers and their clock),
:mod:`~sb3_regnorm.envs.registration` (ids and factories), :mod:`~sb3_regnorm.envs.minigrid`. Gymnasium and numpy
only: Box2D and minigrid are imported lazily, SB3 not at all (the SB3 side is :mod:`sb3_regnorm.phase_clock`).

Phase API (both wrappers; for a VecEnv use ``get_attr`` / ``env_method``):

* Clock. ``clock="agent"`` (default): :class:`sb3_regnorm.phase_clock.PhaseClockCallback` pushes the agent's
  timesteps in with ``set_agent_timesteps(t)``; the env never advances itself, and stepping it before a clock value
  arrived raises (no silent per-env counter inside a VecEnv). ``clock="env"``: the fallback without SB3, counting this
  env's own ``step()`` calls. ``phase=k`` (constructor or ``gym.make``/``--env-kwargs``) starts at (and, on the agent
  clock with no callback, holds) phase ``k``, e.g. for ``rl_zoo3.enjoy``; ``set_phase(k)`` does the same later.
* Reading. Read-only properties ``phase`` (int), ``switches`` (``None`` before the first clock value), ``schedule``,
  ``switch_every``, ``clock``, ``env_steps``. Nothing is set by attribute: ``VecEnv.set_attr`` would set it on SB3's
  outer ``Monitor`` and be ignored.
* Info. Every ``step``/``reset`` adds ``info["phase"]`` (int; ``Monitor(info_keywords=("phase",))`` logs it per episode,
  the phase of the episode's last step) and a detail dict ``info["obs_shift"]`` or ``info["nonstationary"]``.
* ``schedule="random"`` draws are a pure function of (seed, switch number), the seed being the ``seed`` kwarg or the
  env's latest ``reset(seed=...)``, so ``make_vec_env(..., seed=s)`` reproduces them.

Registered ids (plain, no namespace): ``LunarLanderNonStationary-v0`` (:data:`LUNAR_LANDER_NONSTATIONARY_PHASES`,
every 50_000 agent timesteps), ``LunarLanderObsShift-v0`` (:data:`OBS_SHIFT_CYCLE`, every 50_000),
``CartPoleObsShift-v0`` (:data:`OBS_SHIFT_CYCLE`, every 10_000). ``gym.make(id, switch_every=...)`` changes the period.
"""

from sb3_regnorm.envs.minigrid import minigrid_image_env
from sb3_regnorm.envs.registration import (
    CARTPOLE_OBS_SHIFT_ID,
    DEFAULT_SWITCH_EVERY,
    LUNAR_LANDER_NONSTATIONARY_ID,
    LUNAR_LANDER_OBS_SHIFT_ID,
    REGISTERED_IDS,
    make_cartpole_obs_shift,
    make_lunar_lander_nonstationary,
    make_lunar_lander_obs_shift,
    register_envs,
)
from sb3_regnorm.envs.schedule import (
    CLOCKS,
    LUNAR_LANDER_NONSTATIONARY_PHASES,
    OBS_SHIFT_CYCLE,
    PHASE_INFO_KEY,
    Clock,
    LanderPhase,
    ObsShift,
    PhaseSchedule,
)
from sb3_regnorm.envs.wrappers import NonStationaryLunarLander, ObservationShiftWrapper, PhaseClockMixin

__all__ = [
    "CARTPOLE_OBS_SHIFT_ID",
    "CLOCKS",
    "DEFAULT_SWITCH_EVERY",
    "LUNAR_LANDER_NONSTATIONARY_ID",
    "LUNAR_LANDER_NONSTATIONARY_PHASES",
    "LUNAR_LANDER_OBS_SHIFT_ID",
    "OBS_SHIFT_CYCLE",
    "PHASE_INFO_KEY",
    "REGISTERED_IDS",
    "Clock",
    "LanderPhase",
    "NonStationaryLunarLander",
    "ObsShift",
    "ObservationShiftWrapper",
    "PhaseClockMixin",
    "PhaseSchedule",
    "make_cartpole_obs_shift",
    "make_lunar_lander_nonstationary",
    "make_lunar_lander_obs_shift",
    "minigrid_image_env",
    "register_envs",
]
