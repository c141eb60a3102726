"""RegularityProbeCallback: probes that change nothing, are logged like RN layers, and work on MLP and CNN policies."""

from __future__ import annotations

import math
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch
from stable_baselines3 import PPO
from stable_baselines3.common.env_util import make_vec_env
from torch import nn

from sb3_regnorm import DiagnosticsCallback, RegularityNorm, RegularityProbeCallback, minigrid_image_env
from tests.monitoring_utils import make_model, read_events, steps_of

torch.set_num_threads(1)


def test_probes_change_nothing_and_are_logged(tmp_path: Path) -> None:
    kwargs = dict(n_steps=64, batch_size=32, n_epochs=2)
    callback = RegularityProbeCallback(variant="rln", log_freq=1)
    probed = make_model(PPO, tmp_path / "probed", **kwargs)
    probed.learn(640, callback=callback)
    plain = make_model(PPO, tmp_path / "plain", **kwargs)
    plain.learn(640)

    probed_state, plain_state = probed.policy.state_dict(), plain.policy.state_dict()
    assert list(probed_state) == list(plain_state)
    assert all(torch.equal(probed_state[k], plain_state[k]) for k in plain_state)
    obs = np.random.default_rng(0).normal(size=(32, 4)).astype(np.float32)
    assert np.array_equal(probed.predict(obs, deterministic=True)[0], plain.predict(obs, deterministic=True)[0])
    probed.save(tmp_path / "probed.zip")
    reloaded = PPO.load(tmp_path / "probed.zip", device="cpu")
    assert list(reloaded.policy.state_dict()) == list(plain_state)
    assert all(not m._forward_hooks for m in probed.policy.modules())  # hooks removed at training end

    assert set(callback.probes) == {"mlp_extractor.policy_net.0", "mlp_extractor.policy_net.2"} | {
        "mlp_extractor.value_net.0",
        "mlp_extractor.value_net.2",
    }
    scalars, histograms = read_events(tmp_path / "probed")
    for short in ("pi.0", "pi.2", "vf.0", "vf.2"):
        events = scalars[f"regnorm/{short}/code_length"]
        assert steps_of(events) == list(range(256, 641, 128))
        assert all(e.value == 1.0 for e in scalars[f"regnorm/{short}/gain"])
        assert f"regnorm/{short}/code_length_hist" in histograms
    assert not any(tag.startswith("regnorm/action_net") for tag in scalars)  # output heads are skipped by default
    # One probe update per gradient minibatch: 5 train() calls x 2 epochs x 4 minibatches of 32.
    assert all(float(p.running_updates) == 5 * 2 * 4 for p in callback.probes.values())


def test_remove_is_idempotent_and_detaches_probes() -> None:
    model = PPO("MlpPolicy", make_vec_env("CartPole-v1", n_envs=1, seed=0), n_steps=16, batch_size=16, n_epochs=1, seed=0)
    callback = RegularityProbeCallback(heads=True)
    model.learn(32, callback=callback)
    assert "action_net" in callback.probes and "value_net" in callback.probes
    callback.remove()
    callback.remove()
    assert all(not m._forward_hooks for m in model.policy.modules())
    assert not any(isinstance(m, RegularityNorm) for m in model.policy.modules())
    with pytest.raises(ValueError, match="variant"):
        RegularityProbeCallback(variant="bn")


class SmallCNN(nn.Module):
    """Two Conv2d layers and a Linear on MiniGrid's 7x7x3 image: exercises 4-D probes and conv diagnostics."""

    def __init__(self, observation_space: gym.spaces.Box) -> None:
        super().__init__()
        channels = observation_space.shape[0]
        self.cnn = nn.Sequential(nn.Conv2d(channels, 8, 2), nn.ReLU(), nn.Conv2d(8, 8, 2), nn.ReLU(), nn.Flatten())
        with torch.no_grad():
            flat = self.cnn(torch.zeros(1, *observation_space.shape)).shape[1]
        self.linear = nn.Sequential(nn.Linear(flat, 16), nn.ReLU())
        self.features_dim = 16

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(self.cnn(x))


def test_conv_probes_and_diagnostics_on_a_cnn_policy() -> None:
    env = make_vec_env(lambda: minigrid_image_env("MiniGrid-Empty-5x5-v0"), n_envs=2, seed=0)
    probes = RegularityProbeCallback(variant="rln", log_freq=1)
    diagnostics = DiagnosticsCallback(log_freq=20, batch_size=32)
    kwargs = dict(features_extractor_class=SmallCNN, normalize_images=False)
    model = PPO("CnnPolicy", env, n_steps=32, batch_size=32, n_epochs=1, policy_kwargs=kwargs, seed=0)
    model.learn(128, callback=[probes, diagnostics])
    assert {"features_extractor.cnn.0", "features_extractor.cnn.2", "features_extractor.linear.0"} <= set(probes.probes)
    values = probes.regnorm_values()
    assert values["regnorm/fe.cnn.0/code_length_hist"].shape == (8,)  # one code length per channel
    assert math.isfinite(values["regnorm/fe.cnn.2/code_length"])
    computed = diagnostics.compute()
    assert 0.0 <= computed["diag/fe.cnn.1/dormant_0.025"] <= 1.0 and computed["diag/fe.cnn.3/srank"] >= 1
