"""Tuning that never loses anything: resumed studies continue the sampler, failing trials are recorded, summaries stay
next to their storage until promoted. Every study here trains real agents through rl_zoo3 at a tiny budget."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import optuna
import pytest
import torch

from sb3_regnorm import tune, zoo
from sb3_regnorm.search_space import params_to_extra
from sb3_regnorm.tune import TuneConfig
from sb3_regnorm.tune import main as tune_main

torch.set_num_threads(1)
optuna.logging.set_verbosity(optuna.logging.WARNING)

# A2C on LunarLander: 8 envs x 5 steps = one update per 40 steps; one short deterministic evaluation episode.
_TINY = ["--algo", "a2c", "--env", zoo.LUNAR_LANDER, "--norm", "rn", "--n-timesteps", "40", "--n-evaluations", "1"]
_TINY += ["--eval-episodes", "1", "--n-eval-envs", "1", "--hp", "n_envs=8"]


def _argv(tmp_path: Path, n_trials: int, *extra: str) -> list[str]:
    storage = f"sqlite:///{tmp_path / 'tuning' / 'study.db'}"
    return [*_TINY, "--n-trials", str(n_trials), "--storage", storage, "--study-name", "tiny", *extra]


def _study(tmp_path: Path) -> optuna.Study:
    return optuna.load_study(study_name="tiny", storage=f"sqlite:///{tmp_path / 'tuning' / 'study.db'}")


def test_resumed_study_continues_the_sampler(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    for _ in range(3):  # one run, then resumed twice
        assert tune_main(_argv(tmp_path, 2)) == 0
    trials = _study(tmp_path).trials
    assert [t.number for t in trials] == list(range(6))  # no lost trials
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in trials)
    params = [tuple(sorted(t.params.items(), key=lambda kv: kv[0])) for t in trials]
    assert len(set(params)) == len(params), f"repeated parameters: {params}"
    assert trials[0].params["learning_rate"] == pytest.approx(0.00083)  # the zoo entry itself comes first
    assert [t.user_attrs["train_seed"] for t in trials] == list(range(1000, 1006))
    summary = json.loads((tmp_path / "tuning" / "tiny.json").read_text())
    assert [row["number"] for row in summary["trial_table"]] == list(range(6))


def test_several_seeds_per_trial_score_their_mean(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """--seeds-per-trial K: each trial trains K disjoint seeds and its value is the mean of their final returns."""
    monkeypatch.chdir(tmp_path)
    assert tune_main(_argv(tmp_path, 2, "--seeds-per-trial", "2")) == 0
    trials = _study(tmp_path).trials
    assert [t.user_attrs["train_seeds"] for t in trials] == [[1000, 11000], [1001, 11001]]  # env seeds never overlap
    for t in trials:
        finals = t.user_attrs["seed_values"]
        assert len(finals) == 2 and t.value == pytest.approx(sum(finals) / 2)
        assert t.user_attrs["intermediate"] == [finals[0]]  # the first seed's curve (the pruner's input)
        assert len(t.user_attrs["seed_fps"]) == len(t.user_attrs["seed_eval_std"]) == 2
    assert (tmp_path / "logs" / "tuning" / "tiny" / "trial_1" / "seed_11001").is_dir()
    summary = json.loads((tmp_path / "tuning" / "tiny.json").read_text())
    assert "2 training seeds per trial" in summary["protocol"] and "+ 10000 x j for j < 2" in summary["seeds"]
    assert "| 1001, 11001 |" in (tmp_path / "tuning" / "tiny.md").read_text()
    assert tune_main(_argv(tmp_path, 1, "--seeds-per-trial", "10")) == 2  # seeds would reach the eval seed ranges
    # resuming with one seed per trial would mix single- and multi-seed values in one study: refused
    assert tune_main(_argv(tmp_path, 1)) == 2


def test_a_failing_trial_is_recorded_and_the_study_goes_on(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = tune._train_trial

    def overflow_on_trial_1(config: TuneConfig, trial: optuna.Trial, entry: dict[str, Any], seeds: list[int]) -> float:
        if trial.number == 1:
            raise FloatingPointError("RegularityNorm: overflow in the normalizer")
        return real(config, trial, entry, seeds)

    monkeypatch.setattr(tune, "_train_trial", overflow_on_trial_1)
    monkeypatch.chdir(tmp_path)
    assert tune_main(_argv(tmp_path, 3)) == 0
    states = [t.state for t in _study(tmp_path).trials]
    assert states == [optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.FAIL, optuna.trial.TrialState.COMPLETE]
    summary = json.loads((tmp_path / "tuning" / "tiny.json").read_text())
    assert summary["trials"] == {"COMPLETE": 2, "FAIL": 1}
    failed = summary["trial_table"][1]
    assert failed["state"] == "FAIL" and failed["error"].startswith("FloatingPointError: RegularityNorm: overflow")
    assert "FloatingPointError" in (tmp_path / "tuning" / "tiny.md").read_text()


def _fake_training(monkeypatch: pytest.MonkeyPatch, fail: tuple[int, ...] = ()) -> None:
    """Study mechanics without training: a trial's value is its number (trials in ``fail`` raise like an RN overflow)."""

    def value(config: TuneConfig, trial: optuna.Trial, entry: dict[str, Any], seeds: list[int]) -> float:
        if trial.number in fail:
            raise FloatingPointError("RegularityNorm: overflow")
        return float(trial.number)

    monkeypatch.setattr(tune, "_train_trial", value)


