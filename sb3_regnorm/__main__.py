"""``python -m sb3_regnorm <command>``: small tools around training runs.

Commands:
  plot  turn TensorBoard event files into PNG figures (per-layer code length, returns); see ``plot --help``.

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


COMMANDS: dict[str, Callable[[list[str]], int]] = {"plot": _plot}


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
