"""Non-stationary environment variants for testing Regularity Normalization (RN).

RN claims robustness to non-stationary inputs.  To test that claim we need environments whose input distribution
(:class:`ObservationShiftWrapper`) or dynamics (:class:`NonStationaryLunarLander`) change on a known schedule of
*environment steps counted over the env's lifetime* (across episodes, not reset by ``reset()``), so that a phase switch
happens at the same point of training regardless of episode lengths.

Step-counting convention (both wrappers): a lifetime counter ``total_steps`` counts calls to ``step()``.  The ``k``-th
call (1-based) runs under switch number ``(k - 1) // switch_every``, i.e. the first ``switch_every`` steps use phase 0,
the next ``switch_every`` steps phase 1, and so on.  An observation returned by ``reset()`` uses the phase of the next
step.  The current phase is reported in ``info`` on every ``step()`` and ``reset()``.

Evaluation environments are separate instances with their own counters; to evaluate "under the training phase", call
``set_total_steps(n)`` on them (reachable through ``VecEnv.env_method``) and optionally set ``frozen = True`` so that the
evaluation episodes do not advance the schedule.

This module imports only gymnasium and numpy at import time: Box2D (LunarLander) and minigrid are imported lazily inside
the functions that need them, so ``import sb3_regnorm`` works without the optional extras.

Registered ids (see :func:`register_envs`, plain ids without namespace):

* ``LunarLanderNonStationary-v0`` -- :func:`make_lunar_lander_nonstationary`, phases :data:`LUNAR_LANDER_NONSTATIONARY_PHASES`
  switched every 50_000 steps, ``max_episode_steps=1000``.
* ``LunarLanderObsShift-v0`` -- :func:`make_lunar_lander_obs_shift`, cycle :data:`OBS_SHIFT_CYCLE` every 50_000 steps.
* ``CartPoleObsShift-v0`` -- :func:`make_cartpole_obs_shift`, cycle :data:`OBS_SHIFT_CYCLE` every 10_000 steps.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, SupportsFloat

import gymnasium as gym
import numpy as np
from gymnasium import spaces

__all__ = [
    "CARTPOLE_OBS_SHIFT_ID",
    "LUNAR_LANDER_NONSTATIONARY_ID",
    "LUNAR_LANDER_NONSTATIONARY_PHASES",
    "LUNAR_LANDER_OBS_SHIFT_ID",
    "OBS_SHIFT_CYCLE",
    "REGISTERED_IDS",
    "NonStationaryLunarLander",
    "ObservationShiftWrapper",
    "make_cartpole_obs_shift",
    "make_lunar_lander_nonstationary",
    "make_lunar_lander_obs_shift",
    "minigrid_image_env",
    "register_envs",
]

LUNAR_LANDER_NONSTATIONARY_ID = "LunarLanderNonStationary-v0"
LUNAR_LANDER_OBS_SHIFT_ID = "LunarLanderObsShift-v0"
CARTPOLE_OBS_SHIFT_ID = "CartPoleObsShift-v0"
REGISTERED_IDS: tuple[str, ...] = (LUNAR_LANDER_NONSTATIONARY_ID, LUNAR_LANDER_OBS_SHIFT_ID, CARTPOLE_OBS_SHIFT_ID)

#: (scale, offset) cycle used by the registered observation-shift envs: identity, x3, +2, x0.5-1.
OBS_SHIFT_CYCLE: tuple[tuple[float, float], ...] = ((1.0, 0.0), (3.0, 0.0), (1.0, 2.0), (0.5, -1.0))

#: Phases of ``LunarLanderNonStationary-v0`` (cycled every ``switch_every`` steps): gravity -10 -> -6 -> -11 and
#: wind off -> on (wind_power 10) -> on (wind_power 15, turbulence 1.5).  Unspecified wind values keep LunarLander's
#: defaults (wind_power 15.0, turbulence_power 1.5); they are inert while ``enable_wind`` is False.
LUNAR_LANDER_NONSTATIONARY_PHASES: tuple[dict[str, Any], ...] = (
    {"gravity": -10.0, "enable_wind": False, "wind_power": 15.0, "turbulence_power": 1.5},
    {"gravity": -6.0, "enable_wind": True, "wind_power": 10.0, "turbulence_power": 1.5},
    {"gravity": -11.0, "enable_wind": True, "wind_power": 15.0, "turbulence_power": 1.5},
)

# LunarLander's constructor defaults, used for keys missing from a phase dict.
_LANDER_DEFAULTS: dict[str, Any] = {"gravity": -10.0, "enable_wind": False, "wind_power": 15.0, "turbulence_power": 1.5}

_SCHEDULES = ("cycle", "random")


def _check_switch_every(switch_every: Any) -> int:
    """Validate the phase length shared by both wrappers (a positive integer number of steps)."""
    if isinstance(switch_every, bool) or not isinstance(switch_every, (int, np.integer)) or switch_every < 1:
        raise ValueError(f"switch_every must be an integer >= 1 (number of env steps per phase), got {switch_every!r}")
    return int(switch_every)


def _check_total_steps(total_steps: Any) -> int:
    """Validate a lifetime step counter given by the user."""
    if isinstance(total_steps, bool) or not isinstance(total_steps, (int, np.integer)) or total_steps < 0:
        raise ValueError(f"total_steps must be an integer >= 0, got {total_steps!r}")
    return int(total_steps)


def _as_float_param(value: Any, name: str, where: str) -> np.ndarray:
    """Convert a scale/offset to a finite float64 array (scalar or per-dimension) with a clear error."""
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{where}: {name} must be a number or an array of numbers, got {value!r}") from exc
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{where}: {name} must be finite, got {value!r}")
    return arr


class _LifetimeSchedule:
    """A step counter over an env's lifetime (not reset by ``reset()``) that selects a phase every ``switch_every``."""

    _switch_every: int
    _total_steps: int
    frozen: bool

    def _init_schedule(self, switch_every: int) -> None:
        self._switch_every = _check_switch_every(switch_every)
        self._total_steps = 0
        self.frozen = False

    @property
    def switch_every(self) -> int:
        """Number of environment steps per phase."""
        return self._switch_every

    @property
    def total_steps(self) -> int:
        """Environment steps taken over the env's lifetime (across episodes)."""
        return self._total_steps

    def set_total_steps(self, total_steps: int) -> None:
        """Move the schedule to ``total_steps`` (e.g. to sync an evaluation env with the training env)."""
        self._total_steps = _check_total_steps(total_steps)

    @property
    def switches(self) -> int:
        """Number of phase switches so far (``total_steps // switch_every``); the next step runs under it."""
        return self._total_steps // self._switch_every


