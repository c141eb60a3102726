"""Campaigns as data: algorithm x environment x arm x seeds, loaded from YAML/JSON/TOML and expanded into run specs.

A campaign file (see ``sb3_regnorm/benchmark/campaigns/*.yaml`` for the shipped ones)::

    name: my-campaign
    description: free text
    protocol: zoo                 # zoo (SB3 via rl_zoo3, the default) or paper_dqn (the paper's own DQN loop)
    seeds: 10                     # 0..9, or an explicit list; never tuning seeds (>= 1000)
    eval: {points: 20, episodes: 10, n_envs: 5}        # evaluation on separate envs, seeds disjoint from training
    experiments:
      - algo: ppo
        env: LunarLander-v3       # a zoo env id, or any gymnasium id with `hyperparams:` given here
        stage: 0                  # lower stages run first (then seed-major, so partial results compare arms fairly)
        seeds: 5                  # optional, overrides the campaign's seeds
        hyperparams: {...}        # optional: the base entry (rl_zoo3 keys) for envs outside the zoo
        arms:
          - none                  # shorthand: arm name = norm, the zoo's untuned base entry
          - {name: rn-tuned, norm: rn, tuned: true}         # the shipped entry: tuned overrides, grown budget
          - {name: rn-m01, norm: rn, overrides: {policy_kwargs: {norm_kwargs: {momentum: 0.01}}}}

Why arms default to the *untuned* base entry: a fair norm comparison changes only the norm (rl_zoo3's own
hyperparameters and budget for every arm); a tuned entry is an arm of its own (``tuned: true``).
"""

from __future__ import annotations

import copy
import hashlib
import json
import sys
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Final

import yaml

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10: TOML campaign files need 3.11's tomllib
    tomllib = None

__all__ = [
    "PROTOCOLS",
    "Arm",
    "Campaign",
    "CampaignError",
    "Experiment",
    "RunSelection",
    "RunSpec",
    "load_campaign",
    "shipped_campaigns",
]

PROTOCOLS: Final = ("zoo", "paper_dqn")
TUNING_SEED_MIN: Final = 1000  # same value as sb3_regnorm.tune.TUNING_SEED_MIN (not imported: tune pulls in optuna)
EVAL_SEED_BASE: Final = 200_000
"""Evaluation envs of run ``seed`` use seeds ``EVAL_SEED_BASE + 100 * seed + i`` (i < n_envs <= 100): disjoint from every
training seed (0..K-1 plus one per training env) and from the tuner's seeds (1000 + trial, 101000 + ...)."""
_DEFAULT_EVAL: Final = {"points": 20, "episodes": 10, "n_envs": 5, "deterministic": "auto"}
_TOP_KEYS: Final = {"name", "description", "protocol", "seeds", "eval", "experiments", "reference", "protocol_kwargs"}
_EXP_KEYS: Final = {"algo", "env", "arms", "seeds", "stage", "hyperparams", "protocol_kwargs", "eval"}
_ARM_KEYS: Final = {"name", "norm", "tuned", "overrides"}
_POLICIES: Final = {"ppo": "sb3_regnorm.RNActorCriticPolicy", "a2c": "sb3_regnorm.RNActorCriticPolicy"}
_POLICIES_DQN: Final = "sb3_regnorm.RNDQNPolicy"


class CampaignError(ValueError):
    """A campaign file that cannot be run; raised with the file and the offending key before any training."""


