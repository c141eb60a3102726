"""A small multi-seed check: does the norm matter for PPO + MinigridCNN on MiniGrid-DoorKey-5x5 (ImgObsWrapper)?

Run: ``python bench/minigrid_norms.py [--norms none ln rn] [--seeds 0 1 2] [--steps 60000]
[--out logs/benchmarks/minigrid_norms.json]``.

Every arm uses the same untuned hyperparameters (rl_zoo3's MiniGrid PPO defaults: 8 envs, n_steps 128, batch 64,
10 epochs, lr 2.5e-4, tanh) and the same seeds (0..K-1, never the tuning seeds >= 1000); only ``norm`` differs. The
score is the mean stochastic return over 50 evaluation episodes on a separate env (seed 10_000 + seed). Results are
written after every run.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import stable_baselines3
import torch
from stable_baselines3 import PPO
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.evaluation import evaluate_policy

import sb3_regnorm
from sb3_regnorm import RNActorCriticCnnPolicy, minigrid_image_env

ENV_ID = "MiniGrid-DoorKey-5x5-v0"


def run(norm: str, seed: int, steps: int) -> float:
    env = make_vec_env(minigrid_image_env, n_envs=8, seed=seed, env_kwargs={"env_id": ENV_ID})
    model = PPO(RNActorCriticCnnPolicy, env, n_steps=128, batch_size=64, n_epochs=10, gae_lambda=0.95, gamma=0.99,
                ent_coef=0.0, learning_rate=2.5e-4, clip_range=0.2, policy_kwargs={"norm": norm}, seed=seed)  # fmt: skip
    model.learn(steps)
    eval_env = make_vec_env(minigrid_image_env, n_envs=1, seed=10_000 + seed, env_kwargs={"env_id": ENV_ID})
    mean, _ = evaluate_policy(model, eval_env, n_eval_episodes=50, deterministic=False)
    return float(mean)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--norms", nargs="+", default=["none", "ln", "rn"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=60_000)
    parser.add_argument("--out", type=Path, default=Path("logs/benchmarks/minigrid_norms.json"))
    args = parser.parse_args()
    if any(seed >= 1000 for seed in args.seeds):
        parser.error("seeds >= 1000 are the tuning seeds; report on 0..K-1")
    torch.set_num_threads(1)
    meta = {
        "command": f"python bench/minigrid_norms.py --norms {' '.join(args.norms)} --seeds "
        f"{' '.join(map(str, args.seeds))} --steps {args.steps} --out {args.out}",
        "env": f"{ENV_ID} + ImgObsWrapper, RNActorCriticCnnPolicy (MinigridCNN trunk without norm, norm in the heads)",
        "versions": {
            "sb3_regnorm": sb3_regnorm.__version__,
            "stable_baselines3": stable_baselines3.__version__,
            "torch": torch.__version__,
            "python": platform.python_version(),
        },
    }
    scores: dict[str, dict[str, float]] = {norm: {} for norm in args.norms}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    for seed in args.seeds:
        for norm in args.norms:
            start = time.perf_counter()
            scores[norm][str(seed)] = run(norm, seed, args.steps)
            print(f"{norm} seed {seed}: {scores[norm][str(seed)]:.3f} ({time.perf_counter() - start:.0f} s)", flush=True)
            args.out.write_text(json.dumps({"meta": meta, "scores": scores}, indent=2) + "\n")
    lines = ["| norm | " + " | ".join(f"seed {s}" for s in args.seeds) + " | mean |", "|---|" + "---|" * (len(args.seeds) + 1)]
    for norm, by_seed in scores.items():
        values = [by_seed[str(s)] for s in args.seeds]
        lines.append(f"| {norm} | " + " | ".join(f"{v:.3f}" for v in values) + f" | {statistics.mean(values):.3f} |")
    table = "\n".join(lines)
    print(table)
    facts = "\n".join(f"- {key}: {value}" for key, value in meta.items())
    args.out.with_suffix(".md").write_text(f"# PPO on DoorKey-5x5 by norm\n\n{facts}\n\n{table}\n")


if __name__ == "__main__":
    main()
