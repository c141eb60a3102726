"""RegularityCallback: tags, cadence, probes that change nothing, diagnostics, plots, a live TensorBoard and rl_zoo3."""

from __future__ import annotations

import itertools
import json
import math
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch
from stable_baselines3 import A2C, DQN, PPO
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.env_util import make_vec_env
from tensorboard.backend.event_processing import event_accumulator
from torch import nn

from sb3_regnorm import RegularityNorm, minigrid_image_env
from sb3_regnorm.callbacks import RegularityCallback, dormant_fraction, short_name, srank, tanh_saturation
from sb3_regnorm.plotting import find_runs, main
from sb3_regnorm.policies import RNActorCriticPolicy, RNDQNPolicy

torch.set_num_threads(1)

ENV_ID = "CartPole-v1"
RN_TAG_FIELDS = ("code_length", "comp", "mean", "std", "gain")


class RNExtractor(nn.Sequential):
    """Flatten -> Linear(obs, 16) -> RegularityNorm -> Tanh: an RN network for PPO, A2C and DQN alike."""

    def __init__(self, observation_space: gym.spaces.Box, variant: str = "rn") -> None:
        obs_dim = int(np.prod(observation_space.shape))
        super().__init__(nn.Flatten(), nn.Linear(obs_dim, 16), RegularityNorm(16, variant), nn.Tanh())
        self.features_dim = 16


def rn_policy_kwargs(variant: str) -> dict[str, Any]:
    return dict(features_extractor_class=RNExtractor, features_extractor_kwargs=dict(variant=variant), net_arch=[16])


@dataclass
class TrainedRun:
    model: BaseAlgorithm
    callback: RegularityCallback
    path: Path
    scalars: dict[str, list[Any]]
    histograms: list[str]


def read_events(run_dir: Path) -> tuple[dict[str, list[Any]], list[str]]:
    """All scalar events by tag and the histogram tags of one run, through TensorBoard's own reader."""
    acc = event_accumulator.EventAccumulator(
        str(run_dir), size_guidance={event_accumulator.SCALARS: 0, event_accumulator.HISTOGRAMS: 0}
    )
    acc.Reload()
    tags = acc.Tags()
    return {tag: acc.Scalars(tag) for tag in tags["scalars"]}, list(tags["histograms"])


def train(
    algo: type[BaseAlgorithm], tb_root: Path, callback: RegularityCallback | None, steps: int, **kwargs: Any
) -> BaseAlgorithm:
    n_envs = 1 if algo is DQN else 2
    policy = kwargs.pop("policy", "MlpPolicy")
    model = algo(policy, make_vec_env(ENV_ID, n_envs=n_envs, seed=0), seed=0, tensorboard_log=str(tb_root), **kwargs)
    model.learn(steps, callback=callback)
    return model


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, TrainedRun]:
    """PPO (rln, every rollout, verbose stdout), A2C (rn, every 50 calls) and DQN (rln) trained once for the module."""
    root = tmp_path_factory.mktemp("tb")
    configs: dict[str, tuple[type[BaseAlgorithm], int, RegularityCallback, dict[str, Any]]] = {
        "ppo": (
            PPO,
            1280,
            RegularityCallback(log_freq=1, diagnostics_freq=40, diagnostics_batch_size=128),
            dict(n_steps=64, batch_size=32, n_epochs=2, verbose=1, policy_kwargs=rn_policy_kwargs("rln")),
        ),
        "a2c": (A2C, 1000, RegularityCallback(log_freq=50), dict(policy_kwargs=rn_policy_kwargs("rn"))),
        "dqn": (
            DQN,
            1500,
            RegularityCallback(log_freq=100, diagnostics_freq=100, diagnostics_batch_size=128),
            dict(
                learning_starts=100,
                train_freq=4,
                buffer_size=500,
                target_update_interval=100,
                policy_kwargs=rn_policy_kwargs("rln"),
            ),
        ),
    }
    out = {}
    for key, (algo, steps, callback, kwargs) in configs.items():
        model = train(algo, root, callback, steps, **kwargs)
        path = root / f"{algo.__name__}_1"
        out[key] = TrainedRun(model, callback, path, *read_events(path))
    return out


