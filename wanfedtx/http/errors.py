"""Errors of the HTTP API: each maps to a status code and a one-line text body, as Consul sends."""

from __future__ import annotations


class HTTPError(Exception):
    """An error answered with ``code`` and ``message`` as a ``text/plain`` body."""

    code = 500

    def __init__(self, message: str, code: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code


class NotFound(HTTPError):
    code = 404


class MethodNotAllowed(HTTPError):
    code = 405


class BadRequest(HTTPError):
    code = 400