def test_resuming_with_other_settings_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Trials of different budgets, evaluations or fixed values must not be compared in one study."""
    _fake_training(monkeypatch)
    monkeypatch.chdir(tmp_path)
    assert tune_main(_argv(tmp_path, 1)) == 0
    changed = [a if a != "40" else "80" for a in _argv(tmp_path, 1)]  # --n-timesteps 40 -> 80
    assert tune_main(changed) == 2
    err = capsys.readouterr().err
    assert "created with other settings (n_timesteps: stored 40, now 80)" in err
    assert tune_main([*_argv(tmp_path, 1), "--eval-episodes", "3"]) == 2
    assert tune_main(_argv(tmp_path, 1, "--hp", "n_envs=8", "gamma=0.9")) == 2
    assert len(_study(tmp_path).trials) == 1
    assert tune_main(_argv(tmp_path, 1)) == 0  # the study's own settings resume it
    assert len(_study(tmp_path).trials) == 2


def test_auto_study_overrides_are_relative_to_the_best_variant(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With --norm auto, adopting the best trial's overrides into its variant's entry must rebuild that trial's entry
    (PPO LunarLander: rn has tuned values that rnln's entry lacks, so diffing against rn's entry would drop some)."""
    calls: list[dict[str, Any]] = []

    def rnln_wins(config: TuneConfig, trial: optuna.Trial, entry: dict[str, Any], seeds: list[int]) -> float:
        calls.append(entry)
        return 1.0 if trial.user_attrs["norm"] == "rnln" else 0.0

    monkeypatch.setattr(tune, "_train_trial", rnln_wins)
    monkeypatch.chdir(tmp_path)
    storage = f"sqlite:///{tmp_path / 'tuning' / 'auto.db'}"
    argv = ["--algo", "ppo", "--env", zoo.LUNAR_LANDER, "--norm", "auto", "--n-timesteps", "64", "--n-trials", "8"]
    assert tune_main([*argv, "--storage", storage, "--study-name", "auto"]) == 0
    summary = json.loads((tmp_path / "tuning" / "auto.json").read_text())
    assert summary["best_norm"] == "rnln", "no rnln trial was sampled: pick another --seed for this test"
    best = next(t for t in optuna.load_study(study_name="auto", storage=storage).trials if t.number == summary["best_trial"])
    trained = zoo.raw_entry("ppo", zoo.LUNAR_LANDER, "rnln", best.user_attrs["zoo_overrides"])
    adopted = zoo.raw_entry("ppo", zoo.LUNAR_LANDER, "rnln", summary["zoo_overrides"])
    for entry in (trained, adopted):  # Tanh is the actor-critic default: naming it changes nothing
        if entry["policy_kwargs"].get("activation_fn") == "nn.Tanh":
            del entry["policy_kwargs"]["activation_fn"]
    assert adopted == trained
    assert set(summary["zoo_entries"]) == set(zoo.RN_NORMS)