def steps_of(events: list[Any]) -> list[int]:
    return [event.step for event in events]


def assert_regnorm_tags(run: TrainedRun, short: str) -> None:
    for field in RN_TAG_FIELDS:
        events = run.scalars.get(f"regnorm/{short}/{field}")
        assert events, f"missing regnorm/{short}/{field}; have {sorted(run.scalars)}"
        assert all(math.isfinite(event.value) for event in events)
        steps = steps_of(events)
        assert all(a < b for a, b in itertools.pairwise(steps)), steps


# ---------------------------------------------------------------------------------------------- units
@pytest.mark.parametrize(
    ("path", "short"),
    [
        ("mlp_extractor.policy_net.1", "pi.1"),
        ("mlp_extractor.value_net.2", "vf.2"),
        ("q_net_target.q_net.1", "qt.1"),
        ("q_net.q_net.1", "q.1"),
        ("q_net_target.features_extractor.2", "qtfe.2"),
        ("q_net.features_extractor.2", "qfe.2"),
        ("pi_features_extractor.cnn.1", "pife.cnn.1"),
        ("vf_features_extractor.1", "vffe.1"),
        ("features_extractor.2", "fe.2"),
        ("action_net", "action_net"),
    ],
)
def test_short_name(path: str, short: str) -> None:
    assert short_name(path) == short


def test_metrics_on_known_matrices() -> None:
    h = torch.tensor([[1.0, 0.0, 0.01, 2.0], [3.0, 0.0, -0.01, -2.0]])  # unit scores 2, 0, 0.01, 2 (mean 1.0025)
    assert dormant_fraction(h, 0.0) == 0.25
    assert dormant_fraction(h, 0.025) == 0.5
    conv = torch.zeros(4, 3, 2, 2)
    conv[:, 0] = 1.0
    assert dormant_fraction(conv, 0.0) == pytest.approx(2 / 3)
    assert tanh_saturation(torch.tensor([[0.995, -0.999, 0.5, 0.0]])) == 0.5
    gen = torch.Generator().manual_seed(0)
    rank2 = torch.randn(64, 2, generator=gen) @ torch.randn(2, 10, generator=gen)
    assert srank(rank2) == 2
    assert srank(torch.eye(8)) == 8
    assert srank(torch.zeros(5, 3)) == 0


def test_keyword_only_yaml_friendly_arguments() -> None:
    callback = RegularityCallback(**{"log_freq": 500, "probe": True, "probe_variant": "rln", "diagnostics_freq": 10})
    assert callback.log_freq == 500 and callback.probe
    with pytest.raises(TypeError):
        RegularityCallback(500)  # type: ignore[misc]
    for bad in ({"log_freq": 0}, {"diagnostics_freq": -1}, {"probe_variant": "bn"}, {"log_freq": True}):
        with pytest.raises(ValueError):
            RegularityCallback(**bad)


# ---------------------------------------------------------------------------------------------- tags and cadence
def test_ppo_logs_after_every_train_and_leaves_sb3_dumps_alone(runs: dict[str, TrainedRun]) -> None:
    run = runs["ppo"]
    assert_regnorm_tags(run, "fe.2")
    # log_freq=1: every rollout end that follows a train() (the first rollout has no statistics yet).
    assert steps_of(run.scalars["regnorm/fe.2/code_length"]) == list(range(256, 1281, 128))
    assert "regnorm/fe.2/code_length_hist" in run.histograms
    # SB3's own dumps: one per iteration; train/* recorded by train() appear at the next iteration's dump.
    assert steps_of(run.scalars["time/fps"]) == list(range(128, 1281, 128))
    assert steps_of(run.scalars["train/loss"]) == list(range(256, 1281, 128))
    # The gain is the code length for a rescaling RN.
    gains = [e.value for e in run.scalars["regnorm/fe.2/gain"]]
    assert gains == [e.value for e in run.scalars["regnorm/fe.2/code_length"]]
    assert all(e.value > 0 for e in run.scalars["regnorm/fe.2/std"])