@dataclass(frozen=True)
class Arm:
    """One arm: a norm, the zoo's base (or tuned) entry for it, and overrides on top."""

    name: str
    norm: str
    tuned: bool = False
    overrides: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Experiment:
    """One (algo, env) block of a campaign with its arms and seeds."""

    algo: str
    env: str
    arms: tuple[Arm, ...]
    seeds: tuple[int, ...]
    stage: int = 0
    hyperparams: dict[str, Any] | None = None
    protocol_kwargs: dict[str, Any] = field(default_factory=dict)
    eval: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RunSpec:
    """Everything one run needs, as plain data (it crosses process and Ray boundaries by pickling)."""

    campaign: str
    protocol: str
    algo: str
    env: str
    arm: str
    norm: str
    seed: int
    hyperparams: dict[str, Any]
    eval: dict[str, Any]
    protocol_kwargs: dict[str, Any]

    @property
    def key(self) -> tuple[str, str, str, int]:
        """The identity a finished run is recorded under: (algo, env, arm, seed)."""
        return (self.algo, self.env, self.arm, self.seed)

    @property
    def n_timesteps(self) -> int:
        """The training budget in env steps (the paper protocol: episodes x max steps at most)."""
        if self.protocol == "paper_dqn":
            return int(self.protocol_kwargs["episodes"]) * int(self.protocol_kwargs["max_t"])
        return int(self.hyperparams["n_timesteps"])

    def config_hash(self) -> str:
        """A short hash of what determines the run (hyperparameters, evaluation, protocol), stored in the record."""
        blob = json.dumps([self.protocol, self.hyperparams, self.eval, self.protocol_kwargs], sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:12]


@dataclass(frozen=True)
class Campaign:
    """A campaign: name, protocol and experiments; :meth:`runs` expands it into the ordered run matrix."""

    name: str
    protocol: str
    experiments: tuple[Experiment, ...]
    description: str = ""
    reference: dict[str, Any] = field(default_factory=dict)
    source: str = ""

    def runs(self) -> list[RunSpec]:
        """Every run, in the order they start: stage, then seed index, then experiment, then arm.

        Seed-major order means that after any prefix of the matrix each arm has (almost) as many seeds as any other,
        so partial results compare arms fairly.
        """
        rows = []
        for e_idx, exp in enumerate(self.experiments):
            for s_idx, seed in enumerate(exp.seeds):
                for a_idx, arm in enumerate(exp.arms):
                    rows.append(((exp.stage, s_idx, e_idx, a_idx), self._spec(exp, arm, seed)))
        rows.sort(key=lambda row: row[0])
        return [spec for _, spec in rows]

    def _spec(self, exp: Experiment, arm: Arm, seed: int) -> RunSpec:
        hyperparams = resolve_hyperparams(self.protocol, exp, arm)
        return RunSpec(
            campaign=self.name,
            protocol=self.protocol,
            algo=exp.algo,
            env=exp.env,
            arm=arm.name,
            norm=arm.norm,
            seed=seed,
            hyperparams=hyperparams,
            eval=dict(exp.eval),
            protocol_kwargs=dict(exp.protocol_kwargs),
        )


@dataclass(frozen=True)
class RunSelection:
    """A subset of a campaign's runs (``bench run --seeds/--algo/--arm``); an empty field selects everything.

    Why: a campaign runs stage by stage, so without a selection its last stage waits for the whole of the first ones.
    ``--seeds 0 1 2`` gets seeds 0-2 of every arm first (a first comparison everywhere, and the runs that confirm the
    zoo's entries); ``--algo dqn`` runs that algorithm's experiments only. A later run without a selection resumes
    with the rest.
    """

    seeds: frozenset[int] = frozenset()
    algos: frozenset[str] = frozenset()
    arms: frozenset[str] = frozenset()

    def __bool__(self) -> bool:
        return bool(self.seeds or self.algos or self.arms)

    def matches(self, spec: RunSpec) -> bool:
        """Whether ``spec`` is one of the selected runs."""
        return (
            (not self.seeds or spec.seed in self.seeds)
            and (not self.algos or spec.algo in self.algos)
            and (not self.arms or spec.arm in self.arms)
        )

    def check(self, campaign: Campaign) -> None:
        """Raise :class:`CampaignError` for a seed, algorithm or arm the campaign does not have (a typo would
        otherwise select nothing and look like a finished campaign)."""
        runs = campaign.runs()
        for what, wanted, present in (
            ("seed", self.seeds, {spec.seed for spec in runs}),
            ("algo", self.algos, {spec.algo for spec in runs}),
            ("arm", self.arms, {spec.arm for spec in runs}),
        ):
            unknown = wanted - present
            if unknown:
                raise CampaignError(f"campaign {campaign.name} has no {what} {_listed(unknown)} (it has: {_listed(present)})")
        if not any(self.matches(spec) for spec in runs):
            raise CampaignError(
                f"campaign {campaign.name}: the selection matches no run (each exists, but not together: e.g. an arm "
                "that only another algorithm's experiment has)"
            )


