# -*- test-case-name: tests.unit.config -*-
"""JSON config reading into the same ``tree.Obj`` form as HCL, with the line of every key.

The standard ``json`` module does not report where keys are, so this is a small recursive-descent
reader built on ``json.decoder.scanstring`` and the standard number grammar. It accepts exactly
RFC 8259 JSON (no NaN/Infinity, no trailing commas); duplicate keys are kept as repeated items
(the schema decoder lets the last scalar win, as Go's ``encoding/json`` does for maps).
"""

from __future__ import annotations

import json.decoder
import re
from typing import Any

from wanfedtx.config.errors import ParseError
from wanfedtx.config.tree import Item, Obj
from wanfedtx.jsondecode import replace_lone_surrogates

_WS = re.compile(r"[ \t\n\r]*")
_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(\.[0-9]+)?([eE][-+]?[0-9]+)?")
_MAX_DEPTH = 200


class _Reader:
    def __init__(self, text: str, source: str) -> None:
        self.s = text
        self.source = source

    def line_at(self, pos: int) -> int:
        return self.s.count("\n", 0, pos) + 1

    def fail(self, pos: int, what: str) -> ParseError:
        return ParseError(f"JSON syntax error: {what}", source=self.source, line=self.line_at(pos))

    def ws(self, pos: int) -> int:
        m = _WS.match(self.s, pos)
        return pos if m is None else m.end()  # the pattern matches the empty string

    def value(self, pos: int, depth: int) -> tuple[Any, int]:
        if depth > _MAX_DEPTH:
            raise self.fail(pos, "nesting too deep")
        pos = self.ws(pos)
        if pos >= len(self.s):
            raise self.fail(pos, "unexpected end of input")
        c = self.s[pos]
        if c == "{":
            return self.obj(pos, depth)
        if c == "[":
            return self.array(pos, depth)
        if c == '"':
            return self.string(pos)
        for lit, val in (("true", True), ("false", False), ("null", None)):
            if self.s.startswith(lit, pos):
                return val, pos + len(lit)
        m = _NUMBER.match(self.s, pos)
        if m and m.end() > pos:
            text = m.group(0)
            try:
                if m.group(1) or m.group(2):
                    return float(text), m.end()
                return int(text), m.end()
            except ValueError as e:  # e.g. more digits than Python converts
                raise self.fail(pos, f"bad number: {e}") from None
        raise self.fail(pos, f"unexpected character {c!r}")

    def string(self, pos: int) -> tuple[str, int]:
        try:
            text, end = json.decoder.scanstring(self.s, pos + 1, True)  # type: ignore[attr-defined]
            return replace_lone_surrogates(text), end
        except json.JSONDecodeError as e:
            raise self.fail(e.pos, e.msg) from None

    def obj(self, pos: int, depth: int) -> tuple[Obj, int]:
        out = Obj()
        out.line = self.line_at(pos)
        pos = self.ws(pos + 1)
        if self.s.startswith("}", pos):
            return out, pos + 1
        while True:
            pos = self.ws(pos)
            if not self.s.startswith('"', pos):
                raise self.fail(pos, "expected a string key")
            line = self.line_at(pos)
            key, pos = self.string(pos)
            pos = self.ws(pos)
            if not self.s.startswith(":", pos):
                raise self.fail(pos, "expected ':' after a key")
            val, pos = self.value(pos + 1, depth + 1)
            out.append(Item(key, val, line))
            pos = self.ws(pos)
            if self.s.startswith(",", pos):
                pos += 1
                continue
            if self.s.startswith("}", pos):
                return out, pos + 1
            raise self.fail(pos, "expected ',' or '}'")

    def array(self, pos: int, depth: int) -> tuple[list[Any], int]:
        out: list[Any] = []
        pos = self.ws(pos + 1)
        if self.s.startswith("]", pos):
            return out, pos + 1
        while True:
            val, pos = self.value(pos, depth + 1)
            out.append(val)
            pos = self.ws(pos)
            if self.s.startswith(",", pos):
                pos += 1
                continue
            if self.s.startswith("]", pos):
                return out, pos + 1
            raise self.fail(pos, "expected ',' or ']'")


def parse_json(text: str, source: str) -> Obj:
    """Parse a JSON config file (an object at the top) into an ``Obj``."""
    r = _Reader(text, source)
    pos = r.ws(0)
    if pos >= len(text):
        return Obj()
    if not text.startswith("{", pos):
        raise r.fail(pos, "a config file must hold a JSON object")
    value, pos = r.obj(pos, 0)
    pos = r.ws(pos)
    if pos != len(text):
        raise r.fail(pos, "unexpected data after the top-level object")
    return value
