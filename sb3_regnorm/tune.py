"""Hyperparameter tuning for zoo entries that keeps the RN settings (optuna, RDB storage).

Why not ``rl_zoo3 -optimize``: its sampler replaces ``policy_kwargs`` wholesale, dropping ``norm`` and ``norm_kwargs``.
Here each trial is the zoo entry (:func:`sb3_regnorm.zoo.raw_entry`) plus sampled values, trained through rl_zoo3's
own ``ExperimentManager``, so a trial differs from the zoo entry only in what was sampled:

* every norm: ``learning_rate`` (log-uniform in [0.3x, 3x] the entry's value; a ``lin_`` schedule stays linear),
  ``activation`` (tanh or relu) and one or two algo knobs (PPO ``n_epochs`` and ``ent_coef``, A2C ``n_steps`` and
  ``ent_coef``, DQN ``exploration_fraction`` and ``target_update_interval``);
* RN norms (rn, rln, rnln): RN's ``momentum`` in {None, 0.01, 0.001}; the variant itself only with ``--norm auto``.
  Where RN sits is fixed by the policy class (after each hidden Linear).

The first trial of a new study is the zoo entry itself, so the study always shows what tuning gained over it.
Objective: mean return of ``evaluate_policy`` (stochastic for MiniGrid, deterministic otherwise, as rl_zoo3) on fresh
eval envs after ``--n-timesteps`` steps, with ``--n-evaluations - 1`` intermediate evaluations reported to optuna's
MedianPruner.

Seed protocol: tuning uses seeds >= 1000 (trial ``i`` trains with seed ``--seed + i``; every evaluation of the study
uses ``--seed + 100000``), so **benchmark reports must use seeds 0..K-1 (K <= 1000)** and never evaluate on a seed a
trial was selected on.

Usage::

    python -m sb3_regnorm.tune --algo ppo --env LunarLander-v3 --norm rn --n-trials 8 --n-timesteps 150000 \\
        [--storage sqlite:///logs/tuning/ppo-LunarLander-v3-rn.db] [--study-name ppo-LunarLander-v3-rn] [--seed 1000]

After each trial (so a killed study keeps its results) and at the end, a summary is written to
``zoo/studies/<algo>-<env>-<norm>.{json,md}``; its ``zoo_overrides`` go into :data:`sb3_regnorm.zoo.OVERRIDES`.
"""

from __future__ import annotations

import argparse
import inspect
import json
import math
import platform
import shlex
import sys
import time
from collections.abc import Callable
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any, Final

import optuna
import yaml
from stable_baselines3.common.callbacks import BaseCallback

from sb3_regnorm import zoo
from sb3_regnorm.nets import NORMS

__all__ = [
    "EVAL_SEED_OFFSET",
    "TUNING_SEED_MIN",
    "TrialEvalCallback",
    "changed_overrides",
    "main",
    "params_to_extra",
    "run_study",
    "sample_params",
    "write_summary",
]

TUNING_SEED_MIN: Final = 1000
"""Tuning seeds start here; benchmark reports use seeds 0..K-1 with K <= 1000."""
EVAL_SEED_OFFSET: Final = 100_000
"""Evaluation envs of a study use ``--seed + EVAL_SEED_OFFSET`` (never a training seed of any trial)."""
ACTIVATIONS: Final = {"tanh": "nn.Tanh", "relu": "nn.ReLU"}
_PPO_EPOCHS: Final = (3, 4, 6, 8, 10)
_ENT_COEFS: Final = (0.0, 0.00001, 0.001, 0.01)
_A2C_STEPS: Final = (5, 8, 16, 32)
_TARGET_UPDATES: Final = (100, 250, 1000, 2500)
_MOMENTA: Final = (None, 0.01, 0.001)
_MISSING: Final = object()
_ALGO_KNOBS: Final = {
    "ppo": ("n_epochs", "ent_coef"),
    "a2c": ("n_steps", "ent_coef"),
    "dqn": ("exploration_fraction", "target_update_interval"),
}
_VERSIONED: Final = ("sb3-regnorm", "stable-baselines3", "rl_zoo3", "optuna", "torch", "gymnasium", "minigrid", "numpy")


