"""``sb3-regnorm bench``: run a campaign, rebuild its report, or list the shipped campaigns.

Usage::

    sb3-regnorm bench list
    sb3-regnorm bench run CAMPAIGN [--jobs N] [--dry-run] [--max-runs N] [--root logs/benchmarks]
    sb3-regnorm bench run CAMPAIGN --seeds 0 1 2 [--algo dqn] [--arm rn]   # a subset first; the rest later
    sb3-regnorm bench run CAMPAIGN --backend ray --address HOST:PORT      # one Ray task per run on a cluster
    sb3-regnorm bench report CAMPAIGN [--root logs/benchmarks]
    sb3-regnorm bench status [CAMPAIGN ...] [--root logs/benchmarks]   # finished runs and compute left, as a table

``CAMPAIGN`` is a shipped campaign name (``paper``, ``paper_quirk``, ``lunarlander``, ``minigrid``,
``nonstationary``) or the path of
your own campaign file (YAML, JSON or TOML; see :mod:`sb3_regnorm.benchmark.campaign`). Results go to
``<root>/<campaign name>/runs.jsonl``; rerunning the same command resumes an interrupted campaign.
"""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path
from typing import Any

from sb3_regnorm._generated import print_or_write

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sb3-regnorm bench", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="list the shipped campaigns with their size")
    run = sub.add_parser("run", help="run (or resume) a campaign")
    run.add_argument("campaign", help="shipped campaign name or campaign file")
    run.add_argument("--jobs", type=int, default=None, help="runs at once (default: the number of cores; Ray: all)")
    run.add_argument("--dry-run", action="store_true", help="print the matrix and the estimated compute, run nothing")
    run.add_argument("--max-runs", type=int, default=None, help="stop after starting this many pending runs")
    run.add_argument("--seeds", type=int, nargs="+", default=(), help="run only these seeds (e.g. 0 1 2 of every arm)")
    run.add_argument("--algo", nargs="+", default=(), help="run only these algorithms' experiments")
    run.add_argument("--arm", nargs="+", default=(), help="run only these arms")
    run.add_argument("--backend", choices=("local", "ray"), default="local")
    run.add_argument("--address", default=None, help="Ray cluster address (e.g. ray://head:10001 or HOST:6379)")
    run.add_argument("--root", default="logs/benchmarks", help="results folder (default: %(default)s)")
    run.add_argument("--no-report", action="store_true", help="do not rebuild report.md at the end")
    status = sub.add_parser("status", help="finished runs per task and compute left of campaigns (markdown table)")
    status.add_argument("campaigns", nargs="*", help="shipped campaign names or files (default: every shipped one)")
    status.add_argument("--root", default="logs/benchmarks")
    status.add_argument(
        "--write",
        metavar="PAGE",
        help="put the table into PAGE (e.g. logs/benchmarks/README.md) under its `<!-- status-table: ... -->` line",
    )
    report = sub.add_parser("report", help="rebuild report.md and the plots from runs.jsonl alone")
    report.add_argument("campaign", help="shipped campaign name, campaign file, or a folder holding runs.jsonl")
    report.add_argument("--root", default="logs/benchmarks")
    return parser


def _sigterm(signum: int, frame: Any) -> None:
    """SIGTERM stops a campaign like Ctrl-C: finished runs are already recorded, running ones are dropped."""
    del signum, frame
    raise KeyboardInterrupt


def _report(target: str, root: Path) -> int:
    from sb3_regnorm.benchmark.report import write_report

    folder = Path(target) if (Path(target) / "runs.jsonl").is_file() else None
    if folder is None:
        from sb3_regnorm.benchmark.campaign import load_campaign

        folder = root / load_campaign(target).name
    path = write_report(folder)
    print(f"[bench] report: {path}")
    return 0


def _write_report(skip: bool, folder: Path, root: Path) -> None:
    if not skip and (folder / "runs.jsonl").is_file():
        _report(str(folder), root)


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``sb3-regnorm bench`` / ``python -m sb3_regnorm bench``; returns the exit status."""
    args = _parser().parse_args(argv)
    from sb3_regnorm.benchmark.campaign import CampaignError, RunSelection, load_campaign, shipped_campaigns

    root = Path(args.root) if hasattr(args, "root") else Path("logs/benchmarks")
    try:
        if args.command == "list":
            for name, path in sorted(shipped_campaigns().items()):
                campaign = load_campaign(path)
                print(f"{name:15s} {len(campaign.runs()):4d} runs  {campaign.description.splitlines()[0]}")
            return 0
        if args.command == "report":
            return _report(args.campaign, root)
        if args.command == "status":
            from sb3_regnorm.benchmark.runner import recorded_runs
            from sb3_regnorm.benchmark.status import campaign_status, status_table

            names = args.campaigns or sorted(shipped_campaigns())
            campaigns = [load_campaign(name) for name in names]  # all loaded (and checked) before anything is printed
            calibration = recorded_runs(root)
            table = status_table([campaign_status(c, root, calibration) for c in campaigns], root)
            return print_or_write(table, args.write, "status-table", "bench")
        from sb3_regnorm.benchmark import runner

        campaign = load_campaign(args.campaign)
        for flag, value in (("--jobs", args.jobs), ("--max-runs", args.max_runs)):
            if value is not None and value < 1:
                print(f"error: {flag} must be >= 1", file=sys.stderr)
                return 2
        selection = RunSelection(frozenset(args.seeds), frozenset(args.algo), frozenset(args.arm))
        if selection:
            selection.check(campaign)
        records = runner.read_records(runner.campaign_dir(campaign, root) / "runs.jsonl")
        runner.check_configurations(records, campaign)
        if args.dry_run:
            jobs = args.jobs or (1 if args.backend == "ray" else runner.os.cpu_count() or 1)
            print(runner.dry_run_text(campaign, records, jobs, selection, args.max_runs, runner.recorded_runs(root)))
            return 0
        signal.signal(signal.SIGTERM, _sigterm)
        try:
            runner.run_campaign(campaign, root, args.jobs, args.backend, args.address, args.max_runs, selection=selection)
        except runner.CampaignBusyError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 3  # the other runner owns the folder and its report
        except KeyboardInterrupt:
            _write_report(args.no_report, runner.campaign_dir(campaign, root), root)
            return 130
        _write_report(args.no_report, runner.campaign_dir(campaign, root), root)
        return 0
    except CampaignError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
