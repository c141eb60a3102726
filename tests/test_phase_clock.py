"""The agent's clock: switches at the same agent timesteps for every algorithm, through rl_zoo3, evaluation and resume.

The rl_zoo3 runs use its own training command in a subprocess (as a user would) with tiny budgets and nets; the
switches are read back from the ``env/phase`` TensorBoard tag.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import gymnasium as gym
import pytest
import torch
import yaml
from stable_baselines3 import PPO
from stable_baselines3.common.callbacks import BaseCallback, EvalCallback
from stable_baselines3.common.env_util import make_vec_env

from sb3_regnorm.envs import CARTPOLE_OBS_SHIFT_ID, LUNAR_LANDER_NONSTATIONARY_ID, LUNAR_LANDER_OBS_SHIFT_ID, PhaseSchedule
from sb3_regnorm.phase_clock import PHASE_TAG, PhaseClockCallback, sync_phase
from sb3_regnorm.plotting import load_runs, load_scalars, phase_changes, plot_returns, switch_marks

torch.set_num_threads(1)
pytestmark = pytest.mark.filterwarnings("ignore:builtin type .* has no __module__ attribute:DeprecationWarning")
ROOT = Path(__file__).resolve().parents[1]
SWITCH_EVERY = 64  # a multiple of every n_envs below, so the switches fall exactly on k * 64 for all three algorithms
N_TIMESTEPS = 4 * SWITCH_EVERY
CLOCK = "sb3_regnorm.phase_clock.PhaseClockCallback"
_TINY: dict[str, dict[str, Any]] = {
    "ppo": {"n_envs": 16, "n_steps": 4, "batch_size": 64, "n_epochs": 1},
    "a2c": {"n_envs": 8, "n_steps": 4},
    "dqn": {"learning_starts": 64, "buffer_size": 1000, "train_freq": 4, "target_update_interval": 100},
}


def _env() -> dict[str, str]:
    """Subprocess environment: this checkout first on the path, one thread."""
    return {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}", "OMP_NUM_THREADS": "1"}


# ------------------------------------------------------------------------------------------ rl_zoo3's training command
@pytest.mark.parametrize("env_id", [LUNAR_LANDER_OBS_SHIFT_ID, LUNAR_LANDER_NONSTATIONARY_ID])
@pytest.mark.parametrize("algo", ["a2c", "ppo", "dqn"])
def test_rl_zoo3_train_switches_at_the_same_agent_timesteps(algo: str, env_id: str, tmp_path: Path) -> None:
    entry = {
        "n_timesteps": N_TIMESTEPS,
        "policy": "MlpPolicy",
        "policy_kwargs": "dict(net_arch=[16])",
        "callback": [CLOCK],
        **_TINY[algo],
    }
    config = tmp_path / f"{algo}.yml"
    config.write_text(yaml.safe_dump({env_id: entry}))
    command = [sys.executable, "-m", "rl_zoo3.train", "--algo", algo, "--env", env_id, "--gym-packages", "sb3_regnorm"]
    command += ["-conf", str(config), "--env-kwargs", f"switch_every:{SWITCH_EVERY}", "-tb", str(tmp_path / "tb")]
    command += ["-f", str(tmp_path / "logs"), "--seed", "0", "--num-threads", "1", "--eval-freq", "96"]
    command += ["--eval-episodes", "1", "--verbose", "0"]
    done = subprocess.run(command, cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    (run,) = (tmp_path / "tb" / env_id).iterdir()
    series = load_scalars(run)[PHASE_TAG]
    n_phases = 4 if env_id == LUNAR_LANDER_OBS_SHIFT_ID else 3
    expected = [(k * SWITCH_EVERY, k % n_phases) for k in range(4)]
    assert phase_changes(series)[: len(expected)] == expected
    assert (tmp_path / "logs" / algo / f"{env_id}_1" / "evaluations.npz").is_file()


# ------------------------------------------------------------------------------------------ evaluation
class _EvalProbe(BaseCallback):
    """Runs after each evaluation of its parent EvalCallback: records the eval envs' phase and step counts."""

    def __init__(self) -> None:
        super().__init__()
        self.records: list[tuple[int, list[int], int]] = []

    def _on_step(self) -> bool:
        assert self.parent is not None
        eval_env = self.parent.eval_env  # type: ignore[attr-defined]
        self.records.append((self.num_timesteps, eval_env.get_attr("phase"), sum(eval_env.get_attr("env_steps"))))
        return True


