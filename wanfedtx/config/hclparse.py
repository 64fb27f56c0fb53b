# -*- test-case-name: tests.unit.config.test_config_loading -*-
"""HCL1 reading with pyhcl 0.4.5's grammar, keeping repeated blocks and line numbers.

Stock pyhcl flattens objects with ``objectlist_flat``, which merges repeated keys and, for
repeated blocks, scatters their fields across the entries (two ``services { ... }`` blocks come
back with the second one's ``name`` lost). ``KeepingHclParser`` overrides only the semantic
actions: it keeps every item, in order, as a ``tree.Obj`` of ``tree.Item(key, value, line)``,
so that the schema decoder can apply Consul's rule (single blocks collapse to a map, repeats of
non-repeatable keys are errors) and report lines. The grammar is unchanged.
"""

from __future__ import annotations

import re
import threading
from typing import Any

from hcl.lexer import Lexer
from hcl.parser import HclParser

from wanfedtx.config.errors import ParseError
from wanfedtx.config.tree import Item, Obj

_LEXER_ERROR = re.compile(r"Line (\d+), column (\d+)(?:, index \d+)?: (.*)", re.S)

_TOKEN_NAMES = {
    "LEFTBRACE": "'{'",
    "RIGHTBRACE": "'}'",
    "LEFTBRACKET": "'['",
    "RIGHTBRACKET": "']'",
    "EQUAL": "'='",
    "COMMA": "','",
    "COLON": "':'",
    "PERIOD": "'.'",
    "LEFTPAREN": "'('",
    "RIGHTPAREN": "')'",
}


class KeyStr(str):
    """An object key that remembers the line it was read on."""

    line: int = 0


class _SyntaxError(Exception):
    def __init__(self, line: int | None, message: str) -> None:
        super().__init__(message)
        self.line = line
        self.message = message


class KeepingHclParser(HclParser):  # type: ignore[misc]
    """pyhcl's parser with actions that keep repeated keys/blocks and record lines."""

    # ply orders rules by source line; our overrides live in another file, so name the start.
    start = "top"

    def objectlist_flat(self, lt: list[Any], replace: bool) -> Obj:
        obj = Obj()
        for k, v in lt:
            obj.append(Item(str(k), v, getattr(k, "line", 0)))
        return obj

    def p_objectkey_0(self, p: Any) -> None:
        """
        objectkey : IDENTIFIER
                  | STRING
        """
        key = KeyStr(p[1])
        key.line = p.lineno(1)
        p[0] = key

    def p_block_1(self, p: Any) -> None:
        "block : objectkey block"
        inner = Obj()
        k, v = p[2]
        inner.append(Item(str(k), v, getattr(k, "line", 0)))
        p[0] = (p[1], inner)

    def p_error(self, p: Any) -> None:
        if p is None:
            raise _SyntaxError(None, "unexpected end of file")
        what = _TOKEN_NAMES.get(p.type, p.type)
        if p.type in ("STRING", "IDENTIFIER", "NUMBER", "FLOAT", "BOOL"):
            what = f"{p.type.lower()} {p.value!r}"
        raise _SyntaxError(p.lineno, f"syntax error: unexpected {what}")


_local = threading.local()


def _parser() -> KeepingHclParser:
    parser = getattr(_local, "parser", None)
    if parser is None:
        parser = KeepingHclParser()
        _local.parser = parser
    return parser


def parse_hcl(text: str, source: str) -> Obj:
    """Parse HCL1 text into an ``Obj``; raise ``ParseError`` naming ``source`` and the line."""
    if text.strip() == "":
        return Obj()
    try:
        result = _parser().yacc.parse(text, lexer=Lexer(), debug=False)
    except _SyntaxError as e:
        line = e.line if e.line is not None else text.count("\n") + 1
        raise ParseError(e.message, source=source, line=line) from None
    except ValueError as e:
        m = _LEXER_ERROR.match(str(e))
        if m:
            raise ParseError(
                f"syntax error: {m.group(3)}", source=source, line=int(m.group(1))
            ) from None
        raise ParseError(f"syntax error: {e}", source=source) from None
    except RecursionError:
        raise ParseError("syntax error: nesting too deep", source=source) from None
    except Exception as e:  # pyhcl's actions can fail on odd input (e.g. TypeError)
        raise ParseError(f"syntax error: {type(e).__name__}: {e}", source=source) from None
    if not isinstance(result, Obj):
        if result is None or result == []:
            return Obj()
        raise ParseError("syntax error: the file is not an HCL object", source=source)
    return result
