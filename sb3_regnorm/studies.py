"""Study summaries: every trial of an optuna study (failed and pruned ones too) as JSON and a markdown page.

Why a module of its own: the tuner writes a summary next to its storage after every trial, and ``tune promote`` writes
the same summary into ``zoo/studies/`` from the study alone, so both must come from one function of the stored study.
The facts that do not come from the trials (budget, seeds, command, ...) are stored with the study itself
(``study.user_attrs["meta"]``), which is what makes a later promote possible without the original command line.
"""

from __future__ import annotations

import json
import math
from datetime import datetime
from pathlib import Path
from typing import Any, Final

import optuna

from sb3_regnorm._locking import atomic_write_text
from sb3_regnorm._versions import package_versions

__all__ = ["META_KEY", "changed_overrides", "markdown", "summary", "trial_rows", "versions", "write_summary"]

META_KEY: Final = "meta"
"""``study.user_attrs[META_KEY]``: the study's facts that do not come from its trials."""
_VERSIONED: Final = ("sb3-regnorm", "stable-baselines3", "rl_zoo3", "optuna", "torch", "gymnasium", "minigrid", "numpy")
_MISSING: Final = object()


def versions() -> dict[str, str]:
    """Package versions, for the study summary."""
    return package_versions(_VERSIONED)


def _plain(value: Any) -> Any:
    """A pandas/numpy cell as plain JSON data (NaN and NaT as None)."""
    if value is None:
        return None
    if hasattr(value, "total_seconds"):  # Timedelta
        seconds = value.total_seconds()
        return None if math.isnan(seconds) else round(seconds, 1)
    if isinstance(value, datetime) or hasattr(value, "isoformat"):
        text = value.isoformat()
        return None if text == "NaT" else text
    if hasattr(value, "item"):  # numpy scalar
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def trial_rows(study: optuna.Study) -> list[dict[str, Any]]:
    """One plain-data row per trial, whatever its state, from optuna's ``trials_dataframe()``.

    Columns ``user_attrs_*`` become top-level keys (train seed, intermediate values, the error of a failed trial, ...),
    left out where a trial has none. ``params`` come from the trials themselves: in the data frame a categorical
    ``None`` (RN momentum None) and a parameter the trial never sampled would both read as NaN.
    """
    frame = study.trials_dataframe(attrs=("number", "value", "state", "user_attrs", "duration"))
    params = {trial.number: dict(trial.params) for trial in study.get_trials(deepcopy=False)}
    rows = []
    for record in frame.to_dict(orient="records"):
        number = int(record["number"])
        row: dict[str, Any] = {
            "number": number,
            "state": str(record["state"]),
            "value": _plain(record.get("value")),
            "params": params[number],
            "duration_s": _plain(record.get("duration")),
        }
        for column, cell in record.items():
            value = _plain(cell) if not isinstance(cell, list | dict) else cell
            if column.startswith("user_attrs_") and value is not None:
                row[column[len("user_attrs_") :]] = value
        if row["state"] != "FAIL":
            row.pop("failed_seed", None)  # written before pruning was told apart (pruned trials are not failures)
        elif "error" not in row:  # the objective records every error and interruption it sees
            row["error"] = "no error recorded: its process was killed during the trial (marked FAIL on resume)"
        rows.append(row)
    return rows


def changed_overrides(extra: dict[str, Any], entry: dict[str, Any]) -> dict[str, Any]:
    """The part of ``extra`` that changes ``entry`` (a raw zoo entry): what goes into :data:`sb3_regnorm.zoo.OVERRIDES`.

    An activation equal to the policy's default (ReLU for DQN, Tanh for actor-critic) is no change.
    """
    out: dict[str, Any] = {}
    for key, value in extra.items():
        if key == "policy_kwargs":
            old = entry.get("policy_kwargs", {})
            dqn = str(entry.get("policy", "")).startswith("sb3_regnorm.RNDQN")
            defaults = {"activation_fn": "nn.ReLU" if dqn else "nn.Tanh"}
            changed = {k: v for k, v in value.items() if _without_none(old.get(k, defaults.get(k))) != _without_none(v)}
            if changed:
                out[key] = changed
        elif entry.get(key, _MISSING) != value:
            out[key] = value
    return out


def _without_none(value: Any) -> Any:
    """``norm_kwargs`` with ``momentum=None`` means the same as no ``norm_kwargs`` (None is the layer's default)."""
    if isinstance(value, dict):
        value = {k: v for k, v in value.items() if v is not None}
        return value or None
    return value


