# -*- test-case-name: tests.unit.connect.test_connect_ca_rotation -*-
"""``ConnectCA.ConfigurationSet``: a new CA configuration, and root rotation in the primary.

As the reference, in order:

1. the provider must be ``consul`` (the only one here); the provider config is normalised (known
   keys matched case-insensitively, as the reference's weakly typed decoding does; others kept
   and ignored) and validated with the reference's messages;
2. a ``State`` that differs from the stored one is refused (``Provider State is read-only``);
3. the same provider with an equal config changes nothing;
4. in a secondary the built-in provider cannot make a root: ``error generating CA root
   certificate: provider is not the root certificate authority``;
5. the new config's provider state (keyed by its ``PrivateKey``/``RootCert``, see
   :func:`~wanfedtx.connect.endpoints.provider_state_id`) gives the root: the one stored, the
   operator's ``RootCert`` (with its ``PrivateKey``), a root made for the operator's
   ``PrivateKey``, or a new EC P-256 key and root;
6. the same root ID: only the config is stored (``CA provider config updated``);
7. else a **rotation**: the old root's key cross-signs the new root (valid 7 days, carried in
   the new root's ``IntermediateCerts``), the old roots stay listed with ``Active: false`` and
   their rotation time, roots and config are written in one raft entry
   (``set-roots-config``), then the old provider state (the old key) is deleted
   (``CA rotated to new root under provider``). Secondaries see the new active root through
   roots replication and have a new intermediate signed by it.

:func:`prune` is the reference's ``CA root pruning``: roots rotated out more than
2 x ``LeafCertTTL`` ago are dropped (by then every leaf they signed has expired).
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from twisted.logger import Logger

from wanfedtx.catalog.errors import BadRequestError
from wanfedtx.config.durations import DurationError, parse_duration_ns
from wanfedtx.connect import ca
from wanfedtx.connect import fsm as ca_fsm
from wanfedtx.connect.errors import CAError, CSRError
from wanfedtx.fsm.commands import MessageType
from wanfedtx.metrics import REGISTRY
from wanfedtx.state.connect_ca import CA_ROOTS

if TYPE_CHECKING:
    from wanfedtx.connect.endpoints import ConnectCAEndpoints

log = Logger(namespace="agent.server.connect")

STATE_READ_ONLY = (
    "Provider State is read-only. It must be omitted or identical to the current value"
)
NOT_ROOT_CA = (
    "error generating CA root certificate: provider is not the root certificate authority"
)
HOUR_NS = 3600 * 10**9

#: The built-in provider's keys, under the reference's names (matched case-insensitively).
KNOWN_KEYS = (
    "PrivateKey", "RootCert", "RotationPeriod", "IntermediateCertTTL", "LeafCertTTL",
    "CSRMaxPerSecond", "CSRMaxConcurrent", "PrivateKeyType", "PrivateKeyBits",
)
_BY_LOWER = {k.lower(): k for k in KNOWN_KEYS}


def normalize(raw: Mapping[str, Any]) -> dict[str, Any]:
    """Known keys under their canonical names (``leafcertttl`` -> ``LeafCertTTL``); snake_case
    names (``leaf_cert_ttl``) are not translated, as the reference's API does not."""
    out: dict[str, Any] = {}
    for key, value in raw.items():
        out[_BY_LOWER.get(str(key).lower(), str(key))] = value
    return out


def _duration(config: Mapping[str, Any], name: str, default: str) -> int:
    raw = config.get(name, default)
    if isinstance(raw, bool):
        raise CSRError(f"error decoding {name}: {raw!r} is not a duration")
    if isinstance(raw, int | float):
        return int(raw)  # a Go time.Duration decoded from a number: nanoseconds
    try:
        return parse_duration_ns(str(raw))
    except (DurationError, ValueError) as exc:
        raise CSRError(f"error decoding {name}: {exc}") from None


