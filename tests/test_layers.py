"""RegularityNorm against the reference formulas, plus its train/eval, gradient, state and bad-input contracts.

Every test runs on the three paths (``path`` fixture): the fused C++ kernel, the pure host path (Python-float state)
and the device path (tensor state, no host synchronisation) forced onto CPU tensors.
"""

from __future__ import annotations

import copy
import math

import pytest
import torch
from hypothesis import example, given, settings
from hypothesis import strategies as st
from torch import nn

from sb3_regnorm import RegularityNorm, _fused, find_regularity_norms
from tests.reference import RefState, drifting_batches, reference_step

torch.set_num_threads(1)
F64 = torch.float64
PATHS = ("fused", "pure", "device")


@pytest.fixture(autouse=True, params=PATHS)
def path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run the test on one implementation path of RegularityNorm."""
    if request.param == "fused" and not _fused.available():
        pytest.skip(f"fused kernel unavailable: {_fused.load_error()}")
    if request.param != "fused":
        monkeypatch.setattr(_fused, "ops", lambda: None)
    if request.param == "device":
        monkeypatch.setattr(RegularityNorm, "_device_path", True)
    return str(request.param)


def snapshot(layer: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in layer.state_dict().items()}


def assert_same_state(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def assert_finite_training_step(layer: RegularityNorm, x: torch.Tensor) -> None:
    """One training forward+backward: output, input gradient and every buffer finite, code length >= 0."""
    x = x.clone().requires_grad_(True)
    y = layer(x)
    y.sum().backward()
    assert torch.isfinite(y).all() and torch.isfinite(x.grad).all()
    assert all(torch.isfinite(b).all() for b in layer.buffers())
    assert (layer.last_code_length >= 0).all()


# ---------------------------------------------------------------------------------------------- reference oracle
@pytest.mark.parametrize("variant", ["rn", "rln"])
@pytest.mark.parametrize("exact_var", [False, True])
def test_train_matches_reference_values_gradients_and_state(variant: str, exact_var: bool) -> None:
    layer = RegularityNorm(6, variant, exact_var=exact_var)
    state: RefState | None = None
    for x in drifting_batches(6, [32, 8, 64, 1, 5, 32, 16]):
        x_ours, x_ref = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
        y = layer(x_ours)
        y_ref, length_ref, state = reference_step(x_ref, state, variant, exact_var)
        upstream = torch.randn_like(y)
        (y * upstream).sum().backward()
        (y_ref * upstream).sum().backward()
        torch.testing.assert_close(y, y_ref, rtol=1e-10, atol=1e-10)
        torch.testing.assert_close(x_ours.grad, x_ref.grad, rtol=1e-9, atol=1e-10)
        torch.testing.assert_close(layer.last_code_length, length_ref.detach(), rtol=1e-10, atol=1e-10)
        torch.testing.assert_close(layer.running_mean, state.mean, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(layer.running_var.sqrt(), state.std, rtol=1e-10, atol=1e-12)
        assert layer.running_count.item() == state.count
        torch.testing.assert_close(layer.running_comp, state.comp, rtol=1e-10, atol=1e-10)


def test_float32_input_tracks_float64_reference() -> None:
    layer = RegularityNorm(16)
    state = None
    for x in drifting_batches(16, [64] * 20):
        y = layer(x.float())
        y_ref, _, state = reference_step(x, state)
        torch.testing.assert_close(y.double(), y_ref, rtol=1e-4, atol=1e-4)
    assert layer.running_comp.dtype == F64


def test_stationary_gain_grows_like_log_t() -> None:
    """paper.md A.5: on N(0,1) batches of 64x64 the code length is about log t."""
    gen = torch.Generator().manual_seed(1)
    layer = RegularityNorm(64)
    lengths = []
    for _ in range(100):
        layer(torch.randn(64, 64, generator=gen))
        lengths.append(layer.last_code_length.item())
    assert lengths[0] == pytest.approx(0.0, abs=1e-3)
    assert lengths[1] == pytest.approx(0.69, abs=0.03)
    assert lengths[9] == pytest.approx(2.31, abs=0.05)
    assert lengths[99] == pytest.approx(4.61, abs=0.05)
    assert all(length >= 0 for length in lengths)


def test_irregular_batch_gets_larger_gain() -> None:
    gen = torch.Generator().manual_seed(2)
    layer = RegularityNorm(32)
    for _ in range(50):
        layer(torch.randn(64, 32, generator=gen))
    probe = copy.deepcopy(layer)
    probe(torch.randn(64, 32, generator=gen))
    regular = probe.last_code_length.item()
    layer(torch.randn(64, 32, generator=gen) * 3 + 2)
    assert layer.last_code_length.item() > regular + 0.5


# ---------------------------------------------------------------------------------------------- bounded gain
def test_momentum_bounds_the_gain_near_minus_log_momentum() -> None:
    gen = torch.Generator().manual_seed(3)
    layer = RegularityNorm(32, momentum=0.05)
    for _ in range(400):
        layer(torch.randn(64, 32, generator=gen))
    assert layer.last_code_length.item() == pytest.approx(-math.log(0.05), abs=0.15)
    assert layer.running_count.item() == pytest.approx(64 * 32 / 0.05, rel=0.01)
    regular = layer.last_code_length.item()
    layer(torch.randn(64, 32, generator=gen) * 4 + 3)
    assert layer.last_code_length.item() > regular + 1.0


def test_momentum_changes_the_faithful_default_only_when_set() -> None:
    batches = drifting_batches(8, [16, 16, 16])
    a, b = RegularityNorm(8), RegularityNorm(8, momentum=0.1)
    for x in batches:
        a(x)
        b(x)
    assert a.last_code_length.item() > b.last_code_length.item()


# ---------------------------------------------------------------------------------------------- eval semantics
def test_eval_before_training_is_identity_and_writes_nothing() -> None:
    layer = RegularityNorm(4).eval()
    before = snapshot(layer)
    x = torch.randn(3, 4)
    assert torch.equal(layer(x), x)
    assert math.isnan(layer.last_code_length.item())
    assert not layer.initialized
    assert_same_state(before, snapshot(layer))


@pytest.mark.parametrize("variant", ["rn", "rln"])
@pytest.mark.parametrize("rescale", [True, False])
def test_eval_never_writes_a_buffer(variant: str, rescale: bool) -> None:
    layer = RegularityNorm(8, variant, rescale=rescale, momentum=0.1)
    for x in drifting_batches(8, [16, 16]):
        layer(x)
    layer.eval()
    before = snapshot(layer)
    for x in drifting_batches(8, [1, 5, 64], seed=9):
        layer(x)
        layer(x, prior=torch.full((x.shape[0],), 0.5, dtype=F64))
    layer(torch.full((2, 8), float("inf")))
    assert_same_state(before, snapshot(layer))


def test_eval_gain_equals_next_training_gain_for_training_batch_size() -> None:
    """Eval uses softplus(COMP - S): the gain a training step would give the batch under the frozen Gaussian."""
    layer = RegularityNorm(8)
    for x in drifting_batches(8, [32] * 5):
        layer(x)
    x = torch.randn(32, 8, dtype=F64)
    mu, sigma = layer.running_mean, layer.running_var.sqrt()
    score = torch.distributions.Normal(mu, sigma).log_prob(x).logsumexp((0, 1))
    expected = torch.logaddexp(layer.running_comp, score) - score
    layer.eval()
    torch.testing.assert_close(layer(x), expected * x)
    torch.testing.assert_close(layer.last_code_length, expected)


@pytest.mark.parametrize("variant", ["rn", "rln"])
def test_eval_gain_does_not_depend_on_batch_size(variant: str) -> None:
    gen = torch.Generator().manual_seed(4)
    corrected, raw = RegularityNorm(32, variant), RegularityNorm(32, variant, eval_size_correction=False)
    for _ in range(100):
        x = torch.randn(64, 32, generator=gen)
        corrected(x)
        raw(x)
    train_gain = corrected.last_code_length.mean().item()
    corrected.eval()
    raw.eval()
    x = torch.randn(256, 32, generator=gen)
    gains, raw_gains = {}, {}
    for b in (1, 8, 64, 256):
        corrected(x[:b])
        raw(x[:b])
        gains[b], raw_gains[b] = corrected.last_code_length.mean().item(), raw.last_code_length.mean().item()
    assert max(gains.values()) - min(gains.values()) < 0.5, gains
    assert all(abs(g - train_gain) < 0.5 for g in gains.values())
    assert raw_gains[1] - raw_gains[64] > math.log(64) - 0.5  # the reference's shift, removed by the correction


@pytest.mark.parametrize("variant", ["rn", "rln"])
def test_frozen_eval_gain_ignores_the_batch_and_matches_the_last_training_score(variant: str) -> None:
    layer = RegularityNorm(8, variant, eval_gain="frozen")
    batches = drifting_batches(8, [32] * 4)
    for x in batches:
        layer(x)
    expected = torch.logaddexp(layer.running_comp, layer.running_score) - layer.running_score
    twin = RegularityNorm(8, variant)
    twin.load_state_dict(layer.state_dict())
    layer.eval(), twin.eval()
    before = snapshot(layer)
    for x in (torch.randn(3, 8, dtype=F64), torch.randn(50, 8, dtype=F64) * 10 + 4):
        scale = expected.view(1, -1) if variant == "rln" else expected
        torch.testing.assert_close(layer(x), scale * x)
    twin(batches[-1])  # the batch-scored eval gain on the last training batch is the frozen one
    torch.testing.assert_close(twin.last_code_length, expected, rtol=1e-6, atol=1e-6)
    assert_same_state(before, snapshot(layer))
    with pytest.raises(ValueError, match="Unknown eval_gain 'fast'"):
        RegularityNorm(8, eval_gain="fast")


# ---------------------------------------------------------------------------------------------- gradients
@pytest.mark.parametrize(
    "kwargs,shape",
    [
        ({}, (5, 3)),
        ({"variant": "rln"}, (5, 3)),
        ({"exact_var": True}, (4, 3)),
        ({"variant": "rln", "exact_var": True, "momentum": 0.2}, (4, 3)),
        ({}, (2, 3, 2, 2)),
        ({"variant": "rln"}, (2, 3, 2, 2)),
    ],
)
@pytest.mark.parametrize("warm", [False, True])
def test_gradcheck(kwargs: dict, shape: tuple[int, ...], warm: bool) -> None:
    layer = RegularityNorm(shape[1], **kwargs)
    if warm:
        for x in drifting_batches(shape[1], [7, 3]):
            layer(x.reshape(-1, shape[1], *([1] * (len(shape) - 2))).expand(-1, *shape[1:]).contiguous())

    def fresh_forward(x: torch.Tensor) -> torch.Tensor:
        return copy.deepcopy(layer)(x)  # every gradcheck evaluation sees the same prior state

    x = torch.randn(*shape, dtype=F64, requires_grad=True)
    assert torch.autograd.gradcheck(fresh_forward, (x,), eps=1e-6, atol=1e-6, rtol=1e-5)


def test_detach_gain_passes_gain_times_upstream_only() -> None:
    layer = RegularityNorm(4, detach_gain=True)
    layer(torch.randn(8, 4, dtype=F64))
    x = torch.randn(8, 4, dtype=F64, requires_grad=True)
    y = layer(x)
    y.sum().backward()
    torch.testing.assert_close(x.grad, torch.full_like(x, layer.last_code_length.item()))


def test_buffers_are_float64_running_and_never_require_grad() -> None:
    layer = RegularityNorm(5, "rln")
    x = torch.randn(4, 5, requires_grad=True)
    layer(x).sum().backward()
    buffers = dict(layer.named_buffers())
    assert set(buffers) == {
        "running_mean",
        "running_var",
        "running_count",
        "running_comp",
        "running_updates",
        "running_refsize",
        "running_score",
    }
    assert all(b.dtype == F64 and not b.requires_grad and b.grad_fn is None for b in buffers.values())
    assert buffers["running_comp"].shape == (5,)
    assert list(layer.parameters()) == []


# ---------------------------------------------------------------------------------------------- state
def test_state_dict_round_trip_reproduces_eval_and_training() -> None:
    layer = RegularityNorm(8, "rln", momentum=0.01)
    for x in drifting_batches(8, [16, 4, 16]):
        layer(x)
    clone = RegularityNorm(8, "rln", momentum=0.01)
    clone.load_state_dict(layer.state_dict())
    assert_same_state(snapshot(layer), snapshot(clone))
    x = torch.randn(10, 8, dtype=F64)
    layer.eval(), clone.eval()
    assert torch.equal(layer(x), clone(x))
    layer.train(), clone.train()
    assert torch.equal(layer(x), clone(x))
    assert_same_state(snapshot(layer), snapshot(clone))


def test_reset_running_stats_restarts_from_scratch() -> None:
    fresh, used = RegularityNorm(4), RegularityNorm(4)
    for x in drifting_batches(4, [8, 8]):
        used(x)
    used.reset_running_stats()
    assert_same_state(snapshot(fresh), snapshot(used))
    assert math.isnan(used.last_code_length.item())
    x = torch.randn(8, 4)
    assert torch.equal(fresh(x), used(x))


def test_probe_returns_input_and_tracks_the_same_statistics() -> None:
    probe, rescaler = RegularityNorm(8, rescale=False), RegularityNorm(8)
    for x in drifting_batches(8, [16, 3, 16]):
        assert probe(x) is x
        rescaler(x)
        assert probe.last_code_length.item() == rescaler.last_code_length.item()
    assert_same_state(snapshot(probe), snapshot(rescaler))


def test_extra_repr_and_finder() -> None:
    model = nn.Sequential(nn.Linear(3, 4), RegularityNorm(4, "rln", momentum=0.01), nn.Sequential(RegularityNorm(4)))
    assert "4, variant='rln', momentum=0.01" in repr(model)
    assert [name for name, _ in find_regularity_norms(model)] == ["1", "2.0"]


# ---------------------------------------------------------------------------------------------- saliency prior
def test_prior_adds_minus_log_s_per_sample_and_is_consumed() -> None:
    layer = RegularityNorm(4)
    layer(torch.randn(8, 4, dtype=F64))
    twin = copy.deepcopy(layer)
    x = torch.randn(3, 4, dtype=F64)
    prior = torch.tensor([1.0, 0.5, 0.1], dtype=F64)
    layer.set_prior(prior)
    y = layer(x)
    base = twin(x)
    torch.testing.assert_close(y, base - torch.log(prior)[:, None] * x)
    assert torch.equal(layer(x), twin(x))  # consumed by the forward above
    assert torch.equal(layer.running_comp, twin.running_comp)  # the prior never enters COMP


def test_prior_gradient() -> None:
    layer = RegularityNorm(3)
    prior = torch.tensor([0.3, 1.0, 0.7], dtype=F64)
    x = torch.randn(3, 3, dtype=F64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: copy.deepcopy(layer)(t, prior=prior), (x,))


# ---------------------------------------------------------------------------------------------- bad input
def test_bad_arguments_raise_clear_errors() -> None:
    with pytest.raises(ValueError, match="Unknown RegularityNorm variant 'rbn'"):
        RegularityNorm(4, "rbn")
    with pytest.raises(ValueError, match="num_features"):
        RegularityNorm(0)
    with pytest.raises(ValueError, match="momentum"):
        RegularityNorm(4, momentum=1.0)
    layer = RegularityNorm(4)
    with pytest.raises(ValueError, match=r"expects input of shape \(batch, 4, ...\), got \(2, 5\)"):
        layer(torch.randn(2, 5))
    with pytest.raises(ValueError, match="expects input of shape"):
        layer(torch.randn(4))
    with pytest.raises(ValueError, match=r"prior values must lie in \(0, 1\]"):
        layer(torch.randn(2, 4), prior=torch.tensor([0.5, 1.5]))
    with pytest.raises(ValueError, match=r"prior values must lie in \(0, 1\]"):
        layer(torch.randn(2, 4), prior=torch.tensor([0.0, 1.0]))
    with pytest.raises(ValueError, match="one value per sample"):
        layer(torch.randn(2, 4), prior=torch.tensor([0.5, 0.5, 0.5]))
    with pytest.raises(ValueError, match="floating point"):
        layer(torch.ones(2, 4, dtype=torch.long))


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
@pytest.mark.parametrize("variant", ["rn", "rln"])
def test_non_finite_training_input_raises_and_leaves_state(bad: float, variant: str, path: str) -> None:
    layer = RegularityNorm(4, variant)
    layer(torch.randn(8, 4))
    before = snapshot(layer)
    x = torch.randn(8, 4)
    x[3, 2] = bad
    if path == "device":  # raising would synchronise the host: the update is masked instead
        assert not torch.isfinite(layer(x)[3, 2])
    else:
        with pytest.raises(ValueError, match="non-finite activations"):
            layer(x)
    assert_same_state(before, snapshot(layer))


@pytest.mark.parametrize("variant", ["rn", "rln"])
@pytest.mark.parametrize("frozen", [False, True])
def test_eval_nan_raises_and_inf_stays_local(variant: str, frozen: bool, path: str) -> None:
    """A NaN cannot be scored (ValueError, batch-scored eval on CPU); an infinite element does not spoil the batch."""
    layer = RegularityNorm(4, variant, eval_gain="frozen" if frozen else "batch")
    for x in drifting_batches(4, [16, 16]):
        layer(x)
    layer.eval()
    x = torch.randn(6, 4, dtype=F64)
    clean = layer(x)
    x[2, 1] = float("inf")
    y = layer(x)
    assert torch.isinf(y[2, 1])
    mask = torch.ones_like(x, dtype=torch.bool)
    mask[2, 1] = False
    assert torch.isfinite(y[mask]).all()
    if frozen:
        torch.testing.assert_close(y[mask], clean[mask])
    x[2, 1] = float("nan")
    if frozen or path == "device":
        y = layer(x)
        assert torch.isnan(y[2, 1]) and torch.isfinite(y[mask]).all()
    else:
        with pytest.raises(ValueError, match="non-finite activations"):
            layer(x)


@pytest.mark.parametrize("variant", ["rn", "rln"])
def test_degenerate_batches_stay_finite(variant: str) -> None:
    layer = RegularityNorm(1, variant)
    batches = [
        torch.tensor([[0.7]]),  # one element, first batch
        torch.tensor([[0.2]]),  # one element again
        torch.full((16, 1), 3.0),  # constant batch
        torch.randn(16, 1) * 1e6,  # huge values
        torch.full((16, 1), -1e6),
        torch.randn(16, 1),
    ]
    for x in batches:
        assert_finite_training_step(layer, x)
    layer.eval()
    for x in batches:
        assert torch.isfinite(layer(x)).all()


def test_float32_sums_that_overflow_fall_back_to_float64() -> None:
    layer = RegularityNorm(4)
    x = torch.full((8, 4), 1e30)  # squares and sums overflow float32
    x[0] = -1e30
    y = layer(x)
    assert torch.isfinite(layer.running_mean) and torch.isfinite(layer.running_var)
    assert torch.isfinite(y).all()


@settings(max_examples=60, deadline=None)
@example(variant="rln", momentum=None, exact_var=False, batches=[(1, -325786.0, 1.0, 0), (5, 29191.0, 4314.0, 0)])
@given(
    variant=st.sampled_from(["rn", "rln"]),
    momentum=st.sampled_from([None, 0.05]),
    exact_var=st.booleans(),
    batches=st.lists(
        st.tuples(st.integers(1, 6), st.floats(-1e6, 1e6), st.floats(1e-3, 1e4), st.integers(0, 2**16)),
        min_size=1,
        max_size=5,
    ),
)
def test_property_outputs_and_state_stay_finite(variant, momentum, exact_var, batches) -> None:
    layer = RegularityNorm(3, variant, momentum=momentum, exact_var=exact_var)
    for size, loc, scale, seed in batches:
        assert_finite_training_step(layer, torch.randn(size, 3, generator=torch.Generator().manual_seed(seed)) * scale + loc)
    layer.eval()
    assert torch.isfinite(layer(torch.randn(2, 3) * 1e3)).all()


# ---------------------------------------------------------------------------------------------- RN + LN
def test_layernorm_then_rn_composition() -> None:
    """The paper's RN+LN: Linear -> LayerNorm -> RN -> act; the scalar gain survives because RN comes after LN."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(5, 6), nn.LayerNorm(6), RegularityNorm(6), nn.ReLU()).double()
    x = torch.randn(9, 5, dtype=F64)
    y = net(x)
    normed = net[1](net[0](x))
    torch.testing.assert_close(y, torch.relu(net[2].last_code_length * normed))
    rn = net[2]
    assert torch.autograd.gradcheck(lambda t: copy.deepcopy(net)(t), (x.clone().requires_grad_(True),))
    y = net(x)
    y.sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in net.parameters())
    assert rn.running_updates.item() == 2


