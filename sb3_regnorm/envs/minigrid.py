"""MiniGrid helper: an env with only the image observation, for CNN/MLP policies."""

from __future__ import annotations

from typing import Any

import gymnasium as gym

__all__ = ["minigrid_image_env"]


def minigrid_image_env(env_id: str, **kwargs: Any) -> gym.Env:
    """Make a MiniGrid/BabyAI env with only its image observation (``ImgObsWrapper``), for CNN/MLP policies.

    Why: MiniGrid's dict observations (image, direction, mission) do not fit SB3's default policies; the image alone is a
    Box. minigrid is imported here, lazily, so the package imports without it.
    """
    try:
        import minigrid  # noqa: F401  (registers the MiniGrid-* / BabyAI-* ids)
        from minigrid.wrappers import ImgObsWrapper
    except ImportError as exc:  # pragma: no cover - minigrid is a declared dependency
        raise ImportError("minigrid_image_env needs the 'minigrid' package: pip install minigrid") from exc

    spec = gym.envs.registry.get(env_id) if isinstance(env_id, str) else None
    entry = getattr(spec, "entry_point", None)
    module = entry if isinstance(entry, str) else getattr(entry, "__module__", "")
    if spec is None or not str(module).startswith("minigrid"):
        raise ValueError(f"{env_id!r} is not a registered MiniGrid id (expected e.g. 'MiniGrid-Empty-5x5-v0')")
    return ImgObsWrapper(gym.make(env_id, **kwargs))
