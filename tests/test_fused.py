"""The fused kernel's switches: the environment variable, the layer argument, and the fallback without a compiler."""

from __future__ import annotations

import warnings

import pytest
import torch

from sb3_regnorm import RegularityNorm, _fused


@pytest.fixture
def fresh_loader(monkeypatch: pytest.MonkeyPatch) -> None:
    """A loader that has not tried to build yet (the process-wide one is left as it was)."""
    monkeypatch.setattr(_fused, "_LOADER", _fused._Loader())


def test_environment_variable_disables_the_kernel(fresh_loader: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(_fused.ENV_VAR, "0")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # disabling on purpose is silent
        assert not _fused.available()
    assert "disabled" in (_fused.load_error() or "")
    layer = RegularityNorm(4)
    y = layer(torch.randn(8, 4))
    assert torch.isfinite(y).all() and layer.running_updates.item() == 1


def test_build_failure_warns_once_and_falls_back(fresh_loader: None, monkeypatch: pytest.MonkeyPatch) -> None:
    from torch.utils import cpp_extension

    def no_compiler(**_: object) -> None:
        raise RuntimeError("error: command 'c++' not found")

    monkeypatch.delenv(_fused.ENV_VAR, raising=False)
    monkeypatch.setattr(cpp_extension, "load", no_compiler)
    with pytest.warns(RuntimeWarning, match="could not be built.*c\\+\\+' not found"):
        assert not _fused.available()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert not _fused.available()  # one warning per process
        layer = RegularityNorm(4)
        layer(torch.randn(8, 4))
    assert layer.running_updates.item() == 1


def test_layer_argument_selects_the_pure_path(monkeypatch: pytest.MonkeyPatch) -> None:
    if not _fused.available():
        pytest.skip(f"fused kernel unavailable: {_fused.load_error()}")
    calls = []
    real = _fused.ops()
    assert real is not None
    monkeypatch.setattr(_fused, "ops", lambda: (lambda *a: calls.append(1) or real[0](*a), real[1]))
    RegularityNorm(4, fused=False)(torch.randn(8, 4))
    assert calls == []
    RegularityNorm(4)(torch.randn(8, 4))
    assert calls == [1]
    assert "fused=False" in repr(RegularityNorm(4, fused=False))


def test_kernel_errors_become_the_pure_paths_exceptions() -> None:
    overflow = _fused.translate(RuntimeError("sb3_regnorm:overflow:Half:12.5:0.25:\nException raised from ..."))
    assert isinstance(overflow, FloatingPointError) and "torch.float16" in str(overflow) and "gain 12.5" in str(overflow)
    assert isinstance(_fused.translate(RuntimeError("sb3_regnorm:nonfinite_train:")), ValueError)
    assert isinstance(_fused.translate(RuntimeError("sb3_regnorm:stats:")), FloatingPointError)
    other = RuntimeError("something else")
    assert _fused.translate(other) is other


@pytest.mark.parametrize("fused", [True, False])
@pytest.mark.parametrize("training", [True, False])
def test_a_gradient_of_a_gradient_fails_loudly(training: bool, fused: bool) -> None:
    """RN is differentiable once: create_graph=True through the layer must raise, not drop or bend the second-order
    term (the fused backward has no graph; the pure path's code-length slope is a first-order term)."""
    if fused and not _fused.available():
        pytest.skip(f"fused kernel unavailable: {_fused.load_error()}")
    x = torch.randn(16, 6, dtype=torch.float64, requires_grad=True)
    warm = torch.randn(16, 6, dtype=torch.float64)

    def layer() -> RegularityNorm:
        norm = RegularityNorm(6, fused=fused).double()
        norm(warm)  # a first update, so eval mode scores against a real state
        return norm.train(training)

    if training or fused:
        with pytest.raises(RuntimeError, match="differentiable once"):
            torch.autograd.grad(layer()(x).pow(2).sum(), x, create_graph=True)
    (grad,) = torch.autograd.grad(layer()(x).pow(2).sum(), x)  # first order is unaffected
    assert torch.isfinite(grad).all() and grad.abs().sum() > 0
    if not training and not fused:  # the pure eval output is x times a batch constant: its graph is exact as defined
        (again,) = torch.autograd.grad(layer()(x).pow(2).sum(), x, create_graph=True)
        torch.testing.assert_close(again.detach(), grad)
