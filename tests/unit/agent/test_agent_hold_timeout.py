"""performance.rpc_hold_timeout reaches the catalog endpoints of a server agent."""

from __future__ import annotations

from twisted.internet.task import Clock

from wanfedtx.agent.catalog_services import catalog_agent_from_config
from wanfedtx.config import LoadOptions, load


def test_configured_hold_timeout_reaches_the_endpoints() -> None:
    flags = {"node_name": "n1", "ports": {"http": 0}}
    rt = load(LoadOptions(dev=True, flags=flags,
                          hcl=['performance { rpc_hold_timeout = "3s" }'])).runtime
    assert rt.rpc_hold_timeout == 3.0
    assert catalog_agent_from_config(rt, Clock()).endpoints.hold_timeout == 3.0
    default = load(LoadOptions(dev=True, flags=flags)).runtime
    assert catalog_agent_from_config(default, Clock()).endpoints.hold_timeout == 7.0