def _listed(values: set[Any] | frozenset[Any]) -> str:
    """Sorted values as a comma-separated list (seeds numerically)."""
    return ", ".join(map(str, sorted(values)))


# ------------------------------------------------------------------------------------------ hyperparameters
def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """Arm overrides onto an entry by the zoo's one merge rule (``policy_kwargs`` and ``norm_kwargs`` key by key)."""
    from sb3_regnorm.zoo import merge_overrides

    return merge_overrides(base, extra)


def resolve_hyperparams(protocol: str, exp: Experiment, arm: Arm) -> dict[str, Any]:
    """The exact hyperparameters of an arm (rl_zoo3 keys, ``policy_kwargs`` a dict), recorded with every run."""
    if protocol == "paper_dqn":
        return _merge({"norm": arm.norm, **exp.protocol_kwargs}, arm.overrides)
    from sb3_regnorm import zoo

    if exp.hyperparams is not None:  # an env outside the zoo: the campaign gives the base entry
        base = copy.deepcopy(exp.hyperparams)
        base.setdefault("policy", _POLICIES.get(exp.algo, _POLICIES_DQN))
        base["policy_kwargs"] = {"norm": arm.norm, **base.get("policy_kwargs", {})}
    else:
        base = zoo.raw_entry(exp.algo, exp.env, arm.norm, tuned=arm.tuned)
    if "norm" in arm.overrides.get("policy_kwargs", {}):
        raise CampaignError(f"arm {arm.name!r}: set the norm with `norm:`, not in policy_kwargs")
    # the monitoring callbacks only log, and cost time; any other callback (e.g. the phase clock) stays
    return zoo.without_monitoring(_merge(base, arm.overrides))


# ------------------------------------------------------------------------------------------ loading
def _read(path: Path) -> dict[str, Any]:
    """Parse a YAML, JSON or TOML campaign file into a dict."""
    text = path.read_text()
    try:
        if path.suffix == ".json":
            data = json.loads(text)
        elif path.suffix == ".toml":
            if tomllib is None:
                raise CampaignError(f"{path}: TOML campaign files need Python 3.11+ (use YAML or JSON)")
            data = tomllib.loads(text)
        else:
            data = yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as exc:
        raise CampaignError(f"{path}: cannot parse ({exc})") from exc
    if not isinstance(data, dict):
        raise CampaignError(f"{path}: a campaign file holds a mapping, got {type(data).__name__}")
    return data


def _seeds(value: Any, where: str) -> tuple[int, ...]:
    """``K`` -> 0..K-1, or an explicit list; reject tuning seeds and duplicates."""
    if isinstance(value, bool) or not isinstance(value, int | list):
        raise CampaignError(f"{where}: seeds must be a count or a list of ints, got {value!r}")
    seeds = list(range(value)) if isinstance(value, int) else value
    if not seeds or any(isinstance(s, bool) or not isinstance(s, int) or s < 0 for s in seeds):
        raise CampaignError(f"{where}: seeds must be non-negative ints, got {value!r}")
    if max(seeds) >= TUNING_SEED_MIN:
        raise CampaignError(f"{where}: seeds >= {TUNING_SEED_MIN} are tuning seeds; benchmarks use 0..{TUNING_SEED_MIN - 1}")
    if len(set(seeds)) != len(seeds):
        raise CampaignError(f"{where}: duplicate seeds in {seeds}")
    return tuple(seeds)


