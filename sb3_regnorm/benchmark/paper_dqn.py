"""The paper's own LunarLander DQN protocol (reference ``OpenAI_gym_RL_task/dqn_agent.py``), on this package's MLPs.

Why a loop of its own instead of SB3's DQN: the protocol's defining traits (batch 50, soft target update with tau 1e-3
after every learn step, episodes cut at ``max_t`` steps, epsilon decayed per *episode*, score = mean of the final 50
*training* episodes) are not SB3 options, and the comparison with the paper's numbers needs exactly them.

What follows the reference: Q-net 8-64-64-4 with ReLU (built by :func:`sb3_regnorm.nets.build_mlp`, so the norm sits
after each hidden Linear), Adam lr 1e-3, uniform replay of 1e4 transitions, learn every 4 env steps once the buffer
holds more than one batch, MSE on the vanilla DQN target (max over the target net), gamma 0.99, 2000 episodes of at
most 100 steps, epsilon from 1.0 times 0.95 per episode with floor 0.01.

What differs, on purpose:

* ``exploration: corrected`` (default) restarts epsilon at 1.0 in every run. The reference sets it once outside the run
  loop, so only run 0 explores and runs 1..49 start at 0.01; ``exploration: reference`` replays that quirk
  (seed 0 starts at 1.0, every other seed at 0.01).
* RN state follows this package's train/eval rule: acting runs in eval mode and never writes RN statistics; the target
  net's ``running_*`` buffers are copied from the online net after each learn step (the reference updated a separate
  target state on ``next_states`` batches and advanced COMP while acting).
* LunarLander-v3 (gymnasium 1.x) instead of v2, and the env is seeded with the run's seed instead of 0 for all runs.

Evaluation: besides the training score, greedy episodes (``max_t`` steps, like training) on a separate env seeded
``EVAL_SEED_BASE + 100 * seed`` at ``points`` evenly spaced episodes, so the curve does not depend on epsilon.
"""

from __future__ import annotations

import copy
import random
import time
from typing import Any, Final

import numpy as np

from sb3_regnorm._divergence import DIVERGENCE_ERRORS, TrainingDiverged

__all__ = ["DEFAULTS", "check_kwargs", "final_eval_returns", "greedy_final_score", "run_paper_dqn"]

DEFAULTS: Final[dict[str, Any]] = {
    "env_id": "LunarLander-v3",
    "episodes": 2000,
    "max_t": 100,
    "hidden": [64, 64],
    "learning_rate": 1e-3,
    "buffer_size": 10_000,
    "batch_size": 50,
    "gamma": 0.99,
    "tau": 1e-3,
    "learn_every": 4,
    "eps_start": 1.0,
    "eps_decay": 0.95,
    "eps_end": 0.01,
    "exploration": "corrected",
    "score_window": 50,
}


def check_kwargs(kwargs: dict[str, Any]) -> dict[str, Any]:
    """The protocol's settings: defaults updated by ``kwargs``; unknown keys and bad values raise ValueError."""
    unknown = sorted(set(kwargs) - set(DEFAULTS))
    if unknown:
        raise ValueError(f"unknown paper_dqn settings {unknown} (allowed: {sorted(DEFAULTS)})")
    out = {**copy.deepcopy(DEFAULTS), **kwargs}
    for key in ("episodes", "max_t", "buffer_size", "batch_size", "learn_every", "score_window"):
        if not isinstance(out[key], int) or out[key] < 1:
            raise ValueError(f"paper_dqn: {key} must be a positive int, got {out[key]!r}")
    if out["exploration"] not in ("corrected", "reference"):
        raise ValueError(f"paper_dqn: exploration must be 'corrected' or 'reference', got {out['exploration']!r}")
    if not 0.0 < float(out["tau"]) <= 1.0 or not 0.0 < float(out["eps_decay"]) <= 1.0:
        raise ValueError("paper_dqn: tau and eps_decay must be in (0, 1]")
    return out


