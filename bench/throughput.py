"""Throughput of RN against the same network without it: paired, alternating runs in one process.

Run: ``python bench/throughput.py [--rounds 3] [--configs ppo_lunar a2c_lunar dqn_lunar ppo_minigrid]
[--norms none ln rn_pure rn] [--out logs/benchmarks/throughput.json]``.

Every agent is built from the zoo's own entry (:func:`sb3_regnorm.zoo.raw_entry` with ``tuned=False``: the
hyperparameters every norm shares, e.g. 16 envs for PPO on LunarLander-v3), so the arms differ only in ``norm`` (and
``rn_pure``/``rn_frozen`` in one RN option). Every round trains each arm once per config from scratch (same seed),
alternating the order between rounds so machine drift hits all arms alike. FPS is env steps per second of wall time
inside ``learn()``. Reported: median FPS per arm and the median of the per-round ratios ``FPS(arm) / FPS(none)``.
Results are written after every run, so an interrupted run keeps what it measured.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path
from typing import Any

import gymnasium as gym
import stable_baselines3
import torch
from rl_zoo3.utils import get_class_by_name, linear_schedule
from stable_baselines3 import A2C, DQN, PPO
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.env_util import make_vec_env

import sb3_regnorm
from sb3_regnorm import _fused, zoo

TARGETS = {"ppo_lunar": 0.92, "a2c_lunar": 0.85, "dqn_lunar": 0.90, "ppo_minigrid": 0.95}
ARMS: dict[str, tuple[str, dict[str, Any]]] = {  # arm -> (zoo norm folder, extra norm_kwargs)
    "none": ("none", {}),
    "ln": ("ln", {}),
    "rn": ("rn", {}),  # the default: the fused kernel where it builds
    "rn_pure": ("rn", {"fused": False}),
    "rln": ("rln", {}),
    "rnln": ("rnln", {}),
    "rn_frozen": ("rn", {"eval_gain": "frozen"}),  # eval gain without scoring the batch
}
ALGO_CLASSES: dict[str, type[BaseAlgorithm]] = {"ppo": PPO, "a2c": A2C, "dqn": DQN}
_NOT_HYPERPARAMS = ("n_envs", "n_timesteps", "policy", "env_wrapper", "callback", "normalize", "policy_kwargs")
# config -> (algo, env id, env steps per run)
CONFIGS: dict[str, tuple[str, str, int]] = {
    "ppo_lunar": ("ppo", zoo.LUNAR_LANDER, 16 * 1024),  # one rollout of 16 envs x 1024 steps and its 4-epoch update
    "a2c_lunar": ("a2c", zoo.LUNAR_LANDER, 10_000),
    "dqn_lunar": ("dqn", zoo.LUNAR_LANDER, 2_000),
    "ppo_minigrid": ("ppo", "MiniGrid-DoorKey-5x5-v0", 8 * 128 * 4),
}


def _hyperparam(value: Any) -> Any:
    """rl_zoo3's ``lin_<x>`` schedule strings as the schedule object rl_zoo3 would build."""
    return linear_schedule(float(value[4:])) if isinstance(value, str) and value.startswith("lin_") else value


def build_agent(config: str, arm: str, seed: int = 0) -> BaseAlgorithm:
    """The zoo's untuned entry for the config's (algo, env id) with the arm's norm, built as rl_zoo3 would build it."""
    algo, env_id, _ = CONFIGS[config]
    norm, norm_kwargs = ARMS[arm]
    entry = zoo.raw_entry(algo, env_id, norm, tuned=False)
    policy_kwargs = zoo.policy_kwargs_objects(entry["policy_kwargs"])
    if norm_kwargs:
        policy_kwargs["norm_kwargs"] = {**policy_kwargs.get("norm_kwargs", {}), **norm_kwargs}
    wrapper = get_class_by_name(entry["env_wrapper"]) if "env_wrapper" in entry else None
    env = make_vec_env(env_id, n_envs=int(entry.get("n_envs", 1)), seed=seed, wrapper_class=wrapper)
    hyperparams = {key: _hyperparam(value) for key, value in entry.items() if key not in _NOT_HYPERPARAMS}
    policy = get_class_by_name(entry["policy"])
    return ALGO_CLASSES[algo](policy, env, policy_kwargs=policy_kwargs, seed=seed, **hyperparams)


