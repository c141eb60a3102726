"""Confirm a zoo entry at its full budget on report seeds, and record the result in ``zoo/studies/confirmations.json``.

Why: a tuned value is picked on one tuning seed (>= 1000) at a short budget, so it is optimistic. Before an entry is
adopted (and before the README quotes it) it is retrained from scratch at its own ``n_timesteps`` on seeds 0, 1, 2 and
scored on evaluation envs seeded at :data:`sb3_regnorm.training.EVAL_SEED_OFFSET` + 100 x seed (never a training
seed), deterministic for LunarLander and stochastic for MiniGrid, as rl_zoo3 does.

Usage::

    sb3-regnorm confirm --algo ppo --env LunarLander-v3 --norm rn [--seeds 0 1 2] [--out zoo/studies/confirmations.json]
    sb3-regnorm confirm --algo ppo --env LunarLander-v3 --norm rn --missing   # only the seeds not recorded yet
    sb3-regnorm confirm --from-campaign lunarlander     # campaign runs of unchanged zoo entries, seeds 0-2
    sb3-regnorm confirm --table [--write README.md]     # the README's zoo table

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
from typing import Any, Final, NamedTuple

from sb3_regnorm import zoo
from sb3_regnorm._divergence import TrainingDiverged
from sb3_regnorm._generated import print_or_write
from sb3_regnorm._locking import atomic_write_text, exclusive_lock
from sb3_regnorm.nets import NORMS
from sb3_regnorm.training import EVAL_SEED_OFFSET, report_eval_settings

__all__ = [
    "DEFAULT_OUT",
    "ConfirmSettings",
    "confirm",
    "confirm_from_campaign",
    "find_record",
    "load_records",
    "main",
    "record_key",
    "zoo_table",
]

DEFAULT_OUT: Final = Path("zoo/studies/confirmations.json")
"""Relative to the working directory (the checkout's root for the committed records)."""
_EPISODES: Final = {True: 50, False: 20}  # MiniGrid (short, noisy 0-1 returns), LunarLander
_EVAL_ENVS: Final = 5
_RECORD_KEYS: Final = ("algo", "env", "norm", "n_timesteps", "seeds", "returns")


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
    missing: bool = False  # train only the seeds the entry's current record lacks (resume after a kill)

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
    for i, record in enumerate(records):
        missing = [key for key in _RECORD_KEYS if not isinstance(record, dict) or key not in record]
        if missing:
            raise ValueError(f"{path}: record {i} lacks {', '.join(missing)}: not a confirmation record")
        lengths = {key: len(record[key]) for key in ("seeds", "returns", "stds", "train_s") if key in record}
        if len(set(lengths.values())) > 1:
            raise ValueError(f"{path}: record {i} has lists of different lengths {lengths}: one value per seed expected")
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


class _SeedKept(Exception):
    """A campaign run was not recorded because the record already holds that seed from elsewhere (the reason)."""


def _keep_reason(old_sources: dict[str, dict[str, str]], old_seeds: list[int], seed: int, source: dict[str, str]) -> str:
    """Why a campaign run must not replace the recorded ``seed`` ("" when it may): a seed ``confirm`` trained itself,
    or one taken from another campaign run, stays."""
    if seed not in old_seeds:
        return ""
    if str(seed) not in old_sources:
        return "trained by `confirm` itself (kept)"
    if old_sources[str(seed)] != source:
        other = old_sources[str(seed)]
        return f"already recorded from campaign {other['campaign']}, arm {other['arm']} (kept)"
    return ""


def _merge_seed(
    out: Path, fresh: dict[str, Any], seed: int, result: _Result, source: dict[str, str] | None = None
) -> dict[str, Any]:
    """Under the file's lock: re-read the records, put ``seed``'s result into the current record of the same entry and
    evaluation (a stale one is replaced), write, and return the record.

    ``source`` names the campaign run a seed's result comes from (kept per seed under ``sources``); such a result never
    replaces a seed recorded from elsewhere (:class:`_SeedKept`). ``command`` reruns the record: ``confirm`` for the
    seeds it trained itself, then ``confirm --from-campaign`` for the seeds with a source."""
    key = record_key(fresh)
    with exclusive_lock(_lock_path(out), blocking=True):
        records = load_records(out)
        old = _current_record(records, fresh)
        results: dict[int, _Result] = {}
        sources: dict[str, dict[str, str]] = {}
        if old is not None:
            errors = old.get("diverged", {})
            unknown = [None] * len(old["seeds"])  # records written before stds / train_s were kept
            stds, train_s = old.get("stds", unknown), old.get("train_s", unknown)
            columns = zip(old["seeds"], old["returns"], stds, train_s, strict=True)
            results = {int(s): (ret, std, secs, errors.get(str(s))) for s, ret, std, secs in columns}
            sources = dict(old.get("sources", {}))
            reason = _keep_reason(sources, [int(s) for s in old["seeds"]], seed, source) if source is not None else ""
            if reason:
                raise _SeedKept(reason)
            sources.pop(str(seed), None)
        results[seed] = result
        if source is not None:
            sources[str(seed)] = source
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
        own = [s for s in seeds if str(s) not in sources]  # seeds trained by `confirm` itself
        commands = [fresh["command"].replace("{seeds}", " ".join(map(str, own)))] if own else []
        if sources:
            runs_files = sorted({src["runs"] for src in sources.values()})
            commands.append(" ".join(["sb3-regnorm confirm --from-campaign", *runs_files]))
            record["sources"] = dict(sorted(sources.items(), key=lambda item: int(item[0])))
        record["command"] = " && ".join(commands)
        _write(out, [*(r for r in records if record_key(r) != key), record])
    return record


def _current_record(records: list[dict[str, Any]], fresh: dict[str, Any]) -> dict[str, Any] | None:
    """The record that ``fresh``'s seeds add to: same entry, budget and evaluation (any other is stale)."""
    for record in records:
        same = record.get("entry") == fresh["entry"] and record.get("evaluation") == fresh["evaluation"]
        if record_key(record) == record_key(fresh) and same:
            return record
    return None


def _run_seed(settings: ConfirmSettings, entry: dict[str, Any], seed: int) -> _Result:
    """Train the entry on ``seed`` at its full budget: (mean, std) evaluation return, seconds, and the error if the
    agent diverged (then mean and std are None)."""
    from sb3_regnorm.training import train_and_score

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


def _fresh_record(settings: ConfirmSettings, n_timesteps: int, smoke: Sequence[str] = ()) -> dict[str, Any]:
    """The record of ``settings``'s entry without results: what identifies it, how it is scored, how to rerun it."""
    evaluation = (
        f"{settings.episodes()} episodes on {settings.n_eval_envs} envs seeded {EVAL_SEED_OFFSET} + 100 x seed, "
        f"{'stochastic' if settings.env_id in zoo.MINIGRID_IDS else 'deterministic'} actions"
    )
    algo, env_id, norm = settings.algo, settings.env_id, settings.norm
    return {
        "algo": algo,
        "env": env_id,
        "norm": norm,
        "n_timesteps": n_timesteps,
        "evaluation": evaluation,
        "tuned": bool(zoo.tuned_overrides(algo, env_id, norm)),
        "entry": {**_comparable_entry(algo, env_id, norm), "n_timesteps": n_timesteps},
        "command": " ".join(["sb3-regnorm confirm --algo", algo, "--env", env_id, "--norm", norm, *smoke, "--seeds {seeds}"]),
    }


def confirm(settings: ConfirmSettings) -> dict[str, Any]:
    """Train and score the current zoo entry on every seed, merging each seed into its record; return the record.

    A record of the same entry and protocol keeps its other seeds (so ``--seeds 2``, or ``missing``, completes a run
    killed after seed 1); a record of a changed entry is stale and starts over.
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
    fresh = _fresh_record(settings, int(entry["n_timesteps"]), smoke)
    record = _current_record(load_records(settings.out), fresh) or {}
    seeds = settings.seeds
    if settings.missing:
        seeds = tuple(seed for seed in seeds if seed not in record.get("seeds", []))
        if len(seeds) < len(settings.seeds):
            done = ", ".join(str(seed) for seed in settings.seeds if seed not in seeds)
            print(f"[confirm] {settings.algo} {settings.env_id} {settings.norm}: seed(s) {done} already recorded")
    for seed in seeds:
        result = _run_seed(settings, entry, seed)
        record = _merge_seed(Path(settings.out), fresh, seed, result)
        mean, std, _, error = result
        outcome = f"diverged: {error}" if error else f"{mean:.4g} +- {std:.3g}"
        print(f"[confirm] {settings.algo} {settings.env_id} {settings.norm} seed {seed}: {outcome}", flush=True)
    return record


class _Skip(NamedTuple):
    """Why a campaign run cannot stand in for a ``confirm`` run of its seed."""

    reason: str


def _campaign_result(run: dict[str, Any], settings: ConfirmSettings) -> _Result | _Skip:
    """The confirmation result of one campaign run (of the zoo entry as shipped), or why it cannot stand in for one."""
    report, diverged = run.get("report_eval"), run.get("diverged")
    if int(run["n_timesteps"]) < int(run["hyperparams"]["n_timesteps"]) and not diverged:
        return _Skip(f"trained {run['n_timesteps']} of {run['hyperparams']['n_timesteps']} steps")
    if diverged:  # only a divergence in training, recorded by a runner that tells it apart from one while scoring
        if diverged.get("during") != "training":
            return _Skip(f"diverged while {diverged.get('during', 'training or scoring (not recorded which)')}")
        return None, None, _train_seconds(run), f"{diverged['error']} (at step {diverged['at_step']})"
    if report is None:
        return _Skip("recorded before runs were scored as `confirm` scores them (no report_eval)")
    if not (run["curve"].get("deterministic", True) or report.get("training_rng_untouched")):
        return _Skip("its evaluations during training sampled actions from training's random streams")
    expected = report_eval_settings(settings.env_id, int(run["seed"]))
    scored_as = (report["episodes"], report["n_envs"], report["first_seed"], report["deterministic"])
    if scored_as != (expected.n_episodes, expected.n_envs, expected.seed, settings.env_id not in zoo.MINIGRID_IDS):
        return _Skip(f"scored otherwise than `confirm` scores ({scored_as})")
    return round(float(report["mean"]), 4), round(float(report["std"]), 4), _train_seconds(run), None


def _train_seconds(run: dict[str, Any]) -> float:
    """Training time of a campaign run (a diverged run records wall and evaluation time only)."""
    if "train_time_s" in run:
        return round(float(run["train_time_s"]), 1)
    return round(float(run["wall_time_s"]) - float(run.get("eval_time_s", 0.0)), 1)


def _portable(path: Path) -> str:
    """``path`` relative to the working directory where it lies below it: no machine's paths in committed records."""
    try:
        return path.resolve().relative_to(Path.cwd().resolve()).as_posix()
    except ValueError:
        return path.as_posix()


def confirm_from_campaign(runs_path: str | Path, out: str | Path = DEFAULT_OUT, seeds: Sequence[int] = (0, 1, 2)) -> list[str]:
    """Record campaign runs of *unchanged* zoo entries as their confirmations; return one line per recorded seed, then
    one per arm and reason a run was skipped for.

    Why: a campaign arm that is a zoo entry as shipped (same hyperparameters, full budget) trains what ``confirm``
    would train for the same seed (evaluations leave training's random streams alone), and its runs score the final
    policy as ``confirm`` does (``report_eval``), so rerunning them would only spend compute. Runs of other arms
    (overrides, other budgets, changed entries), runs without ``report_eval``, and seeds already recorded from
    elsewhere (by ``confirm`` itself or another campaign run: kept) are skipped with the reason; runs that are no zoo
    entry at all (another protocol, an env the zoo does not ship) get one line per arm. Each seed keeps its source
    (``sources``) in the record.
    """
    from sb3_regnorm.benchmark.runner import read_records, unique_records

    runs_path = Path(runs_path)
    runs, _ = unique_records(read_records(runs_path))
    lines: list[str] = []
    skipped: dict[tuple[str, str], list[int]] = {}  # (arm, reason) -> seeds: one line per arm and reason
    not_in_zoo: dict[str, int] = {}
    for run in sorted(runs, key=lambda r: (r["algo"], r["env"], r["arm"], int(r["seed"]))):
        algo, env_id, norm, arm, seed = run["algo"], run["env"], run["norm"], run["arm"], int(run["seed"])
        if seed not in seeds:
            continue
        where = f"{run.get('campaign', '?')} {algo} {env_id} {arm}"
        if run.get("protocol", "zoo") != "zoo" or not zoo.has_entry(algo, env_id):
            not_in_zoo[where] = not_in_zoo.get(where, 0) + 1
            continue
        settings = ConfirmSettings(algo, env_id, norm, seeds=(seed,), out=Path(out))
        fresh = _fresh_record(settings, int(zoo.raw_entry(algo, env_id, norm)["n_timesteps"]))
        if json.loads(json.dumps(run["hyperparams"], default=str)) != fresh["entry"]:
            skipped.setdefault((where, f"the arm is not the zoo's {norm} entry as shipped"), []).append(seed)
            continue
        result = _campaign_result(run, settings)
        if isinstance(result, _Skip):
            skipped.setdefault((where, result.reason), []).append(seed)
            continue
        source = {"runs": _portable(runs_path), "campaign": str(run.get("campaign")), "arm": arm}
        try:
            _merge_seed(Path(out), fresh, seed, result, source)
        except _SeedKept as kept:
            skipped.setdefault((where, str(kept)), []).append(seed)
            continue
        mean, std, _, error = result
        lines.append(f"recorded {where} seed {seed}: " + (f"diverged ({error})" if error else f"{mean:.4g} +- {std:.3g}"))
    for (where, reason), seed_list in skipped.items():
        lines.append(f"skipped {where} {_seed_label(seed_list)}: {reason}")
    lines += [f"skipped {n} run(s) of {where}: not a zoo entry" for where, n in not_in_zoo.items()]
    return lines


_ALGO_NAMES: Final = {"ppo": "PPO", "a2c": "A2C", "dqn": "DQN"}


def _seed_label(seeds: Sequence[int]) -> str:
    """``seed 2`` or ``seeds 0, 1``."""
    return f"seed {seeds[0]}" if len(seeds) == 1 else f"seeds {', '.join(map(str, seeds))}"


def _steps(n_timesteps: int) -> str:
    """A budget as the table writes it: 100k, 1M, 1.5M."""
    return f"{n_timesteps / 1e6:g}M" if n_timesteps >= 1_000_000 else f"{n_timesteps // 1000}k"


def zoo_table(records: list[dict[str, Any]]) -> str:
    """The README's zoo table: every shipped (algo, env) with its budget and, per norm, the confirmed mean return over
    the recorded seeds (``-`` where unconfirmed, ``diverged (seed k)`` where a seed's agent diverged) and ``T`` where
    the entry has tuned values; an entry with a larger budget than its row's (:data:`sb3_regnorm.zoo.GROWN_BUDGETS`)
    says so, e.g. ``0.96 T (at 200k)``. Stale records (for an entry that has changed since) are not shown."""
    lines = [
        "| algo | env | budget | " + " | ".join(NORMS) + " |",
        "|---|---|---|" + "---|" * len(NORMS),
    ]
    for algo in zoo.ALGOS:
        for env_id in zoo.entry_env_ids(algo):
            budget = int(zoo.raw_entry(algo, env_id, "none", tuned=False)["n_timesteps"])
            cells = []
            for norm in NORMS:
                record = find_record(records, algo, env_id, norm)
                value, notes = "-", []
                if record is not None and record.get("diverged"):
                    value = f"diverged (seed {', '.join(sorted(record['diverged'], key=int))})"
                elif record is not None and record["returns"]:
                    value = f"{statistics.fmean(record['returns']):.3g}"
                    if list(record["seeds"]) != [0, 1, 2]:
                        notes.append(_seed_label(record["seeds"]))
                grown = zoo.grown_budget(algo, env_id, norm)
                if grown is not None:
                    notes.insert(0, f"at {_steps(grown[0])}")
                value += " T" if zoo.tuned_overrides(algo, env_id, norm) else ""
                cells.append(value + (f" ({'; '.join(notes)})" if notes else ""))
            lines.append(f"| {_ALGO_NAMES[algo]} | {env_id} | {_steps(budget)} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _parser(prog: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n")[0])
    parser.add_argument("--table", action="store_true", help="print the README's zoo table from --out and exit")
    parser.add_argument(
        "--write",
        metavar="PAGE",
        help="with --table: put the table into PAGE (e.g. README.md) under its `<!-- zoo-table: ... -->` line",
    )
    parser.add_argument(
        "--from-campaign",
        nargs="+",
        metavar="CAMPAIGN",
        help="record the runs of unchanged zoo entries on --seeds in a campaign's runs.jsonl (a path, or a name under "
        "logs/benchmarks/) as their confirmations, instead of training",
    )
    parser.add_argument("--algo", choices=zoo.ALGOS)
    parser.add_argument("--env", choices=zoo.ENV_IDS)
    parser.add_argument("--norm", choices=NORMS)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument(
        "--missing",
        action="store_true",
        help="train only the seeds of --seeds that the entry's current record lacks (resumes a killed confirmation; "
        "a diverged seed counts as recorded)",
    )
    parser.add_argument("--eval-episodes", type=int, default=0, help="0: 50 for MiniGrid, 20 otherwise")
    parser.add_argument("--n-eval-envs", type=int, default=_EVAL_ENVS, help="other values make a smoke test")
    parser.add_argument("--n-timesteps", type=int, default=0, help="0: the entry's budget (else a smoke test)")
    parser.add_argument("--log-folder", default="logs/confirm")
    parser.add_argument("--out", default=str(DEFAULT_OUT))
    return parser


