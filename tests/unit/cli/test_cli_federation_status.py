"""``wanfed federation status`` over a scripted HTTP API (no sockets): the facts it collects
(health from the live answer or the federation state, replication lag, optional ACL/CA sections
left out on 404), the text screens, JSON, and its exit codes."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest

from wanfedtx.cli import federation, httpapi
from wanfedtx.cli.main import main

T0 = 1_800_000_000.0  # 2027-01-15T08:00:00Z


def csn(node: str, port: int, *statuses: str) -> dict[str, Any]:
    return {
        "Node": {"Node": node, "Address": "10.0.0.1"},
        "Service": {"Service": "mesh-gateway", "Port": port, "Address": "10.0.0.1",
                    "TaggedAddresses": {"wan": {"Address": "192.0.2.1", "Port": port}}},
        "Checks": [{"Status": s} for s in statuses],
    }


PRIMARY_STATES = [
    {"Datacenter": "dc1", "MeshGateways": [csn("gw1", 443, "passing")],
     "UpdatedAt": "2027-01-15T07:59:30Z", "ModifyIndex": 10, "PrimaryModifyIndex": 10},
    {"Datacenter": "dc2", "MeshGateways": [csn("gw2", 443, "passing"), csn("gw3", 443)],
     "UpdatedAt": "2027-01-15T07:50:00Z", "ModifyIndex": 20, "PrimaryModifyIndex": 20},
]


class API:
    """Answers by (path, dc); anything unknown is the agent's 404."""

    def __init__(self) -> None:
        self.answers: dict[tuple[str, str], tuple[int, Any]] = {
            ("/v1/agent/self", ""): (200, {"Config": {"Datacenter": "dc1",
                                                      "PrimaryDatacenter": "dc1",
                                                      "NodeName": "s1"}}),
            ("/v1/agent/members", ""): (200, [
                {"Name": "s1.dc1", "Addr": "10.0.0.1", "Port": 8302, "Status": 1,
                 "Tags": {"dc": "dc1", "role": "consul", "build": "0.1.0:abc"}},
                {"Name": "s2.dc2", "Addr": "10.0.1.1", "Port": 8302, "Status": 4,
                 "Tags": {"dc": "dc2", "role": "consul"}},
            ]),
            ("/v1/catalog/datacenters", ""): (200, ["dc1", "dc2"]),
            ("/v1/internal/federation-states", "dc1"): (200, PRIMARY_STATES),
            ("/v1/internal/federation-states", "dc2"): (200, [
                {**PRIMARY_STATES[0], "PrimaryModifyIndex": 10},
                {**PRIMARY_STATES[1], "PrimaryModifyIndex": 17},
            ]),
            ("/v1/status/leader", "dc1"): (200, "10.0.0.1:8300"),
            ("/v1/status/leader", "dc2"): (500, "rpc error: no path to datacenter"),
            ("/v1/health/service/mesh-gateway", "dc1"): (200, [csn("gw1", 443, "passing",
                                                                    "critical")]),
            ("/v1/health/service/mesh-gateway", "dc2"): (500, "rpc error: no path"),
        }
        self.seen: list[str] = []

    def __call__(self, req: httpapi.Request, stream: bool = False) -> httpapi.Response:
        parts = urlsplit(req.url)
        query = dict(parse_qsl(parts.query))
        self.seen.append(parts.path + ("?" + parts.query if parts.query else ""))
        code, body = self.answers.get((parts.path, query.get("dc", "")),
                                      (404, "404 page not found"))
        data = json.dumps(body).encode() if code == 200 else str(body).encode()
        return httpapi.Response(code, data, {})


@pytest.fixture
def api(monkeypatch: pytest.MonkeyPatch) -> API:
    fake = API()
    monkeypatch.setattr(httpapi, "TRANSPORT", [fake])
    return fake


def collect() -> dict[str, Any]:
    return federation.collect(httpapi.Client("http://127.0.0.1:8500"), now=lambda: T0)


def by_name(status: dict[str, Any], name: str) -> dict[str, Any]:
    return next(d for d in status["Datacenters"] if d["Name"] == name)


