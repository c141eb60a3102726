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
from sb3_regnorm.nets import NORMS

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


def test_missing_trains_only_the_seeds_the_current_record_lacks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--missing`` resumes a confirmation killed after some seeds, and retrains everything for a changed entry."""
    from sb3_regnorm import training

    trained: list[int] = []

    def fake_train(algo: str, env_id: str, entry: dict[str, Any], seed: int, *args: Any) -> tuple[float, float]:
        trained.append(seed)
        return 10.0 * seed + len(trained), 1.0  # a new value each time: a retrained seed would show

    monkeypatch.setattr(training, "train_and_score", fake_train)
    out = tmp_path / "c.json"
    flags = ["--algo", "a2c", "--env", zoo.LUNAR_LANDER, "--norm", "rn", "--n-timesteps", "80", "--eval-episodes", "1",
             "--n-eval-envs", "1", "--out", str(out), "--log-folder", str(tmp_path / "logs")]  # fmt: skip
    assert confirm.main([*flags, "--seeds", "0"]) == 0
    assert confirm.main([*flags, "--missing"]) == 0  # seed 0 is kept; 1 and 2 are trained
    assert trained == [0, 1, 2]
    (record,) = confirm.load_records(out)
    assert record["seeds"] == [0, 1, 2] and record["returns"] == [1.0, 12.0, 23.0]
    assert "seed(s) 0 already recorded" in capsys.readouterr().out
    assert confirm.main([*flags, "--missing"]) == 0  # nothing left: nothing trained, the record unchanged
    assert trained == [0, 1, 2] and confirm.load_records(out) == [record]
    assert "mean over seeds [0, 1, 2]: 12" in capsys.readouterr().out
    out.write_text(json.dumps([{**record, "entry": {**record["entry"], "gamma": 0.5}}]))  # the entry changed since
    assert confirm.main([*flags, "--missing", "--seeds", "1"]) == 0
    assert trained == [0, 1, 2, 1] and confirm.load_records(out)[0]["seeds"] == [1]
    with pytest.raises(SystemExit):  # --missing trains: it has no meaning with --from-campaign
        confirm.main(["--from-campaign", "x", "--missing", "--out", str(out)])


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
    assert table in _README.read_text(), "README zoo table is stale: run `sb3-regnorm confirm --table --write README.md`"


@pytest.mark.parametrize("key", sorted(zoo.GROWN_BUDGETS), ids="-".join)
def test_zoo_table_names_a_grown_budget_in_its_cell(key: tuple[str, str, str]) -> None:
    # the row gives the budget the norms share; an entry trained longer says so in its own cell, before the seeds
    norm, algo, env_id = key
    grown = confirm._steps(zoo.GROWN_BUDGETS[key][0])
    shared = zoo.raw_entry(algo, env_id, "none", tuned=False)["n_timesteps"]
    record = {"algo": algo, "env": env_id, "norm": norm, "n_timesteps": zoo.GROWN_BUDGETS[key][0], "seeds": [2],
              "returns": [0.5], "entry": confirm._comparable_entry(algo, env_id, norm)}  # fmt: skip
    for records, shown in (([], "-"), ([record], "0.5")):
        row = next(line for line in confirm.zoo_table(records).splitlines() if f"| {env_id} |" in line)
        cells = dict(zip(("algo", "env", "budget", *NORMS), (c.strip() for c in row.strip("|").split("|")), strict=True))
        if cells["algo"] != algo.upper():
            continue
        assert cells["budget"] == confirm._steps(shared)
        tuned = " T" if zoo.tuned_overrides(algo, env_id, norm) else ""
        seeds = "; seed 2" if records else ""
        assert cells[norm] == f"{shown}{tuned} (at {grown}{seeds})"
        assert all("(at " not in cells[other] for other in NORMS if (other, algo, env_id) not in zoo.GROWN_BUDGETS)


def _campaign_run(arm: str, norm: str, seed: int, **changes: Any) -> dict[str, Any]:
    """A runs.jsonl record of the shipped `lunarlander` campaign's A2C arm, as the runner writes it."""
    from sb3_regnorm.benchmark.campaign import load_campaign

    spec = next(s for s in load_campaign("lunarlander").runs() if (s.algo, s.arm, s.seed) == ("a2c", arm, seed))
    record = {
        "campaign": "lunarlander", "protocol": "zoo", "algo": "a2c", "env": zoo.LUNAR_LANDER, "norm": norm, "arm": arm,
        "seed": seed, "n_timesteps": spec.n_timesteps, "score": 1.0, "hyperparams": spec.hyperparams,
        "train_time_s": 40.0 + seed, "wall_time_s": 50.0, "curve": {"deterministic": True},
        "report_eval": {"mean": 10.0 * seed - 5, "std": 2.0, "episodes": 20, "n_envs": 5,
                        "first_seed": 100_000 + 100 * seed, "deterministic": True},
    }  # fmt: skip
    return {**record, **changes}


def _diverged_run(arm: str, norm: str, seed: int, during: str) -> dict[str, Any]:
    """A diverged run as `run_one` records it: no report_eval, no train_time_s."""
    run = _campaign_run(arm, norm, seed, n_timesteps=7, eval_time_s=8.0)
    del run["report_eval"], run["train_time_s"]
    return {**run, "score": None, "diverged": {"error": "FloatingPointError: x", "at_step": 7, "during": during}}


