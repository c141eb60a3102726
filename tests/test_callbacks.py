"""RegularityCallback: tags, cadence, stamped csv/json rows, training-time values, plots, a live TensorBoard, rl_zoo3."""

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

import pytest
import torch
from stable_baselines3 import A2C, DQN, PPO
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.type_aliases import MaybeCallback

from sb3_regnorm import DiagnosticsCallback, RegularityCallback
from sb3_regnorm.callbacks import short_name
from sb3_regnorm.plotting import find_runs, main
from sb3_regnorm.policies import RNActorCriticPolicy, RNDQNPolicy
from tests.monitoring_utils import (
    ENV_ID,
    RN_TAG_FIELDS,
    column,
    make_model,
    read_csv,
    read_events,
    read_json,
    rn_policy_kwargs,
    steps_of,
)

torch.set_num_threads(1)


@dataclass
class TrainedRun:
    model: BaseAlgorithm
    callback: RegularityCallback
    path: Path
    scalars: dict[str, list[Any]]
    histograms: list[str]


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, TrainedRun]:
    """Trained once for the module: PPO (rln, every rollout, diagnostics via the shortcut, stdout+tb+csv+json), A2C (rn,
    8 envs, default cadence, diagnostics every 1000 steps, tb+csv) and DQN (rln, every 100 steps, diagnostics, tb+json);
    A2C and DQN get a separate DiagnosticsCallback in a callback list."""
    root = tmp_path_factory.mktemp("tb")
    ppo_cb = RegularityCallback(log_freq=1, diagnostics_freq=80, diagnostics_batch_size=128)
    a2c_cb = RegularityCallback()  # the default cadence
    dqn_cb = RegularityCallback(log_freq=100)
    ppo_kwargs = dict(n_steps=64, batch_size=32, n_epochs=2, verbose=1, policy_kwargs=rn_policy_kwargs("rln"))
    dqn_kwargs = dict(learning_starts=100, train_freq=4, buffer_size=500, target_update_interval=100)
    configs: list[tuple[str, type[BaseAlgorithm], int, RegularityCallback, MaybeCallback, tuple[str, ...], dict[str, Any]]] = [
        ("ppo", PPO, 896, ppo_cb, ppo_cb, ("stdout", "tensorboard", "csv", "json"), ppo_kwargs),
        (
            "a2c",
            A2C,
            4000,
            a2c_cb,
            [a2c_cb, DiagnosticsCallback(log_freq=1000, batch_size=64)],
            ("tensorboard", "csv"),
            dict(n_envs=8, policy_kwargs=rn_policy_kwargs("rn")),
        ),
        (
            "dqn",
            DQN,
            1000,
            dqn_cb,
            [dqn_cb, DiagnosticsCallback(log_freq=100, batch_size=128)],
            ("tensorboard", "json"),
            dict(dqn_kwargs, policy_kwargs=rn_policy_kwargs("rln")),
        ),
    ]
    out = {}
    for key, algo, steps, callback, learn_callback, formats, kwargs in configs:
        path = root / f"{algo.__name__}_1"
        model = make_model(algo, path, formats, **kwargs)
        model.learn(steps, callback=learn_callback)
        out[key] = TrainedRun(model, callback, path, *read_events(path))
    return out


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


def test_keyword_only_yaml_friendly_arguments() -> None:
    callback = RegularityCallback(**{"log_freq": 500, "probe": True, "probe_variant": "rln", "diagnostics_freq": 10})
    assert callback.log_freq == 500 and callback.probe_callback is not None and callback.probe_callback.variant == "rln"
    assert callback.diagnostics_callback is not None and callback.diagnostics_callback.log_freq == 10
    assert RegularityCallback().log_freq is None and not RegularityCallback().children
    with pytest.raises(TypeError):
        RegularityCallback(500)  # type: ignore[misc]
    for bad in ({"log_freq": 0}, {"diagnostics_freq": -1}, {"probe_variant": "bn"}, {"log_freq": True}, {"log_freq": 1.5}):
        with pytest.raises(ValueError):
            RegularityCallback(**bad)


