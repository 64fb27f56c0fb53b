# -*- test-case-name: tests.unit.acl.test_acl_agent_tokens -*-
"""The agent's own ACL tokens (``acl.tokens.*``) and their replacement at run time.

``PUT /v1/agent/token/<kind>`` replaces one of them: ``default`` (requests without a token),
``agent`` (the agent's anti-entropy; falls back to ``default``), ``agent_master`` and
``replication``. Consul's older names are accepted too (``acl_token``, ``acl_agent_token``,
``acl_agent_master_token``, ``acl_replication_token``), and ``agent_recovery`` (the later name
of ``agent_master``). With ``acl.enable_token_persistence``, the tokens set this way are written
to ``<data_dir>/acl-tokens.json`` (Consul's file and keys, mode 0600, written atomically) and,
at the next start, override the configuration's values; tokens that only come from the
configuration are never written there. Listeners hear which token changed, so the parts that
hold a copy (the HTTP API's default token, anti-entropy, replication) switch at once.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable

import attrs
from twisted.logger import Logger

from wanfedtx import jsondecode
from wanfedtx.config.runtime import RuntimeConfig

log = Logger(namespace="agent.acl")

TOKENS_FILE = "acl-tokens.json"
#: the URL name -> the token it sets (and its key in acl-tokens.json)
KINDS = {
    "default": "default",
    "acl_token": "default",
    "agent": "agent",
    "acl_agent_token": "agent",
    "agent_master": "agent_master",
    "agent_recovery": "agent_master",
    "acl_agent_master_token": "agent_master",
    "replication": "replication",
    "acl_replication_token": "replication",
}
FIELDS = ("default", "agent", "agent_master", "replication")


class UnknownTokenKind(KeyError):
    """``PUT /v1/agent/token/<kind>`` with a kind Consul does not know."""

    def __init__(self, kind: str) -> None:
        super().__init__(kind)
        self.kind = kind

    def __str__(self) -> str:
        return f"Token {json.dumps(self.kind)} is unknown"


class PersistError(Exception):
    """``acl-tokens.json`` could not be written."""


class AgentTokens:
    """The four tokens, where each came from, and the persistence file (see module docstring)."""

    def __init__(
        self,
        *,
        default: str = "",
        agent: str = "",
        agent_master: str = "",
        replication: str = "",
        persist_path: str | None = None,
    ) -> None:
        self._values = {
            "default": default,
            "agent": agent,
            "agent_master": agent_master,
            "replication": replication,
        }
        self._from_api: set[str] = set()
        self.persist_path = persist_path
        self._listeners: list[Callable[[str], object]] = []

    @classmethod
    def from_config(
        cls,
        *,
        default: str,
        agent: str,
        agent_master: str,
        replication: str,
        data_dir: str,
        persistence: bool,
    ) -> AgentTokens:
        """The configuration's tokens, overridden by ``acl-tokens.json`` when persistence is on."""
        path = os.path.join(data_dir, TOKENS_FILE) if persistence and data_dir else None
        tokens = cls(
            default=default,
            agent=agent,
            agent_master=agent_master,
            replication=replication,
            persist_path=path,
        )
        if path is not None:
            tokens.load()
        return tokens

    # -- reading ---------------------------------------------------------------------------------

    def get(self, field: str) -> str:
        return self._values[field]

    @property
    def default(self) -> str:
        return self._values["default"]

    @property
    def agent(self) -> str:
        """The agent's own token: ``agent``, else ``default`` (as Consul's ``AgentToken()``)."""
        return self._values["agent"] or self._values["default"]

    @property
    def agent_master(self) -> str:
        return self._values["agent_master"]

    @property
    def replication(self) -> str:
        return self._values["replication"]

    def from_api(self, field: str) -> bool:
        return field in self._from_api

    # -- writing ---------------------------------------------------------------------------------

    def subscribe(self, listener: Callable[[str], object]) -> None:
        """``listener(field)`` after a token changed (``default``, ``agent``, ...)."""
        self._listeners.append(listener)

    def set(self, kind: str, secret: str) -> str:
        """Set the token named ``kind`` (any of ``KINDS``); persist; tell the listeners.

        Returns the field set. ``UnknownTokenKind`` for other names, ``PersistError`` when
        the file cannot be written (the new value stays in effect, as in Consul)."""
        field = KINDS.get(kind)
        if field is None:
            raise UnknownTokenKind(kind)
        changed = self._values[field] != secret
        self._values[field] = secret
        self._from_api.add(field)
        try:
            if self.persist_path is not None:
                self.save()
        finally:
            if changed:
                for listener in list(self._listeners):
                    listener(field)
        return field

    def persisted(self) -> dict[str, str]:
        """What ``acl-tokens.json`` holds: the non-empty tokens set through the API."""
        return {f: self._values[f] for f in FIELDS if f in self._from_api and self._values[f]}

    def save(self) -> None:
        path = self.persist_path
        if path is None:
            return
        data = json.dumps(self.persisted()).encode()
        directory = os.path.dirname(path) or "."
        try:
            os.makedirs(directory, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=TOKENS_FILE + ".", dir=directory)
            try:
                os.fchmod(fd, 0o600)
                os.write(fd, data)
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, path)
        except OSError as exc:
            raise PersistError(f"Failed to persist tokens - {exc}") from None

    def load(self) -> None:
        """Read ``acl-tokens.json``: its non-empty values override the configuration's. A file
        that cannot be read or decoded leaves the configuration's tokens and logs one line."""
        path = self.persist_path
        if path is None:
            return
        try:
            with open(path, "rb") as f:
                raw = f.read()
        except FileNotFoundError:
            return
        except OSError as exc:
            log.warn("failed to read tokens file {path!r}: {error}", path=path, error=str(exc))
            return
        try:
            value = jsondecode.loads(raw)
        except ValueError as exc:
            log.warn("failed to decode tokens file {path!r}: {error}", path=path, error=str(exc))
            return
        if not isinstance(value, dict):
            log.warn("failed to decode tokens file {path!r}: not a JSON object", path=path)
            return
        for field in FIELDS:
            secret = value.get(field)
            if isinstance(secret, str) and secret:
                self._values[field] = secret
                self._from_api.add(field)


def agent_tokens(rt: RuntimeConfig) -> tuple[AgentTokens, RuntimeConfig]:
    """The agent's :class:`AgentTokens` from ``rt`` (with ``acl-tokens.json`` applied) and ``rt``
    with those values in ``acl_tokens``, so every part built from it starts with them."""
    conf = rt.acl_tokens
    tokens = AgentTokens.from_config(
        default=conf.default,
        agent=conf.agent,
        agent_master=conf.agent_recovery,
        replication=conf.replication,
        data_dir=rt.data_dir,
        persistence=rt.acl_enable_token_persistence,
    )
    merged = attrs.evolve(
        conf,
        default=tokens.get("default"),
        agent=tokens.get("agent"),
        agent_recovery=tokens.get("agent_master"),
        replication=tokens.get("replication"),
    )
    return tokens, attrs.evolve(rt, acl_tokens=merged)
