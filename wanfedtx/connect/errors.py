"""Errors of the Connect CA; messages follow the reference's wording where it has one.

:class:`CAError` is an endpoint error (HTTP 500 with its text), :class:`CSRError` a bad request
(HTTP 400).
"""

from __future__ import annotations

from wanfedtx.catalog.errors import BadRequestError, EndpointError


class CAError(EndpointError):
    """The CA cannot do what was asked (not bootstrapped, bad stored state, ...)."""


class CSRError(BadRequestError, CAError):
    """A certificate request that is refused (bad PEM, wrong SPIFFE ID, ...)."""