class _Replay:
    """Uniform replay over the last ``size`` transitions (numpy ring buffer)."""

    def __init__(self, size: int, obs_dim: int, rng: np.random.Generator) -> None:
        self.obs = np.zeros((size, obs_dim), np.float32)
        self.next_obs = np.zeros((size, obs_dim), np.float32)
        self.actions = np.zeros(size, np.int64)
        self.rewards = np.zeros(size, np.float32)
        self.dones = np.zeros(size, np.float32)
        self.size, self.pos, self.full, self.rng = size, 0, False, rng

    def __len__(self) -> int:
        return self.size if self.full else self.pos

    def add(self, obs: np.ndarray, action: int, reward: float, next_obs: np.ndarray, done: bool) -> None:
        i = self.pos
        self.obs[i], self.actions[i], self.rewards[i], self.next_obs[i], self.dones[i] = obs, action, reward, next_obs, done
        self.pos = (i + 1) % self.size
        self.full = self.full or self.pos == 0

    def sample(self, n: int) -> tuple[np.ndarray, ...]:
        idx = self.rng.integers(0, len(self), n)
        return self.obs[idx], self.actions[idx], self.rewards[idx], self.next_obs[idx], self.dones[idx]


def final_eval_returns(returns: list[float], at_episode: list[int], episodes: int) -> list[float]:
    """The greedy evaluation returns taken at or after 90% of the run's *episodes* (the same points for every run;
    a window in env steps would depend on how long each run's last episodes were)."""
    return [r for r, ep in zip(returns, at_episode, strict=True) if ep >= 0.9 * episodes]


def greedy_final_score(record: dict[str, Any]) -> float | None:
    """A record's greedy evaluation score over the final 10% of episodes; records written before the curve held its
    episodes get them back from the schedule (``points`` evenly spaced episodes, as :func:`run_paper_dqn` evaluates)."""
    curve = record.get("curve") or {}
    returns = list(curve.get("returns", []))
    if not returns or record.get("score") is None:
        return None
    episodes = int(record.get("n_episodes") or record.get("settings", {}).get("episodes", 0))
    at_episode = curve.get("at_episode") or sorted({round(episodes * k / len(returns)) for k in range(1, len(returns) + 1)})
    final = final_eval_returns(returns, list(at_episode), episodes)
    return float(np.mean(final)) if final else None


def _greedy_returns(net: Any, env: Any, seed: int, episodes: int, max_t: int) -> list[float]:
    """Greedy returns of ``episodes`` episodes of at most ``max_t`` steps; the first reset is seeded with ``seed``."""
    import torch

    out = []
    for ep in range(episodes):
        obs, _ = env.reset(seed=seed if ep == 0 else None)
        total = 0.0
        for _ in range(max_t):
            with torch.no_grad():
                action = int(net(torch.as_tensor(obs, dtype=torch.float32).unsqueeze(0)).argmax(1).item())
            obs, reward, terminated, truncated, _ = env.step(action)
            total += float(reward)
            if terminated or truncated:
                break
        out.append(total)
    return out