def test_rl_zoo3_eval_callback_evaluates_the_training_phase(tmp_path: Path) -> None:
    """rl_zoo3's EvalCallback (created by its ExperimentManager) scores the training phase; evaluation moves nothing."""
    import argparse

    from rl_zoo3.exp_manager import ExperimentManager

    config = tmp_path / "a2c.yml"
    entry = {"n_timesteps": 320, "policy": "MlpPolicy", "policy_kwargs": "dict(net_arch=[8])", "callback": [CLOCK]}
    # env_kwargs in the YAML reach rl_zoo3's training envs only: its eval envs keep switch_every=10_000, and still
    # evaluate the training phase, because the clock pushes the phase, not the timestep
    entry["env_kwargs"] = {"switch_every": 64}
    config.write_text(yaml.safe_dump({CARTPOLE_OBS_SHIFT_ID: {**entry, **_TINY["a2c"]}}))
    manager = ExperimentManager(
        argparse.Namespace(), "a2c", CARTPOLE_OBS_SHIFT_ID, str(tmp_path), n_timesteps=320, eval_freq=40,
        n_eval_episodes=2, n_eval_envs=2, config=str(config), seed=0, verbose=0,
        device="cpu", log_interval=-1,
    )  # fmt: skip
    model, _ = manager.setup_experiment()
    (evaluation,) = [cb for cb in manager.callbacks if isinstance(cb, EvalCallback)]
    probe = _EvalProbe()
    evaluation.callback, probe.parent = probe, evaluation
    manager.learn(model)
    assert evaluation.eval_env.get_attr("switch_every") == [10_000] * 2
    schedule = PhaseSchedule(64, 4)
    assert [t for t, _, _ in probe.records] == [40 * k for k in range(1, 9)]
    switches = schedule.switch_timesteps(320)  # 64, 128, 192, 256: none on the budget's last step
    for timesteps, phases, _ in probe.records:  # the phase training is in, on every eval env
        assert phases == [schedule.phase_of(sum(s <= timesteps for s in switches))] * 2
    steps = [s for _, _, s in probe.records]
    assert steps == sorted(steps) and steps[0] > 0  # evaluation episodes ran without moving the schedule
    assert probe.records[-1][1] == [schedule.phase_at(256)] * 2  # the final evaluation scores the last trained phase


def test_eval_phase_holds_the_eval_envs_at_a_named_phase() -> None:
    env = make_vec_env(CARTPOLE_OBS_SHIFT_ID, n_envs=2, seed=0, env_kwargs={"switch_every": 32})
    eval_env = make_vec_env(CARTPOLE_OBS_SHIFT_ID, n_envs=1, seed=9, env_kwargs={"switch_every": 32})
    probe = _EvalProbe()
    evaluation = EvalCallback(eval_env, callback_after_eval=probe, eval_freq=16, n_eval_episodes=1, verbose=0)
    model = PPO("MlpPolicy", env, n_steps=16, batch_size=32, n_epochs=1, policy_kwargs={"net_arch": [8]}, seed=0)
    clock = PhaseClockCallback(eval_phase=3)
    model.learn(128, callback=[clock, evaluation])
    assert len(probe.records) == 4 and all(phases == [3] for _, phases, _ in probe.records)
    assert clock.changes == [(0, 0), (32, 1), (64, 2), (96, 3)]  # none at 128, the last step of the budget
    assert env.get_attr("phase") == [3, 3] and clock.phase == 3  # the last trained phase


