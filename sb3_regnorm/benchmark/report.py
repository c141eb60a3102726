"""``report.md`` and PNG figures of a campaign, rebuilt from its ``runs.jsonl`` alone.

Per task (algo, env): each arm's IQM with a 95% stratified bootstrap CI, mean +- SEM, every run's score, the
probability of improvement of each RN arm over ``none`` and over ``ln`` (and of ``ln`` over ``none``) with its CI
and a plain verdict, learning curves (IQM across runs at each evaluation point with a bootstrap band) and a
score-interval plot. The only outside input is the shipped campaign's optional ``reference`` block (the paper's
published numbers), looked up by name.

A run that diverged (``score: null``, see :mod:`sb3_regnorm.benchmark.run`) counts as the worst finished run of its
task, whatever its arm: it produced no agent, and leaving it out would score its arm on its surviving runs only.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Final

import numpy as np

from sb3_regnorm.benchmark import stats
from sb3_regnorm.benchmark.runner import check_configurations, read_records, unique_records

__all__ = [
    "BASELINES",
    "MIN_RUNS_FOR_VERDICT",
    "RECOVERY_TOLERANCE",
    "PhaseMetrics",
    "build_report",
    "phase_metrics",
    "poi_verdict",
    "score_diverged_runs",
    "write_report",
]

BASELINES: Final = ("none", "ln")
_ORDER: Final = ("none", "ln", "rn", "rln", "rnln")
Task = tuple[str, str]


def _arm_order(arms: Iterable[str]) -> list[str]:
    return sorted(set(arms), key=lambda a: (_ORDER.index(a) if a in _ORDER else len(_ORDER), a))


def _comparisons(arms: Iterable[str]) -> list[tuple[str, str]]:
    """The (X, Y) pairs a report compares: LayerNorm over no norm (the paper claims both orderings, so the baselines'
    own order is part of the answer), then every other arm over each baseline present."""
    present = set(arms)
    pairs = [("ln", "none")] if {"ln", "none"} <= present else []
    return pairs + [(x, y) for x in _arm_order(present) if x not in BASELINES for y in BASELINES if y in present]


MIN_RUNS_FOR_VERDICT: Final = 5
"""Fewer runs per arm than this give no verdict: a bootstrap over 1-4 runs gives degenerate or unreliable intervals."""


def poi_verdict(lo: float, hi: float, x: str, y: str, n_min: int = MIN_RUNS_FOR_VERDICT) -> str:
    """Plain words for a probability-of-improvement interval: better, worse, cannot tell, or too few runs.

    ``n_min``: the smallest number of runs per arm per task in the comparison.
    """
    if n_min < MIN_RUNS_FOR_VERDICT:
        return f"too few runs for a verdict (n={n_min} < {MIN_RUNS_FOR_VERDICT} per arm)"
    if lo > 0.5:
        return f"{x} better than {y}"
    if hi < 0.5:
        return f"{x} worse than {y}"
    return "cannot tell"


def _group(records: list[dict[str, Any]]) -> dict[Task, dict[str, list[dict[str, Any]]]]:
    out: dict[Task, dict[str, list[dict[str, Any]]]] = defaultdict(lambda: defaultdict(list))
    for r in records:
        out[(r["algo"], r["env"])][r["arm"]].append(r)
    for arms in out.values():
        for runs in arms.values():
            runs.sort(key=lambda r: int(r["seed"]))
    return out


def score_diverged_runs(records: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[str]]:
    """Records with every diverged run's score set to the lowest finished score of its task (flagged ``diverged``),
    and one note per diverged run; a diverged run of a task without any finished run is left out (and noted)."""
    floor: dict[Task, float] = {}
    for r in records:
        if r.get("score") is not None:
            task = (r["algo"], r["env"])
            floor[task] = min(floor.get(task, math.inf), float(r["score"]))
    out, notes = [], []
    for r in records:
        if r.get("score") is not None:
            out.append(r)
            continue
        task = (r["algo"], r["env"])
        why = r.get("diverged", {})
        error, at_step = why.get("error", "no score"), why.get("at_step", "?")
        where = f"{r['algo'].upper()} {r['env']} {r['arm']} seed {r['seed']}: {error} at step {at_step}"
        if task not in floor:
            notes.append(f"{where}; no finished run of this task to score it against, left out")
            continue
        out.append({**r, "score": floor[task], "diverged": why or {"error": "no score"}})
        notes.append(f"{where}; counted as the task's worst finished run ({floor[task]:.1f})")
    return out, notes


def _greedy_score(record: dict[str, Any]) -> float | None:
    """The paper protocol's secondary score (greedy evaluation over the final 10% of episodes); None elsewhere."""
    if record.get("protocol") != "paper_dqn" or record.get("diverged"):
        return None
    from sb3_regnorm.benchmark.paper_dqn import greedy_final_score

    return greedy_final_score(record)


