"""A remote gateway's endpoint follows ``BestAddress(wan)``: a service address wins over the
node's ``wan`` tagged address (a gateway registered on a server node with an address of its own,
as the fault suite's two gateways per datacenter are, must not be dialed at the server's)."""

from __future__ import annotations

from test_gateway_agentwatch import csn

from wanfedtx.gateway.agentwatch import EndpointInput, endpoint_of


def test_service_address_wins_over_the_nodes_wan_address() -> None:
    entry = csn("s1", "secondary", "10.1.0.1", 8443, "passing", Address="10.1.0.11")
    entry["Node"]["TaggedAddresses"] = {"lan": "10.1.0.1", "wan": "10.1.0.1"}
    assert endpoint_of(entry, "primary") == EndpointInput("10.1.0.11", 8443, "HEALTHY", 1)


def test_node_wan_address_only_without_a_service_address() -> None:
    entry = csn("s1", "secondary", "10.1.0.1", 8443, "passing")
    entry["Node"]["TaggedAddresses"] = {"wan": "198.51.100.7"}
    assert endpoint_of(entry, "primary") == EndpointInput("198.51.100.7", 8443, "HEALTHY", 1)
