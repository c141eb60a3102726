"""The one place that knows "Linear -> [LayerNorm] -> [RegularityNorm] -> activation".

Policies, features extractors and the DQN Q-network all ask :func:`norm_factories` which modules a ``norm`` name
means, and build their MLPs with SB3's own ``create_mlp`` (whose ``post_linear_modules`` never touch the output
layer).
"""

from __future__ import annotations

import inspect
from functools import lru_cache, partial
from typing import Any, Final

from stable_baselines3.common.torch_layers import create_mlp
from torch import nn

from sb3_regnorm.functional import RNConfig
from sb3_regnorm.layers import RegularityNorm

__all__ = ["NORMS", "build_mlp", "check_norm", "norm_factories"]

NORMS: Final = ("none", "ln", "rn", "rln", "rnln")
"""``none``: no normalization; ``ln``: LayerNorm (the baseline); ``rn``/``rln``: RegularityNorm per layer / per unit;
``rnln``: LayerNorm then RN (the paper's RN+LN; RN after LN, so LN cannot cancel RN's gain)."""

_RN_OPTIONS: Final = tuple(
    name
    for name, param in inspect.signature(RegularityNorm.__init__).parameters.items()
    if param.kind is inspect.Parameter.KEYWORD_ONLY and name != "device"
)


def check_norm(norm: str, norm_kwargs: dict[str, Any] | None) -> dict[str, Any]:
    """Validate a ``norm`` name and its ``norm_kwargs`` at construction time; return the kwargs as a new dict."""
    if norm not in NORMS:
        raise ValueError(f"Unknown norm {norm!r}; expected one of {NORMS}")
    kwargs = dict(norm_kwargs or {})
    if not kwargs:
        return kwargs
    if norm in ("none", "ln"):
        raise ValueError(f"norm_kwargs configure RegularityNorm and do not apply to norm={norm!r}: got {sorted(kwargs)}")
    unknown = sorted(set(kwargs) - set(_RN_OPTIONS))
    if unknown:
        raise ValueError(f"Unknown norm_kwargs {unknown} for norm={norm!r}; RegularityNorm accepts {list(_RN_OPTIONS)}")
    try:
        _check_values(tuple(sorted(kwargs.items())))
    except TypeError:  # an unhashable value: validate without the cache
        _check_values.__wrapped__(tuple(sorted(kwargs.items())))
    return kwargs


@lru_cache(maxsize=64)
def _check_values(items: tuple[tuple[str, Any], ...]) -> None:
    """Range checks of RegularityNorm's options, without building a layer; cached, so a policy pays for them once."""
    options = dict(items)
    fused = options.pop("fused", True)
    if not isinstance(fused, bool):
        raise ValueError(f"fused must be a bool, got {fused!r}")
    RNConfig(**options)  # raises ValueError for out-of-range values


def norm_factories(norm: str, norm_kwargs: dict[str, Any] | None = None, *, conv: bool = False) -> list[Any]:
    """Module factories (called with the feature count) to insert after a hidden Linear or Conv2d.

    For conv layers (``conv=True``) LayerNorm is ``GroupNorm(1, C)`` (normalise over C, H, W) and ``rln`` gives one
    code length per channel.
    """
    kwargs = check_norm(norm, norm_kwargs)
    layer_norm: Any = partial(nn.GroupNorm, 1) if conv else nn.LayerNorm
    return {
        "none": [],
        "ln": [layer_norm],
        "rn": [partial(RegularityNorm, variant="rn", **kwargs)],
        "rln": [partial(RegularityNorm, variant="rln", **kwargs)],
        "rnln": [layer_norm, partial(RegularityNorm, variant="rn", **kwargs)],
    }[norm]


def build_mlp(
    input_dim: int,
    net_arch: list[int],
    activation_fn: type[nn.Module],
    norm: str = "rn",
    norm_kwargs: dict[str, Any] | None = None,
    output_dim: int = -1,
) -> nn.Sequential:
    """SB3's ``create_mlp`` with the norm after every hidden Linear (never after the output layer)."""
    layers = create_mlp(
        input_dim, output_dim, list(net_arch), activation_fn, post_linear_modules=norm_factories(norm, norm_kwargs)
    )
    return nn.Sequential(*layers)
