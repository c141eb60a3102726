"""Diagnostics: the metric functions on known matrices, the observation batch for Dict spaces, and bad input."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import pytest
import torch
from stable_baselines3 import DQN
from stable_baselines3.common.env_util import make_vec_env

from sb3_regnorm import RegularityProbeCallback
from sb3_regnorm.diagnostics import DiagnosticsCallback, dormant_fraction, relu_zero_fraction, srank, tanh_saturation

torch.set_num_threads(1)


def test_metrics_on_known_matrices() -> None:
    h = torch.tensor([[1.0, 0.0, 0.01, 2.0], [3.0, 0.0, -0.01, -2.0]])  # unit scores 2, 0, 0.01, 2 (mean 1.0025)
    assert dormant_fraction(h, 0.0) == 0.25
    assert dormant_fraction(h, 0.025) == 0.5
    assert relu_zero_fraction(h) == 0.25
    conv = torch.zeros(4, 3, 2, 2)
    conv[:, 0] = 1.0
    assert dormant_fraction(conv, 0.0) == pytest.approx(2 / 3)
    assert tanh_saturation(torch.tensor([[0.995, -0.999, 0.5, 0.0]])) == 0.5
    gen = torch.Generator().manual_seed(0)
    rank2 = torch.randn(64, 2, generator=gen) @ torch.randn(2, 10, generator=gen)
    assert srank(rank2) == 2
    assert srank(torch.eye(8)) == 8
    assert srank(torch.zeros(5, 3)) == 0


def test_bad_arguments() -> None:
    for bad in ({"log_freq": 0}, {"batch_size": 0}, {"batch_size": True}, {"log_freq": "10"}):
        with pytest.raises(ValueError):
            DiagnosticsCallback(**bad)


class DictEnv(gym.Env):
    """Dict observations, to check that the observation batch handles them."""

    observation_space = gym.spaces.Dict({"a": gym.spaces.Box(-1, 1, (3,)), "b": gym.spaces.Discrete(4)})
    action_space = gym.spaces.Discrete(2)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[Any, dict[str, Any]]:
        super().reset(seed=seed)
        self.observation_space.seed(seed)
        self.t = 0
        return self.observation_space.sample(), {}

    def step(self, action: int) -> tuple[Any, float, bool, bool, dict[str, Any]]:
        self.t += 1
        return self.observation_space.sample(), float(action), self.t >= 10, False, {}


def test_dict_observations_with_dqn_probes() -> None:
    callback = DiagnosticsCallback(log_freq=10, batch_size=16)
    probes = RegularityProbeCallback(log_freq=10)
    model = DQN("MultiInputPolicy", make_vec_env(DictEnv, n_envs=1, seed=0), learning_starts=10, seed=0)
    model.learn(60, callback=[probes, callback])
    assert set(probes.probes) == {"q_net.q_net.0", "q_net.q_net.2"}  # the head q_net.q_net.4 and the target are skipped
    assert isinstance(callback.obs_batch, dict) and callback.obs_batch["a"].shape == (16, 3)
    values = callback.compute()
    assert 0.0 <= values["diag/q.3/relu_zero"] <= 1.0 and values["diag/q.1/srank"] >= 1
