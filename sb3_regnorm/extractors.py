"""Features extractors with a norm slot, for SB3's own ``"MlpPolicy"`` / ``"CnnPolicy"`` through ``policy_kwargs``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from gymnasium import spaces
from stable_baselines3.common.preprocessing import get_flattened_obs_dim
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from torch import nn

from sb3_regnorm.nets import build_mlp, check_norm, norm_factories

__all__ = ["MinigridCNN", "RNMlpExtractor"]

_FLAT_SPACES = (spaces.Box, spaces.Discrete, spaces.MultiDiscrete, spaces.MultiBinary)


class RNMlpExtractor(BaseFeaturesExtractor):
    """Flatten, then ``Linear -> norm -> activation`` per entry of ``net_arch``: an RN trunk for any SB3 policy.

    ``PPO("MlpPolicy", env, policy_kwargs=dict(features_extractor_class=RNMlpExtractor, net_arch=[]))`` puts all hidden
    layers in the (RN) trunk; with ``share_features_extractor=False`` actor and critic get a trunk each.
    """

    def __init__(
        self,
        observation_space: spaces.Space,
        net_arch: Sequence[int] = (64, 64),
        activation_fn: type[nn.Module] = nn.ReLU,
        norm: str = "rn",
        norm_kwargs: dict[str, Any] | None = None,
    ) -> None:
        if not isinstance(observation_space, _FLAT_SPACES):
            raise ValueError(
                f"RNMlpExtractor needs a Box, Discrete, MultiDiscrete or MultiBinary observation space, got "
                f"{observation_space}; use SB3's CombinedExtractor (MultiInputPolicy) for Dict spaces"
            )
        if len(net_arch) == 0 or any(int(size) < 1 for size in net_arch):
            raise ValueError(f"RNMlpExtractor needs at least one positive layer size in net_arch, got {list(net_arch)}")
        super().__init__(observation_space, features_dim=int(net_arch[-1]))
        self.net = nn.Sequential(
            nn.Flatten(),
            *build_mlp(get_flattened_obs_dim(observation_space), [int(s) for s in net_arch], activation_fn, norm, norm_kwargs),
        )

    def forward(self, observations: torch.Tensor) -> torch.Tensor:
        return self.net(observations)


class MinigridCNN(BaseFeaturesExtractor):
    """The Minigrid docs' CNN for ``ImgObsWrapper`` observations, with an optional norm after each hidden layer.

    Conv2d(C, 16, 2) -> [norm] -> ReLU -> Conv2d(16, 32, 2) -> [norm] -> ReLU -> Conv2d(32, 64, 2) -> [norm] -> ReLU
    -> Flatten -> Linear(., features_dim) -> [norm] -> ReLU. SB3's ``NatureCNN`` fails on MiniGrid's 7x7 view; this
    one needs at least 4x4. For conv layers ``ln`` is ``GroupNorm(1, C)`` and ``rln`` gives one code length per
    channel.
    """

    def __init__(
        self,
        observation_space: spaces.Space,
        features_dim: int = 128,
        norm: str = "none",
        norm_kwargs: dict[str, Any] | None = None,
        conv_norm: bool = True,
    ) -> None:
        if not isinstance(observation_space, spaces.Box) or len(observation_space.shape) != 3:
            raise ValueError(
                f"MinigridCNN expects image observations of shape (C, H, W), got {observation_space}; wrap MiniGrid "
                "environments with minigrid.wrappers.ImgObsWrapper (or use sb3_regnorm.minigrid_image_env)"
            )
        channels, height, width = observation_space.shape
        if height < 4 or width < 4:
            raise ValueError(f"MinigridCNN needs images of at least 4x4 after channel-first transpose, got {(height, width)}")
        super().__init__(observation_space, features_dim)
        norm_kwargs = check_norm(norm, norm_kwargs)
        conv_factories = norm_factories(norm if conv_norm else "none", norm_kwargs if conv_norm else None, conv=True)
        layers: list[nn.Module] = []
        for in_ch, out_ch in ((channels, 16), (16, 32), (32, 64)):
            layers.append(nn.Conv2d(in_ch, out_ch, (2, 2)))
            layers.extend(factory(out_ch) for factory in conv_factories)
            layers.append(nn.ReLU())
        layers.append(nn.Flatten())
        self.cnn = nn.Sequential(*layers)
        with torch.no_grad():
            self.cnn.eval()  # the size probe must not train RN statistics
            n_flatten = self.cnn(torch.zeros(1, *observation_space.shape)).shape[1]
            self.cnn.train()
        self.linear = build_mlp(n_flatten, [features_dim], nn.ReLU, norm, norm_kwargs)

    def forward(self, observations: torch.Tensor) -> torch.Tensor:
        return self.linear(self.cnn(observations))
