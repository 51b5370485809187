"""Turning YAML and pydantic errors into sweep-file problems: key paths, line numbers, messages.

Generic machinery behind :func:`pldistill.sweep.load.load_sweep`: it knows YAML nodes and
pydantic's error list, not the sweep's sections.
"""

from __future__ import annotations

from types import UnionType
from typing import Annotated, Any, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, ValidationError

from pldistill.errors import did_you_mean

#: A key path inside the file (strings for keys, ints for list items).
Loc = tuple[str | int, ...]
#: Where (a key path, or a ready label such as ``line 3, column 5``) and what was expected.
Problem = tuple[Loc | str, str]
_DOMAIN_TYPES = "uniform, loguniform, int, choice"
_COMPARISONS = (("greater than or equal to ", ">= "), ("less than or equal to ", "<= "),
                ("greater than ", "> "), ("less than ", "< "))


def _index_nodes(node: yaml.Node, loc: Loc, lines: dict[Loc, int], problems: list[Problem]) -> None:
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key_node, value in node.value:
            child = (*loc, str(key_node.value))
            if child[-1] in seen:  # safe_load would silently keep the last one
                problems.append((child, "duplicate key"))
            seen.add(str(key_node.value))
            lines[child] = key_node.start_mark.line + 1
            _index_nodes(value, child, lines, problems)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            lines[(*loc, i)] = item.start_mark.line + 1
            _index_nodes(item, (*loc, i), lines, problems)


def _render(problems: list[Problem], lines: dict[Loc, int]) -> list[tuple[str | None, str]]:
    placed: list[tuple[int, str | None, str]] = []
    for where, msg in problems:
        line = 0
        if isinstance(where, tuple):
            line = next((lines[where[:n]] for n in range(len(where), 0, -1) if where[:n] in lines), 0)
            where, msg = _dotted(where), msg + (f" (line {line})" if line else "")
        if (line, where or None, msg) not in placed:
            placed.append((line, where or None, msg))
    return [(where, msg) for _, where, msg in sorted(placed, key=lambda p: p[0])]


def _dotted(loc: Loc) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _show(value: Any) -> str:
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return f"a list ({len(value)} items)"
    if value is None or isinstance(value, bool):
        return {None: "null", True: "true", False: "false"}[value]
    return repr(value)


def unknown(what: str, name: str, valid: list[str] | tuple[str, ...], listed: str = "valid") -> str:
    """``unknown key; did you mean 'alpha'?`` when a valid name is close to ``name``, else every valid name."""
    close = did_you_mean(name, valid)
    return f"unknown {what}; did you mean {close}?" if close else f"unknown {what}; {listed}: {', '.join(valid) or '?'}"


def _translate(exc: ValidationError, model: type[BaseModel]) -> list[Problem]:
    """pydantic's errors as (key path, what was expected): union tags dropped, unknown keys listed."""
    problems: list[Problem] = []
    for err in exc.errors():
        kind, shown = err["type"], _walk(model, err["loc"])[1]
        if kind == "extra_forbidden":
            parent = _walk(model, err["loc"][:-1])[0]
            # Fields left out of dumps are placeholders that refuse any value: not offered as valid.
            names = [n for n, f in parent.model_fields.items() if not f.exclude] if _is_model(parent) else []
            msg = unknown("key", str(err["loc"][-1]), names, listed="valid keys")
        elif kind == "missing":
            msg = "required key is missing"
        elif kind == "union_tag_invalid":
            msg = f"unknown domain type {err['ctx']['tag']!r}; valid: {_DOMAIN_TYPES}"
        elif kind == "union_tag_not_found":
            msg = f"missing 'type' (one of {_DOMAIN_TYPES})"
        elif kind in ("model_type", "model_attributes_type", "dict_type"):
            msg = f"expected a mapping, got {_show(err['input'])}"
        elif kind == "value_error":
            msg = err["msg"].removeprefix("Value error, ")
        else:
            msg = err["msg"].replace("Input should be", "expected", 1)
            for words, sign in _COMPARISONS:
                msg = msg.replace(words, sign)
            if not isinstance(err["input"], (dict, list)):
                msg += f", got {_show(err['input'])}"
        problems.append((shown, msg))
    return problems


def _walk(model: Any, loc: tuple[Any, ...]) -> tuple[Any, Loc]:
    """The type at ``loc`` inside ``model`` and ``loc`` without discriminated-union tags."""
    tp, shown = model, []
    for part in loc:
        tp = _unwrap(tp)
        if _is_model(tp):
            field = tp.model_fields.get(part) if isinstance(part, str) else None
            tp = field.annotation if field else None
        elif get_origin(tp) in (dict, list):
            tp = get_args(tp)[-1]
        elif get_origin(tp) in (Union, UnionType):
            tags = {get_args(m.model_fields["type"].annotation)[0]: m for m in get_args(tp) if _is_model(m)}
            if part in tags:
                tp = tags[part]
                continue
            tp = None
        else:
            tp = None
        shown.append(part)
    return _unwrap(tp), tuple(shown)


def _unwrap(tp: Any) -> Any:
    while True:
        args = get_args(tp)
        if get_origin(tp) is Annotated:
            tp = args[0]
        elif get_origin(tp) in (Union, UnionType) and len(args) == 2 and type(None) in args:
            tp = next(a for a in args if a is not type(None))
        else:
            return tp


def _is_model(tp: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, BaseModel)