def test_a2c_logs_every_log_freq_calls(runs: dict[str, TrainedRun]) -> None:
    run = runs["a2c"]
    assert_regnorm_tags(run, "fe.2")
    # n_steps=5, n_envs=2, log_freq=50 calls: the rollout end that reaches each multiple of 50 calls = 100 timesteps.
    assert steps_of(run.scalars["regnorm/fe.2/code_length"]) == list(range(100, 1001, 100))
    assert not run.histograms  # rn: one code length per layer, no histogram


def test_dqn_logs_online_and_target(runs: dict[str, TrainedRun]) -> None:
    run = runs["dqn"]
    assert_regnorm_tags(run, "qfe.2")
    assert_regnorm_tags(run, "qtfe.2")
    # First gradient step at 104 timesteps, so the first log at 200; the target has statistics after its first sync.
    assert steps_of(run.scalars["regnorm/qfe.2/code_length"]) == list(range(200, 1501, 100))
    assert steps_of(run.scalars["regnorm/qtfe.2/code_length"])[0] >= 200
    assert {"regnorm/qfe.2/code_length_hist", "regnorm/qtfe.2/code_length_hist"} <= set(run.histograms)
    assert "train/loss" in run.scalars and "rollout/exploration_rate" in run.scalars


class TrainTimeChecker(BaseCallback):
    """Checks, at every rollout end, that the logged code length is the one the last train() left, not the rollout's."""

    def __init__(self, monitor: RegularityCallback) -> None:
        super().__init__()
        self.monitor = monitor
        self.after_train: float | None = None
        self.checked = 0

    def _on_rollout_start(self) -> None:  # after train(), before any rollout (eval) forward
        value = float(self.model.policy.features_extractor[2].last_code_length.mean())
        self.after_train = None if math.isnan(value) else value

    def _on_step(self) -> bool:
        return True

    def _on_rollout_end(self) -> None:
        if self.after_train is None:
            return
        eval_value = float(self.model.policy.features_extractor[2].last_code_length.mean())
        assert eval_value != pytest.approx(self.after_train)  # the rollout's eval forwards overwrote the layer's value
        assert self.monitor.regnorm_values()["regnorm/fe.2/code_length"] == pytest.approx(self.after_train, rel=1e-12)
        self.checked += 1


@pytest.mark.parametrize("variant", ["rn", "rln"])
def test_logged_values_are_training_time_values(variant: str) -> None:
    """Eval forwards (rollouts, predict) overwrite last_code_length; the callback keeps the training-time value."""
    model = A2C("MlpPolicy", make_vec_env(ENV_ID, n_envs=2, seed=0), seed=0, policy_kwargs=rn_policy_kwargs(variant))
    monitor = RegularityCallback(log_freq=1)
    checker = TrainTimeChecker(monitor)
    model.learn(100, callback=[checker, monitor])
    assert checker.checked == 9


