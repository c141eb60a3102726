"""One training run -> one record: train with periodic evaluation on separate envs, then describe the run as JSON data.

Protocol ``zoo``: the arm's entry is trained by rl_zoo3's ``ExperimentManager`` (the same route as
``python -m sb3_regnorm.tune``, so wrappers, schedules and ``policy_kwargs`` mean what they mean in the zoo). The
policy is evaluated when training passes each of ``points`` evenly spaced steps (at rollout start, so PPO/A2C are
scored after their last update) on fresh eval envs seeded ``EVAL_SEED_BASE + 100 * seed + i``; actions are
deterministic except on MiniGrid (rl_zoo3's rule). **Score** = mean evaluation return over the evaluation points at or
after 90% of the training budget (with 20 points: the evaluations at 90%, 95% and 100%, 3 x ``episodes`` episodes).
The trained policy is also scored once more as ``sb3-regnorm confirm`` scores it (``report_eval``: 20 episodes, 50 on
MiniGrid, on envs seeded ``EVAL_SEED_OFFSET + 100 * seed``; its time counts in ``eval_time_s``), so that seeds 0-2 of
a zoo entry confirm it. Evaluations leave training's random streams untouched, so a run trains what ``confirm`` trains
for its seed however often it is evaluated.

Protocol ``paper_dqn``: :mod:`sb3_regnorm.benchmark.paper_dqn` (score = mean of the final 50 training episodes).

A run whose agent diverges (``FloatingPointError``, e.g. an RN overflow, or ``ValueError``, e.g. NaN logits, raised
while training or scoring; ``diverged.during`` says which) is recorded with ``score: null`` and a ``diverged`` entry
instead of being dropped: a seed diverges
again on every retry, and dropping it would leave only an arm's surviving runs in the statistics (the report counts it
as the worst run of its task). Any other error is not recorded, so the next invocation retries the run.
"""

from __future__ import annotations

import copy
import os
import random
import socket
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from sb3_regnorm._divergence import DIVERGENCE_ERRORS, TrainingDiverged
from sb3_regnorm._versions import package_versions, source_revision
from sb3_regnorm.benchmark.campaign import EVAL_SEED_BASE, RunSpec

if TYPE_CHECKING:
    from rl_zoo3.exp_manager import ExperimentManager
    from stable_baselines3.common.base_class import BaseAlgorithm

__all__ = ["FINAL_FRACTION", "eval_seed", "run_one", "versions"]

FINAL_FRACTION: Final = 0.9
"""The score averages the evaluations at or after this fraction of the training budget."""
_VERSIONED: Final = ("sb3-regnorm", "stable-baselines3", "rl_zoo3", "torch", "gymnasium", "minigrid", "numpy")


def eval_seed(seed: int) -> int:
    """The first evaluation env seed of a run with training seed ``seed`` (eval env ``i`` gets this + i)."""
    return EVAL_SEED_BASE + 100 * seed


def versions() -> dict[str, str]:
    """Python and package versions and the commit of this package's code (``sb3-regnorm-commit``), recorded with
    every run."""
    return {**package_versions(_VERSIONED), "sb3-regnorm-commit": source_revision()}


