# -*- test-case-name: tests.unit.config.test_config_loading -*-
"""Configuration sources: reading ``-config-file``/``-config-dir`` paths and parsing them.

A ``Source`` is one named text in HCL or JSON (a file, a ``-hcl`` fragment, the built-in defaults);
``sources_from_path`` expands one path argument the way Consul does, ``parse_source`` decodes one
source against the schema, ``split_flags`` orders the command-line flags around the files.
Used by ``config.builder.load``.
"""

from __future__ import annotations

import copy
import functools
import os
from collections.abc import Mapping
from typing import Any

import attrs

from wanfedtx.config.errors import ConfigError, ParseError
from wanfedtx.config.hclparse import parse_hcl
from wanfedtx.config.jsonparse import parse_json
from wanfedtx.config.schema import SCHEMA, Origins, decode
from wanfedtx.config.tree import Obj


@attrs.frozen
class Source:
    name: str
    format: str
    data: str


def _format_of(path: str) -> str:
    if path.endswith(".json"):
        return "json"
    if path.endswith(".hcl"):
        return "hcl"
    return ""


def _read(path: str, fmt: str) -> Source:
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as e:
        raise ConfigError(f"config: failed to read {path}: {e.strerror or e}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ParseError(f"file is not valid UTF-8 (byte {e.start})", source=path) from None
    return Source(path, fmt, text)


def sources_from_path(path: str, config_format: str | None, warnings: list[str]) -> list[Source]:
    """The sources of one ``-config-file``/``-config-dir`` argument (Consul's sourcesFromPath)."""
    try:
        is_dir = os.path.isdir(path)
        exists = os.path.exists(path)
    except (OSError, ValueError) as e:
        raise ConfigError(f"config: Open failed on {path}. {e}") from None
    if not exists:
        raise ConfigError(f"config: Open failed on {path}. open {path}: no such file or directory")
    if not is_dir:
        fmt = config_format or _format_of(path)
        if not fmt:
            raise ConfigError(
                f"file {path} has unknown extension; must be .hcl or .json, or config format "
                "must be set"
            )
        return [_read(path, fmt)]
    out: list[Source] = []
    try:
        names = sorted(os.listdir(path))
    except OSError as e:
        raise ConfigError(f"config: Readdir failed on {path}. {e.strerror or e}") from None
    for name in names:
        fp = os.path.join(path, name)
        real = os.path.realpath(fp)
        if os.path.isdir(real):
            continue
        fmt = config_format or _format_of(fp)
        if not fmt:
            warnings.append(
                f"skipping file {fp}, extension must be .hcl or .json, or config format must be set"
            )
            continue
        out.append(_read(real if os.path.islink(fp) else fp, fmt))
    return out


@functools.lru_cache(maxsize=8)
def _builtin_source(name: str, text: str) -> tuple[dict[str, Any], Origins]:
    """The default and dev sources never change: decode them once per process."""
    return decode(parse_hcl(text, name), name)


def parse_source(src: Source) -> tuple[dict[str, Any], Origins]:
    if src.name in ("default", "dev"):
        data, origins = _builtin_source(src.name, src.data)
        return copy.deepcopy(data), dict(origins)
    obj: Obj = (
        parse_hcl(src.data, src.name) if src.format == "hcl" else parse_json(src.data, src.name)
    )
    return decode(obj, src.name)


def split_flags(flags: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Consul's splitSlicesAndValues: top-level list flags go first, the rest last."""
    slices = {k: v for k, v in flags.items() if SCHEMA[k].kind == "strlist"}
    values = {k: v for k, v in flags.items() if SCHEMA[k].kind != "strlist"}
    return slices, values


def _leaf_paths(d: Mapping[str, Any], prefix: str = "") -> list[str]:
    out: list[str] = []
    for k, v in d.items():
        if isinstance(v, dict) and SCHEMA.get(k) is not None and SCHEMA[k].kind == "block":
            out.extend(_leaf_paths(v, prefix + k + "."))
        else:
            out.append(prefix + k)
    return out