# ---------------------------------------------------------------------------------------------- tags and cadence
def test_ppo_logs_after_every_train_and_leaves_sb3_dumps_alone(runs: dict[str, TrainedRun]) -> None:
    run = runs["ppo"]
    assert_regnorm_tags(run, "fe.2")
    # log_freq=1: every rollout end that follows a train() (the first rollout has no statistics yet).
    assert steps_of(run.scalars["regnorm/fe.2/code_length"]) == list(range(256, 897, 128))
    assert "regnorm/fe.2/code_length_hist" in run.histograms
    # SB3's own dumps: one per iteration; train/* recorded by train() appear at the next iteration's dump.
    assert steps_of(run.scalars["time/fps"]) == list(range(128, 897, 128))
    assert steps_of(run.scalars["train/loss"]) == list(range(256, 897, 128))
    # The gain is the code length for a rescaling RN.
    gains = [e.value for e in run.scalars["regnorm/fe.2/gain"]]
    assert gains == [e.value for e in run.scalars["regnorm/fe.2/code_length"]]
    assert all(e.value > 0 for e in run.scalars["regnorm/fe.2/std"])


def test_a2c_with_8_envs_gets_a_curve(runs: dict[str, TrainedRun]) -> None:
    """A2C, 8 envs, 4000 steps (a 1000-call cadence logged once): log_freq counts timesteps, and the default gives a
    curve."""
    run = runs["a2c"]
    assert_regnorm_tags(run, "fe.2")
    assert run.callback.every == 40  # the default: (4000 - 0) // 100
    # Rollouts of 8 envs x 5 steps = 40 timesteps: a log at every rollout end after the first train().
    assert steps_of(run.scalars["regnorm/fe.2/code_length"]) == list(range(80, 4001, 40))
    assert steps_of(run.scalars["diag/fe.3/srank"]) == [1000, 2000, 3000, 4000]  # log_freq=1000 timesteps
    assert not run.histograms  # rn: one code length per layer, no histogram


def test_dqn_logs_online_and_target(runs: dict[str, TrainedRun]) -> None:
    run = runs["dqn"]
    assert_regnorm_tags(run, "qfe.2")
    assert_regnorm_tags(run, "qtfe.2")
    # First gradient step at 104 timesteps, so the first log at 200; the target has statistics after its first sync.
    assert steps_of(run.scalars["regnorm/qfe.2/code_length"]) == list(range(200, 1001, 100))
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
    model = make_model(A2C, policy_kwargs=rn_policy_kwargs(variant))
    monitor = RegularityCallback(log_freq=1)
    checker = TrainTimeChecker(monitor)
    model.learn(100, callback=[checker, monitor])
    assert checker.checked == 9


def test_package_policies_names_capped_gain_and_no_duplicate_probes(tmp_path: Path) -> None:
    """RNActorCriticPolicy / RNDQNPolicy layers get pi/vf/q/qt tags; Linears already followed by an RN get no probe."""
    policy_kwargs = dict(net_arch=[16, 16], norm="rn", norm_kwargs=dict(max_gain=1.0))
    ppo_cb = RegularityCallback(probe=True, log_freq=1)
    ppo = make_model(
        PPO, tmp_path / "PPO_1", policy=RNActorCriticPolicy, n_steps=64, batch_size=64, n_epochs=1, policy_kwargs=policy_kwargs
    )
    ppo.learn(384, callback=ppo_cb)
    dqn_cb = RegularityCallback(probe=True, log_freq=50)
    dqn_kwargs = dict(
        learning_starts=50, train_freq=4, buffer_size=500, target_update_interval=50, policy_kwargs=dict(net_arch=[16])
    )
    make_model(DQN, tmp_path / "DQN_1", policy=RNDQNPolicy, **dqn_kwargs).learn(300, callback=dqn_cb)
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
    assert all(not m._forward_hooks for m in ppo.policy.modules())  # hooks removed at training end


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
    # PPO: at rollout ends (every 128 steps), once the 128-observation batch is full (the first rollout end).
    assert steps_of(runs["ppo"].scalars["diag/pi.1/srank"]) == list(range(128, 897, 128))


def test_diagnostics_change_nothing(runs: dict[str, TrainedRun]) -> None:
    run = runs["ppo"]
    diagnostics = run.callback.diagnostics_callback
    assert diagnostics is not None and diagnostics.obs_batch is not None and diagnostics.obs_batch.shape == (128, 4)
    policy = run.model.policy
    policy.set_training_mode(True)
    policy.features_extractor[3].eval()  # an odd mix of modes that must come back as it was
    modes = [m.training for m in policy.modules()]
    state = {k: v.clone() for k, v in policy.state_dict().items()}
    rng = torch.get_rng_state()
    logged = run.callback.regnorm_values()
    values = diagnostics.compute()
    assert values and set(values) == {t for t in run.scalars if t.startswith("diag/")}
    assert [m.training for m in policy.modules()] == modes
    assert all(torch.equal(v, policy.state_dict()[k]) for k, v in state.items())
    assert torch.equal(rng, torch.get_rng_state())
    after = run.callback.regnorm_values()
    assert after.keys() == logged.keys()
    assert all(torch.equal(torch.as_tensor(after[k]), torch.as_tensor(v)) for k, v in logged.items())
    policy.set_training_mode(False)