# ---------------------------------------------------------------------------------------------- dtype safety
@pytest.mark.parametrize("cast", ["half", "bfloat16", "float"])
def test_module_casts_keep_the_float64_state(cast: str) -> None:
    """``.half()`` etc. convert parameters, never RN's state: the count must not overflow float16 after 4 updates."""
    net = nn.Sequential(nn.Linear(16, 64), RegularityNorm(64))
    rn = net[1]
    for x in drifting_batches(16, [64, 64]):
        net(x.float())
    comp = rn.running_comp.clone()
    getattr(net, cast)()
    assert all(b.dtype == F64 for b in rn.buffers())
    assert torch.equal(rn.running_comp, comp)  # bit-exact
    dtype = net[0].weight.dtype
    for x in drifting_batches(16, [64] * 4, seed=3):
        net(x.to(dtype))
    assert rn.running_count.item() == 64 * 64 * 6 and torch.isfinite(rn.running_comp).all()
    net.double()
    assert all(b.dtype == F64 for b in rn.buffers())


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_low_precision_output_overflow_raises_at_small_gain(dtype: torch.dtype, path: str) -> None:
    if path == "device":
        pytest.skip("the device path never synchronises to raise")
    gen = torch.Generator().manual_seed(5)
    layer = RegularityNorm(16)
    for _ in range(1000):  # gain ~ log(1000) = 6.9
        layer(torch.randn(64, 16, generator=gen))
    x = torch.randn(64, 16, generator=gen) * 1e4
    before = snapshot(layer)
    if dtype == torch.float16:
        with pytest.raises(FloatingPointError, match=r"overflowed torch\.float16"):
            layer(x.to(dtype))
        assert_same_state(before, snapshot(layer))
    x = (x * 2e33 if dtype == torch.bfloat16 else x).to(dtype)  # bfloat16 spans float32's range
    with pytest.raises(FloatingPointError, match="overflowed"):
        layer(x)
    layer.eval()
    with pytest.raises(FloatingPointError, match="overflowed"):
        layer(x)