def test_campaign_runs_of_unchanged_entries_become_confirmations(tmp_path: Path) -> None:
    """`confirm --from-campaign`: only runs that trained the shipped entry at its budget and were scored as `confirm`
    scores count; the rest are named with the reason, and a later `confirm` seed keeps the campaign seeds' sources."""
    runs = [
        _campaign_run("none", "none", 0),
        _campaign_run("none", "none", 1),
        _diverged_run("none", "none", 2, "training"),
        _campaign_run("none", "none", 3),  # not a report seed of a confirmation (--seeds 0 1 2)
        _campaign_run("rn-tuned", "rn", 0),  # overrides: not the shipped entry
        _campaign_run("rn-tuned", "rn", 1),
        _campaign_run("ln", "ln", 0, report_eval=None),  # recorded before runs carried report_eval
        _campaign_run("ln", "ln", 1, report_eval={**_campaign_run("ln", "ln", 1)["report_eval"], "episodes": 10}),
        _campaign_run("rn", "rn", 0, n_timesteps=1000),  # stopped early
        _diverged_run("rn", "rn", 1, "evaluation"),  # `confirm` never scores mid-run: not its divergence
        _campaign_run("rln", "rln", 0, curve={"deterministic": False}),  # sampled from training's streams (old runner)
        {**_campaign_run("none", "none", 0), "protocol": "paper_dqn", "campaign": "paper", "arm": "paper"},  # no zoo entry
    ]
    path = tmp_path / "runs.jsonl"
    path.write_text("".join(json.dumps(run) + "\n" for run in runs))
    out = tmp_path / "confirmations.json"
    lines = confirm.confirm_from_campaign(path, out)
    assert [line.split(":")[0] for line in lines if line.startswith("recorded")] == [
        f"recorded lunarlander a2c {zoo.LUNAR_LANDER} none seed {s}" for s in (0, 1, 2)
    ]
    reasons = " | ".join(line for line in lines if line.startswith("skipped"))
    assert "rn-tuned seeds 0, 1: the arm is not the zoo's rn entry as shipped" in reasons  # one line per arm and reason
    assert "ln seed 0: recorded before runs were scored" in reasons and "ln seed 1: scored otherwise" in reasons
    assert "rn seed 0: trained 1000 of 200000 steps" in reasons and "seed 3" not in reasons
    assert "rn seed 1: diverged while evaluation" in reasons and "rln seed 0: its evaluations during training" in reasons
    assert lines[-1] == f"skipped 1 run(s) of paper a2c {zoo.LUNAR_LANDER} paper: not a zoo entry"
    (record,) = confirm.load_records(out)
    assert record == confirm.find_record([record], "a2c", zoo.LUNAR_LANDER, "none")  # the current entry's record
    assert record["seeds"] == [0, 1, 2] and record["returns"] == [-5.0, 5.0, None] and record["mean"] is None
    assert record["diverged"] == {"2": "FloatingPointError: x (at step 7)"} and record["train_s"] == [40.0, 41.0, 42.0]
    assert record["sources"]["1"] == {"runs": path.as_posix(), "campaign": "lunarlander", "arm": "none"}
    assert record["command"] == f"sb3-regnorm confirm --from-campaign {path.as_posix()}"
    # a seed trained by `confirm` itself replaces the campaign's seed 2 and names itself in the command
    fresh = confirm._fresh_record(ConfirmSettings("a2c", zoo.LUNAR_LANDER, "none"), record["n_timesteps"])
    merged = confirm._merge_seed(out, fresh, 2, (7.0, 1.0, 50.0, None))
    assert merged["returns"] == [-5.0, 5.0, 7.0] and merged["mean"] == round(7.0 / 3, 4) and "diverged" not in merged
    assert sorted(merged["sources"]) == ["0", "1"]
    assert merged["command"] == f"{fresh['command'].replace('{seeds}', '2')} && {record['command']}"  # reruns all three
    again = confirm.confirm_from_campaign(path, out)  # the campaign does not replace what `confirm` trained
    assert "none seed 2: trained by `confirm` itself (kept)" in " | ".join(again)
    assert confirm.load_records(out)[0]["returns"] == [-5.0, 5.0, 7.0]
    other = tmp_path / "other.jsonl"  # a second campaign with the same entry: the seeds recorded first stay
    other.write_text(json.dumps({**_campaign_run("none", "none", 0), "campaign": "mine"}) + "\n")
    assert confirm.confirm_from_campaign(other, out) == [
        f"skipped mine a2c {zoo.LUNAR_LANDER} none seed 0: already recorded from campaign lunarlander, arm none (kept)"
    ]


def test_confirm_from_campaign_cli_names_a_missing_campaign(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "sb3_regnorm", "confirm", "--from-campaign", "no-such", "--out", str(tmp_path / "c.json")],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 2 and "no-such: neither a runs.jsonl file nor a campaign" in proc.stderr
    assert not (tmp_path / "c.json").exists()
    (tmp_path / "runs.jsonl").write_text("")
    flagged = subprocess.run(
        [sys.executable, "-m", "sb3_regnorm", "confirm", "--from-campaign", "runs.jsonl", "--norm", "rn"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert flagged.returncode == 2 and "--from-campaign trains nothing: --norm would be ignored" in flagged.stderr
