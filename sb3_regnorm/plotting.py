"""Figures from TensorBoard runs: RN code length per layer over training, episode return, plasticity diagnostics.

Reads event files with TensorBoard's own ``EventAccumulator`` and draws with matplotlib's object API (``Figure``,
saved through the Agg canvas), so it neither needs a display nor changes the pyplot backend of the caller.

CLI (wired as ``python -m sb3_regnorm plot``)::

    python -m sb3_regnorm plot logs/tb/ --out figures/
    python -m sb3_regnorm plot logs/tb/PPO_1 logs/tb/PPO_2 --out figures/

A RUN_DIR may be a run (a folder holding ``events.out.tfevents.*`` files) or any parent of runs: every folder that
directly contains event files is one run. Writes ``code_length.png`` (one column per run, one line per RN layer:
the paper's "UAM" figure), ``returns.png`` (``rollout/ep_rew_mean`` of all runs overlaid; runs of the non-stationary
envs get a dashed vertical line at every phase switch, read from their ``env/phase`` tag) and, when ``diag/*`` tags
exist, ``diagnostics.png`` (one row per metric, one column per run).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Final

import numpy as np

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = [
    "PHASE_TAG",
    "RETURN_TAG",
    "Run",
    "add_arguments",
    "build_parser",
    "find_runs",
    "load_runs",
    "load_scalars",
    "main",
    "phase_changes",
    "plot_code_lengths",
    "plot_diagnostics",
    "plot_returns",
    "run",
    "switch_marks",
]

EVENT_PREFIX: Final = "events.out.tfevents."
RETURN_TAG: Final = "rollout/ep_rew_mean"
PHASE_TAG: Final = "env/phase"  # written by sb3_regnorm.phase_clock.PhaseClockCallback (same literal, no SB3 import here)
CODE_LENGTH_SUFFIX: Final = "/code_length"
DIAG_METRICS: Final = ("dormant_0.025", "dormant_0", "tanh_saturation", "relu_zero", "srank")

Series = tuple[np.ndarray, np.ndarray]


@dataclass(frozen=True)
class Run:
    """One TensorBoard run: its folder, a short label for legends and titles, and its scalar series by tag."""

    path: Path
    label: str
    scalars: dict[str, Series] = field(repr=False)

    def tags(self, prefix: str, suffix: str = "") -> list[str]:
        """Scalar tags with this prefix and suffix, sorted."""
        return sorted(tag for tag in self.scalars if tag.startswith(prefix) and tag.endswith(suffix))


# ---------------------------------------------------------------------------------------------- reading
def find_runs(paths: Iterable[str | os.PathLike[str]]) -> list[Path]:
    """Folders that directly contain event files, searched recursively under each path (an event file names its folder).

    Raises SystemExit with a message if a path does not exist or nothing is found.
    """
    runs: set[Path] = set()
    for raw in paths:
        path = Path(raw)
        if not path.exists():
            raise SystemExit(f"sb3_regnorm plot: {path} does not exist")
        if path.is_file():
            if path.name.startswith(EVENT_PREFIX):
                runs.add(path.parent.resolve())
            continue
        runs.update(event.parent.resolve() for event in path.rglob(f"{EVENT_PREFIX}*") if event.is_file())
    if not runs:
        names = ", ".join(str(p) for p in paths)
        raise SystemExit(f"sb3_regnorm plot: no TensorBoard event files ({EVENT_PREFIX}*) found under {names}")
    return sorted(runs)


def load_scalars(run_dir: str | os.PathLike[str]) -> dict[str, Series]:
    """Every scalar series of one run as ``tag -> (steps, values)``, sorted by step (all points, no down-sampling)."""
    from tensorboard.backend.event_processing import event_accumulator

    accumulator = event_accumulator.EventAccumulator(str(run_dir), size_guidance={event_accumulator.SCALARS: 0})
    accumulator.Reload()
    series: dict[str, Series] = {}
    for tag in accumulator.Tags().get(event_accumulator.SCALARS, []):
        events = sorted(accumulator.Scalars(tag), key=lambda event: event.step)
        steps = np.array([event.step for event in events], dtype=np.int64)
        values = np.array([event.value for event in events], dtype=np.float64)
        series[tag] = (steps, values)
    return series


def _labels(paths: Sequence[Path]) -> list[str]:
    """Paths relative to their common parent (the folder name for a single run), so labels are short but distinct."""
    if len(paths) == 1:
        return [paths[0].name]
    common = Path(os.path.commonpath([str(p) for p in paths]))
    return [str(p.relative_to(common)) if p != common else p.name for p in paths]


def load_runs(paths: Iterable[str | os.PathLike[str]]) -> list[Run]:
    """Find and read every run under ``paths``."""
    run_dirs = find_runs(paths)
    return [Run(path, label, load_scalars(path)) for path, label in zip(run_dirs, _labels(run_dirs), strict=True)]


def phase_changes(series: Series) -> list[tuple[int, int]]:
    """(timestep, phase) where each run of equal ``env/phase`` values starts, the first point included."""
    out: list[tuple[int, int]] = []
    for step, value in zip(*series, strict=True):
        if not out or int(value) != out[-1][1]:
            out.append((int(step), int(value)))
    return out


def switch_marks(run: Run) -> list[tuple[int, int]]:
    """The phase switches of a run (every change after its first logged phase); empty without an ``env/phase`` tag."""
    return phase_changes(run.scalars[PHASE_TAG])[1:] if PHASE_TAG in run.scalars else []


# ---------------------------------------------------------------------------------------------- drawing
def _new_figure(rows: int, cols: int, width: float = 5.0, height: float = 3.6) -> tuple[Figure, np.ndarray]:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width * cols, height * rows), layout="constrained")
    axes = np.asarray(fig.subplots(rows, cols, squeeze=False))
    return fig, axes


def _draw_lines(ax: Axes, run: Run, tags: Sequence[str], strip: tuple[str, str]) -> None:
    """One line per tag, labelled with the tag minus ``strip`` (prefix, suffix)."""
    prefix, suffix = strip
    for tag in tags:
        steps, values = run.scalars[tag]
        label = tag[len(prefix) : len(tag) - len(suffix) if suffix else None]
        ax.plot(steps, values, label=label, linewidth=1.2)
    if tags:
        ax.legend(fontsize="small", ncol=1 + len(tags) // 8)
    else:
        ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes)
    ax.grid(alpha=0.3)


def plot_code_lengths(runs: Sequence[Run], out_file: str | os.PathLike[str], dpi: int = 120) -> Path:
    """The paper's UAM figure: code length L_t of every RN layer (or probe) over timesteps, one column per run."""
    fig, axes = _new_figure(1, len(runs))
    for ax, run in zip(axes[0], runs, strict=True):
        _draw_lines(ax, run, run.tags("regnorm/", CODE_LENGTH_SUFFIX), ("regnorm/", CODE_LENGTH_SUFFIX))
        ax.set_title(run.label, fontsize="medium")
        ax.set_xlabel("timesteps")
    axes[0][0].set_ylabel("code length (nats)")
    return _save(fig, out_file, dpi)


