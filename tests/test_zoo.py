"""The rl_zoo3 zoo (``zoo/{norm}/{algo}.yml``), its generator and checker, and the tuning entry point.

Every zoo entry (3 algos x 6 envs x 5 norms) is trained for a few hundred steps through rl_zoo3's own
``ExperimentManager`` (reading the committed YAML, building wrappers, callbacks and the policy as ``rl_zoo3.train``
does), with only the rollout sizes shrunk so a few hundred steps include gradient updates.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from sb3_regnorm import zoo
from sb3_regnorm.nets import NORMS

torch.set_num_threads(1)

# Shrunk rollouts: a few hundred steps then hold several gradient steps (and a DQN target sync).
_SMALL: dict[str, dict[str, Any]] = {
    "ppo": {"n_envs": 2, "n_steps": 64, "batch_size": 64},
    "a2c": {"n_envs": 2},
    "dqn": {"learning_starts": 50, "buffer_size": 1000, "target_update_interval": 100},
}
_N_TIMESTEPS = 256


def _train(algo: str, env_id: str, norm: str, log_folder: Path) -> Any:
    """Train one committed zoo entry through rl_zoo3's ExperimentManager and save it, as ``rl_zoo3.train`` would."""
    from rl_zoo3.exp_manager import ExperimentManager

    args = argparse.Namespace(algo=algo, env=env_id, conf_file=str(zoo.zoo_path(algo, norm)))
    manager = ExperimentManager(
        args, algo, env_id, str(log_folder), n_timesteps=_N_TIMESTEPS, eval_freq=-1, hyperparams=dict(_SMALL[algo]),
        config=str(zoo.zoo_path(algo, norm)), seed=0, verbose=0, device="cpu", log_interval=-1,
    )  # fmt: skip
    model, _ = manager.setup_experiment()
    manager.learn(model)
    manager.save_trained_model(model)
    return model


# ------------------------------------------------------------------------------------------ generated files
def test_committed_files_equal_generated() -> None:
    expected = {zoo.zoo_path(algo, norm) for norm in NORMS for algo in zoo.ALGOS}
    on_disk = {path.resolve() for path in zoo.DEFAULT_ZOO_DIR.glob("*/*.yml")}
    assert on_disk == {path.resolve() for path in expected}, "unexpected or missing zoo files"
    for norm in NORMS:
        for algo in zoo.ALGOS:
            assert zoo.zoo_path(algo, norm).read_text() == zoo.zoo_text(algo, norm), (
                f"zoo/{norm}/{algo}.yml is stale: run `python -m sb3_regnorm.zoo write`"
            )


def test_write_regenerates_identical_files(tmp_path: Path) -> None:
    assert zoo.main(["write", "--out", str(tmp_path)]) == 0
    for norm in NORMS:
        for algo in zoo.ALGOS:
            assert (tmp_path / norm / f"{algo}.yml").read_text() == zoo.zoo_path(algo, norm).read_text()


@pytest.mark.parametrize("algo", zoo.ALGOS)
def test_arms_differ_only_in_norm_where_untuned(algo: str) -> None:
    for env_id in zoo.entry_env_ids(algo):
        entries = {norm: zoo.raw_entry(algo, env_id, norm) for norm in NORMS}
        for norm, entry in entries.items():
            assert entry["policy_kwargs"]["norm"] == norm
            assert entry["policy"].startswith("sb3_regnorm.")
            monitor = zoo.CALLBACK if norm in zoo.RN_NORMS else zoo.PROBE_CALLBACK
            assert entry["callback"][:2] == [monitor, zoo.DIAGNOSTICS_CALLBACK]
            if env_id in zoo.MINIGRID_IDS:
                assert entry["env_wrapper"] == "minigrid.wrappers.ImgObsWrapper"
                assert "Cnn" in entry["policy"]
        # every arm without tuned values for this env has exactly the same hyperparameters, whatever its norm: the
        # untuned base values (a non-stationary id's budget aside)
        untuned = [
            {k: v for k, v in entry.items() if k not in ("policy_kwargs", "callback")}
            for norm, entry in entries.items()
            if not zoo.tuned_overrides(algo, env_id, norm)
        ]
        assert all(other == untuned[0] for other in untuned[1:])
        base = zoo.BASE[algo][zoo.LUNAR_LANDER if env_id in zoo.NONSTATIONARY_IDS else env_id]
        for entry in untuned:
            assert {k: entry[k] for k in base if k not in ("policy_kwargs", "n_timesteps")} == {
                k: v for k, v in base.items() if k not in ("policy_kwargs", "n_timesteps")
            }


