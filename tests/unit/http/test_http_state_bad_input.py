"""Bad input on the state-backed /v1 routes: status codes, one-line messages, nothing stored.

Runs the Klein resource in memory with ``treq.testing.StubTreq`` (no sockets), so hypothesis can
throw many bodies at it. ``WANFED_FUZZ_EXAMPLES`` raises the example count.
"""

from __future__ import annotations

import json
import os
from typing import Any

import pytest
from http_support import StateApp
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from treq.testing import StubTreq
from twisted.python.failure import Failure
from twisted.web.error import PageRedirect

EXAMPLES = int(os.environ.get("WANFED_FUZZ_EXAMPLES", "100"))
BASE = "http://127.0.0.1:8500"


class Harness(StateApp):
    def __init__(self, kv_limit: int = 512 * 1024) -> None:
        super().__init__(kv_limit)
        self.stub = StubTreq(self.api.resource())

    def request(self, method: str, path: str, body: bytes | None = None) -> tuple[int, bytes, Any]:
        d = self.stub.request(method, BASE + path, data=body)
        self.stub.flush()
        results: list[Any] = []
        d.addBoth(results.append)
        assert results, f"{method} {path} did not answer"
        response = results[0]
        if isinstance(response, Failure):
            # Paths with "//" are redirected to their cleaned form (as Go's mux does).
            redirect = response.value.reasons[0].value
            assert isinstance(redirect, PageRedirect), response
            return int(redirect.status), b"", None
        content: list[bytes] = []
        self.stub.content(response).addCallback(content.append)
        self.stub.flush()
        return response.code, content[0], response.headers

    def state(self) -> list[Any]:
        return list(self.fsm.state.snapshot_records())


@pytest.fixture
def h() -> Harness:
    return Harness()


def test_unknown_path_and_wrong_method(h: Harness) -> None:
    code, body, _ = h.request("GET", "/v1/nope")
    assert (code, body) == (404, b"404 page not found")
    code, body, headers = h.request("GET", "/v1/catalog/register")
    assert (code, body) == (405, b"method GET not allowed")
    assert headers.getRawHeaders("Allow") == ["PUT"]
    code, body, _ = h.request("POST", "/v1/kv/foo")
    assert code == 405 and body == b"method POST not allowed"


def test_malformed_json_and_wrong_types(h: Harness) -> None:
    code, body, _ = h.request("PUT", "/v1/catalog/register", b"{not json")
    assert code == 400 and body.startswith(b"Request decode failed: ")
    code, body, _ = h.request("PUT", "/v1/catalog/register", b"[1,2]")
    assert code == 400 and b"\n" not in body
    code, body, _ = h.request("PUT", "/v1/catalog/register", json.dumps({"Node": 5}).encode())
    assert code == 400 and b"'Node' must be a string" in body
    code, body, _ = h.request("PUT", "/v1/catalog/register", json.dumps({"Node": "n"}).encode())
    assert (code, body) == (400, b"Must provide address if SkipNodeUpdate is not set")
    bad_meta = {
        "Node": "n",
        "Address": "a",
        "Service": {"Service": "s", "Meta": {"consul-wan-federation": "1"}},
    }
    code, body, _ = h.request("PUT", "/v1/catalog/register", json.dumps(bad_meta).encode())
    assert code == 400 and b"Key prefix 'consul-' is reserved for internal use" in body
    assert h.state() == Harness().state()


def test_lone_surrogates_become_replacement_characters(h: Harness) -> None:
    # as Go's decoder does; kept as they were, no UTF-8 encoder took them (500)
    code, text, _ = h.request(
        "PUT", "/v1/catalog/register", b'{"Node":"n\\ud800","Address":"10.0.0.1",'
        b'"NodeMeta":{"k\\udfff":"v"},"Service":{"Service":"s\\udc00"}}')
    assert (code, text) == (200, b"true")
    code, text, _ = h.request("GET", "/v1/catalog/node/n%EF%BF%BD")
    assert code == 200
    node = json.loads(text)
    assert node["Node"]["Meta"] == {"k\ufffd": "v"}
    assert list(node["Services"]) == ["s\ufffd"]


def test_query_parameter_errors(h: Harness) -> None:
    assert h.request("GET", "/v1/catalog/nodes?index=abc")[:2] == (400, b"Invalid index")
    assert h.request("GET", "/v1/catalog/nodes?index=1&wait=soon")[:2] == (
        400,
        b"Invalid wait time",
    )
    assert h.request("GET", "/v1/catalog/nodes?stale&consistent")[0] == 400
    assert h.request("GET", "/v1/kv/")[:2] == (400, b"Missing key name")
    assert h.request("PUT", "/v1/kv/")[:2] == (400, b"Missing key name")
    assert h.request("PUT", "/v1/kv/a?flags=-1")[0] == 400
    assert h.request("PUT", "/v1/kv/a?cas=1&acquire=x")[0] == 400
    assert h.request("GET", "/v1/kv/missing")[0] == 404


def test_kv_value_limit(h: Harness) -> None:
    limit = 512 * 1024
    code, body, _ = h.request("PUT", "/v1/kv/big", b"x" * (limit + 1))
    assert code == 413
    assert body.startswith(b"Request body(524289 bytes) too large, max size: 524288 bytes.")
    assert h.fsm.state.kvs_get(None, "big")[1] is None
    code, body, _ = h.request("PUT", "/v1/kv/big", b"x" * limit)
    assert (code, body) == (200, b"true")