# ------------------------------------------------------------------------------------------ search space
def _algo_default(algo: str, key: str) -> Any:
    """SB3's default for a constructor argument, for entries that leave it unset (e.g. PPO LunarLander's lr)."""
    from rl_zoo3.utils import ALGOS

    return inspect.signature(ALGOS[algo].__init__).parameters[key].default


def _entry_value(algo: str, base: dict[str, Any], key: str) -> Any:
    """The entry's value for ``key``, or SB3's default."""
    return base[key] if key in base else _algo_default(algo, key)


def _base_learning_rate(algo: str, base: dict[str, Any]) -> tuple[float, bool]:
    """(initial learning rate, is it a ``lin_`` schedule) of an entry."""
    value = _entry_value(algo, base, "learning_rate")
    if isinstance(value, str) and value.startswith("lin_"):
        return float(value.split("_", 1)[1]), True
    return float(value), False


def _choices(defaults: tuple[Any, ...], base: Any) -> list[Any]:
    """Categorical choices that always contain the entry's own value (so the entry itself is a point of the space)."""
    values = list(defaults)
    if base not in values:
        values.append(base)
    return sorted(values, key=lambda v: (v is not None, v if v is not None else 0))


def _base_activation(algo: str, base: dict[str, Any]) -> str:
    """The entry's activation name (policy default: Tanh for actor-critic, ReLU for DQN)."""
    name = base.get("policy_kwargs", {}).get("activation_fn", "nn.ReLU" if algo == "dqn" else "nn.Tanh")
    return {v: k for k, v in ACTIVATIONS.items()}[name]


def base_params(algo: str, base: dict[str, Any], norm: str) -> dict[str, Any]:
    """The entry's own values as a point of the search space (enqueued as a new study's first trial)."""
    params: dict[str, Any] = {}
    if norm == "auto":
        params["norm"] = "rn"
    lr, _ = _base_learning_rate(algo, base)
    params["learning_rate"] = lr
    params["activation"] = _base_activation(algo, base)
    if norm in (*zoo.RN_NORMS, "auto"):
        params["momentum"] = base.get("policy_kwargs", {}).get("norm_kwargs", {}).get("momentum")
    for key in _ALGO_KNOBS[algo]:
        params[key] = _entry_value(algo, base, key)
    return params


def sample_params(trial: optuna.Trial, algo: str, base: dict[str, Any], norm: str) -> dict[str, Any]:
    """Sample one trial's values around the zoo entry ``base`` (see the module docstring for the space)."""
    params: dict[str, Any] = {}
    if norm == "auto":
        params["norm"] = trial.suggest_categorical("norm", list(zoo.RN_NORMS))
    lr, _ = _base_learning_rate(algo, base)
    params["learning_rate"] = trial.suggest_float("learning_rate", 0.3 * lr, 3.0 * lr, log=True)
    params["activation"] = trial.suggest_categorical("activation", list(ACTIVATIONS))
    if norm in (*zoo.RN_NORMS, "auto"):
        params["momentum"] = trial.suggest_categorical("momentum", list(_MOMENTA))
    if algo == "ppo":
        params["n_epochs"] = trial.suggest_categorical("n_epochs", _choices(_PPO_EPOCHS, _entry_value(algo, base, "n_epochs")))
        params["ent_coef"] = trial.suggest_categorical("ent_coef", _choices(_ENT_COEFS, _entry_value(algo, base, "ent_coef")))
    elif algo == "a2c":
        params["n_steps"] = trial.suggest_categorical("n_steps", _choices(_A2C_STEPS, _entry_value(algo, base, "n_steps")))
        params["ent_coef"] = trial.suggest_categorical("ent_coef", _choices(_ENT_COEFS, _entry_value(algo, base, "ent_coef")))
    else:
        fraction = float(_entry_value(algo, base, "exploration_fraction"))
        params["exploration_fraction"] = trial.suggest_float("exploration_fraction", min(0.05, fraction), max(0.5, fraction))
        params["target_update_interval"] = trial.suggest_categorical(
            "target_update_interval", _choices(_TARGET_UPDATES, _entry_value(algo, base, "target_update_interval"))
        )
    return params


def _round(value: float) -> float:
    """Three significant digits: what goes into the zoo is what the trial trained with."""
    return float(f"{value:.3g}")


