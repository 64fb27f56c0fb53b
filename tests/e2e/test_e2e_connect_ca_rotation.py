"""Root rotation across two federated datacenters (the demo's processes on loopback: two TLS
server agents with WAN federation through two mesh gateways).

A new root is given to the primary with ``wanfed connect ca set-config -config-file``; then:
both DCs list the new root as active and keep the old one (inactive); the secondary's new
intermediate is signed by the new root (``openssl verify``) within the replication interval
(the roots watch is a blocking query, so seconds); a leaf issued before the rotation still
verifies against the retained old root (with its old intermediate); a leaf issued after it
verifies against the new root, and, through the cross-signed root, against the old one too.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from wanfedtx.cli.demo import Federation, _get, _tails, poll_until
from wanfedtx.connect import ca

pytestmark = pytest.mark.integration

P = "http://127.0.1.1:8500"
S = "http://127.0.2.1:8500"
#: The secondary replicates roots with a blocking query (it follows in about a second); the
#: deadline leaves room for a loaded machine.
REPLICATION_INTERVAL = 60.0


def _roots(http: str) -> dict[str, Any]:
    code, roots = _get(f"{http}/v1/connect/ca/roots")
    return roots if code == 200 and isinstance(roots, dict) else {}


def _read_roots(http: str) -> dict[str, Any]:
    """The roots, asked again until an answer comes (a loaded machine may time a read out)."""
    got: dict[str, Any] = {}

    def answered() -> bool:
        got.update(_roots(http))
        return bool(got.get("Roots"))

    assert poll_until(answered, 30), f"no roots from {http}"
    return got


def _leaf(http: str, service: str = "web") -> dict[str, Any]:
    got: dict[str, Any] = {}

    def answered() -> bool:
        code, body = _get(f"{http}/v1/agent/connect/ca/leaf/{service}")
        if code == 200 and isinstance(body, dict):
            got.update(body)
        return bool(got)

    assert poll_until(answered, 30), f"no leaf from {http}"
    return got


def _active(roots: dict[str, Any]) -> dict[str, Any]:
    return next(r for r in roots.get("Roots") or [] if r.get("Active"))


def _first(chain: str) -> str:
    return chain.split("-----END CERTIFICATE-----")[0] + "-----END CERTIFICATE-----\n"


def _verify(tmp: Path, cas: list[str], cert: str, untrusted: list[str] | None = None) -> str:
    (tmp / "ca.pem").write_text("".join(c if c.endswith("\n") else c + "\n" for c in cas))
    (tmp / "cert.pem").write_text(cert)
    cmd = ["openssl", "verify", "-CAfile", str(tmp / "ca.pem")]
    if untrusted:
        (tmp / "inter.pem").write_text(
            "".join(c if c.endswith("\n") else c + "\n" for c in untrusted))
        cmd += ["-untrusted", str(tmp / "inter.pem")]
    out = subprocess.run([*cmd, str(tmp / "cert.pem")], capture_output=True, text=True,
                         check=False)
    return out.stdout + out.stderr


def _ok(out: str) -> bool:
    return out.strip().endswith(": OK")


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")
def test_root_rotation_reaches_the_secondary(tmp_path: Path) -> None:
    fed = Federation(tmp_path / "fed", {"primary": "127.0.1.1", "secondary": "127.0.2.1"})
    try:
        fed.start(lambda _: None)

        def logs() -> str:
            return f"logs in {tmp_path}\n" + _tails(fed, {"primary", "secondary"}, 30)

        assert fed.wait(120), "checks failed; " + logs()
        def replicated() -> bool:
            roots = _roots(S)
            return any(r.get("Active") and r.get("IntermediateCerts")
                       for r in roots.get("Roots") or [])

        assert poll_until(replicated, 60), logs()
        before_p, before_s = _read_roots(P), _read_roots(S)
        old_root = _active(before_p)["RootCert"]
        (old_inter,) = _active(before_s)["IntermediateCerts"]
        old_leaf = _leaf(S)
        assert _ok(_verify(tmp_path, [old_root], _first(old_leaf["CertPEM"]), [old_inter]))

        cluster_id = before_p["TrustDomain"].removesuffix(".consul")
        key, new_root = ca.generate_root(
            cluster_id, 4242, ca.datetime.datetime.now(ca.datetime.UTC))
        cfg = tmp_path / "ca.json"
        cfg.write_text(json.dumps({"Provider": "consul", "Config": {
            "PrivateKey": key, "RootCert": new_root, "LeafCertTTL": "72h"}}))
        cli = subprocess.run(
            [sys.executable, "-m", "wanfedtx.cli.main", "connect", "ca", "set-config",
             "-config-file", str(cfg), "-http-addr", P.removeprefix("http://")],
            capture_output=True, text=True, check=False, timeout=60)
        assert (cli.returncode, cli.stdout) == (0, "Configuration updated!\n"), (
            cli.stderr + logs())

        new_id = ca.fingerprint(ca.load_cert(new_root))
        assert poll_until(lambda: _roots(P).get("ActiveRootID") == new_id, 30), logs()
        after_p = _read_roots(P)

        def followed() -> bool:
            s = _roots(S)
            if s.get("ActiveRootID") != new_id:
                return False
            inters = _active(s).get("IntermediateCerts") or []
            return len(inters) == 2 and inters[-1] != old_inter

        assert poll_until(followed, REPLICATION_INTERVAL), (
            json.dumps(_roots(S))[:2000] + logs())
        after_s = _read_roots(S)
        assert after_s["TrustDomain"] == before_s["TrustDomain"]
        assert {r["ID"]: r["Active"] for r in after_s["Roots"]} == {
            before_p["ActiveRootID"]: False, new_id: True}
        cross, new_inter = _active(after_s)["IntermediateCerts"]
        assert cross == _active(after_p)["IntermediateCerts"][0]

        # the secondary's new intermediate chains to the new root
        out = _verify(tmp_path, [new_root], new_inter)
        assert _ok(out), out
        assert not _ok(_verify(tmp_path, [old_root], new_inter))
        # the old leaf still verifies: the old root is still listed (trust bundle = every
        # listed root), its chain carries the old intermediate
        bundle = [r["RootCert"] for r in after_s["Roots"]]
        out = _verify(tmp_path, bundle, _first(old_leaf["CertPEM"]), [old_inter])
        assert _ok(out), out
        # the cross-signed root: peers that only trust the old root accept new leaves
        new_leaf = _leaf(S)
        assert new_leaf["CertPEM"] != old_leaf["CertPEM"]
        out = _verify(tmp_path, [new_root], _first(new_leaf["CertPEM"]), [new_inter])
        assert _ok(out), out
        out = _verify(tmp_path, [old_root], _first(new_leaf["CertPEM"]), [new_inter, cross])
        assert _ok(out), out
        # and the gateways keep their cluster names (the trust domain did not change)
        checks = fed.checks()
        assert poll_until(lambda: all(check() for _, check in checks.all()), 60), logs()
    finally:
        fed.stop()