def test_kv_raw_and_headers(h: Harness) -> None:
    assert h.request("PUT", "/v1/kv/k", b"\x00\x01")[:2] == (200, b"true")
    code, body, headers = h.request("GET", "/v1/kv/k?raw")
    assert (code, body) == (200, b"\x00\x01")
    code, body, headers = h.request("GET", "/v1/kv/k")
    assert json.loads(body)[0]["Value"] == "AAE="
    code, body, _ = h.request("GET", "/v1/kv/?recurse")
    assert code == 200 and [e["Key"] for e in json.loads(body)] == ["k"]
    code, body, _ = h.request("GET", "/v1/kv/?keys")
    assert (code, json.loads(body)) == (200, ["k"])
    assert headers.getRawHeaders("X-Consul-Index") == ["1"]
    assert headers.getRawHeaders("X-Consul-KnownLeader") == ["true"]
    assert headers.getRawHeaders("X-Consul-LastContact") == ["0"]


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=8)
    | st.sampled_from(["\ud800", "x\udfffy"]),  # lone surrogates: json.dumps escapes them
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=8,
)
SERVICE_KEYS = ["Service", "ID", "Kind", "Tags", "Port", "Meta", "Address", "Weights", "service"]
CHECK_KEYS = ["CheckID", "Name", "Status", "ServiceID", "Node", "Notes", "Definition"]
REGISTER_KEYS = ["Node", "Address", "ID", "NodeMeta", "TaggedAddresses", "SkipNodeUpdate", "node"]


def objects(keys: list[str], extra: dict[str, Any]) -> st.SearchStrategy[dict[str, Any]]:
    fields = {k: json_values | st.just("web") | st.just("passing") for k in keys}
    fields.update(extra)
    return st.fixed_dictionaries({}, optional=fields)


register_bodies = objects(
    REGISTER_KEYS,
    {
        "Service": objects(SERVICE_KEYS, {}) | json_values,
        "Check": objects(CHECK_KEYS, {}) | json_values,
        "Checks": st.lists(objects(CHECK_KEYS, {}), max_size=2) | json_values,
    },
)


def _is_allowed(code: int, body: bytes) -> bool:
    return code != 500 or body == b"No path to datacenter"


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(body=register_bodies | json_values, path=st.sampled_from(["register", "deregister"]))
def test_fuzz_catalog_bodies(body: Any, path: str) -> None:
    h = Harness()
    before = h.state()
    raw = json.dumps(body, allow_nan=True).encode()
    code, text, _ = h.request("PUT", f"/v1/catalog/{path}", raw)
    assert _is_allowed(code, text), (code, text)
    assert b"\n" not in text.strip()
    if code != 200:
        assert h.state() == before


@settings(max_examples=EXAMPLES, deadline=None)
@given(
    key=st.text(min_size=0, max_size=12).filter(lambda k: "?" not in k and "#" not in k),
    value=st.binary(max_size=64),
    query=st.sampled_from(
        ["", "?cas=0", "?cas=x", "?flags=3", "?flags=-2", "?release=s", "?cas=1&acquire=1"]
    ),
)
def test_fuzz_kv_put(key: str, value: bytes, query: str) -> None:
    h = Harness(kv_limit=32)
    before = h.state()
    from urllib.parse import quote

    code, text, _ = h.request("PUT", "/v1/kv/" + quote(key) + query, value)
    assert code in (200, 308, 400, 404, 413), (code, text)
    if code != 200:
        assert h.state() == before


AGENT_SERVICE_KEYS = [
    "Name",
    "ID",
    "Kind",
    "Tags",
    "Port",
    "Meta",
    "Address",
    "Weights",
    "EnableTagOverride",
    "name",
    "port",
    "kind",
]
AGENT_CHECK_KEYS = [
    "TTL",
    "TCP",
    "HTTP",
    "Interval",
    "Timeout",
    "CheckID",
    "Name",
    "Status",
    "Args",
]
agent_bodies = objects(
    AGENT_SERVICE_KEYS,
    {
        "Meta": st.dictionaries(
            st.sampled_from(["consul-wan-federation", "consul-x", "ok", "bad key", ""]),
            st.text(max_size=4),
            max_size=2,
        )
        | json_values,
        "Kind": st.sampled_from(["", "mesh-gateway", "connect-proxy", "bogus"]) | json_values,
        "Check": objects(AGENT_CHECK_KEYS, {"TTL": st.sampled_from(["10s", "0", "x", 5])})
        | json_values,
        "Checks": st.lists(objects(AGENT_CHECK_KEYS, {}), max_size=2) | json_values,
    },
)


@settings(max_examples=EXAMPLES, deadline=None)
@given(body=agent_bodies | json_values)
@example(body={"Name": "web", "Meta": {"consul-wan-federation": "\n"}})  # found at 34,887
def test_fuzz_agent_service_register(body: Any) -> None:
    h = Harness()
    raw = json.dumps(body, allow_nan=True).encode()
    code, text, _ = h.request("PUT", "/v1/agent/service/register", raw)
    assert code in (200, 400), (code, text)
    assert b"\n" not in text.strip()
    if code != 200:
        assert h.local.services == {} and h.local.checks == {}
    else:
        assert len(h.local.services) == 1