def plot_returns(runs: Sequence[Run], out_file: str | os.PathLike[str], dpi: int = 120, tag: str = RETURN_TAG) -> Path:
    """Mean episode return of every run over timesteps, overlaid with a legend; phase switches as dashed lines.

    Why the lines: on the non-stationary envs a drop in return is only readable against the switch that caused it.
    Each switch is labelled with the phase that starts there, in the colour of its run.
    """
    fig, axes = _new_figure(1, 1, width=6.0, height=4.0)
    ax = axes[0][0]
    marked = False
    for run in runs:
        if tag in run.scalars:
            steps, values = run.scalars[tag]
            (line,) = ax.plot(steps, values, label=run.label, linewidth=1.2)
            for step, phase in switch_marks(run):
                ax.axvline(step, color=line.get_color(), linestyle="--", linewidth=0.8, alpha=0.6)
                ax.annotate(
                    f"{phase}", (step, 1.0), xycoords=("data", "axes fraction"), xytext=(2, -10),
                    textcoords="offset points", fontsize="x-small", color=line.get_color(),
                )  # fmt: skip
                marked = True
    if marked:
        ax.plot([], [], color="grey", linestyle="--", linewidth=0.8, label="phase switch (new phase)")
    ax.set_xlabel("timesteps")
    ax.set_ylabel(tag)
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    return _save(fig, out_file, dpi)


