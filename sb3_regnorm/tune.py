"""Hyperparameter tuning for zoo entries that keeps the RN settings (optuna, RDB storage).

Why not ``rl_zoo3 -optimize``: its sampler replaces ``policy_kwargs`` wholesale, dropping ``norm`` and ``norm_kwargs``.
Here each trial is the zoo entry (:func:`sb3_regnorm.zoo.raw_entry`) plus sampled values, handed to rl_zoo3's own
``ExperimentManager`` as Python values (:mod:`sb3_regnorm.training`), so a trial differs from the zoo entry only in what
was sampled (the space: :mod:`sb3_regnorm.search_space`; where RN sits is fixed by the policy class, after each hidden
Linear).

The first trial of a new study is the zoo entry itself, so the study always shows what tuning gained over it.
Objective: mean return of ``evaluate_policy`` (stochastic for MiniGrid, deterministic otherwise, as rl_zoo3) on fresh
eval envs after ``--n-timesteps`` steps, with ``--n-evaluations - 1`` intermediate evaluations reported to optuna's
MedianPruner.

Nothing is lost: a resumed study reseeds its sampler with ``--seed`` + the number of trials already stored, so it
continues the sequence instead of replaying it; a trial whose agent raises (e.g. ``FloatingPointError`` from an RN
overflow) is recorded as FAIL with its error and the study goes on; the summary is rewritten after every trial. Nothing
is mixed: a study stores what defines its trials (entry, fixed values, budget, evaluation, seeds) when it is created,
and resuming it with different settings is an error; one process at a time runs a study (a lock next to its storage),
and the zoo entry's own trial is queued again when it has not finished.

Seed protocol: tuning uses seeds >= 1000 (trial ``i`` trains with seed ``--seed + i``; every evaluation of the study
uses ``--seed + 300000``, apart from the evaluation envs of confirmations (100000 + 100 x seed) and benchmark
campaigns (200000 + 100 x seed)), so **benchmark reports must use seeds 0..K-1 (K <= 1000)** and never evaluate on a
seed a trial was selected on.

Usage (``sb3-regnorm tune ...`` is the same command)::

    python -m sb3_regnorm.tune --algo ppo --env LunarLander-v3 --norm rn --n-trials 8 --n-timesteps 150000 \\
        [--storage sqlite:///logs/tuning/ppo-LunarLander-v3-rn.db] [--study-name ppo-LunarLander-v3-rn] [--seed 1000]
    python -m sb3_regnorm.tune promote --study-name ppo-LunarLander-v3-rn [--storage URL] [--to zoo/studies]

A run writes its summary ``<study>.{json,md}`` next to its storage (``logs/tuning/`` by default), never into
``zoo/studies/``: only ``promote`` copies a study's summary there, where it backs the values adopted into
:data:`sb3_regnorm.zoo.OVERRIDES`.
"""

from __future__ import annotations

import argparse
import json
import math
import shlex
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Final

import optuna
import yaml
from stable_baselines3.common.callbacks import BaseCallback

from sb3_regnorm import studies, zoo
from sb3_regnorm._locking import LockBusyError, exclusive_lock
from sb3_regnorm.nets import NORMS
from sb3_regnorm.search_space import base_params, params_to_extra, sample_params
from sb3_regnorm.studies import changed_overrides, write_summary
from sb3_regnorm.training import EVAL_SEED_OFFSET, EvalSettings, evaluate_model, python_entry, setup_model

__all__ = [
    "EVAL_SEED_OFFSET",
    "TUNING_EVAL_SEED_OFFSET",
    "TUNING_SEED_MIN",
    "TrialEvalCallback",
    "TuneConfig",
    "changed_overrides",
    "config_from_args",
    "main",
    "promote",
    "run_study",
    "summary_dir",
    "write_summary",
]

