"""Slow learning tests: RN agents actually learn CartPole-v1 (``pytest -m slow``).

Hyperparameters are rl_zoo3's tuned CartPole-v1 entries with the RN policy classes swapped in. CartPole-v1's
``reward_threshold`` is 475 and a random policy scores about 22; each test asserts a deterministic evaluation of at
least 200 (clearly learned, below what a tuned baseline reaches, so the test measures learning and not tuning luck)
with the budget shown. Measured results are in the closing note of the integration issue and logs/benchmarks/.
"""

from __future__ import annotations

import pytest
import torch
from stable_baselines3 import A2C, DQN, PPO
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.evaluation import evaluate_policy

from sb3_regnorm import RNActorCriticPolicy, RNDQNPolicy, find_regularity_norms

torch.set_num_threads(1)
THRESHOLD = 200.0


def evaluate(model) -> float:
    env = make_vec_env("CartPole-v1", n_envs=1, seed=12345)
    mean, std = evaluate_policy(model, env, n_eval_episodes=20, deterministic=True)
    print(f"{type(model).__name__} {model.policy_kwargs}: deterministic return {mean:.1f} +- {std:.1f} over 20 episodes")
    return float(mean)


@pytest.mark.slow
@pytest.mark.parametrize("norm", ["rn", "rnln"])
def test_ppo_rn_learns_cartpole(norm: str) -> None:
    model = PPO(
        RNActorCriticPolicy,
        make_vec_env("CartPole-v1", n_envs=8, seed=0),
        n_steps=32,
        batch_size=256,
        gae_lambda=0.8,
        gamma=0.98,
        n_epochs=20,
        ent_coef=0.0,
        learning_rate=lambda f: 1e-3 * f,
        clip_range=lambda f: 0.2 * f,
        policy_kwargs={"norm": norm},
        seed=0,
    )
    model.learn(60_000)
    assert all(layer.running_updates.item() > 0 for _, layer in find_regularity_norms(model.policy))
    assert evaluate(model) >= THRESHOLD


@pytest.mark.slow
def test_a2c_rn_learns_cartpole() -> None:
    model = A2C(
        RNActorCriticPolicy,
        make_vec_env("CartPole-v1", n_envs=8, seed=0),
        ent_coef=0.0,
        policy_kwargs={"norm": "rn"},
        seed=0,
    )
    model.learn(150_000)
    assert evaluate(model) >= THRESHOLD


@pytest.mark.slow
def test_dqn_rn_learns_cartpole() -> None:
    model = DQN(
        RNDQNPolicy,
        "CartPole-v1",
        learning_rate=2.3e-3,
        batch_size=64,
        buffer_size=100_000,
        learning_starts=1000,
        gamma=0.99,
        target_update_interval=10,
        train_freq=256,
        gradient_steps=128,
        exploration_fraction=0.16,
        exploration_final_eps=0.04,
        policy_kwargs={"norm": "rn", "net_arch": [256, 256]},
        seed=0,
    )
    model.learn(50_000)
    assert evaluate(model) >= THRESHOLD
