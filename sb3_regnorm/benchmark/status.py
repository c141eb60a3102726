"""Where campaigns stand: runs finished per task, compute left and the report, as one markdown table.

Why: the results of several campaigns accumulate over many sessions and machines; ``sb3-regnorm bench status`` reads
their ``runs.jsonl`` files (nothing else) and says what is done and what is left, in the table
``logs/benchmarks/README.md`` shows.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sb3_regnorm.benchmark.campaign import Campaign
from sb3_regnorm.benchmark.runner import (
    campaign_dir,
    estimate_seconds,
    finished_keys,
    pending_runs,
    read_records,
    recorded_runs,
)

__all__ = ["CampaignStatus", "TaskProgress", "campaign_status", "status_table"]


@dataclass(frozen=True)
class TaskProgress:
    """Finished and total runs of one (algo, env) task of a campaign."""

    algo: str
    env: str
    finished: int
    total: int


@dataclass(frozen=True)
class CampaignStatus:
    """A campaign's progress as read from its ``runs.jsonl``."""

    name: str
    total: int
    finished: int
    tasks: tuple[TaskProgress, ...]
    seconds_left: float  # estimated single-core compute of the pending runs (as ``run --dry-run``)
    report: Path | None  # ``report.md`` if one has been written

    @property
    def started(self) -> bool:
        return self.finished > 0


def campaign_status(campaign: Campaign, root: Path, calibration: list[dict[str, Any]] | None = None) -> CampaignStatus:
    """Progress of ``campaign`` under ``root`` (runs recorded that are no longer in its matrix do not count). Arms not
    run yet are estimated at the speed of the runs in ``calibration`` (default: every campaign under ``root``)."""
    folder = campaign_dir(campaign, root)
    records = read_records(folder / "runs.jsonl")
    done = finished_keys(records)
    runs = campaign.runs()
    tasks: dict[tuple[str, str], list[int]] = {}
    for spec in runs:
        counts = tasks.setdefault((spec.algo, spec.env), [0, 0])
        counts[0] += spec.key in done
        counts[1] += 1
    pending = pending_runs(campaign, records)
    if calibration is None:
        calibration = recorded_runs(root)
    report = folder / "report.md"
    return CampaignStatus(
        name=campaign.name,
        total=len(runs),
        finished=len(runs) - len(pending),
        tasks=tuple(TaskProgress(algo, env, n_done, n_all) for (algo, env), (n_done, n_all) in tasks.items()),
        seconds_left=sum(estimate_seconds(spec, records, calibration) for spec in pending),
        report=report if report.is_file() else None,
    )


def status_table(statuses: list[CampaignStatus], root: Path) -> str:
    """A markdown table with one row per campaign; report links are relative to ``root``."""
    lines = ["| campaign | finished | by task | compute left | report |", "|---|---|---|---|---|"]
    for status in statuses:
        by_task = ", ".join(f"{t.algo.upper()} {t.env} {t.finished}/{t.total}" for t in status.tasks)
        left = "none" if status.finished == status.total else f"~{status.seconds_left / 3600:.1f} core-hours"
        if status.report is not None:
            link = status.report.relative_to(root).as_posix()
            report = f"[{link}]({link})"
        else:
            report = "not started" if not status.started else "no report yet"
        lines.append(f"| `{status.name}` | {status.finished} of {status.total} | {by_task} | {left} | {report} |")
    return "\n".join(lines) + "\n"
