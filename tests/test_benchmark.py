"""Benchmark runner: campaigns as data, one process per run, resume after a kill, report from runs.jsonl alone."""

from __future__ import annotations

import json
import math
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from sb3_regnorm._versions import source_revision
from sb3_regnorm.benchmark import campaign as cmod
from sb3_regnorm.benchmark import cli, runner
from sb3_regnorm.benchmark.report import build_report, poi_verdict

ROOT = Path(__file__).resolve().parent.parent
TINY_PPO: dict[str, Any] = {"n_envs": 2, "n_timesteps": 256, "n_steps": 32, "batch_size": 32, "n_epochs": 1}


def tiny_campaign(name: str = "tiny", seeds: int = 2) -> dict[str, Any]:
    """CartPole PPO for a few hundred steps, two arms: the smallest campaign that goes through the real runner."""
    return {
        "name": name,
        "description": "test campaign",
        "seeds": seeds,
        "eval": {"points": 4, "episodes": 2, "n_envs": 1},
        "experiments": [{"algo": "ppo", "env": "CartPole-v1", "hyperparams": TINY_PPO, "arms": ["none", "rn"]}],
    }


def write_campaign(tmp_path: Path, data: dict[str, Any], suffix: str = ".yaml") -> Path:
    path = tmp_path / f"{data['name']}{suffix}"
    if suffix == ".json":
        path.write_text(json.dumps(data))
    else:
        path.write_text(yaml.safe_dump(data))
    return path


def lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


# ------------------------------------------------------------------------------------------ campaigns as data
def test_shipped_campaigns_load_with_their_matrix() -> None:
    shipped = cmod.shipped_campaigns()
    assert {"paper", "lunarlander", "minigrid"} <= set(shipped)
    paper = cmod.load_campaign("paper")
    runs = paper.runs()
    assert len(runs) == 5 * 20 and paper.protocol == "paper_dqn"
    assert [r.arm for r in runs[:5]] == ["none", "ln", "rn", "rln", "rnln"]  # seed-major: seed 0 of every arm first
    assert {r.seed for r in runs[:5]} == {0} and max(r.seed for r in runs) == 19
    assert runs[0].hyperparams["exploration"] == "corrected" and runs[0].n_timesteps == 200_000
    lunar = cmod.load_campaign("lunarlander").runs()
    assert len(lunar) == 3 * 6 * 10
    assert [r.algo for r in lunar[::60]] == ["a2c", "ppo", "dqn"]  # cheapest task complete first (stages)
    assert {r.algo for r in lunar[:60]} == {"a2c"} and {r.seed for r in lunar[:6]} == {0}
    minigrid = cmod.load_campaign("minigrid").runs()
    assert len(minigrid) == 5 * 10 + 3 * 5
    assert all(r.env.startswith("MiniGrid-DoorKey") for r in minigrid[:50])  # stage 0 (DoorKey) before RedBlueDoors


def test_arms_change_only_the_norm_unless_tuned() -> None:
    from sb3_regnorm import zoo

    runs = {r.arm: r for r in cmod.load_campaign("lunarlander").runs() if r.algo == "ppo" and r.seed == 0}
    base = {k: v for k, v in runs["none"].hyperparams.items() if k != "policy_kwargs"}
    for arm in ("ln", "rn", "rln", "rnln"):
        assert {k: v for k, v in runs[arm].hyperparams.items() if k != "policy_kwargs"} == base
        assert runs[arm].hyperparams["policy_kwargs"] == {"norm": arm}
    tuned = zoo.raw_entry("ppo", "LunarLander-v3", "rn")
    tuned.pop("callback")
    assert runs["rn-tuned"].hyperparams == tuned and runs["rn-tuned"].hyperparams != runs["rn"].hyperparams
    assert "callback" not in runs["rn"].hyperparams


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"seeds": [0, 1000]}, "tuning seeds"),
        ({"seeds": [1, 1]}, "duplicate seeds"),
        ({"protocol": "nope"}, "unknown protocol"),
        ({"bogus": 1}, "unknown keys"),
        ({"eval": {"points": 0}}, "eval.points"),
        ({"experiments": [{"algo": "ppo", "env": "CartPole-v1", "arms": ["none"]}]}, "no zoo entry"),
        ({"experiments": [{"algo": "sac", "env": "LunarLander-v3", "arms": ["none"]}]}, "unknown algo"),
        ({"experiments": [{"algo": "ppo", "env": "LunarLander-v3", "arms": ["bn"]}]}, "unknown norm"),
        ({"experiments": [{"algo": "ppo", "env": "LunarLander-v3", "arms": ["rn", "rn"]}]}, "duplicate arm names"),
    ],
)
def test_bad_campaigns_fail_with_a_clear_message(tmp_path: Path, change: dict[str, Any], message: str) -> None:
    data = {**tiny_campaign(), **change}
    with pytest.raises(cmod.CampaignError, match=message):
        cmod.load_campaign(write_campaign(tmp_path, data))