def test_package_policies_names_capped_gain_and_no_duplicate_probes(tmp_path: Path) -> None:
    """RNActorCriticPolicy / RNDQNPolicy layers get pi/vf/q/qt tags; Linears already followed by an RN get no probe."""
    policy_kwargs = dict(net_arch=[16, 16], norm="rn", norm_kwargs=dict(max_gain=1.0))
    ppo_cb = RegularityCallback(probe=True, log_freq=1)
    ppo = train(
        PPO,
        tmp_path,
        ppo_cb,
        384,
        policy=RNActorCriticPolicy,
        n_steps=64,
        batch_size=64,
        n_epochs=1,
        policy_kwargs=policy_kwargs,
    )
    dqn_cb = RegularityCallback(probe=True, log_freq=50)
    dqn_kwargs = dict(
        learning_starts=50, train_freq=4, buffer_size=500, target_update_interval=50, policy_kwargs=dict(net_arch=[16])
    )
    train(DQN, tmp_path, dqn_cb, 300, policy=RNDQNPolicy, **dqn_kwargs)
    assert not ppo_cb.probes and not dqn_cb.probes
    ppo_scalars, _ = read_events(tmp_path / "PPO_1")
    dqn_scalars, _ = read_events(tmp_path / "DQN_1")
    assert {tag.split("/")[1] for tag in ppo_scalars if tag.startswith("regnorm/")} == {"pi.1", "pi.4", "vf.1", "vf.4"}
    assert {tag.split("/")[1] for tag in dqn_scalars if tag.startswith("regnorm/")} == {"q.1", "qt.1"}
    for short in ("pi.1", "vf.4"):
        lengths = [e.value for e in ppo_scalars[f"regnorm/{short}/code_length"]]
        gains = [e.value for e in ppo_scalars[f"regnorm/{short}/gain"]]
        assert gains == pytest.approx([min(v, 1.0) for v in lengths], rel=1e-6)
    assert max(e.value for e in ppo_scalars["regnorm/pi.1/code_length"]) > 1.0  # the cap is exercised
    assert isinstance(ppo.policy, RNActorCriticPolicy)


# ---------------------------------------------------------------------------------------------- diagnostics
def test_diagnostics_tags_and_ranges(runs: dict[str, TrainedRun]) -> None:
    expected = {"ppo": {"fe.3": "tanh", "pi.1": "tanh", "vf.1": "tanh"}, "dqn": {"qfe.3": "tanh", "q.1": "relu"}}
    for key, layers in expected.items():
        run = runs[key]
        for short, kind in layers.items():
            fractions = ["dormant_0.025", "dormant_0", "tanh_saturation" if kind == "tanh" else "relu_zero"]
            for metric in fractions:
                values = [e.value for e in run.scalars[f"diag/{short}/{metric}"]]
                assert values and all(0.0 <= v <= 1.0 for v in values), (key, short, metric)
            ranks = [e.value for e in run.scalars[f"diag/{short}/srank"]]
            assert ranks and all(1 <= r <= 16 for r in ranks)
    assert not any(tag.startswith("diag/qt") for tag in runs["dqn"].scalars)  # the target is not diagnosed


def test_diagnostics_change_nothing(runs: dict[str, TrainedRun]) -> None:
    run = runs["ppo"]
    policy = run.model.policy
    policy.set_training_mode(True)
    policy.features_extractor[3].eval()  # an odd mix of modes that must come back as it was
    modes = [m.training for m in policy.modules()]
    state = {k: v.clone() for k, v in policy.state_dict().items()}
    rng = torch.get_rng_state()
    logged = run.callback.regnorm_values()
    diagnostics = run.callback.compute_diagnostics()
    assert diagnostics and set(diagnostics) == {t for t in run.scalars if t.startswith("diag/")}
    assert [m.training for m in policy.modules()] == modes
    assert all(torch.equal(v, policy.state_dict()[k]) for k, v in state.items())
    assert torch.equal(rng, torch.get_rng_state())
    after = run.callback.regnorm_values()
    assert after.keys() == logged.keys()
    assert all(torch.equal(torch.as_tensor(after[k]), torch.as_tensor(v)) for k, v in logged.items())
    policy.set_training_mode(False)