def test_nonstationary_entries_share_lunar_lander_hyperparameters() -> None:
    for norm in NORMS:
        for algo in zoo.ALGOS:
            data = yaml.safe_load(zoo.zoo_path(algo, norm).read_text())
            assert list(data) == list(zoo.entry_env_ids(algo))
            for env_id in zoo.NONSTATIONARY_IDS:
                # LunarLander-v3's entry plus the phase clock, switch_every and a budget holding >= 3 switches (#8)
                ns = dict(data[env_id])
                assert ns.pop("callback") == [*data[zoo.LUNAR_LANDER]["callback"], zoo.PHASE_CLOCK]
                assert ns.pop("env_kwargs") == {"switch_every": zoo.NONSTATIONARY_SWITCH_EVERY}
                assert ns.pop("n_timesteps") // zoo.NONSTATIONARY_SWITCH_EVERY >= 4  # switches at k * 50k < budget
                expected = {k: v for k, v in data[zoo.LUNAR_LANDER].items() if k not in ("callback", "n_timesteps")}
                assert ns == expected


# ------------------------------------------------------------------------------------------ training through rl_zoo3
@pytest.mark.parametrize("norm", NORMS)
@pytest.mark.parametrize("algo", zoo.ALGOS)
def test_every_entry_trains_through_rl_zoo3(algo: str, norm: str, tmp_path: Path) -> None:
    policies = {"ppo": "RNActorCritic", "a2c": "RNActorCritic", "dqn": "RNDQN"}
    for env_id in zoo.entry_env_ids(algo):
        model = _train(algo, env_id, norm, tmp_path)
        assert model.num_timesteps >= _N_TIMESTEPS
        assert type(model.policy).__name__.startswith(policies[algo])
        assert model.policy.norm == norm
        assert ("Cnn" in type(model.policy).__name__) == (env_id in zoo.MINIGRID_IDS)
    assert len(list(tmp_path.glob(f"{algo}/*/*.zip"))) == len(zoo.entry_env_ids(algo))


