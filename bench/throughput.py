"""Throughput of RN against the same network without it: paired, alternating runs in one process.

Run: ``python bench/throughput.py [--rounds 5] [--configs ppo_lunar a2c_lunar dqn_lunar ppo_minigrid]
[--norms none rn] [--out logs/benchmarks/throughput.json]``.

Every round trains each norm once per config from scratch (same seed, same hyperparameters, the policy classes of
``sb3_regnorm`` with ``norm=...``), alternating the order between rounds so machine drift hits both alike. FPS is
env steps per second of wall time inside ``learn()``. Reported: median FPS per norm and the median of the per-round
ratios ``FPS(norm) / FPS(none)``. Results are written after every run, so an interrupted run keeps what it measured.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gymnasium as gym
import stable_baselines3
import torch
from stable_baselines3 import A2C, DQN, PPO
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.env_util import make_vec_env

import sb3_regnorm
from sb3_regnorm import RNActorCriticCnnPolicy, RNActorCriticPolicy, RNDQNPolicy, minigrid_image_env

TARGETS = {"ppo_lunar": 0.95, "a2c_lunar": 0.85, "dqn_lunar": 0.90, "ppo_minigrid": 0.95}
ARMS: dict[str, dict[str, Any]] = {
    "none": {"norm": "none"},
    "ln": {"norm": "ln"},
    "rn": {"norm": "rn"},
    "rln": {"norm": "rln"},
    "rnln": {"norm": "rnln"},
    "rn_frozen": {"norm": "rn", "norm_kwargs": {"eval_gain": "frozen"}},  # eval gain without scoring the batch
}


def policy_kwargs(arm: str, **extra: Any) -> dict[str, Any]:
    return {**ARMS[arm], **extra}


def _ppo_lunar(norm: str) -> BaseAlgorithm:
    env = make_vec_env("LunarLander-v3", n_envs=8, seed=0)
    return PPO(RNActorCriticPolicy, env, n_steps=1024, batch_size=64, n_epochs=4, gae_lambda=0.98, gamma=0.999,
               ent_coef=0.01, policy_kwargs=policy_kwargs(norm), seed=0)  # fmt: skip


def _a2c_lunar(norm: str) -> BaseAlgorithm:
    env = make_vec_env("LunarLander-v3", n_envs=8, seed=0)
    return A2C(RNActorCriticPolicy, env, n_steps=5, gamma=0.995, learning_rate=0.00083, ent_coef=1e-5,
               policy_kwargs=policy_kwargs(norm), seed=0)  # fmt: skip


def _dqn_lunar(norm: str) -> BaseAlgorithm:
    env = gym.make("LunarLander-v3")
    return DQN(RNDQNPolicy, env, learning_rate=6.3e-4, batch_size=128, buffer_size=50_000, learning_starts=0,
               gamma=0.99, target_update_interval=250, train_freq=4, gradient_steps=-1, exploration_fraction=0.12,
               exploration_final_eps=0.1, policy_kwargs=policy_kwargs(norm, net_arch=[256, 256]), seed=0)  # fmt: skip


def _ppo_minigrid(norm: str) -> BaseAlgorithm:
    env = make_vec_env(minigrid_image_env, n_envs=8, seed=0, env_kwargs={"env_id": "MiniGrid-DoorKey-5x5-v0"})
    return PPO(RNActorCriticCnnPolicy, env, n_steps=128, batch_size=64, n_epochs=10, gae_lambda=0.95, gamma=0.99,
               ent_coef=0.0, learning_rate=2.5e-4, policy_kwargs=policy_kwargs(norm), seed=0)  # fmt: skip


CONFIGS: dict[str, tuple[Callable[[str], BaseAlgorithm], int, str]] = {
    "ppo_lunar": (_ppo_lunar, 3 * 8192, "PPO LunarLander-v3, 8 envs, zoo hp (n_steps 1024, batch 64, 4 epochs), 64x64 tanh"),
    "a2c_lunar": (_a2c_lunar, 20_000, "A2C LunarLander-v3, 8 envs, zoo hp (n_steps 5, RMSprop), 64x64 tanh"),
    "dqn_lunar": (_dqn_lunar, 3_000, "DQN LunarLander-v3, zoo hp (batch 128, train_freq 4, gradient_steps -1), 256x256"),
    "ppo_minigrid": (_ppo_minigrid, 8 * 128 * 8, "PPO MiniGrid-DoorKey-5x5 ImgObs + MinigridCNN, 8 envs, zoo hp"),
}


def run_once(config: str, norm: str) -> tuple[float, float]:
    """(env steps per second, seconds spent inside the environments' step) of one training run."""
    factory, steps, _ = CONFIGS[config]
    model = factory(norm)
    env_seconds = _time_env_steps(model)
    start = time.perf_counter()
    model.learn(steps)
    return model.num_timesteps / (time.perf_counter() - start), env_seconds[0]


def _time_env_steps(model: BaseAlgorithm) -> list[float]:
    """Accumulate wall time inside ``VecEnv.step_wait``: LunarLander's Box2D cost depends on how the policy flies
    (engine particles, contacts), so arms that act differently pay different env costs for the same network."""
    vec_env = model.get_env()
    assert vec_env is not None
    spent = [0.0]
    step_wait = vec_env.step_wait

    def timed_step_wait() -> Any:
        start = time.perf_counter()
        result = step_wait()
        spent[0] += time.perf_counter() - start
        return result

    vec_env.step_wait = timed_step_wait  # type: ignore[method-assign]
    return spent


def _ratio_stats(ratios: list[float]) -> dict[str, float]:
    return {"median": statistics.median(ratios), "min": min(ratios), "max": max(ratios)}


def summarise(runs: dict[str, dict[str, list[dict[str, float]]]]) -> dict[str, Any]:
    """Per config: median FPS per arm, the paired FPS ratio to ``none``, and the env-cost-equalised ratio.

    The equalised ratio charges each arm ``none``'s env time of the same round plus its own agent time (wall time
    outside ``step_wait``): the FPS ratio had both arms flown the same trajectories, i.e. the cost of the network.
    """
    table: dict[str, Any] = {}
    for config, by_norm in runs.items():
        base = by_norm.get("none", [])
        row: dict[str, Any] = {"median_fps": {n: statistics.median(r["fps"] for r in v) for n, v in by_norm.items() if v}}
        for norm, values in by_norm.items():
            pairs = list(zip(values, base, strict=False))
            if norm == "none" or not pairs:
                continue
            row[f"{norm}/none"] = _ratio_stats([a["fps"] / b["fps"] for a, b in pairs])
            row[f"{norm}/none equal-env"] = _ratio_stats([(b["wall"]) / (b["env"] + a["wall"] - a["env"]) for a, b in pairs])
        table[config] = row
    return table


def format_table(table: dict[str, Any], norms: list[str]) -> str:
    ratio_keys = [f"{n}/none" for n in norms[1:]] + [f"{n}/none equal-env" for n in norms[1:]]
    lines = [
        "| config | " + " | ".join(f"{n} FPS" for n in norms) + " | " + " | ".join(ratio_keys) + " | target |",
        "|" + "---|" * (2 + len(norms) + len(ratio_keys)),
    ]
    for config, row in table.items():
        fps = [f"{row['median_fps'].get(n, float('nan')):.0f}" for n in norms]
        ratios = [f"{row[k]['median']:.3f} ({row[k]['min']:.2f}-{row[k]['max']:.2f})" if k in row else "-" for k in ratio_keys]
        lines.append(f"| {config} | " + " | ".join(fps + ratios) + f" | {TARGETS[config]} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    parser.add_argument("--norms", nargs="+", default=["none", "rn"], choices=list(ARMS))
    parser.add_argument("--out", type=Path, default=Path("logs/benchmarks/throughput.json"))
    args = parser.parse_args()
    if args.norms[0] != "none":
        parser.error("the first norm must be 'none' (the baseline of the ratios)")
    torch.set_num_threads(1)
    meta = {
        "command": "python bench/throughput.py --rounds {} --configs {} --norms {}".format(
            args.rounds, " ".join(args.configs), " ".join(args.norms)
        ),
        "configs": {c: CONFIGS[c][2] + f"; {CONFIGS[c][1]} steps per run" for c in args.configs},
        "versions": {
            "sb3_regnorm": sb3_regnorm.__version__,
            "stable_baselines3": stable_baselines3.__version__,
            "torch": torch.__version__,
            "gymnasium": gym.__version__,
            "python": platform.python_version(),
        },
        "machine": f"{platform.machine()}, {torch.get_num_threads()} torch thread, CPU",
        "targets": TARGETS,
    }
    runs: dict[str, dict[str, list[dict[str, float]]]] = {c: {n: [] for n in args.norms} for c in args.configs}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    for round_index in range(args.rounds):
        for config in args.configs:
            order = args.norms if round_index % 2 == 0 else list(reversed(args.norms))
            for norm in order:
                fps, env_seconds = run_once(config, norm)
                steps = CONFIGS[config][1]
                runs[config][norm].append({"fps": fps, "wall": steps / fps, "env": env_seconds})
                print(
                    f"round {round_index} {config} {norm}: {fps:.0f} FPS, env share {env_seconds * fps / steps:.2f}",
                    flush=True,
                )
                args.out.write_text(json.dumps({"meta": meta, "runs": runs, "summary": summarise(runs)}, indent=2) + "\n")
    table = format_table(summarise(runs), args.norms)
    print(table)
    facts = "\n".join(f"- {key}: {value}" for key, value in meta.items())
    args.out.with_suffix(".md").write_text(
        f"# Throughput: RN against the same network without it\n\n{facts}\n\nMedian over rounds; ratio columns: median of "
        "the per-round paired ratios (min-max). 'equal-env' charges both arms the env time of the 'none' run of the same "
        "round (see the script's docstring).\n\n" + table + "\n"
    )
    print(f"wrote {args.out} and {args.out.with_suffix('.md')}")


if __name__ == "__main__":
    main()
