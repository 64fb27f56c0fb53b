# -*- test-case-name: tests.unit.agent.test_agent_units -*-
"""The node ID: from config, else persisted in ``<data_dir>/node-id``, as Consul does.

* ``node_id`` set in config: used (lower-cased; it must be a UUID).
* no data dir (``-dev``): a random UUID, not persisted ("Using random ID as node ID").
* else ``<data_dir>/node-id`` is read if present (it must hold a UUID), otherwise a new ID is
  written there with mode 0600: random by default (``disable_host_node_id = true``), or derived
  from the host's machine ID (BLAKE2b-512 of ``/etc/machine-id``, first 16 bytes as a UUID) when
  ``disable_host_node_id = false``.
"""

from __future__ import annotations

import hashlib
import os
import uuid
from collections.abc import Callable

from twisted.logger import Logger

from wanfedtx.agent.errors import AgentError
from wanfedtx.config.runtime import RuntimeConfig

log = Logger(namespace="agent")

NODE_ID_FILE = "node-id"
_MACHINE_ID_FILES = ("/etc/machine-id", "/var/lib/dbus/machine-id")


def _valid(text: str) -> bool:
    try:
        uuid.UUID(text)
    except ValueError:
        return False
    return len(text) == 36


def host_node_id() -> str | None:
    """A node ID derived from the host's machine ID, or None if there is none."""
    for path in _MACHINE_ID_FILES:
        try:
            with open(path, "rb") as f:
                raw = f.read().strip()
        except OSError:
            continue
        if raw:
            return str(uuid.UUID(bytes=hashlib.blake2b(raw, digest_size=64).digest()[:16]))
    return None


def resolve_node_id(rt: RuntimeConfig, random_uuid: Callable[[], uuid.UUID] = uuid.uuid4) -> str:
    """The node ID this agent runs with (see the module docstring)."""
    if rt.node_id:
        if not _valid(rt.node_id):
            raise AgentError(f"node_id {rt.node_id!r} is not a valid UUID")
        return rt.node_id.lower()
    if not rt.data_dir:
        node_id = str(random_uuid())
        log.debug("Using random ID as node ID: id={id}", id=node_id)
        return node_id
    path = os.path.join(rt.data_dir, NODE_ID_FILE)
    try:
        with open(path) as f:
            stored = f.read().strip()
    except FileNotFoundError:
        stored = None
    except OSError as e:
        raise AgentError(f"could not read node ID from {path}: {e.strerror}") from None
    if stored is not None:
        if not _valid(stored):
            raise AgentError(
                f"node ID {stored!r} in {path} is not a valid UUID; fix or remove the file"
            )
        return stored.lower()
    from_host = None if rt.disable_host_node_id else host_node_id()
    if from_host is None:
        node_id = str(random_uuid())
        log.debug("Using random ID as node ID: id={id}", id=node_id)
    else:
        node_id = from_host
        log.debug("Using unique ID from host as node ID: id={id}", id=node_id)
    try:
        os.makedirs(rt.data_dir, mode=0o700, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(node_id)
    except OSError as e:
        raise AgentError(f"could not write node ID to {path}: {e.strerror}") from None
    return node_id
