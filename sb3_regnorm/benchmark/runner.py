"""Run a campaign's matrix: one process per run (local pool) or one Ray task per run, appending to ``runs.jsonl``.

Why one process per run: a run owns its torch thread, RNG and memory, and a crash or kill loses that run only. The
parent is the only writer of ``runs.jsonl``: it appends one line per finished run (flushed and fsynced), so an
interrupted campaign resumes from the file and never runs a finished (algo, env, arm, seed) twice. A runner holds an
exclusive lock on its campaign folder (``.runner.lock``), so a second runner of the same campaign (e.g. started to use
more cores) stops with an error instead of running the same pending runs again.
"""

from __future__ import annotations

import json
import math
import multiprocessing
import os
import signal
import statistics
import sys
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, Final, TextIO

from sb3_regnorm._locking import LockBusyError, exclusive_lock
from sb3_regnorm.benchmark.campaign import Campaign, CampaignError, RunSelection, RunSpec

__all__ = [
    "DEFAULT_ROOT",
    "CampaignBusyError",
    "CampaignChangedError",
    "campaign_dir",
    "campaign_lock",
    "check_configurations",
    "dry_run_text",
    "estimate_seconds",
    "finished_keys",
    "machine_factor",
    "pending_runs",
    "read_records",
    "recorded_runs",
    "run_campaign",
    "unique_records",
]

DEFAULT_ROOT: Final = Path("logs/benchmarks")
# Seconds per env step on one core of the 2-core reference machine (research/feasibility.md; paper_dqn measured here).
# Estimates scale them by the speed the recorded runs show (machine_factor) until runs.jsonl holds measured wall times
# for the same (algo, env, arm).
_SECONDS_PER_STEP: Final = {
    ("paper_dqn", "dqn"): 1.45e-3,
    ("zoo", "ppo"): 1 / 4000,
    ("zoo", "a2c"): 1 / 5000,
    ("zoo", "dqn"): 1 / 330,
}
_MINIGRID_SECONDS_PER_STEP: Final = {"ppo": 1 / 750, "a2c": 1 / 1500, "dqn": 1 / 400}
_RN_FACTOR: Final = {"none": 1.0, "ln": 1.15, "rn": 1.4, "rln": 1.4, "rnln": 1.5}
_STARTUP_S: Final = 6.0


def campaign_dir(campaign: Campaign, root: Path = DEFAULT_ROOT) -> Path:
    """``<root>/<campaign name>``."""
    return Path(root) / campaign.name


def read_records(path: Path) -> list[dict[str, Any]]:
    """Every complete JSON line of a ``runs.jsonl`` (a torn last line from a kill is skipped, not fatal)."""
    if not path.is_file():
        return []
    records = []
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line:
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records


def recorded_runs(root: Path = DEFAULT_ROOT) -> list[dict[str, Any]]:
    """The records of every campaign under ``root`` (``<root>/*/runs.jsonl``): what the machine's speed is read from."""
    return [record for path in sorted(Path(root).glob("*/runs.jsonl")) for record in read_records(path)]


def _key(record: dict[str, Any]) -> tuple[str, str, str, int]:
    return (str(record["algo"]), str(record["env"]), str(record["arm"]), int(record["seed"]))


def unique_records(records: Iterable[dict[str, Any]]) -> tuple[list[dict[str, Any]], int]:
    """The first record of each (algo, env, arm, seed) and the number of later duplicates dropped.

    A runner never writes a run twice, but files concatenated from several machines can hold the same run twice, and a
    report must not count one seed twice."""
    seen: set[tuple[str, str, str, int]] = set()
    kept, dropped = [], 0
    for record in records:
        key = _key(record)
        if key in seen:
            dropped += 1
            continue
        seen.add(key)
        kept.append(record)
    return kept, dropped


def finished_keys(records: Iterable[dict[str, Any]]) -> set[tuple[str, str, str, int]]:
    """The (algo, env, arm, seed) of every finished run."""
    return {_key(r) for r in records}


class CampaignChangedError(CampaignError):
    """Runs of one arm were recorded under another configuration than the one it has now (or than each other)."""


_NO_HASH: Final = "<no config_hash>"


def _recorded_hashes(records: Iterable[dict[str, Any]]) -> dict[tuple[str, str, str], set[str]]:
    hashes: dict[tuple[str, str, str], set[str]] = {}
    for record in records:
        hashes.setdefault(_key(record)[:3], set()).add(str(record.get("config_hash") or _NO_HASH))
    return hashes


