"""Root rotation (``ConnectCA.ConfigurationSet``) on in-process primary and secondary servers
(one ``task.Clock``, a forwarder that msgpack-encodes as the RPC layer does): the new root is
cross-signed by the old, the old stays listed inactive until pruned, the secondary gets a new
intermediate from the new root, old leaves still chain to the old root; config validation;
intermediate renewal at half its lifetime."""

from __future__ import annotations

import datetime
from typing import Any

import pytest
from cryptography import x509
from hypothesis import given, settings
from hypothesis import strategies as st
from test_connect_ca_secondary import CID, result, two_dcs
from twisted.internet import task

from wanfedtx.catalog.errors import BadRequestError
from wanfedtx.connect import ca, rotation
from wanfedtx.connect.errors import CAError, CSRError
from wanfedtx.connect.routines import IntermediateRenewal, RootPruning
from wanfedtx.connect.secondary import SecondaryCARootWatch
from wanfedtx.state.connect_ca import CA_BUILTIN

NOW = datetime.datetime(2026, 1, 2, tzinfo=datetime.UTC)


def first_pem(chain: str) -> str:
    return chain.split("-----END CERTIFICATE-----")[0] + "-----END CERTIFICATE-----\n"


def put(server: Any, config: dict[str, Any], **extra: Any) -> Any:
    return result(server.rpc("ConnectCA.ConfigurationSet", {
        "Config": {"Provider": "consul", "Config": config, **extra}}))


def leaf(server: Any, dc: str, service: str = "web") -> dict[str, Any]:
    roots = result(server.rpc("ConnectCA.Roots", {}))
    key, csr = ca.make_leaf_csr(roots["TrustDomain"], dc, service)
    server.reactor.advance(1)  # a fresh CSRMaxPerSecond slot
    return dict(result(server.rpc("ConnectCA.Sign", {"CSR": csr})), PrivateKeyPEM=key)


def operator_root() -> tuple[str, str]:
    return ca.generate_root(CID, 77, NOW)


def test_rotation_cross_signs_and_the_secondary_follows() -> None:
    servers, cas, clock = two_dcs()
    p, s = servers["dc1"], servers["dc2"]
    before_p = result(p.rpc("ConnectCA.Roots", {}))
    before_s = result(s.rpc("ConnectCA.Roots", {}))
    old_root = before_p["Roots"][0]["RootCert"]
    (old_inter,) = before_s["Roots"][0]["IntermediateCerts"]
    old_leaf_s = leaf(s, "dc2")
    old_leaf_p = leaf(p, "dc1")
    key, root = operator_root()
    assert put(p, {"PrivateKey": key, "RootCert": root, "LeafCertTTL": "72h"}) is True

    after_p = result(p.rpc("ConnectCA.Roots", {}))
    assert after_p["TrustDomain"] == before_p["TrustDomain"]  # the cluster ID stays
    by_id = {r["ID"]: r for r in after_p["Roots"]}
    assert len(by_id) == 2
    new = by_id[after_p["ActiveRootID"]]
    old = by_id[before_p["ActiveRootID"]]
    assert new["RootCert"] == root and new["Active"] is True and old["Active"] is False
    assert "RotatedOutAt" not in old  # raft only
    (cross,) = new["IntermediateCerts"]
    xc = ca.load_cert(cross)
    assert ca.verify_signed_by(cross, old_root)
    assert xc.subject == ca.load_cert(root).subject
    assert xc.not_valid_after_utc - xc.not_valid_before_utc == datetime.timedelta(days=7)
    # the old key is gone with its provider state; the new one signs
    (row,) = [r for r in p.fsm.state.tables[CA_BUILTIN].all()]
    assert row["RootCert"] == root
    new_leaf_p = leaf(p, "dc1")
    assert ca.verify_signed_by(first_pem(new_leaf_p["CertPEM"]), root)
    assert cross.strip() in new_leaf_p["CertPEM"]  # leaf + cross-signed root
    # the secondary saw the new active root (blocking query) and got a new intermediate
    after_s = result(s.rpc("ConnectCA.Roots", {}))
    assert after_s["ActiveRootID"] == after_p["ActiveRootID"]
    sactive = next(r for r in after_s["Roots"] if r["Active"])
    xc_again, new_inter = sactive["IntermediateCerts"]
    assert xc_again == cross and new_inter != old_inter
    assert ca.verify_signed_by(new_inter, root)
    assert {r["ID"] for r in after_s["Roots"]} == set(by_id)
    new_leaf_s = leaf(s, "dc2")
    assert ca.verify_signed_by(first_pem(new_leaf_s["CertPEM"]), new_inter)
    # old leaves still chain to the retained old root
    assert ca.verify_signed_by(first_pem(old_leaf_s["CertPEM"]), old_inter)
    assert ca.verify_signed_by(old_inter, old["RootCert"])
    assert ca.verify_signed_by(first_pem(old_leaf_p["CertPEM"]), old["RootCert"])

    # the same PUT again: nothing changes
    before = p.fsm.last_applied
    assert put(p, {"PrivateKey": key, "RootCert": root, "LeafCertTTL": "72h"}) is True
    assert p.fsm.last_applied == before

    # pruning: kept until 2 x LeafCertTTL after the rotation, then dropped in both DCs
    pruning = next(r for r in cas["dc1"].leader.routines if isinstance(r, RootPruning))
    clock.advance(3600 * 24)
    assert pruning.runs >= 1 and len(result(p.rpc("ConnectCA.Roots", {}))["Roots"]) == 2
    clock.advance(3600 * 24 * 5)
    assert [r["ID"] for r in result(p.rpc("ConnectCA.Roots", {}))["Roots"]] == [new["ID"]]
    assert [r["ID"] for r in result(s.rpc("ConnectCA.Roots", {}))["Roots"]] == [new["ID"]]