# ---------------------------------------------------------------------------------------------- stamped csv / json rows
def _assert_stamped(rows: list[dict[str, Any]], run: TrainedRun, tags: list[str]) -> None:
    """Every RN/diag row carries time/total_timesteps, and each tag's (step, value) pairs match TensorBoard's."""
    for row in rows:
        ours = [k for k, v in row.items() if k.startswith(("regnorm/", "diag/")) and v is not None and math.isfinite(v)]
        if ours:
            assert math.isfinite(row.get("time/total_timesteps", math.nan)), row
    for tag in tags:
        pairs = column(rows, tag)
        assert [step for step, _ in pairs] == steps_of(run.scalars[tag]), tag
        assert [v for _, v in pairs] == pytest.approx([e.value for e in run.scalars[tag]], rel=1e-6)


def test_csv_and_json_rows_carry_the_timestep(runs: dict[str, TrainedRun]) -> None:
    ppo, a2c, dqn = runs["ppo"], runs["a2c"], runs["dqn"]
    ppo_tags = ["regnorm/fe.2/code_length", "regnorm/fe.2/comp", "diag/pi.1/srank", "diag/fe.3/dormant_0"]
    for rows in (read_csv(ppo.path / "progress.csv"), read_json(ppo.path / "progress.json")):
        _assert_stamped(rows, ppo, ppo_tags)
        # SB3's own rows are unchanged: one per iteration at its own step, train/* from the second one on.
        assert [step for step, _ in column(rows, "time/fps")] == list(range(128, 897, 128))
        assert [step for step, _ in column(rows, "train/loss")] == list(range(256, 897, 128))
        assert not any("code_length_hist" in key for row in rows for key in row)  # histograms: TensorBoard only
    _assert_stamped(read_csv(a2c.path / "progress.csv"), a2c, ["regnorm/fe.2/code_length", "diag/fe.3/srank"])
    dqn_rows = read_json(dqn.path / "progress.json")
    _assert_stamped(dqn_rows, dqn, ["regnorm/qfe.2/code_length", "regnorm/qtfe.2/comp", "diag/q.1/srank"])
    assert column(dqn_rows, "rollout/exploration_rate")  # SB3's episode dumps are still there


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
        assert [step for _, step, _ in points] == list(range(80, 4001, 40))
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
  n_timesteps: 1024
  policy: 'MlpPolicy'
  n_steps: 64
  batch_size: 32
  n_epochs: 2
  policy_kwargs: "dict(net_arch=[16])"
  callback:
    - sb3_regnorm.probes.RegularityProbeCallback:
        log_freq: 256
    - sb3_regnorm.diagnostics.DiagnosticsCallback:
        batch_size: 64
"""


def test_rl_zoo3_builds_the_callbacks_from_yaml(tmp_path: Path) -> None:
    conf = tmp_path / "ppo.yml"
    conf.write_text(ZOO_YAML)
    tb = tmp_path / "tb"
    command = [sys.executable, "-m", "rl_zoo3.train", "--algo", "ppo", "--env", ENV_ID, "-n", "1024"]
    command += ["--num-threads", "1", "--eval-freq", "-1", "-tb", str(tb), "-f", str(tmp_path / "logs")]
    command += ["-conf", str(conf), "--gym-packages", "sb3_regnorm", "--seed", "0"]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    result = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    (run_dir,) = find_runs([tb])
    scalars, _ = read_events(run_dir)
    for tag in ("regnorm/pi.0/code_length", "regnorm/vf.0/code_length", "diag/pi.1/srank"):
        events = scalars[tag]
        assert len(events) >= 4 and all(math.isfinite(e.value) for e in events)
        # rl_zoo3 calls the first callback's on_training_end a second time: no duplicate step.
        assert all(a < b for a, b in itertools.pairwise(steps_of(events)))
    assert "rollout/ep_rew_mean" in scalars
