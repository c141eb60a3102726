"""The Ray backend: each run a Ray task on a local Ray instance this test starts, same runs.jsonl as the local pool."""

from __future__ import annotations

import io
import shutil
import tempfile
from pathlib import Path

import pytest

from sb3_regnorm.benchmark import campaign as cmod
from sb3_regnorm.benchmark import runner

ray = pytest.importorskip("ray", reason="the Ray backend is an optional extra: pip install 'sb3-regnorm[ray]'")

TINY_PPO = {"n_envs": 2, "n_timesteps": 256, "n_steps": 32, "batch_size": 32, "n_epochs": 1}


def test_ray_backend_runs_each_run_as_a_task_and_resumes(tmp_path: Path) -> None:
    data = {
        "name": "tiny-ray",
        "seeds": 1,
        "eval": {"points": 2, "episodes": 1, "n_envs": 1},
        "experiments": [{"algo": "ppo", "env": "CartPole-v1", "hyperparams": TINY_PPO, "arms": ["none", "rn"]}],
    }
    campaign = cmod.campaign_from_dict(data, "test")
    ray_dir = tempfile.mkdtemp(prefix="ray", dir="/tmp")  # Ray's socket paths must stay under 107 bytes
    ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False, _temp_dir=ray_dir)
    try:
        out = io.StringIO()
        assert runner.run_campaign(campaign, tmp_path / "out", backend="ray", max_runs=1, out=out) == 1
        assert runner.run_campaign(campaign, tmp_path / "out", backend="ray", out=out) == 1  # resumes: the other arm
        assert runner.run_campaign(campaign, tmp_path / "out", backend="ray", out=out) == 0
    finally:
        ray.shutdown()
        shutil.rmtree(ray_dir, ignore_errors=True)
    records = runner.read_records(tmp_path / "out" / "tiny-ray" / "runs.jsonl")
    assert sorted(r["arm"] for r in records) == ["none", "rn"]
    assert all(r["torch_threads"] == 1 and len(r["curve"]["returns"]) == 2 for r in records)
    assert "nothing left to run" in out.getvalue()
