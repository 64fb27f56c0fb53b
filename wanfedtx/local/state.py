# -*- test-case-name: tests.unit.agent.test_agent_ae_model,tests.unit.agent.test_agent_local_ae -*-
"""The agent's local view: services and checks registered on this agent, with sync flags.

Services come from config files and ``/v1/agent/service/register``; checks from service
definitions and ``/v1/agent/check/register``. Each entry remembers whether the catalog already
has it (``in_sync``) or must lose it (``deleted``); anti-entropy (:mod:`wanfedtx.local.ae`) does
the syncing and is told about every change through ``on_change``.
"""

from __future__ import annotations

from collections.abc import Callable

import attrs

from wanfedtx.catalog.errors import NotFoundError
from wanfedtx.config.runtime import CheckDefinition
from wanfedtx.local.definitions import ServiceRegistration, health_check
from wanfedtx.state.table import Row


@attrs.define
class LocalService:
    service: Row
    token: str = ""
    in_sync: bool = False
    deleted: bool = False


@attrs.define
class LocalCheck:
    check: Row
    definition: CheckDefinition | None = None
    token: str = ""
    in_sync: bool = False
    deleted: bool = False


class LocalState:
    """Services and checks of one agent."""

    def __init__(self, node: str) -> None:
        self.node = node
        self.services: dict[str, LocalService] = {}
        self.checks: dict[str, LocalCheck] = {}
        self.node_in_sync = False
        self._listeners: list[Callable[[], None]] = []
        self._check_listeners: list[Callable[[str, CheckDefinition | None], None]] = []

    def on_change(self, listener: Callable[[], None]) -> None:
        self._listeners.append(listener)

    def on_check_change(self, listener: Callable[[str, CheckDefinition | None], None]) -> None:
        """``listener(check_id, definition or None when removed)`` (check runners use this)."""
        self._check_listeners.append(listener)

    def _changed(self) -> None:
        for listener in list(self._listeners):
            listener()

    # -- services ------------------------------------------------------------------------------

    def add_service(self, definition: ServiceRegistration, token: str = "") -> None:
        sid = definition.service["ID"]
        old_checks = [
            cid for cid, c in self.checks.items() if c.check["ServiceID"] == sid and not c.deleted
        ]
        self.services[sid] = LocalService(dict(definition.service), token)
        new_ids = {c.id for c in definition.checks}
        for cid in old_checks:
            if cid not in new_ids:
                self._remove_check(cid)
        for check in definition.checks:
            self._add_check(check, token)
        self._changed()

    def remove_service(self, service_id: str) -> None:
        entry = self.services.get(service_id)
        if entry is None or entry.deleted:
            raise NotFoundError(
                f'Unknown service ID "{service_id}". Ensure that the service ID is passed, '
                "not the service name."
            )
        entry.deleted = True
        entry.in_sync = False
        for cid, check in list(self.checks.items()):
            if check.check["ServiceID"] == service_id and not check.deleted:
                self._remove_check(cid)
        self._changed()

    def live_services(self) -> dict[str, Row]:
        return {sid: s.service for sid, s in self.services.items() if not s.deleted}

    # -- checks --------------------------------------------------------------------------------

    def add_check(self, definition: CheckDefinition, token: str = "") -> None:
        if definition.service_id and definition.service_id not in self.live_services():
            raise NotFoundError(f"ServiceID {definition.service_id!r} does not exist")
        self._add_check(definition, token)
        self._changed()

    def _add_check(self, definition: CheckDefinition, token: str) -> None:
        row = health_check(definition, self.node)
        svc = self.services.get(definition.service_id)
        if svc is not None:
            row["ServiceName"] = svc.service["Service"]
            row["ServiceTags"] = list(svc.service["Tags"])
        self.checks[definition.id] = LocalCheck(row, definition, token)
        for listener in list(self._check_listeners):
            listener(definition.id, definition)

    def remove_check(self, check_id: str) -> None:
        entry = self.checks.get(check_id)
        if entry is None or entry.deleted:
            raise NotFoundError(f'Unknown check ID "{check_id}"')
        self._remove_check(check_id)
        self._changed()

    def _remove_check(self, check_id: str) -> None:
        entry = self.checks[check_id]
        entry.deleted = True
        entry.in_sync = False
        for listener in list(self._check_listeners):
            listener(check_id, None)

    def update_check(self, check_id: str, status: str, output: str) -> None:
        """A new status/output from a check runner or a TTL update."""
        entry = self.checks.get(check_id)
        if entry is None or entry.deleted:
            raise NotFoundError(f'Unknown check ID "{check_id}"')
        if entry.check["Status"] == status and entry.check["Output"] == output:
            return
        row = dict(entry.check)
        row["Status"] = status
        row["Output"] = output
        entry.check = row
        entry.in_sync = False
        self._changed()

    def live_checks(self) -> dict[str, Row]:
        return {cid: c.check for cid, c in self.checks.items() if not c.deleted}