# ------------------------------------------------------------------------------------------ check
def test_check_accepts_the_committed_zoo(capsys: pytest.CaptureFixture[str]) -> None:
    assert zoo.main(["check"]) == 0
    n_entries = len(NORMS) * sum(len(zoo.entry_env_ids(algo)) for algo in zoo.ALGOS)
    assert f"checked {n_entries} zoo entries: OK" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--env", "LunarLander-v9"], "Unknown env id 'LunarLander-v9'"),
        (["--norm", "batchnorm"], "Unknown norm 'batchnorm'"),
        (["--algo", "sac"], "Unknown algo 'sac'"),
    ],
)
def test_check_rejects_unknown_names(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert zoo.main(["check", *argv]) == 2
    assert message in capsys.readouterr().err


def _broken_copy(tmp_path: Path, old: str, new: str) -> Path:
    """A copy of zoo/rn in ``tmp_path`` whose ppo.yml has ``old`` replaced by ``new``."""
    shutil.copytree(zoo.DEFAULT_ZOO_DIR / "rn", tmp_path / "rn")
    path = tmp_path / "rn" / "ppo.yml"
    path.write_text(path.read_text().replace(old, new))
    return path


@pytest.mark.parametrize(
    ("key", "old", "new"),
    [
        ("policy", "sb3_regnorm.RNActorCriticCnnPolicy", "sb3_regnorm.NoSuchPolicy"),
        ("env_wrapper", "minigrid.wrappers.ImgObsWrapper", "minigrid.wrappers.NoSuchWrapper"),
        ("callback", "sb3_regnorm.callbacks.RegularityCallback", "sb3_regnorm.no_such_module.Cb"),
    ],
)
def test_check_rejects_a_missing_class(key: str, old: str, new: str, tmp_path: Path) -> None:
    path = _broken_copy(tmp_path, old, new)
    message = f"{key} {new!r} cannot be imported"
    with pytest.raises(zoo.ZooError, match=message) as info:
        zoo.load_entry("ppo", "MiniGrid-DoorKey-5x5-v0", "rn", zoo_dir=tmp_path)
    assert str(path) in str(info.value)  # the message names the file and the entry
    errors = zoo.check_zoo(tmp_path, ["ppo"], ["MiniGrid-DoorKey-5x5-v0"], ["rn"], build=False)
    assert errors and all(message in e for e in errors)  # only the broken entry: a copied folder is never "out of date"


def test_check_rejects_a_norm_that_contradicts_the_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _broken_copy(tmp_path, "norm='rn'", "norm='ln'")
    argv = ["check", "--zoo", str(tmp_path), "--algo", "ppo", "--env", "MiniGrid-DoorKey-5x5-v0", "--norm", "rn"]
    assert zoo.main(argv) == 2
    assert "does not match the folder 'rn'" in capsys.readouterr().err


def test_load_entry_rejects_unknown_names() -> None:
    with pytest.raises(zoo.ZooError, match="Unknown env id 'CartPole-v1'"):
        zoo.load_entry("ppo", "CartPole-v1", "rn")
    with pytest.raises(zoo.ZooError, match="Unknown norm 'bn'"):
        zoo.load_entry("ppo", zoo.LUNAR_LANDER, "bn")


def test_check_passes_an_edited_copy_and_names_only_real_problems(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _broken_copy(tmp_path, "learning_rate: 0.000676", "learning_rate: 0.0005")  # a user's own, valid change
    assert "0.0005" in path.read_text()
    argv = ["check", "--zoo", str(tmp_path), "--no-build"]
    assert zoo.main(argv) == 0
    out = capsys.readouterr()
    assert "OK" in out.out and "out of date" not in out.err
    path.write_text(path.read_text().replace("n_steps: 128", "n_steps: [128"))  # broken YAML
    assert zoo.main(argv) == 2
    assert "not valid YAML" in capsys.readouterr().err


def test_check_validates_a_plain_rl_zoo3_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "ppo.yml").write_text(
        "CartPole-v1:\n  n_envs: 8\n  n_timesteps: 100000\n  policy: MlpPolicy\n"
        "LunarLander-v3:\n  policy: sb3_regnorm.RNActorCriticPolicy\n"
        "  policy_kwargs: dict(norm='rn', norm_kwargs=dict(momentum=2.0))\n"
    )
    assert zoo.main(["check", "--zoo", str(tmp_path)]) == 2
    captured = capsys.readouterr()
    assert "checked 2 zoo entries: 1 problem(s)" in captured.out
    assert "LunarLander-v3" in captured.err and "momentum" in captured.err and "CartPole-v1" not in captured.err


def test_only_the_shipped_zoo_is_compared_with_the_generator(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    shutil.copytree(zoo.DEFAULT_ZOO_DIR, tmp_path / "zoo", ignore=shutil.ignore_patterns("studies"))
    path = tmp_path / "zoo" / "rn" / "a2c.yml"
    path.write_text(path.read_text().replace("gamma: 0.995", "gamma: 0.99"))
    assert zoo.check_zoo(tmp_path / "zoo", ["a2c"], None, ["rn"], build=False) == []
    monkeypatch.chdir(tmp_path)  # now it is the default zoo (relative to the working directory)
    errors = zoo.check_zoo(zoo.DEFAULT_ZOO_DIR, ["a2c"], None, ["rn"], build=False)
    assert len(errors) == 1 and "out of date" in errors[0]


def test_removed_entries_are_refused_with_the_reason() -> None:
    for (algo, env_id), reason in zoo.REMOVED.items():
        assert not zoo.has_entry(algo, env_id) and env_id not in zoo.entry_env_ids(algo)
        with pytest.raises(zoo.ZooError, match="No zoo entry") as info:
            zoo.raw_entry(algo, env_id, "rn")
        assert reason in str(info.value)
    assert zoo.has_entry("ppo", "MiniGrid-DoorKey-5x5-v0") and all(zoo.has_entry(a, zoo.LUNAR_LANDER) for a in zoo.ALGOS)


def test_policy_kwargs_objects_match_rl_zoo3_eval() -> None:
    raw = zoo.raw_entry("ppo", "MiniGrid-DoorKey-5x5-v0", "rn")["policy_kwargs"]
    evaluated = zoo.load_entry("ppo", "MiniGrid-DoorKey-5x5-v0", "rn", zoo_dir=None).policy_kwargs
    assert zoo.policy_kwargs_objects(raw) == evaluated
    with pytest.raises(zoo.ZooError, match=r"not a torch\.nn class"):
        zoo.policy_kwargs_objects({"activation_fn": "nn.NoSuchThing"})


def test_merge_overrides_merges_policy_kwargs_key_by_key() -> None:
    base = {"gamma": 0.99, "policy_kwargs": {"net_arch": [64], "norm_kwargs": {"momentum": 0.01, "eps": 1e-5}}}
    merged = zoo.merge_overrides(base, {"gamma": 0.9, "policy_kwargs": {"norm_kwargs": {"momentum": None}}})
    assert merged == {"gamma": 0.9, "policy_kwargs": {"net_arch": [64], "norm_kwargs": {"momentum": None, "eps": 1e-5}}}
    assert base["policy_kwargs"]["norm_kwargs"]["momentum"] == 0.01  # inputs untouched


def test_check_names_a_missing_zoo_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert zoo.main(["check", "--zoo", str(tmp_path / "nowhere")]) == 2
    assert "No zoo folder at" in capsys.readouterr().err


def _entry_param(algo: str, entry: dict[str, Any], key: str) -> Any:
    """The value a study's ``best_params`` key takes in a zoo entry (activation and RN momentum live in policy_kwargs)."""
    from sb3_regnorm import search_space

    policy_kwargs = entry.get("policy_kwargs", {})
    if key == "activation":
        default = "nn.ReLU" if algo == "dqn" else "nn.Tanh"  # the policies' own defaults
        return {v: k for k, v in search_space.ACTIVATIONS.items()}[policy_kwargs.get("activation_fn", default)]
    if key == "momentum":
        return policy_kwargs.get("norm_kwargs", {}).get("momentum")
    return entry[key]


@pytest.mark.parametrize("key", sorted(zoo.TUNED_STUDIES), ids="-".join)
def test_tuned_entry_cites_the_study_its_values_came_from(key: tuple[str, str, str]) -> None:
    # the YAML comment names the study, and that study's best trial holds the entry's values (the DQN RN entry once
    # cited its superseded 40k study, whose learning rate was 1.04e-3, not the adopted 3.41e-4)
    # An entry may borrow another norm's study (DQN LunarLander rln takes rn's): then the comment says so.
    norm, algo, env_id = key
    study = zoo.tuned_study(algo, env_id, norm)
    tuned_norm = zoo.study_norm(algo, env_id, norm)
    borrowed = f" (tuned with norm {tuned_norm}; no study of its own)" if tuned_norm != norm else ""
    # the comment sits right above this env's block
    assert f"# Tuned overrides: zoo/studies/{study}.md{borrowed}\n{env_id}:\n" in zoo.zoo_text(algo, norm)
    folder = zoo.DEFAULT_ZOO_DIR / "studies"
    assert (folder / f"{study}.md").is_file()
    summary = json.loads((folder / f"{study}.json").read_text())
    assert (summary["algo"], summary["env"], summary["norm"]) == (algo, env_id, tuned_norm)
    assert summary["best_params"]
    entry = zoo.raw_entry(algo, env_id, norm)
    for name, value in summary["best_params"].items():
        if isinstance(value, float):
            assert _entry_param(algo, entry, name) == pytest.approx(value, rel=5e-3), name
        else:
            assert _entry_param(algo, entry, name) == value, name


def _comment_above(text: str, env_id: str) -> str:
    """The comment lines right above ``env_id``'s block of a generated YAML file, joined into one line."""
    lines = text.splitlines()
    end = lines.index(f"{env_id}:")
    start = end
    while start > 0 and lines[start - 1].startswith("# "):
        start -= 1
    return " ".join(line[2:] for line in lines[start:end])


@pytest.mark.parametrize("key", sorted(zoo.GROWN_BUDGETS), ids="-".join)
def test_a_grown_budget_applies_to_the_shipped_entry_only(key: tuple[str, str, str]) -> None:
    # the shipped entry trains longer and its YAML says why; the untuned entry that campaigns compare, and every other
    # norm's entry, keep the shared budget
    norm, algo, env_id = key
    n_timesteps, why = zoo.GROWN_BUDGETS[key]
    shared = zoo.raw_entry(algo, env_id, norm, tuned=False)["n_timesteps"]
    assert n_timesteps > shared
    assert zoo.grown_budget(algo, env_id, norm) == (n_timesteps, why)
    assert zoo.raw_entry(algo, env_id, norm)["n_timesteps"] == n_timesteps
    assert zoo.raw_entry(algo, env_id, norm, {"n_timesteps": 7})["n_timesteps"] == 7  # ``extra`` still wins (tuner)
    assert yaml.safe_load(zoo.zoo_path(algo, norm).read_text())[env_id]["n_timesteps"] == n_timesteps
    comment = _comment_above(zoo.zoo_text(algo, norm), env_id)
    assert f"Budget {n_timesteps} steps, not the {shared} of the other norms: {why}" in comment
    for other in NORMS:
        if (other, algo, env_id) not in zoo.GROWN_BUDGETS:
            assert zoo.grown_budget(algo, env_id, other) is None
            assert zoo.raw_entry(algo, env_id, other)["n_timesteps"] == shared
            assert "Budget" not in _comment_above(zoo.zoo_text(algo, other), env_id)


def test_a_grown_budget_stays_with_its_exact_env_id(monkeypatch: pytest.MonkeyPatch) -> None:
    # non-stationary ids share LunarLander-v3's values but have budgets of their own: a LunarLander-v3 key must not
    # shrink or grow them
    key = ("rn", "dqn", zoo.LUNAR_LANDER)
    monkeypatch.setitem(zoo.GROWN_BUDGETS, key, (150_000, "a test"))
    assert zoo.raw_entry("dqn", zoo.LUNAR_LANDER, "rn")["n_timesteps"] == 150_000
    for env_id in zoo.NONSTATIONARY_IDS:
        assert zoo.grown_budget("dqn", env_id, "rn") is None
        assert (
            zoo.raw_entry("dqn", env_id, "rn")["n_timesteps"] == zoo.raw_entry("dqn", env_id, "rn", tuned=False)["n_timesteps"]
        )


def test_the_minigrid_campaign_compares_grown_entries_at_the_shared_budget() -> None:
    from sb3_regnorm.benchmark.campaign import load_campaign

    for spec in load_campaign("minigrid").runs():
        key = (spec.norm, spec.algo, spec.env)
        if key in zoo.GROWN_BUDGETS and spec.arm == spec.norm:
            assert spec.n_timesteps == zoo.raw_entry(spec.algo, spec.env, spec.norm, tuned=False)["n_timesteps"]
            break
    else:
        pytest.fail("the minigrid campaign has no arm for a grown entry")
