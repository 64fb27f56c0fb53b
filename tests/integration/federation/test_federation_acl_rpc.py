"""ACLs between two datacenters over the real RPC layer (TLS, ALPN/SNI through an SNI-routing
gateway on 127.0.0.1, msgpack codec): the secondary replicates the primary's policies and
global tokens with the replication token, a token created in the primary works in the
secondary, federation-state anti-entropy and replication still run with default deny, and the
reference's federation-state matrix holds when the secondary serves the request."""

from __future__ import annotations

import random
from typing import Any

import pytest
import pytest_twisted
from twisted.internet.task import deferLater
from two_dc_support import ServerDC, start_gateway, start_server_dc

from wanfedtx.acl.model import PermissionDeniedError
from wanfedtx.aclserver.server import ACLServer
from wanfedtx.federation.server import FederationServer
from wanfedtx.testing.pki import PKI

pytestmark = pytest.mark.integration

MASTER = "6a1253d2-1785-24fd-91c2-f8e78c745511"


async def start_dc(
    reactor: Any, ca: PKI, dc: str, node: str, other: tuple[str, str], gw: str
) -> tuple[ServerDC, FederationServer, ACLServer]:
    server = await start_server_dc(reactor, ca, dc, node, other, gw)
    fed = FederationServer(
        server.agent,
        "primary",
        leader_routines=True,
        rng=random.Random(5),
        replication_token=MASTER,
    )
    fed.register_into(server.table)
    acl = ACLServer(
        server.agent,
        "primary",
        enabled=True,
        default_policy="deny",
        initial_management=MASTER if dc == "primary" else "",
        replication_token=MASTER,
        replication_interval=0.1,
    )
    acl.register_into(server.table)
    acl.guard(server.table)
    acl.startService()
    fed.startService()
    return server, fed, acl


async def until(reactor: Any, check: Any) -> bool:
    for _ in range(200):
        if check():
            return True
        await deferLater(reactor, 0.05, lambda: None)
    return False


@pytest_twisted.ensureDeferred
async def test_acls_across_two_datacenters(reactor: Any) -> None:
    ca = PKI()
    gateway = start_gateway(reactor)
    pri, pri_fed, pri_acl = await start_dc(
        reactor, ca, "primary", "pri", ("secondary", "sec"), gateway.address
    )
    sec, sec_fed, sec_acl = await start_dc(
        reactor, ca, "secondary", "sec", ("primary", "pri"), gateway.address
    )
    gateway.route(pri)
    gateway.route(sec)
    try:
        await until(reactor, lambda: pri.agent.fsm.state.acl_token_get_by_secret(None, MASTER)[1])
        await pri.agent.rpc(
            "ACL.PolicySet",
            {"Token": MASTER, "Policy": {"Name": "op-read", "Rules": 'operator = "read"'}},
        )
        tok = await pri.agent.rpc(
            "ACL.TokenSet", {"Token": MASTER, "ACLToken": {"Policies": [{"Name": "op-read"}]}}
        )
        state = sec.agent.fsm.state
        assert await until(reactor, lambda: state.acl_token_get_by_secret(None, tok["SecretID"])[1])
        status = await sec.agent.rpc("ACL.ReplicationStatus", {})
        assert status["Running"] and status["ReplicatedTokenIndex"] > 0
        # anti-entropy (secondary -> primary) and replication (primary -> secondary) with the
        # replication token, default deny
        assert await until(
            reactor,
            lambda: (
                [r.to_wire()["Datacenter"] for r in state.federation_state_list(None)[1]]
                == ["primary", "secondary"]
            ),
        )
        # the matrix, served by the secondary from its replicated states
        local = {"Datacenter": "secondary"}
        with pytest.raises(PermissionDeniedError):
            await sec.agent.rpc("FederationState.List", {**local, "Token": ""})
        listed = await sec.agent.rpc("FederationState.List", {**local, "Token": tok["SecretID"]})
        assert len(listed["States"]) == 2
        with pytest.raises(PermissionDeniedError):
            await sec.agent.rpc(
                "FederationState.Apply",
                {
                    **local,
                    "Token": tok["SecretID"],
                    "Op": "upsert",
                    "State": {"Datacenter": "secondary"},
                },
            )
        # and asked of the primary from the secondary (?dc=primary): authorized there
        remote = await sec.agent.rpc(
            "FederationState.List", {"Datacenter": "primary", "Token": tok["SecretID"]}
        )
        assert len(remote["States"]) == 2
    finally:
        for service in (sec_fed, sec_acl, pri_fed, pri_acl):
            await service.stopService()
        await sec.stop()
        await pri.stop()
        await gateway.port.stopListening()