TUNING_SEED_MIN: Final = 1000
"""Tuning seeds start here; benchmark reports use seeds 0..K-1 with K <= 1000."""
TUNING_EVAL_SEED_OFFSET: Final = 300_000
"""A study evaluates on envs seeded ``--seed + TUNING_EVAL_SEED_OFFSET`` (>= 301000): never the envs confirmations
(``EVAL_SEED_OFFSET + 100 x seed``, < 200000) or benchmark campaigns (200000 + 100 x seed + i, < 300000) score on."""
SEED_STRIDE: Final = 10_000
"""Seed ``j`` of a trial trains with ``--seed + trial number + j * SEED_STRIDE``. Why the stride: rl_zoo3 seeds env
``k`` of a run with ``seed + k``, so runs with neighbouring seeds share shifted env seed streams; a trial's seeds sit
10,000 apart so that they share none (with up to ``MAX_SEEDS_PER_TRIAL`` seeds, all stay below 100,000)."""
MAX_SEEDS_PER_TRIAL: Final = 9
_TRIAL_DEFINING: Final = ("algo", "env", "norm", "n_timesteps", "evaluation", "seeds", "fixed", "zoo_entry", "zoo_entries")
"""Stored facts of a study that define what its trials mean: a resumed study must not change them."""
DEFAULT_LOG_FOLDER: Final = Path("logs/tuning")
"""Relative to the working directory, like every default path of the command line."""
DEFAULT_PROMOTE_DIR: Final = Path("zoo/studies")


# ------------------------------------------------------------------------------------------ configuration
@dataclass(frozen=True)
class TuneConfig:
    """One tuning run: which entry, the budget and evaluation, storage and folders. Built from the CLI or in code."""

    algo: str
    env_id: str
    norm: str  # a norm of NORMS, or "auto" (sample the RN variant too)
    n_timesteps: int
    n_trials: int = 8
    storage: str = ""  # "": sqlite:///logs/tuning/<study>.db
    study_name: str = ""  # "": <algo>-<env>-<norm>
    seed: int = TUNING_SEED_MIN
    seeds_per_trial: int = 1
    eval_episodes: int = 10
    n_eval_envs: int = 5
    n_evaluations: int = 2
    n_startup_trials: int = 4
    timeout: float | None = None
    fixed: dict[str, Any] = field(default_factory=dict)
    keep_callbacks: bool = False
    log_folder: Path = DEFAULT_LOG_FOLDER
    summary_dir: Path | None = None  # None: next to the storage (see summary_dir())
    command: str = ""

    def __post_init__(self) -> None:
        if self.algo not in zoo.ALGOS:
            raise ValueError(f"Unknown algo {self.algo!r}: expected one of {list(zoo.ALGOS)}")
        if self.norm not in (*NORMS, "auto"):
            raise ValueError(f"Unknown norm {self.norm!r}: expected one of {[*NORMS, 'auto']}")
        if self.seed < TUNING_SEED_MIN:
            raise ValueError(f"tuning seeds must be >= {TUNING_SEED_MIN} (seeds 0..K-1 are for reports)")
        if min(self.n_evaluations, self.n_trials, self.n_timesteps, self.eval_episodes, self.n_eval_envs) < 1:
            raise ValueError("n_evaluations, n_trials, n_timesteps, eval_episodes and n_eval_envs must be >= 1")
        if not 1 <= self.seeds_per_trial <= MAX_SEEDS_PER_TRIAL:
            raise ValueError(f"seeds_per_trial must be in 1..{MAX_SEEDS_PER_TRIAL}, got {self.seeds_per_trial}")
        name = self.study_name or f"{self.algo}-{self.env_id}-{self.norm}"
        object.__setattr__(self, "log_folder", Path(self.log_folder))
        object.__setattr__(self, "study_name", name)
        object.__setattr__(self, "storage", self.storage or f"sqlite:///{self.log_folder / name}.db")

    def train_seeds(self, trial_number: int) -> list[int]:
        """Trial ``i`` trains seeds ``seed + i + j * SEED_STRIDE`` for ``j < seeds_per_trial`` (see :data:`SEED_STRIDE`)."""
        return [self.seed + trial_number + j * SEED_STRIDE for j in range(self.seeds_per_trial)]

    @property
    def entry_norm(self) -> str:
        """The norm of the zoo entry a study starts from (``auto`` starts from RN's)."""
        return "rn" if self.norm == "auto" else self.norm


def summary_dir(storage: str, fallback: Path = DEFAULT_LOG_FOLDER) -> Path:
    """Where a study's summary goes: the folder of its ``sqlite:///`` file, else ``fallback`` (e.g. PostgreSQL)."""
    if storage.startswith("sqlite:///"):
        return Path(storage[len("sqlite:///") :]).parent
    return fallback