def test_auto_overrides_keep_values_that_equal_rn_entry() -> None:
    """A best rnln trial that kept RN's tuned values must adopt them into rnln (whose entry lacks them)."""
    from sb3_regnorm import studies

    rn_tuned = zoo.tuned_overrides("ppo", zoo.LUNAR_LANDER, "rn")
    assert rn_tuned, "PPO LunarLander rn has tuned values (the premise of this test)"
    study = optuna.create_study(direction="maximize")
    study.add_trial(
        optuna.trial.create_trial(
            value=1.0, user_attrs={"norm": "rnln", "zoo_overrides": rn_tuned}, params={}, distributions={}
        )
    )
    meta = {
        "norm": "auto",
        "zoo_entry": zoo.raw_entry("ppo", zoo.LUNAR_LANDER, "rn"),
        "zoo_entries": {n: zoo.raw_entry("ppo", zoo.LUNAR_LANDER, n) for n in zoo.RN_NORMS},
    }
    overrides = studies.summary(study, meta)["zoo_overrides"]
    assert zoo.raw_entry("ppo", zoo.LUNAR_LANDER, "rnln", overrides) == zoo.raw_entry(
        "ppo", zoo.LUNAR_LANDER, "rnln", rn_tuned
    )


def test_a_trial_whose_process_died_is_marked_failed_on_resume(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A killed tuning process leaves its trial RUNNING; the heartbeat lets the resumed study mark it FAIL, with why."""
    import time

    _fake_training(monkeypatch)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(tune, "HEARTBEAT_S", 1)
    monkeypatch.setattr(tune, "HEARTBEAT_GRACE_S", 1)
    monkeypatch.setattr(tune, "_fail_orphans", lambda study: None)  # as for a shared (non-SQLite) storage: heartbeat only
    assert tune_main(_argv(tmp_path, 1)) == 0
    storage = tune._open_storage(f"sqlite:///{tmp_path / 'tuning' / 'study.db'}")
    with pytest.warns(UserWarning, match="Heartbeat"):  # ask() outside optimize(): what a killed process leaves
        orphan = optuna.load_study(study_name="tiny", storage=storage).ask()
    storage.record_heartbeat(orphan._trial_id)
    time.sleep(2.5)
    assert tune_main(_argv(tmp_path, 1)) == 0
    states = [t.state for t in _study(tmp_path).trials]
    assert states == [optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.FAIL, optuna.trial.TrialState.COMPLETE]
    summary = json.loads((tmp_path / "tuning" / "tiny.json").read_text())
    assert summary["trials"] == {"COMPLETE": 2, "FAIL": 1}
    assert "process was killed during the trial" in summary["trial_table"][1]["error"]


def test_a_trial_left_running_without_heartbeat_is_failed_under_the_lock(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A SQLite study runs in one process at a time, so a RUNNING trial found when it resumes is an orphan."""
    _fake_training(monkeypatch)
    monkeypatch.chdir(tmp_path)
    assert tune_main(_argv(tmp_path, 1)) == 0
    _study(tmp_path).ask()  # no heartbeat: what a process of an older version leaves when it is killed
    assert tune_main(_argv(tmp_path, 1)) == 0
    states = [t.state.name for t in _study(tmp_path).trials]
    assert states == ["COMPLETE", "FAIL", "COMPLETE"]
    summary = json.loads((tmp_path / "tuning" / "tiny.json").read_text())
    assert "process was killed during the trial" in summary["trial_table"][1]["error"]


def test_interrupted_and_pruned_trials_are_labelled_as_such(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Ctrl-C records why its trial failed; a pruned multi-seed trial is not a failure of its first seed."""

    def first_seed_pruned(config: TuneConfig, trial: optuna.Trial, entry: dict[str, Any], seed: int, folder: str,
                          prune: bool) -> float:  # fmt: skip
        if trial.number == 1:
            raise KeyboardInterrupt
        raise optuna.TrialPruned("pruned after evaluation 1")

    monkeypatch.setattr(tune, "_train_seed", first_seed_pruned)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(KeyboardInterrupt):
        tune_main(_argv(tmp_path, 3, "--seeds-per-trial", "2"))
    trials = _study(tmp_path).trials
    assert [t.state.name for t in trials] == ["PRUNED", "FAIL"]
    assert "failed_seed" not in trials[0].user_attrs
    summary = json.loads((tmp_path / "tuning" / "tiny.json").read_text())  # written on the way out
    assert summary["trial_table"][1]["error"].startswith("KeyboardInterrupt: tuning was interrupted")


def test_one_process_per_study(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """Two processes on one study would seed their samplers alike and draw the same parameters."""
    from sb3_regnorm._locking import exclusive_lock

    _fake_training(monkeypatch)
    monkeypatch.chdir(tmp_path)
    config = tune.config_from_args(tune._parser("t").parse_args(_argv(tmp_path, 1)))
    with exclusive_lock(tune._lock_path(config), blocking=False):
        assert tune_main(_argv(tmp_path, 1)) == 3
    assert "is being tuned by another process" in capsys.readouterr().err
    assert tune_main(_argv(tmp_path, 1)) == 0  # released


def test_the_zoo_entry_trial_is_queued_again_until_it_finishes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_training(monkeypatch, fail=(0,))
    monkeypatch.chdir(tmp_path)
    assert tune_main(_argv(tmp_path, 2)) == 0
    assert tune_main(_argv(tmp_path, 1)) == 0
    trials = _study(tmp_path).trials
    assert trials[0].state == optuna.trial.TrialState.FAIL
    assert trials[2].state == optuna.trial.TrialState.COMPLETE and trials[2].params == trials[0].params
    summary = json.loads((tmp_path / "tuning" / "tiny.json").read_text())
    assert summary["trial_table"][1]["zoo_overrides"]["n_envs"] == 8  # fixed (--hp) values are part of what a trial ran


def test_promote_keeps_a_longer_committed_summary(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_training(monkeypatch)
    monkeypatch.chdir(tmp_path)
    assert tune_main(_argv(tmp_path, 1)) == 0
    committed = tmp_path / "studies" / "tiny.json"
    committed.parent.mkdir()
    committed.write_text('{"trials": {"COMPLETE": 8}}\n')
    storage = f"sqlite:///{tmp_path / 'tuning' / 'study.db'}"
    argv = ["promote", "--study-name", "tiny", "--storage", storage, "--to", str(committed.parent)]
    assert tune_main(argv) == 2 and json.loads(committed.read_text()) == {"trials": {"COMPLETE": 8}}
    assert tune_main([*argv, "--force"]) == 0 and json.loads(committed.read_text())["trials"] == {"COMPLETE": 1}


def test_tuning_in_a_fresh_clone_leaves_zoo_studies_untouched(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    studies = tmp_path / "zoo" / "studies"
    studies.mkdir(parents=True)
    record = studies / "a2c-LunarLander-v3-rn.json"
    record.write_text('{"adopted": "8 trials"}\n')
    before = hashlib.sha256(record.read_bytes()).hexdigest()
    monkeypatch.chdir(tmp_path)  # all defaults: storage, log folder and summary go under ./logs/tuning
    assert tune_main([*_TINY, "--n-trials", "1"]) == 0
    assert hashlib.sha256(record.read_bytes()).hexdigest() == before
    assert sorted(p.name for p in studies.iterdir()) == ["a2c-LunarLander-v3-rn.json"]
    logs = tmp_path / "logs" / "tuning"
    assert {"a2c-LunarLander-v3-rn.db", "a2c-LunarLander-v3-rn.json", "a2c-LunarLander-v3-rn.md"} <= {
        p.name for p in logs.iterdir()
    }
    summary = json.loads((logs / "a2c-LunarLander-v3-rn.json").read_text())
    assert summary["command"].startswith("python -m sb3_regnorm.tune --algo a2c")  # rerunnable anywhere
    assert summary["storage"] == "sqlite:///logs/tuning/a2c-LunarLander-v3-rn.db"
    # only the explicit promote step writes into zoo/studies
    assert tune_main(["promote", "--study-name", "a2c-LunarLander-v3-rn"]) == 0
    promoted = json.loads(record.read_text())
    assert promoted["study_name"] == "a2c-LunarLander-v3-rn" and promoted["trials"] == {"COMPLETE": 1}
    assert (studies / "a2c-LunarLander-v3-rn.md").is_file()


def test_promote_refuses_a_missing_study(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["promote", "--study-name", "nope", "--storage", f"sqlite:///{tmp_path / 'nope.db'}", "--to", str(tmp_path)]
    assert tune_main(argv) == 2
    assert "no study storage" in capsys.readouterr().err
    assert not list(tmp_path.glob("*.json"))


def test_tune_refuses_report_seeds(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--algo", "ppo", "--env", zoo.LUNAR_LANDER, "--norm", "rn", "--n-timesteps", "10", "--seed", "0"]
    assert tune_main(argv) == 2
    assert "tuning seeds must be >= 1000" in capsys.readouterr().err


def test_config_rejects_bad_values() -> None:
    with pytest.raises(ValueError, match="Unknown algo"):
        TuneConfig("sac", zoo.LUNAR_LANDER, "rn", n_timesteps=10)
    with pytest.raises(ValueError, match=">= 1"):
        TuneConfig("ppo", zoo.LUNAR_LANDER, "rn", n_timesteps=0)
    config = TuneConfig("ppo", zoo.LUNAR_LANDER, "rn", n_timesteps=10)
    assert config.study_name == "ppo-LunarLander-v3-rn"
    assert config.storage == "sqlite:///logs/tuning/ppo-LunarLander-v3-rn.db"
    assert tune.summary_dir(config.storage) == Path("logs/tuning")


def test_sampled_values_map_to_zoo_overrides() -> None:
    a2c = zoo.raw_entry("a2c", zoo.LUNAR_LANDER, "rn")
    params = {"learning_rate": 0.000412345, "activation": "relu", "momentum": 0.01, "n_steps": 16, "ent_coef": 0.0}
    extra = params_to_extra("a2c", a2c, params)
    assert extra["learning_rate"] == "lin_0.000412"  # a linear schedule stays linear
    assert extra["policy_kwargs"] == {"activation_fn": "nn.ReLU", "norm_kwargs": {"momentum": 0.01}}
    rendered = zoo.entry("a2c", zoo.LUNAR_LANDER, "rn", extra)
    assert rendered["policy_kwargs"] == "dict(norm='rn', activation_fn=nn.ReLU, norm_kwargs=dict(momentum=0.01))"
    assert rendered["n_steps"] == 16
    # a sampled momentum None overrides an entry's momentum (PPO's tuned entry has 0.01), and is no change without one
    ppo = zoo.raw_entry("ppo", zoo.LUNAR_LANDER, "rn")
    assert ppo["policy_kwargs"]["norm_kwargs"]["momentum"] == 0.01
    extra = params_to_extra("ppo", ppo, {"momentum": None})
    trained = zoo.raw_entry("ppo", zoo.LUNAR_LANDER, "rn", extra)
    assert trained["policy_kwargs"]["norm_kwargs"]["momentum"] is None
    assert tune.changed_overrides(extra, ppo) == extra
    assert tune.changed_overrides(params_to_extra("a2c", a2c, {"momentum": None}), a2c) == {}


def test_fixed_overrides_beat_sampled_values() -> None:
    extra = {"n_steps": 16, "ent_coef": 0.01, "policy_kwargs": {"activation_fn": "nn.ReLU", "norm_kwargs": {"momentum": 0.01}}}
    fixed = {"n_steps": 5, "policy_kwargs": {"activation_fn": "nn.Tanh"}}
    kept = tune._without_fixed(extra, fixed)
    assert kept == {"ent_coef": 0.01, "policy_kwargs": {"norm_kwargs": {"momentum": 0.01}}}
    entry = zoo.raw_entry("a2c", zoo.LUNAR_LANDER, "rn", zoo.merge_overrides(fixed, kept))
    assert entry["n_steps"] == 5 and entry["policy_kwargs"]["activation_fn"] == "nn.Tanh"
