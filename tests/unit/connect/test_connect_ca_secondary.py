"""A secondary datacenter's CA (in-process primary and secondary ``CatalogAgent``s joined by a
forwarder that msgpack-encodes requests and replies, one ``task.Clock``): roots replicated
with the primary's trust domain, an intermediate signed by the primary's root, leaves in the
secondary chaining to that root; ``SignIntermediate`` refusals; the sans-IO intermediate
checks."""

from __future__ import annotations

import datetime
import random
from typing import Any

import msgpack
import pytest
from twisted.internet import task
from twisted.internet.defer import Deferred
from twisted.python.failure import Failure

from wanfedtx.agent.catalog_services import CatalogAgent
from wanfedtx.connect import ca, intermediate
from wanfedtx.connect.errors import CAError, CSRError
from wanfedtx.connect.secondary import SecondaryCARootWatch
from wanfedtx.connect.server import ConnectCAServer
from wanfedtx.testing import FakeForwarder

CID = "11111111-2222-3333-4444-555555555555"
NOW = datetime.datetime(2026, 1, 2, tzinfo=datetime.UTC)


def _wire(value: Any) -> Any:
    return msgpack.unpackb(msgpack.packb(value, use_bin_type=True), raw=False)


def result(d: Deferred[Any]) -> Any:
    out: list[Any] = []
    d.addBoth(out.append)
    assert out, "the Deferred has not fired"
    if isinstance(out[0], Failure):
        out[0].raiseException()
    return out[0]


def two_dcs() -> tuple[dict[str, CatalogAgent], dict[str, ConnectCAServer], task.Clock]:
    clock = task.Clock()
    clock.advance(1_700_000_000)
    servers: dict[str, CatalogAgent] = {}
    cas: dict[str, ConnectCAServer] = {}
    for dc in ("dc1", "dc2"):
        cat = CatalogAgent(node_name=f"s-{dc}", datacenter=dc, advertise_addr="127.0.0.1",
                           server_port=8300, reactor=clock, rng=random.Random(3),
                           forwarder=FakeForwarder(servers, wire=_wire))
        cas[dc] = ConnectCAServer(cat, "dc1", {"ClusterID": CID} if dc == "dc1" else {}, clock)
        cas[dc].setServiceParent(cat)
        servers[dc] = cat
    for dc in ("dc1", "dc2"):
        servers[dc].startService()
    return servers, cas, clock


def test_secondary_adopts_trust_domain_and_signs_with_intermediate() -> None:
    servers, cas, _ = two_dcs()
    leader = cas["dc2"].leader
    assert leader is not None
    watch, _renewal = leader.routines
    assert isinstance(watch, SecondaryCARootWatch) and watch.synced == 1
    primary = result(servers["dc1"].rpc("ConnectCA.Roots", {}))
    secondary = result(servers["dc2"].rpc("ConnectCA.Roots", {}))
    assert secondary["TrustDomain"] == primary["TrustDomain"] == f"{CID}.consul"
    assert secondary["ActiveRootID"] == primary["ActiveRootID"]
    (proot,), (sroot,) = primary["Roots"], secondary["Roots"]
    assert sroot["RootCert"] == proot["RootCert"]
    (inter,) = sroot["IntermediateCerts"]
    assert ca.verify_signed_by(inter, proot["RootCert"])
    assert sroot["SigningKeyID"] == intermediate.intermediate_key_id(inter)
    assert sroot["SigningKeyID"] != proot["SigningKeyID"]
    # a leaf of the secondary: leaf -> intermediate -> primary root
    _, csr = ca.make_leaf_csr(secondary["TrustDomain"], "dc2", "web")
    issued = result(servers["dc2"].rpc("ConnectCA.Sign", {"CSR": csr}))
    leaf_pem = issued["CertPEM"].split("-----END CERTIFICATE-----")[0] + (
        "-----END CERTIFICATE-----\n")
    assert ca.verify_signed_by(leaf_pem, inter)
    assert not ca.verify_signed_by(leaf_pem, proot["RootCert"])
    assert inter.strip() in issued["CertPEM"]
    # the same answer again changes nothing (no new intermediate)
    before = servers["dc2"].fsm.last_applied
    result(Deferred.fromCoroutine(watch.sync(primary)))
    assert servers["dc2"].fsm.last_applied == before


