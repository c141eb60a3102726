"""Confirmation runs (``sb3-regnorm confirm``) and the committed ``zoo/studies/confirmations.json`` behind the README."""

from __future__ import annotations

import json
import math
from pathlib import Path

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
    assert saved["evaluation"].endswith("deterministic actions") and saved["tuned"]
    again = ConfirmSettings("a2c", zoo.LUNAR_LANDER, "rn", seeds=(2,), eval_episodes=1, n_eval_envs=1,
                            log_folder=tmp_path / "logs", out=out, n_timesteps=80)  # fmt: skip
    confirm.confirm(again)  # completes the record: seeds 0 and 1 are kept
    (saved,) = [r for r in confirm.load_records(out) if r["algo"] == "a2c"]
    assert saved["seeds"] == [0, 1, 2] and saved["returns"][:2] == record["returns"]
    assert saved["command"].endswith("--norm rn --seeds 0 1 2")
    stale = [{**r, "entry": {**r["entry"], "gamma": 0.5}} if r["algo"] == "a2c" else r for r in confirm.load_records(out)]
    out.write_text(json.dumps(stale))  # as if the zoo entry had changed since
    confirm.confirm(again)
    (saved,) = [r for r in confirm.load_records(out) if r["algo"] == "a2c"]
    assert saved["seeds"] == [2]  # a stale record starts over


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
