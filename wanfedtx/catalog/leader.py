"""Leader routine: register servers in the catalog as service ``consul`` with ``serfHealth``.

The reference's leader reconciles every LAN member; for a server it registers the node, the
service ``consul`` (ID ``consul``) on the server RPC port, and the check ``serfHealth``
("Serf Health Status", passing, "Agent alive and reachable"). Until gossip exists, each leader
reconciles itself; gossip will call :func:`reconcile_server` for every alive server member.
"""

from __future__ import annotations

from typing import Any

from wanfedtx.catalog.endpoints import Endpoints

CONSUL_SERVICE_ID = "consul"
CONSUL_SERVICE_NAME = "consul"
SERF_CHECK_ID = "serfHealth"
SERF_CHECK_NAME = "Serf Health Status"
SERF_CHECK_ALIVE_OUTPUT = "Agent alive and reachable"


def server_register_request(
    node: str, address: str, port: int, datacenter: str, node_id: str = ""
) -> dict[str, Any]:
    return {
        "Datacenter": datacenter,
        "ID": node_id,
        "Node": node,
        "Address": address,
        "Service": {
            "ID": CONSUL_SERVICE_ID,
            "Service": CONSUL_SERVICE_NAME,
            "Port": port,
        },
        "Check": {
            "Node": node,
            "CheckID": SERF_CHECK_ID,
            "Name": SERF_CHECK_NAME,
            "Status": "passing",
            "Output": SERF_CHECK_ALIVE_OUTPUT,
        },
        "SkipNodeUpdate": False,
    }


async def reconcile_server(
    endpoints: Endpoints, node: str, address: str, port: int, node_id: str = ""
) -> bool:
    """Register ``node`` as a server unless the catalog already says exactly that.

    Returns True when a write was made. Only the leader may call this.
    """
    state = endpoints.state
    _, services = state.node_services(None, node)
    _, checks = state.node_checks(None, node)
    if services is not None:
        node_row, svcs = services
        consul = [s for s in svcs if s["ID"] == CONSUL_SERVICE_ID]
        serf = [c for c in checks if c["CheckID"] == SERF_CHECK_ID]
        if (
            node_row["Address"] == address
            and consul
            and consul[0]["Port"] == port
            and serf
            and serf[0]["Status"] == "passing"
        ):
            return False
    req = server_register_request(node, address, port, endpoints.datacenter, node_id)
    await endpoints.catalog_register(req)
    return True