def test_sync_phase_sets_fresh_eval_envs() -> None:
    venv = make_vec_env(LUNAR_LANDER_OBS_SHIFT_ID, n_envs=2, env_kwargs={"switch_every": 100})
    assert sync_phase(venv, 250) == 2 and venv.get_attr("phase") == [2, 2]
    assert sync_phase(venv, phase=1) == 1 and venv.get_attr("switches") == [1, 1]
    single = gym.make(LUNAR_LANDER_NONSTATIONARY_ID, switch_every=10)
    assert sync_phase(single, 35) == 0 and single.get_wrapper_attr("switches") == 3
    assert sync_phase(gym.make("CartPole-v1"), 10) is None  # no phases: nothing to do
    with pytest.raises(ValueError, match="exactly one of"):
        sync_phase(venv)


# ------------------------------------------------------------------------------------------ misuse fails loudly
def test_training_without_the_clock_fails_loudly() -> None:
    env = make_vec_env(CARTPOLE_OBS_SHIFT_ID, n_envs=2, env_kwargs={"switch_every": 32})
    model = PPO("MlpPolicy", env, n_steps=8, batch_size=16, policy_kwargs={"net_arch": [8]})
    with pytest.raises(RuntimeError, match="no clock value has arrived"):
        model.learn(16)


def test_clock_refuses_envs_on_their_own_clock() -> None:
    env = make_vec_env(CARTPOLE_OBS_SHIFT_ID, n_envs=2, env_kwargs={"switch_every": 32, "clock": "env"})
    model = PPO("MlpPolicy", env, n_steps=8, batch_size=16, policy_kwargs={"net_arch": [8]})
    with pytest.raises(ValueError, match="own clock"):
        model.learn(16, callback=PhaseClockCallback())


def test_clock_refuses_sub_envs_with_different_schedules() -> None:
    from stable_baselines3.common.vec_env import DummyVecEnv

    env = DummyVecEnv([lambda: gym.make(CARTPOLE_OBS_SHIFT_ID, switch_every=32), lambda: gym.make(CARTPOLE_OBS_SHIFT_ID)])
    model = PPO("MlpPolicy", env, n_steps=8, batch_size=16, policy_kwargs={"net_arch": [8]})
    with pytest.raises(ValueError, match="disagree on the phase schedule"):
        model.learn(16, callback=PhaseClockCallback())


def test_clock_drives_subprocess_envs() -> None:
    from stable_baselines3.common.vec_env import SubprocVecEnv

    fork = {"vec_env_cls": SubprocVecEnv, "vec_env_kwargs": {"start_method": "fork"}}  # workers inherit the registry
    env = make_vec_env(CARTPOLE_OBS_SHIFT_ID, n_envs=2, env_kwargs={"switch_every": 32}, **fork)  # type: ignore[arg-type]
    try:
        model = PPO("MlpPolicy", env, n_steps=16, batch_size=32, n_epochs=1, policy_kwargs={"net_arch": [8]})
        clock = PhaseClockCallback()
        model.learn(128, callback=clock)  # switches at 32, 64, 96 (< the budget)
        assert clock.changes == [(0, 0), (32, 1), (64, 2), (96, 3)] and env.get_attr("phase") == [3, 3]
    finally:
        env.close()
    plain = make_vec_env("CartPole-v1", n_envs=2, **fork)  # type: ignore[arg-type]
    try:
        assert sync_phase(plain, 10) is None  # no phases, and the workers survive the question
        assert plain.get_attr("spec")[0].id == "CartPole-v1"
    finally:
        plain.close()


