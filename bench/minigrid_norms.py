"""A small multi-seed check: does the norm matter for a zoo entry on MiniGrid (PPO + MinigridCNN on DoorKey-5x5 by default)?

Run: ``python bench/minigrid_norms.py [--algo ppo] [--env MiniGrid-DoorKey-5x5-v0] [--norms none ln rn] [--seeds 0 1 2]
[--steps N] [--tuned] [--out logs/benchmarks/minigrid_norms.json]``.

Every arm is built from the zoo (:func:`sb3_regnorm.zoo.raw_entry`) and trained through rl_zoo3's ExperimentManager
(:mod:`sb3_regnorm.training`), so the hyperparameters are the zoo's, not a copy. By default every arm uses the untuned
entry (identical for every norm; only ``norm`` differs); ``--tuned`` uses each norm's own tuned entry. Seeds are
0..K-1 (never the tuning seeds >= 1000); the score is the mean stochastic return over 50 evaluation episodes on envs
seeded 100_000 + 100 x seed, as in ``zoo/studies/confirmations.json``. Results are written after every run.
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

import sb3_regnorm
from sb3_regnorm import zoo
from sb3_regnorm.training import report_eval_settings, train_and_score


def run(algo: str, env_id: str, norm: str, seed: int, steps: int, tuned: bool, log_folder: Path) -> float:
    """Train the zoo entry (at ``steps``, or its own budget when 0) on ``seed``; the mean evaluation return."""
    entry = zoo.raw_entry(algo, env_id, norm, tuned=tuned)
    if steps:
        entry["n_timesteps"] = steps
    mean, _ = train_and_score(algo, env_id, entry, seed, log_folder, report_eval_settings(env_id, seed))
    return mean


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--algo", default="ppo", choices=zoo.ALGOS)
    parser.add_argument("--env", default="MiniGrid-DoorKey-5x5-v0", choices=zoo.MINIGRID_IDS)
    parser.add_argument("--norms", nargs="+", default=["none", "ln", "rn"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=0, help="0: the entry's own n_timesteps")
    parser.add_argument("--tuned", action="store_true", help="each norm's tuned entry (default: the shared untuned one)")
    parser.add_argument("--out", type=Path, default=Path("logs/benchmarks/minigrid_norms.json"))
    parser.add_argument("--log-folder", type=Path, default=Path("logs/minigrid_norms"))
    args = parser.parse_args()
    if any(seed >= 1000 for seed in args.seeds):
        parser.error("seeds >= 1000 are the tuning seeds; report on 0..K-1")
    if not zoo.has_entry(args.algo, args.env):
        parser.error(f"no zoo entry for {args.algo} on {args.env}: {zoo.REMOVED.get((args.algo, args.env), '')}")
    torch.set_num_threads(1)
    steps = args.steps or int(zoo.raw_entry(args.algo, args.env, "none")["n_timesteps"])
    command = f"python bench/minigrid_norms.py --algo {args.algo} --env {args.env} --norms {' '.join(args.norms)} --seeds "
    command += f"{' '.join(map(str, args.seeds))} --steps {steps}{' --tuned' if args.tuned else ''} --out {args.out}"
    meta = {
        "command": command,
        "env": f"{args.env} + ImgObsWrapper, {args.algo} zoo entry ({'tuned per norm' if args.tuned else 'untuned, shared'})",
        "entries": {norm: zoo.raw_entry(args.algo, args.env, norm, tuned=args.tuned) for norm in args.norms},
        "steps": steps,
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
            scores[norm][str(seed)] = run(args.algo, args.env, norm, seed, steps, args.tuned, args.log_folder)
            print(f"{norm} seed {seed}: {scores[norm][str(seed)]:.3f} ({time.perf_counter() - start:.0f} s)", flush=True)
            args.out.write_text(json.dumps({"meta": meta, "scores": scores}, indent=2, default=str) + "\n")
    lines = ["| norm | " + " | ".join(f"seed {s}" for s in args.seeds) + " | mean |", "|---|" + "---|" * (len(args.seeds) + 1)]
    for norm, by_seed in scores.items():
        values = [by_seed[str(s)] for s in args.seeds]
        lines.append(f"| {norm} | " + " | ".join(f"{v:.3f}" for v in values) + f" | {statistics.mean(values):.3f} |")
    table = "\n".join(lines)
    print(table)
    facts = "\n".join(f"- {key}: {value}" for key, value in meta.items() if key != "entries")
    title = f"{args.algo.upper()} on {args.env} by norm"
    args.out.with_suffix(".md").write_text(f"# {title}\n\n{facts}\n\n{table}\n")


if __name__ == "__main__":
    main()
