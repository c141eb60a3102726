"""Forward hooks that observe SB3's ``train()`` forwards and never outlive the ``learn()`` that installed them.

SB3 calls no callback when ``learn()`` raises (another callback fails, NaNs, Ctrl-C), so hooks kept for a whole
``learn()`` would stay on the policy and keep running. :class:`TrainHooks` narrows the risk three ways:

1. Hooks are installed only for the stretch in which ``train()`` runs: from ``_on_rollout_end`` to the next
   ``_on_rollout_start`` (or training end). An exception raised anywhere in a rollout (env, other callbacks,
   evaluation, checkpoints) leaves no hook at all.
2. If ``learn()`` raises inside ``train()``, the hooks notice it themselves: in SB3 the policy is only switched back
   to eval mode once ``train()`` is over (the next rollout, ``predict``, evaluation), so a hook that sees an eval-mode
   forward after training forwards in the same stretch removes all of its owner's hooks (with a warning) and does
   nothing more. They never see the next ``learn()``'s training forwards.
3. Each owner is registered per policy, so a monitoring callback starting on a policy removes (with a warning) any
   hooks still installed by another owner: at training start none can legitimately be installed.
"""

from __future__ import annotations

import warnings
import weakref
from collections.abc import Callable, Iterable
from typing import Any

from torch import nn
from torch.utils.hooks import RemovableHandle

__all__ = ["HookFn", "TrainHooks", "remove_stale_hooks"]

HookFn = Callable[[nn.Module, Any], None]
"""``fn(module, output)``, called for training-mode forwards of the policy only."""

_OWNERS: weakref.WeakKeyDictionary[nn.Module, weakref.WeakSet[TrainHooks]] = weakref.WeakKeyDictionary()


def remove_stale_hooks(policy: nn.Module, keep: TrainHooks | None = None) -> int:
    """Remove the hooks every other owner still has installed on ``policy``; return how many were removed.

    Why this is safe at training start: owners install hooks only between a rollout's end and the next rollout, so
    any hook found before a rollout was left by a ``learn()`` that ended with an exception.
    """
    removed = 0
    for owner in list(_OWNERS.get(policy, ())):
        if owner is not keep and owner.is_open:
            removed += owner.close()
            warnings.warn(
                f"{owner.owner}: removed forward hooks left on the policy by a learn() that did not finish",
                stacklevel=3,
            )
    return removed


class TrainHooks:
    """The forward hooks one monitoring callback puts on one policy, installed one ``train()`` stretch at a time.

    Usage: :meth:`bind` the policy and ``(module, fn)`` pairs once per ``learn()``, :meth:`open` before ``train()``,
    :meth:`close` after it (and at training end). Also a context manager that closes on exit.
    """

    def __init__(self, owner: str) -> None:
        self.owner = owner
        self._policy: nn.Module | None = None
        self._specs: list[tuple[nn.Module, HookFn]] = []
        self._handles: list[RemovableHandle] = []
        self._trained = False

    def __enter__(self) -> TrainHooks:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def is_open(self) -> bool:
        """Whether hooks are installed right now."""
        return bool(self._handles)

    def bind(self, policy: nn.Module, specs: Iterable[tuple[nn.Module, HookFn]]) -> None:
        """Watch ``policy`` with these hooks from the next :meth:`open`; stale hooks of other owners are removed."""
        self.close()
        remove_stale_hooks(policy, keep=self)
        self._policy = policy
        self._specs = list(specs)
        _OWNERS.setdefault(policy, weakref.WeakSet()).add(self)

    def open(self) -> None:
        """Install the hooks (no-op if already installed or nothing is bound)."""
        if self._handles or self._policy is None:
            return
        self._trained = False
        self._handles = [module.register_forward_hook(self._wrap(fn)) for module, fn in self._specs]

    def close(self) -> int:
        """Remove the installed hooks (idempotent); return how many were removed."""
        count = len(self._handles)
        for handle in self._handles:
            handle.remove()
        self._handles = []
        return count

    def _wrap(self, fn: HookFn) -> Callable[[nn.Module, tuple[Any, ...], Any], None]:
        policy = self._policy

        def hook(module: nn.Module, args: tuple[Any, ...], output: Any) -> None:
            if policy is not None and policy.training:
                self._trained = True
                fn(module, output)
            elif self._trained:  # back in eval mode after train(): the learn() that opened us is over
                self.close()
                warnings.warn(
                    f"{self.owner}: its forward hooks outlived the train() they were installed for "
                    "(learn() raised?); removed them",
                    stacklevel=2,
                )

        return hook