def test_sign_intermediate_refusals_change_nothing() -> None:
    servers, _, _ = two_dcs()
    primary = servers["dc1"]
    before = primary.fsm.last_applied
    with pytest.raises(CSRError, match="error parsing CSR"):
        result(primary.rpc("ConnectCA.SignIntermediate", {"CSR": "junk"}))
    _, other = intermediate.make_intermediate_csr("99999999-2222-3333-4444-555555555555")
    with pytest.raises(CSRError, match="is not valid for our domain"):
        result(primary.rpc("ConnectCA.SignIntermediate", {"CSR": other}))
    assert primary.fsm.last_applied == before
    _, ours = intermediate.make_intermediate_csr(CID)
    with pytest.raises(CAError, match=r"^not the primary datacenter$"):
        result(servers["dc2"].rpc("ConnectCA.SignIntermediate", {"CSR": ours}))


def test_check_intermediate_in_the_reference_order() -> None:
    root_key, root_pem = ca.generate_root(CID, 1, NOW)
    key, csr = intermediate.make_intermediate_csr(CID)
    inter = intermediate.sign_intermediate(csr, root_key, root_pem, CID, 2, NOW,
                                           datetime.timedelta(hours=8760))
    intermediate.check_intermediate(inter, key, root_pem, CID)
    other_key, _ = intermediate.make_intermediate_csr(CID)
    with pytest.raises(CAError, match="intermediate cert is for a different private key"):
        intermediate.check_intermediate(inter, other_key, root_pem, CID)
    with pytest.raises(CAError, match="does not match current URI"):
        intermediate.check_intermediate(inter, key, root_pem, "22222222-2222-3333-4444-5")
    _, root2 = ca.generate_root(CID, 3, NOW)
    with pytest.raises(CAError, match="could not verify intermediate cert against root"):
        intermediate.check_intermediate(inter, key, root2, CID)


def test_primary_unreachable_retries_with_backoff() -> None:
    clock = task.Clock()
    servers: dict[str, CatalogAgent] = {}
    cat = CatalogAgent(node_name="s-dc2", datacenter="dc2", advertise_addr="127.0.0.1",
                       server_port=8300, reactor=clock, rng=random.Random(3),
                       forwarder=FakeForwarder(servers, wire=_wire))
    srv = ConnectCAServer(cat, "dc1", {}, clock)
    srv.setServiceParent(cat)
    servers["dc2"] = cat
    cat.startService()
    assert srv.leader is not None
    watch, _renewal = srv.leader.routines
    assert isinstance(watch, SecondaryCARootWatch) and watch.synced == 0
    assert clock.getDelayedCalls()
    result(cat.stopService())


def test_wake_retries_before_the_backoff_ends() -> None:
    clock = task.Clock()
    servers: dict[str, CatalogAgent] = {}
    forwarder = FakeForwarder(servers, wire=_wire)
    cats: dict[str, CatalogAgent] = {}
    cas: dict[str, ConnectCAServer] = {}
    for dc in ("dc1", "dc2"):
        cats[dc] = CatalogAgent(node_name=f"s-{dc}", datacenter=dc, advertise_addr="127.0.0.1",
                                server_port=8300, reactor=clock, rng=random.Random(3),
                                forwarder=forwarder)
        cas[dc] = ConnectCAServer(cats[dc], "dc1", {}, clock)
        cas[dc].setServiceParent(cats[dc])
    servers["dc2"] = cats["dc2"]  # the primary is not reachable yet
    cats["dc2"].startService()
    assert cas["dc2"].leader is not None
    watch, _renewal = cas["dc2"].leader.routines
    assert isinstance(watch, SecondaryCARootWatch) and watch.synced == 0
    servers["dc1"] = cats["dc1"]
    cats["dc1"].startService()
    cas["dc2"].wake_routines()  # no clock advance: the retry runs now
    assert watch.synced == 1
    roots = result(cats["dc2"].rpc("ConnectCA.Roots", {}))
    assert roots["Roots"] and roots["Roots"][0]["IntermediateCerts"]
