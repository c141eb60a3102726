"""What the three monitoring callbacks share: stamped writes, hooks that never outlive learn(), composition, cadence."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from stable_baselines3 import A2C, DQN, PPO
from stable_baselines3.common.callbacks import BaseCallback, CallbackList
from stable_baselines3.common.logger import configure

from sb3_regnorm import DiagnosticsCallback, RegularityCallback, RegularityProbeCallback, zoo
from sb3_regnorm._records import DEFAULT_POINTS, STEP_KEY, Cadence, write_records
from tests.monitoring_utils import column, make_model, read_csv, read_events, read_json, rn_policy_kwargs, steps_of

torch.set_num_threads(1)
PPO_KWARGS: dict[str, Any] = dict(n_steps=32, batch_size=32, n_epochs=1)


def no_hooks(model: Any) -> bool:
    return all(not m._forward_hooks for m in model.policy.modules())


# ---------------------------------------------------------------------------------------------- stamped writes
def test_write_records_stamps_every_format_and_leaves_sb3_values_alone(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    logger = configure(str(tmp_path), ["stdout", "csv", "json", "tensorboard"])
    capsys.readouterr()
    logger.record("train/loss", 0.5)  # a value SB3 recorded and will dump itself
    hist = torch.tensor([1.0, 2.0, 3.0])
    assert write_records(logger, 300, {"regnorm/pi.0/comp": 1.5, "regnorm/pi.0/mean": math.nan}, {"regnorm/pi.0/h": hist})
    assert dict(logger.name_to_value) == {"train/loss": 0.5}  # SB3's pending values are untouched
    assert capsys.readouterr().out == ""  # nothing for the stdout table
    logger.record(STEP_KEY, 400, exclude="tensorboard")  # SB3's own dump, as in dump_logs
    logger.dump(400)
    assert not write_records(logger, 500, {"regnorm/pi.0/mean": math.nan})  # nothing finite: no row at all
    logger.close()
    for rows in (read_csv(tmp_path / "progress.csv"), read_json(tmp_path / "progress.json")):
        assert len(rows) == 2
        assert column(rows, "regnorm/pi.0/comp") == [(300, 1.5)]
        assert column(rows, "train/loss") == [(400, 0.5)]
        assert all("regnorm/pi.0/h" not in row and "regnorm/pi.0/mean" not in row for row in rows)
    scalars, histograms = read_events(tmp_path)
    assert steps_of(scalars["regnorm/pi.0/comp"]) == [300] and steps_of(scalars["train/loss"]) == [400]
    assert histograms == ["regnorm/pi.0/h"] and STEP_KEY not in scalars


# ---------------------------------------------------------------------------------------------- hooks never left behind
class Boom(BaseCallback):
    """Raises ``error`` at the first step at or after ``at`` timesteps (another callback failing)."""

    def __init__(self, at: int, error: type[BaseException] = RuntimeError) -> None:
        super().__init__()
        self.at, self.error = at, error

    def _on_step(self) -> bool:
        if self.num_timesteps >= self.at:
            raise self.error("boom")
        return True


def test_exception_in_a_callback_leaves_no_hook_and_a_second_run_logs(tmp_path: Path) -> None:
    model = make_model(PPO, tmp_path, ("tensorboard", "csv"), policy_kwargs=rn_policy_kwargs("rn"), **PPO_KWARGS)
    first = RegularityCallback(probe=True, log_freq=1)
    for error in (RuntimeError, KeyboardInterrupt):
        with pytest.raises(error):
            model.learn(1000, callback=[first, Boom(200, error)])
        assert no_hooks(model)
    probes = dict(first.probes)
    updates = {name: float(p.running_updates) for name, p in probes.items()}
    model.predict(np.zeros((3, 4), dtype=np.float32))
    assert {name: float(p.running_updates) for name, p in probes.items()} == updates  # orphans never run

    second = RegularityCallback(probe=True, log_freq=1)
    model.learn(192, callback=second, reset_num_timesteps=False)
    assert no_hooks(model)
    assert {name: float(p.running_updates) for name, p in probes.items()} == updates
    start = model.num_timesteps - 192
    rows = read_csv(tmp_path / "progress.csv")
    assert [s for s, _ in column(rows, "regnorm/fe.2/code_length") if s > start] == [start + 128, start + 192]
    assert [s for s, _ in column(rows, "regnorm/pi.0/code_length") if s > start] == [start + 128, start + 192]


class TrainBomb(BaseCallback):
    """Makes the optimizer raise ``error`` in the second ``train()`` (e.g. Ctrl-C while the agent trains)."""

    def __init__(self, error: type[BaseException]) -> None:
        super().__init__()
        self.error = error
        self.rollouts = 0

    def _on_step(self) -> bool:
        return True

    def _on_rollout_end(self) -> None:
        self.rollouts += 1
        if self.rollouts == 2:
            optimizer = self.model.policy.optimizer

            def step(*args: Any, **kwargs: Any) -> None:
                del optimizer.step  # back to the class method for later runs
                raise self.error("boom")

            optimizer.step = step  # type: ignore[method-assign]


@pytest.mark.parametrize("error", [KeyboardInterrupt, ValueError])
def test_exception_inside_train_hooks_remove_themselves(error: type[BaseException]) -> None:
    """SB3 calls no callback when train() raises: the hooks go at the next eval forward, without doing anything."""
    model = make_model(A2C, policy_kwargs=rn_policy_kwargs("rn"), n_steps=8)
    probes = RegularityProbeCallback(log_freq=1)
    with pytest.raises(error):
        model.learn(1000, callback=[probes, RegularityCallback(log_freq=1), TrainBomb(error)])
    updates = {name: float(p.running_updates) for name, p in probes.probes.items()}
    with pytest.warns(UserWarning, match="outlived the train"):
        model.predict(np.zeros((2, 4), dtype=np.float32))
    assert no_hooks(model)
    model.learn(64, callback=None)  # a run without monitoring: the probes see nothing of it
    assert {name: float(p.running_updates) for name, p in probes.probes.items()} == updates


def test_a_new_callback_removes_stale_hooks_with_a_warning() -> None:
    model = make_model(A2C, n_steps=8)
    with pytest.raises(KeyboardInterrupt):
        model.learn(1000, callback=[RegularityProbeCallback(log_freq=1), TrainBomb(KeyboardInterrupt)])
    assert not no_hooks(model)  # still there: nothing ran on the policy since
    with pytest.warns(UserWarning, match="left on the policy by a learn"):
        model.learn(32, callback=RegularityProbeCallback(log_freq=1))
    assert no_hooks(model)


def test_hooks_exist_only_around_train() -> None:
    """Installed at rollout end, removed at the next rollout start: a rollout never runs with a hook."""
    seen: list[bool] = []

    class Watch(BaseCallback):
        def _on_step(self) -> bool:
            seen.append(no_hooks(self.model))
            return True

    model = make_model(DQN, learning_starts=16, train_freq=4)
    model.learn(64, callback=[RegularityProbeCallback(log_freq=8), Watch()])
    assert len(seen) == 64 and all(seen) and no_hooks(model)


# ---------------------------------------------------------------------------------------------- composition
def _monitor_series(path: Path) -> dict[str, list[tuple[int, float]]]:
    scalars, _ = read_events(path)
    return {
        tag: [(e.step, e.value) for e in events] for tag, events in scalars.items() if tag.startswith(("regnorm/", "diag/"))
    }


def test_each_callback_alone_in_a_list_and_via_the_shortcut_logs_the_same(tmp_path: Path) -> None:
    def run(name: str, callback: Any) -> dict[str, list[tuple[int, float]]]:
        make_model(PPO, tmp_path / name, **PPO_KWARGS).learn(256, callback=callback)
        return _monitor_series(tmp_path / name)

    def probe() -> RegularityProbeCallback:
        return RegularityProbeCallback(log_freq=64)

    def diag() -> DiagnosticsCallback:
        return DiagnosticsCallback(log_freq=64, batch_size=32)

    alone = {**run("probe", probe()), **run("diag", diag())}
    listed = run("list", CallbackList([probe(), diag()]))
    shortcut = run("shortcut", RegularityCallback(probe=True, log_freq=64, diagnostics_freq=64, diagnostics_batch_size=32))
    assert {tag.split("/")[0] for tag in alone} == {"regnorm", "diag"}
    assert listed == alone and shortcut == alone
    assert all(len(points) >= 3 for points in alone.values())


# ---------------------------------------------------------------------------------------------- cadence
def _logs(algo: str, hyperparams: dict[str, Any]) -> int:
    """Logs the default cadence writes over a zoo entry's budget, driving :class:`Cadence` as the callbacks do."""
    total = int(hyperparams["n_timesteps"])
    n_envs = int(hyperparams.get("n_envs", 1))
    on_policy = algo in ("ppo", "a2c")
    chunk = n_envs * int(hyperparams.get("n_steps", 2048 if algo == "ppo" else 5)) if on_policy else n_envs
    first_train = chunk if on_policy else int(hyperparams.get("learning_starts", 100)) + 1
    cadence = Cadence(None)
    cadence.start(0, total)
    logs, t = 0, 0
    while t < total:
        t += chunk
        logs += cadence.due(t) and t > first_train
    return logs


def test_default_cadence_gives_every_zoo_entry_a_curve() -> None:
    counts = {}
    for algo in zoo.ALGOS:
        for env_id in zoo.ENV_IDS:
            try:
                counts[(algo, env_id)] = _logs(algo, zoo.raw_entry(algo, env_id, "rn"))
            except zoo.ZooError:  # a combination the zoo does not ship
                continue
    assert min(counts.values()) >= 50, counts
    assert counts[("ppo", zoo.LUNAR_LANDER)] == 61  # the coarsest: 16 envs x 1024 steps per rollout over 1M steps
    assert max(counts.values()) <= DEFAULT_POINTS
    cadence = Cadence(None)
    assert cadence.start(5000, 9000) == 40  # continuing a run: 100 logs over the new steps
    assert not cadence.due(5039) and cadence.due(5040) and not cadence.due(5041)
