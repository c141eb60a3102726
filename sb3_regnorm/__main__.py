"""``sb3-regnorm <command>`` (same as ``python -m sb3_regnorm <command>``): the tools around training runs.

Commands (each has ``--help``; default paths are relative to the working directory):
  plot     turn TensorBoard event files into PNG figures (per-layer code length, returns)
  zoo      write / check the rl_zoo3 hyperparameter files (``zoo check --zoo DIR`` validates any folder), or train one
  tune     tune a zoo entry with optuna (``tune promote`` copies a study's summary into zoo/studies/)
  confirm  train a zoo entry at its full budget on seeds 0, 1, 2 and record it in zoo/studies/confirmations.json
  bench    run a benchmark campaign

Training itself goes through rl_zoo3 (``python -m rl_zoo3.train ... --gym-packages sb3_regnorm -conf zoo/rn/ppo.yml``)
or plain SB3 with the policy classes of this package.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

__all__ = ["main"]


def _plot(argv: list[str]) -> int:
    from sb3_regnorm.plotting import main as plot_main

    return plot_main(argv)


def _zoo(argv: list[str]) -> int:
    from sb3_regnorm.zoo import main as zoo_main

    return zoo_main(argv, prog="sb3-regnorm zoo")


def _tune(argv: list[str]) -> int:
    from sb3_regnorm.tune import main as tune_main

    return tune_main(argv, prog="sb3-regnorm tune")


def _confirm(argv: list[str]) -> int:
    from sb3_regnorm.confirm import main as confirm_main

    return confirm_main(argv, prog="sb3-regnorm confirm")


def _bench(argv: list[str]) -> int:
    from sb3_regnorm.benchmark.cli import main as bench_main

    return bench_main(argv)


COMMANDS: dict[str, Callable[[list[str]], int]] = {
    "plot": _plot,
    "zoo": _zoo,
    "tune": _tune,
    "confirm": _confirm,
    "bench": _bench,
}


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(__doc__)
        return 0 if args else 2
    command, rest = args[0], args[1:]
    if command not in COMMANDS:
        print(f"unknown command {command!r}; expected one of {sorted(COMMANDS)}", file=sys.stderr)
        return 2
    return COMMANDS[command](rest)


if __name__ == "__main__":
    sys.exit(main())
