# -*- test-case-name: tests.unit.config -*-
"""The ``connect`` block's CA settings (``ca_provider``, ``ca_config``) for the config builder."""

from __future__ import annotations

import uuid
from typing import Any

from wanfedtx.config.errors import ValidationError

_CA_CONFIG_NAMES = {
    "cluster_id": "ClusterID",
    "private_key": "PrivateKey",
    "root_cert": "RootCert",
    "rotation_period": "RotationPeriod",
    "leaf_cert_ttl": "LeafCertTTL",
    "intermediate_cert_ttl": "IntermediateCertTTL",
    "csr_max_per_second": "CSRMaxPerSecond",
    "csr_max_concurrent": "CSRMaxConcurrent",
    "private_key_type": "PrivateKeyType",
    "private_key_bits": "PrivateKeyBits",
}


class ConnectCASection:
    """``Builder``'s CA settings: needs its ``get`` and ``error``."""

    def get(self, path: str, default: Any = None) -> Any:
        raise NotImplementedError

    def error(self, message: str, path: str | None = None) -> ValidationError:
        raise NotImplementedError

    def ca_provider(self) -> str:
        """``connect.ca_provider``: only the built-in ``consul`` provider runs here."""
        provider = str(self.get("connect.ca_provider") or "") or "consul"
        if provider in ("vault", "aws-pca"):
            raise self.error(
                f'connect.ca_provider = "{provider}" is not supported by wanfedtx: only "consul" '
                "(the built-in CA) is available",
                "connect.ca_provider",
            )
        if provider != "consul":
            raise self.error(f"{provider} is not a valid CA provider", "connect.ca_provider")
        return provider

    def ca_config(self) -> dict[str, Any]:
        """``connect.ca_config`` under the reference's names, values as written."""
        raw = self.get("connect.ca_config") or {}
        out: dict[str, Any] = {}
        for key, value in raw.items():
            out[_CA_CONFIG_NAMES.get(key, key)] = value
        cluster_id = out.get("ClusterID")
        if cluster_id is not None:
            try:
                uuid.UUID(str(cluster_id))
            except ValueError:
                raise self.error(
                    "cluster_id was supplied but was not a valid UUID",
                    "connect.ca_config.cluster_id",
                ) from None
        if str(out.get("PrivateKeyType", "ec")) != "ec" or int(
            out.get("PrivateKeyBits", 256)
        ) != 256:
            raise self.error(
                "connect.ca_config: only EC P-256 CA keys are supported by wanfedtx "
                '(private_key_type = "ec", private_key_bits = 256)',
                "connect.ca_config",
            )
        if out.get("RootCert") and not out.get("PrivateKey"):
            raise self.error(
                "must provide a private key when providing a root cert", "connect.ca_config"
            )
        return out