# ---------------------------------------------------------------------------------------------- probes
def test_probes_change_nothing_and_are_logged(tmp_path: Path) -> None:
    kwargs = dict(n_steps=64, batch_size=32, n_epochs=2)
    callback = RegularityCallback(probe=True, probe_variant="rln", log_freq=1, diagnostics_freq=16, diagnostics_batch_size=64)
    probed = train(PPO, tmp_path / "probed", callback, 640, **kwargs)
    plain = train(PPO, tmp_path / "plain", None, 640, **kwargs)

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
    scalars, histograms = read_events(tmp_path / "probed" / "PPO_1")
    for short in ("pi.0", "pi.2", "vf.0", "vf.2"):
        events = scalars[f"regnorm/{short}/code_length"]
        assert steps_of(events) == list(range(256, 641, 128))
        assert all(e.value == 1.0 for e in scalars[f"regnorm/{short}/gain"])
        assert f"regnorm/{short}/code_length_hist" in histograms
    assert not any(tag.startswith("regnorm/action_net") for tag in scalars)  # output heads are skipped by default
    # One probe update per gradient minibatch: 5 train() calls x 2 epochs x 4 minibatches of 32.
    assert all(float(p.running_updates) == 5 * 2 * 4 for p in callback.probes.values())


def test_remove_is_idempotent_and_detaches_probes() -> None:
    model = PPO("MlpPolicy", make_vec_env(ENV_ID, n_envs=1, seed=0), n_steps=16, batch_size=16, n_epochs=1, seed=0)
    callback = RegularityCallback(probe=True, probe_heads=True)
    model.learn(16, callback=callback)
    assert "action_net" in callback.probes and "value_net" in callback.probes
    callback.remove()
    callback.remove()
    assert all(not m._forward_hooks for m in model.policy.modules())
    assert not any(isinstance(m, RegularityNorm) for m in model.policy.modules())


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


class DictEnv(gym.Env):
    """Dict observations, to check that the probe batch handles them."""

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


def test_conv_probes_and_dict_observations() -> None:
    env = make_vec_env(lambda: minigrid_image_env("MiniGrid-Empty-5x5-v0"), n_envs=2, seed=0)
    callback = RegularityCallback(probe=True, probe_variant="rln", log_freq=1, diagnostics_freq=20, diagnostics_batch_size=32)
    kwargs = dict(features_extractor_class=SmallCNN, normalize_images=False)
    model = PPO("CnnPolicy", env, n_steps=32, batch_size=32, n_epochs=1, policy_kwargs=kwargs, seed=0)
    model.learn(128, callback=callback)
    assert {"features_extractor.cnn.0", "features_extractor.cnn.2", "features_extractor.linear.0"} <= set(callback.probes)
    values = callback.regnorm_values()
    assert values["regnorm/fe.cnn.0/code_length_hist"].shape == (8,)  # one code length per channel
    assert math.isfinite(values["regnorm/fe.cnn.2/code_length"])
    diagnostics = callback.compute_diagnostics()
    assert 0.0 <= diagnostics["diag/fe.cnn.1/dormant_0.025"] <= 1.0 and diagnostics["diag/fe.cnn.3/srank"] >= 1

    callback = RegularityCallback(probe=True, log_freq=10, diagnostics_freq=10, diagnostics_batch_size=16)
    model = DQN("MultiInputPolicy", make_vec_env(DictEnv, n_envs=1, seed=0), learning_starts=10, seed=0)
    model.learn(60, callback=callback)
    assert set(callback.probes) == {"q_net.q_net.0", "q_net.q_net.2"}  # the head q_net.q_net.4 and the target are skipped
    assert isinstance(callback.probe_obs, dict) and callback.probe_obs["a"].shape == (16, 3)
    assert "diag/q.3/relu_zero" in callback.compute_diagnostics()