def params_to_extra(algo: str, base: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
    """Sampled values as zoo overrides (rl_zoo3 keys, ``policy_kwargs`` merged by :func:`sb3_regnorm.zoo.raw_entry`)."""
    extra: dict[str, Any] = {}
    _, linear = _base_learning_rate(algo, base)
    if "learning_rate" in params:
        lr = _round(params["learning_rate"])
        extra["learning_rate"] = f"lin_{lr}" if linear else lr
    policy_kwargs: dict[str, Any] = {}
    if "activation" in params:
        policy_kwargs["activation_fn"] = ACTIVATIONS[params["activation"]]
    if params.get("momentum") is not None:
        policy_kwargs["norm_kwargs"] = {"momentum": params["momentum"]}
    if policy_kwargs:
        extra["policy_kwargs"] = policy_kwargs
    for key in _ALGO_KNOBS[algo]:
        if key in params:
            extra[key] = _round(params[key]) if isinstance(params[key], float) else params[key]
    return extra


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


def _make_eval_env(manager: Any, seed: int, n_envs: int) -> Any:
    """Fresh eval envs through rl_zoo3 (same wrappers as training) seeded ``seed, seed+1, ...``."""
    train_seed = manager.seed
    manager.seed = seed
    try:
        return manager.create_envs(n_envs, eval_env=True, no_log=True)
    finally:
        manager.seed = train_seed


# ------------------------------------------------------------------------------------------ objective
def _trial_config(args: argparse.Namespace, trial_dir: Path, norm: str, extra: dict[str, Any]) -> Path:
    """Write the trial's zoo entry (without the monitoring callback unless asked) as an rl_zoo3 YAML config."""
    hyperparams = zoo.entry(args.algo, args.env, norm, _merge_extra(args.fixed, extra))
    hyperparams["n_timesteps"] = args.n_timesteps
    if not args.keep_callbacks:
        hyperparams.pop("callback", None)
    trial_dir.mkdir(parents=True, exist_ok=True)
    path = trial_dir / "config.yml"
    path.write_text(yaml.safe_dump({args.env: hyperparams}, sort_keys=False, width=1000))
    return path


def _merge_extra(fixed: dict[str, Any], sampled: dict[str, Any]) -> dict[str, Any]:
    """Fixed ``--hp`` overrides, then sampled values (policy_kwargs merged)."""
    out = dict(fixed)
    for key, value in sampled.items():
        if key == "policy_kwargs":
            out["policy_kwargs"] = {**out.get("policy_kwargs", {}), **value}
        else:
            out[key] = value
    return out


def _objective(args: argparse.Namespace, base: dict[str, Any]) -> Any:
    """The optuna objective: build the trial's entry, train it with rl_zoo3's ExperimentManager, evaluate."""
    from rl_zoo3.exp_manager import ExperimentManager
    from stable_baselines3.common.evaluation import evaluate_policy

    def objective(trial: optuna.Trial) -> float:
        params = sample_params(trial, args.algo, base, args.norm)
        norm = params.pop("norm", args.norm)
        extra = params_to_extra(args.algo, base, params)
        train_seed = args.seed + trial.number
        eval_seed = args.seed + EVAL_SEED_OFFSET
        trial_dir = Path(args.log_folder) / args.study_name / f"trial_{trial.number}"
        config = _trial_config(args, trial_dir, norm, extra)
        trial.set_user_attr("norm", norm)
        trial.set_user_attr("train_seed", train_seed)
        trial.set_user_attr("eval_seed", eval_seed)
        trial.set_user_attr("zoo_overrides", extra)
        manager = ExperimentManager(
            args, args.algo, args.env, str(trial_dir), n_timesteps=args.n_timesteps, eval_freq=-1, seed=train_seed,
            config=str(config), verbose=0, device="cpu",
        )  # fmt: skip
        model, _ = manager.setup_experiment()

        def evaluate() -> float:
            env = _make_eval_env(manager, eval_seed, args.n_eval_envs)
            try:
                mean, std = evaluate_policy(
                    model, env, n_eval_episodes=args.eval_episodes, deterministic=manager.deterministic_eval, warn=False
                )
            finally:
                env.close()
            trial.set_user_attr("eval_std", float(std))
            return float(mean)

        eval_steps = [args.n_timesteps * k // args.n_evaluations for k in range(1, args.n_evaluations)]
        callback = TrialEvalCallback(evaluate, trial, eval_steps)
        start = time.perf_counter()
        try:
            model.learn(args.n_timesteps, callback=callback)
        finally:
            model.env.close()
        train_time = time.perf_counter() - start
        trial.set_user_attr("timesteps", int(model.num_timesteps))
        trial.set_user_attr("fps", round(model.num_timesteps / max(train_time, 1e-9)))
        if callback.pruned:
            trial.set_user_attr("intermediate", callback.values)
            raise optuna.TrialPruned(f"pruned after evaluation {len(callback.values)}: {callback.values[-1]:.3f}")
        value = evaluate()
        trial.set_user_attr("intermediate", [*callback.values, value])
        trial.report(value, step=args.n_evaluations)
        if not math.isfinite(value):
            raise ValueError(f"non-finite evaluation return {value}")
        return value

    return objective


# ------------------------------------------------------------------------------------------ summary
def _versions() -> dict[str, str]:
    """Package versions, for the study summary."""
    out = {"python": platform.python_version()}
    for name in _VERSIONED:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def _trial_row(trial: optuna.trial.FrozenTrial) -> dict[str, Any]:
    """One trial as plain JSON data."""
    duration = trial.duration.total_seconds() if trial.duration is not None else None
    return {
        "number": trial.number,
        "state": trial.state.name,
        "value": trial.value,
        "params": trial.params,
        "duration_s": round(duration, 1) if duration is not None else None,
        **{key: trial.user_attrs[key] for key in sorted(trial.user_attrs)},
    }


def changed_overrides(extra: dict[str, Any], entry: dict[str, Any]) -> dict[str, Any]:
    """The part of ``extra`` that changes ``entry`` (a raw zoo entry): what goes into :data:`sb3_regnorm.zoo.OVERRIDES`."""
    out: dict[str, Any] = {}
    for key, value in extra.items():
        if key == "policy_kwargs":
            old = entry.get("policy_kwargs", {})
            defaults = {"activation_fn": "nn.ReLU" if entry.get("policy", "").startswith("sb3_regnorm.RNDQN") else "nn.Tanh"}
            changed = {k: v for k, v in value.items() if old.get(k, defaults.get(k)) != v}
            if changed:
                out[key] = changed
        elif entry.get(key, _MISSING) != value:
            out[key] = value
    return out


def _summary(study: optuna.Study, meta: dict[str, Any]) -> dict[str, Any]:
    """The study summary: budget, seeds, trials, best value and params, wall time, versions, command."""
    trials = study.get_trials(deepcopy=False)
    finished = [t for t in trials if t.state.is_finished()]
    complete = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    best = max(complete, key=lambda t: t.value) if complete else None
    starts = [t.datetime_start for t in finished if t.datetime_start is not None]
    ends = [t.datetime_complete for t in finished if t.datetime_complete is not None]
    counts = {state.name: sum(t.state == state for t in trials) for state in optuna.trial.TrialState}
    return {
        **meta,
        "trials": {key: value for key, value in counts.items() if value},
        "best_value": best.value if best else None,
        "best_trial": best.number if best else None,
        "best_params": best.params if best else None,
        "zoo_overrides": changed_overrides(best.user_attrs.get("zoo_overrides", {}), meta.get("zoo_entry", {}))
        if best
        else None,
        "best_norm": best.user_attrs.get("norm") if best else None,
        "zoo_entry_value": complete[0].value if complete and complete[0].number == 0 else None,
        "trial_time_s": round(sum(t.duration.total_seconds() for t in finished if t.duration is not None), 1),
        "study_span_s": round((max(ends) - min(starts)).total_seconds(), 1) if starts and ends else 0.0,
        "trial_table": [_trial_row(t) for t in trials],
    }


def _fmt(value: Any) -> str:
    """Compact markdown cell text."""
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, dict):
        return ", ".join(f"{k}={_fmt(v)}" for k, v in value.items())
    return "-" if value is None else str(value)


def _markdown(summary: dict[str, Any]) -> str:
    """The summary as a markdown page: key facts, then one row per trial."""
    facts = [
        ("study", summary["study_name"]),
        ("algo / env / norm", f"{summary['algo']} / {summary['env']} / {summary['norm']}"),
        ("trials", _fmt(summary["trials"])),
        ("budget per trial", f"{summary['n_timesteps']} timesteps"),
        ("evaluation", summary["evaluation"]),
        ("best value", f"{_fmt(summary['best_value'])} (trial {_fmt(summary['best_trial'])})"),
        ("zoo entry (trial 0)", _fmt(summary["zoo_entry_value"])),
        ("best params", _fmt(summary["best_params"])),
        ("zoo overrides", f"`{json.dumps(summary['zoo_overrides'])}`"),
        ("seeds", summary["seeds"]),
        ("fixed overrides", f"`{json.dumps(summary['fixed'])}`"),
        ("wall time", f"{summary['study_span_s']:.0f} s (trials {summary['trial_time_s']:.0f} s)"),
        ("storage", f"`{summary['storage']}`"),
        ("versions", _fmt(summary["versions"])),
        ("command", f"`{summary['command']}`"),
    ]
    lines = [f"# Study {summary['study_name']}", "", "| | |", "|---|---|"]
    lines += [f"| {key} | {value} |" for key, value in facts]
    lines += [
        "",
        "| trial | state | value | params | train seed | intermediate | fps | time (s) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in summary["trial_table"]:
        cells = [row["number"], row["state"], _fmt(row["value"]), _fmt(row["params"]), row.get("train_seed")]
        cells += [", ".join(_fmt(v) for v in row.get("intermediate", [])), row.get("fps"), _fmt(row["duration_s"])]
        lines.append("| " + " | ".join(_fmt(c) if not isinstance(c, str) else c for c in cells) + " |")
    lines += ["", f"_{summary['protocol']}_", ""]
    return "\n".join(lines)


def write_summary(study: optuna.Study, meta: dict[str, Any], out_dir: str | Path) -> tuple[Path, Path]:
    """Write ``<out_dir>/<study name>.json`` and ``.md``; called after every trial so a killed study keeps its results."""
    summary = _summary(study, meta)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    json_path, md_path = out / f"{meta['study_name']}.json", out / f"{meta['study_name']}.md"
    json_path.write_text(json.dumps(summary, indent=2, default=str) + "\n")
    md_path.write_text(_markdown(summary))
    return json_path, md_path


# ------------------------------------------------------------------------------------------ study
def _storage(url: str) -> str:
    """Create the folder of a ``sqlite:///`` file; other RDB URLs (e.g. PostgreSQL) pass through unchanged."""
    if url.startswith("sqlite:///"):
        Path(url[len("sqlite:///") :]).parent.mkdir(parents=True, exist_ok=True)
    return url


def _meta(args: argparse.Namespace, command: str, base: dict[str, Any]) -> dict[str, Any]:
    """Facts about the study that do not come from the trials (``base``: the zoo entry the study starts from)."""
    return {
        "study_name": args.study_name,
        "algo": args.algo,
        "env": args.env,
        "norm": args.norm,
        "n_timesteps": args.n_timesteps,
        "evaluation": (
            f"{args.eval_episodes} episodes on {args.n_eval_envs} envs, {args.n_evaluations} evaluation(s) per trial, "
            f"{'stochastic' if args.env in zoo.MINIGRID_IDS else 'deterministic'} actions"
        ),
        "seeds": f"train {args.seed} + trial number; eval {args.seed + EVAL_SEED_OFFSET}",
        "fixed": args.fixed,
        "zoo_entry": base,
        "storage": args.storage,
        "versions": _versions(),
        "command": command,
        "updated": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "protocol": (
            f"Tuning seeds are >= {TUNING_SEED_MIN}; benchmark reports must use seeds 0..K-1 (K <= {TUNING_SEED_MIN}). "
            "One training seed per trial: the best value is a noisy, optimistic estimate."
        ),
    }


def run_study(args: argparse.Namespace) -> optuna.Study:
    """Create or resume the study, enqueue the zoo entry as its first trial, optimize, and write the summary."""
    entry_norm = "rn" if args.norm == "auto" else args.norm
    zoo.build_policy(zoo.load_entry(args.algo, args.env, entry_norm, zoo_dir=None))  # fail before any trial
    base = zoo.raw_entry(args.algo, args.env, entry_norm, args.fixed)
    sampler = optuna.samplers.TPESampler(n_startup_trials=args.n_startup_trials, seed=args.seed)
    pruner = (
        optuna.pruners.MedianPruner(n_startup_trials=args.n_startup_trials, n_warmup_steps=0)
        if args.n_evaluations > 1
        else optuna.pruners.NopPruner()
    )
    study = optuna.create_study(
        storage=_storage(args.storage),
        study_name=args.study_name,
        direction="maximize",
        sampler=sampler,
        pruner=pruner,
        load_if_exists=True,
    )
    if not study.get_trials(deepcopy=False):
        study.enqueue_trial(base_params(args.algo, base, args.norm))
    command = shlex.join(getattr(sys, "orig_argv", [sys.executable, *sys.argv]))
    meta = _meta(args, command, base)

    def on_trial_end(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        meta["updated"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
        write_summary(study, meta, args.summary_dir)
        print(f"[tune] trial {trial.number} {trial.state.name} value={trial.value} params={trial.params}", flush=True)

    study.optimize(
        _objective(args, base),
        n_trials=args.n_trials,
        timeout=args.timeout,
        catch=(ValueError, RuntimeError, AssertionError),
        callbacks=[on_trial_end],
        gc_after_trial=True,
    )
    write_summary(study, meta, args.summary_dir)
    return study


def _parse_fixed(items: list[str]) -> dict[str, Any]:
    """``--hp key=value`` pairs (YAML values) as fixed overrides of the zoo entry, e.g. ``gradient_steps=1``."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise SystemExit(f"--hp expects key=value, got {item!r}")
        out[key] = yaml.safe_load(value)
    return out


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m sb3_regnorm.tune", description=__doc__.split("\n\n")[0])
    parser.add_argument("--algo", required=True, choices=zoo.ALGOS)
    parser.add_argument("--env", required=True, help=f"one of {list(zoo.ENV_IDS)}")
    parser.add_argument("--norm", required=True, choices=[*NORMS, "auto"], help="auto: also sample the RN variant")
    parser.add_argument("--n-trials", type=int, default=8, help="trials to run in this invocation")
    parser.add_argument("--n-timesteps", type=int, required=True, help="training budget per trial")
    parser.add_argument("--storage", default=None, help="optuna RDB URL (default sqlite:///logs/tuning/<study>.db)")
    parser.add_argument("--study-name", default=None, help="default <algo>-<env>-<norm>")
    parser.add_argument("--seed", type=int, default=TUNING_SEED_MIN, help=f"first training seed (>= {TUNING_SEED_MIN})")
    parser.add_argument("--eval-episodes", type=int, default=10)
    parser.add_argument("--n-eval-envs", type=int, default=5)
    parser.add_argument("--n-evaluations", type=int, default=2, help="evaluations per trial (the last one is the objective)")
    parser.add_argument("--n-startup-trials", type=int, default=4, help="random trials before TPE, and before pruning")
    parser.add_argument("--timeout", type=float, default=None, help="start no new trial after this many seconds")
    parser.add_argument("--hp", dest="fixed_items", nargs="*", default=[], metavar="KEY=VALUE", help="fixed overrides")
    parser.add_argument("--keep-callbacks", action="store_true", help="keep the entry's RegularityCallback (slower)")
    parser.add_argument("--log-folder", default="logs/tuning", help="per-trial rl_zoo3 folders go under it")
    parser.add_argument("--summary-dir", default=str(zoo.DEFAULT_ZOO_DIR / "studies"))
    parser.add_argument("--num-threads", type=int, default=1, help="torch threads (1: the machine is shared)")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m sb3_regnorm.tune``."""
    args = _parser().parse_args(argv)
    if args.seed < TUNING_SEED_MIN:
        print(f"error: tuning seeds must be >= {TUNING_SEED_MIN} (seeds 0..K-1 are for reports)", file=sys.stderr)
        return 2
    if args.n_evaluations < 1 or args.n_trials < 1 or args.n_timesteps < 1:
        print("error: --n-evaluations, --n-trials and --n-timesteps must be >= 1", file=sys.stderr)
        return 2
    args.fixed = _parse_fixed(args.fixed_items)
    args.study_name = args.study_name or f"{args.algo}-{args.env}-{args.norm}"
    args.storage = args.storage or f"sqlite:///logs/tuning/{args.study_name}.db"
    import torch

    torch.set_num_threads(args.num_threads)
    try:
        study = run_study(args)
    except zoo.ZooError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    if complete:
        print(f"[tune] best value {study.best_value:.4g} with {study.best_params}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
