"""RegularityNorm and the RN policies on a real CUDA device (skipped on machines without one, CI included).

The device path is otherwise tested on CPU tensors (``tests/test_layers.py``, ``path == "device"``); these tests
check what only a GPU shows: the same numbers as the host path, no host synchronisation in a training step, float64
state that stays float64 and on the device, and agents that train with their RN buffers on the GPU.
"""

from __future__ import annotations

import copy

import pytest
import torch
from stable_baselines3 import DQN, PPO

from sb3_regnorm import RegularityNorm, RNActorCriticPolicy, RNDQNPolicy, find_regularity_norms
from tests.reference import drifting_batches

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
F64 = torch.float64
CUDA = torch.device("cuda")


@pytest.mark.parametrize("variant", ["rn", "rln"])
@pytest.mark.parametrize("dtype", [torch.float32, F64])
@pytest.mark.parametrize("kwargs", [{}, {"exact_var": True, "momentum": 0.1}, {"max_gain": 0.5}])
def test_cuda_matches_the_cpu_host_path(variant: str, dtype: torch.dtype, kwargs: dict) -> None:
    """Outputs, input gradients, code lengths and state over drifting batches (one with a prior), then eval."""
    torch.manual_seed(0)  # the upstream gradients and the eval batch: a near-tolerance failure must reproduce
    gpu = RegularityNorm(8, variant, **kwargs).to(CUDA)
    cpu = RegularityNorm(8, variant, fused=False, **kwargs)
    tol = {"rtol": 1e-9, "atol": 1e-10} if dtype == F64 else {"rtol": 2e-5, "atol": 2e-5}
    for t, x in enumerate(b.to(dtype) for b in drifting_batches(8, [32, 8, 64, 1, 16])):
        prior = torch.linspace(0.1, 1.0, x.shape[0], dtype=F64) if t == 2 else None
        x_gpu, x_cpu = x.to(CUDA, copy=True).requires_grad_(True), x.clone().requires_grad_(True)
        y_gpu = gpu(x_gpu, prior=None if prior is None else prior.to(CUDA))
        y_cpu = cpu(x_cpu, prior=prior)
        upstream = torch.randn_like(y_cpu)
        (y_gpu * upstream.to(CUDA)).sum().backward()
        (y_cpu * upstream).sum().backward()
        assert y_gpu.device.type == "cuda" and y_gpu.dtype == dtype
        torch.testing.assert_close(y_gpu.cpu(), y_cpu, **tol)
        torch.testing.assert_close(x_gpu.grad.cpu(), x_cpu.grad, **tol)
        torch.testing.assert_close(gpu.last_code_length.cpu(), cpu.last_code_length, **tol)
        for key, value in cpu.state_dict().items():
            torch.testing.assert_close(gpu.state_dict()[key].cpu(), value, **tol, msg=key)
    gpu.eval(), cpu.eval()
    x = torch.randn(5, 8, dtype=dtype)
    torch.testing.assert_close(gpu(x.to(CUDA)).cpu(), cpu(x), **tol)


@pytest.mark.parametrize("variant", ["rn", "rln"])
def test_cuda_training_step_never_synchronises_with_the_host(variant: str) -> None:
    """The device path's reason to exist: a forward+backward that reads nothing back to the host (after the first
    call, without a prior: checking a prior's range is the one synchronisation it costs)."""
    layer = RegularityNorm(64, variant).to(CUDA)
    batches = [torch.randn(128, 64, device=CUDA, requires_grad=True) for _ in range(3)]
    layer(batches[0]).sum().backward()  # first call: lazy CUDA/autograd initialisation may synchronise
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for x in batches[1:]:
            layer(x).sum().backward()
        layer.eval()
        with torch.no_grad():
            layer(batches[0])
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert torch.isfinite(layer.running_mean).all()


def test_state_stays_float64_across_device_and_dtype_moves() -> None:
    """A model trained on CPU and loaded onto a GPU (SB3's ``load(..., device="cuda")``) keeps its float64 state
    through ``.to``/``.half()``/``.float()`` and trains on from it as the CPU copy does."""
    torch.manual_seed(0)
    layer = RegularityNorm(4, "rn", fused=False)
    layer(torch.randn(16, 4))
    state = {k: v.clone() for k, v in layer.state_dict().items()}
    cpu_copy = copy.deepcopy(layer)
    layer = layer.to(CUDA).half().float()
    assert all(b.device.type == "cuda" for b in layer.buffers())
    assert all(b.dtype == F64 for b in layer.buffers())
    for x in (torch.randn(16, 4), torch.randn(3, 4) + 2.0):
        torch.testing.assert_close(layer(x.to(CUDA)).cpu(), cpu_copy(x), rtol=2e-5, atol=2e-5)
    for key, value in cpu_copy.state_dict().items():
        torch.testing.assert_close(layer.state_dict()[key].cpu(), value, rtol=1e-9, atol=1e-10, msg=key)
    layer = layer.cpu()
    assert all(b.device.type == "cpu" and b.dtype == F64 for b in layer.buffers())
    assert not torch.equal(layer.running_mean, state["running_mean"])  # it trained on the GPU


AGENTS = {
    "ppo": (PPO, RNActorCriticPolicy, {"n_steps": 64, "batch_size": 32, "n_epochs": 2}),
    "dqn": (DQN, RNDQNPolicy, {"learning_starts": 32, "train_freq": 4, "batch_size": 32}),
}


@pytest.mark.parametrize("algo", list(AGENTS))
def test_agent_trains_with_rn_buffers_on_the_gpu(algo: str) -> None:
    algo_class, policy, kwargs = AGENTS[algo]
    policy_kwargs = {"norm": "rn", "net_arch": [32, 32]}
    model = algo_class(policy, "CartPole-v1", seed=0, device="cuda", policy_kwargs=policy_kwargs, **kwargs)
    trained = model.policy if algo == "ppo" else model.policy.q_net  # DQN's target net only follows at syncs
    layers = [layer for _, layer in find_regularity_norms(trained)]
    assert layers, "the policy has RN layers"
    before = [layer.running_mean.clone() for layer in layers]
    model.learn(256)
    for layer, old in zip(layers, before, strict=True):
        assert layer.running_mean.device.type == "cuda" and layer.running_mean.dtype == F64
        assert torch.isfinite(layer.running_mean).all() and not torch.equal(layer.running_mean, old)
    action, _ = model.predict(model.env.observation_space.sample(), deterministic=True)
    assert model.env.action_space.contains(int(action))
