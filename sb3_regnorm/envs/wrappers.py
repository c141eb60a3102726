"""The two non-stationary wrappers and the phase clock they share.

Clock (both wrappers, see :class:`PhaseClockMixin`):

* ``clock="agent"`` (default): the phase is pushed in from outside with ``set_agent_timesteps(t)``, where ``t`` is the
  agent's total timesteps (``model.num_timesteps``, summed over all sub-envs), by
  :class:`sb3_regnorm.phase_clock.PhaseClockCallback` through ``VecEnv.env_method``. The env never advances the schedule
  itself, so evaluation episodes cannot move it. Stepping before any clock value arrived raises a ``RuntimeError``
  (unless a ``phase=`` was given): an env that silently ran its own counter inside an ``n_envs`` VecEnv would switch
  ``n_envs`` times too late.
* ``clock="env"``: the fallback for use without SB3; the env counts its own ``step()`` calls over its lifetime (across
  episodes, not reset by ``reset()``). The ``k``-th call (1-based) runs under switch ``(k - 1) // switch_every``.

Every mutation is a method (reachable through ``VecEnv.env_method``); the state is exposed as read-only properties,
because ``VecEnv.set_attr`` sets attributes on the outermost wrapper (SB3's ``Monitor``), where an assignment would be
silently ignored. No name collides with ``Monitor``'s (``total_steps``, ``rewards``, ...).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, SupportsFloat

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from sb3_regnorm.envs.schedule import (
    CLOCKS,
    LUNAR_LANDER_NONSTATIONARY_PHASES,
    OBS_SHIFT_CYCLE,
    PHASE_INFO_KEY,
    Clock,
    LanderPhase,
    ObsShift,
    PhaseSchedule,
    check_count,
    finite_range,
)

__all__ = ["NonStationaryLunarLander", "ObservationShiftWrapper", "PhaseClockMixin"]

_SCHEDULES = ("cycle", "random")


class PhaseClockMixin:
    """Phase state shared by both wrappers: the :class:`PhaseSchedule`, the clock and the current switch count."""

    _schedule: PhaseSchedule
    _clock: Clock
    _switches: int | None
    _env_steps: int
    _own_clock_steps: int

    def _init_clock(self, schedule: PhaseSchedule, clock: str, phase: int | None) -> None:
        if clock not in CLOCKS:
            raise ValueError(f"clock must be one of {CLOCKS}, got {clock!r}")
        self._schedule = schedule
        self._clock = clock
        self._env_steps = 0
        self._own_clock_steps = 0
        self._switches = None if clock == "agent" else 0
        if phase is not None:
            self.set_phase(phase)

    # ------------------------------------------------------------------ read-only state
    @property
    def schedule(self) -> PhaseSchedule:
        """When phases switch (``switch_every``) and how many there are; the clock callback reads it."""
        return self._schedule

    @property
    def clock(self) -> Clock:
        """``"agent"`` (phase pushed by the training loop) or ``"env"`` (the env's own step counter)."""
        return self._clock

    @property
    def switch_every(self) -> int:
        """Timesteps per phase: the agent's on the agent clock, this env's own on the env clock."""
        return self._schedule.switch_every

    @property
    def env_steps(self) -> int:
        """``step()`` calls of this env over its lifetime (diagnostics; it drives the phase only on the env clock)."""
        return self._env_steps

    @property
    def switches(self) -> int | None:
        """Switches so far (``timesteps // switch_every``); ``None`` on the agent clock before any clock value arrived."""
        return self._switches

    @property
    def phase(self) -> int:
        """Phase index the next step runs under (cycled phase index; for a random schedule, the draw number)."""
        return self._schedule.phase_of(self._switches or 0)

    # ------------------------------------------------------------------ setting the clock (methods: env_method works)
    def set_agent_timesteps(self, timesteps: int) -> int:
        """Move to the phase of agent timestep ``timesteps`` (pushed by the clock callback); return the phase.

        Raises ``RuntimeError`` on the env clock: two clocks driving one schedule would disagree.
        """
        if self._clock != "agent":
            raise RuntimeError(
                f"{type(self).__name__} runs on its own clock (clock='env'); a training-loop clock cannot drive it. "
                "Make the env with clock='agent' (the default) to follow the agent's timesteps."
            )
        self._goto(self._schedule.switches_at(timesteps))
        return self.phase

    def set_phase(self, phase: int) -> int:
        """Hold the start of phase ``phase`` (e.g. to evaluate a named phase); on the env clock, count on from there."""
        switches = check_count(phase, "phase")
        n_phases = self._schedule.n_phases
        if n_phases is not None and switches >= n_phases:
            raise ValueError(f"phase must be < {n_phases} (the number of phases), got {phase!r}")
        self._own_clock_steps = switches * self._schedule.switch_every
        self._goto(switches)
        return self.phase

    # ------------------------------------------------------------------ hooks for the wrappers
    def _goto(self, switches: int) -> None:
        changed = switches != self._switches
        self._switches = switches
        if changed:
            self._on_phase_change()

    def _on_phase_change(self) -> None:
        """Called after the switch count changed (the lander writes its physics here)."""

    def _before_step(self) -> None:
        if self._switches is None:
            raise RuntimeError(
                f"{type(self).__name__} is on the agent's clock (clock='agent') but no clock value has arrived. Train with "
                "sb3_regnorm.PhaseClockCallback (the zoo's non-stationary entries wire it in), or call "
                "set_agent_timesteps(t) / set_phase(k) first (through VecEnv.env_method for a VecEnv), or make the env "
                "with phase=k to hold a phase, or with clock='env' to count its own steps without SB3."
            )

    def _after_step(self) -> None:
        self._env_steps += 1
        if self._clock == "env":
            self._own_clock_steps += 1
            self._goto(self._schedule.switches_at(self._own_clock_steps))

    def _phase_info(self) -> dict[str, Any]:
        return {"phase": self.phase, "switches": self._switches}


class ObservationShiftWrapper(PhaseClockMixin, gym.ObservationWrapper):
    """Apply a piecewise-constant affine shift ``obs * scale + offset`` to Box observations.

    Why: a pure input-distribution shift (dynamics and rewards unchanged), the non-stationarity RN is claimed to be
    robust to. The shift switches every ``switch_every`` timesteps (see the module docstring for the clock), either
    cycling through ``schedule`` (:class:`ObsShift` values or ``(scale, offset)`` pairs; ``"cycle"`` is
    :data:`OBS_SHIFT_CYCLE`) or, with ``schedule="random"``, drawn uniformly from ``scale_range`` and ``offset_range``.

    Random draws are a pure function of (schedule seed, switch number): the schedule seed is ``seed`` if given (one
    sequence shared by every sub-env made with it), else the seed of the latest ``reset(seed=...)``, so
    ``make_vec_env(..., seed=s)`` reproduces it (sub-env ``i`` draws from ``s + i``); unseeded, it is drawn from entropy.

    ``info["phase"]`` (an int) and ``info["obs_shift"] = {"phase", "switches", "scale", "offset"}`` are added on every
    step and reset; an observation carries the shift of the phase the env was in when it was produced.

    The observation space is float32 with bounds that contain every phase: infinite bounds stay infinite, finite bounds
    are the elementwise min/max over all phases (for ``"random"``: over the corners of the ranges).
    """

    def __init__(
        self,
        env: gym.Env,
        schedule: Sequence[Any] | str = OBS_SHIFT_CYCLE,
        switch_every: int = 10_000,
        *,
        clock: Clock = "agent",
        phase: int | None = None,
        scale_range: tuple[float, float] = (0.2, 5.0),
        offset_range: tuple[float, float] = (-3.0, 3.0),
        seed: int | None = None,
    ) -> None:
        """Wrap ``env``; see the class docstring for the meaning of the arguments."""
        super().__init__(env)
        space = env.observation_space
        if not isinstance(space, spaces.Box):
            raise ValueError(f"ObservationShiftWrapper needs a Box observation space, got {type(space).__name__}: {space}")
        self._shape = space.shape
        self._phases: tuple[ObsShift, ...] = ()
        self._drawn: dict[int, ObsShift] = {}
        self._fixed_seed = None if seed is None else check_count(seed, "seed")
        entropy = np.random.SeedSequence().entropy
        assert isinstance(entropy, int)
        self._schedule_seed: int = self._fixed_seed if self._fixed_seed is not None else entropy
        if isinstance(schedule, str):
            if schedule not in _SCHEDULES:
                raise ValueError(f"unknown schedule {schedule!r}: expected one of {_SCHEDULES} or a list of (scale, offset)")
            self._random = schedule == "random"
            if not self._random:
                schedule = OBS_SHIFT_CYCLE
        else:
            self._random = False
        if self._random:
            self._scale_range = finite_range(scale_range, "scale_range")
            self._offset_range = finite_range(offset_range, "offset_range")
            if self._scale_range[0] <= 0.0 <= self._scale_range[1]:
                raise ValueError(f"scale_range {self._scale_range} contains 0; scale == 0 would erase the observation")
            corners = [ObsShift(s, o) for s in self._scale_range for o in self._offset_range]
        else:
            self._phases = self._validate_phases(schedule)
            corners = list(self._phases)
        self._init_clock(PhaseSchedule(switch_every, None if self._random else len(self._phases)), clock, phase)
        self.observation_space = self._bounds(space, corners)

    def _validate_phases(self, schedule: Any) -> tuple[ObsShift, ...]:
        """Check a user-given schedule: non-empty, each phase valid and broadcastable to the observation shape."""
        try:
            items = list(schedule)
        except TypeError as exc:
            raise ValueError(
                f"schedule must be 'cycle', 'random' or a list of (scale, offset) pairs, got {schedule!r}"
            ) from exc
        if not items:
            raise ValueError("schedule is empty: give at least one (scale, offset) pair")
        phases = []
        for i, item in enumerate(items):
            shift = ObsShift.coerce(item, f"schedule[{i}]")
            for name, arr in zip(("scale", "offset"), shift.arrays(), strict=True):
                try:
                    shape = np.broadcast_shapes(arr.shape, self._shape)
                except ValueError:
                    shape = None
                if shape != self._shape:
                    raise ValueError(
                        f"schedule[{i}]: {name} with shape {arr.shape} does not broadcast to the obs shape {self._shape}"
                    )
            phases.append(shift)
        return tuple(phases)

    def _bounds(self, space: spaces.Box, corners: list[ObsShift]) -> spaces.Box:
        """A float32 Box containing every phase's image of ``space`` (same float32 arithmetic as ``observation``)."""
        low = np.asarray(space.low, dtype=np.float32)
        high = np.asarray(space.high, dtype=np.float32)
        new_low: np.ndarray | None = None
        new_high: np.ndarray | None = None
        for shift in corners:
            a, b = self._affine(low, shift), self._affine(high, shift)
            lo, hi = np.minimum(a, b), np.maximum(a, b)
            new_low = lo if new_low is None else np.minimum(new_low, lo)
            new_high = hi if new_high is None else np.maximum(new_high, hi)
        assert new_low is not None and new_high is not None
        return spaces.Box(low=new_low, high=new_high, shape=self._shape, dtype=np.float32)

    @staticmethod
    def _affine(x: Any, shift: ObsShift) -> np.ndarray:
        scale, offset = shift.arrays()
        return (np.asarray(x, dtype=np.float32) * scale + offset).astype(np.float32)

    # ------------------------------------------------------------------ phase values
    @property
    def schedule_seed(self) -> int:
        """Seed of the random draws (the ``seed`` argument, else the latest ``reset(seed=...)``, else entropy)."""
        return self._schedule_seed

    def shift_for(self, switches: int) -> ObsShift:
        """The shift after ``switches`` switches (for ``"random"``: drawn from (schedule seed, ``switches``))."""
        switches = check_count(switches, "switches")
        if not self._random:
            return self._phases[switches % len(self._phases)]
        if switches not in self._drawn:
            rng = np.random.default_rng([self._schedule_seed, switches])
            self._drawn[switches] = ObsShift(rng.uniform(*self._scale_range), rng.uniform(*self._offset_range))
        return self._drawn[switches]

    @property
    def current_shift(self) -> ObsShift:
        """The shift the next step applies."""
        return self.shift_for(self._switches or 0)

    @property
    def scale(self) -> float | np.ndarray:
        """Current multiplicative factor."""
        return self.current_shift.public()[0]

    @property
    def offset(self) -> float | np.ndarray:
        """Current additive offset."""
        return self.current_shift.public()[1]

    def _info(self) -> dict[str, Any]:
        scale, offset = self.current_shift.public()
        return {**self._phase_info(), "scale": scale, "offset": offset}

    # ------------------------------------------------------------------ gym API
    def observation(self, observation: Any) -> np.ndarray:
        """Apply the current affine shift."""
        return self._affine(observation, self.current_shift)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict[str, Any]]:
        """Reset the inner env (a seed also reseeds unseeded random draws); the schedule position is kept."""
        if seed is not None and self._fixed_seed is None and seed != self._schedule_seed:
            self._schedule_seed = int(seed)
            self._drawn.clear()
        obs, info = self.env.reset(seed=seed, options=options)
        info = dict(info)
        info[PHASE_INFO_KEY] = self.phase
        info["obs_shift"] = self._info()
        return self.observation(obs), info

    def step(self, action: Any) -> tuple[np.ndarray, SupportsFloat, bool, bool, dict[str, Any]]:
        """Step the inner env and shift the observation with this step's phase; the env clock then counts the step."""
        self._before_step()
        obs, reward, terminated, truncated, info = self.env.step(action)
        info = dict(info)
        info[PHASE_INFO_KEY] = self.phase
        info["obs_shift"] = self._info()
        obs = self.observation(obs)
        self._after_step()
        return obs, reward, terminated, truncated, info