def run_paper_dqn(
    norm: str, seed: int, settings: dict[str, Any], eval_points: int, eval_episodes: int, eval_seed: int
) -> dict[str, Any]:
    """Train one run of the paper protocol and return its results (training scores, greedy evaluation curve)."""
    import gymnasium as gym
    import torch
    from torch import nn

    import sb3_regnorm  # noqa: F401  (registers the package's env ids)
    from sb3_regnorm.nets import build_mlp

    s = check_kwargs(settings)
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    env, eval_env = gym.make(s["env_id"]), gym.make(s["env_id"])
    obs_space, action_space = env.observation_space, env.action_space
    if (
        not isinstance(obs_space, gym.spaces.Box)
        or len(obs_space.shape) != 1
        or not isinstance(action_space, gym.spaces.Discrete)
    ):
        raise ValueError(
            f"paper_dqn needs a flat Box observation and Discrete actions; {s['env_id']} has {obs_space}, {action_space}"
        )
    obs_dim, n_actions = int(obs_space.shape[0]), int(action_space.n)
    local = build_mlp(obs_dim, list(s["hidden"]), nn.ReLU, norm=norm, output_dim=n_actions)
    target = copy.deepcopy(local).eval()
    for p in target.parameters():
        p.requires_grad_(False)
    buffers = [(name, buf) for name, buf in local.named_buffers() if "running_" in name]
    target_buffers = dict(target.named_buffers())
    local_params: list[torch.Tensor] = list(local.parameters())
    target_params: list[torch.Tensor] = list(target.parameters())
    optimizer = torch.optim.Adam(local.parameters(), lr=float(s["learning_rate"]))
    replay = _Replay(int(s["buffer_size"]), obs_dim, rng)
    gamma, tau, batch = float(s["gamma"]), float(s["tau"]), int(s["batch_size"])
    eps = float(s["eps_start"]) if s["exploration"] == "corrected" or seed == 0 else float(s["eps_end"])
    episodes, max_t = int(s["episodes"]), int(s["max_t"])
    eval_at = {round(episodes * k / eval_points) for k in range(1, eval_points + 1)}
    scores: list[float] = []
    curve_steps: list[int] = []
    curve_returns: list[float] = []
    curve_std: list[float] = []
    curve_episodes: list[int] = []
    env_steps, learn_steps, t_step, eval_time = 0, 0, 0, 0.0
    start = time.perf_counter()
    obs, _ = env.reset(seed=seed)
    try:
        for episode in range(1, episodes + 1):
            if episode > 1:
                obs, _ = env.reset()
            total = 0.0
            for _ in range(max_t):
                if rng.random() > eps:
                    local.eval()
                    with torch.no_grad():
                        action = int(local(torch.as_tensor(obs, dtype=torch.float32).unsqueeze(0)).argmax(1).item())
                else:
                    action = int(rng.integers(n_actions))
                next_obs, reward, terminated, truncated, _ = env.step(action)
                replay.add(obs, action, float(reward), next_obs, bool(terminated))
                obs, total, env_steps = next_obs, total + float(reward), env_steps + 1
                t_step = (t_step + 1) % int(s["learn_every"])
                if t_step == 0 and len(replay) > batch:
                    o, a, r, o2, d = (torch.as_tensor(x) for x in replay.sample(batch))
                    with torch.no_grad():
                        y = r + gamma * target(o2).max(1)[0] * (1.0 - d)
                    local.train()
                    q = local(o).gather(1, a.unsqueeze(1)).squeeze(1)
                    loss = nn.functional.mse_loss(q, y)
                    optimizer.zero_grad()
                    loss.backward()
                    optimizer.step()
                    with torch.no_grad():
                        torch._foreach_lerp_(target_params, local_params, tau)
                        for name, buf in buffers:
                            target_buffers[name].copy_(buf)
                    learn_steps += 1
                if terminated or truncated:
                    break
            scores.append(total)
            eps = max(float(s["eps_end"]), float(s["eps_decay"]) * eps)
            if episode in eval_at:
                t0 = time.perf_counter()
                local.eval()
                returns = _greedy_returns(local, eval_env, eval_seed, eval_episodes, max_t)
                eval_time += time.perf_counter() - t0
                curve_steps.append(env_steps)
                curve_returns.append(float(np.mean(returns)))
                curve_std.append(float(np.std(returns)))
                curve_episodes.append(episode)
    except DIVERGENCE_ERRORS as exc:
        env.close()
        eval_env.close()
        curve = {"steps": curve_steps, "returns": curve_returns, "std": curve_std, "at_episode": curve_episodes,
                 "episodes": eval_episodes}  # fmt: skip
        partial = {"curve": curve, "eval_time_s": eval_time, "n_episodes": len(scores), "learn_steps": learn_steps}
        raise TrainingDiverged(exc, env_steps, partial) from exc
    wall = time.perf_counter() - start
    env.close()
    eval_env.close()
    window = int(s["score_window"])
    final_points = final_eval_returns(curve_returns, curve_episodes, episodes)
    return {
        "score": float(np.mean(scores[-window:])),
        "score_definition": f"mean return of the final {window} training episodes (epsilon-greedy, max_t={max_t})",
        "eval_score": float(np.mean(final_points)) if final_points else None,
        "n_timesteps": env_steps,
        "n_episodes": episodes,
        "learn_steps": learn_steps,
        "train_returns_window": [float(np.mean(scores[i : i + window])) for i in range(0, len(scores), window)],
        "curve": {
            "steps": curve_steps,
            "returns": curve_returns,
            "std": curve_std,
            "at_episode": curve_episodes,
            "episodes": eval_episodes,
        },
        "train_time_s": wall - eval_time,
        "eval_time_s": eval_time,
        "settings": s,
    }
