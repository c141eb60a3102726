"""Confirmation runs (``sb3-regnorm confirm``) and the committed ``zoo/studies/confirmations.json`` behind the README."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

from sb3_regnorm import confirm, zoo
from sb3_regnorm.confirm import ConfirmSettings

torch.set_num_threads(1)

_COMMITTED = Path(__file__).resolve().parent.parent / "zoo" / "studies" / "confirmations.json"
_README = Path(__file__).resolve().parent.parent / "README.md"


def test_confirm_records_each_seed_and_replaces_its_record(tmp_path: Path) -> None:
    out = tmp_path / "confirmations.json"
    out.write_text(
        json.dumps([{"algo": "ppo", "env": "CartPole-v1", "norm": "rn", "n_timesteps": 1, "seeds": [], "returns": []}])
    )
    settings = ConfirmSettings("a2c", zoo.LUNAR_LANDER, "rn", seeds=(0, 1), eval_episodes=1, n_eval_envs=1,
                               log_folder=tmp_path / "logs", out=out, n_timesteps=80)  # fmt: skip
    record = confirm.confirm(settings)
    records = confirm.load_records(out)
    assert len(records) == 2  # the other record is kept
    (saved,) = [r for r in records if r["algo"] == "a2c"]
    assert saved == record
    assert saved["seeds"] == [0, 1] and len(saved["returns"]) == 2 and saved["n_timesteps"] == 80
    assert all(math.isfinite(value) for value in saved["returns"]) and len(set(saved["returns"])) == 2
    assert saved["evaluation"].endswith("deterministic actions")
    assert saved["tuned"] is bool(zoo.tuned_overrides("a2c", zoo.LUNAR_LANDER, "rn"))
    again = ConfirmSettings("a2c", zoo.LUNAR_LANDER, "rn", seeds=(2,), eval_episodes=1, n_eval_envs=1,
                            log_folder=tmp_path / "logs", out=out, n_timesteps=80)  # fmt: skip
    confirm.confirm(again)  # completes the record: seeds 0 and 1 are kept
    (saved,) = [r for r in confirm.load_records(out) if r["algo"] == "a2c"]
    assert saved["seeds"] == [0, 1, 2] and saved["returns"][:2] == record["returns"]
    assert saved["command"].endswith("--norm rn --n-timesteps 80 --eval-episodes 1 --n-eval-envs 1 --seeds 0 1 2")
    stale = [{**r, "entry": {**r["entry"], "gamma": 0.5}} if r["algo"] == "a2c" else r for r in confirm.load_records(out)]
    out.write_text(json.dumps(stale))  # as if the zoo entry had changed since
    confirm.confirm(again)
    (saved,) = [r for r in confirm.load_records(out) if r["algo"] == "a2c"]
    assert saved["seeds"] == [2]  # a stale record starts over


def test_confirmations_running_side_by_side_keep_each_others_seeds(tmp_path: Path) -> None:
    """`--seeds 0` and `--seeds 1` at once (one per core): each write merges into the current record under a lock."""
    out = tmp_path / "confirmations.json"
    cmd = [sys.executable, "-m", "sb3_regnorm", "confirm", "--algo", "a2c", "--env", zoo.LUNAR_LANDER, "--norm", "none",
           "--n-timesteps", "80", "--eval-episodes", "1", "--n-eval-envs", "1", "--out", str(out),
           "--log-folder", str(tmp_path / "logs")]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    procs = [subprocess.Popen([*cmd, "--seeds", str(seed)], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True, cwd=tmp_path) for seed in (0, 1)]  # fmt: skip
    for proc in procs:
        output, _ = proc.communicate(timeout=300)
        assert proc.returncode == 0, output
    (record,) = confirm.load_records(out)
    assert record["seeds"] == [0, 1] and len(record["returns"]) == 2 and record["mean"] is not None
    assert record["command"] == (
        f"sb3-regnorm confirm --algo a2c --env {zoo.LUNAR_LANDER} --norm none --n-timesteps 80 --eval-episodes 1 "
        "--n-eval-envs 1 --seeds 0 1"
    )
    assert not list(tmp_path.glob(".confirmations.json.*.tmp"))  # no temporary file left behind


def test_a_smoke_test_never_writes_the_committed_records(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # the default --out is relative to the working directory
    for flags in ({"n_timesteps": 80}, {"eval_episodes": 1}, {"n_eval_envs": 1}):
        settings = ConfirmSettings("a2c", zoo.LUNAR_LANDER, "rn", seeds=(0,), **flags)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="smoke test"):
            confirm.confirm(settings)
    assert not (tmp_path / confirm.DEFAULT_OUT).exists()


def test_a_diverged_seed_is_recorded_and_shown(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A diverged seed must not vanish from the mean (the survivors would look like the entry)."""
    from sb3_regnorm import training
    from sb3_regnorm._divergence import TrainingDiverged

    (tmp_path / "confirm_diverging_cb.py").write_text(
        "from stable_baselines3.common.callbacks import BaseCallback\n\n\nclass DivergeAt(BaseCallback):\n"
        "    def _on_step(self) -> bool:\n        if self.num_timesteps >= 40:\n"
        "            raise FloatingPointError('RegularityNorm output overflowed float32 (test)')\n        return True\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    real = training.train_and_score
    entry = {**zoo.raw_entry("a2c", zoo.LUNAR_LANDER, "rn"), "n_timesteps": 80, "callback": ["confirm_diverging_cb.DivergeAt"]}
    with pytest.raises(TrainingDiverged, match="FloatingPointError: RegularityNorm output overflowed") as info:
        real("a2c", zoo.LUNAR_LANDER, entry, 1, tmp_path / "logs", training.EvalSettings(1, 1, 100_100))
    assert 40 <= info.value.at_step < 80

    def diverge_on_seed_1(algo: str, env_id: str, entry: dict[str, Any], seed: int, *args: Any) -> tuple[float, float]:
        if seed == 1:
            raise info.value
        return real(algo, env_id, entry, seed, *args)

    monkeypatch.setattr(training, "train_and_score", diverge_on_seed_1)
    out = tmp_path / "c.json"
    settings = ConfirmSettings("a2c", zoo.LUNAR_LANDER, "rn", seeds=(0, 1), eval_episodes=1, n_eval_envs=1,
                               log_folder=tmp_path / "logs", out=out, n_timesteps=80)  # fmt: skip
    record = confirm.confirm(settings)
    assert record["returns"][0] is not None and record["returns"][1] is None and record["mean"] is None
    assert record["diverged"] == {"1": f"{info.value.error} (at step {info.value.at_step})"}
    assert confirm.load_records(out) == [record]


def test_confirm_refuses_tuning_seeds(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="tuning seeds"):
        confirm.confirm(ConfirmSettings("a2c", zoo.LUNAR_LANDER, "rn", seeds=(1000,), out=tmp_path / "c.json"))


def test_committed_confirmations_are_for_shipped_entries() -> None:
    records = confirm.load_records(_COMMITTED)
    assert records, "zoo/studies/confirmations.json is empty"
    for record in records:
        assert zoo.has_entry(record["algo"], record["env"]), record["env"]
        assert all(0 <= seed < 1000 for seed in record["seeds"])  # report seeds, never tuning seeds
        assert len(record["returns"]) == len(record["seeds"]) > 0
        current = confirm.find_record(records, record["algo"], record["env"], record["norm"])
        assert current is record, f"{record['algo']} {record['env']} {record['norm']}: the zoo entry changed since"


def test_readme_zoo_table_is_current() -> None:
    table = confirm.zoo_table(confirm.load_records(_COMMITTED))
    assert table in _README.read_text(), "README zoo table is stale: paste `sb3-regnorm confirm --table`"