def describe(config: str) -> str:
    algo, env_id, steps = CONFIGS[config]
    entry = zoo.raw_entry(algo, env_id, "none", tuned=False)
    shown = {k: v for k, v in entry.items() if k not in ("n_timesteps", "callback", "policy")}
    return f"{algo} {env_id}, zoo entry (untuned, shared by every norm) {shown}; {steps} steps per run"


def run_once(config: str, norm: str) -> tuple[float, float]:
    """(env steps per second, seconds spent inside the environments' step) of one training run."""
    steps = CONFIGS[config][2]
    model = build_agent(config, norm)
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
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    parser.add_argument("--norms", nargs="+", default=["none", "ln", "rn_pure", "rn"], choices=list(ARMS))
    parser.add_argument("--note", default="", help="what else ran on the machine (written to the results)")
    parser.add_argument("--out", type=Path, default=Path("logs/benchmarks/throughput.json"))
    parser.add_argument("--report-only", action="store_true", help="rewrite the .md from the --out JSON (interrupted runs)")
    args = parser.parse_args()
    if args.report_only:
        data = json.loads(args.out.read_text())
        write_report(args.out, data["meta"], data["runs"], list(next(iter(data["runs"].values()))))
        return
    if args.norms[0] != "none":
        parser.error("the first norm must be 'none' (the baseline of the ratios)")
    torch.set_num_threads(1)
    meta = {
        "command": "python bench/throughput.py --rounds {} --configs {} --norms {}".format(
            args.rounds, " ".join(args.configs), " ".join(args.norms)
        ),
        "configs": {c: describe(c) for c in args.configs},
        "versions": {
            "sb3_regnorm": sb3_regnorm.__version__,
            "stable_baselines3": stable_baselines3.__version__,
            "torch": torch.__version__,
            "gymnasium": gym.__version__,
            "python": platform.python_version(),
        },
        "machine": f"{platform.machine()}, {torch.get_num_threads()} torch thread, CPU",
        "fused kernel": "loaded" if _fused.available() else f"unavailable ({_fused.load_error()})",
        "targets": TARGETS,
        "note": args.note,
    }
    runs: dict[str, dict[str, list[dict[str, float]]]] = {c: {n: [] for n in args.norms} for c in args.configs}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    for round_index in range(args.rounds):
        for config in args.configs:
            order = args.norms if round_index % 2 == 0 else list(reversed(args.norms))
            for norm in order:
                fps, env_seconds = run_once(config, norm)
                steps = CONFIGS[config][2]
                runs[config][norm].append({"fps": fps, "wall": steps / fps, "env": env_seconds})
                print(
                    f"round {round_index} {config} {norm}: {fps:.0f} FPS, env share {env_seconds * fps / steps:.2f}",
                    flush=True,
                )
                args.out.write_text(json.dumps({"meta": meta, "runs": runs, "summary": summarise(runs)}, indent=2) + "\n")
    write_report(args.out, meta, runs, args.norms)


def write_report(
    out: Path, meta: dict[str, Any], runs: dict[str, dict[str, list[dict[str, float]]]], norms: list[str]
) -> None:
    """The markdown table next to the JSON; says how many runs each arm has (an interrupted run has fewer)."""
    table = format_table(summarise(runs), norms)
    print(table)
    counts = {config: {norm: len(values) for norm, values in by_norm.items()} for config, by_norm in runs.items()}
    facts = "\n".join(f"- {key}: {value}" for key, value in {**meta, "runs per arm": counts}.items())
    out.with_suffix(".md").write_text(
        f"# Throughput: RN against the same network without it\n\n{facts}\n\nMedian over rounds; ratio columns: median of "
        "the per-round paired ratios (min-max). 'equal-env' charges both arms the env time of the 'none' run of the same "
        "round (see the script's docstring).\n\n" + table + "\n"
    )
    print(f"wrote {out} and {out.with_suffix('.md')}")


if __name__ == "__main__":
    main()