def summary(study: optuna.Study, meta: dict[str, Any] | None = None) -> dict[str, Any]:
    """The study summary: its stored facts (``meta``), trial counts per state, best trial and every trial's row."""
    meta = dict(meta if meta is not None else study.user_attrs.get(META_KEY, {}))
    trials = study.get_trials(deepcopy=False)
    complete = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE and t.value is not None]
    best = max(complete, key=lambda t: float(t.value or 0.0)) if complete else None
    finished = [t for t in trials if t.state.is_finished()]
    starts = [t.datetime_start for t in finished if t.datetime_start is not None]
    ends = [t.datetime_complete for t in finished if t.datetime_complete is not None]
    counts = {state.name: sum(t.state == state for t in trials) for state in optuna.trial.TrialState}
    overrides = None
    if best is not None:
        entry = meta.get("zoo_entries", {}).get(best.user_attrs.get("norm"), meta.get("zoo_entry", {}))
        overrides = changed_overrides(best.user_attrs.get("zoo_overrides", {}), entry)
    return {
        **meta,
        "study_name": study.study_name,
        "trials": {key: value for key, value in counts.items() if value},
        "best_value": best.value if best else None,
        "best_trial": best.number if best else None,
        "best_params": best.params if best else None,
        "zoo_overrides": overrides,
        "best_norm": best.user_attrs.get("norm") if best else None,
        "zoo_entry_value": complete[0].value if complete and complete[0].number == 0 else None,
        "trial_time_s": round(sum(t.duration.total_seconds() for t in finished if t.duration is not None), 1),
        "study_span_s": round((max(ends) - min(starts)).total_seconds(), 1) if starts and ends else 0.0,
        "trial_table": trial_rows(study) if trials else [],
    }


def _fmt(value: Any) -> str:
    """Compact markdown cell text."""
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, dict):
        return ", ".join(f"{k}={_fmt(v)}" for k, v in value.items())
    return "-" if value is None else str(value)


def markdown(data: dict[str, Any]) -> str:
    """A summary as a markdown page: key facts, then one row per trial (a failed trial shows its error)."""
    facts = [
        ("study", data["study_name"]),
        ("algo / env / norm", f"{data.get('algo')} / {data.get('env')} / {data.get('norm')}"),
        ("trials", _fmt(data["trials"])),
        ("budget per trial", f"{data.get('n_timesteps')} timesteps"),
        ("evaluation", data.get("evaluation")),
        ("best value", f"{_fmt(data['best_value'])} (trial {_fmt(data['best_trial'])})"),
        ("zoo entry (trial 0)", _fmt(data["zoo_entry_value"])),
        ("best params", _fmt(data["best_params"])),
        ("zoo overrides", f"`{json.dumps(data['zoo_overrides'])}`"),
        ("seeds", data.get("seeds")),
        ("fixed overrides", f"`{json.dumps(data.get('fixed', {}))}`"),
        ("wall time", f"{data['study_span_s']:.0f} s (trials {data['trial_time_s']:.0f} s)"),
        ("storage", f"`{data.get('storage')}`"),
        ("versions", _fmt(data.get("versions"))),
        ("command", f"`{data.get('command')}`"),
    ]
    lines = [f"# Study {data['study_name']}", "", "| | |", "|---|---|"]
    lines += [f"| {key} | {_fmt(value)} |" for key, value in facts]
    lines += [
        "",
        "| trial | state | value | params | train seed | per seed | intermediate | fps | time (s) | error |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in data["trial_table"]:
        intermediate = ", ".join(_fmt(v) for v in row.get("intermediate") or [])
        per_seed = ", ".join(_fmt(v) for v in row.get("seed_values") or []) if row.get("train_seeds") else ""
        seeds = row.get("train_seeds") or [row.get("train_seed")]
        seed_cell = ", ".join(_fmt(seed) for seed in seeds)
        error = str(row.get("error", "")).replace("|", "\\|")
        cells = [row["number"], row["state"], row["value"], row["params"], seed_cell, per_seed, intermediate]
        cells += [row.get("fps"), row["duration_s"], error]
        lines.append("| " + " | ".join(c if isinstance(c, str) else _fmt(c) for c in cells) + " |")
    if data.get("protocol"):
        lines += ["", f"_{data['protocol']}_"]
    lines.append("")
    return "\n".join(lines)


def write_summary(study: optuna.Study, out_dir: str | Path, meta: dict[str, Any] | None = None) -> tuple[Path, Path]:
    """Write ``<out_dir>/<study name>.json`` and ``.md`` (``meta`` defaults to the facts stored with the study)."""
    data = summary(study, meta)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    json_path, md_path = out / f"{study.study_name}.json", out / f"{study.study_name}.md"
    atomic_write_text(json_path, json.dumps(data, indent=2, default=str) + "\n")
    atomic_write_text(md_path, markdown(data))
    return json_path, md_path