def _arm(item: Any, where: str) -> Arm:
    """An arm from its shorthand (a norm name) or its mapping."""
    from sb3_regnorm.nets import NORMS

    if isinstance(item, str):
        item = {"name": item, "norm": item}
    if not isinstance(item, dict):
        raise CampaignError(f"{where}: an arm is a norm name or a mapping, got {item!r}")
    unknown = sorted(set(item) - _ARM_KEYS)
    if unknown:
        raise CampaignError(f"{where}: unknown arm keys {unknown} (allowed: {sorted(_ARM_KEYS)})")
    norm = item.get("norm", item.get("name"))
    if norm not in NORMS:
        raise CampaignError(f"{where}: unknown norm {norm!r}; expected one of {list(NORMS)}")
    overrides = item.get("overrides") or {}
    if not isinstance(overrides, dict):
        raise CampaignError(f"{where}: overrides must be a mapping, got {overrides!r}")
    return Arm(name=str(item.get("name", norm)), norm=norm, tuned=bool(item.get("tuned", False)), overrides=overrides)


def _eval(base: dict[str, Any], extra: Any, where: str) -> dict[str, Any]:
    """Evaluation settings: defaults, then the campaign's, then the experiment's; checked for sense."""
    if extra is not None and not isinstance(extra, dict):
        raise CampaignError(f"{where}: eval must be a mapping, got {extra!r}")
    out = {**base, **(extra or {})}
    unknown = sorted(set(out) - set(_DEFAULT_EVAL))
    if unknown:
        raise CampaignError(f"{where}: unknown eval keys {unknown} (allowed: {sorted(_DEFAULT_EVAL)})")
    for key in ("points", "episodes", "n_envs"):
        if not isinstance(out[key], int) or out[key] < 1:
            raise CampaignError(f"{where}: eval.{key} must be a positive int, got {out[key]!r}")
    if out["n_envs"] > 100:
        raise CampaignError(f"{where}: eval.n_envs must be <= 100 (eval seeds are 100 apart per run)")
    if out["deterministic"] not in ("auto", True, False):
        raise CampaignError(f"{where}: eval.deterministic must be auto, true or false")
    return out


def _experiment(item: Any, where: str, protocol: str, seeds: Any, eval_base: dict[str, Any], kwargs: Any) -> Experiment:
    """One experiment block, checked: algo, env (in the zoo unless hyperparams are given), arms, seeds."""
    from sb3_regnorm import zoo

    if not isinstance(item, dict):
        raise CampaignError(f"{where}: an experiment is a mapping, got {item!r}")
    unknown = sorted(set(item) - _EXP_KEYS)
    if unknown:
        raise CampaignError(f"{where}: unknown experiment keys {unknown} (allowed: {sorted(_EXP_KEYS)})")
    for key in ("algo", "env", "arms"):
        if key not in item:
            raise CampaignError(f"{where}: missing {key!r}")
    algo, env = item["algo"], item["env"]
    if algo not in zoo.ALGOS:
        raise CampaignError(f"{where}: unknown algo {algo!r}; expected one of {list(zoo.ALGOS)}")
    has_entry = getattr(zoo, "has_entry", None)
    in_zoo = has_entry(algo, env) if has_entry is not None else env in zoo.ENV_IDS
    if protocol == "zoo" and item.get("hyperparams") is None and not in_zoo:
        raise CampaignError(f"{where}: {algo} on {env!r} has no zoo entry; give its base entry under `hyperparams:`")
    hyperparams = item.get("hyperparams")
    if hyperparams is not None and (not isinstance(hyperparams, dict) or "n_timesteps" not in hyperparams):
        raise CampaignError(f"{where}: hyperparams must be a mapping with n_timesteps")
    if not isinstance(item["arms"], list) or not item["arms"]:
        raise CampaignError(f"{where}: arms must be a non-empty list")
    arms = tuple(_arm(arm, f"{where}.arms[{i}]") for i, arm in enumerate(item["arms"]))
    names = [arm.name for arm in arms]
    if len(set(names)) != len(names):
        raise CampaignError(f"{where}: duplicate arm names {names}")
    protocol_kwargs = {**(kwargs or {}), **(item.get("protocol_kwargs") or {})}
    if protocol == "paper_dqn":
        from sb3_regnorm.benchmark.paper_dqn import check_kwargs

        try:
            protocol_kwargs = check_kwargs(protocol_kwargs)
        except ValueError as exc:
            raise CampaignError(f"{where}: {exc}") from exc
    return Experiment(
        algo=algo,
        env=env,
        arms=arms,
        seeds=_seeds(item.get("seeds", seeds), f"{where}.seeds"),
        stage=int(item.get("stage", 0)),
        hyperparams=hyperparams,
        protocol_kwargs=protocol_kwargs,
        eval=_eval(eval_base, item.get("eval"), where),
    )