def _from_campaign_main(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    """``--from-campaign``: check every campaign first, then record their runs."""
    training_flags = {"--algo": args.algo, "--env": args.env, "--norm": args.norm, "--n-timesteps": args.n_timesteps,
                      "--eval-episodes": args.eval_episodes, "--n-eval-envs": args.n_eval_envs != _EVAL_ENVS,
                      "--log-folder": args.log_folder != "logs/confirm", "--missing": args.missing}  # fmt: skip
    given = [flag for flag, value in training_flags.items() if value]
    if given:
        parser.error(f"--from-campaign trains nothing: {', '.join(given)} would be ignored")
    paths = []
    for name in args.from_campaign:
        path = Path(name) if Path(name).is_file() else Path("logs/benchmarks") / name / "runs.jsonl"
        if not path.is_file():
            print(f"error: {name}: neither a runs.jsonl file nor a campaign under logs/benchmarks/", file=sys.stderr)
            return 2
        paths.append(path)
    for path in paths:
        try:
            lines = confirm_from_campaign(path, args.out, args.seeds)
        except (zoo.ZooError, ValueError, KeyError, TypeError) as exc:
            print(f"error: {path}: not a runs.jsonl of the benchmark runner ({type(exc).__name__}: {exc})", file=sys.stderr)
            return 2
        for line in lines:
            print(f"[confirm] {line}")
    return 0


def main(argv: Sequence[str] | None = None, prog: str = "python -m sb3_regnorm.confirm") -> int:
    """Entry point of ``sb3-regnorm confirm`` and ``python -m sb3_regnorm.confirm``; returns the exit status."""
    parser = _parser(prog)
    args = parser.parse_args(argv)
    if args.write and not args.table:
        parser.error("--write goes with --table")
    if args.table:
        return print_or_write(zoo_table(load_records(args.out)), args.write, "zoo-table", "confirm")
    if args.from_campaign:
        return _from_campaign_main(parser, args)
    if not (args.algo and args.env and args.norm):
        parser.error("--algo, --env and --norm are required (or --table)")
    import torch

    torch.set_num_threads(1)
    settings = ConfirmSettings(
        args.algo, args.env, args.norm, tuple(args.seeds), args.eval_episodes, args.n_eval_envs,
        log_folder=Path(args.log_folder), out=Path(args.out), n_timesteps=args.n_timesteps, missing=args.missing,
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
