"""The searched hyperparameters of a sweep as the report reads them: :class:`ParamSpec`.

The launch translates the sweep file's search space once (``pldistill.sweep.space.param_specs``),
builds Tune's domains from those specs, and records them in ``sweep.json`` under ``space``; the
report reads them back with :func:`searched_params`, so the importances are computed on the
distributions the search actually sampled. Sweeps recorded before ``space`` existed fall back to
their config's search section, and without one to the ``hp_*`` values the trials hold.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["ParamSpec", "SPACE_KINDS", "searched_params"]

#: ``ParamSpec.kind``: what Optuna calls FloatDistribution, IntDistribution, CategoricalDistribution.
SPACE_KINDS = ("float", "int", "categorical")


@dataclass
class ParamSpec:
    """One searched hyperparameter: ``kind`` float/int/categorical, as Optuna's distributions."""

    name: str
    kind: str
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: int = 1
    choices: list[Any] = field(default_factory=list)

    @property
    def sampled(self) -> bool:
        """More than one value is possible."""
        return len(self.choices) > 1 if self.kind == "categorical" else bool(self.high > self.low)  # type: ignore[operator]

    def distribution(self) -> Any:
        from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

        if self.kind == "categorical":
            return CategoricalDistribution(self.choices)
        if self.kind == "int":
            return IntDistribution(int(self.low), int(self.high), log=self.log, step=self.step)  # type: ignore[arg-type]
        return FloatDistribution(float(self.low), float(self.high), log=self.log)  # type: ignore[arg-type]

    def to_json(self) -> dict[str, Any]:
        """The ``sweep.json`` form (one entry of ``space``)."""
        return asdict(self)

    @classmethod
    def from_json(cls, entry: Mapping[str, Any]) -> ParamSpec:
        return cls(name=str(entry["name"]), kind=str(entry["kind"]), low=entry.get("low"), high=entry.get("high"),
                   log=bool(entry.get("log", False)), step=int(entry.get("step", 1)),
                   choices=list(entry.get("choices") or []))


def _finite(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _space_spec(name: str, domain: Mapping[str, Any]) -> ParamSpec:
    kind = domain.get("type")
    if kind == "choice":
        return ParamSpec(name, "categorical", choices=list(domain["values"]))
    if kind == "int":
        return ParamSpec(name, "int", domain["low"], domain["high"], bool(domain.get("log")), int(domain.get("step", 1)))
    return ParamSpec(name, "float", domain["low"], domain["high"], log=kind == "loguniform")


def _observed_spec(name: str, values: list[Any]) -> ParamSpec:
    if values and all(_finite(v) for v in values):
        kind = "int" if all(isinstance(v, int) for v in values) else "float"
        return ParamSpec(name, kind, min(values), max(values))
    return ParamSpec(name, "categorical", choices=sorted(set(values), key=repr))


def searched_params(meta: Mapping[str, Any] | None,
                    rows: Sequence[Mapping[str, Any]]) -> tuple[list[ParamSpec], str]:
    """The searched hyperparameters of a sweep (``meta`` is its ``sweep.json``) and where they came
    from: the ``space`` the launch recorded; for sweeps recorded before it, the config's search
    section; without either, the ``hp_*`` columns that vary."""
    meta = meta or {}
    space = meta.get("space")
    if isinstance(space, list):
        return [ParamSpec.from_json(entry) for entry in space], "the search space the launch sampled (sweep.json)"
    config = meta.get("config")
    search = config.get("search") if isinstance(config, Mapping) else None
    observed = lambda n: [r.get(f"hp_{n}") for r in rows if r.get(f"hp_{n}") is not None]  # noqa: E731
    if isinstance(search, Mapping):
        return _legacy_specs(search, observed), "the sweep's search section (sweep.json)"
    hp = sorted(c[3:] for r in rows for c in r if c.startswith("hp_"))
    specs = [_observed_spec(n, observed(n)) for n in dict.fromkeys(hp)]
    return [s for s in specs if s.sampled], "the trials' hp_* values (sweep.json has no search section)"


def _legacy_specs(search: Mapping[str, Any], observed: Any) -> list[ParamSpec]:
    """Specs re-derived from a sweep file's search section: only for sweep.json files written before
    the launch recorded ``space`` (delete with them). Variants: categorical over the trials' values."""
    specs = [_space_spec(n, d) for n, d in (search.get("space") or {}).items()]
    specs += [ParamSpec(n, "categorical", choices=list(v)) for n, v in (search.get("grid") or {}).items()]
    variants = [{k: v for k, v in dict(x).items() if k != "name"} for x in search.get("variants") or []]
    for key in sorted({k for v in variants for k in v}):
        if len({repr(v.get(key)) for v in variants}) > 1 and key not in {s.name for s in specs}:
            specs.append(ParamSpec(key, "categorical", choices=sorted(set(observed(key)), key=repr)))
    return specs