class ObservationShiftWrapper(_LifetimeSchedule, gym.ObservationWrapper):
    """Apply a piecewise-constant affine shift ``obs * scale + offset`` to Box observations.

    Why: this is a pure input-distribution shift (dynamics and rewards unchanged), the non-stationarity RN is claimed to
    be robust to.  ``(scale, offset)`` switch every ``switch_every`` environment steps counted over the wrapper's lifetime
    (not reset by ``reset()``), either cycling through ``schedule`` (a list of pairs; scale/offset may be scalars or arrays
    broadcastable to the observation shape) or, with ``schedule="random"``, drawn uniformly from ``scale_range`` and
    ``offset_range`` by ``np.random.default_rng(seed)`` (one draw per switch, reproducible for a fixed seed).

    ``info["obs_shift"] = {"phase", "switches", "scale", "offset"}`` is added on every step and reset, where ``phase`` is
    the index into the schedule list (for ``"random"``: the draw number) and ``switches`` is the number of switches so far
    (``total_steps // switch_every`` at the time of the step).

    The observation space is float32 with bounds that contain every phase: infinite bounds stay infinite, finite bounds are
    the elementwise min/max over all phases (for ``"random"``: over the corners of the ranges).

    ``schedule="cycle"`` is :data:`OBS_SHIFT_CYCLE`.  ``set_total_steps(n)`` moves the schedule (e.g. to sync an evaluation
    env with training) and ``frozen = True`` stops the counter.
    """

    def __init__(
        self,
        env: gym.Env,
        schedule: Sequence[tuple[Any, Any]] | str = OBS_SHIFT_CYCLE,
        switch_every: int = 10_000,
        *,
        scale_range: tuple[float, float] = (0.2, 5.0),
        offset_range: tuple[float, float] = (-3.0, 3.0),
        seed: int | None = None,
    ) -> None:
        """Wrap ``env``; see the class docstring for the meaning of the arguments."""
        super().__init__(env)
        space = env.observation_space
        if not isinstance(space, spaces.Box):
            raise ValueError(f"ObservationShiftWrapper needs a Box observation space, got {type(space).__name__}: {space}")
        self._init_schedule(switch_every)
        self._shape = space.shape
        self._random = False
        self._rng: np.random.Generator | None = None
        self._pairs: list[tuple[np.ndarray, np.ndarray]] = []
        self._scale_range = (1.0, 1.0)
        self._offset_range = (0.0, 0.0)

        if isinstance(schedule, str):
            if schedule == "cycle":
                schedule = OBS_SHIFT_CYCLE
            elif schedule == "random":
                self._random = True
            else:
                raise ValueError(f"unknown schedule {schedule!r}: expected one of {_SCHEDULES} or a list of (scale, offset)")

        if self._random:
            corners = self._init_random(scale_range, offset_range, seed)
        else:
            self._pairs = self._validate_pairs(schedule)
            corners = self._pairs

        low = np.asarray(space.low, dtype=np.float32)
        high = np.asarray(space.high, dtype=np.float32)
        new_low, new_high = None, None
        for scale, offset in corners:
            # Same float32 arithmetic as observation(): rounding is monotone, so transformed obs stay inside the bounds.
            a = self._affine(low, scale, offset)
            b = self._affine(high, scale, offset)
            lo, hi = np.minimum(a, b), np.maximum(a, b)
            new_low = lo if new_low is None else np.minimum(new_low, lo)
            new_high = hi if new_high is None else np.maximum(new_high, hi)
        self.observation_space = spaces.Box(low=new_low, high=new_high, shape=self._shape, dtype=np.float32)

    def _validate_pairs(self, schedule: Any) -> list[tuple[np.ndarray, np.ndarray]]:
        """Check a user-given (scale, offset) list: non-empty, finite, scale != 0, broadcastable to the obs shape."""
        try:
            items = list(schedule)
        except TypeError as exc:
            raise ValueError(
                f"schedule must be 'cycle', 'random' or a list of (scale, offset) pairs, got {schedule!r}"
            ) from exc
        if not items:
            raise ValueError("schedule is empty: give at least one (scale, offset) pair")
        pairs = []
        for i, item in enumerate(items):
            try:
                scale_raw, offset_raw = item
            except (TypeError, ValueError) as exc:
                raise ValueError(f"schedule[{i}] must be a (scale, offset) pair, got {item!r}") from exc
            scale = _as_float_param(scale_raw, "scale", f"schedule[{i}]")
            offset = _as_float_param(offset_raw, "offset", f"schedule[{i}]")
            if np.any(scale == 0):
                raise ValueError(f"schedule[{i}]: scale == 0 would erase the observation; got scale={scale_raw!r}")
            for name, arr in (("scale", scale), ("offset", offset)):
                try:
                    shape = np.broadcast_shapes(arr.shape, self._shape)
                except ValueError:
                    shape = None
                if shape != self._shape:
                    raise ValueError(
                        f"schedule[{i}]: {name} with shape {arr.shape} does not broadcast to the obs shape {self._shape}"
                    )
            pairs.append((scale, offset))
        return pairs

    def _init_random(
        self, scale_range: tuple[float, float], offset_range: tuple[float, float], seed: int | None
    ) -> list[tuple[np.ndarray, np.ndarray]]:
        """Validate the random-schedule ranges, seed the RNG and return the range corners (for the bounds)."""
        try:
            s_lo, s_hi = (float(v) for v in scale_range)
            o_lo, o_hi = (float(v) for v in offset_range)
        except (TypeError, ValueError) as exc:
            raise ValueError(
                f"scale_range and offset_range must be (low, high) pairs of numbers, got {scale_range!r}, {offset_range!r}"
            ) from exc
        for name, lo, hi in (("scale_range", s_lo, s_hi), ("offset_range", o_lo, o_hi)):
            if not (math.isfinite(lo) and math.isfinite(hi)) or lo > hi:
                raise ValueError(f"{name} must be finite with low <= high, got ({lo}, {hi})")
        if s_lo <= 0.0 <= s_hi:
            raise ValueError(f"scale_range ({s_lo}, {s_hi}) contains 0; scale == 0 would erase the observation")
        self._scale_range = (s_lo, s_hi)
        self._offset_range = (o_lo, o_hi)
        self._rng = np.random.default_rng(seed)
        return [(np.asarray(s), np.asarray(o)) for s in (s_lo, s_hi) for o in (o_lo, o_hi)]

    @staticmethod
    def _affine(x: np.ndarray, scale: np.ndarray, offset: np.ndarray) -> np.ndarray:
        """Compute ``x * scale + offset`` in float32."""
        return (np.asarray(x, dtype=np.float32) * scale.astype(np.float32) + offset.astype(np.float32)).astype(np.float32)

    # ------------------------------------------------------------------ schedule state
    @property
    def phase(self) -> int:
        """Index of the current (scale, offset) in the schedule list; for ``"random"``, the draw number."""
        return self.switches if self._random else self.switches % len(self._pairs)

    def _current_pair(self) -> tuple[np.ndarray, np.ndarray]:
        """Return the current (scale, offset), drawing lazily (in phase order) for the random schedule."""
        if self._random:
            assert self._rng is not None
            while len(self._pairs) <= self.phase:
                scale = self._rng.uniform(*self._scale_range)
                offset = self._rng.uniform(*self._offset_range)
                self._pairs.append((np.asarray(scale), np.asarray(offset)))
        return self._pairs[self.phase]

    @staticmethod
    def _public(value: np.ndarray) -> float | np.ndarray:
        """Return a scalar as float and an array as a copy, for properties and info."""
        return float(value) if value.ndim == 0 else value.copy()

    @property
    def scale(self) -> float | np.ndarray:
        """Current multiplicative factor."""
        return self._public(self._current_pair()[0])

    @property
    def offset(self) -> float | np.ndarray:
        """Current additive offset."""
        return self._public(self._current_pair()[1])

    def _info(self) -> dict[str, Any]:
        """Describe the current phase for ``info["obs_shift"]``."""
        return {"phase": self.phase, "switches": self.switches, "scale": self.scale, "offset": self.offset}

    # ------------------------------------------------------------------ gym API
    def observation(self, observation: Any) -> np.ndarray:
        """Apply the current affine shift."""
        scale, offset = self._current_pair()
        return self._affine(observation, scale, offset)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict[str, Any]]:
        """Reset the inner env; the step counter is NOT reset (phases run over the wrapper's lifetime)."""
        obs, info = self.env.reset(seed=seed, options=options)
        info = dict(info)
        info["obs_shift"] = self._info()
        return self.observation(obs), info

    def step(self, action: Any) -> tuple[np.ndarray, SupportsFloat, bool, bool, dict[str, Any]]:
        """Step the inner env, shift the observation with this step's phase, then advance the lifetime counter."""
        obs, reward, terminated, truncated, info = self.env.step(action)
        info = dict(info)
        info["obs_shift"] = self._info()
        obs = self.observation(obs)
        if not self.frozen:
            self._total_steps += 1
        return obs, reward, terminated, truncated, info


