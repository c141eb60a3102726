"""SB3 policies with RN (or LayerNorm) in their hidden layers: PPO/A2C actor-critic and DQN.

``norm`` is one of :data:`sb3_regnorm.nets.NORMS`; ``norm_kwargs`` go to every :class:`RegularityNorm`. Norms sit
after each hidden Linear and before its activation, never on the action, value or Q output layer.

Train/eval follows SB3: rollouts, ``predict()`` and evaluation run in eval mode and never write RN buffers; only
gradient steps (``train()``) update them. The DQN target network stays in eval mode; SB3 hard-copies every
``running_*`` buffer from the online network at each target update, so the target's RN statistics and COMP follow the
online network in step with its weights (see :class:`RNDQNPolicy`).
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch as th
from gymnasium import spaces
from stable_baselines3.common.policies import ActorCriticPolicy
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor, FlattenExtractor, MlpExtractor
from stable_baselines3.common.type_aliases import Schedule
from stable_baselines3.common.utils import get_device
from stable_baselines3.dqn.policies import DQNPolicy, QNetwork
from torch import nn

from sb3_regnorm.extractors import MinigridCNN
from sb3_regnorm.nets import build_mlp, check_norm

__all__ = [
    "NormMlpExtractor",
    "RNActorCriticCnnPolicy",
    "RNActorCriticPolicy",
    "RNDQNCnnPolicy",
    "RNDQNPolicy",
    "RNQNetwork",
]

_AC_ACTION_SPACES = (spaces.Box, spaces.Discrete, spaces.MultiDiscrete, spaces.MultiBinary)


def _check_observation_space(observation_space: spaces.Space, features_extractor_class: type, owner: str) -> None:
    """SB3's FlattenExtractor cannot flatten Dict/Tuple observations; say so before SB3 fails deep inside.

    (RNMlpExtractor and MinigridCNN validate their spaces themselves.)
    """
    if isinstance(observation_space, spaces.Dict | spaces.Tuple) and issubclass(features_extractor_class, FlattenExtractor):
        raise ValueError(
            f"{owner} cannot flatten a {type(observation_space).__name__} observation space with "
            f"{features_extractor_class.__name__}; pass features_extractor_class=CombinedExtractor, or wrap MiniGrid "
            "environments with ImgObsWrapper"
        )


class _NormPolicy:
    """What the RN policies share: the ``norm``/``norm_kwargs`` arguments, validated once (with the action and
    observation spaces) before SB3 builds anything, and their place in ``_get_constructor_parameters``."""

    default_features_extractor: ClassVar[type[BaseFeaturesExtractor]] = FlattenExtractor
    action_spaces: ClassVar[tuple[type[spaces.Space], ...]] = _AC_ACTION_SPACES
    action_space_help: ClassVar[str] = "supports Box, Discrete, MultiDiscrete and MultiBinary action spaces"
    norm: str
    norm_kwargs: dict[str, Any]

    def __init__(
        self,
        observation_space: spaces.Space,
        action_space: spaces.Space,
        lr_schedule: Schedule,
        *args: Any,
        norm: str = "rn",
        norm_kwargs: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        if not isinstance(action_space, self.action_spaces):
            raise ValueError(f"{type(self).__name__} {self.action_space_help}, got {action_space}")
        kwargs = {"features_extractor_class": self.default_features_extractor, **kwargs}
        _check_observation_space(observation_space, kwargs["features_extractor_class"], type(self).__name__)
        self.norm = norm  # set before super().__init__, which builds the networks
        self.norm_kwargs = check_norm(norm, norm_kwargs)
        super().__init__(observation_space, action_space, lr_schedule, *args, **kwargs)  # type: ignore[call-arg]  # mixin: mypy checks super() against object; the MRO partner (ActorCriticPolicy/DQNPolicy) takes these

    def _get_constructor_parameters(self) -> dict[str, Any]:
        data: dict[str, Any] = super()._get_constructor_parameters()  # type: ignore[misc]  # mixin: defined by the SB3 policy after this class in the MRO, unseen by mypy
        data.update(norm=self.norm, norm_kwargs=dict(self.norm_kwargs))
        return data


class NormMlpExtractor(MlpExtractor):
    """SB3's ``MlpExtractor`` (separate policy and value MLPs) with a norm after every hidden Linear."""

    def __init__(
        self,
        feature_dim: int,
        net_arch: list[int] | dict[str, list[int]],
        activation_fn: type[nn.Module],
        device: th.device | str = "auto",
        norm: str = "rn",
        norm_kwargs: dict[str, Any] | None = None,
    ) -> None:
        nn.Module.__init__(self)  # MlpExtractor.__init__ would build the plain networks only to throw them away
        pi_arch = net_arch.get("pi", []) if isinstance(net_arch, dict) else net_arch
        vf_arch = net_arch.get("vf", []) if isinstance(net_arch, dict) else net_arch
        target = get_device(device)
        self.policy_net = build_mlp(feature_dim, pi_arch, activation_fn, norm, norm_kwargs).to(target)
        self.value_net = build_mlp(feature_dim, vf_arch, activation_fn, norm, norm_kwargs).to(target)
        self.latent_dim_pi = pi_arch[-1] if pi_arch else feature_dim
        self.latent_dim_vf = vf_arch[-1] if vf_arch else feature_dim


