"""Micro-benchmark: one norm layer's training forward+backward and eval forward, net of an identity layer.

Run: ``python bench/layer_speed.py [--rounds 7] [--calls 400] [--out logs/benchmarks/layer_speed.json]`` (CPU, one
thread), or ``python bench/layer_speed.py --device cuda`` (writes ``logs/benchmarks/layer_speed_cuda.json``).

Arms: ``none`` (``nn.Identity``: the cost of calling a module and of the loss/backward around it), ``ln``
(``nn.LayerNorm``), ``rn_pure`` (RegularityNorm's pure-PyTorch path, ``fused=False``), ``rn_fused`` (the fused C++
kernel, the default) and the same two for ``rln``. Each round times every arm once, in alternating order, for
``--calls`` calls; reported are the medians over rounds and the ratio of the net costs ``(arm - none) / (ln - none)``
(the issue's targets: rn_fused at most 1.2x LayerNorm's training step at 64x64, 1.5x at 256x256, 1.5x in eval at
batch 16). RN layers are warmed with 50 training batches first, so they run with statistics as in an agent.

On a GPU the fused kernel does not apply (it is a CPU kernel): the arms are ``none``, ``ln`` and the device path of
``rn`` and ``rln`` (state kept in tensors, no host synchronisation), timed with a ``torch.cuda.synchronize()`` before
and after each batch of calls, over the CPU cases plus larger batches.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from sb3_regnorm import RegularityNorm, __version__, _fused

ARMS: dict[str, Callable[[int], nn.Module]] = {
    "none": lambda d: nn.Identity(),
    "ln": nn.LayerNorm,
    "rn_pure": lambda d: RegularityNorm(d, "rn", fused=False),
    "rn_fused": lambda d: RegularityNorm(d, "rn"),
    "rln_pure": lambda d: RegularityNorm(d, "rln", fused=False),
    "rln_fused": lambda d: RegularityNorm(d, "rln"),
}
GPU_ARMS: dict[str, Callable[[int], nn.Module]] = {
    "none": ARMS["none"],
    "ln": ARMS["ln"],
    "rn": lambda d: RegularityNorm(d, "rn"),
    "rln": lambda d: RegularityNorm(d, "rln"),
}
# (name, batch, features, mode): training steps at the targets' shapes and PPO's/DQN's; eval at rollout batch sizes
CASES = [
    ("train 64x64", 64, 64, "train"),
    ("train 128x64", 128, 64, "train"),
    ("train 128x256", 128, 256, "train"),
    ("train 8x64", 8, 64, "train"),
    ("eval 16x64", 16, 64, "eval"),
    ("eval 1x256", 1, 256, "eval"),
    ("eval 8x64", 8, 64, "eval"),
]
# where a GPU earns its keep: large minibatches and many parallel environments
GPU_CASES = [
    *CASES,
    ("train 1024x256", 1024, 256, "train"),
    ("train 4096x1024", 4096, 1024, "train"),
    ("eval 4096x256", 4096, 256, "eval"),
]


def timer(layer: nn.Module, x: torch.Tensor, mode: str) -> Callable[[int], float]:
    """A function that runs ``calls`` steps and returns the mean seconds per step (queued GPU work included)."""
    sync = torch.cuda.synchronize if x.is_cuda else (lambda: None)
    if mode == "train":
        layer.train()
        xg = x.clone().requires_grad_(True)

        def step() -> None:
            layer(xg).sum().backward()

    else:
        layer.eval()

        def step() -> None:
            with torch.no_grad():
                layer(x)

    def run(calls: int) -> float:
        sync()
        start = time.perf_counter()
        for _ in range(calls):
            step()
        sync()
        return (time.perf_counter() - start) / calls

    return run


def measure(
    arms: dict[str, Callable[[int], nn.Module]], batch: int, features: int, mode: str, rounds: int, calls: int, device: str
) -> dict[str, float]:
    """Median microseconds per step for every arm (paired, alternating order between rounds)."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(batch, features, generator=gen).to(device)
    timers = {}
    for arm, factory in arms.items():
        layer = factory(features).to(device)
        with torch.no_grad():
            for _ in range(50):  # statistics as in an agent
                layer.train()(torch.randn(max(batch, 16), features, generator=gen).to(device))
        timers[arm] = timer(layer, x, mode)
        timers[arm](20)  # warm-up
    samples: dict[str, list[float]] = {arm: [] for arm in arms}
    for round_index in range(rounds):
        order = list(arms) if round_index % 2 == 0 else list(reversed(arms))
        for arm in order:
            samples[arm].append(1e6 * timers[arm](calls))
    return {arm: statistics.median(values) for arm, values in samples.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--calls", type=int, default=400)
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--out", type=Path, help="default: logs/benchmarks/layer_speed.json (layer_speed_cuda.json)")
    parser.add_argument("--note", default="", help="what else ran on the machine (written to the results)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    gpu = args.device == "cuda"
    if args.out is None:
        args.out = Path("logs/benchmarks/layer_speed_cuda.json" if gpu else "logs/benchmarks/layer_speed.json")
    if gpu and not torch.cuda.is_available():
        parser.error("--device cuda: torch sees no CUDA device")
    if not gpu and not _fused.available():
        parser.error(f"the fused kernel is not available ({_fused.load_error()}); rn_fused would measure the pure path")
    arm_factories, cases = (GPU_ARMS, GPU_CASES) if gpu else (ARMS, CASES)
    results: dict[str, dict[str, float]] = {}
    arms = list(arm_factories)
    ratio_arms = arms[2:]
    header = "| case | " + " | ".join(f"{a} us" for a in arms) + " | " + " | ".join(f"{a}/ln" for a in ratio_arms) + " |"
    lines = [header, "|" + "---|" * (1 + len(arms) + len(ratio_arms))]
    print(header, flush=True)
    for name, batch, features, mode in cases:
        row = measure(arm_factories, batch, features, mode, args.rounds, args.calls, args.device)
        results[name] = row
        net_ln = row["ln"] - row["none"]
        ratios = [(row[a] - row["none"]) / net_ln for a in ratio_arms]
        line = f"| {name} | " + " | ".join(f"{row[a]:.1f}" for a in arms) + " | " + " | ".join(f"{r:.2f}" for r in ratios)
        lines.append(line + " |")
        print(lines[-1], flush=True)
    meta = {
        "command": f"python bench/layer_speed.py --device {args.device} --rounds {args.rounds} --calls {args.calls} "
        f"--out {args.out}",
        "sb3_regnorm": __version__,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "machine": f"{platform.machine()} {platform.processor() or ''}, {torch.get_num_threads()} torch thread".strip()
        + (f"; {torch.cuda.get_device_name()} (CUDA {torch.version.cuda})" if gpu else ""),
        "layer": "one norm layer on a (batch, features) float32 input; train: layer(x).sum().backward(); eval: no_grad",
        "statistic": f"median over {args.rounds} alternating rounds of the mean time of {args.calls} calls; "
        "ratios: (arm - none) / (ln - none)",
        "note": args.note,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"meta": meta, "results": results}, indent=2) + "\n")
    facts = "\n".join(f"- {key}: {value}" for key, value in meta.items())
    args.out.with_suffix(".md").write_text(f"# Layer micro-benchmark\n\n{facts}\n\n" + "\n".join(lines) + "\n")
    print(f"wrote {args.out} and {args.out.with_suffix('.md')}")


if __name__ == "__main__":
    main()
