"""What counts as a diverged training run, and the error that carries it out of a training loop.

Why one definition: the benchmark runner and ``sb3-regnorm confirm`` must both record a run whose agent blew up
instead of dropping it (a seed diverges again on every retry, and leaving it out scores an arm on its surviving seeds
only), and both must tell it apart from a mistake in the configuration, which happens before training starts.
"""

from __future__ import annotations

from typing import Any, Final

__all__ = ["DIVERGENCE_ERRORS", "TrainingDiverged"]

DIVERGENCE_ERRORS: Final = (FloatingPointError, ValueError)
"""Raised by a diverging agent while it trains: RegularityNorm's overflow (``FloatingPointError``) or non-finite
activations (``ValueError``), or NaN logits rejected by torch.distributions (``ValueError``)."""


class TrainingDiverged(RuntimeError):
    """The agent raised one of :data:`DIVERGENCE_ERRORS` while training; carries what the run produced until then."""

    def __init__(self, error: BaseException, at_step: int, partial: dict[str, Any] | None = None) -> None:
        self.error = f"{type(error).__name__}: {error}"
        super().__init__(self.error)
        self.at_step = at_step
        self.partial = partial or {}