def _what_changed(record: dict[str, Any], spec: RunSpec) -> str:
    """The hyperparameter keys (or the evaluation) in which a recorded run differs from the campaign's spec now."""

    def plain(value: Any) -> Any:
        return json.loads(json.dumps(value, sort_keys=True, default=str))

    old, new = plain(record.get("hyperparams", {})), plain(spec.hyperparams)
    keys = sorted(k for k in old.keys() | new.keys() if old.get(k) != new.get(k))
    parts = [f"{k}: {old.get(k, '-')!r} -> {new.get(k, '-')!r}" for k in keys]
    if not parts:
        parts = ["the evaluation or protocol settings (`eval`, `protocol_kwargs`)"]
    return ", ".join(parts)


def check_configurations(records: Iterable[dict[str, Any]], campaign: Campaign | None = None) -> None:
    """Raise :class:`CampaignChangedError` when an arm's records mix configurations, or (given ``campaign``) differ
    from the configuration the campaign now gives that arm. A record without ``config_hash`` cannot be checked and
    counts as a configuration of its own.

    Why: arms are zoo entries, and zoo entries change (a tuned value adopted or dropped). Resuming after such a change
    would put runs of two configurations under one arm name, and its statistics would describe neither."""
    records = list(records)
    specs = {s.key[:3]: s for s in campaign.runs()} if campaign is not None else {}
    problems = []
    for arm, hashes in sorted(_recorded_hashes(records).items()):
        if len(hashes) > 1:
            problems.append(f"{' '.join(arm)}: recorded under {len(hashes)} configurations {sorted(hashes)}")
        elif arm in specs and specs[arm].config_hash() not in hashes:
            record = next(r for r in records if _key(r)[:3] == arm)
            problems.append(
                f"{' '.join(arm)}: recorded as {next(iter(hashes))}, the campaign now gives {specs[arm].config_hash()} "
                f"({_what_changed(record, specs[arm])})"
            )
    if problems:
        raise CampaignChangedError(
            "runs.jsonl holds runs of another configuration than the arm's ("
            + "; ".join(problems)
            + "). Pin the arm's old values with `overrides:` in the campaign file, or give the changed arm a new name "
            "(or move runs.jsonl away to start over)"
        )


def pending_runs(
    campaign: Campaign, records: Iterable[dict[str, Any]], selection: RunSelection | None = None
) -> list[RunSpec]:
    """The runs of the matrix (or of its ``selection``) that have no record yet, in matrix order."""
    done = finished_keys(records)
    return [spec for spec in campaign.runs() if spec.key not in done and (not selection or selection.matches(spec))]


def _reference_seconds(protocol: str, algo: str, env: str, n_timesteps: int, norm: str) -> float:
    """Wall time of one run on the reference machine, from per-step costs and a per-norm factor."""
    if protocol == "zoo" and env.startswith("MiniGrid"):
        per_step = _MINIGRID_SECONDS_PER_STEP.get(algo, 1 / 1000)
    else:
        per_step = _SECONDS_PER_STEP.get((protocol, algo), 1 / 1000)
    return _STARTUP_S + n_timesteps * per_step * _RN_FACTOR.get(norm, 1.4)


def machine_factor(records: Iterable[dict[str, Any]], protocol: str | None = None, algo: str | None = None) -> float:
    """How many times the reference estimate the recorded runs took: the median of measured / reference wall time
    over the runs of the same ``protocol`` and ``algo`` if there are any, else over all runs; 1.0 without timed runs.

    Why: the reference per-step costs come from one machine; on a machine 3x slower (or a loaded one) estimates for
    arms not yet run would be 3x too low, while the recorded runs show the speed of the machine(s) that ran them."""
    ratios: dict[tuple[str, str], list[float]] = {}
    for record in records:
        try:
            measured = float(record["wall_time_s"])
            reference = _reference_seconds(
                str(record.get("protocol", "zoo")),
                str(record["algo"]),
                str(record["env"]),
                int(record["n_timesteps"]),
                str(record["norm"]),
            )
        except (KeyError, TypeError, ValueError):
            continue  # a record without timing cannot calibrate
        if measured > 0 and math.isfinite(measured):
            ratios.setdefault((str(record.get("protocol", "zoo")), str(record["algo"])), []).append(measured / reference)
    same = ratios.get((protocol, algo), []) if protocol is not None and algo is not None else []
    pool = same or [ratio for group in ratios.values() for ratio in group]
    return statistics.median(pool) if pool else 1.0


