"""The agent's clock for the non-stationary envs: one SB3 callback that decides every env's phase.

Why a callback: a phase must be a function of the agent's total timesteps (``model.num_timesteps``, summed over the
sub-envs), not of each sub-env's own step counter, or ``n_envs`` would divide the switch rate. SB3 saves
``num_timesteps`` with the model, so ``Algo.load(...)`` + ``learn(..., reset_num_timesteps=False)`` continues the
schedule on time with nothing else to save. (rl_zoo3's ``-i`` calls ``learn()`` with the default
``reset_num_timesteps=True``, which restarts ``num_timesteps`` and so every time-based schedule, this one included.)

:class:`PhaseClockCallback` (wired into the zoo's non-stationary entries through ``callback:``)

* reads the :class:`~sb3_regnorm.envs.PhaseSchedule` from the training envs (all sub-envs must agree) and, when the
  switch count ``num_timesteps // switch_every`` changes, pushes ``set_agent_timesteps`` into every sub-env with
  ``VecEnv.env_method`` (once per switch, not per step). The vectorized step that starts at agent timestep ``t`` runs
  under phase ``t // switch_every``; with ``switch_every`` a multiple of ``n_envs`` the switches fall exactly on
  ``k * switch_every`` for every algorithm;
* pushes the same phase (``set_phase``) into the eval envs of every ``EvalCallback`` in the same ``learn()`` call
  (rl_zoo3's included; keep this callback before them in the list, as rl_zoo3's ``callback:`` entries are), or holds
  them at ``eval_phase`` when given. Agent-clock envs never advance themselves, so evaluation episodes move no
  schedule. The phase, not the timestep, is pushed because rl_zoo3 hands a YAML ``env_kwargs`` to the training envs
  only (its eval envs get ``--env-kwargs``/``--eval-env-kwargs``), so an eval env's ``switch_every`` may differ;
* logs ``env/phase`` to the SB3 logger on every step (so each regular dump carries it) and writes it straight to
  TensorBoard at the exact timestep of each change and at training start;
* refuses envs on their own clock (``clock="env"``) and sub-envs with different schedules, loudly.

Public state for other tools (e.g. per-phase returns): ``phase``, ``switches``, ``schedule`` and ``changes`` (the
``(timestep, phase)`` pairs it applied, training start included). :func:`sync_phase` puts any env or VecEnv (e.g. a
tuner's fresh eval envs) at the phase of a given agent timestep or at a named phase; :func:`training_phase` reads the
phase a model's training envs are in.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator
from typing import Any, Final

import gymnasium as gym
import numpy as np
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback, CallbackList, EvalCallback, EventCallback
from stable_baselines3.common.logger import TensorBoardOutputFormat
from stable_baselines3.common.vec_env import VecEnv

from sb3_regnorm.envs.schedule import PhaseSchedule, check_count

__all__ = ["PHASE_TAG", "PhaseClockCallback", "read_schedule", "sync_phase", "training_phase"]

PHASE_TAG: Final = "env/phase"
"""TensorBoard/logger key of the current phase."""


def read_schedule(env: VecEnv | gym.Env) -> PhaseSchedule | None:
    """The common schedule of an env or VecEnv's sub-envs; ``None`` if it has no phases; ``ValueError`` if they differ."""
    if isinstance(env, VecEnv):
        if not env.has_attr("schedule"):  # asked first: a SubprocVecEnv worker dies on a missing attribute
            return None
        schedules = env.get_attr("schedule")
        clocks = env.get_attr("clock")
    else:
        try:
            schedules = [env.get_wrapper_attr("schedule")]
            clocks = [env.get_wrapper_attr("clock")]
        except AttributeError:
            return None
    if not all(isinstance(s, PhaseSchedule) for s in schedules):
        return None
    if any(s != schedules[0] for s in schedules):
        raise ValueError(f"sub-envs disagree on the phase schedule: {sorted(set(map(str, schedules)))}")
    if any(c != "agent" for c in clocks):
        raise ValueError(
            "an env runs on its own clock (clock='env'): inside a VecEnv each sub-env would count only its own steps, "
            "so n_envs would divide the switch rate. Make the envs with clock='agent' (the default)."
        )
    return schedules[0]


def sync_phase(env: VecEnv | gym.Env, timesteps: int | None = None, *, phase: int | None = None) -> int | None:
    """Put an env or every sub-env of a VecEnv at the phase of agent timestep ``timesteps``, or at ``phase``.

    Why: fresh evaluation envs (the tuner's, a benchmark's) must score the phase training is in. Returns the phase, or
    ``None`` for an env without phases (nothing to do).
    """
    if (timesteps is None) == (phase is None):
        raise ValueError("give exactly one of timesteps (agent timesteps) or phase")
    schedule = read_schedule(env)
    if schedule is None:
        return None
    method, value = ("set_agent_timesteps", timesteps) if timesteps is not None else ("set_phase", phase)
    results = env.env_method(method, value) if isinstance(env, VecEnv) else [env.get_wrapper_attr(method)(value)]
    return int(results[0])


def training_phase(model: BaseAlgorithm) -> int | None:
    """The phase a model's training envs are in (``None`` without phases, or before the clock set them).

    Why: an evaluation helper pairs it with :func:`sync_phase` (``phase=``) to score the training phase on fresh envs,
    whatever ``switch_every`` those envs were made with.
    """
    env = model.get_env()
    if env is None or read_schedule(env) is None:
        return None
    switches = env.get_attr("switches")
    return None if switches[0] is None else int(env.get_attr("phase")[0])