def test_clock_warns_when_an_eval_callback_runs_first_and_checks_eval_phase() -> None:
    env = make_vec_env(CARTPOLE_OBS_SHIFT_ID, n_envs=2, env_kwargs={"switch_every": 32})
    eval_env = make_vec_env(CARTPOLE_OBS_SHIFT_ID, n_envs=1, env_kwargs={"switch_every": 32})
    model = PPO("MlpPolicy", env, n_steps=8, batch_size=16, policy_kwargs={"net_arch": [8]})
    with pytest.warns(UserWarning, match="runs before PhaseClockCallback"):
        model.learn(16, callback=[EvalCallback(eval_env, eval_freq=1000, verbose=0), PhaseClockCallback()])
    with pytest.raises(ValueError, match="eval_phase must be < 4"):
        model.learn(16, callback=PhaseClockCallback(eval_phase=4))


def test_monitor_writes_the_phase_of_each_episode() -> None:
    """``info["phase"]`` is a plain int, so SB3's Monitor can log it per episode (rl_zoo3: ``monitor_kwargs``)."""
    env = make_vec_env(
        CARTPOLE_OBS_SHIFT_ID, n_envs=2, env_kwargs={"switch_every": 40}, monitor_kwargs={"info_keywords": ("phase",)}
    )
    model = PPO("MlpPolicy", env, n_steps=40, batch_size=80, n_epochs=1, policy_kwargs={"net_arch": [8]}, seed=0)
    model.learn(240, callback=PhaseClockCallback())
    episodes = list(model.ep_info_buffer)
    assert episodes and all(isinstance(ep["phase"], int) for ep in episodes)
    assert {ep["phase"] for ep in episodes} >= {0, 1, 2}


def test_clock_is_a_no_op_without_phases() -> None:
    model = PPO("MlpPolicy", make_vec_env("CartPole-v1", n_envs=2), n_steps=8, batch_size=16, policy_kwargs={"net_arch": [8]})
    clock = PhaseClockCallback()
    model.learn(16, callback=clock)
    assert clock.schedule is None and clock.phase is None and clock.changes == []


# ------------------------------------------------------------------------------------------ save / load / resume
_RESUME = textwrap.dedent(
    """
    import json, sys
    import torch
    torch.set_num_threads(1)
    import sb3_regnorm
    from stable_baselines3 import PPO
    from stable_baselines3.common.env_util import make_vec_env
    from sb3_regnorm.phase_clock import PhaseClockCallback

    class Obs(PhaseClockCallback):  # also records the phase of every observation the agent acts on
        def _on_training_start(self):
            super()._on_training_start()
            self.first = [int(i["phase"]) for i in self.training_env.reset_infos]
            self.seen = set()
        def _on_step(self):
            self.seen |= {int(i["phase"]) for i in self.locals["infos"]}
            return super()._on_step()

    env = make_vec_env("CartPoleObsShift-v0", n_envs=4, seed=1, env_kwargs={"switch_every": 64})
    model = PPO.load(sys.argv[1], env=env, device="cpu")
    clock = Obs()
    model.learn(96, callback=clock, reset_num_timesteps=False, tb_log_name="resume")
    print(json.dumps({"start": model._num_timesteps_at_start, "end": model.num_timesteps, "changes": clock.changes,
                      "first": clock.first, "seen": sorted(clock.seen), "phases": env.get_attr("phase")}))
    """
)


