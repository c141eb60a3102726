"""When phases switch (:class:`PhaseSchedule`) and what a phase is (:class:`LanderPhase`, :class:`ObsShift`).

Why a module of its own: the schedule is a pure function of a timestep count, validated once and shared by both
wrappers and by the SB3 clock callback (:mod:`sb3_regnorm.phase_clock`), which must agree on it exactly. The phases
are small frozen values, checked when they are built, so the wrappers never re-validate a phase while stepping.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any, Final, Literal

import numpy as np

__all__ = [
    "CLOCKS",
    "LUNAR_LANDER_NONSTATIONARY_PHASES",
    "OBS_SHIFT_CYCLE",
    "PHASE_INFO_KEY",
    "Clock",
    "LanderPhase",
    "ObsShift",
    "PhaseSchedule",
    "check_count",
]

Clock = Literal["agent", "env"]
CLOCKS: Final[tuple[Clock, ...]] = ("agent", "env")
PHASE_INFO_KEY: Final = "phase"
"""``info[PHASE_INFO_KEY]`` is the int phase of the step (or reset) that returned it, in both wrappers.

A plain int so that SB3's ``Monitor(info_keywords=("phase",))`` (rl_zoo3: ``monitor_kwargs``) can write it per episode.
"""


def check_count(value: Any, name: str, minimum: int = 0) -> int:
    """Validate a count (an int, not a bool, ``>= minimum``) with a message that names it."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


@dataclass(frozen=True)
class PhaseSchedule:
    """Phases switch every ``switch_every`` timesteps; ``n_phases`` phases are cycled (``None``: unbounded, e.g. random).

    The timesteps are the agent's (``model.num_timesteps``, summed over the sub-envs of a VecEnv) when the env runs on
    the agent's clock, or the env's own ``step()`` calls on its fallback clock (``clock="env"``).
    """

    switch_every: int
    n_phases: int | None = None

    def __post_init__(self) -> None:
        check_count(self.switch_every, "switch_every (timesteps per phase)", 1)
        if self.n_phases is not None:
            check_count(self.n_phases, "n_phases", 1)

    def switches_at(self, timesteps: int) -> int:
        """Switches that happened before timestep ``timesteps`` (0-based count of timesteps already taken)."""
        return check_count(timesteps, "timesteps") // self.switch_every

    def phase_of(self, switches: int) -> int:
        """The phase index after ``switches`` switches (cycled when the number of phases is finite)."""
        switches = check_count(switches, "switches")
        return switches if self.n_phases is None else switches % self.n_phases

    def phase_at(self, timesteps: int) -> int:
        """The phase that the step after ``timesteps`` timesteps runs under."""
        return self.phase_of(self.switches_at(timesteps))

    def switch_timesteps(self, total: int) -> list[int]:
        """Agent timesteps at which a switch happens within a budget of ``total`` timesteps (``k * switch_every < total``)."""
        return list(range(self.switch_every, check_count(total, "total"), self.switch_every))


