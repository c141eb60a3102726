"""Confirm a zoo entry at its full budget on report seeds, and record the result in ``zoo/studies/confirmations.json``.

Why: a tuned value is picked on one tuning seed (>= 1000) at a short budget, so it is optimistic. Before an entry is
adopted (and before the README quotes it) it is retrained from scratch at its own ``n_timesteps`` on seeds 0, 1, 2 and
scored on evaluation envs seeded at :data:`sb3_regnorm.training.EVAL_SEED_OFFSET` + 100 x seed (never a training
seed), deterministic for LunarLander and stochastic for MiniGrid, as rl_zoo3 does.

Usage::

    sb3-regnorm confirm --algo ppo --env LunarLander-v3 --norm rn [--seeds 0 1 2] [--out zoo/studies/confirmations.json]

The record is rewritten after every seed (a killed run keeps its finished seeds); a record whose ``entry`` differs
from the current zoo entry is stale and is replaced, not extended. Each write re-reads the file under a lock and merges
its seed into the current record, so confirmations running side by side (``--seeds 0`` and ``--seeds 1 2``, or two
entries) never drop each other's results. A seed whose agent diverges is recorded (``returns`` null, the error under
``diverged``) and the entry shows as diverged in the table. A smoke test (``--n-timesteps``, ``--eval-episodes``,
``--n-eval-envs``) is not a confirmation: it must write to its own ``--out``.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from sb3_regnorm import zoo
from sb3_regnorm._divergence import TrainingDiverged
from sb3_regnorm._locking import atomic_write_text, exclusive_lock
from sb3_regnorm.nets import NORMS
from sb3_regnorm.training import EVAL_SEED_OFFSET

__all__ = ["DEFAULT_OUT", "ConfirmSettings", "confirm", "find_record", "load_records", "main", "record_key", "zoo_table"]

DEFAULT_OUT: Final = Path("zoo/studies/confirmations.json")
"""Relative to the working directory (the checkout's root for the committed records)."""
_EPISODES: Final = {True: 50, False: 20}  # MiniGrid (short, noisy 0-1 returns), LunarLander
_EVAL_ENVS: Final = 5


@dataclass(frozen=True)
class ConfirmSettings:
    """One confirmation: which entry, which report seeds, how many evaluation episodes, where runs and records go."""

    algo: str
    env_id: str
    norm: str
    seeds: tuple[int, ...] = (0, 1, 2)
    eval_episodes: int = 0  # 0: 50 for MiniGrid, 20 otherwise
    n_eval_envs: int = _EVAL_ENVS
    log_folder: Path = Path("logs/confirm")
    out: Path = DEFAULT_OUT
    n_timesteps: int = 0  # 0: the entry's own budget (anything else is a smoke test, not a confirmation)

    def episodes(self) -> int:
        return self.eval_episodes or _EPISODES[self.env_id in zoo.MINIGRID_IDS]

    def smoke_flags(self, budget: int) -> list[str]:
        """The command-line flags that make this run a smoke test rather than a confirmation (empty: a confirmation)."""
        flags = []
        if self.n_timesteps and self.n_timesteps != budget:
            flags.append(f"--n-timesteps {self.n_timesteps}")
        if self.eval_episodes and self.eval_episodes != _EPISODES[self.env_id in zoo.MINIGRID_IDS]:
            flags.append(f"--eval-episodes {self.eval_episodes}")
        if self.n_eval_envs != _EVAL_ENVS:
            flags.append(f"--n-eval-envs {self.n_eval_envs}")
        return flags


def record_key(record: dict[str, Any]) -> tuple[str, str, str, int]:
    """(algo, env, norm, n_timesteps): one record per entry and budget."""
    return record["algo"], record["env"], record["norm"], int(record["n_timesteps"])


def load_records(path: str | Path = DEFAULT_OUT) -> list[dict[str, Any]]:
    """The records of ``path`` (an empty list when it does not exist yet)."""
    path = Path(path)
    if not path.is_file():
        return []
    records = json.loads(path.read_text())
    if not isinstance(records, list):
        raise ValueError(f"{path}: expected a JSON list of confirmation records")
    return records


def find_record(records: list[dict[str, Any]], algo: str, env_id: str, norm: str) -> dict[str, Any] | None:
    """The record of the current zoo entry (same budget and hyperparameters), or None."""
    current = _comparable_entry(algo, env_id, norm)
    for record in records:
        if (record["algo"], record["env"], record["norm"]) == (algo, env_id, norm) and record.get("entry") == current:
            return record
    return None


def _comparable_entry(algo: str, env_id: str, norm: str) -> dict[str, Any]:
    """The entry as JSON data without the monitoring callback (which does not change what is learned)."""
    from sb3_regnorm.training import python_entry

    entry = python_entry(zoo.raw_entry(algo, env_id, norm), keep_callbacks=False)
    entry["policy_kwargs"] = zoo.raw_entry(algo, env_id, norm)["policy_kwargs"]
    return json.loads(json.dumps(entry, default=str))


def _write(path: Path, records: list[dict[str, Any]]) -> None:
    """Write atomically (a reader never sees half a file; a private temporary file per writer), sorted for stable diffs."""
    path.parent.mkdir(parents=True, exist_ok=True)
    records = sorted(records, key=record_key)
    atomic_write_text(path, json.dumps(records, indent=2, allow_nan=False) + "\n")


def _lock_path(out: Path) -> Path:
    return out.with_name(f".{out.name}.lock")


_Result = tuple[float | None, float | None, float, str | None]  # (mean, std, train seconds, divergence error)


def _merge_seed(out: Path, fresh: dict[str, Any], seed: int, result: _Result) -> dict[str, Any]:
    """Under the file's lock: re-read the records, put ``seed``'s result into the current record of the same entry and
    evaluation (a stale one is replaced), write, and return the record."""
    key = record_key(fresh)
    with exclusive_lock(_lock_path(out), blocking=True):
        records = load_records(out)
        old = next((r for r in records if record_key(r) == key), None)
        results: dict[int, _Result] = {}
        if old is not None and old.get("entry") == fresh["entry"] and old.get("evaluation") == fresh["evaluation"]:
            errors = old.get("diverged", {})
            columns = zip(old["seeds"], old["returns"], old.get("stds", []), old.get("train_s", []), strict=False)
            results = {int(s): (ret, std, secs, errors.get(str(s))) for s, ret, std, secs in columns}
        results[seed] = result
        seeds = sorted(results)
        returns = [results[s][0] for s in seeds]
        finite = [r for r in returns if r is not None]
        record = {
            **fresh,
            "seeds": seeds,
            "returns": returns,
            "mean": round(statistics.fmean(finite), 4) if finite and len(finite) == len(returns) else None,
            "stds": [results[s][1] for s in seeds],
            "train_s": [results[s][2] for s in seeds],
        }
        diverged = {str(s): results[s][3] for s in seeds if results[s][3] is not None}
        if diverged:
            record["diverged"] = diverged
        record["command"] = fresh["command"].replace("{seeds}", " ".join(map(str, seeds)))
        _write(out, [*(r for r in records if record_key(r) != key), record])
    return record


def _run_seed(settings: ConfirmSettings, entry: dict[str, Any], seed: int) -> _Result:
    """Train the entry on ``seed`` at its full budget: (mean, std) evaluation return, seconds, and the error if the
    agent diverged (then mean and std are None)."""
    from sb3_regnorm.training import report_eval_settings, train_and_score

    scoring = report_eval_settings(settings.env_id, seed, settings.eval_episodes, settings.n_eval_envs)
    start = time.perf_counter()
    try:
        mean, std = train_and_score(settings.algo, settings.env_id, entry, seed, settings.log_folder, scoring)
    except TrainingDiverged as exc:
        return None, None, round(time.perf_counter() - start, 1), f"{exc.error} (at step {exc.at_step})"
    seconds = round(time.perf_counter() - start, 1)
    if not (math.isfinite(mean) and math.isfinite(std)):
        return None, None, seconds, f"non-finite evaluation return {mean}"
    return round(mean, 4), round(std, 4), seconds, None


def confirm(settings: ConfirmSettings) -> dict[str, Any]:
    """Train and score the current zoo entry on every seed, merging each seed into its record; return the record.

    A record of the same entry and protocol keeps its other seeds (so ``--seeds 2`` completes a run killed after seed
    1); a record of a changed entry is stale and starts over.
    """
    if any(seed >= 1000 for seed in settings.seeds):
        raise ValueError("seeds >= 1000 are tuning seeds; confirm on report seeds 0..K-1")
    entry = zoo.raw_entry(settings.algo, settings.env_id, settings.norm)
    smoke = settings.smoke_flags(int(entry["n_timesteps"]))
    if smoke and Path(settings.out).resolve() == DEFAULT_OUT.resolve():
        raise ValueError(
            f"{' '.join(smoke)} makes a smoke test, not a confirmation: pass --out to keep it out of {DEFAULT_OUT}"
        )
    if settings.n_timesteps:
        entry["n_timesteps"] = settings.n_timesteps
    evaluation = (
        f"{settings.episodes()} episodes on {settings.n_eval_envs} envs seeded {EVAL_SEED_OFFSET} + 100 x seed, "
        f"{'stochastic' if settings.env_id in zoo.MINIGRID_IDS else 'deterministic'} actions"
    )
    fresh: dict[str, Any] = {
        "algo": settings.algo,
        "env": settings.env_id,
        "norm": settings.norm,
        "n_timesteps": int(entry["n_timesteps"]),
        "evaluation": evaluation,
        "tuned": bool(zoo.tuned_overrides(settings.algo, settings.env_id, settings.norm)),
        "entry": {**_comparable_entry(settings.algo, settings.env_id, settings.norm), "n_timesteps": entry["n_timesteps"]},
        "command": " ".join(
            ["sb3-regnorm confirm --algo", settings.algo, "--env", settings.env_id, "--norm", settings.norm, *smoke]
        )
        + " --seeds {seeds}",
    }
    record: dict[str, Any] = {}
    for seed in settings.seeds:
        result = _run_seed(settings, entry, seed)
        record = _merge_seed(Path(settings.out), fresh, seed, result)
        mean, std, _, error = result
        outcome = f"diverged: {error}" if error else f"{mean:.4g} +- {std:.3g}"
        print(f"[confirm] {settings.algo} {settings.env_id} {settings.norm} seed {seed}: {outcome}", flush=True)
    return record


_ALGO_NAMES: Final = {"ppo": "PPO", "a2c": "A2C", "dqn": "DQN"}


def zoo_table(records: list[dict[str, Any]]) -> str:
    """The README's zoo table: every shipped (algo, env) with its budget and, per norm, the confirmed mean return over
    the recorded seeds (``-`` where unconfirmed, ``diverged (seed k)`` where a seed's agent diverged) and ``T`` where
    the entry has tuned values. Stale records (for an entry that has changed since) are not shown."""
    lines = [
        "| algo | env | budget | " + " | ".join(NORMS) + " |",
        "|---|---|---|" + "---|" * len(NORMS),
    ]
    for algo in zoo.ALGOS:
        for env_id in zoo.entry_env_ids(algo):
            budget = int(zoo.raw_entry(algo, env_id, "none")["n_timesteps"])
            cells = []
            for norm in NORMS:
                record = find_record(records, algo, env_id, norm)
                value = "-"
                if record is not None and record.get("diverged"):
                    value = f"diverged (seed {', '.join(sorted(record['diverged'], key=int))})"
                elif record is not None and record["returns"]:
                    value = f"{statistics.fmean(record['returns']):.3g}"
                    if list(record["seeds"]) != [0, 1, 2]:
                        value += f" (seeds {', '.join(map(str, record['seeds']))})"
                tuned = " T" if zoo.tuned_overrides(algo, env_id, norm) else ""
                cells.append(value + tuned)
            steps = f"{budget / 1e6:g}M" if budget >= 1_000_000 else f"{budget // 1000}k"
            lines.append(f"| {_ALGO_NAMES[algo]} | {env_id} | {steps} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _parser(prog: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n")[0])
    parser.add_argument("--table", action="store_true", help="print the README's zoo table from --out and exit")
    parser.add_argument("--algo", choices=zoo.ALGOS)
    parser.add_argument("--env", choices=zoo.ENV_IDS)
    parser.add_argument("--norm", choices=NORMS)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--eval-episodes", type=int, default=0, help="0: 50 for MiniGrid, 20 otherwise")
    parser.add_argument("--n-eval-envs", type=int, default=_EVAL_ENVS, help="other values make a smoke test")
    parser.add_argument("--n-timesteps", type=int, default=0, help="0: the entry's budget (else a smoke test)")
    parser.add_argument("--log-folder", default="logs/confirm")
    parser.add_argument("--out", default=str(DEFAULT_OUT))
    return parser


def main(argv: Sequence[str] | None = None, prog: str = "python -m sb3_regnorm.confirm") -> int:
    """Entry point of ``sb3-regnorm confirm`` and ``python -m sb3_regnorm.confirm``; returns the exit status."""
    parser = _parser(prog)
    args = parser.parse_args(argv)
    if args.table:
        print(zoo_table(load_records(args.out)), end="")
        return 0
    if not (args.algo and args.env and args.norm):
        parser.error("--algo, --env and --norm are required (or --table)")
    import torch

    torch.set_num_threads(1)
    settings = ConfirmSettings(
        args.algo, args.env, args.norm, tuple(args.seeds), args.eval_episodes, args.n_eval_envs,
        log_folder=Path(args.log_folder), out=Path(args.out), n_timesteps=args.n_timesteps,
    )  # fmt: skip
    try:
        record = confirm(settings)
    except (zoo.ZooError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if record.get("diverged"):
        print(f"[confirm] diverged on seed(s) {', '.join(record['diverged'])}: recorded as such, no mean")
        return 1
    print(f"[confirm] mean over seeds {record['seeds']}: {record['mean']:.4g}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
