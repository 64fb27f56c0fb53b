"""``connect.ca_provider`` and ``connect.ca_config``: Consul's names, the one-line refusals."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from wanfedtx.config import LoadResult
from wanfedtx.config.errors import ConfigError

CID = "11111111-2222-3333-4444-555555555555"


def test_ca_config_keys_take_consul_names(
    loadcfg: Callable[..., LoadResult], write: Callable[[str, str], str]
) -> None:
    rt = loadcfg(write("c.hcl", f'''connect {{
  enabled = true
  ca_provider = "consul"
  ca_config {{
    cluster_id = "{CID}"
    leaf_cert_ttl = "24h"
    intermediate_cert_ttl = "720h"
    csr_max_per_second = 10
    private_key_type = "ec"
    private_key_bits = 256
  }}
}}''')).runtime
    assert rt.connect_ca_provider == "consul"
    assert rt.connect_ca_config == {
        "ClusterID": CID, "LeafCertTTL": "24h", "IntermediateCertTTL": "720h",
        "CSRMaxPerSecond": 10, "PrivateKeyType": "ec", "PrivateKeyBits": 256,
    }


def test_defaults(loadcfg: Callable[..., LoadResult], write: Callable[[str, str], str]) -> None:
    rt = loadcfg(write("c.hcl", "connect { enabled = true }")).runtime
    assert (rt.connect_ca_provider, dict(rt.connect_ca_config)) == ("consul", {})


@pytest.mark.parametrize(
    ("hcl", "message"),
    [
        ('connect { ca_provider = "vault" }',
         'connect.ca_provider = "vault" is not supported by wanfedtx: only "consul"'),
        ('connect { ca_provider = "aws-pca" }', '"aws-pca" is not supported by wanfedtx'),
        ('connect { ca_provider = "bogus" }', "bogus is not a valid CA provider"),
        ('connect { ca_config { cluster_id = "nope" } }',
         "cluster_id was supplied but was not a valid UUID"),
        ('connect { ca_config { private_key_type = "rsa" } }', "only EC P-256 CA keys"),
        ("connect { ca_config { private_key_bits = 384 } }", "only EC P-256 CA keys"),
        ('connect { ca_config { root_cert = "x" } }',
         "must provide a private key when providing a root cert"),
        ('connect { ca_config { leaf_cert_ttl = "soon" } }', "leaf_cert_ttl"),
    ],
)
def test_refusals_are_one_line(
    loadcfg: Callable[..., LoadResult], write: Callable[[str, str], str], hcl: str, message: str
) -> None:
    with pytest.raises(ConfigError) as exc:
        loadcfg(write("c.hcl", hcl))
    assert message in str(exc.value) and "\n" not in str(exc.value)


def test_agent_self_hides_the_ca_private_key(
    loadcfg: Callable[..., LoadResult], write: Callable[[str, str], str]
) -> None:
    rt = loadcfg(write("c.hcl", 'connect { ca_config { private_key = "-----BEGIN EC PRIVATE '
                                'KEY-----" root_cert = "pem" } }')).runtime
    shown = rt.sanitized()["ConnectCAConfig"]
    assert shown["PrivateKey"] == "hidden" and shown["RootCert"] == "pem"
