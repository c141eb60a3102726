"""The search space of ``sb3-regnorm tune``: which values a trial samples around a zoo entry, and how they become zoo
overrides.

Why around the entry: every range and category set contains the entry's own value, so the entry itself is a point of
the space (a new study's first trial) and a study shows what tuning gained over it. The space:

* every norm: ``learning_rate`` (log-uniform in [0.3x, 3x] the entry's value; a ``lin_`` schedule stays linear),
  ``activation`` (tanh or relu) and one or two algo knobs (PPO ``n_epochs`` and ``ent_coef``, A2C ``n_steps`` and
  ``ent_coef``, DQN ``exploration_fraction`` and ``target_update_interval``);
* RN norms (rn, rln, rnln): RN's ``momentum`` in {None, 0.01, 0.001}; the variant itself only with ``norm="auto"``.
"""

from __future__ import annotations

import inspect
from typing import Any, Final

import optuna

from sb3_regnorm import zoo

__all__ = ["ACTIVATIONS", "base_params", "params_to_extra", "sample_params"]

ACTIVATIONS: Final = {"tanh": "nn.Tanh", "relu": "nn.ReLU"}
_PPO_EPOCHS: Final = (3, 4, 6, 8, 10)
_ENT_COEFS: Final = (0.0, 0.00001, 0.001, 0.01)
_A2C_STEPS: Final = (5, 8, 16, 32)
_TARGET_UPDATES: Final = (100, 250, 1000, 2500)
_MOMENTA: Final = (None, 0.01, 0.001)
_ALGO_KNOBS: Final = {
    "ppo": ("n_epochs", "ent_coef"),
    "a2c": ("n_steps", "ent_coef"),
    "dqn": ("exploration_fraction", "target_update_interval"),
}


def _algo_default(algo: str, key: str) -> Any:
    """SB3's default for a constructor argument, for entries that leave it unset (e.g. PPO LunarLander's lr)."""
    from rl_zoo3.utils import ALGOS

    return inspect.signature(ALGOS[algo].__init__).parameters[key].default


def _entry_value(algo: str, base: dict[str, Any], key: str) -> Any:
    """The entry's value for ``key``, or SB3's default."""
    return base[key] if key in base else _algo_default(algo, key)


def _base_learning_rate(algo: str, base: dict[str, Any]) -> tuple[float, bool]:
    """(initial learning rate, is it a ``lin_`` schedule) of an entry."""
    value = _entry_value(algo, base, "learning_rate")
    if isinstance(value, str) and value.startswith("lin_"):
        return float(value.split("_", 1)[1]), True
    return float(value), False


def _choices(defaults: tuple[Any, ...], base: Any) -> list[Any]:
    """Categorical choices that always contain the entry's own value (so the entry itself is a point of the space)."""
    values = list(defaults)
    if base not in values:
        values.append(base)
    return sorted(values, key=lambda v: (v is not None, v if v is not None else 0))


def _base_activation(algo: str, base: dict[str, Any]) -> str:
    """The entry's activation name (policy default: Tanh for actor-critic, ReLU for DQN)."""
    name = base.get("policy_kwargs", {}).get("activation_fn", "nn.ReLU" if algo == "dqn" else "nn.Tanh")
    return {v: k for k, v in ACTIVATIONS.items()}[name]


def _entry_momentum(base: dict[str, Any]) -> float | None:
    """The entry's RN momentum (None: the faithful, unbounded history)."""
    momentum = base.get("policy_kwargs", {}).get("norm_kwargs", {}).get("momentum")
    return None if momentum is None else float(momentum)


def base_params(algo: str, base: dict[str, Any], norm: str) -> dict[str, Any]:
    """The entry's own values as a point of the search space (enqueued as a new study's first trial)."""
    params: dict[str, Any] = {}
    if norm == "auto":
        params["norm"] = "rn"
    lr, _ = _base_learning_rate(algo, base)
    params["learning_rate"] = lr
    params["activation"] = _base_activation(algo, base)
    if norm in (*zoo.RN_NORMS, "auto"):
        params["momentum"] = _entry_momentum(base)
    for key in _ALGO_KNOBS[algo]:
        params[key] = _entry_value(algo, base, key)
    return params


def sample_params(trial: optuna.Trial, algo: str, base: dict[str, Any], norm: str) -> dict[str, Any]:
    """Sample one trial's values around the zoo entry ``base`` (see the module docstring for the space)."""
    params: dict[str, Any] = {}
    if norm == "auto":
        params["norm"] = trial.suggest_categorical("norm", list(zoo.RN_NORMS))
    lr, _ = _base_learning_rate(algo, base)
    params["learning_rate"] = trial.suggest_float("learning_rate", 0.3 * lr, 3.0 * lr, log=True)
    params["activation"] = trial.suggest_categorical("activation", list(ACTIVATIONS))
    if norm in (*zoo.RN_NORMS, "auto"):
        params["momentum"] = trial.suggest_categorical("momentum", _choices(_MOMENTA, _entry_momentum(base)))
    if algo == "ppo":
        params["n_epochs"] = trial.suggest_categorical("n_epochs", _choices(_PPO_EPOCHS, _entry_value(algo, base, "n_epochs")))
        params["ent_coef"] = trial.suggest_categorical("ent_coef", _choices(_ENT_COEFS, _entry_value(algo, base, "ent_coef")))
    elif algo == "a2c":
        params["n_steps"] = trial.suggest_categorical("n_steps", _choices(_A2C_STEPS, _entry_value(algo, base, "n_steps")))
        params["ent_coef"] = trial.suggest_categorical("ent_coef", _choices(_ENT_COEFS, _entry_value(algo, base, "ent_coef")))
    else:
        fraction = float(_entry_value(algo, base, "exploration_fraction"))
        params["exploration_fraction"] = trial.suggest_float("exploration_fraction", min(0.05, fraction), max(0.5, fraction))
        params["target_update_interval"] = trial.suggest_categorical(
            "target_update_interval", _choices(_TARGET_UPDATES, _entry_value(algo, base, "target_update_interval"))
        )
    return params


def _round(value: float) -> float:
    """Three significant digits: what goes into the zoo is what the trial trained with."""
    return float(f"{value:.3g}")


def params_to_extra(algo: str, base: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
    """Sampled values as zoo overrides (rl_zoo3 keys, ``policy_kwargs`` merged by :func:`sb3_regnorm.zoo.raw_entry`)."""
    extra: dict[str, Any] = {}
    _, linear = _base_learning_rate(algo, base)
    if "learning_rate" in params:
        lr = _round(params["learning_rate"])
        extra["learning_rate"] = f"lin_{lr}" if linear else lr
    policy_kwargs: dict[str, Any] = {}
    if "activation" in params:
        policy_kwargs["activation_fn"] = ACTIVATIONS[params["activation"]]
    if "momentum" in params:  # None too: a sampled None must override an entry's momentum, not leave it in place
        policy_kwargs["norm_kwargs"] = {"momentum": params["momentum"]}
    if policy_kwargs:
        extra["policy_kwargs"] = policy_kwargs
    for key in _ALGO_KNOBS[algo]:
        if key in params:
            extra[key] = _round(params[key]) if isinstance(params[key], float) else params[key]
    return extra