def _validate_lander_phases(phases: Any) -> list[dict[str, Any]]:
    """Check LunarLander phase dicts and fill missing keys with LunarLander's defaults."""
    try:
        items = list(phases)
    except TypeError as exc:
        raise ValueError(f"phases must be a list of dicts, got {phases!r}") from exc
    if not items:
        raise ValueError("phases is empty: give at least one phase dict")
    out = []
    for i, phase in enumerate(items):
        if not isinstance(phase, Mapping):
            raise ValueError(f"phases[{i}] must be a dict like {_LANDER_DEFAULTS}, got {phase!r}")
        unknown = set(phase) - set(_LANDER_DEFAULTS)
        if unknown:
            raise ValueError(f"phases[{i}] has unknown keys {sorted(unknown)}; allowed: {sorted(_LANDER_DEFAULTS)}")
        p = {**_LANDER_DEFAULTS, **phase}
        try:
            gravity = float(p["gravity"])
            wind_power = float(p["wind_power"])
            turbulence_power = float(p["turbulence_power"])
        except (TypeError, ValueError) as exc:
            raise ValueError(f"phases[{i}]: gravity, wind_power and turbulence_power must be numbers, got {phase!r}") from exc
        if not -12.0 < gravity < 0.0:
            raise ValueError(f"phases[{i}]: gravity must be in (-12, 0) as LunarLander asserts, got {p['gravity']!r}")
        if not 0.0 <= wind_power <= 20.0:
            raise ValueError(f"phases[{i}]: wind_power must be in [0, 20], got {p['wind_power']!r}")
        if not 0.0 <= turbulence_power <= 2.0:
            raise ValueError(f"phases[{i}]: turbulence_power must be in [0, 2], got {p['turbulence_power']!r}")
        if not isinstance(p["enable_wind"], (bool, np.bool_)):
            raise ValueError(f"phases[{i}]: enable_wind must be a bool, got {p['enable_wind']!r}")
        out.append(
            {
                "gravity": gravity,
                "enable_wind": bool(p["enable_wind"]),
                "wind_power": wind_power,
                "turbulence_power": turbulence_power,
            }
        )
    return out


