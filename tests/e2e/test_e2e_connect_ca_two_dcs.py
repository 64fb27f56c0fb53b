"""The Connect CA across two federated datacenters (the demo's processes on loopback: two TLS
server agents with WAN federation through two mesh gateways): both DCs list the same root and
trust domain; the secondary's intermediate is signed by the primary's root (``openssl verify``);
a leaf issued in the secondary verifies against the primary's root through that intermediate;
the gateways' cluster names carry the cluster ID.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from wanfedtx.cli.demo import Federation, _get, poll_until

pytestmark = pytest.mark.integration

P = "http://127.0.1.1:8500"
S = "http://127.0.2.1:8500"


def _roots(http: str) -> dict[str, Any]:
    code, roots = _get(f"{http}/v1/connect/ca/roots")
    return roots if code == 200 and isinstance(roots, dict) else {}


def _verify(tmp: Path, ca: str, cert: str, untrusted: str | None = None) -> str:
    (tmp / "ca.pem").write_text(ca)
    (tmp / "cert.pem").write_text(cert)
    cmd = ["openssl", "verify", "-CAfile", str(tmp / "ca.pem")]
    if untrusted is not None:
        (tmp / "inter.pem").write_text(untrusted)
        cmd += ["-untrusted", str(tmp / "inter.pem")]
    out = subprocess.run([*cmd, str(tmp / "cert.pem")], capture_output=True, text=True,
                         check=False)
    return out.stdout + out.stderr


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")
def test_secondary_leaf_chains_to_the_primary_root(tmp_path: Path) -> None:
    fed = Federation(tmp_path / "fed", {"primary": "127.0.1.1", "secondary": "127.0.2.1"})
    try:
        fed.start(lambda _: None)
        assert fed.wait(120), "checks failed; logs in " + str(tmp_path)

        def replicated() -> bool:
            s = _roots(S)
            return bool(s.get("Roots")) and bool(s["Roots"][0].get("IntermediateCerts"))

        assert poll_until(replicated, 60)
        primary, secondary = _roots(P), _roots(S)
        assert secondary["TrustDomain"] == primary["TrustDomain"]
        assert secondary["ActiveRootID"] == primary["ActiveRootID"]
        root = primary["Roots"][0]["RootCert"]
        (inter,) = secondary["Roots"][0]["IntermediateCerts"]
        assert secondary["Roots"][0]["RootCert"] == root
        assert secondary["Roots"][0]["SigningKeyID"] != primary["Roots"][0]["SigningKeyID"]
        out = _verify(tmp_path, root, inter)
        assert out.strip().endswith(": OK"), out

        code, issued = _get(f"{S}/v1/agent/connect/ca/leaf/web")
        assert code == 200, issued
        td = primary["TrustDomain"]
        assert issued["ServiceURI"] == f"spiffe://{td}/ns/default/dc/secondary/svc/web"
        leaf = issued["CertPEM"].split("-----END CERTIFICATE-----")[0] + (
            "-----END CERTIFICATE-----\n")
        out = _verify(tmp_path, root, leaf, inter)
        assert out.strip().endswith(": OK"), out
        assert "OK" not in _verify(tmp_path, root, leaf)  # it needs the intermediate

        checks = fed.checks()
        assert poll_until(lambda: all(check() for _, check in checks.all()), 30)
        assert checks.clusters == {
            "primary -> secondary": f"secondary.internal.{td}",
            "secondary -> primary": f"primary.internal.{td}",
        }, json.dumps(checks.clusters)
    finally:
        fed.stop()
