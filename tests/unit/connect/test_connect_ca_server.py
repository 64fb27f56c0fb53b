"""The Connect CA on an in-process server (``CatalogAgent`` with its local consensus,
``task.Clock``): the primary leader's bootstrap through raft type 13, the ``ConnectCA.*``
endpoints, the tables' snapshot/restore round trip, and refusals that change nothing."""

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
from wanfedtx.catalog.errors import BadRequestError
from wanfedtx.connect import ca
from wanfedtx.connect import fsm as ca_fsm
from wanfedtx.connect.endpoints import CSRRateLimitError
from wanfedtx.connect.errors import CAError, CSRError
from wanfedtx.connect.fsm import OP_SET_ROOTS, apply_ca_request
from wanfedtx.connect.routines import IntermediateRenewal
from wanfedtx.connect.secondary import SecondaryCARootWatch
from wanfedtx.connect.server import ConnectCAServer, PrimaryCAInitializer
from wanfedtx.fsm.commands import MessageType, encode
from wanfedtx.fsm.errors import FSMError
from wanfedtx.fsm.machine import FSM
from wanfedtx.state import StateStore
from wanfedtx.state.connect_ca import CA_BUILTIN, CA_CONFIG, CA_ROOTS, CARootsError

CID = "11111111-2222-3333-4444-555555555555"


def result(d: Deferred[Any]) -> Any:
    out: list[Any] = []
    d.addBoth(out.append)
    assert out, "the Deferred has not fired"
    if isinstance(out[0], Failure):
        out[0].raiseException()
    return out[0]


def server(
    dc: str = "dc1", primary: str = "dc1", user: dict[str, Any] | None = None,
    enabled: bool = True,
) -> tuple[CatalogAgent, ConnectCAServer]:
    clock = task.Clock()
    clock.advance(1_700_000_000)
    cat = CatalogAgent(node_name=f"s-{dc}", datacenter=dc, advertise_addr="127.0.0.1",
                       server_port=8300, reactor=clock, rng=random.Random(3))
    srv = ConnectCAServer(cat, primary, user if user is not None else {"ClusterID": CID},
                          clock, enabled=enabled)
    srv.setServiceParent(cat)
    cat.startService()
    return cat, srv


def test_primary_bootstraps_once_and_serves_roots() -> None:
    cat, srv = server()
    routine, _pruning = srv.leader.routines if srv.leader is not None else []
    assert isinstance(routine, PrimaryCAInitializer) and routine.initialized
    reply = result(cat.rpc("ConnectCA.Roots", {}))
    assert reply["TrustDomain"] == f"{CID}.consul"
    (root,) = reply["Roots"]
    assert root["ID"] == reply["ActiveRootID"] and root["Active"] is True
    assert root["CreateIndex"] == root["ModifyIndex"] > 0
    assert reply["Index"] >= root["ModifyIndex"]
    key_rows = cat.fsm.state.tables[CA_BUILTIN].all()
    assert len(key_rows) == 1 and "EC PRIVATE KEY" in key_rows[0]["PrivateKey"]
    # a new term does not make a new root
    before = cat.fsm.state.max_index(CA_ROOTS)
    result(Deferred.fromCoroutine(
        PrimaryCAInitializer(cat.endpoints, {}, task.Clock()).initialize()))
    assert cat.fsm.state.max_index(CA_ROOTS) == before
    conf = result(cat.rpc("ConnectCA.ConfigurationGet", {}))["Config"]
    assert conf["Provider"] == "consul" and conf["Config"]["LeafCertTTL"] == "72h"
    assert "ClusterID" not in conf


def test_sign_issues_leaf_with_serial_from_raft() -> None:
    cat, _ = server()
    roots = result(cat.rpc("ConnectCA.Roots", {}))
    _, csr = ca.make_leaf_csr(roots["TrustDomain"], "dc1", "web")
    first = result(cat.rpc("ConnectCA.Sign", {"CSR": csr}))
    pending = cat.rpc("ConnectCA.Sign", {"CSR": csr})
    assert isinstance(cat.reactor, task.Clock)
    cat.reactor.advance(0.02)  # CSRMaxPerSecond 50: the next slot
    second = result(pending)
    assert first["Service"] == "web"
    assert first["ServiceURI"] == f"spiffe://{CID}.consul/ns/default/dc/dc1/svc/web"
    assert ca.verify_signed_by(first["CertPEM"], roots["Roots"][0]["RootCert"])
    assert first["SerialNumber"] != second["SerialNumber"]
    assert ca.serial_hex(first["CreateIndex"]) == first["SerialNumber"]