def estimate_seconds(
    spec: RunSpec, records: Iterable[dict[str, Any]] = (), calibration: Iterable[dict[str, Any]] | None = None
) -> float:
    """Estimated wall time of one run: the mean measured time of finished runs of the same (algo, env, arm), else the
    reference estimate scaled by :func:`machine_factor` of ``calibration`` (default: ``records``), e.g. the runs of
    every campaign under the results root."""
    records = list(records)
    same = [float(r["wall_time_s"]) for r in records if (r["algo"], r["env"], r["arm"]) == (spec.algo, spec.env, spec.arm)]
    if same:
        return sum(same) / len(same)
    factor = machine_factor(records if calibration is None else calibration, spec.protocol, spec.algo)
    return factor * _reference_seconds(spec.protocol, spec.algo, spec.env, spec.n_timesteps, spec.norm)


def _fmt_time(seconds: float) -> str:
    hours, rest = divmod(int(seconds), 3600)
    return f"{hours}h{rest // 60:02d}m" if hours else f"{rest // 60}m{rest % 60:02d}s"


def dry_run_text(
    campaign: Campaign,
    records: list[dict[str, Any]],
    jobs: int,
    selection: RunSelection | None = None,
    max_runs: int | None = None,
    calibration: list[dict[str, Any]] | None = None,
) -> str:
    """The matrix (one line per experiment x arm), what is done, the estimated compute left, and what ``run`` with
    the same ``selection`` and ``max_runs`` would run next. Arms not run yet are estimated at the speed of the runs in
    ``calibration`` (default: ``records``; see :func:`estimate_seconds`)."""
    pending = pending_runs(campaign, records)
    done = finished_keys(records)
    lines = [f"campaign {campaign.name} ({campaign.source}), protocol {campaign.protocol}"]
    total_left = 0.0
    for exp in campaign.experiments:
        for arm in exp.arms:
            specs = [s for s in campaign.runs() if (s.algo, s.env, s.arm) == (exp.algo, exp.env, arm.name)]
            n_done = sum(s.key in done for s in specs)
            est = estimate_seconds(specs[0], records, calibration)
            left = est * (len(specs) - n_done)
            total_left += left
            lines.append(
                f"  stage {exp.stage}  {exp.algo:4s} {exp.env:32s} {arm.name:12s} norm={arm.norm:5s} "
                f"seeds={len(specs):3d} done={n_done:3d}  steps={specs[0].n_timesteps:>9,d}  ~{_fmt_time(est)}/run"
            )
    n_all = len(campaign.runs())
    lines.append(
        f"runs: {n_all} in all, {n_all - len(pending)} done, {len(pending)} left; "
        f"compute left ~{total_left / 3600:.1f} core-hours, ~{_fmt_time(total_left / max(jobs, 1))} wall with --jobs {jobs}"
    )
    if selection or max_runs is not None:
        chosen = pending_runs(campaign, records, selection)[:max_runs]
        left = sum(estimate_seconds(spec, records, calibration) for spec in chosen)
        lines.append(
            f"this run: {len(chosen)} pending run(s), ~{left / 3600:.1f} core-hours, ~{_fmt_time(left / max(jobs, 1))} "
            f"wall with --jobs {jobs}"
        )
        groups: dict[tuple[str, str, str], list[int]] = {}
        for spec in chosen:
            groups.setdefault((spec.algo, spec.env, spec.arm), []).append(spec.seed)
        for (algo, env, arm_name), seeds in groups.items():
            lines.append(f"  {algo:4s} {env:32s} {arm_name:12s} seeds {_seed_list(seeds)}")
    return "\n".join(lines)


def _seed_list(seeds: list[int]) -> str:
    """``0-2, 5`` for seeds 0, 1, 2, 5."""
    spans: list[list[int]] = []
    for seed in sorted(seeds):
        if spans and seed == spans[-1][1] + 1:
            spans[-1][1] = seed
        else:
            spans.append([seed, seed])
    return ", ".join(str(a) if a == b else f"{a}-{b}" for a, b in spans)


class CampaignBusyError(LockBusyError):
    """Another runner holds the campaign folder's lock."""


