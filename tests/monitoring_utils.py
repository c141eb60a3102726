"""Helpers shared by the monitoring tests: a tiny RN network, model construction with chosen log formats, readers."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
from stable_baselines3 import DQN
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.logger import configure
from tensorboard.backend.event_processing import event_accumulator
from torch import nn

from sb3_regnorm import RegularityNorm

ENV_ID = "CartPole-v1"
RN_TAG_FIELDS = ("code_length", "comp", "mean", "std", "gain")


class RNExtractor(nn.Sequential):
    """Flatten -> Linear(obs, 16) -> RegularityNorm -> Tanh: an RN network for PPO, A2C and DQN alike."""

    def __init__(self, observation_space: gym.spaces.Box, variant: str = "rn") -> None:
        obs_dim = int(np.prod(observation_space.shape))
        super().__init__(nn.Flatten(), nn.Linear(obs_dim, 16), RegularityNorm(16, variant), nn.Tanh())
        self.features_dim = 16


def rn_policy_kwargs(variant: str) -> dict[str, Any]:
    return dict(features_extractor_class=RNExtractor, features_extractor_kwargs=dict(variant=variant), net_arch=[16])


def make_model(
    algo: type[BaseAlgorithm],
    log_dir: Path | None = None,
    formats: tuple[str, ...] = ("tensorboard",),
    n_envs: int | None = None,
    **kwargs: Any,
) -> BaseAlgorithm:
    """A CartPole model (seed 0) whose logger writes ``formats`` to ``log_dir`` (no logger change if ``log_dir`` is None)."""
    n_envs = n_envs if n_envs is not None else (1 if algo is DQN else 2)
    policy = kwargs.pop("policy", "MlpPolicy")
    model = algo(policy, make_vec_env(ENV_ID, n_envs=n_envs, seed=0), seed=0, **kwargs)
    if log_dir is not None:
        model.set_logger(configure(str(log_dir), list(formats)))
    return model


def read_events(run_dir: Path) -> tuple[dict[str, list[Any]], list[str]]:
    """All scalar events by tag and the histogram tags of one run, through TensorBoard's own reader."""
    acc = event_accumulator.EventAccumulator(
        str(run_dir), size_guidance={event_accumulator.SCALARS: 0, event_accumulator.HISTOGRAMS: 0}
    )
    acc.Reload()
    tags = acc.Tags()
    return {tag: acc.Scalars(tag) for tag in tags["scalars"]}, list(tags["histograms"])


def steps_of(events: list[Any]) -> list[int]:
    return [event.step for event in events]


def read_csv(path: Path) -> list[dict[str, float]]:
    """``progress.csv`` rows as dicts of floats (NaN for an empty cell)."""
    with path.open() as handle:
        return [{k: float(v) if v != "" else math.nan for k, v in row.items()} for row in csv.DictReader(handle)]


def read_json(path: Path) -> list[dict[str, Any]]:
    """``progress.json`` rows (one JSON object per line)."""
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def column(rows: list[dict[str, Any]], key: str) -> list[tuple[int, float]]:
    """``(time/total_timesteps, value)`` of every row that has a finite ``key``."""
    out = []
    for row in rows:
        value = row.get(key, math.nan)
        if value is not None and math.isfinite(value):
            out.append((int(row["time/total_timesteps"]), value))
    return out