# ---------------------------------------------------------------------------------------------- plotting
def test_plot_cli_writes_pngs(runs: dict[str, TrainedRun], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([str(runs["ppo"].path), "--out", str(tmp_path / "one")]) == 0
    for name in ("code_length.png", "returns.png", "diagnostics.png"):
        png = tmp_path / "one" / name
        assert png.stat().st_size > 1000 and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # A parent folder: each folder that directly holds event files is one run.
    tb_root = runs["ppo"].path.parent
    assert len(find_runs([tb_root])) >= 3
    assert main([str(tb_root), "--out", str(tmp_path / "all")]) == 0
    assert (tmp_path / "all" / "code_length.png").stat().st_size > 1000
    assert "code_length.png" in capsys.readouterr().out


def test_plot_cli_errors(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="no TensorBoard event files"):
        main([str(tmp_path), "--out", str(tmp_path / "out")])
    model = A2C("MlpPolicy", ENV_ID, n_steps=8, seed=0, tensorboard_log=str(tmp_path / "plain"))
    model.learn(16, log_interval=1)
    with pytest.raises(SystemExit, match="no 'regnorm/"):
        main([str(tmp_path / "plain"), "--out", str(tmp_path / "out")])


# ---------------------------------------------------------------------------------------------- TensorBoard server
def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _get_json(opener: urllib.request.OpenerDirector, url: str) -> Any:
    with opener.open(url, timeout=5) as response:
        return json.load(response)


def test_tensorboard_server_serves_regnorm_tags(runs: dict[str, TrainedRun], tmp_path: Path) -> None:
    logdir = runs["a2c"].path.parent
    script = Path(sys.executable).with_name("tensorboard")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "tensorboard.main"]
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback only, never via a proxy
    args = ["--logdir", str(logdir), "--port", str(port), "--host", "127.0.0.1", "--load_fast=false", "--reload_interval", "1"]
    with open(tmp_path / "tensorboard.log", "w") as log:
        server = subprocess.Popen(command + args, stdout=log, stderr=subprocess.STDOUT)
    try:
        tags: dict[str, Any] = {}
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert server.poll() is None, (tmp_path / "tensorboard.log").read_text()
            try:
                tags = _get_json(opener, f"{base}/data/plugin/scalars/tags")
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                tags = {}
            if "regnorm/fe.2/code_length" in tags.get("A2C_1", {}) and "regnorm/qtfe.2/comp" in tags.get("DQN_1", {}):
                break
            time.sleep(0.5)
        assert {f"regnorm/fe.2/{field}" for field in RN_TAG_FIELDS} <= set(tags.get("A2C_1", {})), tags
        query = urllib.parse.urlencode({"run": "A2C_1", "tag": "regnorm/fe.2/code_length"})
        points = _get_json(opener, f"{base}/data/plugin/scalars/scalars?{query}")
        assert [step for _, step, _ in points] == list(range(100, 1001, 100))
        assert all(math.isfinite(value) for _, _, value in points)
    finally:
        server.terminate()
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


# ---------------------------------------------------------------------------------------------- rl_zoo3
ZOO_YAML = """\
CartPole-v1:
  n_envs: 2
  n_timesteps: 2000
  policy: 'MlpPolicy'
  n_steps: 64
  batch_size: 32
  n_epochs: 2
  policy_kwargs: "dict(net_arch=[16])"
  callback:
    - sb3_regnorm.callbacks.RegularityCallback:
        probe: true
        log_freq: 100
"""


def test_rl_zoo3_builds_the_callback_from_yaml(tmp_path: Path) -> None:
    conf = tmp_path / "ppo.yml"
    conf.write_text(ZOO_YAML)
    tb = tmp_path / "tb"
    command = [sys.executable, "-m", "rl_zoo3.train", "--algo", "ppo", "--env", ENV_ID, "-n", "2000"]
    command += ["--num-threads", "1", "--eval-freq", "-1", "-tb", str(tb), "-f", str(tmp_path / "logs")]
    command += ["-conf", str(conf), "--gym-packages", "sb3_regnorm", "--seed", "0"]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    result = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    (run_dir,) = find_runs([tb])
    scalars, _ = read_events(run_dir)
    for short in ("pi.0", "vf.0"):
        events = scalars[f"regnorm/{short}/code_length"]
        assert events and all(math.isfinite(e.value) for e in events)
        assert all(a < b for a, b in itertools.pairwise(steps_of(events)))
    assert "rollout/ep_rew_mean" in scalars