def _go(ns: int) -> str:
    """A duration as Go prints the reference's limits (``1h0m0s``, ``216h0m0s``)."""
    hours, rest = divmod(ns // 10**9, 3600)
    minutes, seconds = divmod(rest, 60)
    return f"{hours}h{minutes}m{seconds}s"


def validate(config: Mapping[str, Any]) -> None:
    """The reference's checks of a built-in provider config (CSRError: HTTP 400)."""
    leaf = _duration(config, "LeafCertTTL", "72h")
    if leaf < HOUR_NS:
        raise CSRError("leaf cert TTL must be greater or equal than 1h0m0s")
    if leaf >= 8760 * HOUR_NS:
        raise CSRError("leaf cert TTL must be less than 8760h0m0s")
    inter = _duration(config, "IntermediateCertTTL", "8760h")
    if inter < 3 * HOUR_NS:
        raise CSRError("Intermediate Cert TTL must be greater or equal than 3h")
    if inter < 3 * leaf:
        raise CSRError("Intermediate Cert TTL must be greater or equal than 3 * LeafCertTTL "
                       f"(>={_go(3 * leaf)}).")
    key_type = str(config.get("PrivateKeyType", "ec") or "ec")
    if key_type not in ("ec", "rsa"):
        raise CSRError("private key type must be either 'ec' or 'rsa'")
    try:
        bits = int(config.get("PrivateKeyBits", 256) or 256)
    except (TypeError, ValueError):
        raise CSRError("error decoding PrivateKeyBits: not a number") from None
    if key_type == "ec" and bits not in (224, 256, 384, 521):
        raise CSRError("EC key length must be one of (224, 256, 384, 521) bits")
    if key_type == "rsa" and bits not in (2048, 4096):
        raise CSRError("RSA key length must be 2048 or 4096 bits")
    if (key_type, bits) != ("ec", 256):
        raise CSRError("only EC P-256 CA keys are supported by wanfedtx "
                       '(PrivateKeyType "ec", PrivateKeyBits 256)')
    for name in ("PrivateKey", "RootCert"):
        if not isinstance(config.get(name, ""), str):
            raise CSRError(f"error decoding {name}: must be a PEM string")
    if config.get("RootCert") and not config.get("PrivateKey"):
        raise CSRError("must provide a private key when providing a root cert")
    if config.get("RootCert"):
        ca.check_root_pair(str(config["PrivateKey"]), str(config["RootCert"]))
    elif config.get("PrivateKey"):
        try:
            ca.load_key(str(config["PrivateKey"]))
        except CAError as exc:
            raise CSRError(str(exc)) from None


def parse_request(args: Mapping[str, Any]) -> tuple[str, dict[str, Any], Any, bool]:
    """(Provider, provider config, State, ForceWithoutCrossSigning) of a request's ``Config``."""
    body = args.get("Config")
    if not isinstance(body, dict):
        raise BadRequestError("Config must be an object")
    fields = {str(k).lower(): v for k, v in body.items()}
    provider = fields.get("provider") or ""
    if not isinstance(provider, str):
        raise BadRequestError("Provider must be a string")
    raw = fields.get("config") or {}
    if not isinstance(raw, dict):
        raise BadRequestError("Config.Config must be an object")
    force = fields.get("forcewithoutcrosssigning", fields.get("force_without_cross_signing"))
    return provider, normalize(raw), fields.get("state"), bool(force)


def check_provider(provider: str) -> None:
    if provider in ("vault", "aws-pca"):
        raise CSRError(f'CA provider "{provider}" is not supported by wanfedtx: only "consul" '
                       "(the built-in CA) is available")
    if provider != "consul":
        raise CSRError(f'unknown CA provider "{provider}"')


def _now(eps: ConnectCAEndpoints) -> datetime.datetime:
    return eps.now()


async def _apply(eps: ConnectCAEndpoints, body: dict[str, Any]) -> Any:
    return await eps.endpoints._apply(MessageType.CONNECT_CA, body)


async def configuration_set(eps: ConnectCAEndpoints, args: Mapping[str, Any]) -> bool:
    """Serve ``ConnectCA.ConfigurationSet`` here (forwarding and ACLs are done; see module)."""
    from wanfedtx.connect.endpoints import provider_state_id

    provider, raw, state_in, force = parse_request(args)
    check_provider(provider)
    validate(raw)
    state = eps.endpoints.state
    _, current = state.ca_config(None)
    if current is None:
        raise CAError("CA configuration is not initialized yet")
    if state_in and state_in != current.get("State"):
        raise BadRequestError(STATE_READ_ONLY)
    if current.get("Provider") == provider and (current.get("Config") or {}) == raw:
        return True
    if not eps.is_primary:
        raise CAError(NOT_ROOT_CA)
    cluster_id = str(current["ClusterID"])
    new_config = {
        "ClusterID": cluster_id,
        "Provider": provider,
        "Config": raw,
        "State": current.get("State"),
        "ForceWithoutCrossSigning": force,
        "ModifyIndex": int(current.get("ModifyIndex") or 0),
    }
    old_pid = provider_state_id(current.get("Config") or {}, True)
    new_pid = provider_state_id(raw, True)
    row = state.ca_provider_state(new_pid)
    stored = row is not None and bool(row.get("RootCert"))
    if row is not None and stored:
        key_pem, root_pem = str(row["PrivateKey"]), str(row["RootCert"])
    elif raw.get("RootCert"):
        key_pem, root_pem = str(raw["PrivateKey"]), str(raw["RootCert"])
    else:
        serial = int(await _apply(eps, {"Op": ca_fsm.OP_INCREMENT_SERIAL}))
        key_pem, root_pem = ca.generate_root(cluster_id, serial, _now(eps),
                                             str(raw.get("PrivateKey") or ""))
    new_root = ca.root_row(root_pem, cluster_id)
    active = state.ca_active_root()
    if active is not None and active["ID"] == new_root["ID"]:
        if not await _apply(eps, {"Op": ca_fsm.OP_SET_CONFIG, "Config": new_config}):
            raise CAError("could not atomically update the CA configuration")
        log.info("CA provider config updated")
        return True
    old = state.ca_provider_state(old_pid)
    if old is None or not old.get("PrivateKey") or active is None:
        raise CAError("internal error: CA provider is nil")
    serial = int(await _apply(eps, {"Op": ca_fsm.OP_INCREMENT_SERIAL}))
    now = _now(eps)
    cross = ca.cross_sign(root_pem, str(old["PrivateKey"]), str(old["RootCert"]), serial, now)
    new_root["IntermediateCerts"] = [cross]
    _, roots = state.ca_roots(None)
    rotated_at = ca._rfc3339(now)
    out = []
    for r in roots:
        if r["ID"] == new_root["ID"]:
            continue
        kept = dict(r, Active=False)
        if r.get("Active") or not kept.get("RotatedOutAt"):
            kept["RotatedOutAt"] = rotated_at
        out.append(kept)
    out.append(new_root)
    if not stored:
        await _apply(eps, {"Op": ca_fsm.OP_SET_PROVIDER_STATE, "ProviderState": {
            "ID": new_pid, "PrivateKey": key_pem, "RootCert": root_pem, "IntermediateCert": ""}})
    ok = await _apply(eps, {"Op": ca_fsm.OP_SET_ROOTS_CONFIG, "Index": state.max_index(CA_ROOTS),
                            "Roots": out, "Config": new_config})
    if not ok:
        raise CAError("could not atomically update roots and config")
    if old_pid != new_pid:
        await _apply(eps, {"Op": ca_fsm.OP_DELETE_PROVIDER_STATE,
                           "ProviderState": {"ID": old_pid}})
    log.info("CA rotated to new root under provider: provider={provider} old={old} new={new}",
             provider=provider, old=active["ID"], new=new_root["ID"])
    REGISTRY.counter("connect.ca.rotations", "Connect CA root rotations made by this server").inc()
    return True


def prunable(roots: Sequence[Mapping[str, Any]], now: datetime.datetime,
             leaf_ttl: datetime.timedelta) -> list[str]:
    """IDs of the inactive roots rotated out more than 2 x ``leaf_ttl`` before ``now``."""
    out = []
    for r in roots:
        when = str(r.get("RotatedOutAt") or "")
        if r.get("Active") or not when:
            continue
        try:
            at = datetime.datetime.strptime(when, "%Y-%m-%dT%H:%M:%SZ").replace(
                tzinfo=datetime.UTC)
        except ValueError:
            continue
        if now - at > 2 * leaf_ttl:
            out.append(str(r["ID"]))
    return out


async def prune(eps: ConnectCAEndpoints) -> int:
    """Drop the roots :func:`prunable` names (one ``set-roots``); how many were dropped."""
    from wanfedtx.connect.endpoints import leaf_ttl

    state = eps.endpoints.state
    _, config = state.ca_config(None)
    _, roots = state.ca_roots(None)
    gone = set(prunable(roots, _now(eps), leaf_ttl(config)))
    if not gone:
        return 0
    kept = [r for r in roots if r["ID"] not in gone]
    for rid in sorted(gone):
        log.info("CA: pruning old unused root CA: id={id}", id=rid)
    ok = await _apply(eps, {"Op": ca_fsm.OP_SET_ROOTS, "Index": state.max_index(CA_ROOTS),
                            "Roots": kept})
    return len(gone) if ok else 0