def _walk(callback: BaseCallback) -> Iterator[BaseCallback]:
    """Every callback reachable from ``callback`` (lists, event children, ``callback_on_new_best``), depth first."""
    yield callback
    children: list[BaseCallback] = []
    if isinstance(callback, CallbackList):
        children = list(callback.callbacks)
    elif isinstance(callback, EventCallback) and callback.callback is not None:
        children = [callback.callback]
    extra = getattr(callback, "callback_on_new_best", None)
    if isinstance(extra, BaseCallback):
        children.append(extra)
    for child in children:
        yield from _walk(child)


class PhaseClockCallback(BaseCallback):
    """Drive the non-stationary envs' phases from ``model.num_timesteps`` (see the module docstring).

    :param eval_phase: hold evaluation envs at this phase instead of following training.
    :param verbose: 1 prints each switch.
    """

    def __init__(self, eval_phase: int | None = None, verbose: int = 0) -> None:
        super().__init__(verbose)
        self.eval_phase = None if eval_phase is None else check_count(eval_phase, "eval_phase")
        self.schedule: PhaseSchedule | None = None
        self.switches: int | None = None
        self.changes: list[tuple[int, int]] = []
        self._eval_envs: list[VecEnv] = []
        self._writer: Any = None
        self._stop_at = math.inf

    @property
    def phase(self) -> int | None:
        """The phase training is in (``None`` before training starts or without a non-stationary env)."""
        return None if self.schedule is None or self.switches is None else self.schedule.phase_of(self.switches)

    # ------------------------------------------------------------------ SB3 hooks
    def _on_training_start(self) -> None:
        # learn()'s own total_timesteps, as SB3's ProgressBarCallback reads it: the timestep this call stops at
        # (already including num_timesteps when learn() resumes with reset_num_timesteps=False).
        total = self.locals.get("total_timesteps")
        self._stop_at = float(total) if isinstance(total, int) and total > 0 else math.inf
        self.schedule = read_schedule(self.training_env)
        if self.schedule is None:
            return
        if self.eval_phase is not None and self.schedule.n_phases is not None and self.eval_phase >= self.schedule.n_phases:
            raise ValueError(f"eval_phase must be < {self.schedule.n_phases}, got {self.eval_phase}")
        self._eval_envs = self._find_eval_envs()
        for eval_env in self._eval_envs:
            eval_schedule = read_schedule(eval_env)
            if eval_schedule is None or eval_schedule.n_phases != self.schedule.n_phases:
                raise ValueError(f"eval env phases {eval_schedule} do not match training's {self.schedule}")
        self._writer = next((f.writer for f in self.logger.output_formats if isinstance(f, TensorBoardOutputFormat)), None)
        before = self.training_env.get_attr("phase")
        self.switches = None
        self._advance()
        if any(p != self.phase for p in before):
            self._restart_episodes()

    def _on_step(self) -> bool:
        if self.schedule is not None:
            # A switch is due at k * switch_every < the budget (PhaseSchedule.switch_timesteps): one that falls on the
            # last step, or inside the rollout that overshoots the budget, would open a phase no training happens in.
            if self.schedule.switches_at(self.num_timesteps) != self.switches and self.num_timesteps < self._stop_at:
                self._advance()
            self.logger.record(PHASE_TAG, self.phase)
        return True

    # ------------------------------------------------------------------ internals
    def _advance(self) -> None:
        """Apply the phase of ``num_timesteps`` to the training and eval envs, and log it at this timestep."""
        assert self.schedule is not None
        self.switches = self.schedule.switches_at(self.num_timesteps)
        self.training_env.env_method("set_agent_timesteps", self.num_timesteps)
        phase = self.phase
        assert phase is not None
        for eval_env in self._eval_envs:
            eval_env.env_method("set_phase", phase if self.eval_phase is None else self.eval_phase)
        self.changes.append((self.num_timesteps, phase))
        self.logger.record(PHASE_TAG, phase)
        if self._writer is not None:
            self._writer.add_scalar(PHASE_TAG, phase, self.num_timesteps)
            self._writer.flush()
        if self.verbose >= 1:
            print(f"[phase clock] timestep {self.num_timesteps}: phase {phase} (switch {self.switches})")

    def _find_eval_envs(self) -> list[VecEnv]:
        """Eval envs of the ``EvalCallback`` s in this ``learn()`` call; warns if one would run before this callback."""
        root = self.locals.get("callback")
        if not isinstance(root, BaseCallback):
            return []
        order = list(_walk(root))
        mine = next((i for i, cb in enumerate(order) if cb is self), len(order))
        found = []
        for i, cb in enumerate(order):
            if isinstance(cb, EvalCallback) and read_schedule(cb.eval_env) is not None:
                if i < mine:
                    warnings.warn(
                        "an EvalCallback runs before PhaseClockCallback: an evaluation at a switch would use the previous "
                        "phase; put PhaseClockCallback first",
                        stacklevel=2,
                    )
                found.append(cb.eval_env)
        return found

    def _restart_episodes(self) -> None:
        """Reset the training envs so the first observations come from the clock's phase.

        Why: SB3 resets the envs in ``learn()`` before any callback runs, under the phase the envs were made in; after a
        resume in a fresh process that is phase 0, not the phase of the saved ``num_timesteps``.
        """
        model: Any = self.model
        model._last_obs = self.training_env.reset()
        model._last_episode_starts = np.ones((self.training_env.num_envs,), dtype=bool)
        vec_normalize = model.get_vec_normalize_env()
        if vec_normalize is not None:
            model._last_original_obs = vec_normalize.get_original_obs()