class NonStationaryLunarLander(_LifetimeSchedule, gym.Wrapper):
    """LunarLander whose gravity and wind change every ``switch_every`` steps (counted over the env's lifetime).

    Why: a dynamics (not just input) shift with a known schedule, to test whether RN helps an agent re-adapt.  ``phases``
    is a list of dicts with keys ``gravity`` (in (-12, 0)), ``enable_wind`` (bool), ``wind_power`` (in [0, 20]) and
    ``turbulence_power`` (in [0, 2]); missing keys take LunarLander's defaults.  The phases are cycled.

    A switch takes effect immediately, also mid-episode: the wrapper sets the unwrapped env's ``gravity``, ``enable_wind``,
    ``wind_power`` and ``turbulence_power`` attributes (read by ``reset()`` and ``step()``) and the live Box2D
    ``world.gravity`` (fixed at world construction otherwise).  Because LunarLander's ``reset()`` rebuilds the world, the
    parameters are set again before and after each reset.  ``info["nonstationary"]`` holds ``phase`` (index into
    ``phases``), ``switches`` and the four parameters of the phase the step ran under.  ``set_total_steps(n)`` and
    ``frozen`` work as in :class:`ObservationShiftWrapper`.
    """

    def __init__(self, env: gym.Env, phases: Sequence[Mapping[str, Any]], switch_every: int = 50_000) -> None:
        """Wrap a LunarLander ``env``; see the class docstring for the arguments."""
        super().__init__(env)
        base = env.unwrapped
        missing = [a for a in ("world", "gravity", "enable_wind", "wind_power", "turbulence_power") if not hasattr(base, a)]
        if missing:
            raise ValueError(f"NonStationaryLunarLander needs a LunarLander env; {type(base).__name__} lacks {missing}")
        self._phases = _validate_lander_phases(phases)
        self._init_schedule(switch_every)
        self._applied: int | None = None
        self._apply(self.phase)

    @property
    def phases(self) -> list[dict[str, Any]]:
        """The validated phase dicts (copies)."""
        return [dict(p) for p in self._phases]

    def set_total_steps(self, total_steps: int) -> None:
        """Move the schedule to ``total_steps`` and apply that phase now (e.g. to sync an evaluation env)."""
        super().set_total_steps(total_steps)
        self._apply(self.phase)

    @property
    def phase(self) -> int:
        """Index into ``phases`` of the phase the next step runs under."""
        return self.switches % len(self._phases)

    @property
    def current_params(self) -> dict[str, Any]:
        """The current phase's parameters."""
        return dict(self._phases[self.phase])

    def _apply(self, phase: int) -> None:
        """Write a phase's parameters into the live LunarLander (attributes and Box2D world gravity)."""
        base = self.env.unwrapped
        params = self._phases[phase]
        base.gravity = params["gravity"]
        base.enable_wind = params["enable_wind"]
        base.wind_power = params["wind_power"]
        base.turbulence_power = params["turbulence_power"]
        if getattr(base, "world", None) is not None:
            base.world.gravity = (0.0, params["gravity"])
        # reset() draws the wind pattern indices only when wind is on; if wind is switched on mid-episode after a
        # wind-free reset they do not exist yet, so draw them the same way.
        if params["enable_wind"] and not (hasattr(base, "wind_idx") and hasattr(base, "torque_idx")):
            base.wind_idx = base.np_random.integers(-9999, 9999)
            base.torque_idx = base.np_random.integers(-9999, 9999)
        self._applied = phase

    def _info(self) -> dict[str, Any]:
        """Describe the current phase for ``info["nonstationary"]``."""
        return {"phase": self.phase, "switches": self.switches, **self._phases[self.phase]}

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[Any, dict[str, Any]]:
        """Reset under the current phase; the step counter is NOT reset."""
        phase = self.phase
        self._apply(phase)  # before: reset() builds the world from ``gravity`` and draws wind indices if wind is on
        obs, info = self.env.reset(seed=seed, options=options)
        self._apply(phase)  # after: make sure the rebuilt world has this phase's gravity
        info = dict(info)
        info["nonstationary"] = self._info()
        return obs, info

    def step(self, action: Any) -> tuple[Any, SupportsFloat, bool, bool, dict[str, Any]]:
        """Step under the current phase, advance the lifetime counter and apply the next phase if a switch is due."""
        phase = self.phase
        if phase != self._applied:
            self._apply(phase)
        info_ns = self._info()
        obs, reward, terminated, truncated, info = self.env.step(action)
        info = dict(info)
        info["nonstationary"] = info_ns
        if not self.frozen:
            self._total_steps += 1
            if self.phase != self._applied:
                self._apply(self.phase)  # eagerly, so the live env always matches ``phase`` between steps
        return obs, reward, terminated, truncated, info