def _reference(campaign: str) -> dict[str, Any]:
    """The shipped campaign's ``reference`` block (published numbers), if the campaign is a shipped one."""
    try:
        from sb3_regnorm.benchmark.campaign import load_campaign, shipped_campaigns

        if campaign in shipped_campaigns():
            return dict(load_campaign(campaign).reference)
    except Exception:  # a reference is decoration; the report must build from the records alone
        return {}
    return {}


def _fmt(x: float | None, digits: int = 1) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


def _digits(scores: Iterable[Any]) -> int:
    """Decimals that resolve a task's scores: 1 for returns in the tens or more (LunarLander), 3 for success-rate-like
    returns in [0, 1] (MiniGrid), where one decimal would print 0.96 and 0.85 alike as 1.0 and 0.8."""
    finite = [abs(float(v)) for v in scores if v is not None and math.isfinite(float(v))]
    largest = max(finite, default=0.0)
    return 1 if largest >= 10 else 2 if largest >= 1.5 else 3


def _curves(runs: list[dict[str, Any]], key: str = "returns") -> tuple[np.ndarray, np.ndarray] | None:
    """(steps, runs x points) for the runs whose curve has the most common length (steps: median per point)."""
    lengths = [len(r["curve"][key]) for r in runs if r.get("curve")]
    if not lengths:
        return None
    n = max(set(lengths), key=lengths.count)
    same = [r for r in runs if r.get("curve") and len(r["curve"][key]) == n]
    values = np.array([r["curve"][key] for r in same], dtype=float)
    steps = np.median(np.array([r["curve"]["steps"] for r in same], dtype=float), axis=0)
    return steps, values


Band = tuple[str, np.ndarray, np.ndarray]  # (label, x, runs x points)


def _band_figure(path: Path, bands: list[Band], xlabel: str, ylabel: str, title: str) -> None:
    """One PNG of curves with their 95% bootstrap bands (IQM across runs per point)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2))
    for label, x, values in bands:
        mid, lo, hi = stats.bootstrap_curve_band(values)
        ax.plot(x, mid, label=f"{label} (n={values.shape[0]})")
        ax.fill_between(x, lo, hi, alpha=0.2)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _evaluation_bands(arms: dict[str, list[dict[str, Any]]]) -> list[Band]:
    """Per arm, the evaluation curves of its runs against environment steps."""
    bands = []
    for arm in _arm_order(arms):
        got = _curves(arms[arm])
        if got is not None:
            bands.append((arm, *got))
    return bands


def _training_bands(arms: dict[str, list[dict[str, Any]]]) -> list[Band]:
    """Per arm, the windowed training-episode returns (paper protocol) against the training episode."""
    bands = []
    for arm in _arm_order(arms):
        runs = [r for r in arms[arm] if "train_returns_window" in r]
        rows = [r["train_returns_window"] for r in runs]
        if not rows or len({len(row) for row in rows}) != 1:
            continue
        window = len(rows[0])
        episodes = int(runs[0].get("n_episodes", window))
        bands.append((arm, np.arange(1, window + 1) * episodes / window, np.array(rows, dtype=float)))
    return bands


def _plot_task(
    folder: Path, task: Task, arms: dict[str, list[dict[str, Any]]], table: Mapping[str, tuple[float, float, float]]
) -> list[str]:
    """Learning curves (IQM + 95% band) and score intervals of one task as PNGs; return the file names."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    algo, env = task
    stem = f"{algo}_{env}".replace("/", "_")
    names = [f"curves_{stem}.png"]
    _band_figure(
        folder / names[-1],
        _evaluation_bands(arms),
        "environment steps",
        "evaluation return (IQM, 95% bootstrap band)",
        f"{algo.upper()} {env}",
    )
    if any("train_returns_window" in r for runs in arms.values() for r in runs):
        names.append(f"train_{stem}.png")
        _band_figure(
            folder / names[-1],
            _training_bands(arms),
            "training episode",
            "training return, episode window mean (IQM, 95% band)",
            f"{algo.upper()} {env}: training episodes (paper protocol)",
        )
    fig, ax = plt.subplots(figsize=(6, 0.5 + 0.45 * len(table)))
    order = _arm_order(table)
    for i, arm in enumerate(order):
        point, low, high = table[arm]
        ax.errorbar([point], [i], xerr=[[point - low], [high - point]], fmt="o", capsize=4)
    ax.set_yticks(range(len(order)), order)
    ax.invert_yaxis()
    ax.set_xlabel("score IQM with 95% stratified bootstrap CI")
    ax.set_title(f"{algo.upper()} {env}")
    fig.tight_layout()
    fig.savefig(folder / f"scores_{stem}.png", dpi=110)
    plt.close(fig)
    names.append(f"scores_{stem}.png")
    return names