# ------------------------------------------------------------------------------------------ evaluation
class TrialEvalCallback(BaseCallback):
    """Evaluate once ``num_timesteps`` passes each of ``eval_steps``, report to the trial, stop when the pruner says so.

    Why at rollout start: for PPO/A2C a rollout can be longer than the gap to an evaluation point, and an evaluation in
    the middle of a rollout would score the policy of the previous update; at rollout start the last update is done.
    """

    def __init__(self, evaluate: Callable[[], float], trial: optuna.Trial, eval_steps: list[int]) -> None:
        super().__init__()
        self.evaluate = evaluate
        self.trial = trial
        self.pending = sorted(eval_steps)
        self.n_points = len(self.pending)
        self.pruned = False
        self.values: list[float] = []

    def _on_rollout_start(self) -> None:
        if self.pruned or not self.pending or self.num_timesteps < self.pending[0]:
            return
        while self.pending and self.num_timesteps >= self.pending[0]:
            self.pending.pop(0)
        self.values.append(self.evaluate())
        self.trial.report(self.values[-1], step=self.n_points - len(self.pending))  # aligned across trials
        self.pruned = self.trial.should_prune()

    def _on_step(self) -> bool:
        return not self.pruned


# ------------------------------------------------------------------------------------------ objective
def _eval_settings(config: TuneConfig) -> EvalSettings:
    """Every evaluation of a study uses the same envs, seeded far from any training seed."""
    return EvalSettings(config.eval_episodes, config.n_eval_envs, config.seed + TUNING_EVAL_SEED_OFFSET)


def _train_trial(config: TuneConfig, trial: optuna.Trial, entry: dict[str, Any], train_seeds: list[int]) -> float:
    """Train one trial's entry (Python values) on each of ``train_seeds``; the mean of their final returns.

    Why several seeds: one seed's final return on LunarLander at these budgets varies by more than the differences
    between good settings, so a single-seed best trial is mostly luck. The first seed's intermediate evaluations feed
    the pruner (the others run to the end); the objective reported last is the mean over seeds."""
    results: list[tuple[float, float, float]] = []  # (final return, its std, fps) per seed
    for index, seed in enumerate(train_seeds):
        folder = f"trial_{trial.number}" if len(train_seeds) == 1 else f"trial_{trial.number}/seed_{seed}"
        try:
            results.append(_train_seed(config, trial, entry, seed, folder, prune=index == 0))
        except optuna.TrialPruned:
            raise
        except Exception:
            if len(train_seeds) > 1:
                trial.set_user_attr("failed_seed", seed)  # the error itself is recorded by the objective
            raise
        if len(train_seeds) > 1:  # finished seeds stay visible if a later one fails
            for key, column in (("seed_values", 0), ("seed_eval_std", 1), ("seed_fps", 2)):
                trial.set_user_attr(key, [r[column] for r in results])
    finals, stds, fps = zip(*results, strict=True)
    trial.set_user_attr("eval_std", sum(stds) / len(stds))  # trial-level values: means over seeds
    trial.set_user_attr("fps", round(sum(fps) / len(fps)))
    value = sum(finals) / len(finals)
    trial.report(value, step=config.n_evaluations)
    if not math.isfinite(value):
        raise FloatingPointError(f"non-finite evaluation return {value}")
    return value