# ---------------------------------------------------------------------- factories (registry entry points)
def _raw_lunar_lander(continuous: bool, render_mode: str | None, **kwargs: Any) -> gym.Env:
    """Build an unwrapped LunarLander (lazy Box2D import; the registry adds TimeLimit etc. outside our wrappers)."""
    from gymnasium.envs.box2d.lunar_lander import LunarLander

    return LunarLander(render_mode=render_mode, continuous=continuous, **kwargs)


def make_lunar_lander_nonstationary(
    phases: Sequence[Mapping[str, Any]] = LUNAR_LANDER_NONSTATIONARY_PHASES,
    switch_every: int = 50_000,
    continuous: bool = False,
    render_mode: str | None = None,
) -> NonStationaryLunarLander:
    """Entry point of ``LunarLanderNonStationary-v0``: LunarLander with gravity/wind phases (importable for subprocesses)."""
    valid = _validate_lander_phases(phases)
    first = valid[0]
    env = _raw_lunar_lander(
        continuous,
        render_mode,
        gravity=first["gravity"],
        enable_wind=first["enable_wind"],
        wind_power=first["wind_power"],
        turbulence_power=first["turbulence_power"],
    )
    return NonStationaryLunarLander(env, valid, switch_every=switch_every)


def make_lunar_lander_obs_shift(
    switch_every: int = 50_000,
    schedule: Sequence[tuple[Any, Any]] | str = OBS_SHIFT_CYCLE,
    continuous: bool = False,
    render_mode: str | None = None,
    **shift_kwargs: Any,
) -> ObservationShiftWrapper:
    """Entry point of ``LunarLanderObsShift-v0``: LunarLander-v3 dynamics with shifted observations."""
    return ObservationShiftWrapper(
        _raw_lunar_lander(continuous, render_mode), schedule=schedule, switch_every=switch_every, **shift_kwargs
    )