@pytest.mark.parametrize("training", [True, False])
def test_overflow_through_the_prior_term_raises_and_leaves_state(training: bool, path: str) -> None:
    if path == "device":
        pytest.skip("the device path never synchronises to raise")
    layer = RegularityNorm(4)
    layer(torch.randn(8, 4))
    layer.train(training)
    before = snapshot(layer)
    x = torch.full((2, 4), 3e37)
    with pytest.raises(FloatingPointError, match=r"overflowed torch\.float32"):
        layer(x, prior=torch.tensor([1e-30, 1.0]))
    assert_same_state(before, snapshot(layer))


# ---------------------------------------------------------------------------------------------- paths agree
@pytest.mark.parametrize("variant", ["rn", "rln"])
@pytest.mark.parametrize("shape", [(32, 6), (4, 6, 3, 2)])
@pytest.mark.parametrize(
    "kwargs", [{}, {"exact_var": True, "momentum": 0.1}, {"max_gain": 0.5}, {"detach_gain": True}, {"eval_gain": "frozen"}]
)
@pytest.mark.parametrize("dtype", [torch.float32, F64])
def test_path_matches_the_pure_host_path(
    variant: str, shape: tuple[int, ...], kwargs: dict, dtype: torch.dtype, path: str
) -> None:
    """Outputs, code lengths, state and input gradients of this path against the pure host path, with a prior."""
    if path == "pure":
        pytest.skip("the pure host path is the oracle here")
    ours, oracle = RegularityNorm(6, variant, **kwargs), RegularityNorm(6, variant, fused=False, **kwargs)
    tol = {"rtol": 1e-9, "atol": 1e-10} if dtype == F64 else {"rtol": 2e-5, "atol": 2e-5}
    for t, x in enumerate(drifting_batches(6, [shape[0]] * 4)):
        x = x.reshape(-1, 6, *([1] * (len(shape) - 2))).expand(-1, *shape[1:]) * (1 + torch.rand(shape, dtype=F64))
        prior = torch.rand(shape[0], dtype=F64) * 0.9 + 0.1 if t == 2 else None
        xs = [x.to(dtype).requires_grad_(True) for _ in range(2)]
        ys = [ours(xs[0], prior=prior)]
        RegularityNorm._device_path = False  # the oracle runs on the host path
        try:
            ys.append(oracle(xs[1], prior=prior))
        finally:
            RegularityNorm._device_path = path == "device"
        upstream = torch.randn_like(ys[0])
        for y in ys:
            (y * upstream).sum().backward()
        torch.testing.assert_close(ys[0], ys[1], **tol)
        torch.testing.assert_close(xs[0].grad, xs[1].grad, **tol)
        torch.testing.assert_close(ours.last_code_length, oracle.last_code_length, **tol)
        for key, value in oracle.state_dict().items():
            torch.testing.assert_close(ours.state_dict()[key], value, **tol, msg=key)
    ours.eval(), oracle.eval()
    x = torch.randn(5, *shape[1:], dtype=dtype)
    y = ours(x)
    RegularityNorm._device_path = False
    torch.testing.assert_close(y, oracle(x), **tol)
    torch.testing.assert_close(ours.last_code_length, oracle.last_code_length, **tol)
