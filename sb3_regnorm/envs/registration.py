"""Registered ids of the non-stationary envs and their factories (the registry's entry points).

Why plain ids (no namespace): rl_zoo3 builds log paths from the id, and these stay flat. Entry points are import
strings, so ``gym.make(id, switch_every=..., clock=..., phase=...)`` forwards kwargs to the factories and subprocess
workers can rebuild the envs (a worker that has not imported ``sb3_regnorm`` can use ``gym.make("sb3_regnorm:<id>")``,
which imports the package and so calls :func:`register_envs`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

import gymnasium as gym

from sb3_regnorm.envs.schedule import LUNAR_LANDER_NONSTATIONARY_PHASES, OBS_SHIFT_CYCLE, Clock, LanderPhase
from sb3_regnorm.envs.wrappers import NonStationaryLunarLander, ObservationShiftWrapper, validate_lander_phases

__all__ = [
    "CARTPOLE_OBS_SHIFT_ID",
    "DEFAULT_SWITCH_EVERY",
    "LUNAR_LANDER_NONSTATIONARY_ID",
    "LUNAR_LANDER_OBS_SHIFT_ID",
    "REGISTERED_IDS",
    "make_cartpole_obs_shift",
    "make_lunar_lander_nonstationary",
    "make_lunar_lander_obs_shift",
    "register_envs",
]

LUNAR_LANDER_NONSTATIONARY_ID: Final = "LunarLanderNonStationary-v0"
LUNAR_LANDER_OBS_SHIFT_ID: Final = "LunarLanderObsShift-v0"
CARTPOLE_OBS_SHIFT_ID: Final = "CartPoleObsShift-v0"
REGISTERED_IDS: Final[tuple[str, ...]] = (LUNAR_LANDER_NONSTATIONARY_ID, LUNAR_LANDER_OBS_SHIFT_ID, CARTPOLE_OBS_SHIFT_ID)
DEFAULT_SWITCH_EVERY: Final[dict[str, int]] = {
    LUNAR_LANDER_NONSTATIONARY_ID: 50_000,
    LUNAR_LANDER_OBS_SHIFT_ID: 50_000,
    CARTPOLE_OBS_SHIFT_ID: 10_000,
}
"""Agent timesteps per phase of each id when ``switch_every`` is not given."""


def _raw_lunar_lander(continuous: bool, render_mode: str | None, **kwargs: Any) -> gym.Env:
    """An unwrapped LunarLander (lazy Box2D import; the registry adds TimeLimit etc. outside our wrappers)."""
    from gymnasium.envs.box2d.lunar_lander import LunarLander

    return LunarLander(render_mode=render_mode, continuous=continuous, **kwargs)


def make_lunar_lander_nonstationary(
    phases: Sequence[LanderPhase | dict[str, Any]] = LUNAR_LANDER_NONSTATIONARY_PHASES,
    switch_every: int = DEFAULT_SWITCH_EVERY[LUNAR_LANDER_NONSTATIONARY_ID],
    continuous: bool = False,
    render_mode: str | None = None,
    *,
    clock: Clock = "agent",
    phase: int | None = None,
) -> NonStationaryLunarLander:
    """Entry point of ``LunarLanderNonStationary-v0``: LunarLander with gravity/wind phases."""
    valid = validate_lander_phases(phases)
    env = _raw_lunar_lander(continuous, render_mode, **valid[0].as_dict())
    return NonStationaryLunarLander(env, valid, switch_every=switch_every, clock=clock, phase=phase)


def make_lunar_lander_obs_shift(
    switch_every: int = DEFAULT_SWITCH_EVERY[LUNAR_LANDER_OBS_SHIFT_ID],
    schedule: Sequence[Any] | str = OBS_SHIFT_CYCLE,
    continuous: bool = False,
    render_mode: str | None = None,
    **shift_kwargs: Any,
) -> ObservationShiftWrapper:
    """Entry point of ``LunarLanderObsShift-v0``: LunarLander-v3 dynamics with shifted observations."""
    return ObservationShiftWrapper(
        _raw_lunar_lander(continuous, render_mode), schedule=schedule, switch_every=switch_every, **shift_kwargs
    )


def make_cartpole_obs_shift(
    switch_every: int = DEFAULT_SWITCH_EVERY[CARTPOLE_OBS_SHIFT_ID],
    schedule: Sequence[Any] | str = OBS_SHIFT_CYCLE,
    render_mode: str | None = None,
    **shift_kwargs: Any,
) -> ObservationShiftWrapper:
    """Entry point of ``CartPoleObsShift-v0``: a quick CartPole-v1 obs-shift env for tests and smoke runs."""
    from gymnasium.envs.classic_control.cartpole import CartPoleEnv

    return ObservationShiftWrapper(
        CartPoleEnv(render_mode=render_mode), schedule=schedule, switch_every=switch_every, **shift_kwargs
    )


def register_envs() -> tuple[str, ...]:
    """Register the non-stationary env ids with gymnasium (idempotent; called when ``sb3_regnorm`` is imported).

    Returns the registered ids.
    """
    module = __name__
    specs = (
        (LUNAR_LANDER_NONSTATIONARY_ID, f"{module}:make_lunar_lander_nonstationary", 1000, 200.0),
        (LUNAR_LANDER_OBS_SHIFT_ID, f"{module}:make_lunar_lander_obs_shift", 1000, 200.0),
        (CARTPOLE_OBS_SHIFT_ID, f"{module}:make_cartpole_obs_shift", 500, 475.0),
    )
    for env_id, entry_point, max_steps, threshold in specs:
        if env_id not in gym.envs.registry:
            gym.register(id=env_id, entry_point=entry_point, max_episode_steps=max_steps, reward_threshold=threshold)
    return REGISTERED_IDS