def campaign_from_dict(data: dict[str, Any], source: str = "<dict>") -> Campaign:
    """Build and check a campaign from its parsed data; every problem names ``source`` and the key."""
    unknown = sorted(set(data) - _TOP_KEYS)
    if unknown:
        raise CampaignError(f"{source}: unknown keys {unknown} (allowed: {sorted(_TOP_KEYS)})")
    name = data.get("name")
    if not isinstance(name, str) or not name or "/" in name:
        raise CampaignError(f"{source}: `name` must be a non-empty string without '/', got {name!r}")
    protocol = data.get("protocol", "zoo")
    if protocol not in PROTOCOLS:
        raise CampaignError(f"{source}: unknown protocol {protocol!r}; expected one of {list(PROTOCOLS)}")
    experiments = data.get("experiments")
    if not isinstance(experiments, list) or not experiments:
        raise CampaignError(f"{source}: `experiments` must be a non-empty list")
    eval_base = _eval(dict(_DEFAULT_EVAL), data.get("eval"), source)
    exps = tuple(
        _experiment(
            item, f"{source}: experiments[{i}]", protocol, data.get("seeds", 5), eval_base, data.get("protocol_kwargs")
        )
        for i, item in enumerate(experiments)
    )
    keys = [(exp.algo, exp.env) for exp in exps]
    if len(set(keys)) != len(keys):
        raise CampaignError(f"{source}: each (algo, env) may appear once; got {keys}")
    campaign = Campaign(
        name=name,
        protocol=protocol,
        experiments=exps,
        description=str(data.get("description", "")),
        reference=dict(data.get("reference") or {}),
        source=source,
    )
    try:
        campaign.runs()  # resolve every arm's hyperparameters now, so a bad override fails before training
    except (ValueError, KeyError) as exc:
        raise CampaignError(f"{source}: {exc}") from exc
    return campaign


def shipped_campaigns() -> dict[str, Path]:
    """The campaigns shipped with the package (``sb3_regnorm/benchmark/campaigns/*.yaml``), by name."""
    folder = resources.files("sb3_regnorm.benchmark") / "campaigns"
    return {Path(str(p)).stem: Path(str(p)) for p in folder.iterdir() if str(p).endswith(".yaml")}


def load_campaign(name_or_path: str | Path) -> Campaign:
    """Load a shipped campaign by name (``paper``, ``lunarlander``...) or a user's file (.yaml, .yml, .json, .toml)."""
    path = Path(name_or_path)
    if not path.is_file():
        shipped = shipped_campaigns()
        if str(name_or_path) not in shipped:
            raise CampaignError(f"{name_or_path!r} is neither a campaign file nor a shipped campaign ({sorted(shipped)})")
        path = shipped[str(name_or_path)]
    return campaign_from_dict(_read(path), str(path))