class RNActorCriticPolicy(_NormPolicy, ActorCriticPolicy):
    """``ActorCriticPolicy`` for PPO and A2C with ``norm`` in the policy and value MLPs.

    Accepts every ``ActorCriticPolicy`` argument plus ``norm`` (default ``"rn"``) and ``norm_kwargs``.
    """

    def _build_mlp_extractor(self) -> None:
        self.mlp_extractor = NormMlpExtractor(
            self.features_dim, self.net_arch, self.activation_fn, self.device, self.norm, self.norm_kwargs
        )

    def _get_constructor_parameters(self) -> dict[str, Any]:
        data = super()._get_constructor_parameters()
        data.update(share_features_extractor=self.share_features_extractor)
        return data


class RNActorCriticCnnPolicy(RNActorCriticPolicy):
    """:class:`RNActorCriticPolicy` whose default features extractor is :class:`MinigridCNN`.

    As in the reference MiniGrid agent, ``norm`` goes into the actor and critic heads and the conv trunk has none:
    stacking many RN layers multiplies their near-zero first gains and collapses the deeper layers' statistics. Pass
    ``features_extractor_kwargs=dict(norm="rn")`` to put RN into the CNN as well.
    """

    default_features_extractor = MinigridCNN


class RNQNetwork(QNetwork):
    """SB3's ``QNetwork`` with ``norm`` after each hidden Linear of the Q MLP."""

    def __init__(
        self,
        observation_space: spaces.Space,
        action_space: spaces.Discrete,
        features_extractor: BaseFeaturesExtractor,
        features_dim: int,
        net_arch: list[int] | None = None,
        activation_fn: type[nn.Module] = nn.ReLU,
        normalize_images: bool = True,
        norm: str = "rn",
        norm_kwargs: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(
            observation_space, action_space, features_extractor, features_dim, net_arch, activation_fn, normalize_images
        )
        self.norm = norm
        self.norm_kwargs = check_norm(norm, norm_kwargs)
        self.q_net = build_mlp(
            features_dim, self.net_arch, activation_fn, norm, self.norm_kwargs, output_dim=int(action_space.n)
        )

    def _get_constructor_parameters(self) -> dict[str, Any]:
        data = super()._get_constructor_parameters()
        data.update(norm=self.norm, norm_kwargs=dict(self.norm_kwargs))
        return data


class RNDQNPolicy(_NormPolicy, DQNPolicy):
    """``DQNPolicy`` whose online and target Q-networks have ``norm`` in their hidden layers.

    Target semantics: the target network is built as a copy of the online one (weights and RN buffers), stays in eval
    mode (so its own forwards never write RN buffers), and at each target update SB3's DQN polyak-updates the weights
    with ``tau`` and hard-copies every ``running_*`` buffer, i.e. the RN mean, variance, count, COMP, update count and
    reference size. Between updates the target keeps the statistics of its last sync, like its weights.
    """

    action_spaces = (spaces.Discrete,)
    action_space_help = "(DQN) needs a Discrete action space"

    def make_q_net(self) -> RNQNetwork:
        net_args = self._update_features_extractor(self.net_args, features_extractor=None)
        return RNQNetwork(**net_args, norm=self.norm, norm_kwargs=self.norm_kwargs).to(self.device)


class RNDQNCnnPolicy(RNDQNPolicy):
    """:class:`RNDQNPolicy` whose default features extractor is :class:`MinigridCNN` (RN in the Q head only)."""

    default_features_extractor = MinigridCNN