def test_resume_in_a_fresh_process_continues_the_schedule(tmp_path: Path) -> None:
    env = make_vec_env(CARTPOLE_OBS_SHIFT_ID, n_envs=4, seed=0, env_kwargs={"switch_every": 64})
    model = PPO("MlpPolicy", env, n_steps=8, batch_size=32, n_epochs=1, policy_kwargs={"net_arch": [8]}, seed=0)
    clock = PhaseClockCallback()
    model.learn(96, callback=clock)  # stops inside phase 1 (64 <= 96 < 128)
    assert clock.changes == [(0, 0), (64, 1)] and env.get_attr("phase") == [1] * 4
    model.save(tmp_path / "model")
    script = tmp_path / "resume.py"
    script.write_text(_RESUME)
    done = subprocess.run(
        [sys.executable, str(script), str(tmp_path / "model.zip")],
        cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert (result["start"], result["end"]) == (96, 192)
    # phase 1 at the resume point, the next switch on time at 128 (not restarted at 0); none at 192, the budget's
    # last step: it would open a phase no training happens in (and score the final evaluation there)
    assert result["changes"] == [[96, 1], [128, 2]]
    assert result["first"] == [1] * 4  # the first observations after the resume already belong to phase 1
    assert result["seen"] == [1, 2]
    assert result["phases"] == [2] * 4


# ------------------------------------------------------------------------------------------ random schedule seeding
def _random_scales(vec_seed: int, n_envs: int = 2, **kwargs: Any) -> list[list[float]]:
    env_kwargs = {"switch_every": 10, "schedule": "random", **kwargs}
    venv = make_vec_env(CARTPOLE_OBS_SHIFT_ID, n_envs=n_envs, seed=vec_seed, env_kwargs=env_kwargs)
    venv.reset()
    out = []
    for k in range(4):
        sync_phase(venv, 10 * k)
        out.append(venv.get_attr("scale"))
    return out


def test_random_schedule_is_reproducible_from_make_vec_env_seed() -> None:
    a, b, c = _random_scales(0), _random_scales(0), _random_scales(1)
    assert a == b and a != c
    assert all(len(set(row)) == 2 for row in a)  # sub-env i draws from seed + i
    explicit = [_random_scales(s, seed=5) for s in (0, 1)]
    assert explicit[0] == explicit[1] and all(len(set(row)) == 1 for row in explicit[0])  # the seed kwarg is shared


# ------------------------------------------------------------------------------------------ plot marks the switches
def test_plot_marks_switches_from_the_phase_tag(tmp_path: Path) -> None:
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(str(tmp_path / "run"))
    for step, phase in [(0, 0), (50, 1), (100, 1), (150, 2), (200, 0)]:
        writer.add_scalar(PHASE_TAG, phase, step)
    for step in range(0, 250, 25):
        writer.add_scalar("rollout/ep_rew_mean", float(step), step)
    writer.close()
    series = load_scalars(tmp_path / "run")[PHASE_TAG]
    assert phase_changes(series) == [(0, 0), (50, 1), (150, 2), (200, 0)]
    runs = load_runs([tmp_path / "run"])
    path = plot_returns(runs, tmp_path / "returns.png")
    assert path.is_file() and path.stat().st_size > 0
    assert switch_marks(runs[0]) == [(50, 1), (150, 2), (200, 0)]  # the vertical lines drawn: every change after the start


# ------------------------------------------------------------------------------------------ tuner / benchmark evaluation
def test_evaluate_model_scores_the_training_phase(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The tuner's and benchmarks' fresh eval envs (rl_zoo3-built, default switch_every) get the training phase."""
    import stable_baselines3.common.evaluation as evaluation

    from sb3_regnorm import zoo
    from sb3_regnorm.training import EvalSettings, evaluate_model, python_entry, setup_model

    extra = {"n_timesteps": 160, "n_envs": 2, "env_kwargs": {"switch_every": 64}, "policy_kwargs": {"net_arch": [8]}}
    entry = python_entry(zoo.raw_entry("a2c", LUNAR_LANDER_OBS_SHIFT_ID, "none", extra), keep_callbacks=False)
    model, manager = setup_model("a2c", LUNAR_LANDER_OBS_SHIFT_ID, entry, 0, tmp_path)
    model.learn(160, callback=manager.callbacks)
    seen: list[list[int]] = []

    def fake_evaluate(model: Any, env: Any, **kwargs: Any) -> tuple[float, float]:
        seen.append(env.get_attr("phase") + env.get_attr("switch_every"))
        return 0.0, 0.0

    monkeypatch.setattr(evaluation, "evaluate_policy", fake_evaluate)
    evaluate_model(model, manager, EvalSettings(1, 2, 100_000))
    assert seen == [[2, 2, 50_000, 50_000]]  # phase of timestep 160 with switch_every 64, on default-made eval envs
