"""Hypothesis fuzzing of the whole loader: near-valid HCL and JSON built from the schema (with
unknown keys, wrong types, repeats, templates, durations, mutations) and random bytes must give
a loaded config or a ``ConfigError``: never another exception.

Examples per test: ``WANFED_FUZZ_EXAMPLES`` (default 500; three tests, so 1,500 files).
"""

from __future__ import annotations

import json
import os
import tempfile
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from wanfedtx.config import ConfigError, LoadOptions, load
from wanfedtx.config.schema import SCHEMA, Field
from wanfedtx.config.sockaddr import IfAddr

pytestmark = pytest.mark.filterwarnings("ignore::hypothesis.errors.HypothesisWarning")
EXAMPLES = int(os.environ.get("WANFED_FUZZ_EXAMPLES", "500"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
IFS = [
    IfAddr("lo", "127.0.0.1", 8, up=True, loopback=True),
    IfAddr("eth0", "10.1.2.3", 24, up=True, loopback=False, default_route=True),
]
_DIR = tempfile.mkdtemp(prefix="wanfed-fuzz-")

strings = st.one_of(
    st.sampled_from(
        [
            "",
            "dc1",
            "primary",
            "0.0.0.0",
            "127.0.0.1",
            "::",
            "10.0.0.1 10.0.0.2",
            "5s",
            "-1s",
            "1h2m3.5s",
            "30",
            "x",
            '{{ GetInterfaceIP "eth0" }}',
            "{{ GetPrivateIP }}",
            "{{ GetAllInterfaces }}",
            "{{",
            "unix:///tmp/s",
            "a/b",
            "consul-primary:4431",
            "mesh-gateway",
            "tls13",
            "info",
            "pUqJrVyVRj5jsiYEkM/tFQ==",
        ]
    ),
    st.text(max_size=12),
)
scalars = st.one_of(
    strings,
    st.integers(min_value=-100000, max_value=100000),
    st.booleans(),
    st.floats(allow_nan=False, allow_infinity=False, width=32),
)


def value_for(f: Field, depth: int) -> st.SearchStrategy[Any]:
    wrong = scalars if depth < 3 else st.just(1)
    if f.kind == "dur":
        right: st.SearchStrategy[Any] = st.one_of(
            st.sampled_from(["5s", "1m30s", "300ms", "0", "-1s", "2h"]), strings
        )
    elif f.kind == "str":
        right = st.one_of(st.sampled_from(["dc1", "10.0.0.1", "x"]), strings)
    elif f.kind == "int":
        right = st.integers(min_value=-2, max_value=70000)
    elif f.kind == "float":
        right = st.floats(min_value=-5, max_value=5)
    elif f.kind == "bool":
        right = st.booleans()
    elif f.kind == "strlist":
        right = st.lists(strings, max_size=3)
    elif f.kind == "strmap":
        right = st.dictionaries(
            st.sampled_from(["a", "b", "consul-x", "consul-wan-federation"]), strings, max_size=3
        )
    elif f.kind == "ignored":  # a Consul key that does not apply: any value
        right = scalars
    elif f.kind in ("block", "mapof"):
        assert f.sub is not None
        right = obj_for(f.sub, depth + 1)
        if f.kind == "mapof":
            right = st.dictionaries(st.sampled_from(["lan", "wan"]), right, max_size=2)
    else:  # blocklist
        assert f.sub is not None
        right = st.lists(obj_for(f.sub, depth + 1), max_size=2)
    return st.one_of(*([right] * 12), wrong)


def obj_for(schema: dict[str, Field] | Any, depth: int) -> st.SearchStrategy[list[tuple[str, Any]]]:
    if depth > 3:
        return st.just([])
    keys = sorted(schema)
    known = st.sampled_from(keys).flatmap(
        lambda k: st.tuples(st.just(k), value_for(schema[k], depth))
    )
    unknown = st.tuples(st.sampled_from(["bogus", "Datacenter", "ports.http"]), scalars)
    return st.lists(st.one_of(*([known] * 30), unknown), max_size=6)


def hcl_value(v: Any, indent: int = 0) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, list) and v and all(isinstance(x, tuple) for x in v):
        return "{\n" + hcl_items(v, indent + 2) + " " * indent + "}"
    if isinstance(v, dict):
        return "{\n" + hcl_items(list(v.items()), indent + 2) + " " * indent + "}"
    if isinstance(v, list):
        return "[" + ", ".join(hcl_value(x, indent) for x in v) + "]"
    return json.dumps(str(v))


def hcl_items(items: list[tuple[str, Any]], indent: int = 0) -> str:
    out = []
    for k, v in items:
        key = k if k.replace("_", "").isalnum() else json.dumps(k)
        if isinstance(v, list) and v and all(isinstance(x, list) for x in v):
            for block in v:  # repeated blocks
                out.append(" " * indent + f"{key} {hcl_value(block, indent) if block else '{}'}\n")
        elif isinstance(v, list) and v and all(isinstance(x, tuple) for x in v):
            out.append(" " * indent + f"{key} {hcl_value(v, indent)}\n")
        else:
            out.append(" " * indent + f"{key} = {hcl_value(v, indent)}\n")
    return "".join(out)


def to_json(v: Any) -> Any:
    if isinstance(v, list) and v and all(isinstance(x, tuple) for x in v):
        return {k: to_json(x) for k, x in v}
    if isinstance(v, list):
        return [to_json(x) for x in v]
    if isinstance(v, dict):
        return {k: to_json(x) for k, x in v.items()}
    return v


def mutate(text: str, data: st.DataObject) -> str:
    if data.draw(st.integers(min_value=0, max_value=9)) < 6:
        return text  # most files are left well-formed, so that schema and validation run
    for _ in range(data.draw(st.integers(min_value=1, max_value=3))):
        if not text:
            break
        i = data.draw(st.integers(min_value=0, max_value=len(text) - 1))
        op = data.draw(st.sampled_from(["del", "ins", "dup"]))
        if op == "del":
            text = text[:i] + text[i + 1 :]
        elif op == "ins":
            text = text[:i] + data.draw(st.sampled_from(list('{}[]=",\n#/*<$:.-'))) + text[i:]
        else:
            text = text[:i] + text[i:] + text[i:]
    return text


def load_text(name: str, content: bytes) -> None:
    path = os.path.join(_DIR, name)
    with open(path, "wb") as f:
        f.write(content)
    try:
        load(
            LoadOptions(
                config_files=[path],
                flags={"data_dir": os.path.join(_DIR, "data")},
                interfaces=lambda: IFS,
                hostname=lambda: "fuzz",
            )
        )
    except ConfigError as e:
        assert str(e) and "\n" not in str(e)


@FUZZ
@given(items=obj_for(SCHEMA, 0), data=st.data())
def test_fuzz_hcl(items: list[tuple[str, Any]], data: st.DataObject) -> None:
    load_text("f.hcl", mutate(hcl_items(items), data).encode())


@FUZZ
@given(items=obj_for(SCHEMA, 0), data=st.data())
def test_fuzz_json(items: list[tuple[str, Any]], data: st.DataObject) -> None:
    load_text("f.json", mutate(json.dumps(to_json(items), indent=1), data).encode())


@FUZZ
@given(raw=st.binary(max_size=200), ext=st.sampled_from(["f.hcl", "f.json"]))
def test_fuzz_bytes(raw: bytes, ext: str) -> None:
    load_text(ext, raw)


@pytest.mark.parametrize("ext, text", [
    ("f.hcl", 'service {\n  name = "web"\n  tagged_addresses {\n    lan = []\n  }\n}\n'),
    ("f.json", '{"service": {"name": "web", "tagged_addresses": {"lan": []}}}'),
])
def test_an_empty_list_as_a_map_entry_leaves_it_unset(ext: str, text: str) -> None:
    """Found by the 100,000-example run (an IndexError): ``lan = []`` where a map of blocks
    wants a block is an entry left unset, as an empty list for a block is."""
    path = os.path.join(_DIR, ext)
    with open(path, "w") as f:
        f.write(text)
    rt = load(LoadOptions(config_files=[path], flags={"data_dir": os.path.join(_DIR, "data")},
                          interfaces=lambda: IFS, hostname=lambda: "fuzz")).runtime
    [web] = rt.services
    assert web.name == "web" and dict(web.tagged_addresses) == {}