def test_collect(api: API) -> None:
    status = collect()
    assert [d["Name"] for d in status["Datacenters"]] == ["dc1", "dc2"]
    dc1, dc2 = by_name(status, "dc1"), by_name(status, "dc2")
    # dc1: the live health answer (one critical check of two -> the gateway is critical)
    assert dc1["Gateways"] == [{"Node": "gw1", "Service": "mesh-gateway",
                                "Address": "192.0.2.1:443", "Status": "critical",
                                "Source": "health"}]
    assert dc1["Health"] == "critical"
    assert dc1["FederationState"]["AgeSeconds"] == 30.0
    assert dc1["Replication"] is None
    assert dc1["Leader"] == "10.0.0.1:8300"
    assert [m["Name"] for m in dc1["Members"]] == ["s1.dc1"]
    # dc2 cannot be asked: its gateways come from the primary's federation state
    assert [g["Source"] for g in dc2["Gateways"]] == ["federation state"] * 2
    assert dc2["Health"] == "passing"
    assert dc2["GatewaysError"].startswith("Unexpected response code: 500")
    assert dc2["Leader"] == "" and "no path to datacenter" in dc2["LeaderError"]
    assert dc2["Replication"] == {"PrimaryIndex": 20, "ReplicatedIndex": 17, "Lag": 3,
                                  "StatesBehind": ["dc2"]}
    assert dc2["FederationState"]["AgeSeconds"] == 600.0
    # no ACL / CA endpoints: left out without an error
    for dc in (dc1, dc2):
        assert dc["ACLReplication"] is None and dc["ACLReplicationError"] == ""
        assert dc["CA"] is None and dc["CAError"] == ""
    assert "/v1/acl/replication?dc=dc2" in api.seen


def test_acl_and_ca_when_the_agent_has_them(api: API) -> None:
    api.answers[("/v1/acl/replication", "dc2")] = (200, {
        "Enabled": True, "Running": True, "SourceDatacenter": "dc1",
        "ReplicationType": "tokens", "ReplicatedIndex": 42,
        "LastSuccess": "2027-01-15T07:59:59Z", "LastError": "0001-01-01T00:00:00Z"})
    api.answers[("/v1/acl/replication", "dc1")] = (200, {"Enabled": False})
    api.answers[("/v1/connect/ca/roots", "dc1")] = (200, {
        "TrustDomain": "11111111.consul", "ActiveRootID": "aa:bb", "Roots": [{}]})
    api.answers[("/v1/connect/ca/roots", "dc2")] = (403, "Permission denied")
    text = federation.render(collect())
    assert ("  ACL replication:   running, tokens from dc1, index 42, last success "
            "2027-01-15T07:59:59Z\n") in text
    assert "  ACL replication:   disabled" in text
    assert "  Connect CA:        trust domain 11111111.consul, active root aa:bb, 1 root(s)" \
        in text
    assert "  Connect CA:        unknown (Unexpected response code: 403 (Permission denied))" \
        in text


def test_text_screens(api: API) -> None:
    text = federation.render(collect(), wan=True)
    assert text.splitlines()[0] == "Agent: s1 in dc1 (primary datacenter: dc1)"
    assert "Datacenter: dc1 (primary, CRITICAL: every gateway is critical)" in text
    assert "  Federation state:  updated 2027-01-15T07:59:30Z (30s ago), ModifyIndex 10" in text
    assert "  Federation state:  updated 2027-01-15T07:50:00Z (10m ago), ModifyIndex 20" in text
    assert "  Replication:       index 17 of the primary's 20 (lag 3, behind: dc2)" in text
    assert "  Leader:            unreachable (Unexpected response code: 500" in text
    assert "    gw1   mesh-gateway  192.0.2.1:443  critical" in text
    assert "\nWAN pool:\n" in text
    assert text.endswith("  s2.dc2  10.0.1.1:8302  failed  dc2")
    assert "  s1.dc1  10.0.0.1:8302  alive   dc1  0.1.0" in text


def test_command_json_and_exit_codes(api: API, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["federation", "status", "-format", "json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["PrimaryDatacenter"] == "dc1"
    assert [d["Health"] for d in doc["Datacenters"]] == ["critical", "passing"]
    assert main(["federation"]) == 1
    assert "Usage: wanfed federation status" in capsys.readouterr().err
    assert main(["federation", "status", "-format", "yaml"]) == 1
    assert "invalid choice: 'yaml'" in capsys.readouterr().err
    del api.answers[("/v1/agent/self", "")]
    assert main(["federation", "status"]) == 1
    assert capsys.readouterr().err == ("Error reading the federation status: Unexpected response "
                                       "code: 404 (404 page not found)\n")


def test_dc_health() -> None:
    assert federation.dc_health([]) == "unknown"
    assert federation.dc_health([{"Status": "critical"}, {"Status": "critical"}]) == "critical"
    assert federation.dc_health([{"Status": "critical"}, {"Status": "passing"}]) == "warning"
    assert federation.node_health({"Checks": [{"Status": "bogus"}]}) == "critical"