@pytest.mark.parametrize(
    ("args", "error", "message"),
    [
        ({"CSR": 5}, BadRequestError, "CSR must be a PEM string"),
        ({"CSR": "garbage"}, CSRError, "error parsing CSR"),
    ],
)
def test_bad_sign_requests_change_nothing(
    args: dict[str, Any], error: type[Exception], message: str
) -> None:
    cat, _ = server()
    before = cat.fsm.last_applied
    with pytest.raises(error, match=message):
        result(cat.rpc("ConnectCA.Sign", args))
    assert cat.fsm.last_applied == before


def test_foreign_trust_domain_refused_before_serial() -> None:
    cat, _ = server()
    _, csr = ca.make_leaf_csr("other.consul", "dc1", "web")
    before = cat.fsm.last_applied
    with pytest.raises(CSRError, match="different trust domain"):
        result(cat.rpc("ConnectCA.Sign", {"CSR": csr}))
    assert cat.fsm.last_applied == before


def test_secondary_before_replication_has_no_roots() -> None:
    cat, srv = server(dc="dc2", primary="dc1")  # no forwarder: the primary is unreachable
    assert srv.leader is not None
    assert [type(r) for r in srv.leader.routines] == [SecondaryCARootWatch, IntermediateRenewal]
    reply = result(cat.rpc("ConnectCA.Roots", {}))
    # its own bootstrap trust domain until the primary answers, and no roots
    assert reply["TrustDomain"] == f"{CID}.consul"  # its own ca_config.cluster_id
    assert (reply["Roots"], reply["ActiveRootID"]) == ([], "")
    _, csr = ca.make_leaf_csr("x.consul", "dc2", "web")
    with pytest.raises(CAError, match="internal error: CA root is nil"):
        result(cat.rpc("ConnectCA.Sign", {"CSR": csr}))


def test_connect_disabled() -> None:
    cat, srv = server(enabled=False)
    assert srv.leader is not None and srv.leader.routines == []
    with pytest.raises(CAError, match=r"^Connect must be enabled in order to use this endpoint$"):
        result(cat.rpc("ConnectCA.Roots", {}))


def test_tables_snapshot_and_restore_round_trip() -> None:
    cat, _ = server()
    state = cat.fsm.state
    chunks = list(state.snapshot_chunks(chunk_size=256))
    fresh = FSM()
    fresh.restore(chunks, last_index=cat.fsm.last_applied)
    for table in (CA_ROOTS, CA_CONFIG, CA_BUILTIN):
        assert fresh.state.tables[table].all() == state.tables[table].all()
        assert fresh.state.max_index(table) == state.max_index(table)
    assert fresh.state.ca_active_root() == state.ca_active_root()


def test_fsm_type_13_ops_and_refusals() -> None:
    fsm = FSM()
    ca_fsm.install(fsm)
    _, root_pem = ca.generate_root(CID, 1, datetime.datetime.now(datetime.UTC))
    row = ca.root_row(root_pem, CID)
    assert fsm.apply(5, encode(MessageType.CONNECT_CA,
                               {"Op": OP_SET_ROOTS, "Index": 0, "Roots": [row]})) is True
    # a stale CAS index misses and changes nothing
    assert fsm.apply(6, encode(MessageType.CONNECT_CA,
                               {"Op": OP_SET_ROOTS, "Index": 0, "Roots": [row]})) is False
    two = [row, {**row, "ID": "other"}]
    refused = fsm.apply(7, encode(MessageType.CONNECT_CA,
                                  {"Op": OP_SET_ROOTS, "Index": 5, "Roots": two}))
    assert isinstance(refused, CARootsError)
    assert str(refused) == "there must be exactly one active CA"
    assert isinstance(apply_ca_request(StateStore(), 8, {"Op": "nope"}), FSMError)
    (stored,) = fsm.state.tables[CA_ROOTS].all()
    assert stored["CreateIndex"] == stored["ModifyIndex"] == 5
    # the record round-trips through msgpack as raft carries it
    assert msgpack.unpackb(msgpack.packb(stored), raw=False) == stored


def test_csr_max_per_second_waits_then_refuses() -> None:
    cat, _ = server(user={"ClusterID": CID, "CSRMaxPerSecond": 4})
    clock = cat.reactor
    assert isinstance(clock, task.Clock)
    _, csr = ca.make_leaf_csr(f"{CID}.consul", "dc1", "web")
    first = cat.rpc("ConnectCA.Sign", {"CSR": csr})
    assert first.called  # its slot is free
    second = cat.rpc("ConnectCA.Sign", {"CSR": csr})
    third = cat.rpc("ConnectCA.Sign", {"CSR": csr})
    assert not second.called and not third.called  # 0.25 s and 0.5 s away
    with pytest.raises(CSRRateLimitError, match=r"^Rate limit reached, try again later$"):
        result(cat.rpc("ConnectCA.Sign", {"CSR": csr}))  # 0.75 s away: refused
    clock.advance(0.5)
    serials = {result(d)["SerialNumber"] for d in (first, second, third)}
    assert len(serials) == 3
