"""Micro-benchmark: forward+backward time of a 2x64 MLP with no norm, LayerNorm, RN and RLN (CPU, one thread).

Run: ``python bench/layer_speed.py [--repeats 7] [--iters 300] [--out logs/benchmarks/layer_speed.json]``.
Prints a markdown table (median over repeats of the mean time per training step, plus an eval-mode forward) and
writes the numbers with versions and machine facts as JSON.
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

from sb3_regnorm import RegularityNorm, __version__

NORMS: dict[str, Callable[[int], nn.Module] | None] = {
    "none": None,
    "ln": nn.LayerNorm,
    "rn": lambda d: RegularityNorm(d, "rn"),
    "rln": lambda d: RegularityNorm(d, "rln"),
}


def make_mlp(norm: str, in_dim: int = 8, hidden: int = 64, out_dim: int = 4) -> nn.Sequential:
    """Linear -> [norm] -> Tanh, twice, then a linear head: SB3's default 2x64 actor-critic MLP."""
    layers: list[nn.Module] = []
    last = in_dim
    for _ in range(2):
        layers.append(nn.Linear(last, hidden))
        factory = NORMS[norm]
        if factory is not None:
            layers.append(factory(hidden))
        layers.append(nn.Tanh())
        last = hidden
    layers.append(nn.Linear(last, out_dim))
    return nn.Sequential(*layers)


def time_per_call(fn: Callable[[], None], iters: int) -> float:
    for _ in range(20):
        fn()
    start = time.perf_counter()
    for _ in range(iters):
        fn()
    return (time.perf_counter() - start) / iters


def measure(norm: str, batch: int, iters: int) -> tuple[float, float]:
    net = make_mlp(norm)
    x = torch.randn(batch, 8)

    def train_step() -> None:
        net.train()
        net.zero_grad(set_to_none=True)
        net(x).square().mean().backward()

    def eval_step() -> None:
        with torch.no_grad():
            net(x)

    train_t = time_per_call(train_step, iters)
    net.eval()
    eval_t = time_per_call(eval_step, iters)
    return train_t, eval_t


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--iters", type=int, default=300)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8, 64, 256])
    parser.add_argument("--out", type=Path, default=Path("logs/benchmarks/layer_speed.json"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    results: dict[str, dict[str, dict[str, float]]] = {}
    for batch in args.batches:
        runs: dict[str, list[tuple[float, float]]] = {norm: [] for norm in NORMS}
        for _ in range(args.repeats):  # interleave norms so drift hits them alike
            for norm in NORMS:
                runs[norm].append(measure(norm, batch, args.iters))
        results[str(batch)] = {
            norm: {
                "train_us": 1e6 * statistics.median(t for t, _ in samples),
                "eval_us": 1e6 * statistics.median(e for _, e in samples),
            }
            for norm, samples in runs.items()
        }
    header = (
        "| batch | "
        + " | ".join(f"{n} fwd+bwd us" for n in NORMS)
        + " | rn/ln | rln/ln | "
        + " | ".join(f"{n} eval us" for n in NORMS)
    )
    lines = [header + " |", "|" + "---|" * (1 + 2 * len(NORMS) + 2)]
    for batch, row in results.items():
        train = [row[n]["train_us"] for n in NORMS]
        evals = [row[n]["eval_us"] for n in NORMS]
        ratios = [row["rn"]["train_us"] / row["ln"]["train_us"], row["rln"]["train_us"] / row["ln"]["train_us"]]
        cells = [f"{v:.1f}" for v in train] + [f"{r:.2f}" for r in ratios] + [f"{v:.1f}" for v in evals]
        lines.append(f"| {batch} | " + " | ".join(cells) + " |")
    print("\n".join(lines))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    meta = {
        "command": "python bench/layer_speed.py "
        + " ".join(f"--{k} {' '.join(map(str, v)) if isinstance(v, list) else v}" for k, v in vars(args).items()),
        "sb3_regnorm": __version__,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "machine": f"{platform.machine()} {platform.processor() or ''} {torch.get_num_threads()} thread(s)".strip(),
        "network": "Linear(8,64)-[norm]-Tanh-Linear(64,64)-[norm]-Tanh-Linear(64,4), loss mean(y^2)",
        "statistic": "median over repeats of mean time per call",
    }
    args.out.write_text(json.dumps({"meta": meta, "results": results}, indent=2) + "\n")
    facts = "\n".join(f"- {key}: {value}" for key, value in meta.items())
    args.out.with_suffix(".md").write_text(f"# Layer micro-benchmark\n\n{facts}\n\n" + "\n".join(lines) + "\n")
    print(f"wrote {args.out} and {args.out.with_suffix('.md')}")


if __name__ == "__main__":
    main()
