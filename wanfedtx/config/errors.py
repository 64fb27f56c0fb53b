# -*- test-case-name: tests.unit.config.test_config_templates -*-
"""Errors of the config package: every problem with a config source is one ``ConfigError``.

A ``ConfigError`` renders as one line that names the source file, the line the parser reported
(when known) and the key path, followed by Consul's wording of the problem where Consul has one
(``invalid config key connect.foo``, ``'primary_gateways' requires 'server = true'``, ...).
The CLI prints ``str(error)`` and exits 1.
"""

from __future__ import annotations


class ConfigError(Exception):
    """A configuration that cannot be loaded, merged, built or validated."""

    def __init__(
        self,
        message: str,
        *,
        source: str | None = None,
        line: int | None = None,
        key: str | None = None,
    ) -> None:
        self.message = message
        self.source = source
        self.line = line
        self.key = key
        super().__init__(self.render())

    def render(self) -> str:
        """The one-line form shown to users."""
        where = ""
        if self.source is not None:
            where = f"Error parsing {self.source}"
            if self.line is not None:
                where += f": line {self.line}"
            where += ": "
        return where + self.message.replace("\n", " ")

    def __str__(self) -> str:
        return self.render()


class ParseError(ConfigError):
    """Malformed HCL or JSON text."""


class SchemaError(ConfigError):
    """An unknown key, a value of the wrong type, or a bad duration or template."""


class ValidationError(ConfigError):
    """A configuration that parses but is not acceptable (Consul's Build/Validate errors)."""


class TemplateError(ConfigError):
    """A go-sockaddr template that cannot be evaluated."""
