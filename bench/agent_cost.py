"""Where RN's throughput cost comes from: agent-side time per rollout forward and per gradient step, and an op profile.

Run: ``python bench/agent_cost.py [--out logs/benchmarks/agent_cost.json]``.

For the throughput configurations of ``bench/throughput.py`` (agents built from the zoo's entries by its
``build_agent``) it times, with no environment in the loop, (a) one no-grad eval-mode policy forward at the rollout
batch size (``n_envs`` observations) and (b) one call of the algorithm's ``train()`` on a filled buffer, for each
arm. Then it prints the torch profiler's op table for one RN layer's training forward+backward at PPO's minibatch
shape on the pure path (a dozen small kernels and autograd nodes) and on the fused kernel (one op each way).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, str(Path(__file__).parent))
from throughput import CONFIGS, build_agent

from sb3_regnorm import RegularityNorm, __version__

ARMS = ("none", "ln", "rn_pure", "rn", "rn_frozen")


def per_call_us(fn: Callable[[], object], calls: int, repeats: int = 5) -> float:
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        samples.append((time.perf_counter() - start) / calls * 1e6)
    return statistics.median(samples)


def measure(config: str, arm: str) -> dict[str, float]:
    model = build_agent(config, arm)
    warm_steps = 2048 if config != "dqn_lunar" else 600
    model.learn(warm_steps)  # fills buffers and gives RN layers statistics
    policy = model.policy
    obs = torch.as_tensor(model.get_env().reset(), device=policy.device)
    if obs.dtype == torch.uint8:
        obs = obs.float()

    def rollout_forward() -> None:
        policy.set_training_mode(False)
        with torch.no_grad():
            policy(obs) if config != "dqn_lunar" else policy.q_net(obs)

    calls = 3 if config == "ppo_lunar" or config == "ppo_minigrid" else 20
    if config == "dqn_lunar":
        model.gradient_steps = 4  # one train() call as the zoo's gradient_steps=-1 with train_freq 4 makes it
        return {
            "rollout_forward_us": per_call_us(rollout_forward, 500),
            "train_call_us": per_call_us(lambda: model.train(gradient_steps=4, batch_size=model.batch_size), calls),
        }
    return {"rollout_forward_us": per_call_us(rollout_forward, 500), "train_call_us": per_call_us(model.train, calls)}


def layer_profile(fused: bool, batch: int = 64, features: int = 64) -> str:
    layer = RegularityNorm(features, fused=fused)
    x = torch.randn(batch, features, requires_grad=True)
    for _ in range(20):
        layer(x).sum().backward()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(100):
            layer(x).sum().backward()
    return prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=20)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--configs", nargs="+", default=["ppo_lunar", "a2c_lunar", "dqn_lunar"], choices=list(CONFIGS))
    parser.add_argument("--out", type=Path, default=Path("logs/benchmarks/agent_cost.json"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    results: dict[str, dict[str, dict[str, float]]] = {}
    print("| config | arm | rollout forward us | train() call us |")
    print("|---|---|---|---|")
    for config in args.configs:
        results[config] = {}
        for arm in ARMS:
            row = measure(config, arm)
            results[config][arm] = row
            print(f"| {config} | {arm} | {row['rollout_forward_us']:.0f} | {row['train_call_us']:.0f} |", flush=True)
    table = ""
    for fused in (False, True):
        title = f"One RN layer ({'fused' if fused else 'pure'} path), training forward+backward, batch 64 x 64 (100 calls)"
        table += f"\n{title}:\n\n{layer_profile(fused)}\n"
    print(table)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    meta = {
        "command": "python bench/agent_cost.py --configs " + " ".join(args.configs),
        "sb3_regnorm": __version__,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "machine": f"{platform.machine()}, 1 torch thread, CPU",
        "train_call": "PPO: one train() = n_epochs over the 16384-step buffer (minibatches of 64); A2C: one update "
        "on n_envs x n_steps samples; DQN: train(gradient_steps=4, batch 128) as train_freq 4 with gradient_steps -1 does",
    }
    args.out.write_text(json.dumps({"meta": meta, "results": results, "layer_profile": table}, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