@dataclass(frozen=True)
class LanderPhase:
    """One phase of ``LunarLanderNonStationary-v0``: LunarLander's gravity and wind settings (its defaults if omitted)."""

    gravity: float = -10.0
    enable_wind: bool = False
    wind_power: float = 15.0
    turbulence_power: float = 1.5

    def __post_init__(self) -> None:
        values = {}
        for name in ("gravity", "wind_power", "turbulence_power"):
            raw = getattr(self, name)
            if isinstance(raw, bool):
                raise ValueError(f"{name} must be a number, got {raw!r}")
            try:
                values[name] = float(raw)
            except (TypeError, ValueError) as exc:
                raise ValueError(f"gravity, wind_power and turbulence_power must be numbers, got {name}={raw!r}") from exc
        if not -12.0 < values["gravity"] < 0.0:
            raise ValueError(f"gravity must be in (-12, 0) as LunarLander asserts, got {self.gravity!r}")
        if not 0.0 <= values["wind_power"] <= 20.0:
            raise ValueError(f"wind_power must be in [0, 20], got {self.wind_power!r}")
        if not 0.0 <= values["turbulence_power"] <= 2.0:
            raise ValueError(f"turbulence_power must be in [0, 2], got {self.turbulence_power!r}")
        if not isinstance(self.enable_wind, (bool, np.bool_)):
            raise ValueError(f"enable_wind must be a bool, got {self.enable_wind!r}")
        for name, value in values.items():
            object.__setattr__(self, name, value)
        object.__setattr__(self, "enable_wind", bool(self.enable_wind))

    @classmethod
    def coerce(cls, value: LanderPhase | Mapping[str, Any], where: str = "phase") -> LanderPhase:
        """A :class:`LanderPhase` from itself or a dict of its fields, with errors that say ``where``."""
        if isinstance(value, LanderPhase):
            return value
        if not isinstance(value, Mapping):
            raise ValueError(f"{where} must be a LanderPhase or a dict like {cls().as_dict()}, got {value!r}")
        allowed = {f.name for f in fields(cls)}
        unknown = set(value) - allowed
        if unknown:
            raise ValueError(f"{where} has unknown keys {sorted(unknown)}; allowed: {sorted(allowed)}")
        try:
            return cls(**value)
        except ValueError as exc:
            raise ValueError(f"{where}: {exc}") from exc

    def as_dict(self) -> dict[str, Any]:
        """The four LunarLander parameters, for ``info`` and logs."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


Param = float | tuple[Any, ...]


def _param(value: Any, name: str) -> Param:
    """A finite float (scalar) or nested tuple of floats (array), so that phases compare and hash by value."""
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be a number or an array of numbers, got {value!r}") from exc
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must be finite, got {value!r}")
    return float(arr) if arr.ndim == 0 else tuple(arr.tolist())


def _public(value: Param) -> float | np.ndarray:
    """A scalar parameter as a float, an array one as a float64 array."""
    return value if isinstance(value, float) else np.asarray(value, dtype=np.float64)


@dataclass(frozen=True)
class ObsShift:
    """One phase of an observation shift: ``obs * scale + offset`` (scalars, or arrays broadcastable to the obs)."""

    scale: Param = 1.0
    offset: Param = 0.0

    def __post_init__(self) -> None:
        scale = _param(self.scale, "scale")
        if np.any(np.asarray(scale) == 0):
            raise ValueError(f"scale == 0 would erase the observation; got scale={self.scale!r}")
        object.__setattr__(self, "scale", scale)
        object.__setattr__(self, "offset", _param(self.offset, "offset"))

    @classmethod
    def coerce(cls, value: Any, where: str = "phase") -> ObsShift:
        """An :class:`ObsShift` from itself or a ``(scale, offset)`` pair, with errors that say ``where``."""
        if isinstance(value, ObsShift):
            return value
        try:
            scale, offset = value
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{where} must be a (scale, offset) pair, got {value!r}") from exc
        try:
            return cls(scale, offset)
        except ValueError as exc:
            raise ValueError(f"{where}: {exc}") from exc

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """(scale, offset) as float32 arrays, the dtype the wrapper computes in."""
        return np.asarray(self.scale, dtype=np.float32), np.asarray(self.offset, dtype=np.float32)

    def public(self) -> tuple[float | np.ndarray, float | np.ndarray]:
        """(scale, offset) as floats (scalars) or float64 arrays, for properties and ``info``."""
        return _public(self.scale), _public(self.offset)


#: (scale, offset) cycle of the registered observation-shift envs: identity, x3, +2, x0.5-1.
OBS_SHIFT_CYCLE: Final[tuple[ObsShift, ...]] = (
    ObsShift(1.0, 0.0),
    ObsShift(3.0, 0.0),
    ObsShift(1.0, 2.0),
    ObsShift(0.5, -1.0),
)

#: Phases of ``LunarLanderNonStationary-v0``: gravity -10 -> -6 -> -11, wind off -> 10 -> 15 (turbulence 1.5).
LUNAR_LANDER_NONSTATIONARY_PHASES: Final[tuple[LanderPhase, ...]] = (
    LanderPhase(gravity=-10.0, enable_wind=False),
    LanderPhase(gravity=-6.0, enable_wind=True, wind_power=10.0),
    LanderPhase(gravity=-11.0, enable_wind=True, wind_power=15.0),
)


def finite_range(pair: Any, name: str) -> tuple[float, float]:
    """A finite ``(low, high)`` pair with ``low <= high``."""
    try:
        low, high = (float(v) for v in pair)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be a (low, high) pair of numbers, got {pair!r}") from exc
    if not (math.isfinite(low) and math.isfinite(high)) or low > high:
        raise ValueError(f"{name} must be finite with low <= high, got ({low}, {high})")
    return low, high