def test_campaign_formats_and_overrides(tmp_path: Path) -> None:
    data = tiny_campaign()
    data["experiments"][0]["arms"] = [
        "none",
        {"name": "rn-m", "norm": "rn", "overrides": {"policy_kwargs": {"norm_kwargs": {"momentum": 0.01}}}},
    ]
    from_yaml = cmod.load_campaign(write_campaign(tmp_path, data)).runs()
    from_json = cmod.load_campaign(write_campaign(tmp_path, data, ".json")).runs()
    toml = tmp_path / "tiny.toml"
    toml.write_text(
        'name = "tiny"\nseeds = 2\n[eval]\npoints = 4\nepisodes = 2\nn_envs = 1\n[[experiments]]\nalgo = "ppo"\n'
        'env = "CartPole-v1"\narms = ["none", {name = "rn-m", norm = "rn", overrides = {policy_kwargs = {norm_kwargs = '
        "{momentum = 0.01}}}}]\n[experiments.hyperparams]\n" + "\n".join(f"{k} = {v}" for k, v in TINY_PPO.items()) + "\n"
    )
    from_toml = cmod.load_campaign(toml).runs()
    assert from_yaml == from_json == from_toml
    rn = next(r for r in from_yaml if r.arm == "rn-m")
    assert rn.hyperparams["policy_kwargs"] == {"norm": "rn", "norm_kwargs": {"momentum": 0.01}}
    assert rn.hyperparams["policy"] == "sb3_regnorm.RNActorCriticPolicy" and rn.n_timesteps == 256


def test_dry_run_prints_matrix_and_compute(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["run", "paper", "--dry-run", "--jobs", "2", "--root", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "runs: 100 in all, 0 done, 100 left" in out and "core-hours" in out and "--jobs 2" in out
    assert out.count("seeds= 20") == 5
    assert cli.main(["run", str(tmp_path / "missing.yaml"), "--dry-run"]) == 2
    assert cli.main(["list"]) == 0
    assert "paper" in capsys.readouterr().out


def test_a_selection_runs_a_subset_in_matrix_order() -> None:
    lunar = cmod.load_campaign("lunarlander")
    selection = cmod.RunSelection(seeds=frozenset({0, 1, 2}), algos=frozenset({"dqn"}))
    chosen = runner.pending_runs(lunar, [], selection)
    assert len(chosen) == 3 * 6 and {r.algo for r in chosen} == {"dqn"} and {r.seed for r in chosen} == {0, 1, 2}
    assert chosen == [r for r in lunar.runs() if r.algo == "dqn" and r.seed < 3]  # seed-major, as the full campaign
    done = {"algo": "dqn", "env": "LunarLander-v3", "arm": "ln", "seed": 1, "score": 1.0}
    assert len(runner.pending_runs(lunar, [done], selection)) == 17
    only_rn = runner.pending_runs(lunar, [], cmod.RunSelection(arms=frozenset({"rn"})))
    assert {r.arm for r in only_rn} == {"rn"} and len(only_rn) == 3 * 10
    assert not cmod.RunSelection() and runner.pending_runs(lunar, [], cmod.RunSelection()) == lunar.runs()


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--seeds", "10"], "has no seed 10"),
        (["--algo", "sac"], "has no algo sac"),
        (["--arm", "rn-tunned"], "has no arm rn-tunned"),
    ],
)
def test_a_selection_of_what_the_campaign_lacks_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], flags: list[str], message: str
) -> None:
    # a typo must not select nothing and then report "nothing left to run", as if the campaign were finished
    assert cli.main(["run", "lunarlander", "--dry-run", "--root", str(tmp_path), *flags]) == 2
    assert message in capsys.readouterr().err
    with pytest.raises(cmod.CampaignError, match=message):
        runner.run_campaign(cmod.load_campaign("lunarlander"), tmp_path, selection=_selection(flags))


def test_a_selection_that_matches_no_run_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tiny_campaign("mixed")
    data["experiments"].append({"algo": "a2c", "env": "CartPole-v1", "hyperparams": {"n_timesteps": 256}, "arms": ["ln"]})
    path = write_campaign(tmp_path, data)
    assert cli.main(["run", str(path), "--dry-run", "--root", str(tmp_path), "--algo", "a2c", "--arm", "rn"]) == 2
    assert "matches no run" in capsys.readouterr().err
    assert cli.main(["run", str(path), "--dry-run", "--root", str(tmp_path), "--algo", "a2c", "--arm", "ln"]) == 0
    assert cli.main(["run", str(path), "--dry-run", "--root", str(tmp_path), "--max-runs", "0"]) == 2
    assert "--max-runs must be >= 1" in capsys.readouterr().err


def _selection(flags: list[str]) -> cmod.RunSelection:
    values = {flags[0]: flags[1:]}
    return cmod.RunSelection(
        seeds=frozenset(int(v) for v in values.get("--seeds", [])),
        algos=frozenset(values.get("--algo", [])),
        arms=frozenset(values.get("--arm", [])),
    )