def campaign_lock(folder: Path) -> AbstractContextManager[None]:
    """The campaign folder's lock (``folder/.runner.lock``, non-blocking).

    Why: each runner takes the pending runs from ``runs.jsonl`` when it starts, so two runners of one campaign would
    both run every pending run."""
    busy = f"campaign folder {folder} is in use by another runner; wait for it, or stop it and rerun with a larger --jobs"
    return exclusive_lock(Path(folder) / ".runner.lock", blocking=False, busy=busy, error=CampaignBusyError)


def _append(handle: TextIO, record: dict[str, Any]) -> None:
    """Append one record as a JSON line and make it durable before the run counts as finished."""
    handle.write(json.dumps(record, default=str) + "\n")
    handle.flush()
    os.fsync(handle.fileno())


def _progress(done: int, running: int, left: int, eta: float, record: dict[str, Any] | None, out: TextIO) -> None:
    if record is not None:
        print(
            f"[bench] finished {record['algo']} {record['env']} {record['arm']} seed {record['seed']}: "
            f"score {record['score']:.2f} in {record['wall_time_s']:.0f}s",
            file=out,
        )
    print(
        f"[bench] runs done {done}, running {running}, left {left}; estimated time left {_fmt_time(eta)}", file=out, flush=True
    )


def _worker(spec: RunSpec) -> dict[str, Any]:
    """Process-pool entry: one run with one torch thread (SIGINT ignored: the parent decides when to stop)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    from sb3_regnorm.benchmark.run import run_one

    return run_one(spec, num_threads=1)


Submit = Callable[[RunSpec], Any]


def _local_pool(jobs: int) -> tuple[Any, Submit, Callable[[set[Any]], tuple[set[Any], set[Any]]], Callable[[Any], Any]]:
    """A spawn process pool with one task per worker process (fresh interpreter per run)."""
    os.environ.setdefault("OMP_NUM_THREADS", "1")  # inherited by the workers before they import torch
    # One run per worker process (Python 3.11+; on 3.10 a worker process is reused for several runs).
    per_child: dict[str, Any] = {"max_tasks_per_child": 1} if sys.version_info >= (3, 11) else {}
    pool = ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("spawn"), **per_child)

    def submit(spec: RunSpec) -> Future[dict[str, Any]]:
        return pool.submit(_worker, spec)

    def wait_any(futures: set[Any]) -> tuple[set[Any], set[Any]]:
        done, not_done = wait(futures, return_when=FIRST_COMPLETED)
        return set(done), set(not_done)

    def result(future: Any) -> Any:
        return future.result()

    return pool, submit, wait_any, result


def _ray_pool(
    address: str | None,
) -> tuple[Any, Submit, Callable[[set[Any]], tuple[set[Any], set[Any]]], Callable[[Any], Any]]:
    """Ray tasks (``num_cpus=1`` each) on an existing cluster (``address``) or the Ray instance already initialised."""
    try:
        import ray
    except ImportError as exc:
        raise RuntimeError("the Ray backend needs Ray: pip install 'sb3-regnorm[ray]'") from exc
    if not ray.is_initialized():
        ray.init(address=address, log_to_driver=False)

    @ray.remote(num_cpus=1)
    def ray_run(spec: RunSpec) -> dict[str, Any]:
        os.environ["OMP_NUM_THREADS"] = "1"
        from sb3_regnorm.benchmark.run import run_one

        return run_one(spec, num_threads=1)

    def submit(spec: RunSpec) -> Any:
        return ray_run.remote(spec)

    def wait_any(refs: set[Any]) -> tuple[set[Any], set[Any]]:
        done, not_done = ray.wait(list(refs), num_returns=1)
        return set(done), set(not_done)

    def result(ref: Any) -> Any:
        return ray.get(ref)

    class _Closer:
        def shutdown(self, wait: bool = True, cancel_futures: bool = False) -> None:
            del wait, cancel_futures  # tasks of an interrupted campaign are cancelled by the caller

    return _Closer(), submit, wait_any, result


def run_campaign(
    campaign: Campaign,
    root: Path = DEFAULT_ROOT,
    jobs: int | None = None,
    backend: str = "local",
    address: str | None = None,
    max_runs: int | None = None,
    out: TextIO = sys.stdout,
    selection: RunSelection | None = None,
) -> int:
    """Run every pending run of ``campaign`` (of ``selection`` only, if given; at most ``max_runs``), ``jobs`` at a
    time; return the number finished.

    Each finished run is appended to ``<root>/<campaign>/runs.jsonl`` at once. A run that raises is reported and not
    recorded (so a rerun retries it); Ctrl-C stops submitting, cancels queued runs and returns after the running ones
    are stopped. Raises :class:`CampaignBusyError` when another runner holds the campaign folder and
    :class:`CampaignChangedError` when recorded runs were made under another configuration of their arm.
    """
    folder = campaign_dir(campaign, root)
    folder.mkdir(parents=True, exist_ok=True)
    with campaign_lock(folder):
        return _run_locked(campaign, folder, jobs, backend, address, max_runs, out, selection)


def _run_locked(
    campaign: Campaign,
    folder: Path,
    jobs: int | None,
    backend: str,
    address: str | None,
    max_runs: int | None,
    out: TextIO,
    selection: RunSelection | None,
) -> int:
    if max_runs is not None and max_runs < 1:
        raise ValueError(f"max_runs must be >= 1, got {max_runs}")
    path = folder / "runs.jsonl"
    records = read_records(path)
    check_configurations(records, campaign)
    calibration = [*(r for r in recorded_runs(folder.parent) if r.get("campaign") != campaign.name), *records]
    if selection:
        selection.check(campaign)
    queue = pending_runs(campaign, records, selection)
    if max_runs is not None:
        queue = queue[:max_runs]
    limit = jobs or (len(queue) if backend == "ray" else os.cpu_count() or 1)
    if not queue:
        what = "nothing selected is left to run" if selection else "nothing left to run"
        print(f"[bench] {campaign.name}: {what} ({len(records)} runs recorded in {path})", file=out)
        return 0
    pool, submit, wait_any, result = _ray_pool(address) if backend == "ray" else _local_pool(limit)
    running: dict[Any, RunSpec] = {}
    finished = failed = 0
    try:
        with path.open("a") as handle:
            while queue or running:
                while queue and len(running) < limit:
                    spec = queue.pop(0)
                    running[submit(spec)] = spec
                left = [*running.values(), *queue]
                _progress(finished, len(running), len(queue), _eta(left, records, limit, calibration), None, out)
                done, _ = wait_any(set(running))
                for item in done:
                    spec = running.pop(item)
                    try:
                        record = result(item)
                    except Exception as exc:  # a failed run is reported and retried by the next invocation
                        failed += 1
                        print(f"[bench] FAILED {spec.key}: {type(exc).__name__}: {exc}", file=out, flush=True)
                        continue
                    _append(handle, record)
                    records.append(record)
                    calibration.append(record)
                    finished += 1
                    left = [*running.values(), *queue]
                    _progress(finished, len(running), len(queue), _eta(left, records, limit, calibration), record, out)
    except KeyboardInterrupt:
        print(f"[bench] interrupted: {finished} run(s) recorded this time; rerun the same command to resume", file=out)
        _cancel(backend, running)
        _kill_workers(pool)  # before shutdown, which forgets the worker processes
        # wait=True: the pool's manager thread ends (it sees the killed workers) before shutdown clears the pool's
        # process table; with wait=False a worker exit it was still handling raised TypeError in that thread
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    pool.shutdown(wait=True)
    print(f"[bench] {campaign.name}: {finished} run(s) finished, {failed} failed; records in {path}", file=out, flush=True)
    return finished


def _eta(specs: list[RunSpec], records: list[dict[str, Any]], jobs: int, calibration: list[dict[str, Any]]) -> float:
    return sum(estimate_seconds(s, records, calibration) for s in specs) / max(jobs, 1)


def _cancel(backend: str, running: dict[Any, RunSpec]) -> None:
    """Cancel the Ray tasks of an interrupted campaign (local workers are killed by :func:`_kill_workers`)."""
    if backend != "ray":
        return
    import ray

    for ref in running:
        ray.cancel(ref, force=True)


def _kill_workers(pool: Any) -> None:
    """Terminate the pool's worker processes (they ignore SIGINT; their partial runs are simply not recorded)."""
    # ``_processes`` is None once the pool broke (e.g. a SIGTERM to the whole process group killed the workers first).
    for process in list((getattr(pool, "_processes", None) or {}).values()):
        if process.is_alive():
            process.terminate()
