"""Limits on a sweep file's YAML shape, checked on the event stream before anything is built.

PyYAML composes and constructs nodes recursively and follows aliases: a document nested 10,000
levels deep (``[[[[...]]]]``) overflows Python's stack, a recursive alias (``a: &a [*a]``) makes any
walk of the composed nodes endless, and a "billion laughs" of aliases each repeating the one before
expands exponentially. The parser's event stream is flat (its state is a list, not the call
stack), so one pass over it, with aliases measured by the size of their anchor, finds all three
while the work is still linear in the file's length. A sweep file is a few levels deep and a few
hundred values long, far inside both limits.
"""

from __future__ import annotations

import yaml

from pldistill.sweep._problems import Problem

__all__ = ["MAX_DEPTH", "MAX_VALUES", "shape_problems"]

#: Nesting of mappings and lists; the deepest key of a sweep file (a choice value) is 5 levels down.
MAX_DEPTH = 32
#: Scalars and collections once every alias is expanded.
MAX_VALUES = 100_000

_START = (yaml.MappingStartEvent, yaml.SequenceStartEvent)
_END = (yaml.MappingEndEvent, yaml.SequenceEndEvent)


def shape_problems(text: str) -> list[Problem]:
    """The first shape problem of ``text`` (too deep, a recursive alias, too many values once the
    aliases are expanded), placed at its line and column; [] when none. Raises ``yaml.YAMLError``
    on a syntax error, as the loaders would."""
    # Per open collection: [anchor, values inside it so far, depth of its deepest child].
    open_: list[list] = []
    anchors: dict[str, tuple[int, int]] = {}  # anchor -> (values, depth) of the node it names
    for event in yaml.parse(text, Loader=yaml.SafeLoader):
        values, depth = 0, 0
        if isinstance(event, _START):
            if len(open_) >= MAX_DEPTH:
                return [_at(event, f"nested deeper than {MAX_DEPTH} levels (a sweep file needs 5)")]
            open_.append([event.anchor, 1, 0])
            continue
        if isinstance(event, _END):
            anchor, values, depth = open_.pop()
            depth += 1
        elif isinstance(event, yaml.ScalarEvent):
            anchor, values = event.anchor, 1
        elif isinstance(event, yaml.AliasEvent):
            if any(o[0] == event.anchor for o in open_):
                return [_at(event, f"alias *{event.anchor} is inside the node it names (a recursive alias)")]
            anchor, (values, depth) = None, anchors.get(event.anchor, (1, 0))  # undefined: the composer says so
            if len(open_) + depth > MAX_DEPTH:
                return [_at(event, f"alias *{event.anchor} nests deeper than {MAX_DEPTH} levels once expanded")]
        else:
            continue
        if anchor:
            anchors[anchor] = (values, depth)
        if open_:
            open_[-1][1] += values
            open_[-1][2] = max(open_[-1][2], depth)
            values = open_[-1][1]
        if values > MAX_VALUES:
            return [_at(event, f"more than {MAX_VALUES:,} values once aliases are expanded (an alias bomb?)")]
    return []


def _at(event: yaml.Event, msg: str) -> Problem:
    mark = event.start_mark
    return f"line {mark.line + 1}, column {mark.column + 1}", msg