def test_private_key_only_makes_a_root_and_a_ttl_change_keeps_it() -> None:
    servers, _, _ = two_dcs()
    p = servers["dc1"]
    first = result(p.rpc("ConnectCA.Roots", {}))["ActiveRootID"]
    # a TTL change with the same (generated) key: config only
    assert put(p, {"LeafCertTTL": "24h", "IntermediateCertTTL": "8760h"}) is True
    assert result(p.rpc("ConnectCA.Roots", {}))["ActiveRootID"] == first
    conf = result(p.rpc("ConnectCA.ConfigurationGet", {}))["Config"]
    assert conf["Config"]["LeafCertTTL"] == "24h"
    issued = leaf(p, "dc1")
    cert = ca.load_cert(first_pem(issued["CertPEM"]))
    assert cert.not_valid_after_utc - cert.not_valid_before_utc == datetime.timedelta(hours=24)
    # an operator key without a root: a root is made for that key
    key = ca.key_pem(ca.generate_key())
    put(p, {"privatekey": key})  # keys match case-insensitively
    roots = result(p.rpc("ConnectCA.Roots", {}))
    active = next(r for r in roots["Roots"] if r["Active"])
    assert active["ID"] != first
    pub = ca.load_key(key).public_key()
    assert active["SigningKeyID"] == ca.hex_string(ca.key_id(pub))
    uris = ca.load_cert(active["RootCert"]).extensions.get_extension_for_class(
        x509.SubjectAlternativeName).value.get_values_for_type(x509.UniformResourceIdentifier)
    assert uris == [f"spiffe://{CID}.consul"]


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"LeafCertTTL": "30m"}, "leaf cert TTL must be greater or equal than 1h0m0s"),
        ({"LeafCertTTL": "9000h"}, "leaf cert TTL must be less than 8760h0m0s"),
        ({"IntermediateCertTTL": "2h", "LeafCertTTL": "1h"},
         "Intermediate Cert TTL must be greater or equal than 3h"),
        ({"IntermediateCertTTL": "100h"},
         r"Intermediate Cert TTL must be greater or equal than 3 \* LeafCertTTL "
         r"\(>=216h0m0s\)\."),
        ({"PrivateKeyType": "ec", "PrivateKeyBits": 2048},
         r"EC key length must be one of \(224, 256, 384, 521\) bits"),
        ({"PrivateKeyType": "dsa"}, "private key type must be either 'ec' or 'rsa'"),
        ({"RootCert": "x"}, "must provide a private key when providing a root cert"),
        ({"PrivateKey": "junk"}, "error parsing private key"),
        ({"LeafCertTTL": "soon"}, "error decoding LeafCertTTL"),
        ({"PrivateKey": ca.key_pem(ca.generate_key()), "RootCert": operator_root()[1]},
         "does not match"),
    ],
)
def test_bad_configs_refused_and_nothing_changes(config: dict[str, Any], message: str) -> None:
    servers, _, _ = two_dcs()
    p = servers["dc1"]
    before = p.fsm.last_applied
    with pytest.raises(CSRError, match=message):
        put(p, config)
    assert p.fsm.last_applied == before


def test_refusals_of_provider_state_and_secondary() -> None:
    servers, _, _ = two_dcs()
    p, s = servers["dc1"], servers["dc2"]
    before = p.fsm.last_applied
    with pytest.raises(BadRequestError, match="Provider State is read-only"):
        put(p, {"LeafCertTTL": "24h"}, State={"x": "y"})
    with pytest.raises(CSRError, match='unknown CA provider "other"'):
        result(p.rpc("ConnectCA.ConfigurationSet", {"Config": {"Provider": "other"}}))
    with pytest.raises(CSRError, match="not supported by wanfedtx"):
        result(p.rpc("ConnectCA.ConfigurationSet", {"Config": {"Provider": "vault"}}))
    with pytest.raises(BadRequestError, match="Config must be an object"):
        result(p.rpc("ConnectCA.ConfigurationSet", {"Config": "x"}))
    assert p.fsm.last_applied == before
    with pytest.raises(CAError, match=rotation.NOT_ROOT_CA):
        put(s, {"LeafCertTTL": "24h"})
    # forwarded to the primary with ?dc
    assert result(s.rpc("ConnectCA.ConfigurationSet", {
        "Datacenter": "dc1",
        "Config": {"Provider": "consul", "Config": {"LeafCertTTL": "24h"}}})) is True


