# -*- test-case-name: tests.unit.config -*-
"""The parsed form of one config source: ordered key/value items that remember their line.

Both the HCL and the JSON readers produce an ``Obj``: a list of ``Item(key, value, line)`` in
source order, where repeated keys stay repeated (nothing is merged at parse time). Values are
``str``, ``int``, ``float``, ``bool``, ``None``, ``list`` or ``Obj``. The schema decoder
(``wanfedtx.config.schema``) turns an ``Obj`` into plain dicts while checking keys and types.
"""

from __future__ import annotations

from typing import Any, NamedTuple


class Item(NamedTuple):
    """One ``key = value`` (or ``key { ... }`` block) with the line it starts on (0 if unknown)."""

    key: str
    value: Any
    line: int


class Obj(list[Item]):
    """An object of a config source: its items in order, repeats kept."""

    line: int = 0
