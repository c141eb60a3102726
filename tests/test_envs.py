"""Tests for sb3_regnorm.envs: non-stationary env variants, their clock, typed phases and registration.

Most schedule tests use the fallback clock (``clock="env"``, each env counts its own steps); the agent clock and its SB3
callback are tested in ``tests/test_phase_clock.py``.
"""

from __future__ import annotations

import importlib.util
import warnings

import gymnasium as gym
import numpy as np
import pytest
from gymnasium import spaces
from gymnasium.envs.classic_control.cartpole import CartPoleEnv
from gymnasium.utils.env_checker import check_env

from sb3_regnorm.envs import (
    CARTPOLE_OBS_SHIFT_ID,
    LUNAR_LANDER_NONSTATIONARY_PHASES,
    OBS_SHIFT_CYCLE,
    REGISTERED_IDS,
    LanderPhase,
    NonStationaryLunarLander,
    ObservationShiftWrapper,
    ObsShift,
    PhaseSchedule,
    make_lunar_lander_nonstationary,
    minigrid_image_env,
    register_envs,
)

# Box2D's SWIG bindings emit DeprecationWarnings when first imported; they are not ours.
pytestmark = pytest.mark.filterwarnings("ignore:builtin type .* has no __module__ attribute:DeprecationWarning")
needs_box2d = pytest.mark.skipif(importlib.util.find_spec("Box2D") is None, reason="LunarLander needs gymnasium[box2d]")


@pytest.fixture(autouse=True, scope="module")
def _registered() -> None:
    register_envs()


def _twin_run(wrapped: gym.Env, raw: gym.Env, n_steps: int, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray, dict, int]]:
    """Step a wrapped env and an unwrapped twin with the same seeds and actions.

    Returns (obs, raw_obs, info, lifetime_steps_before) per observation, where the last item is the number of steps taken
    before the step that produced the observation (for reset observations: before the next step).
    """
    rng = np.random.default_rng(seed + 1)
    obs, info = wrapped.reset(seed=seed)
    raw_obs, _ = raw.reset(seed=seed)
    out = [(obs, raw_obs, info, 0)]
    episode = 0
    for t in range(n_steps):
        action = int(rng.integers(raw.action_space.n))
        obs, _, term, trunc, info = wrapped.step(action)
        raw_obs, _, raw_term, raw_trunc, _ = raw.step(action)
        assert (term, trunc) == (raw_term, raw_trunc)
        out.append((obs, raw_obs, info, t))
        if term or trunc:
            episode += 1
            obs, info = wrapped.reset(seed=seed + episode)
            raw_obs, _ = raw.reset(seed=seed + episode)
            out.append((obs, raw_obs, info, t + 1))
    return out