def make_cartpole_obs_shift(
    switch_every: int = 10_000,
    schedule: Sequence[tuple[Any, Any]] | str = OBS_SHIFT_CYCLE,
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

    Why plain ids (no namespace): rl_zoo3 builds log paths from the id, and these stay flat.  Entry points are import
    strings, so ``gym.make(id, switch_every=...)`` forwards kwargs to the factories and subprocess workers can rebuild
    the envs (a worker that has not imported ``sb3_regnorm`` can use ``gym.make("sb3_regnorm:<id>")``, which
    imports the package and so calls this function).
    Returns the registered ids.
    """
    specs = (
        (LUNAR_LANDER_NONSTATIONARY_ID, "sb3_regnorm.envs:make_lunar_lander_nonstationary", 1000, 200.0),
        (LUNAR_LANDER_OBS_SHIFT_ID, "sb3_regnorm.envs:make_lunar_lander_obs_shift", 1000, 200.0),
        (CARTPOLE_OBS_SHIFT_ID, "sb3_regnorm.envs:make_cartpole_obs_shift", 500, 475.0),
    )
    for env_id, entry_point, max_steps, threshold in specs:
        if env_id not in gym.envs.registry:
            gym.register(id=env_id, entry_point=entry_point, max_episode_steps=max_steps, reward_threshold=threshold)
    return REGISTERED_IDS


def minigrid_image_env(env_id: str, **kwargs: Any) -> gym.Env:
    """Make a MiniGrid/BabyAI env with only its image observation (``ImgObsWrapper``), for CNN/MLP policies.

    Why: MiniGrid's dict observations (image, direction, mission) do not fit SB3's default policies; the image alone is a
    Box.  minigrid is imported here, lazily, so the package imports without it.
    """
    try:
        import minigrid  # noqa: F401  (registers the MiniGrid-* / BabyAI-* ids)
        from minigrid.wrappers import ImgObsWrapper
    except ImportError as exc:  # pragma: no cover - minigrid is a declared dependency
        raise ImportError("minigrid_image_env needs the 'minigrid' package: pip install minigrid") from exc

    spec = gym.envs.registry.get(env_id) if isinstance(env_id, str) else None
    entry = getattr(spec, "entry_point", None)
    module = entry if isinstance(entry, str) else getattr(entry, "__module__", "")
    if spec is None or not str(module).startswith("minigrid"):
        raise ValueError(f"{env_id!r} is not a registered MiniGrid id (expected e.g. 'MiniGrid-Empty-5x5-v0')")
    return ImgObsWrapper(gym.make(env_id, **kwargs))