def plot_diagnostics(runs: Sequence[Run], out_file: str | os.PathLike[str], dpi: int = 120) -> Path | None:
    """Dormant fractions, saturation and srank per layer: one row per metric present, one column per run."""
    metrics = [m for m in DIAG_METRICS if any(run.tags("diag/", f"/{m}") for run in runs)]
    if not metrics:
        return None
    fig, axes = _new_figure(len(metrics), len(runs))
    for row, metric in enumerate(metrics):
        for col, run in enumerate(runs):
            ax = axes[row][col]
            _draw_lines(ax, run, run.tags("diag/", f"/{metric}"), ("diag/", f"/{metric}"))
            if metric != "srank":  # fractions: keep 0 in view so flat lines read as "none"
                ax.set_ylim(bottom=-0.01)
            if row == 0:
                ax.set_title(run.label, fontsize="medium")
            if col == 0:
                ax.set_ylabel(metric)
    for ax in axes[-1]:
        ax.set_xlabel("timesteps")
    return _save(fig, out_file, dpi)


def _save(fig: Figure, out_file: str | os.PathLike[str], dpi: int) -> Path:
    path = Path(out_file)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi, format="png")
    return path


# ---------------------------------------------------------------------------------------------- CLI
def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the ``plot`` arguments to a (sub)parser; pair with :func:`run` as the handler."""
    parser.add_argument(
        "runs",
        nargs="+",
        metavar="RUN_DIR",
        help="run folder(s) with TensorBoard event files, or parents of several runs (searched recursively)",
    )
    parser.add_argument("--out", default="plots", metavar="DIR", help="output folder for the PNG files (default: plots)")
    parser.add_argument("--dpi", type=int, default=120, help="resolution of the PNG files (default: 120)")
    return parser


def build_parser(prog: str = "python -m sb3_regnorm plot") -> argparse.ArgumentParser:
    """Stand-alone parser for the ``plot`` command."""
    parser = argparse.ArgumentParser(
        prog=prog, description="Plot RN code length per layer and episode return from TensorBoard runs."
    )
    return add_arguments(parser)


def run(args: argparse.Namespace) -> int:
    """Write the figures for parsed arguments; SystemExit with a message if there is nothing RN-related to plot."""
    runs = load_runs(args.runs)
    if not any(r.tags("regnorm/", CODE_LENGTH_SUFFIX) for r in runs):
        listed = ", ".join(str(r.path) for r in runs)
        raise SystemExit(
            f"sb3_regnorm plot: no 'regnorm/*/code_length' tags in {listed}; "
            "train with sb3_regnorm.callbacks.RegularityCallback to log them (an RN policy), or with "
            "sb3_regnorm.probes.RegularityProbeCallback to get them from a plain policy"
        )
    out = Path(args.out)
    written = [plot_code_lengths(runs, out / "code_length.png", args.dpi)]
    if any(RETURN_TAG in r.scalars for r in runs):
        written.append(plot_returns(runs, out / "returns.png", args.dpi))
    else:
        print(f"sb3_regnorm plot: no '{RETURN_TAG}' tag, returns.png skipped", file=sys.stderr)
    diagnostics = plot_diagnostics(runs, out / "diagnostics.png", args.dpi)
    if diagnostics is not None:
        written.append(diagnostics)
    for path in written:
        print(path)
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m sb3_regnorm plot RUN_DIR [RUN_DIR ...] --out DIR``; ``argv`` excludes the ``plot`` word."""
    return run(build_parser().parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
