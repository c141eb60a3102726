"""Train and evaluate one zoo entry through rl_zoo3's own ``ExperimentManager``, with the entry given as Python values.

Why a subclass: ``ExperimentManager`` reads its hyperparameters from a file (``-conf``) and only *updates* them with
custom values, so a key the caller removed (e.g. the monitoring callback) would come back from the file. Here the
entry dict *is* the configuration: no YAML written per run, no Python-source strings ``eval``'d back into objects.
Everything after reading (schedules, wrappers, callbacks, env creation, the model) is rl_zoo3's unchanged code.
"""

from __future__ import annotations

import argparse
import copy
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from rl_zoo3.exp_manager import ExperimentManager
from stable_baselines3.common.base_class import BaseAlgorithm

from sb3_regnorm import zoo
from sb3_regnorm._divergence import DIVERGENCE_ERRORS, TrainingDiverged
from sb3_regnorm.phase_clock import sync_phase, training_phase

__all__ = [
    "EVAL_SEED_OFFSET",
    "MONITORING_CALLBACKS",
    "EntryExperimentManager",
    "EvalSettings",
    "evaluate_model",
    "python_entry",
    "report_eval_settings",
    "setup_model",
    "train_and_score",
]

MONITORING_CALLBACKS: Final = zoo.MONITORING_CALLBACKS
"""Callbacks that only log (code length, probes, diagnostics): left out of tuning and confirmation runs."""
EVAL_SEED_OFFSET: Final = 100_000
"""Evaluation envs are seeded at ``EVAL_SEED_OFFSET`` and above: never a training seed (0..K-1 or tuning >= 1000)."""


def python_entry(entry: dict[str, Any], keep_callbacks: bool = True) -> dict[str, Any]:
    """A raw zoo entry (:func:`sb3_regnorm.zoo.raw_entry`) as the Python values rl_zoo3 hands to the model.

    ``policy_kwargs`` becomes real objects (``"nn.ReLU"`` -> ``torch.nn.ReLU``); without ``keep_callbacks`` the
    monitoring callbacks (:data:`MONITORING_CALLBACKS`) are dropped (they only log, and cost time) while any other
    callback (e.g. a non-stationary env's phase clock, which drives the env) stays.
    """
    out = copy.deepcopy(entry) if keep_callbacks else zoo.without_monitoring(entry)
    if "policy_kwargs" in out:
        out["policy_kwargs"] = zoo.policy_kwargs_objects(out["policy_kwargs"])
    return out


class EntryExperimentManager(ExperimentManager):
    """rl_zoo3's ``ExperimentManager`` whose hyperparameters are a given dict instead of a ``-conf`` file."""

    def __init__(self, entry: dict[str, Any], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._entry = copy.deepcopy(entry)

    def read_hyperparameters(self) -> tuple[dict[str, Any], dict[str, Any]]:
        hyperparams = copy.deepcopy(self._entry)
        return hyperparams, OrderedDict((key, copy.deepcopy(hyperparams[key])) for key in sorted(hyperparams))


def setup_model(
    algo: str, env_id: str, entry: dict[str, Any], seed: int, log_folder: str | Path, n_timesteps: int = 0
) -> tuple[BaseAlgorithm, EntryExperimentManager]:
    """Build the model of ``entry`` (Python values) exactly as ``rl_zoo3.train`` would, on CPU, without eval callbacks."""
    args = argparse.Namespace(algo=algo, env=env_id, seed=seed, n_timesteps=n_timesteps)  # saved to args.yml by rl_zoo3
    manager = EntryExperimentManager(
        entry, args=args, algo=algo, env_id=env_id, log_folder=str(log_folder), n_timesteps=n_timesteps, eval_freq=-1,
        seed=seed, verbose=0, device="cpu", log_interval=-1,
    )  # fmt: skip
    result = manager.setup_experiment()
    if result is None:  # only when rl_zoo3 itself optimizes hyperparameters, which we never ask for
        raise RuntimeError("rl_zoo3 returned no model")
    return result[0], manager


@dataclass(frozen=True)
class EvalSettings:
    """How a trained policy is scored: episodes, parallel envs, first env seed (stochastic for MiniGrid, as rl_zoo3)."""

    n_episodes: int
    n_envs: int
    seed: int


def evaluate_model(model: BaseAlgorithm, manager: ExperimentManager, settings: EvalSettings) -> tuple[float, float]:
    """(mean, std) return over fresh eval envs built by rl_zoo3 (same wrappers as training), seeded ``settings.seed+``."""
    from stable_baselines3.common.evaluation import evaluate_policy
    from stable_baselines3.common.vec_env import sync_envs_normalization

    train_seed = manager.seed
    manager.seed = settings.seed
    try:
        env = manager.create_envs(settings.n_envs, eval_env=True, no_log=True)
    finally:
        manager.seed = train_seed
    phase = training_phase(model)
    if phase is not None:  # non-stationary env: score the phase training is in (fresh envs would start at phase 0)
        sync_phase(env, phase=phase)
    train_env = model.get_env()
    if train_env is not None:  # an entry with ``normalize``: score with the training statistics, as EvalCallback does
        sync_envs_normalization(train_env, env)
    try:
        result = evaluate_policy(
            model, env, n_eval_episodes=settings.n_episodes, deterministic=manager.deterministic_eval, warn=False
        )
    finally:
        env.close()
    # SB3 annotates one return type for both modes; without return_episode_rewards it is (mean, std) of floats.
    mean, std = result
    assert isinstance(mean, float) and isinstance(std, float), result
    return float(mean), float(std)


def report_eval_settings(env_id: str, seed: int, n_episodes: int = 0, n_envs: int = 5) -> EvalSettings:
    """How reported runs (training seeds 0..K-1) are scored: 50 episodes for MiniGrid (short, 0-1 returns), 20
    otherwise, on envs seeded ``EVAL_SEED_OFFSET + 100 * seed`` (disjoint from every training seed)."""
    return EvalSettings(n_episodes or (50 if env_id in zoo.MINIGRID_IDS else 20), n_envs, EVAL_SEED_OFFSET + 100 * seed)


def train_and_score(
    algo: str, env_id: str, entry: dict[str, Any], seed: int, log_folder: str | Path, settings: EvalSettings
) -> tuple[float, float]:
    """Train a raw zoo entry (without its monitoring callback) for its ``n_timesteps`` on ``seed``; (mean, std) return.

    Raises :class:`sb3_regnorm._divergence.TrainingDiverged` when the agent diverges while training."""
    model, manager = setup_model(algo, env_id, python_entry(entry, keep_callbacks=False), seed, log_folder)
    try:
        model.learn(int(entry["n_timesteps"]), callback=manager.callbacks or None)
    except DIVERGENCE_ERRORS as exc:  # the agent blew up: the caller records it (a configuration error fails earlier)
        raise TrainingDiverged(exc, int(model.num_timesteps)) from exc
    finally:
        if model.env is not None:
            model.env.close()
    return evaluate_model(model, manager, settings)
