"""Loading a sweep file: YAML to :class:`~pldistill.sweep.config.SweepConfig`, every problem at once.

:func:`load_sweep` reads the file, checks its YAML (:mod:`._yaml`), validates it into the typed
models of :mod:`.config`, then runs the cross-checks no single model can make (a name fixed and
searched, a domain outside the hyperparameter's range, a grid for optuna, ...). Every problem is
one line, ``<file>: <dotted.key>: <what was expected> (line N)``, all of them in one
:class:`SweepFileError`; sections that validate on their own are still cross-checked when another
section is broken.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, TypeAdapter, ValidationError

from pldistill.config import Hyperparameters, TrialConfig
from pldistill.errors import InputError
from pldistill.sweep._problems import (
    Loc,
    Problem,
    _index_nodes,
    _render,
    _show,
    _translate,
    _unwrap,
    unknown,
)
from pldistill.sweep._yaml import shape_problems
from pldistill.sweep.config import (
    HPARAM_NAMES,
    Domain,
    ResourcesConfig,
    SearchConfig,
    SweepBase,
    SweepConfig,
    TrackingConfig,
)

__all__ = ["SweepFileError", "load_sweep", "sweep_families"]

_BOTH = "also set under fixed; a hyperparameter is either fixed or varied"


class SweepFileError(InputError):
    """Every problem of one sweep file. ``str(err)`` is one problem per line; ``err.problems`` the lines."""

    def __init__(self, file: str | Path, problems: list[tuple[str | None, str]]) -> None:
        self._raw = list(problems)
        self.problems = [": ".join(p for p in (str(file), key, msg) if p) for key, msg in problems]
        key, msg = problems[0]
        super().__init__(file, key, msg)
        self.args = ("\n".join(self.problems),)

    def __reduce__(self):
        return (type(self), (self.file, self._raw))


# --- problems: YAML, pydantic's errors, cross-checks -----------------------------------------------------


def _parse_yaml(text: str) -> tuple[dict[str, Any] | None, dict[Loc, int], list[Problem]]:
    """The document, the line of every key and list item, and problems (syntax, duplicate keys)."""
    try:
        shape = shape_problems(text)  # before anything recursive runs: compose, safe_load, _index_nodes
        if shape:
            return None, {}, shape
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        raw = yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "YAML"
        what = "; ".join(str(p) for p in (exc.problem, exc.context) if p)
        return None, {}, [(where, f"malformed YAML: {what}")]
    except yaml.YAMLError as exc:
        return None, {}, [("YAML", f"malformed YAML: {exc}")]
    lines: dict[Loc, int] = {}
    problems: list[Problem] = []
    if node is not None:
        _index_nodes(node, (), lines, problems)
    if not isinstance(raw, dict):
        got = "an empty file" if raw is None else _show(raw)
        problems.append(((), f"expected a mapping with keys {', '.join(SweepConfig.model_fields)}, got {got}"))
        return None, lines, problems
    return raw, lines, problems


def _kind(name: str) -> str:
    ann = _unwrap(Hyperparameters.model_fields[name].annotation)
    return {float: "float", int: "int", bool: "boolean"}.get(ann, "categorical")


def _value_problems(name: str, value: Any, loc: Loc) -> list[Problem]:
    """Problems of ``name = value`` by the ranges of :class:`Hyperparameters`, placed at ``loc``."""
    try:
        Hyperparameters.model_validate({name: value})
    except ValidationError as exc:
        return [(loc, msg) for _, msg in _translate(exc, Hyperparameters)]
    return []


def _domain_problems(name: str, domain: Any) -> list[Problem]:
    loc: Loc = ("search", "space", name)
    if name not in HPARAM_NAMES:
        return [(loc, unknown("hyperparameter", name, HPARAM_NAMES))]
    kind, numeric = _kind(name), {"float": ("uniform", "loguniform"), "int": ("int",)}
    if domain.type != "choice" and domain.type not in numeric.get(kind, ()):
        fits = ", ".join(numeric.get(kind, ())) + (" or choice" if kind in numeric else "choice")
        return [((*loc, "type"), f"{name} takes {kind} values: expected type {fits}, got {domain.type!r}")]
    problems: list[Problem] = []
    for sub, value in domain.extremes():
        problems += _value_problems(name, value, (*loc, *sub))
    return problems


def _search_problems(search: SearchConfig) -> list[Problem]:
    s, alg, problems = ("search",), search.algorithm, []
    if search.metric.startswith("test_") and not search.allow_test_selection:
        problems.append(((*s, "metric"), f"{search.metric} would select trials on the test set; use a val_ "
                         "metric (or set search.allow_test_selection: true to do it knowingly)"))
    if len(set(search.seeds)) != len(search.seeds):
        problems.append(((*s, "seeds"), "expected distinct seeds (a repeated seed is the same run twice)"))
    if search.replicates is not None:
        problems += _replicates_problems(search)
    if alg == "grid":
        if (search.num_samples or 1) > 1:
            problems.append(((*s, "num_samples"), f"{search.num_samples} repeats of a grid point would run the "
                             "same seed; ask for replicates with search.seeds"))
        if search.space:
            problems.append(((*s, "space"), "algorithm grid takes search.grid and search.variants; "
                             "sampled domains need algorithm optuna or random"))
        if not search.grid and not search.variants:
            problems.append((s, "algorithm grid needs search.grid or search.variants"))
    else:
        for key in ("grid", "variants"):
            if getattr(search, key):
                problems.append(((*s, key), f"only with algorithm grid, not {alg} (a choice domain in "
                                 "search.space samples categories)"))
        if not search.space:
            problems.append(((*s, "space"), f"empty: algorithm {alg} needs at least one sampled hyperparameter"))
        if search.num_samples is None:
            problems.append(((*s, "num_samples"), f"required for algorithm {alg} (the number of trials)"))
    for name, domain in search.space.items():
        problems += _domain_problems(name, domain)
    for name, values in search.grid.items():
        loc: Loc = (*s, "grid", name)
        if name not in HPARAM_NAMES:
            problems.append((loc, unknown("hyperparameter", name, HPARAM_NAMES)))
            continue
        if len({repr(v) for v in values}) != len(values) or not values:
            problems.append((loc, "expected a non-empty list of distinct values"))
        for i, value in enumerate(values):
            problems += _value_problems(name, value, (*loc, i))
    names: set[str] = set()
    for i, variant in enumerate(search.variants):
        if variant.name in names:
            problems.append(((*s, "variants", i, "name"), f"duplicate variant name {variant.name!r}"))
        names.add(variant.name)
        problems += [((*s, "variants", i, k), f"also a grid axis (search.grid.{k}); set it in one place")
                     for k in variant.overrides() if k in search.grid]
    return problems


def _replicates_problems(search: SearchConfig) -> list[Problem]:
    """``search.replicates`` against the seeds it starts from and the scheduler."""
    assert search.replicates is not None
    problems: list[Problem] = []
    mismatch = search.replicates.seeds_problem(search.seeds)
    if mismatch:
        problems.append((("search", "seeds"), mismatch))
    if search.scheduler is not None:
        problems.append((("search", "scheduler"), "not with search.replicates: ASHA compares trials at equal "
                         "reported epochs, but adaptive replication gives trials different numbers of runs (and "
                         "of epochs), so its rungs would compare unequal work and cut trials before their seeds "
                         "are decided; drop one of the two"))
    return problems


def _fixed_conflicts(fixed_names: set[str], search: SearchConfig) -> list[Problem]:
    problems: list[Problem] = [(("search", key, n), _BOTH) for key in ("space", "grid")
                               for n in getattr(search, key) if n in fixed_names]
    for i, variant in enumerate(search.variants):
        problems += [(("search", "variants", i, k), _BOTH) for k in variant.overrides() if k in fixed_names]
    return problems


def _base_problems(base: SweepBase, fixed: Hyperparameters) -> list[Problem]:
    problems: list[Problem] = []
    if base.data.source == "emobox" and base.data.manifests is None:
        problems.append((("base", "data", "manifests"), "required when data.source is emobox"))
    try:  # TrialConfig's own cross-field checks; the student family against each trial's objective is
        # checked per variant by _family_problems (a variant may change the objective)
        TrialConfig(data=base.data, model=base.model.model_copy(update={"student": None}), train=base.train,
                    cache_dir=base.cache_dir, hparams=fixed)
    except ValidationError as exc:
        problems += [(("base", *loc), msg) for loc, msg in _translate(exc, TrialConfig) if isinstance(loc, tuple)]
    return problems


def _objective_points(fixed: Hyperparameters, search: SearchConfig) -> list[tuple[Loc, str]]:
    """Each kind of trial's objective and where the file sets it: per variant, per value of an
    ``objective`` grid axis or choice, or the fixed one."""
    s: Loc = ("search",)
    if search.variants:
        return [((*s, "variants", i, "objective") if "objective" in v.overrides() else ("fixed", "objective"),
                 str(v.overrides().get("objective", fixed.objective))) for i, v in enumerate(search.variants)]
    for key in ("grid", "space"):
        if "objective" in getattr(search, key):
            axis = getattr(search, key)["objective"]
            return [((*s, key, "objective"), str(o)) for o in (axis if key == "grid" else getattr(axis, "values", []))]
    return [(("fixed", "objective"), fixed.objective)]


def _transcript_problems(sweep: SweepConfig) -> list[Problem]:
    """EmoDistill's linguistic teacher reads a transcript per clip: a transcripts file that is missing,
    or EmoBox manifests that carry none (the first fold's) without ``base.data.transcripts``."""
    import json

    from pldistill.data import fold_paths

    data, loc = sweep.base.data, ("base", "data", "transcripts")
    if data.transcripts is not None:
        return [] if Path(data.transcripts).is_file() else [(loc, f"no such transcripts file: {data.transcripts}")]
    if data.source != "emobox" or data.manifests is None:
        return []  # the synthetic corpus writes its transcripts
    try:
        train, _ = fold_paths(data.manifests, data.dataset, data.folds[0])
        with open(train, encoding="utf-8") as fh:
            has = any("transcript" in json.loads(line) for line in fh if line.strip())
    except (OSError, ValueError):
        return []  # unreadable manifests are reported on their own
    return [] if has else [(loc, f"dataset {data.dataset!r} has no transcripts, which the emodistill objective's "
                                 "linguistic teacher needs: give a JSONL file of {\"key\": ..., \"transcript\": ...} "
                                 "lines here")]


def sweep_families(sweep: SweepConfig) -> set[str]:
    """The student families the sweep's trials train (``audiolm``, ``classifier``)."""
    from pldistill.losses import OBJECTIVES

    return {sweep.base.model.student or OBJECTIVES[o].family for _, o in _objective_points(sweep.fixed, sweep.search)
            if o in OBJECTIVES}


def _family_problems(base: SweepBase, fixed: Hyperparameters, search: SearchConfig,
                     fixed_names: set[str]) -> list[Problem]:
    """Settings that do not fit the student family of the trials that get them: an objective of
    another family than ``base.model.student`` names (``pl_distill`` with a classifier), and a
    hyperparameter only one family reads (``FAMILY_HPARAMS``: LoRA rank with a classifier student,
    ``w_p`` with an audio LLM) fixed where no trial reads it, searched where some trials ignore it
    (they would repeat the same run), or set by a variant that trains the other family."""
    from pldistill.config import FAMILY_HPARAMS
    from pldistill.losses import OBJECTIVES

    problems: list[Problem] = []
    families: list[str | None] = []  # per point; None: an unknown objective (reported by the value checks)
    for loc, objective in _objective_points(fixed, search):
        spec = OBJECTIVES.get(objective)
        families.append(None if spec is None else base.model.student or spec.family)
        if spec is not None and base.model.student not in (None, spec.family):
            problems.append((loc, f"objective {objective!r} trains the {spec.family} student, but base.model.student "
                                  f"is {base.model.student!r} (leave it unset to follow the objective)"))
    owner = {name: f for f, names in FAMILY_HPARAMS.items() for name in names}
    for i, v in enumerate(search.variants):
        for name in v.overrides():
            if families[i] is not None and owner.get(name, families[i]) != families[i]:
                problems.append((("search", "variants", i, name), f"{name} is read by the {owner[name]} student "
                                 f"only; variant {v.name!r} trains the {families[i]} student"))
    present = {f for f in families if f is not None}
    unread = f"this sweep's trials train the {' and '.join(sorted(present))} student"
    for name, f in owner.items():
        if name in fixed_names and present and f not in present:
            problems.append((("fixed", name), f"{name} is read by the {f} student only; {unread}"))
        for key in ("space", "grid"):
            if name in getattr(search, key) and present - {f}:
                why = unread if f not in present else \
                    f"the {' and '.join(sorted(present - {f}))} trials would repeat the same run"
                problems.append((("search", key, name), f"{name} is read by the {f} student only; {why}"))
    return problems


def _pseudo_target_problems(fixed: Hyperparameters, search: SearchConfig, fixed_names: set[str]) -> list[Problem]:
    """``pseudo_target: metadata`` where a trial's objective reads no pseudo target (only those
    registered with ``pseudo_target=True`` do, CAAD's Stage 1): it would be ignored or half-used."""
    from pldistill.losses import OBJECTIVES

    axis = next(((("search", k, "pseudo_target"), getattr(search, k)["pseudo_target"]) for k in ("grid", "space")
                 if "pseudo_target" in getattr(search, k)), None)
    wrong: dict[Loc, list[str]] = {}
    for i, (_, objective) in enumerate(_objective_points(fixed, search)):
        own = search.variants[i].overrides() if search.variants else {}
        loc, values = (("search", "variants", i, "pseudo_target"), [own["pseudo_target"]]) if "pseudo_target" in own \
            else (axis[0], list(getattr(axis[1], "values", axis[1]))) if axis \
            else (("fixed", "pseudo_target"), [fixed.pseudo_target] if "pseudo_target" in fixed_names else [])
        if "metadata" in values and objective in OBJECTIVES and not OBJECTIVES[objective].pseudo_target:
            wrong.setdefault(loc, []).append(objective)
    readers = ", ".join(n for n, o in OBJECTIVES.items() if o.pseudo_target)
    return [(loc, f"metadata is read only by objectives that read a pseudo target ({readers}); "
                  f"{', '.join(dict.fromkeys(objs))} would ignore it") for loc, objs in wrong.items()]


# --- loading --------------------------------------------------------------------------------------------


def load_sweep(path: str | Path, *, check_paths: bool = False, cwd: Path | None = None) -> SweepConfig:
    """Read and validate a sweep file; raise :class:`SweepFileError` with all of its problems.

    Relative paths (``results``, ``base.cache_dir``, ``base.data.manifests``, ``base.data.audio_root``)
    are made absolute against ``cwd`` (default: the current directory), because Tune runs trials in
    their own directories. ``check_paths`` also requires manifests, audio and model folders to exist.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise SweepFileError(path, [(None, f"cannot read sweep file: {reason}")]) from None
    raw, lines, problems = _parse_yaml(text)
    sweep: SweepConfig | None = None
    if raw is not None:
        try:
            sweep = SweepConfig.model_validate(raw)
        except ValidationError as exc:
            problems += _translate(exc, SweepConfig)
            parts = _partial_sections(raw)
            problems += _semantic_problems(**parts)
            if parts["search"] is None:
                problems += _loose_search_problems(raw, parts["fixed_names"])
        else:
            problems += _semantic_problems(sweep.base, sweep.fixed, sweep.search, sweep.resources,
                                           set(sweep.fixed.model_fields_set), sweep.tracking)
    if sweep is not None and not problems:
        _absolutize(sweep, cwd or Path.cwd())
        if check_paths:
            problems += _path_problems(sweep)
    if problems:
        raise SweepFileError(path, _render(problems, lines))
    assert sweep is not None
    sweep._source = path
    return sweep


def _partial_sections(raw: dict[str, Any]) -> dict[str, Any]:
    """Sections that validate on their own, so cross-checks still run when another section is broken."""

    def attempt(model: type[BaseModel], key: str) -> Any:
        value = raw.get(key)
        try:
            return model.model_validate({} if value is None else value)
        except ValidationError:
            return None

    fixed = raw.get("fixed")
    return {"base": attempt(SweepBase, "base"), "fixed": attempt(Hyperparameters, "fixed"),
            "search": attempt(SearchConfig, "search") if "search" in raw else None,
            "resources": attempt(ResourcesConfig, "resources"), "tracking": attempt(TrackingConfig, "tracking"),
            "fixed_names": {str(k) for k in fixed} if isinstance(fixed, dict) else set()}


def _loose_search_problems(raw: dict[str, Any], fixed_names: set[str]) -> list[Problem]:
    """When ``search`` does not validate: conflicts with ``fixed`` and the domains that validate alone."""
    search = raw.get("search")
    search = search if isinstance(search, dict) else {}
    space, grid = (search.get(k) if isinstance(search.get(k), dict) else {} for k in ("space", "grid"))
    problems: list[Problem] = [(("search", key, str(n)), _BOTH) for key, names in (("space", space), ("grid", grid))
                               for n in names if n in fixed_names]
    for name, value in space.items():
        try:
            domain = TypeAdapter(Domain).validate_python(value)
        except ValidationError:
            continue
        problems += _domain_problems(str(name), domain)
    return problems


def _semantic_problems(
    base: SweepBase | None, fixed: Hyperparameters | None, search: SearchConfig | None,
    resources: ResourcesConfig | None, fixed_names: set[str], tracking: TrackingConfig | None = None,
) -> list[Problem]:
    from pldistill.sweep.tracking import tracking_problems

    problems: list[Problem] = []
    if tracking is not None:
        problems += tracking_problems(tracking, search.algorithm if search is not None else None)
    if search is not None:
        problems += _search_problems(search)
        problems += _fixed_conflicts(fixed_names, search)
    if base is not None:
        problems += _base_problems(base, fixed or Hyperparameters())
        if search is not None:
            problems += _family_problems(base, fixed or Hyperparameters(), search, fixed_names)
    if search is not None and fixed is not None:
        problems += _pseudo_target_problems(fixed, search, fixed_names)
        if search is not None and search.scheduler is not None:
            max_t = search.scheduler.max_t or base.train.epochs
            if search.scheduler.grace_period > max_t:
                problems.append((("search", "scheduler", "grace_period"),
                                 f"expected <= max_t ({max_t}), got {search.scheduler.grace_period}"))
    if resources is not None and resources.backend == "nccl" and resources.gpus_per_worker == 0:
        problems.append((("resources", "backend"), "nccl needs gpus_per_worker > 0 (use gloo or auto on CPU)"))
    return problems


def _absolutize(sweep: SweepConfig, cwd: Path) -> None:
    def absolute(p: Path) -> Path:
        return p if p.is_absolute() else cwd / p

    sweep.results = absolute(sweep.results)
    sweep.base.cache_dir = absolute(sweep.base.cache_dir)
    data = sweep.base.data
    if data.manifests is not None:
        data.manifests = absolute(data.manifests)
    if data.audio_root is not None:
        data.audio_root = absolute(data.audio_root)


def _path_problems(sweep: SweepConfig) -> list[Problem]:
    problems: list[Problem] = []
    data, model = sweep.base.data, sweep.base.model
    if data.source == "emobox" and data.manifests is not None:
        root = data.manifests / data.dataset
        expected = [root / "label_map.json"] + [
            root / f"fold_{k}" / f"{data.dataset}_{split}_fold_{k}.jsonl"
            for k in data.folds for split in ("train", "test")]
        missing = [str(p) for p in expected if not p.is_file()]
        if missing:
            problems.append((("base", "data", "manifests"), "missing EmoBox files: " + ", ".join(missing)))
        audio = data.audio_root or data.manifests
        if not audio.is_dir():
            problems.append((("base", "data", "audio_root"), f"no such folder: {audio}"))
        else:
            from pldistill.sweep._paths import audio_problems

            problems += audio_problems(data)
    if "classifier" in sweep_families(sweep):
        problems += _transcript_problems(sweep)
    for key in ("teacher", "student_llm"):
        value = getattr(model, key)
        if value != "tiny" and not Path(value).exists():
            problems.append((("base", "model", key), f"no such model folder: {value}"))
    return problems
