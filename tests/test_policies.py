"""RN inside SB3's PPO, A2C and DQN: train/eval buffer semantics, save/load, DQN target sync, construction errors.

Modelled on SB3's tests/test_train_eval_mode.py and tests/test_save_load.py.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium import spaces
from stable_baselines3 import A2C, DQN, PPO
from stable_baselines3.common.envs import IdentityEnvBox, IdentityEnvMultiDiscrete
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.utils import polyak_update

from sb3_regnorm import (
    NORMS,
    MinigridCNN,
    RegularityNorm,
    RNActorCriticCnnPolicy,
    RNActorCriticPolicy,
    RNDQNCnnPolicy,
    RNDQNPolicy,
    RNMlpExtractor,
    find_regularity_norms,
    minigrid_image_env,
)

torch.set_num_threads(1)

ALGOS = {
    "ppo": (PPO, RNActorCriticPolicy, RNActorCriticCnnPolicy, {"n_steps": 64, "batch_size": 32, "n_epochs": 2}),
    "a2c": (A2C, RNActorCriticPolicy, RNActorCriticCnnPolicy, {"n_steps": 8}),
    "dqn": (
        DQN,
        RNDQNPolicy,
        RNDQNCnnPolicy,
        {"learning_starts": 64, "buffer_size": 1000, "batch_size": 32, "train_freq": 4, "target_update_interval": 100},
    ),
}
HAS_RN = {"none": False, "ln": False, "rn": True, "rln": True, "rnln": True}


def state(policy: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in policy.state_dict().items()}


def rn_buffers(policy: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in policy.state_dict().items() if "running_" in k}


def assert_equal_states(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def minigrid_env() -> gym.Env:
    return minigrid_image_env("MiniGrid-Empty-5x5-v0")


def make_model(algo: str, norm: str, image: bool, norm_kwargs: dict | None = None, **extra):
    algo_class, mlp_policy, cnn_policy, kwargs = ALGOS[algo]
    env = minigrid_env() if image else "CartPole-v1"
    policy = cnn_policy if image else mlp_policy
    policy_kwargs = {"norm": norm, "net_arch": [16, 16], "norm_kwargs": norm_kwargs}
    if image:
        policy_kwargs["features_extractor_kwargs"] = {"features_dim": 32}
    return algo_class(policy, env, policy_kwargs=policy_kwargs, seed=0, **{**kwargs, **extra})


# ---------------------------------------------------------------------------------------------- train / eval
@pytest.mark.parametrize("algo", list(ALGOS))
@pytest.mark.parametrize("norm", NORMS)
@pytest.mark.parametrize("image", [False, True], ids=["cartpole", "minigrid"])
def test_buffers_move_in_training_only(algo: str, norm: str, image: bool) -> None:
    model = make_model(algo, norm, image)
    rn_layers = list(find_regularity_norms(model.policy))
    assert bool(rn_layers) == HAS_RN[norm]
    before = rn_buffers(model.policy)
    model.learn(300)
    after = rn_buffers(model.policy)
    online = [(name, layer) for name, layer in rn_layers if "q_net_target" not in name]
    for name, layer in online:
        assert layer.running_updates.item() > 0, name
        assert not torch.equal(before[f"{name}.running_comp"], after[f"{name}.running_comp"]), name

    frozen = state(model.policy)
    obs = model.env.reset()
    for _ in range(5):
        model.predict(obs, deterministic=False)
    evaluate_policy(model, model.env, n_eval_episodes=2, warn=False)
    assert_equal_states(frozen, state(model.policy))
    assert all(torch.isfinite(v).all() for v in frozen.values() if v.is_floating_point())


def test_rollout_buffers_untouched_between_gradient_steps() -> None:
    """PPO: the RN update count equals the number of minibatch gradient steps exactly."""
    model = make_model("ppo", "rn", False, n_steps=64, batch_size=32, n_epochs=3)
    model.learn(128)  # two rollouts of 64 steps -> 2 iterations * 3 epochs * 2 minibatches
    for _, layer in find_regularity_norms(model.policy):
        assert layer.running_updates.item() == 12


def test_dqn_updates_once_per_gradient_step() -> None:
    model = make_model("dqn", "rn", False, learning_starts=64, train_freq=4, gradient_steps=1)
    model.learn(164)
    online = dict(find_regularity_norms(model.policy.q_net))
    assert {layer.running_updates.item() for layer in online.values()} == {model._n_updates}


# ---------------------------------------------------------------------------------------------- DQN target
def test_dqn_target_rn_state_follows_online_at_each_sync() -> None:
    """SB3 hard-copies every running_* buffer at target updates, even with tau=0 (its BatchNorm test, GH #996)."""
    model = make_model("dqn", "rnln", False, tau=0.0, target_update_interval=50)
    names = {name for name, _ in find_regularity_norms(model.policy.q_net)}
    synced = {k.split(".")[0] for k in model.policy.q_net.state_dict() if "running_" in k}
    assert len(model.batch_norm_stats) == 7 * len(names) == len(model.batch_norm_stats_target)
    assert synced == {"q_net"}
    initial_target = rn_buffers(model.policy.q_net_target)
    model.learn(400)
    target_layers = dict(find_regularity_norms(model.policy.q_net_target))
    online_layers = dict(find_regularity_norms(model.policy.q_net))
    # the target never trains, yet its statistics moved: they were copied from the online net
    assert not torch.equal(initial_target["q_net.2.running_comp"], target_layers["q_net.2"].running_comp)
    assert target_layers["q_net.2"].running_updates.item() > 0
    # and its weights did not (tau=0)
    for (_, p_online), (_, p_target) in zip(
        model.policy.q_net.named_parameters(), model.policy.q_net_target.named_parameters(), strict=True
    ):
        assert not torch.equal(p_online, p_target)
    # the sync SB3 performs makes the RN state identical, and then both give the same eval gain
    polyak_update(model.batch_norm_stats, model.batch_norm_stats_target, 1.0)
    x = torch.randn(5, 16)
    for name, online in online_layers.items():
        target = target_layers[name]
        for buffer in ("running_mean", "running_var", "running_count", "running_comp", "running_updates", "running_score"):
            assert torch.equal(getattr(online, buffer), getattr(target, buffer)), buffer
        online.eval()
        assert torch.equal(online(x), target(x))
    assert not model.policy.q_net_target.training


# ---------------------------------------------------------------------------------------------- save / load
@pytest.mark.parametrize("algo", list(ALGOS))
@pytest.mark.parametrize("norm", ["rn", "rln", "rnln"])
def test_save_load_restores_buffers_predictions_and_training(algo: str, norm: str, tmp_path) -> None:
    model = make_model(algo, norm, False, norm_kwargs={"momentum": 0.01}, **({} if algo != "ppo" else {"n_steps": 32}))
    model.learn(200)
    path = tmp_path / "model.zip"
    model.save(path)
    algo_class = ALGOS[algo][0]
    loaded = algo_class.load(path, env=model.get_env())
    assert_equal_states(state(model.policy), state(loaded.policy))
    assert loaded.policy_kwargs["norm"] == norm
    params = loaded.policy._get_constructor_parameters()
    assert params["norm"] == norm and params["norm_kwargs"] == {"momentum": 0.01}
    assert all(layer.momentum == 0.01 for _, layer in find_regularity_norms(loaded.policy))
    obs = np.stack([model.observation_space.sample() for _ in range(6)])
    np.testing.assert_array_equal(model.predict(obs, deterministic=True)[0], loaded.predict(obs, deterministic=True)[0])
    if algo != "dqn":
        np.testing.assert_array_equal(
            model.policy.predict_values(model.policy.obs_to_tensor(obs)[0]).detach().numpy(),
            loaded.policy.predict_values(loaded.policy.obs_to_tensor(obs)[0]).detach().numpy(),
        )
    before = rn_buffers(loaded.policy)
    loaded.learn(200, reset_num_timesteps=False)
    assert not all(torch.equal(before[k], v) for k, v in rn_buffers(loaded.policy).items())


def test_policy_save_load_alone(tmp_path) -> None:
    model = make_model("ppo", "rln", False)
    model.learn(64)
    model.policy.save(tmp_path / "policy.pth")
    loaded = RNActorCriticPolicy.load(tmp_path / "policy.pth")
    assert_equal_states(state(model.policy), state(loaded))
    assert loaded.norm == "rln" and loaded.share_features_extractor == model.policy.share_features_extractor


# ---------------------------------------------------------------------------------------------- policy options
@pytest.mark.parametrize(
    "env_factory", [IdentityEnvBox, lambda: IdentityEnvMultiDiscrete(dim=3)], ids=["box", "multidiscrete"]
)
@pytest.mark.parametrize("share", [True, False])
def test_action_spaces_and_feature_sharing(env_factory, share: bool) -> None:
    model = PPO(
        RNActorCriticPolicy,
        env_factory(),
        n_steps=32,
        batch_size=16,
        n_epochs=1,
        policy_kwargs={"norm": "rn", "net_arch": [8], "share_features_extractor": share},
        seed=0,
    )
    model.learn(64)
    assert model.policy.share_features_extractor is share
    assert len(list(find_regularity_norms(model.policy))) == 2


def test_rn_sits_after_hidden_linears_only() -> None:
    model = make_model("ppo", "rnln", False)
    for net in (model.policy.mlp_extractor.policy_net, model.policy.mlp_extractor.value_net):
        kinds = [type(m).__name__ for m in net]
        assert kinds == ["Linear", "LayerNorm", "RegularityNorm", "Tanh"] * 2
    assert isinstance(model.policy.action_net, torch.nn.Linear) and isinstance(model.policy.value_net, torch.nn.Linear)
    dqn = make_model("dqn", "rn", False)
    assert [type(m).__name__ for m in dqn.policy.q_net.q_net] == ["Linear", "RegularityNorm", "ReLU"] * 2 + ["Linear"]


@pytest.mark.parametrize("algo", ["ppo", "a2c", "dqn"])
def test_extractors_through_policy_kwargs_with_sb3_policy_strings(algo: str) -> None:
    algo_class, _, _, kwargs = ALGOS[algo]
    mlp = algo_class(
        "MlpPolicy",
        "CartPole-v1",
        policy_kwargs={
            "features_extractor_class": RNMlpExtractor,
            "features_extractor_kwargs": {"net_arch": [16], "norm": "rln"},
            "net_arch": [],
        },
        seed=0,
        **kwargs,
    )
    mlp.learn(200)
    online = [layer for name, layer in find_regularity_norms(mlp.policy) if "target" not in name]
    assert online and all(layer.running_updates.item() > 0 for layer in online)
    cnn = algo_class(
        "CnnPolicy",
        minigrid_env(),
        policy_kwargs={
            "features_extractor_class": MinigridCNN,
            "features_extractor_kwargs": {"features_dim": 16, "norm": "rn"},
            "net_arch": [16],
        },
        seed=0,
        **kwargs,
    )
    cnn.learn(200)
    names = [name for name, _ in find_regularity_norms(cnn.policy) if "target" not in name]
    assert len(names) == 4  # 3 conv + 1 linear in the (online) features extractor


def test_cnn_policy_can_put_rn_in_the_trunk() -> None:
    model = PPO(
        RNActorCriticCnnPolicy,
        minigrid_env(),
        n_steps=32,
        batch_size=32,
        n_epochs=1,
        policy_kwargs={"norm": "rn", "features_extractor_kwargs": {"norm": "rn", "norm_kwargs": {"max_gain": 10.0}}},
        seed=0,
    )
    model.learn(64)
    names = [name for name, _ in find_regularity_norms(model.policy)]
    assert sum(name.startswith("features_extractor.") for name in names) == 4


# ---------------------------------------------------------------------------------------------- errors
def test_invalid_configuration_fails_at_construction() -> None:
    with pytest.raises(ValueError, match="Unknown norm 'bn'"):
        PPO(RNActorCriticPolicy, "CartPole-v1", policy_kwargs={"norm": "bn"})
    with pytest.raises(ValueError, match="do not apply to norm='ln'"):
        PPO(RNActorCriticPolicy, "CartPole-v1", policy_kwargs={"norm": "ln", "norm_kwargs": {"momentum": 0.1}})
    with pytest.raises(ValueError, match=r"Unknown norm_kwargs \['windo'\]"):
        A2C(RNActorCriticPolicy, "CartPole-v1", policy_kwargs={"norm": "rn", "norm_kwargs": {"windo": 3}})
    with pytest.raises(ValueError, match="momentum must be None or in"):
        DQN(RNDQNPolicy, "CartPole-v1", policy_kwargs={"norm": "rn", "norm_kwargs": {"momentum": 2.0}})
    with pytest.raises(ValueError, match="needs a Discrete action space"):
        RNDQNPolicy(spaces.Box(-1, 1, (3,)), spaces.Box(-1, 1, (2,)), lambda _: 1e-3)
    with pytest.raises(ValueError, match="supports Box, Discrete"):
        RNActorCriticPolicy(spaces.Box(-1, 1, (3,)), spaces.Tuple([spaces.Discrete(2)]), lambda _: 1e-3)
    with pytest.raises(ValueError, match="cannot flatten a Dict observation space"):
        RNActorCriticPolicy(spaces.Dict({"image": spaces.Box(0, 255, (7, 7, 3))}), spaces.Discrete(3), lambda _: 1e-3)
    with pytest.raises(ValueError, match="MinigridCNN expects image observations"):
        PPO(RNActorCriticCnnPolicy, "CartPole-v1")
    with pytest.raises(ValueError, match="RNMlpExtractor needs a Box"):
        RNMlpExtractor(spaces.Dict({"a": spaces.Discrete(2)}))


# ---------------------------------------------------------------------------------------------- PPO ratio skew
def test_ppo_train_eval_mismatch_is_small() -> None:
    """Old log-probs come from eval mode, new ones from train mode: RN's two gains must agree on a PPO minibatch."""
    model = make_model("ppo", "rn", False, n_steps=256, batch_size=64, n_epochs=4)
    model.learn(2048)
    rollout = model.rollout_buffer
    batch = next(rollout.get(64))
    twin = RNActorCriticPolicy(**model.policy._get_constructor_parameters())
    twin.load_state_dict(model.policy.state_dict())
    twin.set_training_mode(True)
    with torch.no_grad():
        _, log_prob, _ = twin.evaluate_actions(batch.observations, batch.actions.long().flatten())
        model.policy.set_training_mode(False)
        _, eval_log_prob, _ = model.policy.evaluate_actions(batch.observations, batch.actions.long().flatten())
    skew = (log_prob - eval_log_prob).abs().mean().item()
    print(f"PPO mean |log pi_train - log pi_eval| on a minibatch: {skew:.2e}")
    assert skew < 0.05, skew


def test_regularity_norm_is_exported() -> None:
    assert RegularityNorm.__module__ == "sb3_regnorm.layers"


def test_norm_options_are_validated_once_and_build_no_throwaway_layer(monkeypatch: pytest.MonkeyPatch) -> None:
    """check_norm's range checks are cached and build no layer: every RegularityNorm built is one the policy keeps."""
    from sb3_regnorm import nets

    built = []
    original = RegularityNorm.__init__

    def counting_init(self, *args, **kwargs) -> None:
        built.append(self)
        original(self, *args, **kwargs)

    monkeypatch.setattr(RegularityNorm, "__init__", counting_init)
    nets._check_values.cache_clear()
    model = make_model("dqn", "rn", False, norm_kwargs={"momentum": 0.0123})
    assert nets._check_values.cache_info().misses == 1
    assert len(built) == len(list(find_regularity_norms(model.policy)))