def _task_section(
    folder: Path, task: Task, arms: dict[str, list[dict[str, Any]]], reference: dict[str, Any], plots: bool
) -> tuple[list[str], list[str]]:
    """The markdown of one task and its one-line verdicts."""
    algo, env = task
    scores = {arm: np.array([r["score"] for r in runs], dtype=float) for arm, runs in arms.items()}
    table = {arm: stats.stratified_bootstrap_ci({env: s}) for arm, s in scores.items()}
    ref_scores = reference.get("scores", {}) if reference else {}
    lines = [f"## {algo.upper()} on {env}", ""]
    first = next(iter(arms.values()))[0]
    lines.append(f"Score: {first.get('score_definition', 'see runs.jsonl')}.")
    n = _digits(r["score"] for runs in arms.values() for r in runs)
    lines.append("")
    head = "| arm | runs | IQM [95% CI] | mean +- SEM | median | min .. max | wall/run | eval share |"
    sep = "|---|---|---|---|---|---|---|---|"
    greedy_of = {arm: [g for g in map(_greedy_score, runs) if g is not None] for arm, runs in arms.items()}
    greedy = any(greedy_of.values())
    if greedy:
        head += " greedy eval, final 10% (mean +- SEM) |"
        sep += "---|"
    if ref_scores:
        head += " paper (n=50, mean +- SEM) |"
        sep += "---|"
    lines += [head, sep]
    for arm in _arm_order(arms):
        d = stats.describe(scores[arm])
        point, lo, hi = table[arm]
        wall = np.mean([r["wall_time_s"] for r in arms[arm]])
        share = np.mean([r.get("eval_fraction", 0.0) for r in arms[arm]])
        row = (
            f"| {arm} | {d['n']} | {point:.{n}f} [{lo:.{n}f}, {hi:.{n}f}] | {d['mean']:.{n}f} +- {d['sem']:.{n}f} "
            f"| {d['median']:.{n}f} | {d['min']:.{n}f} .. {d['max']:.{n}f} | {wall:.0f} s | {share:.1%} |"
        )
        if greedy:
            g = stats.describe(greedy_of[arm]) if greedy_of[arm] else None
            row += f" {g['mean']:.{n}f} +- {g['sem']:.{n}f} |" if g else " - |"
        if ref_scores:
            ref = ref_scores.get(arm)
            row += f" {ref[0]:.2f} +- {ref[1]:.2f} |" if ref else " - |"
        lines.append(row)
    lines.append("")
    verdicts = []
    poi_rows = []
    for x, y in _comparisons(arms):
        p, lo, hi = stats.probability_of_improvement_ci({env: scores[x]}, {env: scores[y]})
        verdict = poi_verdict(lo, hi, x, y, min(len(scores[x]), len(scores[y])))
        poi_rows.append(f"| {x} vs {y} | {p:.2f} [{lo:.2f}, {hi:.2f}] | {verdict} |")
        verdicts.append(f"{algo.upper()} {env}: {x} vs {y}: P(improvement) {p:.2f} [{lo:.2f}, {hi:.2f}], {verdict}")
    if poi_rows:
        lines += ["| comparison | P(X > Y) [95% CI] | verdict |", "|---|---|---|", *poi_rows, ""]
    lines += _phase_section(task, arms)
    seeds = sorted({int(r["seed"]) for runs in arms.values() for r in runs})
    lines += ["Every run's score (columns: seeds):", ""]
    lines += ["| arm | " + " | ".join(str(s) for s in seeds) + " |", "|---|" + "---|" * len(seeds)]
    for arm in _arm_order(arms):
        by_seed = {int(r["seed"]): ("diverged" if r.get("diverged") else _fmt(r["score"], n)) for r in arms[arm]}
        lines.append(f"| {arm} | " + " | ".join(by_seed.get(s, "-") for s in seeds) + " |")
    lines.append("")
    if plots:
        for name in _plot_task(folder, task, arms, table):
            lines += [f"![{name}]({name})", ""]
    return lines, verdicts