def test_dry_run_says_what_a_selection_would_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["run", "lunarlander", "--dry-run", "--jobs", "1", "--root", str(tmp_path), "--seeds", "0", "1", "2"]
    assert cli.main([*argv, "--algo", "dqn"]) == 0
    out = capsys.readouterr().out
    assert "runs: 180 in all, 0 done, 180 left" in out and "this run: 18 pending run(s)" in out
    assert out.count("seeds 0-2") == 6 and "dqn  LunarLander-v3                   rn-tuned     seeds 0-2" in out
    assert cli.main([*argv, "--algo", "dqn", "--max-runs", "4"]) == 0  # what `run` with the same flags would start
    out = capsys.readouterr().out
    assert "this run: 4 pending run(s)" in out and out.count("seeds 0\n") == 4


def test_a_selected_run_is_recorded_and_the_rest_stay_pending(tmp_path: Path) -> None:
    campaign = cmod.load_campaign(write_campaign(tmp_path, tiny_campaign("subset", seeds=2)))
    selection = cmod.RunSelection(seeds=frozenset({1}), arms=frozenset({"rn"}))
    assert runner.run_campaign(campaign, tmp_path / "out", jobs=1, selection=selection) == 1
    records = runner.read_records(tmp_path / "out" / "subset" / "runs.jsonl")
    assert [(r["arm"], r["seed"]) for r in records] == [("rn", 1)]
    assert [(s.arm, s.seed) for s in runner.pending_runs(campaign, records)] == [("none", 0), ("rn", 0), ("none", 1)]
    out = tmp_path / "again.txt"
    with out.open("w") as handle:  # the selection is finished: nothing runs, and the message says so
        assert runner.run_campaign(campaign, tmp_path / "out", jobs=1, selection=selection, out=handle) == 0
    assert "nothing selected is left to run" in out.read_text()