def test_intermediate_renewed_at_half_its_lifetime() -> None:
    servers, cas, clock = two_dcs()
    p, s = servers["dc1"], servers["dc2"]
    # an intermediate lifetime of 216h (3 x 72h): renewal once 108h have passed
    put(p, {"IntermediateCertTTL": "216h"})
    leader = cas["dc2"].leader
    assert leader is not None
    watch = next(r for r in leader.routines if isinstance(r, SecondaryCARootWatch))
    renewal = next(r for r in leader.routines if isinstance(r, IntermediateRenewal))
    first = watch.current_intermediate()
    # the first intermediate was signed before the TTL change: 8760h; replace it
    clock.advance(3600 * 24 * 183 + 3600)
    second = watch.current_intermediate()
    assert second != first
    cert = ca.load_cert(second)
    assert cert.not_valid_after_utc - cert.not_valid_before_utc == datetime.timedelta(hours=216)
    clock.advance(3600 * 100)  # under half of 216h: kept
    assert watch.current_intermediate() == second
    clock.advance(3600 * 10)  # past 108h: renewed within the hour
    third = watch.current_intermediate()
    assert third != second and renewal.runs > 0
    roots = result(s.rpc("ConnectCA.Roots", {}))
    active = next(r for r in roots["Roots"] if r["Active"])
    assert active["IntermediateCerts"][-1] == third
    assert active["SigningKeyID"] == ca.hex_string(ca.key_id(ca.load_cert(third).public_key()))  # type: ignore[arg-type]


def test_renewal_failure_is_logged_and_retried() -> None:
    servers, cas, clock = two_dcs()
    put(servers["dc1"], {"IntermediateCertTTL": "216h"})
    leader = cas["dc2"].leader
    assert leader is not None
    watch = next(r for r in leader.routines if isinstance(r, SecondaryCARootWatch))
    clock.advance(3600 * 24 * 183 + 3600)
    good = watch.current_intermediate()
    forwarder = servers["dc2"].endpoints.forwarder
    assert forwarder is not None
    down: set[str] = getattr(forwarder, "down")  # noqa: B009
    down.add("dc1")
    clock.advance(3600 * 120)
    assert watch.current_intermediate() == good  # kept while the primary is away
    down.discard("dc1")
    clock.advance(3600 * 2)
    assert watch.current_intermediate() != good


def test_prunable_ignores_active_and_unknown() -> None:
    ttl = datetime.timedelta(hours=72)
    roots = [
        {"ID": "a", "Active": True, "RotatedOutAt": "2020-01-01T00:00:00Z"},
        {"ID": "b", "Active": False, "RotatedOutAt": "2025-12-01T00:00:00Z"},
        {"ID": "c", "Active": False, "RotatedOutAt": "2026-01-01T00:00:00Z"},
        {"ID": "d", "Active": False},
        {"ID": "e", "Active": False, "RotatedOutAt": "garbage"},
    ]
    assert rotation.prunable(roots, NOW, ttl) == ["b"]
    _ = task


_VALUES = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.text(max_size=20), st.sampled_from(["1h", "72h", "216h", "8760h", "ec", "rsa", "-5s"]),
    st.lists(st.integers(min_value=0, max_value=9), max_size=2),
    st.dictionaries(st.text(max_size=3), st.integers(min_value=0, max_value=9), max_size=2),
)
_KEYS = st.sampled_from([*rotation.KNOWN_KEYS, "leaf_cert_ttl", "Other", "privatekey"])


@settings(max_examples=60, deadline=None)
@given(provider=st.one_of(st.just("consul"), _VALUES),
       config=st.dictionaries(_KEYS, _VALUES, max_size=4),
       state=st.one_of(st.none(), _VALUES))
def test_any_configuration_body_is_applied_or_refused_clearly(
    provider: Any, config: dict[str, Any], state: Any
) -> None:
    servers, _, _ = two_dcs()
    p = servers["dc1"]
    before = result(p.rpc("ConnectCA.Roots", {}))
    last = p.fsm.last_applied
    try:
        ok = result(p.rpc("ConnectCA.ConfigurationSet", {"Config": {
            "Provider": provider, "Config": config, "State": state}}))
    except (BadRequestError, CAError) as exc:
        assert str(exc) and "\n" not in str(exc)
        assert p.fsm.last_applied == last
        assert result(p.rpc("ConnectCA.Roots", {}))["Roots"] == before["Roots"]
    else:
        assert ok is True
        after = result(p.rpc("ConnectCA.Roots", {}))
        assert after["TrustDomain"] == before["TrustDomain"]
        assert sum(1 for r in after["Roots"] if r["Active"]) == 1