RECOVERY_TOLERANCE: Final = 0.1
"""A run has recovered after a switch at the first evaluation of the new segment whose return is within 10% (of the
magnitude, at least 10 return units) of what it reached the last time it was in the same phase (mean of the last two
evaluations of that earlier segment). The same phase, not the previous one: phases differ in difficulty, and an arm
that does equally badly everywhere would otherwise "recover" at every switch."""


@dataclass(frozen=True)
class PhaseMetrics:
    """What one non-stationary run did around its phase switches (see :func:`phase_metrics`)."""

    means: dict[int, float]
    """Mean evaluation return per phase id, over the segments after the first (segment 0 is learning from scratch)."""
    drops: list[float]
    """Per switch: return before it (mean of the last two evaluations) minus the first evaluation after it."""
    recovery: list[float | None]
    """Per switch into a phase seen before: agent steps from the first evaluation after the switch to the evaluation
    that is back at the phase's earlier level (0: already there; ``None``: not within the segment)."""


def phase_metrics(run: dict[str, Any]) -> PhaseMetrics:
    """Per-phase return, the drop at each switch, and the steps to recover after switches into a phase seen before.

    Evaluations are grouped into segments by the switch count (phases cycle, so a phase id recurs). Steps to recover
    count from the first evaluation of the new segment, not from the switch: evaluation points do not fall on the
    switches (PPO evaluates at rollout starts), so counting from the switch would add an offset that is the same for
    every arm and varies from switch to switch.
    """
    curve = run["curve"]
    by_segment: dict[int, list[tuple[int, float]]] = defaultdict(list)
    phase_of: dict[int, int] = {}
    segments_of = curve.get("switches") or curve["phase"]
    for phase, segment, step, ret in zip(curve["phase"], segments_of, curve["steps"], curve["returns"], strict=False):
        if phase is not None and segment is not None:
            by_segment[int(segment)].append((int(step), float(ret)))
            phase_of[int(segment)] = int(phase)
    order = sorted(by_segment)
    per_phase: dict[int, list[float]] = defaultdict(list)
    for segment in order[1:]:
        per_phase[phase_of[segment]] += [r for _, r in by_segment[segment]]
    means = {k: float(np.mean(v)) for k, v in sorted(per_phase.items())}
    drops: list[float] = []
    recovery: list[float | None] = []
    last_level: dict[int, float] = {}  # phase id -> level at the end of its latest segment
    for index, segment in enumerate(order):
        points, phase = by_segment[segment], phase_of[segment]
        if index > 0:
            before = float(np.mean([r for _, r in by_segment[order[index - 1]][-2:]]))
            drops.append(before - points[0][1])
            if phase in last_level:
                level = last_level[phase]
                threshold = level - max(RECOVERY_TOLERANCE * abs(level), 10.0)
                hit = next((step for step, ret in points if ret >= threshold), None)
                recovery.append(None if hit is None else float(hit - points[0][0]))
        last_level[phase] = float(np.mean([r for _, r in points[-2:]]))
    return PhaseMetrics(means, drops, recovery)


