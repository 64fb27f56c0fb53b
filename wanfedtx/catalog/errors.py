# -*- test-case-name: tests.unit.agent.test_agent_ae_model,tests.unit.agent.test_agent_local_ae -*-
"""Exceptions raised by the catalog/health/KV endpoints.

``BadRequestError`` maps to HTTP 400, ``NotFoundError`` to 404, ``NoPathToDatacenterError``
carries the reference's "No path to datacenter" text, everything else is a server error.
"""

from __future__ import annotations


class EndpointError(Exception):
    """An endpoint refused or failed a request."""


class BadRequestError(EndpointError):
    """The request itself is wrong (missing or malformed fields); nothing was stored."""


class NotFoundError(EndpointError):
    """The named thing does not exist."""


class NoPathToDatacenterError(EndpointError):
    """The request names a datacenter this server cannot reach."""

    def __init__(self, dc: str = "") -> None:
        super().__init__("No path to datacenter")
        self.dc = dc


class NoLeaderError(EndpointError):
    """No leader is known, so the request cannot be served consistently."""

    def __init__(self) -> None:
        super().__init__("No cluster leader")


class NotReadyError(EndpointError):
    """This server leads but has not applied the first entry of its term yet."""

    def __init__(self) -> None:
        super().__init__("Not ready to serve consistent reads")