def _eval_steps(n_timesteps: int, points: int) -> list[int]:
    """``points`` evenly spaced evaluation steps, the last one at the end of training."""
    return [n_timesteps * k // points for k in range(1, points + 1)]


def _periodic_eval_callback(evaluate: Callable[[int], None], eval_steps: list[int]) -> Any:
    """An SB3 callback that calls ``evaluate(num_timesteps)`` once training passes each step (at rollout start)."""
    from stable_baselines3.common.callbacks import BaseCallback

    class PeriodicEval(BaseCallback):
        """Evaluate at rollout start once ``num_timesteps`` passes the next point (after the last update)."""

        def __init__(self) -> None:
            super().__init__()
            self.pending = sorted(eval_steps)

        def _on_rollout_start(self) -> None:
            if self.pending and self.num_timesteps >= self.pending[0]:
                while self.pending and self.num_timesteps >= self.pending[0]:
                    self.pending.pop(0)
                evaluate(self.num_timesteps)

        def _on_step(self) -> bool:
            return True

    return PeriodicEval()


def _sync_eval_phase(model: Any, callbacks: list[Any], env: Any) -> tuple[int | None, int | None]:
    """Put fresh eval envs of a non-stationary env id in the phase training is in.

    Returns (phase, switches so far); (None, None) for a stationary env. Phases cycle, so the switch count tells the
    segments of the schedule apart.
    """
    try:
        from sb3_regnorm.phase_clock import PhaseClockCallback, sync_phase, training_phase
    except ImportError:  # a package version without the agent's phase clock
        return None, None
    clock = next((cb for cb in callbacks if isinstance(cb, PhaseClockCallback)), None)
    phase = clock.phase if clock is not None else training_phase(model)
    if phase is None:
        return None, None
    return sync_phase(env, phase=phase), (clock.switches if clock is not None else None)


@contextmanager
def _training_rng_untouched(model: BaseAlgorithm) -> Iterator[None]:
    """Leave every random stream training draws from as it was (torch, numpy, ``random``, the action space's).

    Why: an evaluation with sampled actions (MiniGrid) draws from the global torch generator (DQN: numpy and the action
    space), so without this a run's training would depend on how often it was evaluated, and would not be the run
    ``sb3-regnorm confirm`` trains for the same seed."""
    import numpy as np
    import torch

    np_state, py_state = np.random.get_state(), random.getstate()
    space_rng = getattr(model.action_space, "_np_random", None)  # not .np_random: that would create and seed one
    space_state = copy.deepcopy(space_rng.bit_generator.state) if space_rng is not None else None
    with torch.random.fork_rng(devices=[]):
        try:
            yield
        finally:
            np.random.set_state(np_state)
            random.setstate(py_state)
            if space_rng is not None:
                space_rng.bit_generator.state = space_state


def _report_evaluation(model: BaseAlgorithm, manager: ExperimentManager, spec: RunSpec) -> dict[str, Any]:
    """Score the trained policy as ``sb3-regnorm confirm`` does (its episodes, envs and eval seeds), so that a campaign
    run of an unchanged zoo entry on seeds 0-2 doubles as that entry's confirmation (``confirm --from-campaign``)."""
    from sb3_regnorm.training import evaluate_model, report_eval_settings

    settings = report_eval_settings(spec.env, spec.seed)
    mean, std = evaluate_model(model, manager, settings)
    return {
        "mean": mean,
        "std": std,
        "episodes": settings.n_episodes,
        "n_envs": settings.n_envs,
        "first_seed": settings.seed,
        "deterministic": bool(manager.deterministic_eval),
        "training_rng_untouched": True,  # evaluations during training did not move its random streams
    }


def _run_zoo(spec: RunSpec, workdir: Path) -> dict[str, Any]:
    """Train the arm's entry through rl_zoo3's ExperimentManager with periodic evaluation; return the results."""
    import numpy as np
    from stable_baselines3.common.evaluation import evaluate_policy

    from sb3_regnorm.training import python_entry, setup_model

    # the entry as Python values, as tuning and confirmation runs get it (no YAML, no Python source strings)
    model, manager = setup_model(spec.algo, spec.env, python_entry(spec.hyperparams), spec.seed, workdir)
    n_timesteps = int(spec.hyperparams["n_timesteps"])
    deterministic = manager.deterministic_eval if spec.eval["deterministic"] == "auto" else bool(spec.eval["deterministic"])
    n_envs, episodes = int(spec.eval["n_envs"]), int(spec.eval["episodes"])
    curve: dict[str, list[Any]] = {"steps": [], "returns": [], "std": [], "phase": [], "switches": []}
    eval_time = [0.0]
    scoring = [False]  # a divergence raised while scoring is not one of training (`confirm` never scores mid-run)

    def evaluate(step: int) -> None:
        with _training_rng_untouched(model):
            scoring[0] = True
            _evaluate(step)
            scoring[0] = False

    def _evaluate(step: int) -> None:
        t0 = time.perf_counter()
        train_seed = manager.seed
        manager.seed = eval_seed(spec.seed)
        try:
            env = manager.create_envs(n_envs, eval_env=True, no_log=True)
        finally:
            manager.seed = train_seed
        try:
            phase, switches = _sync_eval_phase(model, manager.callbacks, env)
            returns, _ = evaluate_policy(
                model, env, n_eval_episodes=episodes, deterministic=deterministic, return_episode_rewards=True, warn=False
            )
        finally:
            env.close()
        # every list grows only once the evaluation succeeded: a run diverging inside it keeps a consistent curve
        curve["phase"].append(phase)
        curve["switches"].append(switches)
        curve["steps"].append(int(step))
        curve["returns"].append(float(np.mean(returns)))
        curve["std"].append(float(np.std(returns)))
        eval_time[0] += time.perf_counter() - t0

    steps = _eval_steps(n_timesteps, int(spec.eval["points"]))
    start = time.perf_counter()
    callbacks = [*manager.callbacks, _periodic_eval_callback(evaluate, steps[:-1])]  # the entry's (phase clock) first
    try:
        model.learn(n_timesteps, callback=callbacks)
        evaluate(int(model.num_timesteps))  # the last point: the trained policy
        t0 = time.perf_counter()
        scoring[0] = True
        report_eval = _report_evaluation(model, manager, spec)
        eval_time[0] += time.perf_counter() - t0
    except DIVERGENCE_ERRORS as exc:
        partial = {
            "curve": {**curve, "episodes": episodes, "deterministic": deterministic},
            "eval_time_s": eval_time[0],
            "during": "evaluation" if scoring[0] else "training",
        }
        raise TrainingDiverged(exc, int(model.num_timesteps), partial) from exc
    finally:
        if model.env is not None:
            model.env.close()
    wall = time.perf_counter() - start
    if all(p is None for p in curve["phase"]):
        del curve["phase"], curve["switches"]
    final = [r for s, r in zip(curve["steps"], curve["returns"], strict=False) if s >= FINAL_FRACTION * n_timesteps]
    return {
        "score": float(np.mean(final)),
        "score_definition": (
            f"mean evaluation return over the evaluations at or after {FINAL_FRACTION:.0%} of training "
            f"({len(final)} x {episodes} episodes, {'deterministic' if deterministic else 'stochastic'} actions)"
        ),
        "n_timesteps": int(model.num_timesteps),
        "curve": {**curve, "episodes": episodes, "deterministic": deterministic},
        "report_eval": report_eval,
        "train_time_s": wall - eval_time[0],
        "eval_time_s": eval_time[0],
    }


def _run_paper(spec: RunSpec) -> dict[str, Any]:
    """One run of the paper's DQN protocol."""
    from sb3_regnorm.benchmark.paper_dqn import run_paper_dqn

    settings = {k: v for k, v in spec.hyperparams.items() if k != "norm"}
    return run_paper_dqn(
        spec.norm, spec.seed, settings, int(spec.eval["points"]), int(spec.eval["episodes"]), eval_seed(spec.seed)
    )


def run_one(spec: RunSpec, num_threads: int = 1) -> dict[str, Any]:
    """Run ``spec`` in this process (one torch thread by default) and return its record for ``runs.jsonl``."""
    os.environ.setdefault("OMP_NUM_THREADS", str(num_threads))
    import torch

    torch.set_num_threads(num_threads)
    started = datetime.now(timezone.utc)
    # Read before training: a commit or checkout during a 30-minute run must not relabel the code that ran.
    run_versions = versions()
    t0 = time.perf_counter()
    try:
        if spec.protocol == "paper_dqn":
            result = _run_paper(spec)
        else:
            with tempfile.TemporaryDirectory(prefix=f"bench-{spec.campaign}-") as tmp:
                result = _run_zoo(spec, Path(tmp))
    except TrainingDiverged as exc:
        during = exc.partial.pop("during", "training")
        result = {
            "n_timesteps": exc.at_step,
            "score": None,
            "diverged": {"error": exc.error, "at_step": exc.at_step, "during": during},
            "eval_time_s": 0.0,
            **exc.partial,
        }
    wall = time.perf_counter() - t0
    record: dict[str, Any] = {
        "campaign": spec.campaign,
        "protocol": spec.protocol,
        "algo": spec.algo,
        "env": spec.env,
        "norm": spec.norm,
        "arm": spec.arm,
        "seed": spec.seed,
        "eval_seed": eval_seed(spec.seed),
        "n_timesteps": result.pop("n_timesteps"),
        "score": result.pop("score"),
        **result,
        "wall_time_s": round(wall, 2),
        "eval_fraction": round(result["eval_time_s"] / max(wall, 1e-9), 4),
        "hyperparams": spec.hyperparams,
        "eval": spec.eval,
        "config_hash": spec.config_hash(),
        "versions": run_versions,
        "host": socket.gethostname(),
        "torch_threads": num_threads,
        "started": started.isoformat(timespec="seconds"),
        "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    return record