def _train_seed(
    config: TuneConfig, trial: optuna.Trial, entry: dict[str, Any], seed: int, folder: str, prune: bool
) -> tuple[float, float, float]:
    """One training seed of a trial through rl_zoo3: (final evaluation return, its std, env steps per second).
    Raises TrialPruned when ``prune`` and the pruner stops it."""
    trial_dir = config.log_folder / config.study_name / folder
    model, manager = setup_model(config.algo, config.env_id, entry, seed, trial_dir, config.n_timesteps)

    stds: list[float] = []

    def evaluate() -> float:
        mean, std = evaluate_model(model, manager, _eval_settings(config))
        stds.append(std)
        trial.set_user_attr("eval_std", std)
        return mean

    eval_steps = [config.n_timesteps * k // config.n_evaluations for k in range(1, config.n_evaluations)] if prune else []
    callback = TrialEvalCallback(evaluate, trial, eval_steps)
    start = time.perf_counter()
    try:
        model.learn(config.n_timesteps, callback=[*manager.callbacks, callback])
    finally:
        if model.env is not None:
            model.env.close()
    trial.set_user_attr("timesteps", int(model.num_timesteps))
    fps = model.num_timesteps / max(time.perf_counter() - start, 1e-9)
    if callback.pruned:
        trial.set_user_attr("fps", round(fps))
        trial.set_user_attr("intermediate", callback.values)
        raise optuna.TrialPruned(f"pruned after evaluation {len(callback.values)}: {callback.values[-1]:.3f}")
    value = evaluate()
    if prune:
        trial.set_user_attr("intermediate", [*callback.values, value])
    if not math.isfinite(value):
        raise FloatingPointError(f"non-finite evaluation return {value} (seed {seed})")
    return value, stds[-1], round(fps)


def _without_fixed(extra: dict[str, Any], fixed: dict[str, Any]) -> dict[str, Any]:
    """Sampled overrides minus what ``--hp`` fixes (top-level keys and ``policy_kwargs`` keys): fixed values win."""
    out = {key: value for key, value in extra.items() if key not in fixed or key == "policy_kwargs"}
    if "policy_kwargs" in out:
        kept = {k: v for k, v in out["policy_kwargs"].items() if k not in fixed.get("policy_kwargs", {})}
        if kept:
            out["policy_kwargs"] = kept
        else:
            del out["policy_kwargs"]
    return out


def _objective(config: TuneConfig, base: dict[str, Any]) -> Callable[[optuna.Trial], float]:
    """The optuna objective: the trial's entry (base + sampled values), trained and evaluated; errors are recorded."""

    def objective(trial: optuna.Trial) -> float:
        params = sample_params(trial, config.algo, base, config.norm)
        norm = params.pop("norm", config.norm)
        extra = params_to_extra(config.algo, base, params)
        train_seeds = config.train_seeds(trial.number)
        trial.set_user_attr("norm", norm)
        trial.set_user_attr("train_seed", train_seeds[0])
        if len(train_seeds) > 1:
            trial.set_user_attr("train_seeds", train_seeds)
        trial.set_user_attr("eval_seed", config.seed + TUNING_EVAL_SEED_OFFSET)
        extra = _without_fixed(extra, config.fixed)
        trial.set_user_attr("zoo_overrides", zoo.merge_overrides(config.fixed, extra))  # all that differs from the zoo
        entry = zoo.raw_entry(config.algo, config.env_id, norm, zoo.merge_overrides(config.fixed, extra))
        entry["n_timesteps"] = config.n_timesteps
        try:
            return _train_trial(config, trial, python_entry(entry, config.keep_callbacks), train_seeds)
        except optuna.TrialPruned:
            raise
        except Exception as exc:  # recorded with the trial (optuna only logs it), then optuna marks the trial FAIL
            trial.set_user_attr("error", f"{type(exc).__name__}: {exc}"[:500])
            raise
        except KeyboardInterrupt:  # Ctrl-C: optuna stores the trial as FAIL and stops the study
            trial.set_user_attr("error", "KeyboardInterrupt: tuning was interrupted during this trial")
            raise

    return objective


# ------------------------------------------------------------------------------------------ study
HEARTBEAT_S: Final = 60
"""A running trial writes a heartbeat this often; one silent for :data:`HEARTBEAT_GRACE_S` is stale."""
HEARTBEAT_GRACE_S: Final = 300


def _open_storage(url: str) -> optuna.storages.RDBStorage:
    """The study's RDB storage with a heartbeat.

    Why: a trial whose process is killed (a session that ends, a machine that goes away) would otherwise stay RUNNING
    in the study forever; with a heartbeat, optuna marks it FAIL when the study next runs a trial, and the summary
    says why (see :func:`sb3_regnorm.studies.trial_rows`)."""
    with warnings.catch_warnings():  # "experimental" since optuna 2.9, and a warning on every tuning run says nothing
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.storages.RDBStorage(_storage(url), heartbeat_interval=HEARTBEAT_S, grace_period=HEARTBEAT_GRACE_S)


def _storage(url: str) -> str:
    """Create the folder of a ``sqlite:///`` file; other RDB URLs (e.g. PostgreSQL) pass through unchanged."""
    if url.startswith("sqlite:///"):
        Path(url[len("sqlite:///") :]).parent.mkdir(parents=True, exist_ok=True)
    return url


def _meta(config: TuneConfig, base: dict[str, Any]) -> dict[str, Any]:
    """Facts about the study that do not come from the trials (``base``: the zoo entry as shipped, without ``--hp``;
    trials record their overrides including the fixed values, so a best trial's overrides are all it changed)."""
    return {
        "study_name": config.study_name,
        "algo": config.algo,
        "env": config.env_id,
        "norm": config.norm,
        "n_timesteps": config.n_timesteps,
        "evaluation": (
            f"{config.eval_episodes} episodes on {config.n_eval_envs} envs, {config.n_evaluations} evaluation(s) per "
            f"trial, {'stochastic' if config.env_id in zoo.MINIGRID_IDS else 'deterministic'} actions"
        ),
        "seeds": _seeds_text(config),
        "fixed": config.fixed,
        "zoo_entry": base,
        # --norm auto: a trial of variant v trains v's entry plus the sampled values, so the overrides to adopt are
        # what the best trial changes in *its* variant's entry (studies.summary diffs against this one).
        **(
            {"zoo_entries": {n: zoo.raw_entry(config.algo, config.env_id, n) for n in zoo.RN_NORMS}}
            if config.norm == "auto"
            else {}
        ),
        "storage": config.storage,
        "versions": studies.versions(),
        "command": config.command,
        "updated": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "protocol": (
            f"Tuning seeds are >= {TUNING_SEED_MIN}; benchmark reports must use seeds 0..K-1 (K <= {TUNING_SEED_MIN}). "
            + (
                "One training seed per trial: the best value is a noisy, optimistic estimate."
                if config.seeds_per_trial == 1
                else f"{config.seeds_per_trial} training seeds per trial (objective: their mean final return); the best "
                "value is still an optimistic estimate (the best of several noisy means)."
            )
        ),
    }


def _seeds_text(config: TuneConfig) -> str:
    """How a study's trials are seeded (one of the values a resumed study must keep)."""
    eval_seed = config.seed + TUNING_EVAL_SEED_OFFSET
    if config.seeds_per_trial == 1:
        return f"train {config.seed} + trial number; eval {eval_seed}"
    k = config.seeds_per_trial
    return f"train {config.seed} + trial number + {SEED_STRIDE} x j for j < {k} (mean of {k} final returns); eval {eval_seed}"


def run_study(config: TuneConfig, objective: Callable[[optuna.Trial], float] | None = None) -> optuna.Study:
    """Create or resume the study, queue the zoo entry's own trial until it has finished, optimize, write the summary.

    ``objective`` replaces the training objective (tests use a cheap one); the sampler is seeded with ``config.seed``
    plus the number of trials already stored, so each resumption draws new parameters. Raises ``ValueError`` when a
    stored study was defined differently, and :class:`sb3_regnorm._locking.LockBusyError` when another process runs it.
    """
    zoo.build_policy(zoo.load_entry(config.algo, config.env_id, config.entry_norm, zoo_dir=None))  # fail before any trial
    base = zoo.raw_entry(config.algo, config.env_id, config.entry_norm, config.fixed)
    meta = _meta(config, zoo.raw_entry(config.algo, config.env_id, config.entry_norm))
    out_dir = config.summary_dir or summary_dir(config.storage, config.log_folder)
    busy = f"study {config.study_name} is being tuned by another process; wait for it (a study runs one trial at a time)"
    with exclusive_lock(_lock_path(config), blocking=False, busy=busy):
        study = optuna.create_study(
            storage=_open_storage(config.storage), study_name=config.study_name, direction="maximize", load_if_exists=True
        )
        _check_same_definition(study, meta)
        if config.storage.startswith("sqlite:///"):
            _fail_orphans(study)
        n_existing = len(study.get_trials(deepcopy=False))
        study.sampler = optuna.samplers.TPESampler(n_startup_trials=config.n_startup_trials, seed=config.seed + n_existing)
        study.pruner = (
            optuna.pruners.MedianPruner(n_startup_trials=config.n_startup_trials, n_warmup_steps=0)
            if config.n_evaluations > 1
            else optuna.pruners.NopPruner()
        )
        entry_params = base_params(config.algo, base, config.norm)
        if not _has_trial(study, entry_params):
            study.enqueue_trial(entry_params)

        def on_trial_end(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
            meta["updated"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
            study.set_user_attr(studies.META_KEY, meta)
            write_summary(study, out_dir)
            print(f"[tune] trial {trial.number} {trial.state.name} value={trial.value} params={trial.params}", flush=True)

        study.set_user_attr(studies.META_KEY, meta)
        try:
            study.optimize(
                objective or _objective(config, base),
                n_trials=config.n_trials,
                timeout=config.timeout,
                catch=(Exception,),
                callbacks=[on_trial_end],
                gc_after_trial=True,
            )
        finally:  # also after Ctrl-C: the interrupted trial is stored as FAIL and shows in the summary
            write_summary(study, out_dir)
    return study


def _fail_orphans(study: optuna.Study) -> None:
    """Mark FAIL the RUNNING trials of a study whose lock this process holds: their process is gone.

    Why: a SQLite study is run by one process at a time (its lock), so a RUNNING trial found under the lock was left by
    a process that was killed, possibly before heartbeats existed. Shared RDB storages rely on the heartbeat alone."""
    for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        study.tell(trial.number, state=optuna.trial.TrialState.FAIL)


def _lock_path(config: TuneConfig) -> Path:
    """Next to a ``sqlite:///`` file; for other storages (shared by several machines) in the local log folder."""
    if config.storage.startswith("sqlite:///"):
        db = Path(config.storage[len("sqlite:///") :])
        return db.with_name(f".{db.name}.{config.study_name}.lock")
    return config.log_folder / f".{config.study_name}.lock"


def _check_same_definition(study: optuna.Study, meta: dict[str, Any]) -> None:
    """A resumed study must keep what its trials mean: refuse settings that differ from the stored ones."""
    stored = study.user_attrs.get(studies.META_KEY)
    if not stored or not study.get_trials(deepcopy=False):
        return
    stored = json.loads(json.dumps(stored, default=str))
    current = json.loads(json.dumps(meta, default=str))
    changed = [key for key in _TRIAL_DEFINING if key in stored and stored[key] != current.get(key)]
    if changed:
        detail = "; ".join(f"{key}: stored {stored[key]!r}, now {current.get(key)!r}" for key in changed)
        raise ValueError(
            f"study {study.study_name} was created with other settings ({detail}); resuming would mix trials that mean "
            "different things. Use a new --study-name, or the study's own settings."
        )


def _has_trial(study: optuna.Study, params: dict[str, Any]) -> bool:
    """Whether a trial with exactly ``params`` has finished (complete or pruned) or is waiting to run."""
    alive = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED, optuna.trial.TrialState.WAITING)
    return any(t.params == params or t.system_attrs.get("fixed_params") == params for t in study.get_trials(states=alive))


def promote(
    storage: str, study_name: str, out_dir: str | Path = DEFAULT_PROMOTE_DIR, force: bool = False
) -> tuple[Path, Path]:
    """Write a stored study's summary into ``out_dir`` (``zoo/studies``): the one step that changes committed records.

    Refuses (unless ``force``) to replace a committed summary that holds more trials than the study: that record may
    back adopted zoo values, and a shorter study of the same name (e.g. a fresh one in a new clone) would erase it."""
    try:
        study = optuna.load_study(study_name=study_name, storage=storage)
    except KeyError as exc:
        raise ValueError(f"no study {study_name!r} in {storage}") from exc
    committed = Path(out_dir) / f"{study_name}.json"
    if committed.is_file() and not force:
        old = json.loads(committed.read_text()).get("trials", {})
        n_old, n_new = sum(old.values()) if isinstance(old, dict) else 0, len(study.trials)
        if n_old > n_new:
            raise ValueError(f"{committed} records {n_old} trials, the study only {n_new}: pass --force to replace it")
    return write_summary(study, out_dir)


# ------------------------------------------------------------------------------------------ command line
def _parse_fixed(items: list[str]) -> dict[str, Any]:
    """``--hp key=value`` pairs (YAML values) as fixed overrides of the zoo entry, e.g. ``gradient_steps=1``."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--hp expects key=value, got {item!r}")
        out = zoo.merge_overrides(out, {key: yaml.safe_load(value)})
    return out


def _parser(prog: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n")[0])
    parser.add_argument("--algo", required=True, choices=zoo.ALGOS)
    parser.add_argument("--env", required=True, help=f"one of {list(zoo.ENV_IDS)}")
    parser.add_argument("--norm", required=True, choices=[*NORMS, "auto"], help="auto: also sample the RN variant")
    parser.add_argument("--n-trials", type=int, default=8, help="trials to run in this invocation")
    parser.add_argument("--n-timesteps", type=int, required=True, help="training budget per trial")
    parser.add_argument("--storage", default="", help="optuna RDB URL (default sqlite:///<log folder>/<study>.db)")
    parser.add_argument("--study-name", default="", help="default <algo>-<env>-<norm>")
    parser.add_argument("--seed", type=int, default=TUNING_SEED_MIN, help=f"first training seed (>= {TUNING_SEED_MIN})")
    parser.add_argument(
        "--seeds-per-trial", type=int, default=1, help="training seeds per trial; the objective is their mean final return"
    )
    parser.add_argument("--eval-episodes", type=int, default=10)
    parser.add_argument("--n-eval-envs", type=int, default=5)
    parser.add_argument("--n-evaluations", type=int, default=2, help="evaluations per trial (the last one is the objective)")
    parser.add_argument("--n-startup-trials", type=int, default=4, help="random trials before TPE, and before pruning")
    parser.add_argument("--timeout", type=float, default=None, help="start no new trial after this many seconds")
    parser.add_argument(
        "--hp", dest="fixed_items", nargs="*", default=[], metavar="KEY=VALUE", help="fixed overrides (beat sampled values)"
    )
    parser.add_argument("--keep-callbacks", action="store_true", help="keep the entry's RegularityCallback (slower)")
    parser.add_argument("--log-folder", default=str(DEFAULT_LOG_FOLDER), help="per-trial rl_zoo3 folders go under it")
    parser.add_argument("--summary-dir", default=None, help="default: the folder of the sqlite storage")
    parser.add_argument("--num-threads", type=int, default=1, help="torch threads (1: the machine is shared)")
    return parser


def _promote_parser(prog: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=f"{prog} promote", description=promote.__doc__)
    parser.add_argument("--study-name", required=True)
    parser.add_argument("--storage", default="", help="default sqlite:///logs/tuning/<study>.db")
    parser.add_argument("--to", default=str(DEFAULT_PROMOTE_DIR), help="default %(default)s")
    parser.add_argument("--force", action="store_true", help="replace a committed summary that has more trials")
    return parser


def _promote_main(argv: list[str], prog: str) -> int:
    args = _promote_parser(prog).parse_args(argv)
    storage = args.storage or f"sqlite:///{DEFAULT_LOG_FOLDER / args.study_name}.db"
    if storage.startswith("sqlite:///") and not Path(storage[len("sqlite:///") :]).is_file():
        print(f"error: no study storage {storage}", file=sys.stderr)
        return 2
    try:
        for path in promote(storage, args.study_name, args.to, args.force):
            print(path)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


def config_from_args(args: argparse.Namespace, command: str = "") -> TuneConfig:
    """The typed configuration of a parsed command line (raises ValueError on bad values)."""
    return TuneConfig(
        algo=args.algo, env_id=args.env, norm=args.norm, n_timesteps=args.n_timesteps, n_trials=args.n_trials,
        storage=args.storage, study_name=args.study_name, seed=args.seed, seeds_per_trial=args.seeds_per_trial,
        eval_episodes=args.eval_episodes,
        n_eval_envs=args.n_eval_envs, n_evaluations=args.n_evaluations, n_startup_trials=args.n_startup_trials,
        timeout=args.timeout, fixed=_parse_fixed(args.fixed_items), keep_callbacks=args.keep_callbacks,
        log_folder=Path(args.log_folder), summary_dir=Path(args.summary_dir) if args.summary_dir else None,
        command=command,
    )  # fmt: skip


def main(argv: Sequence[str] | None = None, prog: str = "python -m sb3_regnorm.tune") -> int:
    """Entry point of ``python -m sb3_regnorm.tune`` and ``sb3-regnorm tune``; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["promote"]:
        return _promote_main(argv[1:], prog)
    args = _parser(prog).parse_args(argv)
    try:
        config = config_from_args(args, command=" ".join([prog, shlex.join(argv)]))
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    import torch

    torch.set_num_threads(args.num_threads)
    try:
        study = run_study(config)
    except (zoo.ZooError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except LockBusyError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 3
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    if complete:
        print(f"[tune] best value {study.best_value:.4g} with {study.best_params}")
    print(f"[tune] summary: {config.summary_dir or summary_dir(config.storage, config.log_folder)}/{config.study_name}.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