def _phase_section(task: Task, arms: dict[str, list[dict[str, Any]]]) -> list[str]:
    """Return per phase (IQM across runs), the drop at a switch and the steps to recover, for phase-tagged curves."""
    runs_with_phases = {arm: [r for r in runs if r.get("curve", {}).get("phase")] for arm, runs in arms.items()}
    if not any(runs_with_phases.values()):
        return []
    per_arm = {arm: [phase_metrics(r) for r in runs] for arm, runs in runs_with_phases.items() if runs}
    phases = sorted({k for metrics in per_arm.values() for m in metrics for k in m.means})
    lines = [
        f"Non-stationary {task[1]}: evaluation return per phase (IQM across runs; segments after the first), the drop "
        "in return at a switch (median over switches and runs), and the agent steps to recover after a switch into a "
        "phase seen before (median; counted from the first evaluation after the switch; recovered = back within 10% "
        "(>= 10 units) of the run's level the last time it was in that phase). Read recovery with the per-phase "
        "return: an arm that is poor everywhere also loses little.",
        "",
        "| arm | " + " | ".join(f"phase {k}" for k in phases) + " | median drop | recovered | median steps to recover |",
        "|---|" + "---|" * (len(phases) + 3),
    ]
    for arm in _arm_order(per_arm):
        metrics = per_arm[arm]
        cells = []
        for k in phases:
            values = [m.means[k] for m in metrics if k in m.means]
            cells.append(_fmt(stats.iqm(values)) if values else "-")
        drops = [d for m in metrics for d in m.drops]
        steps = [s for m in metrics for s in m.recovery]
        done = [s for s in steps if s is not None]
        drop = _fmt(float(np.median(drops))) if drops else "-"
        share = f"{len(done)}/{len(steps)}" if steps else "-"
        median = f"{np.median(done):,.0f}" if done else "-"
        lines.append(f"| {arm} | " + " | ".join(cells) + f" | {drop} | {share} | {median} |")
    return [*lines, ""]


def _aggregate_section(groups: dict[Task, dict[str, list[dict[str, Any]]]]) -> list[str]:
    """Probability of improvement averaged over tasks (scale-free, so tasks with different returns can be pooled)."""
    if len(groups) < 2:
        return []
    arm_sets = [set(arms) for arms in groups.values()]
    common = set.intersection(*arm_sets)
    lines = ["## All tasks together", "", "Probability of improvement averaged over the tasks (stratified bootstrap):", ""]
    lines += ["| comparison | tasks | P(X > Y) [95% CI] | verdict |", "|---|---|---|---|"]
    for x, y in _comparisons(common):
        xs = {f"{t[0]}/{t[1]}": [r["score"] for r in arms[x]] for t, arms in groups.items()}
        ys = {f"{t[0]}/{t[1]}": [r["score"] for r in arms[y]] for t, arms in groups.items()}
        p, lo, hi = stats.probability_of_improvement_ci(xs, ys)
        n_min = min(len(v) for v in [*xs.values(), *ys.values()])
        lines.append(f"| {x} vs {y} | {len(xs)} | {p:.2f} [{lo:.2f}, {hi:.2f}] | {poi_verdict(lo, hi, x, y, n_min)} |")
    return [*lines, ""]


def _progress_section(campaign: str, records: list[dict[str, Any]]) -> list[str]:
    """How much of a shipped campaign's matrix is done, and the command that resumes it."""
    try:
        from sb3_regnorm.benchmark.campaign import load_campaign, shipped_campaigns

        if campaign not in shipped_campaigns():
            return []
        matrix = load_campaign(campaign).runs()
    except Exception:  # progress is decoration; the report must build from the records alone
        return []
    done = {(str(r["algo"]), str(r["env"]), str(r["arm"]), int(r["seed"])) for r in records}
    left = [spec for spec in matrix if spec.key not in done]
    if not left:
        return [f"Progress: all {len(matrix)} runs of the campaign are finished.", ""]
    seeds_done = sorted({spec.seed for spec in matrix} - {spec.seed for spec in left})
    return [
        f"**Progress: {len(matrix) - len(left)} of {len(matrix)} runs finished, {len(left)} left** "
        f"(seeds complete for every arm: {seeds_done if seeds_done else 'none yet'}). Partial results: the intervals "
        f"below are wide and will narrow as seeds arrive. Resume with `sb3-regnorm bench run {campaign} --jobs N`.",
        "",
    ]