class NonStationaryLunarLander(PhaseClockMixin, gym.Wrapper):
    """LunarLander whose gravity and wind change every ``switch_every`` timesteps (see the module docstring's clock).

    Why: a dynamics (not just input) shift with a known schedule, to test whether RN helps an agent re-adapt.
    ``phases`` are :class:`LanderPhase` values (or dicts of their fields), cycled.

    A switch takes effect immediately, also mid-episode: the wrapper sets the unwrapped env's ``gravity``,
    ``enable_wind``, ``wind_power`` and ``turbulence_power`` (read by ``reset()`` and ``step()``) and the live Box2D
    ``world.gravity`` (fixed at world construction otherwise). Because LunarLander's ``reset()`` rebuilds the world, the
    parameters are set again before and after each reset. ``info["phase"]`` (an int) and ``info["nonstationary"]``
    (``phase``, ``switches`` and the four parameters of the phase the step ran under) are added on every step and reset.
    """

    def __init__(
        self,
        env: gym.Env,
        phases: Sequence[LanderPhase | dict[str, Any]] = LUNAR_LANDER_NONSTATIONARY_PHASES,
        switch_every: int = 50_000,
        *,
        clock: Clock = "agent",
        phase: int | None = None,
    ) -> None:
        """Wrap a LunarLander ``env``; see the class docstring for the arguments."""
        super().__init__(env)
        base = env.unwrapped
        missing = [a for a in ("world", "gravity", "enable_wind", "wind_power", "turbulence_power") if not hasattr(base, a)]
        if missing:
            raise ValueError(f"NonStationaryLunarLander needs a LunarLander env; {type(base).__name__} lacks {missing}")
        self._phases = validate_lander_phases(phases)
        self._init_clock(PhaseSchedule(switch_every, len(self._phases)), clock, phase)
        self._apply()

    @property
    def phases(self) -> tuple[LanderPhase, ...]:
        """The validated phases."""
        return self._phases

    @property
    def current_phase(self) -> LanderPhase:
        """The phase the next step runs under."""
        return self._phases[self.phase]

    def _on_phase_change(self) -> None:
        self._apply()

    def _apply(self) -> None:
        """Write the current phase into the live LunarLander (attributes and Box2D world gravity)."""
        base: Any = self.env.unwrapped
        params = self.current_phase
        base.gravity = params.gravity
        base.enable_wind = params.enable_wind
        base.wind_power = params.wind_power
        base.turbulence_power = params.turbulence_power
        if getattr(base, "world", None) is not None:
            base.world.gravity = (0.0, params.gravity)
        # reset() draws the wind pattern indices only when wind is on; if wind is switched on mid-episode after a
        # wind-free reset they do not exist yet, so draw them the same way.
        if params.enable_wind and not (hasattr(base, "wind_idx") and hasattr(base, "torque_idx")):
            base.wind_idx = base.np_random.integers(-9999, 9999)
            base.torque_idx = base.np_random.integers(-9999, 9999)

    def _info(self) -> dict[str, Any]:
        return {**self._phase_info(), **self.current_phase.as_dict()}

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[Any, dict[str, Any]]:
        """Reset under the current phase; the schedule position is kept."""
        self._apply()  # before: reset() builds the world from ``gravity`` and draws wind indices if wind is on
        obs, info = self.env.reset(seed=seed, options=options)
        self._apply()  # after: make sure the rebuilt world has this phase's gravity
        info = dict(info)
        info[PHASE_INFO_KEY] = self.phase
        info["nonstationary"] = self._info()
        return obs, info

    def step(self, action: Any) -> tuple[Any, SupportsFloat, bool, bool, dict[str, Any]]:
        """Step under the current phase; on the env clock, count the step (and apply the next phase if one is due)."""
        self._before_step()
        info_ns = self._info()
        phase = self.phase
        obs, reward, terminated, truncated, info = self.env.step(action)
        info = dict(info)
        info[PHASE_INFO_KEY] = phase
        info["nonstationary"] = info_ns
        self._after_step()
        return obs, reward, terminated, truncated, info


def validate_lander_phases(phases: Any) -> tuple[LanderPhase, ...]:
    """Check LunarLander phases (:class:`LanderPhase` values or dicts of their fields) once."""
    try:
        items = list(phases)
    except TypeError as exc:
        raise ValueError(f"phases must be a list of LanderPhase values or dicts, got {phases!r}") from exc
    if not items:
        raise ValueError("phases is empty: give at least one phase")
    return tuple(LanderPhase.coerce(p, f"phases[{i}]") for i, p in enumerate(items))