# ---------------------------------------------------------------------------------------- ObservationShiftWrapper
def test_shift_switches_exactly_at_boundaries_and_across_resets() -> None:
    schedule = [(1.0, 0.0), (3.0, 0.0), (1.0, 2.0), (-0.5, -1.0)]
    env = ObservationShiftWrapper(CartPoleEnv(), schedule=schedule, switch_every=4, clock="env")
    # random actions make CartPole episodes short (~10-40 steps), so 120 steps cross resets and 30 boundaries
    records = _twin_run(env, CartPoleEnv(), n_steps=120)
    assert len(records) > 123  # at least 3 resets happened
    for obs, raw_obs, info, steps_before in records:
        expected_phase = (steps_before // 4) % 4
        assert info["obs_shift"]["phase"] == expected_phase == info["phase"]
        assert info["obs_shift"]["switches"] == steps_before // 4
        scale, offset = schedule[expected_phase]
        assert (info["obs_shift"]["scale"], info["obs_shift"]["offset"]) == (scale, offset)
        assert obs.dtype == np.float32
        np.testing.assert_allclose(obs, raw_obs.astype(np.float32) * scale + offset, rtol=1e-6, atol=1e-6)
        assert env.observation_space.contains(obs)
    assert env.env_steps == 120


def test_shift_phase_sequence_counts_over_lifetime() -> None:
    env = ObservationShiftWrapper(CartPoleEnv(), schedule=OBS_SHIFT_CYCLE, switch_every=3, clock="env")
    _, info = env.reset(seed=0)
    assert info["obs_shift"]["phase"] == 0 and env.phase == 0
    phases = []
    resets = 0
    for t in range(1, 31):
        _, _, term, trunc, info = env.step(0)  # always-left: episodes end after ~9 steps, forcing resets
        phases.append(info["obs_shift"]["phase"])
        # the t-th step (1-based) runs under switch (t - 1) // 3, continuing across resets
        assert info["obs_shift"]["switches"] == (t - 1) // 3
        assert env.env_steps == t
        if term or trunc:
            resets += 1
            _, info = env.reset()
            assert info["obs_shift"]["switches"] == t // 3  # reset obs uses the phase of the next step
            assert env.env_steps == t  # reset does not touch the counter
    assert resets >= 2
    assert phases == [((t - 1) // 3) % 4 for t in range(1, 31)]
    assert ObsShift(env.scale, env.offset) == OBS_SHIFT_CYCLE[env.phase] == env.current_shift


def test_shift_boundary_values_against_twin() -> None:
    schedule = [(2.0, 1.0), (-3.0, 0.5)]
    env = ObservationShiftWrapper(CartPoleEnv(), schedule=schedule, switch_every=5, clock="env")
    raw = CartPoleEnv()
    obs, _ = env.reset(seed=3)
    raw_obs, _ = raw.reset(seed=3)
    np.testing.assert_allclose(obs, raw_obs * 2.0 + 1.0, rtol=1e-6)
    for t in range(1, 13):
        obs, _, term, _, info = env.step(1 if t % 2 else 0)
        raw_obs, _, raw_term, _, _ = raw.step(1 if t % 2 else 0)
        assert not term and not raw_term
        scale, offset = schedule[((t - 1) // 5) % 2]
        np.testing.assert_allclose(obs, raw_obs * scale + offset, rtol=1e-6, atol=1e-6)
        assert info["obs_shift"]["scale"] == scale and info["obs_shift"]["offset"] == offset


@needs_box2d
def test_shift_observation_space_bounds() -> None:
    base = CartPoleEnv()
    low, high = base.observation_space.low, base.observation_space.high
    env = ObservationShiftWrapper(base, schedule=[(1.0, 0.0), (3.0, 0.0), (-2.0, 1.0)], switch_every=10)
    space = env.observation_space
    assert isinstance(space, spaces.Box) and space.dtype == np.float32 and space.shape == (4,)
    # infinite bounds (velocities) stay infinite, also under a negative scale
    assert np.isneginf(space.low[[1, 3]]).all() and np.isposinf(space.high[[1, 3]]).all()
    # finite bounds (x, theta): min/max over phases, with the negative scale flipping low/high
    for i in (0, 2):
        candidates = [low[i], high[i], 3 * low[i], 3 * high[i], -2 * low[i] + 1, -2 * high[i] + 1]
        assert space.low[i] == pytest.approx(min(candidates), rel=1e-6)
        assert space.high[i] == pytest.approx(max(candidates), rel=1e-6)

    lander = gym.make("LunarLander-v3").unwrapped
    l_low, l_high = lander.observation_space.low, lander.observation_space.high
    shifted = ObservationShiftWrapper(lander, schedule=OBS_SHIFT_CYCLE, switch_every=10).observation_space
    assert np.all(np.isfinite(shifted.low)) and shifted.dtype == np.float32
    pairs = [(p.scale, p.offset) for p in OBS_SHIFT_CYCLE]
    candidates = np.stack([l_low * s + o for s, o in pairs] + [l_high * s + o for s, o in pairs])
    np.testing.assert_allclose(shifted.low, candidates.min(axis=0), rtol=1e-6)
    np.testing.assert_allclose(shifted.high, candidates.max(axis=0), rtol=1e-6)


def test_shift_array_scale() -> None:
    scale = np.array([1.0, 2.0, -1.0, 0.5])
    env = ObservationShiftWrapper(CartPoleEnv(), schedule=[(scale, 1.0)], switch_every=2, phase=0)
    raw = CartPoleEnv()
    obs, info = env.reset(seed=5)
    raw_obs, _ = raw.reset(seed=5)
    np.testing.assert_allclose(obs, raw_obs * scale + 1.0, rtol=1e-6)
    np.testing.assert_array_equal(info["obs_shift"]["scale"], scale)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"switch_every": 0}, r"switch_every \(timesteps per phase\) must be an integer >= 1"),
        ({"switch_every": 2.5}, r"switch_every .* must be an integer >= 1"),
        ({"clock": "wall"}, "clock must be one of"),
        ({"phase": 4}, r"phase must be < 4"),
        ({"phase": -1}, "phase must be an integer >= 0"),
        ({"seed": 1.5}, "seed must be an integer"),
        ({"schedule": []}, "schedule is empty"),
        ({"schedule": [(1.0, 0.0), (0.0, 1.0)]}, r"schedule\[1\]: scale == 0"),
        ({"schedule": [(np.array([1.0, 0.0, 1.0, 1.0]), 0.0)]}, r"scale == 0"),
        ({"schedule": [(1.0, float("nan"))]}, "offset must be finite"),
        ({"schedule": [(np.ones(3), 0.0)]}, "does not broadcast to the obs shape"),
        ({"schedule": [(1.0,)]}, r"must be a \(scale, offset\) pair"),
        ({"schedule": "sinusoidal"}, "unknown schedule 'sinusoidal'"),
        ({"schedule": "random", "scale_range": (-1.0, 2.0)}, "contains 0"),
        ({"schedule": "random", "offset_range": (2.0, 1.0)}, "offset_range must be finite with low <= high"),
    ],
)
def test_shift_bad_arguments(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        ObservationShiftWrapper(CartPoleEnv(), **kwargs)


def test_shift_rejects_non_box() -> None:
    env = gym.make("FrozenLake-v1").unwrapped
    with pytest.raises(ValueError, match="needs a Box observation space, got Discrete"):
        ObservationShiftWrapper(env)


def _random_schedule(seed: int | None, reset_seed: int | None, n_phases: int = 6) -> list[tuple[float, float]]:
    env = ObservationShiftWrapper(CartPoleEnv(), schedule="random", switch_every=2, clock="env", seed=seed)
    env.reset(seed=reset_seed)
    out = []
    for _ in range(2 * n_phases):
        _, _, term, trunc, info = env.step(env.action_space.sample())
        if term or trunc:
            env.reset()
        out.append((info["obs_shift"]["scale"], info["obs_shift"]["offset"]))
    return out[::2]


def test_shift_random_schedule_reproducible_from_seed_kwarg_and_reset_seed() -> None:
    a, b, c = _random_schedule(7, 0), _random_schedule(7, 1), _random_schedule(8, 0)
    assert a == b  # an explicit seed fixes the draws whatever the reset seed
    assert a != c
    assert len(set(a)) == len(a)  # a new draw per phase
    assert all(0.2 <= s <= 5.0 and -3.0 <= o <= 3.0 for s, o in a)
    # without a seed kwarg, reset(seed=...) seeds the draws
    d, e, f = _random_schedule(None, 3), _random_schedule(None, 3), _random_schedule(None, 4)
    assert d == e and d != f
    # the draws are a pure function of (seed, switch number): jumping there gives the same values as stepping there
    env = ObservationShiftWrapper(CartPoleEnv(), schedule="random", switch_every=2, seed=7)
    env.set_agent_timesteps(2 * 5 + 1)
    assert (env.scale, env.offset) == a[5] and env.phase == 5 and env.switches == 5
    assert env.schedule == PhaseSchedule(2, None)


def test_shift_agent_clock_needs_a_clock_and_never_advances_itself() -> None:
    env = ObservationShiftWrapper(CartPoleEnv(), switch_every=10)
    assert env.clock == "agent" and env.switches is None
    _, info = env.reset(seed=0)  # SB3 resets before any callback runs: allowed, provisional phase 0
    assert info["phase"] == 0
    with pytest.raises(RuntimeError, match="no clock value has arrived"):
        env.step(0)
    assert env.set_agent_timesteps(25) == 2
    assert env.phase == 2 and env.current_shift == OBS_SHIFT_CYCLE[2]
    for _ in range(30):  # e.g. evaluation episodes: the agent clock does not move
        _, _, term, trunc, info = env.step(0)
        assert info["phase"] == 2
        if term or trunc:
            env.reset()
    assert env.phase == 2 and env.env_steps == 30
    assert env.set_phase(1) == 1 and env.scale == 3.0
    with pytest.raises(ValueError, match="timesteps must be an integer >= 0"):
        env.set_agent_timesteps(-1)
    held = ObservationShiftWrapper(CartPoleEnv(), switch_every=10, phase=3)  # a held phase needs no clock
    held.reset(seed=0)
    assert held.step(0)[4]["phase"] == 3


def test_shift_env_clock_refuses_the_agent_clock() -> None:
    env = ObservationShiftWrapper(CartPoleEnv(), switch_every=10, clock="env", phase=1)
    with pytest.raises(RuntimeError, match="runs on its own clock"):
        env.set_agent_timesteps(5)
    env.reset(seed=0)
    for _ in range(10):
        env.step(0)
    assert env.phase == 2  # counted on from the start of phase 1


def test_no_public_attribute_is_settable_or_collides_with_monitor() -> None:
    """VecEnv.set_attr sets attributes on SB3's outer Monitor, so every public state name must be a read-only property."""
    from stable_baselines3.common.monitor import Monitor

    monitor_names = set(vars(Monitor(CartPoleEnv())))
    for env in (ObservationShiftWrapper(CartPoleEnv(), phase=0), make_lunar_lander_nonstationary(phase=0)):
        public = {n for n in dir(type(env)) if not n.startswith("_")} - set(dir(gym.Wrapper))
        public |= {n for n in vars(env) if not n.startswith("_")} - {"env"}  # gymnasium's own wrapper attribute
        assert {"phase", "switches", "schedule", "clock", "switch_every", "env_steps"} <= public
        assert not public & monitor_names
        for name in public:
            attr = getattr(type(env), name, None)
            if callable(attr) and not isinstance(attr, property):
                continue  # methods: reached through env_method
            assert isinstance(attr, property) and attr.fset is None, f"{type(env).__name__}.{name} is writable"
            with pytest.raises(AttributeError):
                setattr(env, name, 1)


def test_shift_random_bounds_cover_ranges() -> None:
    env = ObservationShiftWrapper(CartPoleEnv(), schedule="random", scale_range=(0.5, 2.0), offset_range=(-1.0, 1.0), seed=0)
    x_high = CartPoleEnv().observation_space.high[0]
    assert env.observation_space.high[0] == pytest.approx(2.0 * x_high + 1.0, rel=1e-6)
    assert env.observation_space.low[0] == pytest.approx(-2.0 * x_high - 1.0, rel=1e-6)


# ---------------------------------------------------------------------------------------- NonStationaryLunarLander
def _gravity(env: gym.Env) -> float:
    return float(env.unwrapped.world.gravity[1])


def _wind(env: gym.Env) -> tuple[bool, float, float]:
    u = env.unwrapped
    return bool(u.enable_wind), float(u.wind_power), float(u.turbulence_power)


@needs_box2d
def test_lander_switches_gravity_and_wind_at_boundaries() -> None:
    phases = [
        {"gravity": -10.0, "enable_wind": False},
        {"gravity": -6.0, "enable_wind": True, "wind_power": 10.0, "turbulence_power": 0.5},
        {"gravity": -11.0, "enable_wind": True, "wind_power": 15.0, "turbulence_power": 1.5},
    ]
    env = make_lunar_lander_nonstationary(phases=phases, switch_every=5, clock="env")
    assert isinstance(env, NonStationaryLunarLander)
    assert env.phases[1] == LanderPhase(gravity=-6.0, enable_wind=True, wind_power=10.0, turbulence_power=0.5)
    _, info = env.reset(seed=0)
    assert info["nonstationary"]["phase"] == 0 and _gravity(env) == pytest.approx(-10.0)
    for t in range(1, 21):
        _, _, term, trunc, info = env.step(0)  # no-op: the lander falls for ~60 steps, no episode end here
        assert not (term or trunc)
        # the t-th step (1-based) ran under phase (t - 1) // 5 ...
        ran = env.phases[((t - 1) // 5) % 3]
        assert info["nonstationary"]["phase"] == ((t - 1) // 5) % 3 == info["phase"]
        assert info["nonstationary"]["gravity"] == ran.gravity
        assert info["nonstationary"]["enable_wind"] == ran.enable_wind
        # ... and afterwards the live env is already set up for the next step: phase t // 5
        assert env.phase == (t // 5) % 3
        nxt = env.phases[env.phase]
        assert _gravity(env) == pytest.approx(nxt.gravity)
        assert env.unwrapped.gravity == nxt.gravity
        assert _wind(env) == (nxt.enable_wind, nxt.wind_power, nxt.turbulence_power)
    assert env.env_steps == 20


@needs_box2d
def test_lander_gravity_changes_dynamics() -> None:
    """Falling speed after a few no-op steps must differ between gravity phases (the switch really takes effect)."""
    env = make_lunar_lander_nonstationary(phases=[LanderPhase(gravity=-11.0), {"gravity": -2.0}], switch_every=10, clock="env")
    env.reset(seed=0)
    obs = [env.step(0)[0] for _ in range(20)]
    dv_strong = obs[9][3] - obs[4][3]  # vertical velocity change over 5 steps in phase 0
    dv_weak = obs[19][3] - obs[14][3]  # ... and in phase 1
    assert dv_strong < 0 and dv_weak < 0
    assert abs(dv_strong) > 3 * abs(dv_weak)


@needs_box2d
def test_lander_keeps_phase_after_reset_and_counts_across_episodes() -> None:
    env = make_lunar_lander_nonstationary(switch_every=5, clock="env")
    env.reset(seed=1)
    for _ in range(7):
        env.step(0)
    assert env.phase == 1 and env.env_steps == 7
    _, info = env.reset(seed=2)  # reset rebuilds the Box2D world; the phase must survive
    assert env.env_steps == 7 and info["nonstationary"]["phase"] == 1
    p1 = LUNAR_LANDER_NONSTATIONARY_PHASES[1]
    assert _gravity(env) == pytest.approx(p1.gravity)
    assert env.unwrapped.gravity == p1.gravity
    assert _wind(env) == (True, p1.wind_power, p1.turbulence_power)
    for _ in range(3):
        env.step(0)
    assert env.phase == 2 and _gravity(env) == pytest.approx(LUNAR_LANDER_NONSTATIONARY_PHASES[2].gravity)
    env.set_phase(0)  # applies phase 0 immediately
    assert env.phase == 0 and _gravity(env) == pytest.approx(-10.0) and not env.unwrapped.enable_wind


@needs_box2d
def test_lander_agent_clock_applies_pushed_phases_mid_episode() -> None:
    env = make_lunar_lander_nonstationary(switch_every=100)
    env.reset(seed=0)
    with pytest.raises(RuntimeError, match="no clock value has arrived"):
        env.step(0)
    env.set_agent_timesteps(250)  # the agent clock: phase 2, applied at once (also mid-episode)
    assert env.phase == 2 and _gravity(env) == pytest.approx(-11.0) and env.unwrapped.enable_wind
    for _ in range(5):
        assert env.step(0)[4]["phase"] == 2
    assert env.phase == 2 and env.env_steps == 5  # stepping never moves the agent clock
    env.set_agent_timesteps(300)
    assert env.phase == 0 and _gravity(env) == pytest.approx(-10.0)


@needs_box2d
def test_lander_wind_switched_on_mid_episode() -> None:
    """Wind enabled after a wind-free reset must not crash (LunarLander draws wind indices only in reset)."""
    env = make_lunar_lander_nonstationary(phases=[{"enable_wind": False}, {"enable_wind": True}], switch_every=2, clock="env")
    env.reset(seed=0)
    for _ in range(6):
        env.step(0)
    assert env.unwrapped.enable_wind and hasattr(env.unwrapped, "wind_idx")


@needs_box2d
@pytest.mark.parametrize(
    ("phases", "match"),
    [
        ([], "phases is empty"),
        ([{"gravity": 0.0}], r"gravity must be in \(-12, 0\)"),
        ([{"gravity": -12.0}], r"gravity must be in \(-12, 0\)"),
        ([{"gravity": -10.0}, {"gravity": 3.0}], r"phases\[1\]: gravity"),
        ([{"wind_power": 25.0}], r"wind_power must be in \[0, 20\]"),
        ([{"turbulence_power": -0.1}], r"turbulence_power must be in \[0, 2\]"),
        ([{"enable_wind": "yes"}], "enable_wind must be a bool"),
        ([{"gravity": -10.0, "mass": 3}], "unknown keys"),
        ([-10.0], "must be a LanderPhase or a dict"),
        ([{"gravity": True}], "gravity must be a number"),
    ],
)
def test_lander_bad_phases(phases: list, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        make_lunar_lander_nonstationary(phases=phases)


@needs_box2d
def test_lander_bad_switch_every_and_env() -> None:
    with pytest.raises(ValueError, match=r"switch_every .* must be an integer >= 1"):
        make_lunar_lander_nonstationary(switch_every=0)
    with pytest.raises(ValueError, match="needs a LunarLander env"):
        NonStationaryLunarLander(CartPoleEnv(), phases=[{"gravity": -10.0}])


# ---------------------------------------------------------------------------------------- registration
def test_register_is_idempotent() -> None:
    n_before = len(gym.envs.registry)
    assert register_envs() == REGISTERED_IDS
    assert register_envs() == REGISTERED_IDS
    assert len(gym.envs.registry) == n_before
    for env_id in REGISTERED_IDS:
        assert env_id in gym.envs.registry and "/" not in env_id
        assert isinstance(gym.spec(env_id).entry_point, str)
    assert gym.spec("LunarLanderNonStationary-v0").max_episode_steps == 1000
    assert gym.spec("LunarLanderObsShift-v0").max_episode_steps == 1000


@needs_box2d
@pytest.mark.parametrize("env_id", REGISTERED_IDS)
def test_registered_envs_pass_check_env(env_id: str) -> None:
    env = gym.make(env_id, clock="env")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        check_env(env.unwrapped, skip_render_check=True)
        check_env(env, skip_render_check=True)  # the full wrapper stack, including ours
    env.close()


@needs_box2d
def test_make_forwards_kwargs() -> None:
    env = gym.make(CARTPOLE_OBS_SHIFT_ID, switch_every=3, clock="env")
    assert env.get_wrapper_attr("switch_every") == 3
    _, info = env.reset(seed=0)
    assert info["obs_shift"]["phase"] == 0
    for _ in range(3):
        env.step(0)
    _, _, _, _, info = env.step(0)
    assert info["obs_shift"]["phase"] == 1 and info["obs_shift"]["scale"] == 3.0

    lander = gym.make("LunarLanderNonStationary-v0", switch_every=5, continuous=True)
    assert isinstance(lander.action_space, spaces.Box)
    assert lander.get_wrapper_attr("switch_every") == 5
    shift = gym.make("LunarLanderObsShift-v0", switch_every=7)
    assert shift.get_wrapper_attr("switch_every") == 7


# ---------------------------------------------------------------------------------------- minigrid
def test_minigrid_image_env() -> None:
    pytest.importorskip("minigrid")
    env = minigrid_image_env("MiniGrid-Empty-5x5-v0")
    assert isinstance(env.observation_space, spaces.Box) and env.observation_space.shape == (7, 7, 3)
    obs, _ = env.reset(seed=0)
    assert env.observation_space.contains(obs)
    with pytest.raises(ValueError, match="not a registered MiniGrid id"):
        minigrid_image_env("CartPole-v1")
    with pytest.raises(ValueError, match="not a registered MiniGrid id"):
        minigrid_image_env("MiniGrid-DoesNotExist-v0")


# ---------------------------------------------------------------------------------------- typed phases and schedule
def test_phase_schedule_is_a_pure_function_of_timesteps() -> None:
    schedule = PhaseSchedule(switch_every=50, n_phases=3)
    assert [schedule.phase_at(t) for t in (0, 49, 50, 99, 100, 150, 151)] == [0, 0, 1, 1, 2, 0, 0]
    assert schedule.switch_timesteps(200) == [50, 100, 150]
    assert PhaseSchedule(50).phase_at(1000) == 20  # unbounded (random draws)
    with pytest.raises(ValueError, match="n_phases must be an integer >= 1"):
        PhaseSchedule(10, 0)
    with pytest.raises(ValueError, match="timesteps must be an integer >= 0"):
        schedule.phase_at(-1)


def test_typed_phases_are_frozen_validated_values() -> None:
    phase = LanderPhase(gravity=-6, enable_wind=True)
    assert phase.gravity == -6.0 and isinstance(phase.gravity, float)
    assert LanderPhase.coerce({"gravity": -6.0, "enable_wind": True}) == phase
    with pytest.raises(AttributeError):
        phase.gravity = -3.0  # type: ignore[misc]
    shift = ObsShift(np.array([1.0, 2.0]), 0)
    assert shift == ObsShift((1.0, 2.0), 0.0) and hash(shift) == hash(ObsShift([1, 2], 0))
    assert ObsShift.coerce((3.0, 0.0)) == OBS_SHIFT_CYCLE[1]
    with pytest.raises(ValueError, match="scale == 0"):
        ObsShift(0.0, 1.0)