def _versions_section(records: list[dict[str, Any]]) -> list[str]:
    """Every distinct set of package versions with its run count, then the package commits the runs came from: a
    campaign resumed on another machine or after an upgrade must not look as if one set of versions ran it all."""
    version_sets: Counter[frozenset[tuple[str, str]]] = Counter()
    as_recorded: dict[frozenset[tuple[str, str]], str] = {}  # each set printed in its first record's order
    commits: Counter[str] = Counter()
    for record in records:
        versions = {str(k): str(v) for k, v in record.get("versions", {}).items()}
        commit = versions.pop("sb3-regnorm-commit", "not recorded")
        commits[commit[:12] + commit[40:] if len(commit) >= 40 else commit] += 1
        key = frozenset(versions.items())
        version_sets[key] += 1
        as_recorded.setdefault(key, ", ".join(f"{k} {v}" for k, v in versions.items()) or "not recorded")
    lines = ["## Versions", ""]
    lines += [f"- {count} run(s): {as_recorded[key]}" for key, count in version_sets.most_common()]
    lines.append("- sb3-regnorm commit (runs): " + ", ".join(f"{c} ({n})" for c, n in commits.most_common()))
    return [*lines, ""]


def build_report(folder: Path, plots: bool = True) -> str:
    """The markdown text of ``folder``'s report (figures written next to it when ``plots``)."""
    every = read_records(folder / "runs.jsonl")
    check_configurations(every)  # duplicates too: the runner refuses the same file, and the report must agree
    records, duplicates = unique_records(every)
    records, diverged = score_diverged_runs(records)
    if not records:
        return f"# Benchmark campaign `{folder.name}`\n\nNo finished runs yet in `{folder / 'runs.jsonl'}`.\n"
    campaign = str(records[0]["campaign"])
    groups = _group(records)
    reference = _reference(campaign)
    wall = sum(float(r["wall_time_s"]) for r in records)
    hosts = sorted({str(r.get("host", "?")) for r in records})
    lines = [
        f"# Benchmark campaign `{campaign}`",
        "",
        f"Rebuilt by `sb3-regnorm bench report {campaign}` from `runs.jsonl` ({len(records)} finished runs) on "
        f"{datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}. Compute in these runs: {wall / 3600:.2f} core-hours "
        f"(one torch thread per run) on {', '.join(hosts)}.",
        "",
        "Statistics (Agarwal et al. 2021): IQM = mean of the middle 50% of runs; 95% CIs from 2000 stratified bootstrap "
        "resamples of runs (percentile method); P(X > Y) = probability that a run of X scores above a run of Y (ties "
        "count 1/2). A verdict says better/worse only when the whole 95% interval of P(X > Y) is above/below 0.5, and "
        f"only with at least {MIN_RUNS_FOR_VERDICT} runs per arm.",
        "",
    ]
    if duplicates:
        lines += [f"`runs.jsonl` holds {duplicates} duplicate record(s) of a finished (algo, env, arm, seed); each run "
                  "counts once (its first record).", ""]  # fmt: skip
    if diverged:
        lines += ["**Diverged runs** (the agent raised while training; each counts as the worst finished run of its task):",
                  "", *[f"- {note}" for note in diverged], ""]  # fmt: skip
    lines += _progress_section(campaign, records)
    if reference:
        lines += [f"Paper reference: {reference.get('source', '')}.", ""]
    verdicts: list[str] = []
    for task in sorted(groups):
        section, task_verdicts = _task_section(folder, task, groups[task], reference, plots)
        lines += section
        verdicts += task_verdicts
    lines += _aggregate_section(groups)
    lines += ["## Verdicts", "", *[f"- {v}" for v in verdicts], ""]
    lines += _versions_section(records)
    return "\n".join(lines)


def write_report(folder: str | Path, plots: bool = True) -> Path:
    """Write ``<folder>/report.md`` (and the PNGs) from ``<folder>/runs.jsonl``; return the report's path."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "report.md"
    path.write_text(build_report(folder, plots))
    return path