def test_status_counts_finished_runs_per_task_from_runs_jsonl(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from sb3_regnorm.benchmark.status import campaign_status

    data = tiny_campaign("progress", seeds=2)
    data["experiments"].append({"algo": "a2c", "env": "CartPole-v1", "hyperparams": {"n_timesteps": 256}, "arms": ["ln"]})
    path = write_campaign(tmp_path, data)
    campaign = cmod.load_campaign(path)
    root = tmp_path / "out"
    before = campaign_status(campaign, root)
    assert (before.finished, before.total, before.started, before.report) == (0, 6, False, None)
    assert before.seconds_left > 0

    def record(algo: str, arm: str, seed: int) -> dict[str, Any]:
        return {"algo": algo, "env": "CartPole-v1", "arm": arm, "seed": seed, "score": 1.0, "wall_time_s": 30.0}

    folder = root / "progress"
    folder.mkdir(parents=True)
    finished = [record("ppo", "none", 0), record("ppo", "rn", 1), record("a2c", "ln", 0)]
    stale = record("ppo", "bn", 0)  # an arm no longer in the matrix does not count
    text = "\n".join(json.dumps(r) for r in [*finished, finished[0], stale]) + "\n"  # a duplicate counts once
    (folder / "runs.jsonl").write_text(text)
    after = campaign_status(campaign, root)
    assert after.finished == 3 and after.started
    assert [(t.algo, t.finished, t.total) for t in after.tasks] == [("ppo", 2, 4), ("a2c", 1, 2)]
    assert after.seconds_left == pytest.approx(3 * 30.0)  # pending: ppo none 1, ppo rn 0, a2c ln 1 (measured times)
    assert cli.main(["status", str(path), "--root", str(root)]) == 0
    row = capsys.readouterr().out.splitlines()[-1]
    assert row == "| `progress` | 3 of 6 | PPO CartPole-v1 2/4, A2C CartPole-v1 1/2 | ~0.0 core-hours | no report yet |"
    (folder / "report.md").write_text("# report\n")
    assert cli.main(["status", str(path), "--root", str(root)]) == 0
    assert "[progress/report.md](progress/report.md)" in capsys.readouterr().out
    assert cli.main(["status", "no-such-campaign", "--root", str(root)]) == 2


def test_estimates_for_arms_not_run_yet_follow_the_recorded_speed(tmp_path: Path) -> None:
    campaign = cmod.load_campaign(write_campaign(tmp_path, tiny_campaign("estimate", seeds=2)))
    rn = next(s for s in campaign.runs() if s.arm == "rn")
    reference = runner.estimate_seconds(rn)  # nothing recorded: the reference machine's per-step costs
    assert runner.machine_factor([]) == 1.0 and reference > 0

    def record(algo: str, arm: str, factor: float, **extra: Any) -> dict[str, Any]:
        fields = {"protocol": "zoo", "algo": algo, "env": "LunarLander-v3", "arm": arm, "seed": 0, "norm": "none"}
        fields |= {"n_timesteps": 100_000, **extra}
        ref = runner._reference_seconds(fields["protocol"], algo, fields["env"], fields["n_timesteps"], fields["norm"])
        return fields | {"wall_time_s": factor * ref}

    slow_ppo, slower_a2c = record("ppo", "none", 3.0), record("a2c", "none", 5.0)
    untimed = {k: v for k, v in record("ppo", "ln", 100.0).items() if k != "wall_time_s"}
    broken = record("ppo", "rn", 1.0) | {"wall_time_s": float("nan")}
    recorded = [slow_ppo, slower_a2c, untimed, broken]
    assert runner.machine_factor(recorded, "zoo", "ppo") == pytest.approx(3.0)  # same protocol and algo first
    assert runner.machine_factor(recorded, "zoo", "dqn") == pytest.approx(4.0)  # else the median over all runs
    assert runner.estimate_seconds(rn, [], recorded) == pytest.approx(3.0 * reference)
    assert runner.estimate_seconds(rn, recorded) == pytest.approx(3.0 * reference)  # calibration defaults to records
    same_arm = {"algo": "ppo", "env": "CartPole-v1", "arm": "rn", "seed": 0, "wall_time_s": 42.0}
    assert runner.estimate_seconds(rn, [same_arm], recorded) == 42.0  # measured runs of the arm itself win

    # status and --dry-run read the speed from every campaign under the root, e.g. one run on this machine before
    other = tmp_path / "out" / "other"
    other.mkdir(parents=True)
    (other / "runs.jsonl").write_text(json.dumps(slow_ppo) + "\n")
    from sb3_regnorm.benchmark.status import campaign_status

    expected = sum(3.0 * runner.estimate_seconds(spec) for spec in campaign.runs())
    assert campaign_status(campaign, tmp_path / "out").seconds_left == pytest.approx(expected)
    text = runner.dry_run_text(campaign, [], 1, calibration=runner.recorded_runs(tmp_path / "out"))
    rn_line = next(line for line in text.splitlines() if " rn " in line)
    assert rn_line.endswith(f"~{runner._fmt_time(3.0 * reference)}/run")


def test_eval_seeds_are_disjoint_from_training_and_tuning_seeds() -> None:
    from sb3_regnorm.benchmark.run import eval_seed

    train = set(range(1000 + 16))  # benchmark seeds 0..999, each with up to 16 training envs
    evals = {eval_seed(s) + i for s in range(1000) for i in range(100)}
    tuning = set(range(1000, 1200)) | set(range(101_000, 101_200))  # tune.py: trial seeds and study eval seeds
    assert not evals & train and not evals & tuning


# ------------------------------------------------------------------------------------------ paper protocol
def test_paper_dqn_protocol_runs_and_scores_the_final_window() -> None:
    from sb3_regnorm.benchmark.paper_dqn import check_kwargs, run_paper_dqn

    settings = {"env_id": "CartPole-v1", "episodes": 12, "max_t": 30, "batch_size": 8, "buffer_size": 200, "score_window": 4}
    out = run_paper_dqn("rn", 0, settings, eval_points=3, eval_episodes=2, eval_seed=200_000)
    windows = out["train_returns_window"]
    assert len(windows) == 3 and out["score"] == pytest.approx(windows[-1])
    assert len(out["curve"]["steps"]) == 3 and out["learn_steps"] > 0 and out["n_timesteps"] <= 12 * 30
    assert out["settings"]["exploration"] == "corrected"
    with pytest.raises(ValueError, match="exploration"):
        check_kwargs({"exploration": "sometimes"})
    with pytest.raises(ValueError, match="unknown paper_dqn settings"):
        check_kwargs({"epsilon": 1})


# ------------------------------------------------------------------------------------------ runner, resume, report
def _run_cli(args: list[str], cwd: Path) -> subprocess.Popen[str]:
    """The CLI in a process group of its own (a signal to the group reaches the runner and its workers, as Ctrl-C in a
    terminal or ``kill -- -PGID`` does)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "sb3_regnorm", "bench", *args]
    return subprocess.Popen(
        cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True
    )


@pytest.fixture(scope="module")
def finished_campaign(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Run the tiny campaign through the CLI, kill it after its first recorded run, then resume it to the end."""
    tmp = tmp_path_factory.mktemp("bench")
    path = write_campaign(tmp, tiny_campaign())
    results = tmp / "out" / "tiny" / "runs.jsonl"
    proc = _run_cli(["run", str(path), "--jobs", "1", "--root", str(tmp / "out")], tmp)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and proc.poll() is None and not (results.is_file() and results.read_text().strip()):
        time.sleep(0.2)
    assert results.is_file() and proc.poll() is None, proc.communicate()[0]
    os.killpg(proc.pid, signal.SIGTERM)  # the runner and its worker
    out, _ = proc.communicate(timeout=120)
    first = lines(results)
    assert proc.returncode == 130 and "interrupted" in out, out
    assert "Traceback" not in out, out  # the pool's threads end quietly
    assert 1 <= len(first) < 4
    resumed = _run_cli(["run", str(path), "--jobs", "2", "--root", str(tmp / "out")], tmp)
    out, _ = resumed.communicate(timeout=600)
    assert resumed.returncode == 0, out
    records = lines(results)
    assert records[: len(first)] == first  # finished runs are never run again
    assert f"runs done {4 - len(first)}, running 0, left 0" in out, out
    return results


def test_resume_after_kill_runs_each_run_once(finished_campaign: Path) -> None:
    records = lines(finished_campaign)
    keys = [(r["algo"], r["env"], r["arm"], r["seed"]) for r in records]
    assert sorted(keys) == sorted(("ppo", "CartPole-v1", arm, s) for arm in ("none", "rn") for s in (0, 1))
    for r in records:
        assert {"campaign", "algo", "env", "norm", "arm", "seed", "n_timesteps", "score", "curve", "wall_time_s"} <= set(r)
        assert r["versions"]["torch"] and r["hyperparams"]["policy_kwargs"]["norm"] == r["norm"]
        assert r["versions"]["sb3-regnorm-commit"] == source_revision()  # the code, not just "0.2.0.dev0"
        assert len(r["curve"]["returns"]) == 4 and r["curve"]["deterministic"] is True
        assert r["score"] == pytest.approx(r["curve"]["returns"][-1])  # 4 points: only the last is in the final 10%
        assert r["eval_seed"] == 200_000 + 100 * r["seed"] and r["torch_threads"] == 1
        # scored once more as `sb3-regnorm confirm` scores (so a zoo entry's seeds 0-2 can confirm it)
        report = r["report_eval"]
        assert (report["episodes"], report["n_envs"], report["first_seed"]) == (20, 5, 100_000 + 100 * r["seed"])
        assert report["deterministic"] is True and math.isfinite(report["mean"]) and report["std"] >= 0
    again = _run_cli(
        ["run", str(finished_campaign.parent.parent.parent / "tiny.yaml"), "--root", str(finished_campaign.parent.parent)],
        ROOT,
    )
    out, _ = again.communicate(timeout=120)
    assert "nothing left to run" in out and len(lines(finished_campaign)) == 4


def test_report_rebuilds_from_runs_jsonl_alone(finished_campaign: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    copy.mkdir()
    (copy / "runs.jsonl").write_text(finished_campaign.read_text())
    assert cli.main(["report", str(copy)]) == 0
    text = (copy / "report.md").read_text()
    assert "## PPO on CartPole-v1" in text and "| rn vs none |" in text and "IQM [95% CI]" in text
    assert (copy / "curves_ppo_CartPole-v1.png").stat().st_size > 1000
    assert (copy / "scores_ppo_CartPole-v1.png").is_file()
    assert build_report(copy, plots=False).count("| none |") >= 2


def test_report_compares_layernorm_with_no_norm(finished_campaign: Path, tmp_path: Path) -> None:
    # The paper orders the baselines too (LayerNorm above no norm), so a report with both says whether that holds.
    base = lines(finished_campaign)[0]
    offsets = {"none": 0.0, "ln": 100.0, "rn": 50.0}
    records = [
        {**base, "arm": arm, "norm": arm, "seed": seed, "score": offset + seed}
        for arm, offset in offsets.items()
        for seed in range(6)
    ]
    copy = tmp_path / "baselines"
    copy.mkdir()
    (copy / "runs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    text = build_report(copy, plots=False)
    assert "| ln vs none | 1.00 [1.00, 1.00] | ln better than none |" in text
    assert "| rn vs ln | 0.00 [0.00, 0.00] | rn worse than ln |" in text
    assert "| none vs ln |" not in text and "| ln vs ln |" not in text
    (copy / "runs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records if r["arm"] != "ln"))
    assert "ln vs none" not in build_report(copy, plots=False)  # only the baselines a campaign has


def test_report_lists_every_set_of_versions_with_its_runs(finished_campaign: Path, tmp_path: Path) -> None:
    # a campaign resumed on another machine: the report must not print the last run's versions as everyone's
    records = lines(finished_campaign)
    other = {"python": "3.12.3", "torch": "2.11.0", "sb3-regnorm-commit": "a" * 40 + "+dirty"}
    reordered = dict(reversed(records[2]["versions"].items()))  # the same versions in another order: one set
    mixed = [{**r, "versions": other} if i == 0 else r for i, r in enumerate(records)]
    mixed[2] = {**mixed[2], "versions": reordered}
    copy = tmp_path / "mixed"
    copy.mkdir()
    (copy / "runs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in mixed))
    section = build_report(copy, plots=False).split("## Versions")[1]
    assert "- 1 run(s): python 3.12.3, torch 2.11.0\n" in section
    assert f"- {len(records) - 1} run(s): python {records[1]['versions']['python']}," in section
    assert f"{'a' * 12}+dirty (1)" in section and "sb3-regnorm-commit" not in section


def test_poi_verdict_words() -> None:
    assert poi_verdict(0.6, 0.9, "rn", "none") == "rn better than none"
    assert poi_verdict(0.1, 0.4, "rn", "none") == "rn worse than none"
    assert poi_verdict(0.3, 0.7, "rn", "none") == "cannot tell"
    assert poi_verdict(1.0, 1.0, "rn", "none", n_min=1).startswith("too few runs")  # one run each: a degenerate interval


def test_max_runs_and_failed_runs_are_not_recorded(tmp_path: Path) -> None:
    data = tiny_campaign("bad", seeds=1)
    data["experiments"][0]["hyperparams"] = {**TINY_PPO, "batch_size": "not a number"}
    campaign = cmod.load_campaign(write_campaign(tmp_path, data))
    finished = runner.run_campaign(campaign, tmp_path / "out", jobs=1, max_runs=1)
    assert finished == 0 and runner.read_records(tmp_path / "out" / "bad" / "runs.jsonl") == []


def test_a_second_runner_of_the_same_campaign_stops_with_a_clear_error(tmp_path: Path) -> None:
    """Two runners would both take every pending run; the second must refuse and run nothing."""
    campaign = cmod.load_campaign(write_campaign(tmp_path, tiny_campaign("busy", seeds=1)))
    folder = runner.campaign_dir(campaign, tmp_path / "out")
    folder.mkdir(parents=True)
    with runner.campaign_lock(folder):
        assert (folder / ".runner.lock").read_text().strip() == str(os.getpid())
        with pytest.raises(runner.CampaignBusyError, match=f"in use by another runner.*held by pid {os.getpid()}"):
            runner.run_campaign(campaign, tmp_path / "out", jobs=1)
        proc = _run_cli(["run", str(tmp_path / "busy.yaml"), "--root", str(tmp_path / "out")], tmp_path)
        out, _ = proc.communicate(timeout=120)
        assert proc.returncode == 3 and "in use by another runner" in out, out
    assert not (folder / "runs.jsonl").exists() and not (folder / "report.md").exists()
    with runner.campaign_lock(folder):  # released on exit: the next runner gets it
        pass


def test_duplicate_records_count_once_in_the_report(finished_campaign: Path, tmp_path: Path) -> None:
    records = lines(finished_campaign)
    kept, dropped = runner.unique_records([*records, records[0], records[1]])
    assert kept == records and dropped == 2
    copy = tmp_path / "dup"
    copy.mkdir()
    (copy / "runs.jsonl").write_text(finished_campaign.read_text() + json.dumps(records[0]) + "\n")
    text = build_report(copy, plots=False)
    assert "1 duplicate record(s)" in text and f"({len(records)} finished runs)" in text


def test_report_resolves_success_rate_scores(finished_campaign: Path, tmp_path: Path) -> None:
    # MiniGrid returns lie in [0, 1]: one decimal printed 0.96 and 0.85 alike as 1.0 and 0.8
    scaled = []
    for i, record in enumerate(lines(finished_campaign)):
        score = [0.96016, 0.84712, 0.95512, 0.0][i % 4]
        curve = {**record["curve"], "returns": [score] * len(record["curve"]["returns"])}
        scaled.append({**record, "score": score, "curve": curve})
    copy = tmp_path / "rates"
    copy.mkdir()
    (copy / "runs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in scaled))
    text = build_report(copy, plots=False)
    assert "0.960" in text and "0.847" in text and "| 1.0 [" not in text
    assert "| 0.0 |" not in text.split("Every run's score")[1]  # per-run scores keep three decimals too
    cartpole = build_report(finished_campaign.parent, plots=False)  # returns in the tens: one decimal, as before
    assert re.search(r"\| none \| \d+ \| -?\d+\.\d \[-?\d+\.\d, -?\d+\.\d\] \|", cartpole), cartpole


def test_a_changed_arm_is_refused_until_its_old_values_are_pinned(
    finished_campaign: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Arms are zoo entries, which change; resuming must not mix two configurations under one arm name."""
    records = lines(finished_campaign)
    root = tmp_path / "out"
    (root / "tiny").mkdir(parents=True)
    (root / "tiny" / "runs.jsonl").write_text(finished_campaign.read_text())
    data = tiny_campaign(seeds=3)  # one more seed to run: a resume, not a finished campaign
    data["experiments"][0]["hyperparams"] = {**TINY_PPO, "n_epochs": 2}  # the entry changed since the runs
    changed = write_campaign(tmp_path, data)
    with pytest.raises(runner.CampaignChangedError, match=r"ppo CartPole-v1 none: recorded as .*\(n_epochs: 1 -> 2\)"):
        runner.run_campaign(cmod.load_campaign(changed), root, jobs=1)
    assert cli.main(["run", str(changed), "--dry-run", "--root", str(root)]) == 2
    assert "Pin the arm's old values with `overrides:`" in capsys.readouterr().err
    assert lines(root / "tiny" / "runs.jsonl") == records  # nothing ran, nothing was written

    data["experiments"][0]["arms"] = [{"name": arm, "norm": arm, "overrides": {"n_epochs": 1}} for arm in ("none", "rn")]
    runner.check_configurations(records, cmod.load_campaign(write_campaign(tmp_path, data)))  # pinned: accepted

    mixed = tmp_path / "mixed"
    mixed.mkdir()
    relabelled = [{**r, "config_hash": f"other{i}"} for i, r in enumerate(records)]
    (mixed / "runs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in relabelled))
    assert cli.main(["report", str(mixed)]) == 2
    assert "recorded under 2 configurations" in capsys.readouterr().err and not (mixed / "report.md").exists()
    unhashed = [{k: v for k, v in r.items() if k != "config_hash"} if r["seed"] == 0 else r for r in records]
    with pytest.raises(runner.CampaignChangedError, match="<no config_hash>"):  # cannot be checked: not trusted
        runner.check_configurations(unhashed)


DIVERGING_CALLBACK = """
from stable_baselines3.common.callbacks import BaseCallback


class DivergeAt(BaseCallback):
    def _on_step(self) -> bool:
        if self.num_timesteps >= 128:
            raise FloatingPointError("RegularityNorm output overflowed float32 (test)")
        return True
"""


def test_a_diverged_run_is_recorded_and_counts_as_the_worst_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, finished_campaign: Path
) -> None:
    """A seed that diverges would diverge on every retry: it must be recorded, not dropped (survivorship bias)."""
    from sb3_regnorm.benchmark import run

    (tmp_path / "bench_diverging_cb.py").write_text(DIVERGING_CALLBACK)
    monkeypatch.syspath_prepend(str(tmp_path))
    data = tiny_campaign("div", seeds=1)
    data["experiments"][0]["hyperparams"] = {**TINY_PPO, "callback": ["bench_diverging_cb.DivergeAt"]}
    spec = next(s for s in cmod.load_campaign(write_campaign(tmp_path, data)).runs() if s.arm == "rn")
    record = run.run_one(spec)
    assert record["score"] is None and record["diverged"]["error"].startswith("FloatingPointError: RegularityNorm output")
    assert 128 <= record["diverged"]["at_step"] == record["n_timesteps"] < 256
    assert len(record["curve"]["returns"]) >= 1  # what it learned before diverging is kept
    json.dumps(record)  # a runs.jsonl line
    records = lines(finished_campaign)
    copy = tmp_path / "with_diverged"
    copy.mkdir()
    same_arm = next(r for r in records if r["arm"] == "rn")  # the diverging callback is test scaffolding, not a config
    diverged = {**record, "campaign": same_arm["campaign"], "seed": 7, "config_hash": same_arm["config_hash"]}
    (copy / "runs.jsonl").write_text(finished_campaign.read_text() + json.dumps(diverged) + "\n")
    text = build_report(copy, plots=False)
    worst = min(r["score"] for r in records)
    assert "**Diverged runs**" in text and f"counted as the task's worst finished run ({worst:.1f})" in text
    rn_row = next(line for line in text.splitlines() if line.startswith("| rn | 3 |"))
    assert f"{worst:.1f} .." in rn_row  # the diverged seed is the arm's minimum, not left out
    assert "| diverged |" in text  # the per-seed table names it


def test_a_diverged_paper_run_is_recorded(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    from sb3_regnorm import nets
    from sb3_regnorm.benchmark import run

    build = nets.build_mlp

    class Overflow(torch.nn.Module):
        calls = 0

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            if self.training:
                Overflow.calls += 1
                if Overflow.calls > 5:
                    raise FloatingPointError("RegularityNorm statistics overflowed (test)")
            return x

    monkeypatch.setattr(nets, "build_mlp", lambda *a, **k: torch.nn.Sequential(build(*a, **k), Overflow()))
    settings = {"env_id": "CartPole-v1", "episodes": 12, "max_t": 30, "batch_size": 8, "buffer_size": 200, "score_window": 4}
    spec = cmod.RunSpec(
        campaign="p", protocol="paper_dqn", algo="dqn", env="CartPole-v1", norm="rn", arm="rn", seed=0,
        hyperparams={"norm": "rn", **settings}, eval={"points": 3, "episodes": 2, "n_envs": 1}, protocol_kwargs={},
    )  # fmt: skip
    record = run.run_one(spec)
    assert record["score"] is None and "statistics overflowed" in record["diverged"]["error"]
    assert record["learn_steps"] == 5 and record["diverged"]["at_step"] == record["n_timesteps"] > 0


def test_a_run_records_the_commit_it_started_from(monkeypatch: pytest.MonkeyPatch) -> None:
    """A commit made while a run trains must not relabel the code that ran (the process imported the old one)."""
    from sb3_regnorm.benchmark import run

    head = {"commit": "a" * 40}
    monkeypatch.setattr(run, "source_revision", lambda: head["commit"])

    def train_while_someone_commits(spec: cmod.RunSpec) -> dict[str, Any]:
        head["commit"] = "b" * 40
        return {"n_timesteps": 10, "score": 1.0, "eval_time_s": 0.0}

    monkeypatch.setattr(run, "_run_paper", train_while_someone_commits)
    spec = cmod.RunSpec(
        campaign="p", protocol="paper_dqn", algo="dqn", env="CartPole-v1", norm="none", arm="none", seed=0,
        hyperparams={"norm": "none"}, eval={"points": 3, "episodes": 2, "n_envs": 1}, protocol_kwargs={},
    )  # fmt: skip
    assert run.run_one(spec)["versions"]["sb3-regnorm-commit"] == "a" * 40


# ------------------------------------------------------------------------------------------ non-stationary envs
def test_phase_metrics_by_hand() -> None:
    from sb3_regnorm.benchmark.report import phase_metrics

    run = {
        "hyperparams": {"env_kwargs": {"switch_every": 100}},
        "curve": {
            "steps": [50, 100, 150, 200, 250, 300, 350, 400],
            "phase": [0, 0, 1, 1, 0, 0, 1, 1],  # phases cycle: segment 2 is phase 0 again, segment 3 phase 1
            "switches": [0, 0, 1, 1, 2, 2, 3, 3],
            "returns": [90, 100, -50, 96, 0, 5, 10, 30],
        },
    }
    m = phase_metrics(run)
    # segment 0 (learning from scratch) is left out of the per-phase means
    assert m.means == {0: pytest.approx(2.5), 1: pytest.approx((-50 + 96 + 10 + 30) / 4)}
    # drop = mean of the last two evaluations before the switch - the first one after it
    assert m.drops == [pytest.approx(95 - -50), pytest.approx(23 - 0), pytest.approx(2.5 - 10)]
    # into phase 1 (segment 1): never seen before, no recovery measured; into phase 0 (segment 2): its level was 95
    # (threshold 85), never reached; into phase 1 again (segment 3): level 23, threshold 13, reached by 30 at step 400,
    # 50 steps after the segment's first evaluation
    assert m.recovery == [None, 50.0]
    flat = {**run, "curve": {**run["curve"], "returns": [-100.0] * 8}}  # an arm that never learns
    assert phase_metrics(flat).recovery == [0.0, 0.0] and phase_metrics(flat).drops == [0.0] * 3


def test_nonstationary_run_evaluates_in_the_training_phase() -> None:
    """A tiny run on an agent-clock env: every evaluation is tagged with (and run in) the phase training is in."""
    pytest.importorskip("sb3_regnorm.phase_clock")
    from sb3_regnorm.benchmark.run import run_one

    data = {
        "name": "tiny-ns",
        "seeds": 1,
        "eval": {"points": 4, "episodes": 1, "n_envs": 1},
        "experiments": [
            {
                "algo": "ppo",
                "env": "CartPoleObsShift-v0",
                "hyperparams": {
                    **TINY_PPO,
                    "n_timesteps": 512,
                    "env_kwargs": {"switch_every": 128},
                    "callback": ["sb3_regnorm.phase_clock.PhaseClockCallback"],
                },
                "arms": ["rn"],
            }
        ],
    }
    (spec,) = cmod.campaign_from_dict(data, "test").runs()
    record = run_one(spec)
    phases, switches, steps = record["curve"]["phase"], record["curve"]["switches"], record["curve"]["steps"]
    # CartPoleObsShift cycles through 4 phases: switch k puts the env in phase k % 4; none on the budget's last step
    assert switches == [min(s // 128, 3) for s in steps] == [1, 2, 3, 3] and phases == [1, 2, 3, 3]


def test_evaluations_during_training_leave_what_confirm_trains(tmp_path: Path) -> None:
    """Evaluations with sampled actions must not move training's random streams: the run's final policy, scored as
    `confirm` scores it, is the one `confirm` trains for the same seed (so its seeds 0-2 can confirm a zoo entry)."""
    from sb3_regnorm.benchmark.run import run_one
    from sb3_regnorm.training import report_eval_settings, train_and_score

    data = {
        "name": "rng",
        "seeds": 1,
        "eval": {"points": 4, "episodes": 2, "n_envs": 1, "deterministic": False},
        "experiments": [{"algo": "a2c", "env": "LunarLander-v3", "arms": [{"name": "rn", "norm": "rn",
                                                                        "overrides": {"n_timesteps": 400}}]}],
    }  # fmt: skip
    (spec,) = cmod.campaign_from_dict(data, "test").runs()
    record = run_one(spec)
    assert record["curve"]["deterministic"] is False and len(record["curve"]["returns"]) == 4
    settings = report_eval_settings("LunarLander-v3", 0)
    mean, std = train_and_score("a2c", "LunarLander-v3", spec.hyperparams, 0, tmp_path, settings)
    assert record["report_eval"]["training_rng_untouched"] is True
    assert (record["report_eval"]["mean"], record["report_eval"]["std"]) == pytest.approx((mean, std), rel=1e-9)
